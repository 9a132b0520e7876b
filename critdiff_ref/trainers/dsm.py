"""Neural denoising score matching for lattice fields (THEORY 1, 8): a generic ``s_theta(x, t)`` trainer
and a compact circular-padding U-Net as the default architecture.

- Time embedding: Gaussian Fourier features ``[sin(2 pi W t/T), cos(2 pi W t/T)]``, ``W ~ N(0, scale^2)``
  fixed at construction (Tancik et al. 2020; Song et al. 2021).
- Preconditioning: the network sees ``c_in(t) x`` with ``c_in = 1 / sqrt(a^2 data_std^2 + Xi)`` and its
  output ``eps_hat`` is turned into a score ``s = -eps_hat / sqrt(Xi(t))`` (noise prediction).
- ``odd=True`` makes the score exactly Z2-equivariant, ``s(-x) = -s(x)`` (the phi^4 symmetry).
- DSM loss (Vincent 2011; Song et al. 2021, weighting ``lambda(t) = Xi(t)``):
  ``E_{t ~ U(t_min, T), x_0, z} (1/V) |sqrt(Xi) s_theta(a x_0 + sqrt(Xi) z, t) + z|^2``. For a Gaussian
  field its minimum, reached by the exact score, is ``E_t (1/V) sum_k a^2 c0(k) / C_t(k)``.

Shapes: data ``(N, *lattice)``, ``model(x, t)`` with ``x`` ``(batch, *lattice)`` and ``t`` a float or
``(batch,)``; the output has the shape and dtype of ``x``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .. import lattice
from ..processes import Process

__all__ = [
    "GaussianFourierFeatures",
    "ScoreUNet",
    "denoising_loss",
    "augment",
    "DSMReport",
    "train_dsm",
]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def _positive_int(name: str, value, lower: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {lower}, got {value!r}")
    if value < lower:
        raise ValueError(f"{name} must be an int >= {lower}, got {name}={value}")
    return int(value)


def _positive_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite real > 0, got {name}={value!r}")
    return float(value)


@contextlib.contextmanager
def seeded_init(generator: torch.Generator | None) -> Iterator[None]:
    """Parameters created inside draw their initial values from one seed taken from ``generator``, without
    touching the global RNG (deterministic networks); with ``generator=None`` the global RNG as usual."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if generator is not None else None
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def batch_times(x: torch.Tensor, t) -> torch.Tensor:
    """``t`` (a float or a ``(batch,)`` tensor) as float64 times, one per configuration of ``x``."""
    tt = torch.as_tensor(t, dtype=torch.float64, device=x.device)
    if tt.ndim == 0:
        tt = tt.expand(x.shape[0])
    if tt.shape != (x.shape[0],):
        raise ValueError(f"t must be a float or a tensor of shape (batch,) = ({x.shape[0]},), got {tuple(tt.shape)}")
    return tt


