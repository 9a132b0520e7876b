"""Critical slowing down of training with a user's objective and optimiser (THEORY 3).

The objective's quadratic form at one noise level, measured on the critical field for each ``L``
(:func:`~.fit.fit_quadratic`), is ``1/2 sum_k H_k (theta_k - theta*_k)^2``: the one-layer linear
problem of THEORY 3 with ``C_k`` replaced by the curvature ``H_k`` (proportional to ``C_t(k)`` for any
squared loss on a model linear in ``x_t``).  A torch optimiser (SGD with ``lr`` in units of
``1 / max_k H_k``, momentum, or Adam) runs on it from ``theta = 0``; the steps until each mode's
relative error stays below ``eps`` are counted.  For SGD they equal THEORY 3's
``min{n : |1 - eta H_k|^n < eps}`` exactly (``H_k`` = the mode's multiplicity, 2 for a pair
``{k, -k}`` sharing one parameter and 1 for a self-conjugate mode, times ``C_t(k)``), and the slowest mode needs ~ L^2 steps at small noise
(condition number ``(4d + r) / khat^2_min``); Adam's per-parameter scaling is diagonal in exactly this
Fourier basis and removes the L dependence.  The zero mode (noise only, curvature ``sigma^2``) is left
out: its rate depends on ``sigma``, not on ``L``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..targets.gaussian_field import GaussianField
from ..theory.linear import one_layer_steps
from .family import FourierLinearModel
from .fit import Objective, fit_quadratic
from .spec import ModelSpec

__all__ = ["SlowingResult", "training_steps", "OPTIMIZERS"]

OPTIMIZERS = ("sgd", "momentum", "adam")


@dataclass(frozen=True)
class SlowingResult:
    """Steps to accuracy of the slowest nonzero mode per ``L``, the THEORY 3 count for the measured
    curvatures (SGD only), THEORY 3's count for SGD with the exact ``C_t(k)`` (at this ``lr``; at
    ``eta = 1 / max C`` for the other optimisers, as the reference), and the log-log slopes
    (dynamic exponents) of the measured and the theory counts."""

    L: tuple[int, ...]
    optimizer: str
    lr: float
    eps: float
    level: int
    slowest_steps: tuple[int, ...]
    theory_steps: tuple[int, ...]
    exact_steps: tuple[int, ...]
    exponent: float
    theory_exponent: float


def _run(H: torch.Tensor, target: torch.Tensor, optimizer, lr: float, eps: float, max_steps: int) -> np.ndarray:
    """Per-mode steps until ``|theta - theta*| / |theta*|`` stays below ``eps`` (``max_steps + 1``: never)."""
    theta = torch.zeros_like(target, requires_grad=True)
    if callable(optimizer):
        opt = optimizer([theta])
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f"optimizer(params) must return a torch.optim.Optimizer, got {type(opt).__name__}")
    elif optimizer == "adam":
        opt = torch.optim.Adam([theta], lr=lr)
    else:
        opt = torch.optim.SGD([theta], lr=lr / float(H.max()), momentum=0.9 if optimizer == "momentum" else 0.0)
    last_bad = np.zeros(target.numel(), dtype=np.int64)
    for n in range(1, max_steps + 1):
        if n > 2 * last_bad.max() + 100:  # every mode has stayed accurate for as long again as it took
            break
        opt.zero_grad()
        loss = 0.5 * (H * (theta - target) ** 2).sum()
        loss.backward()
        opt.step()
        with torch.no_grad():
            bad = ((theta - target).abs() >= eps * target.abs()).numpy()
        last_bad[bad] = n
    return last_bad + 1


def training_steps(
    objective: Objective,
    spec: ModelSpec,
    L_values: tuple[int, ...] = (8, 12, 16, 24),
    *,
    level: int = 0,
    optimizer: str | Callable[[list], torch.optim.Optimizer] = "sgd",
    lr: float = 1.0,
    eps: float = 1e-2,
    max_steps: int = 20000,
    n_batches: int = 8,
    batch_size: int = 1024,
    seed: int = 0,
) -> SlowingResult:
    """Steps to accuracy ``eps`` vs ``L`` at criticality (``d = 2``, ``r = 0``) for the objective's quadratic
    form at conditioning index ``level`` (THEORY 3).  ``optimizer``: one of :data:`OPTIMIZERS` (``lr``: SGD and
    momentum in units of ``1 / max H``, where ``max H`` is normalised to 1; Adam absolute) or your own
    ``params -> torch.optim.Optimizer`` (the curvatures are normalised so that ``max_k H_k = 1``)."""
    if not callable(optimizer) and optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if not 0 <= level < spec.n_levels:
        raise ValueError(f"level must lie in [0, {spec.n_levels - 1}], got level={level}")
    if len(L_values) < 2:
        raise ValueError(f"need at least two lattice sizes, got L_values={L_values}")
    slowest, theory, exact = [], [], []
    for i, L in enumerate(L_values):
        field = GaussianField(int(L), 2, 0.0)
        model = FourierLinearModel(spec, field)
        gen = torch.Generator().manual_seed(seed + i)
        fit = fit_quadratic(objective, model, lambda n, g: field.sample(n, g, dtype=torch.float64),
                            n_batches=n_batches, batch_size=batch_size, generator=gen)
        if fit.counts[level] < 1:
            raise ValueError(f"the objective never visited level {level}; raise n_batches or batch_size")
        H = fit.curvature[level, :, 0, 0]
        keep = model.mode_variances() > 0  # leave out the zero mode (noise only)
        H, target = H[keep] / H[keep].max(), fit.theta[level, keep, 0]
        steps = _run(H, target, optimizer, lr, eps, max_steps)
        slowest.append(int(steps.max()))
        theory.append(int(np.max(one_layer_steps(H.numpy(), lr, eps))) if optimizer == "sgd" else -1)
        # one parameter per pair {k, -k}: its curvature counts both modes (self-conjugate modes once)
        multiplicity = torch.bincount(model.mode_class.reshape(-1)).to(torch.float64)
        C = (multiplicity * (spec.alpha[level] ** 2 * model.mode_variances() + spec.sigma[level] ** 2))[keep]
        exact.append(int(np.max(one_layer_steps((C / C.max()).numpy(), lr if optimizer == "sgd" else 1.0, eps))))
    logL = np.log(np.asarray(L_values, dtype=np.float64))
    exponent = float(np.polyfit(logL, np.log(slowest), 1)[0])
    th_exp = float(np.polyfit(logL, np.log(theory), 1)[0]) if optimizer == "sgd" else float("nan")
    name = optimizer if isinstance(optimizer, str) else getattr(optimizer, "__name__", "custom")
    return SlowingResult(tuple(int(L) for L in L_values), name, float(lr), float(eps), int(level),
                         tuple(slowest), tuple(theory), tuple(exact), exponent, th_exp)
