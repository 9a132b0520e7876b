"""Convergence-order checks (THEORY 1, 2 "Discretized samplers"): the observed order of the own covariance
error against the documented order, and the exact weak order of stochastic samplers by linear probing
(score samplers taking ``noise=``) or noise probing (any runner with ``run_noise``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...samplers import score_kernel_fn, stiffness
from ...samplers.sde_order import fit_order, weak_order_check
from ...targets import GaussianField
from ..runners.base import Runner
from ..runners.execute import field_label
from .covariance import floor_variance, fourier_matrix
from .probes import probe_noise_covariance
from .result import CheckResult, check_result

__all__ = ["observed_order", "order_check", "WEAK_ORDER_BAND", "weak_order_row", "probed_weak_order_row"]


def observed_order(steps, errors) -> float:
    """Least-squares slope of ``-log(error)`` against ``log(steps)``."""
    x, y = np.log(np.asarray(steps, float)), np.log(np.asarray(errors, float))
    return float(-np.polyfit(x, y, 1)[0])


def order_check(runner: Runner, field: GaussianField, series: dict, *, deterministic: bool,
                dtype=torch.float64) -> CheckResult:
    """Observed order over the two largest step counts vs the documented order (band 0.5); ``series`` as
    returned by :func:`.covariance.gaussian_checks` for ``field``."""
    label = field_label(field)
    steps, err, noise = series["steps"], series["own_error"], series["noise"]
    if len(steps) < 2:
        # one step count asked for (or the runs failed, which the covariance rows already report)
        return check_result(label, "order", math.nan, runner.order or math.nan, 0.5, "needs >= 2 step counts", None,
                            "fewer than two step counts ran successfully", field=field)
    use = list(range(len(steps)))[-2:]
    s = [steps[i] for i in use]
    e = [err[i] for i in use]
    floor = max(1e4 * torch.finfo(dtype).eps, *(3.0 * noise[i] for i in use))
    if min(e) <= floor:
        return check_result(label, "order", math.nan, runner.order or math.nan, 0.5,
                            "errors at the rounding / Monte Carlo floor: order not measurable", None,
                            f"errors {['%.2g' % v for v in e]} <= floor {floor:.2g}", field=field)
    p = observed_order(s, e)
    doc = runner.order
    if doc is None:
        return check_result(label, "order", p, 0.5, 0.0, "no documented order: must converge (order >= 0.5)", p >= 0.5,
                            f"errors {['%.3g' % v for v in e]} at steps {s}", field=field)
    return check_result(label, "order", p, float(doc), 0.5,
                        "documented order - 0.5: pre-asymptotic band (references euler/heun/rk4 pass on these grids)",
                        p >= doc - 0.5, f"errors {['%.3g' % v for v in e]} at steps {s}", field=field)


# -- weak order ----------------------------------------------------------------------------------
WEAK_ORDER_BAND = 0.3  # the width of the one-sided probed weak-order row (as samplers.sde_order.weak_order_check's band)


def probed_weak_order_row(runner, field, steps: int):
    """Weak order of a stochastic runner with ``run_noise``, exact: the row ``gauss[...]/weak_order`` (module docstring).

    ``steps``: the smallest step count ``N``; runs ``N, 2N, 4N``.  Passed when the fitted order is at least the
    documented one minus :data:`WEAK_ORDER_BAND` (informational when the order is unknown).
    """
    label = field_label(field)
    ns = (int(steps), 2 * int(steps), 4 * int(steps))
    errors = []
    try:
        mask = field.mode_mask()
        for n in ns:
            probed = probe_noise_covariance(runner, field, n)
            if probed is None:
                return check_result(label, "weak_order", math.nan, math.nan, math.nan, "exact noise probing", None,
                                    "noise cannot be probed at these step counts (too many draws): no weak-order row",
                                    field=field)
            v = fourier_matrix(field, probed[0]).diagonal().real.reshape(field.shape)
            floor = floor_variance(runner, field, n)
            errors.append(float((v[mask] / floor[mask] - 1.0).abs().max()))
        fit = fit_order(ns, errors)
    except Exception as err:  # noqa: BLE001 - a sampler that cannot be probed is reported, not raised
        return check_result(label, "weak_order", math.nan, math.nan, math.nan, "exact noise probing", False,
                            f"{type(err).__name__}: {err}", field=field)
    detail = f"weak errors max_k |v/v_flow - 1| {[f'{e:.3g}' for e in errors]} at steps {list(ns)}"
    source = ("exact per-mode variances (noise probing, no sampling noise); documented order - 0.3: band for the "
              "pre-asymptotic drift of a slope fitted over 3 doublings")
    if runner.order is None:
        return check_result(label, "weak_order", fit.order, math.nan, WEAK_ORDER_BAND, source, None,
                            detail + " (documented order unknown)", field=field)
    return check_result(label, "weak_order", fit.order, float(runner.order), WEAK_ORDER_BAND, source,
                        fit.order >= float(runner.order) - WEAK_ORDER_BAND, detail, field=field)


def weak_order_row(runner: Runner, field: GaussianField) -> CheckResult:
    """Weak order of a stochastic score sampler that takes ``noise=``, exact (linear probing, no sampling noise).

    Steps ``N0, 2 N0, 4 N0`` with ``N0`` the smallest power of two whose largest per-mode rate satisfies
    ``h * stiffness <= 1/8`` (the asymptotic regime); passed when the fitted order is within 0.3 of the
    documented one (informational when the order is unknown).  See :mod:`critdiff_ref.samplers.sde_order`.
    """
    label = field_label(field)
    process = runner.schedule(field, 1).process
    n0 = 16
    rate = stiffness(score_kernel_fn(field, process), process, sde=True)
    while float(process.T) / n0 * rate > 0.125 and n0 < 4096:
        n0 *= 2
    try:
        row = weak_order_check(runner.noise_sampler, field, process, steps=(n0, 2 * n0, 4 * n0),
                               order=runner.order or 1.0)
    except Exception as err:  # noqa: BLE001 - a sampler that cannot be probed is reported, not raised
        return check_result(label, "weak_order", math.nan, math.nan, math.nan, "linear probing", False,
                            f"{type(err).__name__}: {err}", field=field)
    if runner.order is None:
        row.update(passed=None, reference=math.nan, detail=row["detail"] + " (documented order unknown)")
    return check_result(label, "weak_order", row["measured"], row["reference"], row["tolerance"], row["tolerance_source"],
                        row["passed"], row["detail"], field=field)