class GaussianFourierFeatures(nn.Module):
    """``t -> [sin(2 pi W t / T), cos(2 pi W t / T)]`` with fixed ``W ~ N(0, scale^2)``, shape ``(batch, dim)``."""

    def __init__(self, dim: int, scale: float = 16.0, T: float = 1.0, *, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        dim = _positive_int("dim", dim, 2)
        if dim % 2:
            raise ValueError(f"dim must be even (sin and cos halves), got dim={dim}")
        scale, self.T = _positive_float("scale", scale), _positive_float("T", T)
        W = torch.randn(dim // 2, generator=generator, dtype=torch.float64) * scale
        self.register_buffer("W", W.to(dtype))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        proj = 2.0 * math.pi * t.reshape(-1, 1).to(self.W.dtype) / self.T * self.W
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


def _norm(channels: int) -> nn.GroupNorm:
    # per-sample normalisation: the network acts on each batch entry separately (needed by the
    # autograd divergence of samplers.dmmc), unlike BatchNorm
    return nn.GroupNorm(min(4, channels), channels)


class _ResBlock(nn.Module):
    def __init__(self, d: int, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        conv = _CONV[d]
        self.d = d
        self.norm1, self.conv1 = _norm(c_in), conv(c_in, c_out, 3, padding=1, padding_mode="circular")
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), conv(c_out, c_out, 3, padding=1, padding_mode="circular")
        self.skip = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb).reshape(*emb.shape[:1], -1, *([1] * self.d))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class ScoreUNet(nn.Module):
    """Compact U-Net score model ``s_theta(x, t)`` on the periodic lattice ``(Z_L)^d``, d = 1, 2, 3.

    ``channels[i]`` feature maps at resolution ``L / 2^i`` (stride-2 circular convs down, nearest
    upsampling + circular conv up, skip connections), one residual block per level and one in the
    middle, time embedding added in every block. ``L`` must be divisible by ``2^(len(channels) - 1)``.
    CPU tests: ``channels=(8, 16)``; GPU at L = 32..64: ``channels=(32, 64, 128)``.
    """

    def __init__(
        self,
        L: int,
        d: int,
        process: Process,
        *,
        channels: Sequence[int] = (16, 32),
        embed_dim: int = 32,
        fourier_scale: float = 16.0,
        data_std: float = 1.0,
        odd: bool = True,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        lattice.check_lattice(L, d)
        if d not in _CONV:
            raise ValueError(f"d must be 1, 2 or 3 for the convolutional U-Net, got d={d}")
        channels = tuple(_positive_int("channels[i]", c) for c in channels)
        if not channels:
            raise ValueError("channels must be a non-empty sequence of ints >= 1")
        if L % 2 ** (len(channels) - 1):
            raise ValueError(f"L must be divisible by 2^(len(channels) - 1) = {2 ** (len(channels) - 1)}, got L={L}")
        if not isinstance(odd, bool):
            raise TypeError(f"odd must be a bool, got {odd!r}")
        self.L, self.d, self.process, self.odd = L, d, process, odd
        self.data_std = _positive_float("data_std", data_std)
        with seeded_init(generator):
            self._build(channels, embed_dim, fourier_scale, generator)
        self.to(dtype)

    def _build(self, channels, embed_dim, fourier_scale, generator) -> None:
        d, conv = self.d, _CONV[self.d]
        self.time = GaussianFourierFeatures(embed_dim, fourier_scale, float(self.process.T), generator=generator)
        self.time_mlp = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.conv_in = conv(1, channels[0], 3, padding=1, padding_mode="circular")
        self.down_blocks = nn.ModuleList([_ResBlock(d, c, c, embed_dim) for c in channels])
        self.downsample = nn.ModuleList(
            [conv(channels[i], channels[i + 1], 3, stride=2, padding=1, padding_mode="circular") for i in range(len(channels) - 1)]
        )
        self.mid = _ResBlock(d, channels[-1], channels[-1], embed_dim)
        self.upsample = nn.ModuleList(
            [conv(channels[i + 1], channels[i], 3, padding=1, padding_mode="circular") for i in range(len(channels) - 1)]
        )
        self.up_blocks = nn.ModuleList([_ResBlock(d, 2 * c, c, embed_dim) for c in channels[:-1]])
        self.norm_out = _norm(channels[0])
        self.conv_out = conv(channels[0], 1, 3, padding=1, padding_mode="circular")

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def _times(self, x: torch.Tensor, t) -> torch.Tensor:
        return batch_times(x, t)

    def _eps(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x.unsqueeze(1))
        skips = []
        for i, block in enumerate(self.down_blocks):
            h = block(h, emb)
            if i < len(self.downsample):
                skips.append(h)
                h = self.downsample[i](h)
        h = self.mid(h, emb)
        for i in reversed(range(len(self.up_blocks))):
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = self.upsample[i](h)
            h = self.up_blocks[i](torch.cat([h, skips[i]], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h))).squeeze(1)

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        """``s_theta(x, t) = -eps_hat(c_in x, t) / sqrt(Xi(t))`` (odd-symmetrised if ``odd``), shape/dtype of ``x``."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("x must be a floating torch.Tensor of shape (batch, *lattice)")
        if tuple(x.shape[1:]) != (self.L,) * self.d:
            raise ValueError(f"x must have shape (batch, {', '.join([str(self.L)] * self.d)}), got {tuple(x.shape)}")
        tt = self._times(x, t)
        a, Xi = self.process.a(tt), self.process.Xi(tt)
        if bool((Xi <= 0).any()):
            raise ValueError("t must be > 0 (Xi(t) > 0) for a noise-conditional score")
        shape = (-1,) + (1,) * self.d
        c_in = (1.0 / torch.sqrt(a * a * self.data_std**2 + Xi)).reshape(shape)
        xin = (c_in * x.to(torch.float64)).to(self.dtype)
        emb = self.time_mlp(self.time(tt.to(self.dtype)))
        if self.odd:  # one pass over the stacked (x, -x) batch
            both = self._eps(torch.cat([xin, -xin]), torch.cat([emb, emb]))
            eps = 0.5 * (both[: x.shape[0]] - both[x.shape[0] :])
        else:
            eps = self._eps(xin, emb)
        return (-eps.to(x.dtype) / torch.sqrt(Xi).to(x.dtype).reshape(shape)).to(x.dtype)


# -- training ----------------------------------------------------------------------------------------
def augment(x: torch.Tensor, d: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random lattice symmetries: one translation and one reflection per axis for the whole batch, and
    an independent sign flip (phi^4's Z2) per configuration. ``x`` ``(batch, *lattice)``; same shape out."""
    gdev = generator.device if generator is not None else x.device
    dims = tuple(range(1, d + 1))
    shifts = torch.randint(0, x.shape[-1], (d,), generator=generator, device=gdev).tolist()
    y = torch.roll(x, shifts=tuple(shifts), dims=dims)
    flip = [mu for mu, f in zip(dims, torch.randint(0, 2, (d,), generator=generator, device=gdev).tolist()) if f]
    if flip:
        y = torch.flip(y, dims=flip)
    sign = 2.0 * torch.randint(0, 2, (x.shape[0],), generator=generator, device=gdev) - 1.0
    return y * sign.to(dtype=x.dtype, device=x.device).reshape((-1,) + (1,) * d)


def denoising_loss(
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    process: Process,
    generator: torch.Generator | None = None,
    *,
    t_min: float = 1e-3,
) -> torch.Tensor:
    """Monte-Carlo DSM loss on a batch ``x0`` ``(B, *lattice)``: one ``t ~ U(t_min, T)`` and one noise per
    configuration, ``mean_b (1/V) |sqrt(Xi) s(x_t, t) + z|^2`` (weighting ``lambda = Xi``)."""
    T = float(process.T)
    if not (isinstance(t_min, (int, float)) and 0.0 < t_min < T):
        raise ValueError(f"t_min must lie in (0, T) = (0, {T}), got t_min={t_min!r}")
    B = x0.shape[0]
    gdev = generator.device if generator is not None else x0.device
    u = torch.rand(B, generator=generator, dtype=torch.float64, device=gdev).to(x0.device)
    t = t_min + (T - t_min) * u
    shape = (-1,) + (1,) * (x0.ndim - 1)
    a = process.a(t).to(x0.dtype).reshape(shape)
    sXi = torch.sqrt(process.Xi(t)).to(x0.dtype).reshape(shape)
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=gdev).to(x0.device)
    resid = sXi * score(a * x0 + sXi * z, t) + z
    return (resid * resid).reshape(B, -1).mean(dim=1).mean()


