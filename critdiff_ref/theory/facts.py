"""Exact facts of a target under a process, as plain numbers (the ``critdiff facts`` command).

For the Gaussian field (THEORY 2): mode variances ``c0``, ``C_t`` and score kernel ``K_t`` at the
lowest and highest modes, the condition number, and the variance a pure-noise start leaves
behind (THEORY 2, ``delta_0``).  For the mixtures (THEORY 6): cumulants ``kappa_2..kappa_8`` of
the forward marginal at each time.  For 0-D phi^4: moments by quadrature and the score at a few
points.
"""

from __future__ import annotations

import math

import torch

from ..processes import OU, VE, VP, Brownian
from ..scores import exact_score
from ..targets import GaussianField, Phi4ZeroD, TwoGaussianMixture

__all__ = ["TARGETS", "PROCESSES", "target_facts", "format_facts"]

PROCESSES = {"OU": OU, "VE": VE, "VP": VP, "Brownian": Brownian}
TARGETS = ("gaussian-field", "two-peak", "phi4-0d-single", "phi4-0d-double")


def _gaussian_field_facts(target: GaussianField, process, times) -> dict:
    mask = target.mode_mask()
    c0 = target.c0()[mask]
    # pure-noise start N(0, Xi(T)): delta_T = Xi(T) - C_T; the exact ODE leaves delta_T c0/C_T,
    # the exact SDE delta_T (c0/C_T)^2 exp(-2 Gamma(T)) in every mode (THEORY 2)
    C_T = target.mode_variance(process, process.T)[mask]
    delta_T = float(process.Xi(process.T)) - C_T
    ode = (delta_T * c0 / C_T / c0).abs().max().item()
    sde = (delta_T * (c0 / C_T) ** 2 * math.exp(-2 * float(process.Gamma(process.T))) / c0).abs().max().item()
    rows = []
    for t in times:
        C = target.mode_variance(process, t)[mask]
        rows.append(
            {
                "t": t,
                "a": float(process.a(t)),
                "Xi": float(process.Xi(t)),
                "C_t_min": C.min().item(),
                "C_t_max": C.max().item(),
                "condition_number": (C.max() / C.min()).item(),
                "K_t_at_lowest_mode": (-1.0 / C.max()).item(),
                "K_t_at_highest_mode": (-1.0 / C.min()).item(),
            }
        )
    return {
        "c0_min": c0.min().item(),
        "c0_max": c0.max().item(),
        "zero_mode_removed": target.zero_mode_removed,
        "real_space_variance_G0": target.real_space_covariance()[(0,) * target.d].item(),
        "pure_noise_start_ode_max_rel_variance_error": ode,
        "pure_noise_start_sde_max_rel_variance_error": sde,
        "times": rows,
    }


def _cumulant_facts(target: TwoGaussianMixture, process, times) -> dict:
    rows = []
    for t in times:
        m = target.marginal(process, t)
        rows.append({"t": t, **{f"kappa_{n}": m.cumulant(n) for n in (2, 4, 6, 8)}})
    return {"mu": target.mu, "s": target.s, "times": rows}


def _phi4_facts(target: Phi4ZeroD, process, times) -> dict:
    score = exact_score(target, process)
    x = torch.tensor([-2.0, -1.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    rows = [{"t": t, "x": x.tolist(), "score": score(x, t).tolist()} for t in times]
    return {"mu2": target.mu2, "g": target.g, **{f"moment_{n}": target.moment(n) for n in (2, 4, 6)}, "times": rows}


def target_facts(
    target: str, process: str, *, L: int = 16, d: int = 2, r: float = 0.0, times: list[float] | None = None
) -> dict:
    """Exact facts of ``target`` under ``process`` at ``times`` as a JSON-ready dict."""
    if process not in PROCESSES:
        raise ValueError(f"process must be one of {sorted(PROCESSES)}, got {process!r}")
    proc = PROCESSES[process]()
    times = [0.0, proc.T / 4, proc.T / 2, proc.T] if times is None else [float(t) for t in times]
    for t in times:
        if not 0.0 <= t <= proc.T:
            raise ValueError(f"times must lie in [0, T] = [0, {proc.T}], got t={t}")
    head = {"target": target, "process": repr(proc)}
    if target == "gaussian-field":
        return {**head, "L": L, "d": d, "r": r, **_gaussian_field_facts(GaussianField(L, d, r), proc, times)}
    if target == "two-peak":
        return {**head, **_cumulant_facts(TwoGaussianMixture(1.0, 0.5), proc, times)}
    if target in ("phi4-0d-single", "phi4-0d-double"):
        mu2 = 1.0 if target.endswith("single") else -1.0
        return {**head, **_phi4_facts(Phi4ZeroD(mu2, 0.4), proc, times)}
    raise ValueError(f"target must be one of {list(TARGETS)}, got {target!r}")


def format_facts(facts: dict) -> str:
    """A readable multi-line rendering of :func:`target_facts`."""
    lines = [f"target: {facts['target']}    process: {facts['process']}"]
    for key, val in facts.items():
        if key in ("target", "process", "times"):
            continue
        lines.append(f"  {key:28s} {val}")
    for row in facts["times"]:
        lines.append(f"  t = {row['t']:.6g}")
        for key, val in row.items():
            if key == "t":
                continue
            if isinstance(val, float):
                val = f"{val:.10g}"
            elif isinstance(val, list):
                val = "[" + ", ".join(f"{v:.6g}" for v in val) + "]"
            lines.append(f"    {key:26s} {val}")
    return "\n".join(lines)
