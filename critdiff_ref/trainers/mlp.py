"""A small fully connected score network for 1-D and low-dimensional targets (THEORY 1, 6).

The cumulants paper's architecture: Gaussian Fourier time features (128 dims), two hidden layers of
64 units, LeakyReLU. The input is preconditioned as in :class:`.dsm.ScoreUNet`: the network sees
``c_in(t) x`` with ``c_in = 1 / sqrt(a^2 data_std^2 + Xi)`` and its output ``eps_hat`` becomes the score
``s = -eps_hat / sqrt(Xi(t))`` (noise prediction), so it is trained by :func:`.dsm.train_dsm` unchanged
(one trainer, two architectures).

The first layer acting on ``[c_in x, features(t)]`` is split into its ``x`` and time parts, so a scalar
``t`` (every sampler step) costs one feature vector for the whole batch.

Shapes: ``x`` ``(batch, dim)``; ``t`` a float or ``(batch,)``; the output has the shape and dtype of ``x``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..processes import Process
from .dsm import GaussianFourierFeatures, _positive_float, _positive_int, seeded_init

__all__ = ["ScoreMLP"]


class ScoreMLP(nn.Module):
    """``s_theta(x, t) = -eps_hat(c_in x, t) / sqrt(Xi(t))`` with ``eps_hat`` an MLP on ``[c_in x, features(t)]``.

    ``hidden`` widths (paper: ``(64, 64)``), LeakyReLU (slope 0.01) after every hidden layer,
    ``embed_dim`` Gaussian Fourier features of ``t / T`` with frequencies ``W ~ N(0, fourier_scale^2)``.
    A ``generator`` makes the initialisation deterministic without touching the global RNG.
    """

    def __init__(
        self,
        dim: int,
        process: Process,
        *,
        hidden: Sequence[int] = (64, 64),
        embed_dim: int = 128,
        fourier_scale: float = 4.0,
        data_std: float = 1.0,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.dim = _positive_int("dim", dim)
        hidden = tuple(_positive_int("hidden[i]", h) for h in hidden)
        if not hidden:
            raise ValueError("hidden must be a non-empty sequence of ints >= 1")
        self.process = process
        self.data_std = _positive_float("data_std", data_std)
        with seeded_init(generator):
            self.time = GaussianFourierFeatures(embed_dim, fourier_scale, float(process.T), generator=generator)
            self.input_x = nn.Linear(self.dim, hidden[0])
            self.input_time = nn.Linear(embed_dim, hidden[0], bias=False)
            self.layers = nn.ModuleList([nn.Linear(h_in, h_out) for h_in, h_out in zip(hidden[:-1], hidden[1:])])
            self.out = nn.Linear(hidden[-1], self.dim)
        self.act = nn.LeakyReLU(0.01)
        self.to(dtype)

    @property
    def dtype(self) -> torch.dtype:
        return self.out.weight.dtype

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        """Score at ``(x, t)``; ``x`` ``(batch, dim)``, ``t`` float or ``(batch,)`` with ``Xi(t) > 0``."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("x must be a floating torch.Tensor of shape (batch, dim)")
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (batch, {self.dim}), got {tuple(x.shape)}")
        tt = torch.as_tensor(t, dtype=torch.float64, device=x.device)
        if tt.ndim == 0:
            tt = tt.reshape(1)  # one time for the whole batch: one feature vector, broadcast below
        elif tt.shape != (x.shape[0],):
            raise ValueError(f"t must be a float or a tensor of shape (batch,) = ({x.shape[0]},), got {tuple(tt.shape)}")
        a, Xi = self.process.a(tt), self.process.Xi(tt)
        if bool((Xi <= 0).any()):
            raise ValueError("t must be > 0 (Xi(t) > 0) for a noise-conditional score")
        c_in = (1.0 / torch.sqrt(a * a * self.data_std**2 + Xi)).reshape(-1, 1)
        h = self.input_x((c_in * x.to(torch.float64)).to(self.dtype))
        h = self.act(h + self.input_time(self.time(tt.to(self.dtype))))
        for layer in self.layers:
            h = self.act(layer(h))
        eps = self.out(h)
        return (-eps.to(x.dtype) / torch.sqrt(Xi).to(x.dtype).reshape(-1, 1)).to(x.dtype)
