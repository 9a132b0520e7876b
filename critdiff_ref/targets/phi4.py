"""phi^4 targets (THEORY 8): the 0-D toy model, densities on a 1-D grid, and lattice phi^4.

0-D: ``S(phi) = mu2 phi^2 / 2 + g phi^4 / 24`` (single well ``mu2 = 1``, double well ``mu2 = -1``).
Lattice: ``S = sum_x [-2 kappa sum_mu phi_x phi_{x+mu} + (1 - 2 lam) phi_x^2 + lam phi_x^4]``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import lattice
from ..processes import Process, check_time
from .gaussian_field import GaussianField

__all__ = ["Density1D", "Phi4ZeroD", "Phi4Lattice"]

# Tweedie sums on a uniform grid of spacing h converge like exp(-2 pi^2 (w/h)^2) in the width
# w = sqrt(Xi)/a of the Gaussian kernel in y; w >= 2 h puts that below 1e-30.  Narrower kernels
# use Gauss–Hermite in the noise variable instead (needs an analytic log-density).
_MIN_WIDTH_IN_STEPS = 2.0
_N_HERMITE = 60
# Grid sums run over blocks of about this many (point, grid node) terms (4 MiB in float64): the block's
# logits and exponentials stay in cache instead of a (batch, n_grid) array going through main memory.
_BLOCK_TERMS = 2**19


@functools.lru_cache(maxsize=None)
def _hermite_rule() -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss–Hermite nodes and weights (``_N_HERMITE`` points), computed once."""
    return np.polynomial.hermite_e.hermegauss(_N_HERMITE)


def _real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {name}={value}")
    return value


