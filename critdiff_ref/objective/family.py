"""Model families that contain the exact optimum of every denoising objective (THEORY 2, 6, 9).

``out = sum_f theta[level, mode, f] m_f(level) phi_f(x)``, linear in the parameters ``theta`` and
tabulated in the conditioning value (one table row per grid value of the :class:`~.spec.ModelSpec`):

* :class:`FourierLinearModel` (Gaussian field): ``out_k = theta[level, class(k)] x_in,k``, one real gain
  per Fourier pair ``{k, -k}`` (a real, even, circular convolution). The exact denoiser
  ``D_k = alpha c0(k) / C_t(k) x_k`` is linear per mode, so every parametrisation's optimum is in it.
* :class:`TwoPeakModel` (two-peak mixture, per site): features ``x_in`` and
  ``tanh(a mu x_t / V)``, ``V = a^2 s^2 + sigma^2``: the exact denoiser
  ``D = (a s^2 x_t + mu sigma^2 tanh(a mu x_t / V)) / V`` is a combination of them.

Both count the conditioning values they are called with (the visited density) and the calls that
fall off the declared grid.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import lattice
from ..targets.gaussian_field import GaussianField
from ..targets.mixtures import TwoGaussianMixture
from .spec import ModelSpec

__all__ = ["FourierLinearModel", "TwoPeakModel", "mode_classes"]


def mode_classes(L: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Orbits ``{k, -k}`` of the ``fftn`` modes: ``(class_of_mode (L,)*d, representative index (n_classes, d))``.

    Classes are numbered in the order of their first (lexicographically smallest) mode.
    """
    lattice.check_lattice(L, d)
    idx = torch.stack(torch.meshgrid(*[torch.arange(L)] * d, indexing="ij"), dim=-1).reshape(-1, d)
    flat = (idx * (L ** torch.arange(d - 1, -1, -1))).sum(-1)
    neg = ((-idx) % L * (L ** torch.arange(d - 1, -1, -1))).sum(-1)
    rep = torch.minimum(flat, neg)
    uniq, cls = torch.unique(rep, return_inverse=True)
    reps = torch.stack([(uniq // L**p) % L for p in range(d - 1, -1, -1)], dim=-1)
    return cls.reshape((L,) * d), reps


class _Tabulated(nn.Module):
    """Shared bookkeeping: the table ``theta (n_levels, n_modes, n_features)``, level lookup, counts."""

    def __init__(self, spec: ModelSpec, n_modes: int, n_features: int, dtype: torch.dtype, device) -> None:
        super().__init__()
        self.spec = spec
        self.theta = nn.Parameter(torch.zeros(spec.n_levels, n_modes, n_features, dtype=dtype, device=device))
        self.reset_counts()

    def reset_counts(self) -> None:
        self.counts = torch.zeros(self.spec.n_levels, dtype=torch.float64)
        self.off_grid = 0
        self.off_grid_values: list[float] = []
        self.calls = 0

    def levels(self, x_in: torch.Tensor, c) -> torch.Tensor:
        """Grid index per batch element (recording counts and off-grid values)."""
        if not isinstance(x_in, torch.Tensor):
            raise TypeError(f"the model input must be a torch.Tensor, got {type(x_in).__name__}")
        c = torch.as_tensor(c)
        batch = x_in.shape[0]
        c = c.reshape(-1)
        if c.numel() == 1:
            c = c.expand(batch)
        if c.numel() != batch:
            raise ValueError(f"the model was told {c.numel()} conditioning values for a batch of {batch}")
        idx, on = self.spec.level_index(c)
        self.calls += 1
        self.counts += torch.bincount(idx, minlength=self.spec.n_levels).to(torch.float64)
        if not bool(on.all()):
            self.off_grid += int((~on).sum())
            if len(self.off_grid_values) < 8:
                self.off_grid_values += c[~on].detach().double().cpu().tolist()[: 8 - len(self.off_grid_values)]
        return idx.to(self.theta.device)


class FourierLinearModel(_Tabulated):
    """``out_k = theta[level, class(k)] (x_in)_k`` on a ``(batch, *lattice)`` field (unitary FFT, THEORY 0)."""

    def __init__(self, spec: ModelSpec, field: GaussianField, *, dtype=torch.float64, device=None) -> None:
        cls, reps = mode_classes(field.L, field.d)
        super().__init__(spec, reps.shape[0], 1, dtype, device)
        self.field = field
        self.register_buffer("mode_class", cls.to(device))
        self.representatives = reps

    def feature_scales(self) -> torch.Tensor:
        """``m_f`` per level: the model multiplies ``x_in = input_scale x_t``, shape ``(n_levels, 1)``."""
        return self.spec.input_scale.reshape(-1, 1)

    def forward(self, x_in: torch.Tensor, c) -> torch.Tensor:
        idx = self.levels(x_in, c)
        d = self.field.d
        if tuple(x_in.shape[-d:]) != self.field.shape:
            raise ValueError(f"the model input must have shape (batch, {self.field.shape}), got {tuple(x_in.shape)}")
        gain = self.theta[idx, :, 0][:, self.mode_class]  # (batch, *lattice)
        gain = gain.reshape(gain.shape[0], *([1] * (x_in.ndim - 1 - d)), *self.field.shape)
        return lattice.ifft(gain.to(x_in.dtype) * lattice.fft(x_in, d), d).real

    def exact_coefficients(self) -> torch.Tensor:
        """Exact denoiser gain per (level, class): ``alpha c0 / (alpha^2 c0 + sigma^2)``, shape ``(n_levels, n_modes, 1)``."""
        c0 = self.field.c0(dtype=torch.float64)
        c0 = torch.where(torch.isfinite(c0), c0, torch.zeros_like(c0))
        idx = tuple(self.representatives.T)
        c = c0[idx]  # (n_modes,)
        al, si = self.spec.alpha.reshape(-1, 1), self.spec.sigma.reshape(-1, 1)
        return (al * c / (al * al * c + si * si)).unsqueeze(-1)

    def input_power(self) -> torch.Tensor:
        """``E sum_sites x_t^2 = sum_k C_t(k)`` per level (zero mode included with ``c0 = 0``), shape ``(n_levels,)``."""
        c0 = self.field.c0(dtype=torch.float64)
        total = float(torch.where(torch.isfinite(c0), c0, torch.zeros_like(c0)).sum())
        return self.spec.alpha**2 * total + self.field.V * self.spec.sigma**2

    def mode_labels(self) -> list[str]:
        """``"(n_1, ..., n_d)"`` momentum index of each class (``k_mu = 2 pi n_mu / L``, ``n_mu`` in ``(-L/2, L/2]``)."""
        L = self.field.L
        signed = torch.where(self.representatives > L // 2, self.representatives - L, self.representatives)
        return ["(" + ", ".join(str(int(v)) for v in row) + ")" for row in signed]

    def mode_variances(self) -> torch.Tensor:
        """Data variance ``c0`` of each class (0 for a removed zero mode)."""
        c0 = self.field.c0(dtype=torch.float64)
        c0 = torch.where(torch.isfinite(c0), c0, torch.zeros_like(c0))
        return c0[tuple(self.representatives.T)]


class TwoPeakModel(_Tabulated):
    """``out = theta_0 x_in + theta_1 tanh(a mu x_t / V)`` per site, tabulated in the level (THEORY 6, 9)."""

    def __init__(self, spec: ModelSpec, mixture: TwoGaussianMixture, *, dtype=torch.float64, device=None) -> None:
        super().__init__(spec, 1, 2, dtype, device)
        self.mixture = mixture
        al, si = spec.alpha, spec.sigma
        V = al * al * mixture.s**2 + si * si
        self.register_buffer("slope", (al * mixture.mu / V / spec.input_scale).to(dtype=dtype, device=device))

    def feature_scales(self) -> torch.Tensor:
        return torch.stack([self.spec.input_scale, torch.ones_like(self.spec.input_scale)], dim=-1)

    def forward(self, x_in: torch.Tensor, c) -> torch.Tensor:
        idx = self.levels(x_in, c)
        view = (x_in.shape[0],) + (1,) * (x_in.ndim - 1)
        th = self.theta[idx, 0, :].to(x_in.dtype)
        feature = torch.tanh(self.slope[idx].to(x_in.dtype).reshape(view) * x_in)
        return th[:, 0].reshape(view) * x_in + th[:, 1].reshape(view) * feature

    def exact_coefficients(self) -> torch.Tensor:
        """Exact denoiser on the features ``(x_t, tanh)``: ``(a s^2, mu sigma^2) / V``, shape ``(n_levels, 1, 2)``."""
        al, si = self.spec.alpha, self.spec.sigma
        s2, mu = self.mixture.s**2, self.mixture.mu
        V = al * al * s2 + si * si
        return torch.stack([al * s2 / V, mu * si * si / V], dim=-1).unsqueeze(1)

    def input_power(self) -> torch.Tensor:
        """``E sum_sites x_t^2 = 64 (a^2 (mu^2 + s^2) + sigma^2)`` per level on the ``8 x 8`` sites."""
        m2 = self.mixture.mu**2 + self.mixture.s**2
        return 64.0 * (self.spec.alpha**2 * m2 + self.spec.sigma**2)

    def mode_labels(self) -> list[str]:
        return ["per site"]
