"""What a DM-MCMC vs HMC comparison can see (THEORY 8, "Diffusion-model MCMC"; errors by the Gamma method).

The check: DM-MCMC's ``chi_2`` agrees with HMC's within ``Z_CHECK`` combined standard errors,
``|z| < Z_CHECK`` with ``z = (chi_2^DM - chi_2^HMC) / se``, ``se = sqrt(se_DM^2 + se_HMC^2)``. A relative bias
``b`` of the chain shifts ``z`` by ``b chi_2 / se``, so with ``Z ~ N(0, 1)`` the check fails with probability

    ``power(b) = P(|Z + b chi_2 / se| > Z_CHECK) = Phi(-Z_CHECK - s) + 1 - Phi(Z_CHECK - s)``,  ``s = b chi_2 / se``.

Standard errors of Markov-chain means fall as ``1 / sqrt(n)`` with the number of kept updates ``n``, so a
run whose power is below :data:`POWER_GOAL` needs ``(se_DM / se_DM*)^2`` times its DM-MCMC proposals, with
``se_DM*`` the DM-MCMC error at which the power reaches the goal (:func:`power_plan`).
"""

from __future__ import annotations

import math

__all__ = ["Z_CHECK", "BIAS", "POWER_GOAL", "power_against_bias", "se_for_power", "power_plan", "power_line",
           "format_seconds"]

Z_CHECK = 2.0  # the comparison's criterion: within 2 combined standard errors
BIAS = 0.1  # the relative chi_2 bias a comparison should be able to see
POWER_GOAL = 0.9  # ... with at least this probability


def _normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def power_against_bias(bias: float, se: float, z_check: float = Z_CHECK) -> float:
    """``P(|Z + bias / se| > z_check)``, ``Z ~ N(0, 1)``: the probability that a bias of ``bias`` fails the
    ``z_check``-SE check when the combined standard error is ``se`` (module docstring)."""
    if not (isinstance(se, (int, float)) and se > 0 and math.isfinite(se)):
        raise ValueError(f"se must be finite and > 0, got se={se!r}")
    if not (isinstance(bias, (int, float)) and math.isfinite(bias)):
        raise ValueError(f"bias must be a finite real, got bias={bias!r}")
    if not (isinstance(z_check, (int, float)) and 0 < z_check < math.inf):
        raise ValueError(f"z_check must be finite and > 0, got z_check={z_check!r}")
    shift = abs(bias) / se
    return _normal_cdf(-z_check - shift) + _normal_cdf(shift - z_check)


def se_for_power(bias: float, power: float = POWER_GOAL, z_check: float = Z_CHECK) -> float:
    """The largest combined standard error at which ``bias`` fails the check with probability ``power``
    (``power`` in ``(P(|Z| > z_check), 1)``): the root of :func:`power_against_bias` ``= power`` in ``se``
    (monotone in ``bias / se``; bisection to 1e-12 relative)."""
    floor = power_against_bias(0.0, 1.0, z_check)
    if not (floor < power < 1.0):
        raise ValueError(f"power must lie in ({floor:.4g}, 1), got power={power!r}")
    if not (math.isfinite(bias) and bias != 0):
        raise ValueError(f"bias must be finite and != 0, got bias={bias!r}")
    lo, hi = 0.0, z_check + 40.0  # shift = |bias| / se; power(40 + z) = 1 in float64
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if power_against_bias(mid, 1.0, z_check) < power else (lo, mid)
        if hi - lo <= 1e-12 * hi:
            break
    return abs(bias) / hi


