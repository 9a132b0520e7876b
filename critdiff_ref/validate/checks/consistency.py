"""The consistency check (THEORY 1 "Consistency functions", THEORY 2): a consistency sampler run on the
exact consistency function gives the exact law of the ideal consistency sampler at every step count, so
its own error must be at rounding at every count, the one-step count included; it replaces the order
check for this family (runners: :mod:`critdiff_ref.validate.runners.diffusers.consistency`).
"""

from __future__ import annotations

import math

import torch

from ...targets import GaussianField
from ..runners.base import Runner
from ..runners.execute import field_label
from .result import CheckResult, check_result

__all__ = ["ROUNDING_PER_STEP", "consistency_plan", "consistency_check"]

# Rounding tolerance per step of the schedulers' float32 tables (alphas_cumprod, sigmas, timesteps):
# each step's gain and noise coefficients carry a few float32 roundings; 1e2 * N * eps(float32) is the
# bound validate() already uses for the linearity of diffusers schedulers (x10 margin over ~10 flops/step).
ROUNDING_PER_STEP = 1e2 * torch.finfo(torch.float32).eps


def consistency_plan(runner: Runner, steps: tuple[int, ...], targets) -> tuple[tuple[int, ...], tuple, list]:
    """Step counts and targets validate() uses for a consistency runner, and informational rows saying why.

    The one-step count is always added (a one-step sample must already have the target law); counts the
    scheduler refuses (``N > max_steps``) are dropped; non-Gaussian targets are not applicable.
    """
    max_steps = int(runner.info.get("max_steps", 10**9))
    kept = tuple(sorted({1, *(n for n in steps if n <= max_steps)}))
    notes = []
    dropped = [n for n in steps if n > max_steps]
    if dropped:
        notes.append(check_result(
            "consistency", "steps", float(max_steps), math.nan, math.nan, "the scheduler's own limit", None,
            f"{runner.name} refuses N > {max_steps}: step counts {dropped} not run; checked at {list(kept)}"))
    rest = tuple(t for t in targets if t != "gaussian")
    if rest:
        notes.append(check_result(
            "consistency", "non_gaussian", math.nan, math.nan, math.nan, "not applicable", None,
            f"targets {list(rest)} skipped: the exact consistency function (PF-ODE flow map) is closed-form "
            "only for Gaussian fields"))
    return kept, tuple(t for t in targets if t == "gaussian"), notes


def consistency_check(runner: Runner, field: GaussianField, series: dict) -> CheckResult:
    """The consistency check: the scheduler's own error (against :func:`critdiff_ref.validate.runners.diffusers.consistency.exact_law`) at every step count,
    one step included, is at rounding: ``err(N) <= 1e2 N eps(float32) + 3 MC SE(N)``.

    An error growing (or merely nonzero) with ``N`` fails it.  ``measured`` and ``tolerance`` are ``err`` and
    ``tol`` at the step count with the largest ``err / tol``; ``data`` holds every ``(N, err, tol)``.
    """
    label = field_label(field)
    steps, err, noise = series["steps"], series["own_error"], series["noise"]
    if not steps:
        return check_result(label, "consistency", math.nan, 0.0, math.nan, "needs >= 1 step count", False,
                            "no step count ran", field=field)
    tols = [ROUNDING_PER_STEP * n + 3.0 * s for n, s in zip(steps, noise)]
    worst = max(range(len(steps)), key=lambda i: err[i] / tols[i])
    passed = all(e <= t for e, t in zip(err, tols))
    detail = "own error vs steps: " + ", ".join(f"{n}: {e:.2g}" for n, e in zip(steps, err))
    if not passed:
        detail += " -- the error drifts with the number of steps: the step or its re-noising is not law-preserving"
    return check_result(label, "consistency", err[worst], 0.0, tols[worst],
                        "rounding: 1e2 N eps(float32) (the scheduler's float32 tables) + 3 Monte Carlo SE where not probed",
                        passed, detail, {"steps": list(steps), "own_error": list(err), "tolerance": tols}, field=field)
