"""Executing a wrapped sampler for the checks: the output contract (finite, shaped, typed and placed like
its input, else :class:`SamplerOutputError`), white start noise, the zero-mode projection of
critical outputs (THEORY 0), and the determinism probe.
"""

from __future__ import annotations

import torch

from ... import lattice
from ...targets import GaussianField
from .base import Runner

__all__ = ["SamplerOutputError", "check_output", "field_label", "white_noise", "run_checked", "is_deterministic"]


class SamplerOutputError(RuntimeError):
    """The sampler returned something unusable (wrong type, shape, dtype, device, or NaN)."""


def check_output(x, like: torch.Tensor, what: str) -> torch.Tensor:
    """Raise :class:`SamplerOutputError` unless ``x`` is a finite tensor shaped, typed and placed like ``like``."""
    if not isinstance(x, torch.Tensor):
        raise SamplerOutputError(f"{what}: sampler returned {type(x).__name__}, expected a torch.Tensor")
    if tuple(x.shape) != tuple(like.shape):
        raise SamplerOutputError(f"{what}: output shape {tuple(x.shape)} != input shape {tuple(like.shape)}")
    if x.dtype != like.dtype:
        raise SamplerOutputError(f"{what}: output dtype {x.dtype} != input dtype {like.dtype}")
    if x.device != like.device:
        raise SamplerOutputError(f"{what}: output device {x.device} != input device {like.device}")
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise SamplerOutputError(f"{what}: output has {bad} NaN/inf entries of {x.numel()}")
    return x


def field_label(f: GaussianField) -> str:
    """The target label of a Gaussian field in check names: ``gauss[d=2,L=8,r=0]``."""
    return f"gauss[d={f.d},L={f.L},r={f.r:g}]"


def white_noise(target, n: int, generator: torch.Generator | None, dtype=torch.float64, device=None) -> torch.Tensor:
    """Unit white noise ``(n, *event)``; zero mode removed for a critical field (THEORY 0)."""
    if isinstance(target, GaussianField):
        z = torch.randn((n, *target.shape), generator=generator, dtype=dtype, device=device)
        return lattice.remove_zero_mode(z, target.d) if target.zero_mode_removed else z
    return torch.randn((n,), generator=generator, dtype=dtype, device=device)


def run_checked(runner: Runner, target, steps: int, z: torch.Tensor, generator) -> torch.Tensor:
    """Run and check the output; for a critical field project out the zero mode of the output
    (THEORY 0: it is removed in the samples; a sampler that injects noise there, like most SDE
    samplers and every diffusers scheduler, is not penalised for a mode the data does not have)."""
    x = check_output(runner(target, steps, z, generator), z, f"{runner.name} at {steps} steps")
    if isinstance(target, GaussianField) and target.zero_mode_removed:
        x = lattice.remove_zero_mode(x, target.d)
    return x


def is_deterministic(runner: Runner, target, steps: int, dtype=torch.float64, device=None) -> bool:
    """Run twice on the same start noise with differently seeded generators; equal outputs => deterministic."""
    z = white_noise(target, 2, torch.Generator().manual_seed(12345), dtype, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        x1 = run_checked(runner, target, steps, z, torch.Generator().manual_seed(1))
        torch.manual_seed(2)
        x2 = run_checked(runner, target, steps, z, torch.Generator().manual_seed(2))
    return bool(torch.equal(x1, x2))
