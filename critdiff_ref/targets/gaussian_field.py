"""Gaussian lattice field at and near criticality (THEORY 2).

Action ``S = 1/2 sum_k (khat^2 + r) |phi_k|^2`` on the periodic lattice ``(Z_L)^d``.  Mode
variance ``c0(k) = 1 / (khat^2 + r)``; at the critical point ``r = 0`` the zero mode is removed
(fixed to 0) in the data, the noise, the score and the samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .. import lattice
from ..processes import Process, Time, check_time

__all__ = ["GaussianField"]


def _check_real(name: str, value: float, *, lower: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number >= {lower}, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value >= lower):
        raise ValueError(f"{name} must be finite and >= {lower}, got {name}={value}")
    return value


@dataclass(frozen=True)
class GaussianField:
    """Free lattice field with ``c0(k) = amplitude / (khat^2 + r)`` (THEORY 2; ``amplitude = 1``).

    ``amplitude`` lets the free limit of lattice phi^4 (THEORY 8, ``c0 = 1/(2 kappa (khat^2 + m^2))``)
    reuse every exact fact of this target.  ``r = 0`` is critical: the zero mode is removed.
    """

    L: int
    d: int = 2
    r: float = 0.0
    amplitude: float = 1.0
    # (name, dtype, device) -> half-spectrum c0 / sqrt(c0) (c0_half); not part of the value of the field
    _spectra: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        lattice.check_lattice(self.L, self.d)
        object.__setattr__(self, "r", _check_real("r", self.r))
        amp = _check_real("amplitude", self.amplitude)
        if amp <= 0:
            raise ValueError(f"amplitude must be > 0, got amplitude={amp}")
        object.__setattr__(self, "amplitude", amp)

    # -- shapes -----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """Lattice shape ``(L,) * d``."""
        return (self.L,) * self.d

    @property
    def V(self) -> int:
        """Volume ``L^d``."""
        return self.L**self.d

    @property
    def zero_mode_removed(self) -> bool:
        """True at the critical point ``r = 0``, where the k = 0 mode is fixed to 0."""
        return self.r == 0.0

    def mode_mask(self, *, device: torch.device | str | None = None) -> torch.Tensor:
        """Boolean mask of the modes that carry fluctuations (all but k = 0 when r = 0)."""
        mask = torch.ones(self.shape, dtype=torch.bool, device=device)
        if self.zero_mode_removed:
            mask[(0,) * self.d] = False
        return mask

    # -- exact facts ------------------------------------------------------------------------
    def c0(self, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> torch.Tensor:
        """Data mode variance ``c0(k) = amplitude / (khat^2 + r)``, ``fftn`` layout, 0 at k = 0 if r = 0."""
        k2 = lattice.khat2(self.L, self.d, dtype=dtype, device=device)
        denom = k2 + self.r
        if self.zero_mode_removed:
            denom[(0,) * self.d] = math.inf
        return self.amplitude / denom

    def mode_variance(
        self, process: Process, t: Time, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Forward-marginal mode variance ``C_t(k) = a(t)^2 c0(k) + Xi(t)`` (0 at k = 0 if r = 0).

        ``t`` a float gives shape ``(L,)*d``; a 1-D tensor/array of times gives ``(len(t), *lattice)``.
        """
        check_time(process, t)
        c0 = self.c0(dtype=dtype, device=device)
        if isinstance(t, (int, float)):
            a, Xi = float(process.a(float(t))), float(process.Xi(float(t)))
            C = a * a * c0 + Xi
        else:
            tt = torch.as_tensor(t, dtype=dtype, device=device).reshape(-1, *([1] * self.d))
            C = process.a(tt) ** 2 * c0 + process.Xi(tt)
        if self.zero_mode_removed:
            C = C * self.mode_mask(device=device)
        return C

    def score_kernel(
        self, process: Process, t: Time, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Fourier score kernel ``K_t(k) = -1 / C_t(k)`` (THEORY 2); 0 on a removed zero mode."""
        C = self.mode_variance(process, t, dtype=dtype, device=device)
        mask = self.mode_mask(device=device)
        safe = torch.where(mask, C, torch.ones_like(C))
        if bool((safe <= 0).any()):
            raise ValueError("score kernel undefined: C_t(k) = 0 for some mode (t = 0 with a singular c0)")
        return torch.where(mask, -1.0 / safe, torch.zeros_like(C))

    def real_space_score_kernel(
        self, process: Process, t: float, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Real-space convolution kernel ``K_t(x)`` with ``s_t(phi)(x) = sum_y K_t(x - y) phi(y)``."""
        K = self.score_kernel(process, t, dtype=dtype, device=device)
        return torch.fft.ifftn(K, dim=lattice.lattice_dims(self.d)).real

    def real_space_covariance(
        self, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Two-point function ``G_0(x) = <phi(x) phi(0)> = (1/V) sum_k c0(k) e^{i k x}``, shape ``(L,)*d``."""
        return torch.fft.ifftn(self.c0(dtype=dtype, device=device), dim=lattice.lattice_dims(self.d)).real

    # -- sampling and density ---------------------------------------------------------------
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Exact FFT sampler ``F^-1[sqrt(c0) F[z]]``, ``z`` white (THEORY 2), with the white noise drawn
        directly in Fourier space (:func:`~critdiff_ref.lattice.filtered_noise`: one inverse real FFT).
        Shape ``(n, *lattice)``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got n={n!r}")
        if generator is not None and device is None:
            device = generator.device
        gain = self.c0_half(dtype=dtype, device=device, sqrt=True)
        return lattice.filtered_noise(gain, (n,), self.L, self.d, generator, dtype=dtype, device=device)

    def c0_half(self, *, dtype: torch.dtype, device: torch.device | str | None, sqrt: bool = False) -> torch.Tensor:
        """``c0`` (or ``sqrt(c0)``) on the rfftn half spectrum (:func:`~critdiff_ref.lattice.half_spectrum`),
        computed once per dtype and device and shared: read-only (the fast paths of colour and the FFT score)."""
        key = ("sqrt_c0" if sqrt else "c0", dtype, torch.device(device) if device is not None else torch.device("cpu"))
        spectrum = self._spectra.get(key)
        if spectrum is None:
            c0 = self.c0(dtype=dtype, device=key[2])
            spectrum = self._spectra[key] = lattice.half_spectrum(c0.sqrt() if sqrt else c0)
        return spectrum

    def colour(self, z: torch.Tensor) -> torch.Tensor:
        """Map white noise ``z`` (``(*batch, *lattice)``) to a field with mode variances ``c0``:
        ``F^-1[sqrt(c0) F[z]]`` (THEORY 2)."""
        return lattice.real_filter(z, self.c0_half(dtype=z.dtype, device=z.device, sqrt=True), self.d, half=True)

    def noise(
        self, shape_or_x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Standard noise like ``x`` with the zero mode removed when ``r = 0`` (THEORY 0)."""
        x = shape_or_x
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return lattice.remove_zero_mode(z, self.d) if self.zero_mode_removed else z

    def forward_sample(
        self, process: Process, x0: torch.Tensor, t: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``x_t = a x_0 + sqrt(Xi) z`` with zero-mode-free noise at ``r = 0`` (THEORY 1, 2)."""
        check_time(process, t)
        return float(process.a(float(t))) * x0 + math.sqrt(float(process.Xi(float(t)))) * self.noise(x0, generator)

    def log_density(self, x: torch.Tensor, process: Process | None = None, t: float = 0.0) -> torch.Tensor:
        """Exact log-density of ``x`` (``(*batch, *lattice)``) under the data (or the forward marginal at t).

        ``log p = -1/2 sum_k |x_k|^2 / C_t(k) - 1/2 sum_k log(2 pi C_t(k))`` over fluctuating modes;
        at ``r = 0`` the density is that of the ``V - 1`` non-zero modes (the zero mode of ``x`` is ignored).
        """
        self._check_field(x)
        if process is None:
            C = self.c0(dtype=x.dtype, device=x.device)
        else:
            C = self.mode_variance(process, t, dtype=x.dtype, device=x.device)
        mask = self.mode_mask(device=x.device)
        safe = torch.where(mask, C, torch.ones_like(C))
        xk2 = lattice.fft(x, self.d).abs() ** 2
        quad = torch.where(mask, xk2 / safe, torch.zeros_like(xk2)).sum(dim=lattice.lattice_dims(self.d))
        logdet = torch.where(mask, torch.log(2.0 * math.pi * safe), torch.zeros_like(safe)).sum()
        return -0.5 * quad - 0.5 * logdet

    def _check_field(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if tuple(x.shape[-self.d :]) != self.shape:
            raise ValueError(f"x must have shape (*batch, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating tensor, got dtype {x.dtype}")
