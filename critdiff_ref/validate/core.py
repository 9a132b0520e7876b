"""The orchestrator: validate a third-party diffusion sampler against exact answers (THEORY 2, 6, 8).

Stable API (other modules and users build on it)::

    validate(sampler, adapter="score", *, fields=None, steps=(10, 20, 50, 100),
             targets=("gaussian", "mixture", "phi4"), rtol=0.1, order=None,
             deterministic=None, process=None, start="noise", sigma_min=0.002,
             sigma_max=80.0, rho=7.0, prediction_type=None, sampler_kwargs=None,
             target=None, n_samples=4000, seed=0, dtype=torch.float64, device=None,
             name=None, reference=None) -> Report

- ``sampler``: the object to check, or ``"pkg.module:attr"``; ``adapter`` one of
  ``"score"`` (``sampler(score, process, x_T, steps=N, **kw)``), ``"denoiser"`` / ``"k-diffusion"``
  (``sampler(model, x, sigmas)``), ``"diffusers"`` (a scheduler instance or class), ``"generator"``
  (``sampler(n, generator) -> x_0`` for the single ``target=``: a GaussianField, TwoGaussianMixture,
  Phi4ZeroD, or Phi4Lattice -- the last against an HMC ensemble, or the ``reference=`` summary of
  :func:`critdiff_ref.phi4.ensemble.run_hmc_experiment`), ``"velocity"`` (``sampler(velocity, x_1, sigmas)``,
  flow matching on the rectified flow; diffusers' FlowMatch* schedulers go through ``"diffusers"``).
  Conventions: :mod:`.runners`; adapter names and known schedulers: :mod:`critdiff_ref.validate.registry`.
- ``fields``: Gaussian fields (default: d = 1 L = 16 r = 0; d = 2 L = 8 r = 0; d = 2 L = 8 r = 0.5);
  ``steps``: increasing step counts; ``order``: the documented order (default: known for our
  references and diffusers schedulers; otherwise only convergence is required).
- Returns a :class:`Report` of :class:`CheckResult` (name, measured, reference, tolerance,
  tolerance_source, passed, detail); ``report.passed``, ``report.table()``, ``report.to_json()``,
  ``report.plot(dir)``, ``report.diff()``.

Checks: per field and step count the relative covariance error of the sampler against the exact
continuous flow on the same schedule (its own error; passed at the largest step count if <= rtol),
with the total error against ``c0``, W2, KL and the schedule's own floor alongside; linearity (deterministic);
the observed convergence order (>= documented - 0.5); two-peak kappa_2..kappa_8 and 0-D phi^4 moments.
Consistency samplers (LCM, TCD, SCM, CMStochasticIterative; :mod:`.checks.consistency`): one step always, the
consistency check (own error at rounding at every step count) instead of the order, Gaussian targets only.
"""

from __future__ import annotations

import math
import types
from typing import Any, Iterable

import torch

from ..processes import Process
from ..targets import GaussianField, Phi4Lattice, Phi4ZeroD, TwoGaussianMixture
from .checks.consistency import consistency_check, consistency_plan
from .checks.covariance import gaussian_checks
from .checks.nongaussian import mixture_check, phi4_check, phi4_lattice_check
from .checks.order import order_check, probed_weak_order_row, weak_order_row
from .checks.result import CheckResult, check_result
from .registry import make_runner
from .report import Report
from .runners.base import Runner
from .runners.execute import field_label, is_deterministic

__all__ = [
    "TARGETS",
    "N_SAMPLES",
    "default_fields",
    "ArgumentError",
    "check_validate_args",
    "validate_runner",
    "validate",
    "CallableModule",
]

TARGETS = ("gaussian", "mixture", "phi4")
# the Monte Carlo sample count: one default for validate(), `critdiff validate` and the pytest plugin
N_SAMPLES = 4000


def default_fields() -> tuple[GaussianField, ...]:
    """The Gaussian fields checked by default: critical d = 1 and d = 2, and massive d = 2."""
    return (GaussianField(16, 1, 0.0), GaussianField(8, 2, 0.0), GaussianField(8, 2, 0.5))