@dataclass(frozen=True, eq=False)
class Density1D:
    """Any 1-D density known up to normalisation on a uniform grid ``y`` (``log_p`` unnormalised).

    Exact diffusion facts by quadrature of ``p_t(x) = int p_0(y) N(x; a y, Xi) dy`` (THEORY 8):
    trapezoidal sums, which converge geometrically for a smooth density that vanishes at the ends.
    ``grad_log_p`` (optional, the derivative of ``log_p`` as a function) enables small noise levels.
    """

    y: torch.Tensor
    log_p: torch.Tensor
    grad_log_p: object = None
    log_p_fn: object = None
    h: float = field(init=False)
    log_Z: float = field(init=False)

    def __post_init__(self) -> None:
        y = torch.as_tensor(self.y, dtype=torch.float64)
        lp = torch.as_tensor(self.log_p, dtype=torch.float64)
        if y.ndim != 1 or y.shape != lp.shape or y.numel() < 16:
            raise ValueError(f"y and log_p must be 1-D of equal length >= 16, got {tuple(y.shape)}, {tuple(lp.shape)}")
        dy = torch.diff(y)
        h = float(dy.mean())
        if not (h > 0 and bool(torch.allclose(dy, torch.full_like(dy, h), rtol=1e-9, atol=0))):
            raise ValueError("y must be a uniform, increasing grid")
        if not bool(torch.isfinite(lp).all()):
            raise ValueError("log_p must be finite on the grid")
        if float(lp.max() - torch.maximum(lp[0], lp[-1])) < 30.0:
            raise ValueError("the density must decay by e^-30 towards both ends of the grid (widen y)")
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "log_p", lp)
        object.__setattr__(self, "h", h)
        object.__setattr__(self, "log_Z", float(torch.logsumexp(lp, 0)) + math.log(h))

    def moment(self, n: int) -> float:
        """``E[Y^n]`` by the trapezoidal rule (end points negligible by construction)."""
        w = torch.exp(self.log_p - self.log_Z) * self.h
        return float((w * self.y**n).sum())

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``log p_0(x)``; needs ``log_p_fn`` (else grid values only)."""
        if self.log_p_fn is None:
            raise ValueError("log_density needs log_p_fn (an analytic log-density)")
        return self.log_p_fn(x) - self.log_Z

    def _width(self, process: Process, t: float) -> tuple[float, float, float]:
        check_time(process, t)
        a, Xi = float(process.a(float(t))), float(process.Xi(float(t)))
        return a, Xi, math.sqrt(Xi) / a

    def _grid_sums(self, x: torch.Tensor, a: float, Xi: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``m = max_j l_j``, ``Z = sum_j e^(l_j - m)`` and ``Y = sum_j e^(l_j - m) y_j`` per element of ``x``,
        ``l_j = log_p(y_j) - (x - a y_j)^2 / (2 Xi)``; each of shape ``x.shape``.

        Blocks of ``_BLOCK_TERMS`` terms; ``Z`` and ``Y`` are one matrix product with ``[1, y_j]``."""
        y = self.y.to(dtype=x.dtype, device=x.device)
        lp = self.log_p.to(dtype=x.dtype, device=x.device)
        ay = a * y
        ones_y = torch.stack([torch.ones_like(y), y])  # (2, n_grid)
        # terms below e^floor = e * tiny (tiny: the smallest normal number) are raised to it, a change of
        # Z >= 1 and Y by <= n_grid * e * tiny relative, far below rounding, that keeps exp off its slow
        # (~30x) path for results that underflow to subnormals or zero (most terms at small noise)
        floor = math.log(torch.finfo(x.dtype).tiny) + 1.0
        rows = max(1, _BLOCK_TERMS // y.numel())
        m_parts, sum_parts = [], []
        for xb in x.reshape(-1).split(rows):
            diff = xb.unsqueeze(-1) - ay
            logits = torch.addcmul(lp, diff, diff, value=-0.5 / Xi)  # (rows, n_grid)
            m = logits.detach().amax(-1, keepdim=True)  # a shift only: no gradient, as in torch.logsumexp
            m_parts.append(m.squeeze(-1))
            sum_parts.append(torch.exp((logits - m).clamp_min(floor)) @ ones_y.T)  # (rows, 2)
        m = torch.cat(m_parts).reshape(x.shape)
        sums = torch.cat(sum_parts)
        return m, sums[:, 0].reshape(x.shape), sums[:, 1].reshape(x.shape)

    def score(self, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
        """Exact score ``d/dx log p_t(x)``, elementwise: Tweedie ``(a <y> - x) / Xi`` on the grid, or
        ``<d log p_0>(y) / a`` with ``y = (x - sqrt(Xi) z)/a`` under Gauss–Hermite in ``z`` for small noise."""
        a, Xi, width = self._width(process, t)
        if width >= _MIN_WIDTH_IN_STEPS * self.h:
            _, Z, Y = self._grid_sums(x, a, Xi)
            return (a * (Y / Z) - x) / Xi
        if self.grad_log_p is None or self.log_p_fn is None:
            raise ValueError(
                f"noise too small for the grid at t={t}: sqrt(Xi)/a = {width:.3g} < {_MIN_WIDTH_IN_STEPS} h;"
                " give grad_log_p and log_p_fn or a finer grid"
            )
        z, wz = _hermite_rule()
        z = torch.as_tensor(z, dtype=x.dtype, device=x.device)
        yq = (x.unsqueeze(-1) - math.sqrt(Xi) * z) / a
        logw = torch.log(torch.as_tensor(wz, dtype=x.dtype, device=x.device)) + self.log_p_fn(yq)
        w = torch.softmax(logw, dim=-1)
        return (w * self.grad_log_p(yq)).sum(-1) / a

    def log_marginal(self, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
        """Normalised ``log p_t(x)`` by quadrature (grid, or Gauss–Hermite for small noise)."""
        a, Xi, width = self._width(process, t)
        if width >= _MIN_WIDTH_IN_STEPS * self.h:
            m, Z, _ = self._grid_sums(x, a, Xi)
            return (m + torch.log(Z)) + math.log(self.h) - self.log_Z - 0.5 * math.log(2 * math.pi * Xi)
        if self.log_p_fn is None:
            raise ValueError(f"noise too small for the grid at t={t}; give log_p_fn or a finer grid")
        z, wz = _hermite_rule()
        z = torch.as_tensor(z, dtype=x.dtype, device=x.device)
        yq = (x.unsqueeze(-1) - math.sqrt(Xi) * z) / a
        logw = torch.log(torch.as_tensor(wz / math.sqrt(2 * math.pi), dtype=x.dtype, device=x.device))
        return torch.logsumexp(logw + self.log_p_fn(yq), -1) - self.log_Z - math.log(a)


@dataclass(frozen=True)
class Phi4ZeroD:
    """0-D phi^4: ``p_0(phi) ∝ exp(-S)``, ``S = mu2 phi^2/2 + g phi^4/24`` (THEORY 8), ``g > 0``."""

    mu2: float = 1.0
    g: float = 0.4
    n_grid: int = 6001

    def __post_init__(self) -> None:
        object.__setattr__(self, "mu2", _real("mu2", self.mu2))
        g = _real("g", self.g)
        if g <= 0:
            raise ValueError(f"g must be > 0 (the action must be bounded below), got g={g}")
        object.__setattr__(self, "g", g)
        if isinstance(self.n_grid, bool) or not isinstance(self.n_grid, int) or self.n_grid < 101:
            raise ValueError(f"n_grid must be an int >= 101, got n_grid={self.n_grid!r}")

    def action(self, phi: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.mu2 * phi**2 + self.g * phi**4 / 24.0

    def force(self, phi: torch.Tensor) -> torch.Tensor:
        """``-dS/dphi = -mu2 phi - g phi^3 / 6`` (the score of p_0)."""
        return -self.mu2 * phi - self.g * phi**3 / 6.0

    def _envelope(self) -> tuple[float, float]:
        """Proposal variance and ``min_u f`` for the rejection sampler.

        With ``u = phi^2``, ``f = c u / 2 + g u^2 / 24`` with ``c = mu2 - 1/sigma^2``, minimised at
        ``u* = max(0, -6 c / g)``; the rejection constant is ``sigma exp(-min f)`` up to a constant.
        """
        best = None
        for sigma2 in np.geomspace(0.05, 50.0, 200):
            c = self.mu2 - 1.0 / sigma2
            u = max(0.0, -6.0 * c / self.g)
            f_min = 0.5 * c * u + self.g * u * u / 24.0
            cost = 0.5 * math.log(sigma2) - f_min
            if best is None or cost < best[0]:
                best = (cost, float(sigma2), f_min)
        return best[1], best[2]

    @property
    def phi_max(self) -> float:
        """Grid half-width where ``S - min S`` exceeds 60 (so the ends carry < e^-60)."""
        s_min = 0.0 if self.mu2 >= 0 else -1.5 * self.mu2**2 / self.g
        u = 1.0
        while 0.5 * self.mu2 * u * u + self.g * u**4 / 24.0 - s_min < 60.0:
            u *= 1.25
        return u

    def density(self) -> Density1D:
        """The normalised density on a uniform grid, with the analytic action for small-noise quadrature."""
        y = torch.linspace(-self.phi_max, self.phi_max, self.n_grid, dtype=torch.float64)
        return Density1D(y, -self.action(y), grad_log_p=self.force, log_p_fn=lambda v: -self.action(v))

    def moment(self, n: int) -> float:
        """``<phi^n>`` by quadrature."""
        return self.density().moment(n)

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Exact draws by rejection from ``N(0, sigma^2)``, accepting with ``exp(-(f - min f))``,
        ``f(phi) = S(phi) - phi^2 / (2 sigma^2)``; sigma minimises the rejection constant."""
        if generator is not None and device is None:
            device = generator.device
        sigma2, f_min = self._envelope()
        sigma = math.sqrt(sigma2)
        out = torch.empty(0, dtype=torch.float64, device=device)
        while out.numel() < n:
            phi = sigma * torch.randn(2 * n + 16, generator=generator, dtype=torch.float64, device=device)
            log_acc = -(self.action(phi) - 0.5 * phi**2 / sigma2) + f_min
            u = torch.rand(phi.shape, generator=generator, dtype=torch.float64, device=device)
            out = torch.cat([out, phi[torch.log(u) < log_acc]])
        return out[:n].to(dtype)


@dataclass(frozen=True)
class Phi4Lattice:
    """Lattice phi^4 in the hopping parametrisation (THEORY 8): ``kappa >= 0``, ``lam >= 0``.

    ``lam = 0`` is the free field and needs ``kappa < 1/(2d)`` for a normalisable action.
    """

    L: int
    d: int = 2
    kappa: float = 0.2
    lam: float = 0.022

    def __post_init__(self) -> None:
        lattice.check_lattice(self.L, self.d)
        kappa, lam = _real("kappa", self.kappa), _real("lam", self.lam)
        if kappa < 0:
            raise ValueError(f"kappa must be >= 0, got kappa={kappa}")
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got lam={lam}")
        if lam == 0 and kappa >= 1.0 / (2 * self.d):
            raise ValueError(f"at lam = 0 kappa must be < 1/(2d) = {1 / (2 * self.d)}, got kappa={kappa}")
        object.__setattr__(self, "kappa", kappa)
        object.__setattr__(self, "lam", lam)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.L,) * self.d

    @property
    def V(self) -> int:
        return self.L**self.d

    @property
    def kappa_c_classical(self) -> float:
        """Classical critical hopping ``(1 - 2 lam) / (2d)``."""
        return (1.0 - 2.0 * self.lam) / (2 * self.d)

    def _axes(self, phi: torch.Tensor, dims: tuple[int, ...] | None) -> tuple[int, ...]:
        """The lattice axes of ``phi``: the last ``d`` (``dims=None``) or the ``d`` axes given, each of size ``L``."""
        axes = lattice.lattice_dims(self.d) if dims is None else tuple(dims)
        if len(axes) != self.d or any(phi.shape[mu] != self.L for mu in axes):
            where = f"(*batch, {self.shape})" if dims is None else f"size {self.L} along the {self.d} axes {axes}"
            raise ValueError(f"phi must have shape {where}, got {tuple(phi.shape)}")
        return axes

    def action(self, phi: torch.Tensor, dims: tuple[int, ...] | None = None) -> torch.Tensor:
        """``S(phi) = sum_x [-2 kappa sum_mu phi_x phi_{x+mu} + (1 - 2 lam) phi_x^2 + lam phi_x^4]`` summed over
        the lattice axes ``dims`` (default the last ``d``: ``phi`` is ``(*batch, *lattice)``; HMC's compiled
        multi-chain trajectory passes ``dims = (0..d-1)`` for a chains-last ``(*lattice, n_chains)`` field)."""
        axes = self._axes(phi, dims)
        phi2 = phi * phi
        hop = sum(torch.roll(phi, -1, dims=mu) for mu in axes)
        dens = -2.0 * self.kappa * phi * hop + (1.0 - 2.0 * self.lam) * phi2 + self.lam * phi2 * phi2
        return dens.sum(dim=axes)

    def force(self, phi: torch.Tensor, dims: tuple[int, ...] | None = None) -> torch.Tensor:
        """``-dS/dphi_x = 2 kappa sum_mu (phi_{x+mu} + phi_{x-mu}) - 2 (1 - 2 lam) phi_x - 4 lam phi_x^3``, the
        neighbours along the lattice axes ``dims`` (default the last ``d``; see :meth:`action`)."""
        axes = lattice.lattice_dims(self.d) if dims is None else tuple(dims)
        nn = sum(torch.roll(phi, s, dims=mu) for mu in axes for s in (1, -1))
        return 2.0 * self.kappa * nn - 2.0 * (1.0 - 2.0 * self.lam) * phi - 4.0 * self.lam * phi**3

    def free_field(self) -> GaussianField:
        """The ``lam = 0`` theory as a Gaussian field: ``c0 = 1 / (2 kappa (khat^2 + m^2))``, ``m^2 = 1/kappa - 2d``."""
        if self.lam != 0.0:
            raise ValueError(f"free_field needs lam = 0, got lam={self.lam}")
        if self.kappa <= 0.0:
            raise ValueError("free_field needs kappa > 0 (kappa = 0 is white noise with variance 1/2)")
        return GaussianField(self.L, self.d, r=1.0 / self.kappa - 2 * self.d, amplitude=1.0 / (2.0 * self.kappa))
