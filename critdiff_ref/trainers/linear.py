"""Linear score networks on a Gaussian lattice field and their losses (THEORY 3, 4, 5); training in
:mod:`.linear_training`.

Models (all map a field ``(batch, *lattice)`` to a score of the same shape, ``d = 1..3`` for the
convolutional ones):

- :class:`OneLayerConv`: ``s = w * x``, one full-size circular convolution; the parameter is the
  real-space kernel ``K(z)`` in lattice layout, ``s(x) = sum_y K(x - y) phi(y)``.
- :class:`OneLayerFourier`: the same map diagonal in Fourier space, parameter ``w_k`` (real).
- :class:`TwoLayerConv` / :class:`TwoLayerFourier`: ``s = -(b * a * x)``, product ``u_k = a_k b_k``.
- :class:`LocalScoreNet`: three linear circular convolutions, 4 channels, receptive radius ``ell``.

Loss normalisation (THEORY 4, last bullets).  The exact population loss of a linear score
with Fourier multiplier ``w_k`` at diffusion time ``t`` is ``l = 1/2 sum_k C_t(k) |w_k - K_t(k)|^2``
(unitary modes).  Fourier-diagonal models are trained on ``l``; real-space models on the
per-site loss ``l / V = 1/2 E mean_x |s(x) - s_t(x)|^2`` (torch's ``mean`` reduction).  Gradient
descent with rate ``eta`` on ``l / V`` over a real-space kernel moves every multiplier by
``-eta C_k (w_k - K_k)``, exactly as GD with the same ``eta`` on ``l`` over ``w_k`` (the plain
real-space sum would carry an extra factor ``V``).  So one ``eta`` means the same dynamics in both
forms, and THEORY's per-mode closed forms apply to real-space training verbatim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import lattice
from ..processes import Process, check_time
from ..targets import GaussianField

__all__ = [
    "OneLayerConv",
    "OneLayerFourier",
    "TwoLayerConv",
    "TwoLayerFourier",
    "LocalScoreNet",
    "circular_conv",
    "kaiming_kernels",
    "effective_kernel",
    "score_multiplier",
    "population_loss",
    "dsm_loss",
]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_MODULE = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
OPTIMIZERS = ("gd", "momentum", "adam")


def _check_conv_lattice(L: int, d: int) -> None:
    lattice.check_lattice(L, d)
    if d > 3:
        raise ValueError(f"convolutional models need d in 1..3, got d={d}")


def circular_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Circular convolution ``(K * x)(x) = sum_y K(x - y) phi(y)`` with a full-size kernel ``(L,)*d``.

    Implemented as ``torch.nn.functional.conv{d}d`` (a cross-correlation) of the circularly padded
    field with the flipped kernel: padding ``L - 1`` on the low side gives ``W(j) = K(L - 1 - j)``.
    ``x``: ``(batch, *lattice)``; returns the same shape.
    """
    d = kernel.ndim
    L = kernel.shape[0]
    xb = x.unsqueeze(1)
    xb = F.pad(xb, (L - 1, 0) * d, mode="circular")
    w = kernel.flip(tuple(range(d))).unsqueeze(0).unsqueeze(0)
    return _CONV[d](xb, w).squeeze(1)