@dataclass(frozen=True)
class DSMReport:
    """Result of :func:`train_dsm`: the minibatch loss per step and the final model (trained in place)."""

    losses: np.ndarray
    model: nn.Module


def train_dsm(
    model: nn.Module,
    data: torch.Tensor,
    process: Process,
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    t_min: float = 1e-3,
    augment_data: bool = True,
    grad_clip: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callable[[int, int, float], None] | None = None,
) -> DSMReport:
    """Train ``model(x, t)`` by DSM with Adam on ``data`` ``(N, *lattice)`` (THEORY 1, 8).

    Minibatches of ``batch_size`` drawn with replacement via ``generator``, randomly transformed by
    lattice symmetries when ``augment_data``; a cosine learning-rate decay to 0 over ``steps``;
    gradient norm clipped at ``grad_clip``. ``callback(step, steps, loss)`` after every step.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(data, torch.Tensor) or not data.is_floating_point() or data.ndim < 2 or data.shape[0] < 2:
        raise ValueError("data must be a floating tensor of shape (N >= 2, *lattice)")
    steps, batch_size = _positive_int("steps", steps), _positive_int("batch_size", batch_size)
    lr, grad_clip = _positive_float("lr", lr), _positive_float("grad_clip", grad_clip)
    d = data.ndim - 1
    params = list(model.parameters())
    dtype, device = params[0].dtype, params[0].device
    data = data.to(dtype=dtype, device=device)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda n: 0.5 * (1.0 + math.cos(math.pi * n / steps)))
    gdev = generator.device if generator is not None else device
    losses = []
    model.train()
    for n in range(steps):
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=generator, device=gdev).to(device)
        x0 = data[idx]
        if augment_data:
            x0 = augment(x0, d, generator)
        loss = denoising_loss(model, x0, process, generator, t_min=t_min)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"train_dsm: non-finite loss at step {n} (lower lr?)")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if callback is not None:
            callback(n + 1, steps, losses[-1])
    model.eval()
    return DSMReport(np.asarray(losses), model)