class ArgumentError(ValueError):
    """A bad :func:`validate` argument; ``parameter`` names it (the message says the allowed range)."""

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


def check_validate_args(steps, targets, rtol, n_samples) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The argument checks of :func:`validate` (also run on sweep specs before any job starts).

    Returns ``(steps, targets)`` as tuples; :class:`ArgumentError` (a ``ValueError``) naming the parameter,
    its value and the allowed range: ``steps`` a non-empty strictly increasing sequence of ints >= 1,
    ``rtol`` a number in (0, 1), ``n_samples`` an int >= 100, ``targets`` a non-empty subset of :data:`TARGETS`.
    """
    steps = tuple(steps)
    if not steps or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in steps):
        raise ArgumentError("steps", f"steps must be a non-empty sequence of ints >= 1, got steps={steps!r}")
    if list(steps) != sorted(set(steps)):
        raise ArgumentError("steps", f"steps must be strictly increasing, got steps={steps!r}")
    if isinstance(rtol, bool) or not (isinstance(rtol, (int, float)) and 0 < rtol < 1):
        raise ArgumentError("rtol", f"rtol must be a number in (0, 1), got rtol={rtol!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 100:
        raise ArgumentError("n_samples", f"n_samples must be an int >= 100, got n_samples={n_samples!r}")
    targets = (targets,) if isinstance(targets, str) else tuple(targets)
    if not targets:
        raise ArgumentError("targets", f"targets must name at least one of {TARGETS}, got targets=()")
    bad = [t for t in targets if t not in TARGETS]
    if bad:
        raise ArgumentError("targets", f"targets must be a subset of {TARGETS}, got {tuple(targets)!r}")
    return steps, targets


def validate_runner(
    runner: Runner,
    *,
    fields: Iterable[GaussianField] | None = None,
    steps=(10, 20, 50, 100),
    targets=TARGETS,
    rtol: float = 0.1,
    deterministic: bool | None = None,
    target: Any = None,
    n_samples: int = N_SAMPLES,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device=None,
    reference: dict | None = None,
) -> Report:
    """Run every check on an already wrapped :class:`Runner` (see :func:`validate`)."""
    steps, targets = check_validate_args(steps, targets, rtol, n_samples)
    notes: list[CheckResult] = []
    if runner.info.get("family") == "consistency":  # one step always; the counts the scheduler accepts; Gaussian only
        steps, targets, notes = consistency_plan(runner, steps, targets)
    report = Report(runner.name, runner.adapter, info={"order": runner.order, **runner.info, "steps": list(steps)})
    report.results.extend(notes)
    if runner.adapter == "generator":
        if target is None:
            raise ValueError("the generator adapter needs target= (the distribution the generator samples)")
        if isinstance(target, Phi4Lattice):
            report.results.extend(phi4_lattice_check(runner, target, n_samples=n_samples, seed=seed,
                                                     reference=reference, dtype=dtype, device=device))
            return report
        if not isinstance(target, (GaussianField, TwoGaussianMixture, Phi4ZeroD)):
            raise TypeError("target must be a GaussianField, TwoGaussianMixture, Phi4ZeroD or Phi4Lattice, "
                            f"got {type(target).__name__}")
        fields_ = [target] if isinstance(target, GaussianField) else []
        targets = ("gaussian",) if fields_ else ("mixture",) if isinstance(target, TwoGaussianMixture) else ("phi4",)
        steps = steps[-1:]
        deterministic = False
    else:
        fields_ = list(default_fields() if fields is None else fields)
    try:
        _run_checks(report, runner, fields_, steps, targets, rtol, deterministic, target, n_samples, seed, dtype, device)
    except (SystemExit, GeneratorExit) as err:  # the user's code tried to end the program: a failed run, not an exit
        report.results.append(check_result("", "run", math.nan, math.nan, math.nan, "sampler must run", False,
                                           f"the sampler raised {type(err).__name__}({_exit_code(err)}): "
                                           "it tried to end the program"))
    return report


def _exit_code(err: BaseException) -> str:
    return repr(err.code) if isinstance(err, SystemExit) and err.code is not None else ""


def _run_checks(report: Report, runner: Runner, fields_: list, steps: tuple, targets: tuple, rtol: float,
                deterministic: bool | None, target: Any, n_samples: int, seed: int, dtype: torch.dtype, device) -> None:
    """The checks of :func:`validate_runner` on an argument-checked plan, appended to ``report``."""
    if deterministic is None:
        deterministic = runner.deterministic
    if deterministic is None:
        try:
            probe = fields_[0] if fields_ else TwoGaussianMixture()
            deterministic = is_deterministic(runner, probe, steps[0], dtype, device)
        except Exception as err:  # noqa: BLE001 - reported below as a failed check
            report.results.append(check_result("", "run", math.nan, math.nan, math.nan, "sampler must run", False,
                                               f"{type(err).__name__}: {err}"))
            return
    runner.deterministic = deterministic
    report.info["deterministic"] = deterministic
    if "gaussian" in targets:
        for f in fields_:
            res, series = gaussian_checks(runner, f, steps, rtol=rtol, deterministic=deterministic,
                                          n_samples=n_samples, seed=seed, dtype=dtype, device=device)
            report.results.extend(res)
            report.series[field_label(f)] = series
            if runner.info.get("family") == "consistency":  # replaces the order: err(N) at rounding for every N
                report.results.append(consistency_check(runner, f, series))
            elif runner.adapter != "generator":
                report.results.append(order_check(runner, f, series, deterministic=deterministic, dtype=dtype))
        if not deterministic and runner.noise_sampler is not None and fields_:
            report.results.append(weak_order_row(runner, fields_[0]))
        elif (not deterministic and runner.run_noise is not None and fields_
              and runner.info.get("family") != "consistency"):
            # denoiser / k-diffusion and diffusers: exact weak order by noise probing at N/2, N, 2N (N = steps[-1])
            report.results.append(probed_weak_order_row(runner, fields_[0], max(steps[-1] // 2, 1)))
    n_1d = max(1000, n_samples)
    if "mixture" in targets:
        mix = target if isinstance(target, TwoGaussianMixture) else TwoGaussianMixture(1.0, 0.5)
        report.results.extend(mixture_check(runner, mix, steps[-1], rtol=rtol, n_samples=4 * n_1d, seed=seed,
                                            dtype=dtype, device=device))
    if "phi4" in targets:
        phi4 = target if isinstance(target, Phi4ZeroD) else Phi4ZeroD(mu2=-1.0, g=0.4, n_grid=801)
        report.results.extend(phi4_check(runner, phi4, min(steps[-1], 50), rtol=rtol, n_samples=n_1d // 4,
                                         seed=seed, dtype=dtype, device=device))


def validate(
    sampler,
    adapter: str = "score",
    *,
    fields: Iterable[GaussianField] | None = None,
    steps=(10, 20, 50, 100),
    targets=TARGETS,
    rtol: float = 0.1,
    order: float | None = None,
    deterministic: bool | None = None,
    process: Process | None = None,
    start: str = "noise",
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    prediction_type: str | None = None,
    sampler_kwargs: dict | None = None,
    target: Any = None,
    n_samples: int = N_SAMPLES,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device=None,
    name: str | None = None,
    reference: dict | None = None,
) -> Report:
    """Validate ``sampler`` through ``adapter`` against exact answers; returns a :class:`Report` (module docstring)."""
    runner = make_runner(sampler, adapter, process=process, start=start, sigma_min=sigma_min, sigma_max=sigma_max,
                         rho=rho, prediction_type=prediction_type, sampler_kwargs=sampler_kwargs, order=order, name=name)
    return validate_runner(runner, fields=fields, steps=steps, targets=targets, rtol=rtol, deterministic=deterministic,
                           target=target, n_samples=n_samples, seed=seed, dtype=dtype, device=device,
                           reference=reference)


class CallableModule(types.ModuleType):
    """The class of the package module ``critdiff_ref.validate``: calling it calls :func:`validate`, while
    ``critdiff_ref.validate.Report`` etc. stay ordinary module attributes (the package is the entry point)."""

    def __call__(self, *args, **kwargs) -> Report:
        return validate(*args, **kwargs)
