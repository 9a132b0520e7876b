"""Training the linear score networks of :mod:`critdiff_ref.trainers.linear` (THEORY 3, 4, 5): gradient descent, heavy
ball or Adam on the exact population loss (or DSM), with per-step mode errors, score errors and
losses, the step at which every mode reaches a relative accuracy, and the kernel error of a trained
model.  Loss normalisation: see :mod:`critdiff_ref.trainers.linear`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field as dc_field

import numpy as np
import torch
from torch import nn

from ..processes import Process, check_time
from ..targets import GaussianField
from .linear import (
    OPTIMIZERS,
    _check_model_field,
    _model_device,
    _model_dtype,
    dsm_loss,
    effective_kernel,
    population_loss,
    score_multiplier,
)

__all__ = ["TrainingReport", "train", "kernel_error", "train_per_time"]


@dataclass(frozen=True)
class TrainingReport:
    """Result of :func:`train`: per-mode relative errors ``|w_k - K_k| / |K_k|`` over fluctuating modes,
    the relative score error ``sqrt(sum C |w - K|^2 / sum C |K|^2)`` per step (index 0 = start),
    the population loss per step, and the first step at which every mode is below ``eps`` (or None)."""

    mode_errors: torch.Tensor
    score_errors: np.ndarray
    losses: np.ndarray
    steps_to_accuracy: int | None
    multipliers: list = dc_field(default_factory=list)


def _make_optimizer(params, optimizer: str, lr: float, momentum: float) -> torch.optim.Optimizer:
    if optimizer == "gd":
        return torch.optim.SGD(params, lr=lr)
    if optimizer == "momentum":
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got momentum={momentum}")
        return torch.optim.SGD(params, lr=lr, momentum=momentum)  # heavy ball: p' = p - lr g + beta (p - p_prev)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")


def train(
    model: nn.Module,
    target: GaussianField,
    process: Process,
    t: float,
    *,
    steps: int,
    lr: float,
    optimizer: str = "gd",
    momentum: float = 0.0,
    objective: str = "population",
    batch_size: int = 64,
    generator: torch.Generator | None = None,
    eps: float = 1e-2,
    record_multipliers: bool = False,
) -> TrainingReport:
    """Train a linear score at diffusion time ``t`` by GD / heavy-ball momentum / Adam (THEORY 3, 4, 5).

    ``objective="population"``: full-batch on the exact loss (:func:`population_loss`);
    ``"dsm"``: Monte-Carlo denoising score matching on fresh minibatches (:func:`dsm_loss`).
    """
    _check_model_field(model, target)
    check_time(process, t)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got steps={steps!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be finite and > 0, got lr={lr!r}")
    if objective not in ("population", "dsm"):
        raise ValueError(f"objective must be 'population' or 'dsm', got {objective!r}")
    opt = _make_optimizer(model.parameters(), optimizer, float(lr), float(momentum))
    dtype, device = _model_dtype(model), _model_device(model)
    C = target.mode_variance(process, t, dtype=dtype, device=device)
    K = target.score_kernel(process, t, dtype=dtype, device=device)
    mask = target.mode_mask(device=device)
    norm = float((C * K.abs() ** 2).sum())
    losses, score_errors, mults = [], [], []
    reached: int | None = None

    def observe(n: int) -> torch.Tensor:
        nonlocal reached
        with torch.no_grad():
            w = score_multiplier(model)
            sq = float((C * (w - K).abs() ** 2).sum())
            losses.append(0.5 * sq / (target.V if model.loss_scale_is_per_site else 1.0))
            score_errors.append(math.sqrt(sq / norm))
            rel = ((w - K).abs() / K.abs().clamp_min(torch.finfo(dtype).tiny))[mask]
            if reached is None and bool((rel < eps).all()):
                reached = n
            if record_multipliers:
                mults.append(w.detach().clone())
            return rel

    rel = observe(0)
    for n in range(1, steps + 1):
        opt.zero_grad()
        if objective == "population":
            loss = population_loss(model, target, process, t)
        else:
            loss = dsm_loss(model, target, process, t, batch_size, generator)
        loss.backward()
        opt.step()
        rel = observe(n)
    return TrainingReport(rel, np.asarray(score_errors), np.asarray(losses), reached, mults)


def kernel_error(model: nn.Module, target: GaussianField, process: Process, t: float) -> float:
    """Relative Euclidean kernel error ``||K_net - K_t|| / ||K_t||`` over all sites (THEORY 5, network version).

    ``K_net`` is :func:`effective_kernel`, ``K_t`` the exact real-space score kernel.  At ``r = 0`` the constant
    (k = 0) part of ``K_net`` is removed first (``K_t`` has none, and it does not act on the field), so by Parseval
    this is ``sqrt(sum_{k != 0} |w_k - K_t(k)|^2 / sum_k |K_t(k)|^2)``.
    """
    _check_model_field(model, target)
    check_time(process, t)
    with torch.no_grad():
        K_net = effective_kernel(model).to(torch.float64).cpu()
    if target.zero_mode_removed:  # a constant kernel shift does not act on a zero-mode-free field: project it out
        K_net = K_net - K_net.mean()
    K_t = target.real_space_score_kernel(process, t)
    return float(torch.linalg.vector_norm(K_net - K_t) / torch.linalg.vector_norm(K_t))


def train_per_time(
    make_model, target: GaussianField, process: Process, times, *, steps: int, lr: float, optimizer: str = "adam", **kwargs
) -> list:
    """Train a fresh model at each diffusion time, no time embedding (THEORY 5 network version).

    ``make_model()`` returns a new model (e.g. ``lambda: LocalScoreNet(L, d, ell, generator=g)``); the remaining
    arguments go to :func:`train`.  Returns ``[(t, model, TrainingReport), ...]`` in the order of ``times``.
    """
    times = [float(t) for t in times]
    if not times:
        raise ValueError("times must hold at least one diffusion time")
    out = []
    for t in times:
        model = make_model()
        out.append((t, model, train(model, target, process, t, steps=steps, lr=lr, optimizer=optimizer, **kwargs)))
    return out
