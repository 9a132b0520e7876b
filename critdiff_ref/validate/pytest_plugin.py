"""pytest plugin (entry point ``pytest11``): run critdiff's exact checks on a user's sampler in their CI.

    pytest --critdiff-sampler pkg.module:attr [--critdiff-adapter score|denoiser|k-diffusion|diffusers|generator|velocity]

adds one test per ``--critdiff-sampler`` (``critdiff::pkg.module:attr``) that fails with a readable
diff of every check that was off.  Fixtures for one's own tests:

- ``critdiff_report``: the :class:`~critdiff_ref.validate.Report` of the ``--critdiff-sampler`` given;
- ``critdiff_validate``: ``critdiff_validate(sampler, **validate_kwargs)`` runs :func:`validate` and fails
  the test with the diff when a check fails (returns the report otherwise).

The folder pytest was started from is importable (as for ``python -m``); a sampler spec that does not
import, or a bad ``--critdiff-steps``, is a one-line usage error.  Validation runs with the thread
policy of :mod:`critdiff_ref._threads` (one thread for these small problems unless ``OMP_NUM_THREADS``
says otherwise), restored afterwards.
"""

from __future__ import annotations

import sys

import pytest

from .. import _threads
from .core import N_SAMPLES, TARGETS, validate
from .registry import adapter_names
from .runners.base import load_object

__all__ = ["pytest_addoption", "pytest_configure", "pytest_collection_modifyitems", "CritdiffItem",
           "CritdiffFailure"]


def pytest_addoption(parser) -> None:
    group = parser.getgroup("critdiff", "validate diffusion samplers against exact answers")
    group.addoption("--critdiff-sampler", action="append", default=[], metavar="MODULE:ATTR",
                    help="sampler to validate (repeatable)")
    group.addoption("--critdiff-adapter", default="score", choices=list(adapter_names()),
                    help="how to call the sampler (default: score)")
    group.addoption("--critdiff-steps", default="10,20,50,100", help="comma-separated increasing step counts")
    group.addoption("--critdiff-rtol", type=float, default=0.1, help="accuracy target at the largest step count")
    group.addoption("--critdiff-order", type=float, default=None, help="documented order of the sampler")
    group.addoption("--critdiff-targets", default=",".join(TARGETS), help="comma-separated checks")


def _kwargs(config) -> dict:
    text = config.getoption("critdiff_steps")
    try:
        steps = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise pytest.UsageError(f"--critdiff-steps must be comma-separated integers such as 10,20,50,100, "
                                f"got {text!r}") from None
    targets = tuple(t.strip() for t in config.getoption("critdiff_targets").split(",") if t.strip())
    return {"adapter": config.getoption("critdiff_adapter"), "steps": steps, "targets": targets,
            "rtol": config.getoption("critdiff_rtol"), "order": config.getoption("critdiff_order")}


def _work() -> int:
    return 64 * N_SAMPLES  # Monte Carlo batches on 64-site fields (see critdiff_ref._threads)


def pytest_configure(config) -> None:
    """With ``--critdiff-sampler``: put the invocation folder on ``sys.path``, check the options and that
    every spec imports (``pytest.UsageError``, one line, otherwise)."""
    specs = config.getoption("critdiff_sampler")
    if not specs:
        return
    folder = str(config.invocation_params.dir)
    if folder not in sys.path and "" not in sys.path:
        sys.path.insert(0, folder)
    what = "scheduler" if _kwargs(config)["adapter"] == "diffusers" else "sampler"
    for spec in specs:
        try:
            load_object(spec, what)
        except ValueError as err:
            raise pytest.UsageError(f"--critdiff-sampler: {err}") from None


class CritdiffFailure(Exception):
    """A validation report with failed checks."""


def _validate(sampler, **kw):
    """:func:`validate` under the thread policy of :mod:`critdiff_ref._threads` (one thread for these sizes)."""
    with _threads.threads(_work()):
        return validate(sampler, **kw)


class CritdiffItem(pytest.Item):
    """One ``--critdiff-sampler``: runs :func:`validate` and fails with the report's diff."""

    def __init__(self, *, spec: str, **kw) -> None:
        super().__init__(**kw)
        self.spec = spec

    def runtest(self) -> None:
        report = _validate(self.spec, **_kwargs(self.config))
        self.user_properties.append(("critdiff_report", report.to_json()))
        if not report.passed:
            raise CritdiffFailure(report)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CritdiffFailure):
            report = excinfo.value.args[0]
            return f"critdiff: {self.spec} failed {len(report.failures())} check(s):\n{report.diff()}\n\n{report.table()}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"critdiff::{self.spec}"


def pytest_collection_modifyitems(session, config, items) -> None:
    for spec in config.getoption("critdiff_sampler"):
        items.append(CritdiffItem.from_parent(session, name=f"critdiff::{spec}", spec=spec))


@pytest.fixture(scope="session")
def critdiff_report(request):
    """The report of the first ``--critdiff-sampler`` (skips when none was given)."""
    specs = request.config.getoption("critdiff_sampler")
    if not specs:
        pytest.skip("no --critdiff-sampler given")
    return _validate(specs[0], **_kwargs(request.config))


@pytest.fixture
def critdiff_validate():
    """``critdiff_validate(sampler, **kw) -> Report``; fails the test with the diff when a check fails."""
    def run(sampler, **kw):
        report = _validate(sampler, **kw)
        if not report.passed:
            pytest.fail(f"critdiff validation failed:\n{report.diff()}", pytrace=False)
        return report

    return run