def power_plan(chi2: float, se_dm: float, se_hmc: float, *, n_dm: int, seconds_per_dm: float | None = None,
               bias: float = BIAS, goal: float = POWER_GOAL, z_check: float = Z_CHECK) -> dict:
    """Power of a DM-MCMC vs HMC ``chi_2`` comparison against a relative ``bias`` and, when below ``goal``, what
    buys it: ``dm_factor`` times the ``n_dm`` kept DM-MCMC proposals (errors ~ 1/sqrt(n)) and their extra cost from
    ``seconds_per_dm`` per proposal; when HMC's error alone exceeds the goal's combined error (``hmc_limited``)
    both runs need ``hmc_factor = dm_factor = (se / se_goal)^2`` times their length.

    Returns ``{"power", "bias", "goal", "se", "se_goal", "enough", "dm_factor", "n_dm_needed", "extra_seconds",
    "hmc_limited", "hmc_factor"}`` (the last five ``None`` / ``False`` when the power is enough)."""
    for name, v in (("chi2", chi2), ("se_dm", se_dm), ("se_hmc", se_hmc)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {name}={v!r}")
    se = math.hypot(se_dm, se_hmc)
    out = {"bias": bias, "goal": goal, "z_check": z_check, "se": se, "n_dm": int(n_dm),
           "dm_factor": None, "n_dm_needed": None, "extra_seconds": None, "hmc_limited": False,
           "hmc_factor": None}
    if chi2 <= 0 or se_dm == 0:  # a frozen chain (no accepted move): its error says nothing, nothing is resolved
        return {**out, "power": float("nan"), "se_goal": float("nan"), "enough": False}
    power = power_against_bias(bias * chi2, se, z_check)
    se_goal = se_for_power(bias * chi2, goal, z_check)
    out.update(power=power, se_goal=se_goal, enough=power >= goal)
    if power >= goal:
        return out
    if se_hmc >= se_goal:  # more DM-MCMC alone cannot reach it: lengthen both runs by the same factor
        factor, hmc_factor = (se / se_goal) ** 2, (se / se_goal) ** 2
    else:
        factor, hmc_factor = (se_dm / math.sqrt(se_goal**2 - se_hmc**2)) ** 2, None
    needed = math.ceil(n_dm * factor)
    extra = None if seconds_per_dm is None else (needed - n_dm) * seconds_per_dm
    return {**out, "dm_factor": factor, "n_dm_needed": needed, "extra_seconds": extra,
            "hmc_limited": hmc_factor is not None, "hmc_factor": hmc_factor}


def format_seconds(seconds: float) -> str:
    """A duration for a person: seconds below 2 min, minutes below 2 h, else hours."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def power_line(plan: dict, *, more_dm: str, more_hmc: str) -> str:
    """One or two lines for a :func:`power_plan`: the power and, below the goal, the flags that buy it
    (``more_dm``: e.g. ``"--dm-iter 412"``; ``more_hmc``: the HMC flags when HMC limits the comparison)."""
    b, g, z = 100 * plan["bias"], plan["goal"], plan["z_check"]
    if not math.isfinite(plan["power"]):
        return (f"power against a {b:g} % chi_2 bias: undefined (the DM-MCMC chi_2 error is 0: its chains did not move, "
                f"or chi_2 is 0); this run cannot see a bias: train longer or raise {more_dm or 'the DM-MCMC run'}")
    head = (f"power against a {b:g} % chi_2 bias ({z:g}-SE check, combined SE {plan['se']:.3g}): "
            f"{plan['power']:.2f}")
    if plan["enough"]:
        return head + f" (>= {g:g})"
    head += f" < {g:g}: this run is too short to see a {b:g} % chi_2 bias reliably"
    cost = "" if plan["extra_seconds"] is None else f", about {format_seconds(plan['extra_seconds'])} more DM-MCMC"
    both = (f"; HMC's own error limits it too: {plan['hmc_factor']:.1f}x the HMC run ({more_hmc})"
            if plan["hmc_limited"] else "")
    return (head + f"\n  power >= {g:g} needs {plan['dm_factor']:.1f}x the DM-MCMC proposals "
                   f"({plan['n_dm']} -> {plan['n_dm_needed']} kept): {more_dm}{cost}{both}")