class OneLayerConv(nn.Module):
    """One-layer linear score ``s = w * x``: a full-size circular convolution (THEORY 3).

    ``kernel`` (``(L,)*d``, lattice layout) defaults to zeros, the standard start.
    """

    loss_scale_is_per_site = True

    def __init__(self, L: int, d: int = 2, kernel: torch.Tensor | None = None, *, dtype: torch.dtype = torch.float64):
        super().__init__()
        _check_conv_lattice(L, d)
        self.L, self.d = L, d
        k = torch.zeros((L,) * d, dtype=dtype) if kernel is None else kernel.detach().clone()
        if tuple(k.shape) != (L,) * d:
            raise ValueError(f"kernel must have shape {(L,) * d}, got {tuple(k.shape)}")
        self.kernel = nn.Parameter(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return circular_conv(x, self.kernel)


class OneLayerFourier(nn.Module):
    """Fourier-diagonal one-layer score ``s_k = w_k x_k`` with real multipliers ``w`` (THEORY 3)."""

    loss_scale_is_per_site = False

    def __init__(self, L: int, d: int = 2, w: torch.Tensor | None = None, *, dtype: torch.dtype = torch.float64):
        super().__init__()
        lattice.check_lattice(L, d)
        self.L, self.d = L, d
        w = torch.zeros((L,) * d, dtype=dtype) if w is None else torch.as_tensor(w, dtype=dtype).clone()
        self.w = nn.Parameter(w.expand((L,) * d).clone())

    def multiplier(self) -> torch.Tensor:
        return self.w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lattice.ifft(lattice.fft(x, self.d) * self.w, self.d).real


class TwoLayerConv(nn.Module):
    """Two-layer linear score ``s = -(b * a * x)``: two full-size circular convolutions (THEORY 4).

    Defaults: ``a = b = 0.1 delta`` (balanced, product ``u_k = 0.01`` in every mode).
    """

    loss_scale_is_per_site = True

    def __init__(
        self, L: int, d: int = 2, a: torch.Tensor | None = None, b: torch.Tensor | None = None,
        *, dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        _check_conv_lattice(L, d)
        self.L, self.d = L, d
        delta = torch.zeros((L,) * d, dtype=dtype)
        delta[(0,) * d] = 0.1
        self.a = nn.Parameter(delta.clone() if a is None else a.detach().clone())
        self.b = nn.Parameter(delta.clone() if b is None else b.detach().clone())
        for name, p in (("a", self.a), ("b", self.b)):
            if tuple(p.shape) != (L,) * d:
                raise ValueError(f"{name} must have shape {(L,) * d}, got {tuple(p.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -circular_conv(circular_conv(x, self.a), self.b)


class TwoLayerFourier(nn.Module):
    """Fourier-diagonal two-layer score ``s_k = -a_k b_k x_k`` (THEORY 4); scalars broadcast to every mode."""

    loss_scale_is_per_site = False

    def __init__(self, L: int, d: int = 2, a=0.1, b=0.1, *, dtype: torch.dtype = torch.float64):
        super().__init__()
        lattice.check_lattice(L, d)
        self.L, self.d = L, d
        self.a = nn.Parameter(torch.as_tensor(a, dtype=dtype).expand((L,) * d).clone())
        self.b = nn.Parameter(torch.as_tensor(b, dtype=dtype).expand((L,) * d).clone())

    def multiplier(self) -> torch.Tensor:
        return -self.a * self.b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lattice.ifft(lattice.fft(x, self.d) * self.multiplier(), self.d).real


def kaiming_kernels(L: int, d: int, generator: torch.Generator, *, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Kaiming-style real-space kernels ``a, b`` with iid ``N(0, 1/fan_in)`` entries, ``fan_in = V``.

    Their Fourier multipliers have ``E |a_k|^2 = 1``, so the per-mode mismatch ``|a_k|^2 - |b_k|^2``
    is O(1), not O(1/max C) (see THEORY 4 and the report).
    """
    _check_conv_lattice(L, d)
    V = L**d
    std = 1.0 / math.sqrt(V)
    shape = (L,) * d
    a = torch.randn(shape, generator=generator, dtype=dtype, device=generator.device) * std
    b = torch.randn(shape, generator=generator, dtype=dtype, device=generator.device) * std
    return a, b


def _split_radius(ell: int) -> tuple[int, int, int]:
    base, rem = divmod(ell, 3)
    return tuple(base + (1 if i < rem else 0) for i in range(3))  # type: ignore[return-value]


class LocalScoreNet(nn.Module):
    """Three linear circular convolutions ``1 -> channels -> channels -> 1`` with receptive radius ``ell`` (THEORY 5).

    Layer radii split ``ell`` as evenly as possible (kernel sizes ``2 ell_i + 1``, ``sum ell_i = ell``);
    weights ``N(0, 1/fan_in)`` from ``generator``, no biases.
    """

    loss_scale_is_per_site = True

    def __init__(
        self, L: int, d: int, ell: int, *, channels: int = 4, generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        _check_conv_lattice(L, d)
        if isinstance(ell, bool) or not isinstance(ell, int) or ell < 0 or 2 * ell + 1 > L:
            raise ValueError(f"ell must be an int with 0 <= 2 ell + 1 <= L = {L}, got ell={ell!r}")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be an int >= 1, got channels={channels!r}")
        self.L, self.d, self.ell = L, d, ell
        sizes = [(1, channels), (channels, channels), (channels, 1)]
        layers = []
        for (cin, cout), r in zip(sizes, _split_radius(ell)):
            conv = _CONV_MODULE[d](cin, cout, 2 * r + 1, padding=r, padding_mode="circular", bias=False, dtype=dtype)
            fan_in = cin * (2 * r + 1) ** d
            with torch.no_grad():
                w = torch.randn(conv.weight.shape, generator=generator, dtype=dtype)
                conv.weight.copy_(w / math.sqrt(fan_in))
            layers.append(conv)
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(1)
        for conv in self.layers:
            h = conv(h)
        return h.squeeze(1)

    def box_kernel(self) -> torch.Tensor:
        """The composed kernel on its support, ``K(z)`` for ``z in [-ell, ell]^d`` (index ``z + ell``), differentiable.

        Response of the layers, zero-padded, to a delta at the centre of a ``(2 ell + 1)^d`` grid: every
        intermediate response stays inside the grid (radii add up to ``ell``), so it equals the circular one.
        """
        n = 2 * self.ell + 1
        w0 = self.layers[0].weight
        h = torch.zeros((1, 1) + (n,) * self.d, dtype=w0.dtype, device=w0.device)
        h[(0, 0) + (self.ell,) * self.d] = 1.0
        for conv in self.layers:
            h = _CONV[self.d](h, conv.weight, padding=conv.padding)
        return h[0, 0]


# --------------------------------------------------------------------------------------------
# kernels, losses
# --------------------------------------------------------------------------------------------
def _model_dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def effective_kernel(model: nn.Module) -> torch.Tensor:
    """Real-space kernel ``K(z)`` of a linear translation-invariant model: its response to a delta at 0.

    ``model(delta)(z) = sum_y K(z - y) delta(y) = K(z)``; shape ``(L,)*d``, differentiable.
    """
    L, d = model.L, model.d
    if hasattr(model, "box_kernel"):  # local nets: embed the composed support kernel (same values, no full-lattice conv)
        box = model.box_kernel()
        idx = torch.arange(-model.ell, model.ell + 1, device=box.device) % L
        out = torch.zeros((L,) * d, dtype=box.dtype, device=box.device)
        return out.index_put(torch.meshgrid(*([idx] * d), indexing="ij"), box)
    delta = torch.zeros((1,) + (L,) * d, dtype=_model_dtype(model), device=_model_device(model))
    delta[(0,) * (d + 1)] = 1.0
    return model(delta)[0]


def score_multiplier(model: nn.Module) -> torch.Tensor:
    """Fourier multiplier ``w_k = sum_z K(z) e^{-i k z}`` of the model (complex for real-space models)."""
    if hasattr(model, "multiplier"):
        return model.multiplier()
    return torch.fft.fftn(effective_kernel(model), dim=lattice.lattice_dims(model.d))


def _check_model_field(model: nn.Module, target: GaussianField) -> None:
    if not isinstance(target, GaussianField):
        raise TypeError(f"field must be a GaussianField, got {type(target).__name__}")
    if (model.L, model.d) != (target.L, target.d):
        raise ValueError(f"model lattice (L={model.L}, d={model.d}) differs from field (L={target.L}, d={target.d})")


def population_loss(model: nn.Module, target: GaussianField, process: Process, t: float) -> torch.Tensor:
    """Exact population score-matching loss ``1/2 sum_k C_t(k) |w_k - K_t(k)|^2`` (THEORY 3, 4).

    Divided by ``V`` for real-space models (per-site normalisation, module docstring).
    """
    _check_model_field(model, target)
    dtype, device = _model_dtype(model), _model_device(model)
    C = target.mode_variance(process, t, dtype=dtype, device=device)
    K = target.score_kernel(process, t, dtype=dtype, device=device)
    w = score_multiplier(model)
    loss = 0.5 * (C * (w - K).abs() ** 2).sum()
    return loss / target.V if model.loss_scale_is_per_site else loss


def dsm_loss(
    model: nn.Module, target: GaussianField, process: Process, t: float, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Monte-Carlo denoising score matching on ``n`` exact samples: ``1/2 mean_batch sum_x |s(x_t) + z/sqrt(Xi)|^2``.

    ``x_0`` from the exact FFT sampler, ``x_t = a x_0 + sqrt(Xi) z`` (zero-mode-free noise at r = 0);
    its expectation is :func:`population_loss` plus a constant (divided by ``V`` for real-space models).
    """
    _check_model_field(model, target)
    check_time(process, t)
    Xi = float(process.Xi(float(t)))
    if Xi <= 0:
        raise ValueError(f"t must be > 0 for denoising score matching (Xi(t) = 0), got t={t}")
    dtype, device = _model_dtype(model), _model_device(model)
    x0 = target.sample(n, generator, dtype=dtype, device=device)
    z = target.noise(x0, generator)
    xt = float(process.a(float(t))) * x0 + math.sqrt(Xi) * z
    resid = model(xt) + z / math.sqrt(Xi)
    per_sample = 0.5 * (resid**2).sum(dim=lattice.lattice_dims(target.d))
    loss = per_sample.mean()
    return loss / target.V if model.loss_scale_is_per_site else loss
