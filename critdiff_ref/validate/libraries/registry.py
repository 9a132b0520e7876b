"""The runners and adaptive checks of the solver-library samplers, for validate's registry and ``critdiff coverage``
(THEORY 1, 2).  One source: the method tables of :mod:`.odeint`, :mod:`.sdeint` and :mod:`.flow_matching_ode`.
"""

from __future__ import annotations

import importlib.util

from ...targets import GaussianField
from ..core import validate
from ..registry import LIBRARIES, make_runner
from ..report import Report
from .adaptive import adaptive_checks
from .flow_matching_ode import PATH_SCHEDULERS, flow_matching_sample
from .odeint import ADAPTIVE_ERROR_ORDERS, FIXED_STEP_ORDERS, odeint_probability_flow
from .sdeint import SDE_METHODS, sdeint_reverse_sde

__all__ = ["library_available", "library_notes", "library_runners", "library_adaptive_rows", "library_adaptive_reports", "library_table",
           "format_library_table"]

# flow_matching paths validated by default: the ones with exact ends (VP's start floor is not the solver's error)
FLOW_MATCHING_PATHS = tuple(k for k, v in PATH_SCHEDULERS.items() if v[2])
# fixed-step methods run on flow_matching paths; "rk4" and "heun*" evaluate the velocity at tau = 1, where the
# linear-VP path's velocity is infinite (sigma' -> -inf), so that path gets the methods that do not
FLOW_MATCHING_METHODS = {"linear_vp": ("euler", "midpoint")}


def library_available(library: str) -> bool:
    """Whether the optional solver library (a key of the registry's :data:`..registry.LIBRARIES`) is importable."""
    if library not in LIBRARIES:
        raise ValueError(f"library must be one of {tuple(LIBRARIES)}, got library={library!r}")
    return importlib.util.find_spec(LIBRARIES[library]) is not None


def library_notes() -> list[str]:
    """One line per solver library of the registry that is not installed, saying how to install it."""
    return [f"{lib}: not installed: pip install 'critdiff-ref[libraries]'" for lib in LIBRARIES
            if not library_available(lib)]


def library_runners(libraries=tuple(LIBRARIES)) -> list:
    """``[(name, Runner)]`` for every fixed-step method of each installed library among ``libraries``, with its
    documented order (validate's order check and, for torchsde, the exact weak-order row)."""
    out = []
    for lib in libraries:
        if not library_available(lib):
            continue
        if lib == "torchdiffeq":
            for method, order in FIXED_STEP_ORDERS.items():
                name = f"torchdiffeq.odeint[{method}]"
                out.append((name, make_runner(odeint_probability_flow, "score", sampler_kwargs={"method": method},
                                              order=order, name=name)))
        elif lib == "torchsde":
            for method, (_, _, order) in SDE_METHODS.items():
                name = f"torchsde.sdeint[{method}]"
                out.append((name, make_runner(sdeint_reverse_sde, "score", sampler_kwargs={"method": method},
                                              order=order, name=name)))
        else:
            for path in FLOW_MATCHING_PATHS:
                for method in FLOW_MATCHING_METHODS.get(path, ("euler", "midpoint", "rk4")):
                    name = f"flow_matching.ODESolver[{path},{method}]"
                    out.append((name, make_runner(flow_matching_sample, "velocity",
                                                  sampler_kwargs={"scheduler": path, "method": method},
                                                  order=FIXED_STEP_ORDERS[method], name=name)))
    return out


def library_adaptive_rows(methods=("dopri5", "bosh3"), libraries=("torchdiffeq", "flow-matching"), **kwargs) -> list:
    """The adaptive checks (:func:`.adaptive.adaptive_checks`) of ``methods`` for each installed library; keyword
    arguments go to :func:`.adaptive.adaptive_checks` (``field``, ``tolerances``, ``sizes``, ...)."""
    rows = []
    for lib in libraries:
        if not library_available(lib) or (lib == "flow-matching" and not library_available("torchdiffeq")):
            continue
        for method in methods:
            if method not in ADAPTIVE_ERROR_ORDERS:
                raise ValueError(f"methods must be among {tuple(ADAPTIVE_ERROR_ORDERS)}, got {method!r}")
            rows.extend(adaptive_checks(method, library=lib.replace("-", "_"), **kwargs))
    return rows


def library_adaptive_reports(rows=None) -> list[Report]:
    """The adaptive checks (``rows``, default :func:`library_adaptive_rows`) as one :class:`Report` per target
    (``torchdiffeq[dopri5]/adaptive``), in the rows' order: what ``critdiff validate --libraries`` prints."""
    reports: dict[str, Report] = {}
    for row in library_adaptive_rows() if rows is None else rows:
        reports.setdefault(row.target, Report(row.target, "adaptive")).results.append(row)
    return list(reports.values())


def library_table(runners=None, *, field=None, steps=(10, 20, 50, 100)) -> list:
    """One row per runner of :func:`library_runners` (or ``runners``): own relative covariance error at ``steps`` on
    ``field`` (default the critical d = 1, L = 16 field), observed order at the last two step counts, documented
    order, exact weak order (stochastic runners) and validate()'s verdict on that field, as plain dicts."""

    field = GaussianField(16, 1, 0.0) if field is None else field
    rows = []
    for name, runner in (library_runners() if runners is None else runners):
        report = validate(runner, fields=[field], targets=("gaussian",), steps=steps)
        by = {r.check: r for r in report.results}
        row = {"sampler": name, "documented": runner.order,
               "errors": [by[f"covariance@{n}"].measured if f"covariance@{n}" in by else float("nan") for n in steps],
               "order": by["order"].measured if "order" in by else float("nan"),
               "weak_order": by["weak_order"].measured if "weak_order" in by else None,
               "failed": [k for k, r in by.items() if r.passed is False]}
        rows.append(row)
    return rows


def format_library_table(rows, steps=(10, 20, 50, 100)) -> str:
    """:func:`library_table` rows as a Markdown table."""
    head = ("| sampler | " + " | ".join(str(n) for n in steps)
            + " | observed order | documented | weak order (exact) | validate |")
    lines = [head, "|" + "---|" * (len(steps) + 5)]
    for r in rows:
        errs = " | ".join(f"{e:.2g}" for e in r["errors"])
        weak = "-" if r["weak_order"] is None else f"{r['weak_order']:.2f}"
        verdict = "pass" if not r["failed"] else "FAIL: " + ", ".join(r["failed"])
        lines.append(f"| {r['sampler']} | {errs} | {r['order']:.2f} | {r['documented']:g} | {weak} | {verdict} |")
    return "\n".join(lines)
