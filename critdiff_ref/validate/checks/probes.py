"""Exact generated covariances of Gaussian-field samplers by basis-state probing (THEORY 2).

A deterministic sampler with the exact score is linear in its start; a stochastic one whose noise can
be supplied is linear in its start and every draw.  Feeding site basis states through one batched run
gives the exact linear maps and so the exact generated covariance, with a linearity residual that
tells whether the premise held (randomness drawn elsewhere, a batch-dependent sampler).
"""

from __future__ import annotations

import torch

from ... import lattice
from ...targets import GaussianField
from ..runners.base import Runner
from ..runners.execute import check_output, run_checked, white_noise

__all__ = ["probe_covariance", "probe_noise_covariance", "MAX_NOISE_PROBE_ELEMENTS"]


def _site_basis(f: GaussianField, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``V`` site basis states ``(V, *lattice)`` and their zero-mode projections (the same at r > 0)."""
    basis = torch.eye(f.V, dtype=dtype, device=device).reshape(f.V, *f.shape)
    return basis, (lattice.remove_zero_mode(basis, f.d) if f.zero_mode_removed else basis)


def _linearity_residual(out: torch.Tensor, pred: torch.Tensor, zero: torch.Tensor) -> float:
    """``(|out - pred| + |zero|) / |out|``: how far probe outputs are from the linear prediction (and
    the output of an all-zero input from 0), relative to the output norm."""
    return (float((out - pred).norm()) + float(zero.norm())) / (float(out.norm()) or 1.0)


def probe_covariance(runner: Runner, f: GaussianField, steps: int, dtype=torch.float64, device=None):
    """Exact generated covariance of a deterministic (linear) sampler by basis-state probing.

    Returns ``(Sigma_gen (V x V real space), linearity_residual)``; the residual compares the sampler's
    output on a random start and on zero with the linear prediction (relative to the output norm).
    """
    V = f.V
    _, P = _site_basis(f, dtype, device)
    z = white_noise(f, 2, torch.Generator().manual_seed(777), dtype, device)
    # one batch: the V basis states, two random starts, two zero starts (a batch-dependent sampler fails linearity)
    out_all = run_checked(runner, f, steps, torch.cat([P, z, torch.zeros_like(z)]), None).reshape(V + 4, V)
    out_all = out_all.to(torch.float64).cpu()
    Y, out, zero = out_all[:V], out_all[V : V + 2], out_all[V + 2 :]
    Sigma = Y.T @ Y
    pred = z.reshape(2, V).to(torch.float64).cpu() @ Y
    return Sigma, _linearity_residual(out, pred, zero)


# Largest probe batch (rows x sites) for exact noise probing; beyond it Monte Carlo is used.
MAX_NOISE_PROBE_ELEMENTS = 2**24


def probe_noise_covariance(runner: Runner, f: GaussianField, steps: int, dtype=torch.float64, device=None):
    """Exact generated covariance of a stochastic sampler that is linear in its start and its noise.

    With the exact score, ``x_0 = A z + sum_j B_j xi_j`` (``xi_j`` the sampler's standard-normal draws),
    so ``Sigma_gen = A Pi A^T + sum_j B_j B_j^T`` (``Pi`` the zero-mode projector of the start). One batched
    run through ``runner.run_noise`` probes every column: rows ``[0, V)`` start from the projected site
    basis with no noise, rows of block ``j + 1`` start from 0 and get the site basis as draw ``j``; two
    extra rows (a random start with random draws, and all zeros) measure the linearity residual.
    Returns ``(Sigma (V x V real space), residual, n_draws)``, or None where probing does not apply
    (no ``run_noise``, draws not shaped like the batch, or more than MAX_NOISE_PROBE_ELEMENTS).
    """
    if runner.run_noise is None:
        return None
    V, shape = f.V, tuple(f.shape)
    shapes: list = []

    def count(shape_, dtype_, device_):
        shapes.append(tuple(shape_))
        return torch.zeros(shape_, dtype=dtype_ or dtype, device=device_ or device)

    runner.run_noise(f, steps, torch.zeros((1, *shape), dtype=dtype, device=device), count)
    M = len(shapes)
    B = (M + 1) * V + 2
    if any(s != (1, *shape) for s in shapes) or B * V > MAX_NOISE_PROBE_ELEMENTS:
        return None
    gen = torch.Generator().manual_seed(777)
    z_r = white_noise(f, 1, gen, dtype)
    xi_r = torch.randn((max(M, 1), *shape), generator=gen, dtype=dtype)
    basis, P = _site_basis(f, dtype, None)
    z = torch.zeros((B, *shape), dtype=dtype)
    z[:V], z[-2] = P, z_r[0]
    drawn = [0]

    def draw(shape_, dtype_, device_):
        j = drawn[0]
        drawn[0] += 1
        if tuple(shape_) != (B, *shape) or j >= M:
            raise ValueError(f"draw {j} of shape {tuple(shape_)}: the probe run drew differently from the counting run")
        out = torch.zeros((B, *shape), dtype=dtype)
        out[(j + 1) * V : (j + 2) * V] = basis
        out[-2] = xi_r[j]
        return out.to(dtype=dtype_ or dtype, device=device_ or device)

    x = check_output(runner.run_noise(f, steps, z.to(device=device), draw), z.to(device=device),
                     f"{runner.name} at {steps} steps (noise probing)")
    if f.zero_mode_removed:
        x = lattice.remove_zero_mode(x, f.d)
    x = x.to(torch.float64).cpu().reshape(B, V)
    Y, out, zero = x[: B - 2], x[-2], x[-1]
    Sigma = Y.T @ Y
    inputs = torch.cat([z_r.reshape(1, V), xi_r[:M].reshape(M, V)]).to(torch.float64)  # one row per block
    pred = torch.einsum("bv,bvw->w", inputs, Y.reshape(M + 1, V, V))
    return Sigma, _linearity_residual(out, pred, zero), M
