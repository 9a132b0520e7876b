"""One-dimensional Gaussian mixtures and the symmetric two-peak mixture (THEORY 6).

Scalar targets act elementwise: a tensor of any shape is a batch of independent draws (on a
lattice, independently per site).  Under any linear forward process a mixture stays a mixture:
means ``a m_i`` and variances ``a^2 s_i^2 + Xi``; cumulants obey ``kappa_2(t) = a^2 kappa_2 + Xi``
and ``kappa_n(t) = a^n kappa_n`` for ``n >= 3``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from math import comb

import numpy as np
import torch

from ..processes import Process, check_time

__all__ = ["GaussianMixture1D", "TwoGaussianMixture", "moments_to_cumulants", "normal_moments"]


def _real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {name}={value}")
    return value


def _order(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"cumulant order n must be an int >= 1, got n={n!r}")
    return int(n)


def normal_moments(mean: float, var: float, n_max: int) -> list[Fraction]:
    """Raw moments ``E[X^n]``, n = 0..n_max, of ``N(mean, var)`` as exact rationals of the float inputs.

    Recursion ``m_n = mean m_{n-1} + (n - 1) var m_{n-2}``.
    """
    mu, v = Fraction(mean), Fraction(var)
    m = [Fraction(1), mu]
    for n in range(2, n_max + 1):
        m.append(mu * m[n - 1] + (n - 1) * v * m[n - 2])
    return m[: n_max + 1]


def moments_to_cumulants(m: list) -> list:
    """Cumulants ``kappa_1..kappa_N`` from raw moments ``m_0 = 1, m_1..m_N``.

    Recursion ``kappa_n = m_n - sum_{k=1}^{n-1} C(n-1, k-1) kappa_k m_{n-k}``; exact for rationals.
    """
    N = len(m) - 1
    kappa = [None] * (N + 1)
    for n in range(1, N + 1):
        kappa[n] = m[n] - sum(comb(n - 1, k - 1) * kappa[k] * m[n - k] for k in range(1, n))
    return kappa[1:]


@dataclass(frozen=True)
class GaussianMixture1D:
    """``p_0(x) = sum_i w_i N(x; m_i, s_i^2)`` (THEORY 6). ``weights`` sum to 1, ``stds > 0``."""

    weights: tuple[float, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]

    def __post_init__(self) -> None:
        w = tuple(_real("weights[i]", x) for x in np.atleast_1d(np.asarray(self.weights, dtype=object)))
        m = tuple(_real("means[i]", x) for x in np.atleast_1d(np.asarray(self.means, dtype=object)))
        s = tuple(_real("stds[i]", x) for x in np.atleast_1d(np.asarray(self.stds, dtype=object)))
        if not (len(w) == len(m) == len(s) >= 1):
            raise ValueError(
                f"weights, means and stds must have the same length >= 1, got {len(w)}, {len(m)}, {len(s)}"
            )
        if any(x <= 0 for x in w):
            raise ValueError(f"weights must be > 0, got weights={w}")
        if abs(sum(w) - 1.0) > 1e-9:
            raise ValueError(f"weights must sum to 1 (within 1e-9), got sum={sum(w)!r}")
        if any(x <= 0 for x in s):
            raise ValueError(f"stds must be > 0, got stds={s}")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "means", m)
        object.__setattr__(self, "stds", s)

    @property
    def n_components(self) -> int:
        return len(self.weights)

    def _params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kw = dict(dtype=x.dtype, device=x.device)
        return (torch.tensor(self.weights, **kw), torch.tensor(self.means, **kw), torch.tensor(self.stds, **kw))

    def component_log_densities(self, x: torch.Tensor) -> torch.Tensor:
        """``log(w_i N(x; m_i, s_i^2))`` with a trailing component axis: shape ``(*x.shape, n_components)``."""
        w, m, s = self._params(x)
        z = (x.unsqueeze(-1) - m) / s
        return torch.log(w) - 0.5 * z * z - torch.log(s) - 0.5 * math.log(2.0 * math.pi)

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise ``log p_0(x)``."""
        return torch.logsumexp(self.component_log_densities(x), dim=-1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise ``d/dx log p_0 = sum_i r_i(x) (m_i - x) / s_i^2`` with responsibilities ``r_i``."""
        _, m, s = self._params(x)
        resp = torch.softmax(self.component_log_densities(x), dim=-1)
        return (resp * (m - x.unsqueeze(-1)) / (s * s)).sum(dim=-1)

    def sample(
        self,
        shape: tuple[int, ...] | int,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """i.i.d. draws of the given shape."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if generator is not None and device is None:
            device = generator.device
        w = torch.tensor(self.weights, dtype=torch.float64, device=device)
        idx = torch.multinomial(w, math.prod(shape), replacement=True, generator=generator).reshape(shape)
        m = torch.tensor(self.means, dtype=dtype, device=device)[idx]
        s = torch.tensor(self.stds, dtype=dtype, device=device)[idx]
        return m + s * torch.randn(shape, generator=generator, dtype=dtype, device=device)

    def moment(self, n: int) -> float:
        """Raw moment ``E[X^n]`` (exact rational arithmetic, rounded once)."""
        n = _order(n)
        return float(self._moments(n)[n])

    def _moments(self, n_max: int) -> list[Fraction]:
        total = [Fraction(0)] * (n_max + 1)
        for w, m, s in zip(self.weights, self.means, self.stds):
            mom = normal_moments(m, s * s, n_max)
            total = [a + Fraction(w) * b for a, b in zip(total, mom)]
        return total

    def cumulant(self, n: int) -> float:
        """Exact cumulant ``kappa_n`` from the log of the mixture MGF (via raw moments, exact rationals)."""
        n = _order(n)
        return float(moments_to_cumulants(self._moments(n))[n - 1])

    def marginal(self, process: Process, t: float) -> "GaussianMixture1D":
        """Exact forward marginal at time t: means ``a m_i``, stds ``sqrt(a^2 s_i^2 + Xi)`` (THEORY 6)."""
        check_time(process, t)
        a, Xi = float(process.a(float(t))), float(process.Xi(float(t)))
        return GaussianMixture1D(
            self.weights, tuple(a * m for m in self.means), tuple(math.sqrt(a * a * s * s + Xi) for s in self.stds)
        )


def _bernoulli(n: int) -> Fraction:
    """Bernoulli number B_n (B_1 = -1/2) by the Akiyama–Tanigawa algorithm, exactly."""
    a = [Fraction(0)] * (n + 1)
    for m in range(n + 1):
        a[m] = Fraction(1, m + 1)
        for j in range(m, 0, -1):
            a[j - 1] = j * (a[j - 1] - a[j])
    return a[0] if n != 1 else Fraction(-1, 2)


@dataclass(frozen=True)
class TwoGaussianMixture:
    """Symmetric two-peak mixture ``1/2 N(mu, s^2) + 1/2 N(-mu, s^2)`` (THEORY 6), ``mu >= 0``, ``s > 0``."""

    mu: float = 1.0
    s: float = 0.5

    def __post_init__(self) -> None:
        mu, s = _real("mu", self.mu), _real("s", self.s)
        if mu < 0:
            raise ValueError(f"mu must be >= 0, got mu={mu}")
        if s <= 0:
            raise ValueError(f"s must be > 0, got s={s}")
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "s", s)

    def as_mixture(self) -> GaussianMixture1D:
        """The same distribution as a general :class:`GaussianMixture1D`."""
        return GaussianMixture1D((0.5, 0.5), (self.mu, -self.mu), (self.s, self.s))

    def cumulant(self, n: int) -> float:
        """Closed form from the CGF ``s^2 k^2/2 + ln cosh(mu k)``:
        ``kappa_2 = mu^2 + s^2``; for even ``n >= 4`` ``kappa_n = mu^n 2^n (2^n - 1) B_n / n``; odd ones 0.

        (kappa_4 = -2 mu^4, kappa_6 = 16 mu^6, kappa_8 = -272 mu^8.)
        """
        n = _order(n)
        if n % 2 == 1:
            return 0.0
        lncosh = self.mu**n * float(Fraction(2**n * (2**n - 1)) * _bernoulli(n) / n)
        return lncosh + (self.s**2 if n == 2 else 0.0)

    def moment(self, n: int) -> float:
        return self.as_mixture().moment(n)

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x) = -(x^2 + mu^2)/(2 s^2) + log cosh(mu x / s^2) - log(s sqrt(2 pi))``."""
        v = self.s**2
        y = self.mu * x / v
        log_cosh = torch.logaddexp(y, -y) - math.log(2.0)
        return -(x * x + self.mu**2) / (2.0 * v) + log_cosh - math.log(self.s * math.sqrt(2.0 * math.pi))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Tanh form ``(-x + mu tanh(mu x / s^2)) / s^2`` (THEORY 6 at t = 0)."""
        v = self.s**2
        return (-x + self.mu * torch.tanh(self.mu * x / v)) / v

    def sample(
        self,
        shape: tuple[int, ...] | int,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """i.i.d. draws: a fair random sign times ``mu`` plus ``N(0, s^2)`` noise."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if generator is not None and device is None:
            device = generator.device
        sign = torch.randint(0, 2, shape, generator=generator, device=device).to(dtype) * 2 - 1
        return self.mu * sign + self.s * torch.randn(shape, generator=generator, dtype=dtype, device=device)

    def marginal(self, process: Process, t: float) -> "TwoGaussianMixture":
        """Forward marginal: peaks at ``+-a mu`` with variance ``a^2 s^2 + Xi`` (THEORY 6)."""
        check_time(process, t)
        a, Xi = float(process.a(float(t))), float(process.Xi(float(t)))
        return TwoGaussianMixture(a * self.mu, math.sqrt(a * a * self.s**2 + Xi))
