"""pytest-benchmark micro-benchmarks of the hot kernels, for quick local A/B comparisons.

Not part of the test suite (``testpaths`` are ``tests`` and ``invariants``); run explicitly:

    OMP_NUM_THREADS=1 python -m pytest benchmarks/test_micro.py --benchmark-only
    python -m pytest benchmarks/test_micro.py --benchmark-save=before   # then, after a change:
    python -m pytest benchmarks/test_micro.py --benchmark-compare=0001  # or --benchmark-compare

Every benchmarked callable ends with a device synchronisation, so GPU kernels are timed, not queued.
Sizes: 8 fields (16 chains for MCMC) on a 64 x 64 lattice.
"""

from __future__ import annotations

import pytest
import torch

from critdiff_ref import VP, GaussianField, Phi4Lattice, exact_score, lattice
from critdiff_ref.processes import ode_drift
from critdiff_ref.samplers import euler_maruyama_step, rk4_step
from critdiff_ref.samplers.mcmc import leapfrog, metropolis_sweep

from .common import ell_for, local_conv_score, resolve, synchronize

L, D, BATCH, CHAINS = 64, 2, 8, 16

# No CUDA query at import: asv imports this module in its forkserver, and a CUDA-initialised parent
# would poison every forked benchmark process.  CUDA availability is checked inside each test.
DEVICE_DTYPE = [
    pytest.param(device, dtype, id=f"{device}-{dtype}") for device in ("cpu", "cuda") for dtype in ("float32", "float64")
]


def _resolve(device: str, dtype: str):
    try:
        return resolve(device, dtype)
    except NotImplementedError as exc:
        pytest.skip(str(exc))


def _field_input(device: str, dtype: str):
    dev, dt = _resolve(device, dtype)
    field, process = GaussianField(L, D, 0.0), VP()
    x = torch.randn((BATCH, L, L), generator=torch.Generator(device=dev).manual_seed(0), dtype=dt, device=dev)
    return field, process, x, dev


def _synced(fn, device):
    def call():
        out = fn()
        synchronize(device)
        return out

    return call


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPE)
def test_fft_pair(benchmark, device, dtype):
    _, _, x, dev = _field_input(device, dtype)
    benchmark(_synced(lambda: lattice.ifft(lattice.fft(x, D), D), dev))


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPE)
def test_fft_score(benchmark, device, dtype):
    field, process, x, dev = _field_input(device, dtype)
    score = exact_score(field, process)
    out = benchmark(_synced(lambda: score(x, 0.5), dev))
    assert out.shape == x.shape


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPE)
def test_local_conv_score(benchmark, device, dtype):
    field, process, x, dev = _field_input(device, dtype)
    score = local_conv_score(field, process, ell_for(L))
    out = benchmark(_synced(lambda: score(x, 0.5), dev))
    assert out.shape == x.shape


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPE)
def test_exact_sampler(benchmark, device, dtype):
    field, _, x, dev = _field_input(device, dtype)
    gen = torch.Generator(device=dev).manual_seed(1)
    out = benchmark(_synced(lambda: field.sample(BATCH, gen, dtype=x.dtype, device=dev), dev))
    assert out.shape == x.shape


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPE)
def test_rk4_step(benchmark, device, dtype):
    field, process, x, dev = _field_input(device, dtype)
    score = exact_score(field, process)
    velocity = lambda y, t: ode_drift(process, score, y, t)  # noqa: E731
    benchmark(_synced(lambda: rk4_step(velocity, x, 0.5, -1.0 / 16), dev))


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPE)
def test_euler_maruyama_step(benchmark, device, dtype):
    field, process, x, dev = _field_input(device, dtype)
    score = exact_score(field, process)
    z = field.noise(x, torch.Generator(device=dev).manual_seed(2))
    benchmark(_synced(lambda: euler_maruyama_step(process, score, x, 0.5, -1.0 / 16, z), dev))


def _chains(device: str, dtype: str):
    dev, dt = _resolve(device, dtype)
    target = Phi4Lattice(L, D, kappa=0.1, lam=0.022)
    gen = torch.Generator(device=dev).manual_seed(0)
    phi = 0.5 * torch.randn((CHAINS, L, L), generator=gen, dtype=dt, device=dev)
    return target, phi, torch.randn(phi.shape, generator=gen, dtype=dt, device=dev), gen, dev


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPE)
def test_phi4_force(benchmark, device, dtype):
    target, phi, _, _, dev = _chains(device, dtype)
    benchmark(_synced(lambda: target.force(phi), dev))


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPE)
def test_leapfrog_step(benchmark, device, dtype):
    target, phi, pi, _, dev = _chains(device, dtype)
    benchmark(_synced(lambda: leapfrog(target, phi, pi, 0.05, 1), dev))


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPE)
def test_metropolis_sweep(benchmark, device, dtype):
    target, phi, _, gen, dev = _chains(device, dtype)
    benchmark(_synced(lambda: metropolis_sweep(target, phi, gen, step_size=0.5), dev))
