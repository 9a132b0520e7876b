"""Discrete targets: two deltas (Curie–Weiss) and empirical data sets (THEORY 7).

For a discrete ``p_0`` the posterior of the clean point given ``x_t = x`` is a Boltzmann
ensemble over the data, ``w_j ∝ exp(-|x - a y_j|^2 / (2 Xi))``; the exact score is Tweedie's
``(a <y> - x) / Xi`` and its Jacobian ``-I/Xi + a^2 Cov_post / Xi^2`` (THEORY 7, general process).
These are defined for ``t > 0`` only (at ``t = 0`` the density is a sum of deltas).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..processes import Process, check_time

__all__ = ["TwoDeltas", "EmpiricalDataset", "noise_level"]


def noise_level(process: Process, t: float) -> tuple[float, float]:
    """``(a(t), Xi(t))`` for a scalar time ``t > 0`` (discrete targets need ``Xi > 0``)."""
    check_time(process, t)
    t = float(t)
    Xi = float(process.Xi(t))
    if not Xi > 0.0:
        raise ValueError(f"t must be > 0 for a discrete target (Xi(t) = 0 at t={t})")
    return float(process.a(t)), Xi


@dataclass(frozen=True)
class TwoDeltas:
    """``p_0 = 1/2 (delta_{-mu} + delta_{+mu})`` acting elementwise (THEORY 7; ``mu = 1`` there)."""

    mu: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.mu, bool) or not isinstance(self.mu, (int, float)):
            raise TypeError(f"mu must be a real number > 0, got {self.mu!r}")
        mu = float(self.mu)
        if not (math.isfinite(mu) and mu > 0):
            raise ValueError(f"mu must be finite and > 0, got mu={mu}")
        object.__setattr__(self, "mu", mu)

    def posterior_mean(self, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
        """``<y> = mu tanh(a mu x / Xi)`` (Brownian: ``tanh(beta x)`` with ``beta = 1/(t sigma^2)``)."""
        a, Xi = noise_level(process, t)
        return self.mu * torch.tanh(a * self.mu * x / Xi)

    def score(self, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
        """Tweedie: ``(a <y> - x) / Xi``."""
        a, Xi = noise_level(process, t)
        return (a * self.posterior_mean(x, process, t) - x) / Xi

    def log_marginal(self, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
        """``log(1/2 N(x; a mu, Xi) + 1/2 N(x; -a mu, Xi))`` elementwise."""
        a, Xi = noise_level(process, t)
        lp = -((x - a * self.mu) ** 2) / (2 * Xi)
        lm = -((x + a * self.mu) ** 2) / (2 * Xi)
        return torch.logaddexp(lp, lm) - math.log(2.0) - 0.5 * math.log(2 * math.pi * Xi)

    def sample(
        self,
        shape: tuple[int, ...] | int,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if generator is not None and device is None:
            device = generator.device
        return self.mu * (torch.randint(0, 2, shape, generator=generator, device=device).to(dtype) * 2 - 1)


@dataclass(frozen=True, eq=False)
class EmpiricalDataset:
    """Uniform distribution over ``N`` points ``y_j`` of any event shape: ``points`` is ``(N, *event)``.

    The exact score of the noised data set is a softmax-weighted (modern Hopfield) average (THEORY 7).
    """

    points: torch.Tensor
    event_ndim: int = field(init=False)

    def __post_init__(self) -> None:
        p = self.points
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"points must be a torch.Tensor of shape (N, *event), got {type(p).__name__}")
        if p.ndim < 2 or p.shape[0] < 1:
            raise ValueError(f"points must have shape (N, *event) with N >= 1 and an event axis, got {tuple(p.shape)}")
        if not p.is_floating_point() or not bool(torch.isfinite(p).all()):
            raise ValueError("points must be a finite floating-point tensor")
        object.__setattr__(self, "event_ndim", p.ndim - 1)

    @property
    def N(self) -> int:
        return self.points.shape[0]

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.points.shape[1:])

    @property
    def D(self) -> int:
        return math.prod(self.event_shape)

    def _flat(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
        if tuple(x.shape[x.ndim - self.event_ndim :]) != self.event_shape:
            raise ValueError(f"x must have shape (*batch, {self.event_shape}), got {tuple(x.shape)}")
        batch = tuple(x.shape[: x.ndim - self.event_ndim])
        y = self.points.to(dtype=x.dtype, device=x.device).reshape(self.N, self.D)
        return x.reshape(-1, self.D), y, batch

    def log_weights(self, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
        """Posterior log-weights ``log w_j(x)``, shape ``(*batch, N)``, normalised over j."""
        a, Xi = noise_level(process, t)
        xf, y, batch = self._flat(x)
        logits = -torch.cdist(xf, a * y).pow(2) / (2 * Xi)
        return torch.log_softmax(logits, dim=-1).reshape(*batch, self.N)

    def posterior_mean(self, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
        """``<y>_{x,t} = sum_j w_j y_j``, shape like ``x``."""
        w = self.log_weights(x, process, t).exp()
        y = self.points.to(dtype=x.dtype, device=x.device).reshape(self.N, self.D)
        return (w.reshape(-1, self.N) @ y).reshape(x.shape)

    def posterior_covariance(self, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
        """``Cov_post(y | x) = sum_j w_j y_j y_j^T - <y><y>^T``, shape ``(*batch, D, D)`` (flattened events)."""
        w = self.log_weights(x, process, t).exp().reshape(-1, self.N)
        y = self.points.to(dtype=x.dtype, device=x.device).reshape(self.N, self.D)
        mean = w @ y
        second = torch.einsum("bj,jm,jn->bmn", w, y, y)
        cov = second - mean[:, :, None] * mean[:, None, :]
        batch = tuple(x.shape[: x.ndim - self.event_ndim])
        return cov.reshape(*batch, self.D, self.D)

    def score(self, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
        """Tweedie: ``(a <y> - x) / Xi`` (THEORY 7)."""
        a, Xi = noise_level(process, t)
        return (a * self.posterior_mean(x, process, t) - x) / Xi

    def log_marginal(self, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
        """``log p_t(x) = logsumexp_j(-|x - a y_j|^2 / (2 Xi)) - log N - (D/2) log(2 pi Xi)``, shape ``(*batch,)``."""
        a, Xi = noise_level(process, t)
        xf, y, batch = self._flat(x)
        logits = -torch.cdist(xf, a * y).pow(2) / (2 * Xi)
        out = torch.logsumexp(logits, dim=-1) - math.log(self.N) - 0.5 * self.D * math.log(2 * math.pi * Xi)
        return out.reshape(batch)

    def participation_ratio(self, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
        """``Y = sum_j w_j^2`` (1 when one point dominates, 1/N when all weigh the same)."""
        return (2 * self.log_weights(x, process, t)).exp().sum(dim=-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` points drawn uniformly with replacement, shape ``(n, *event)``."""
        idx = torch.randint(0, self.N, (n,), generator=generator, device=self.points.device)
        return self.points[idx]
