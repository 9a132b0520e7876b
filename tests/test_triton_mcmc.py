"""Unit tests for critdiff_ref.samplers.mcmc.triton_steps: the Triton Langevin / Metropolis kernels.

They need ``triton`` (skipped without it: the CPU CI installs none). On a CUDA machine the kernels
run compiled; elsewhere under Triton's interpreter (``TRITON_INTERPRET=1``, numpy), which runs the
same kernel source. Three kinds of check:

- exactness: a kernel equals the eager update (:func:`mcmc._langevin._langevin_proposal`,
  :func:`mcmc._metropolis._colour_update`) fed with the kernel's own Philox numbers (:func:`philox_normal`,
  :func:`philox_uniform`); tolerance: float64 to 64 ulps of the field scale (the kernel and the eager
  code sum the same ~10 terms in a different order), float32 likewise in its own ulps;
- sampling: at lam = 0 the chains reproduce the exactly known free-field mode variances
  (Metropolis: ``c0``; Euler Langevin: ``c0 / (1 - dtau / (2 c0))``), 5 standard errors over 64
  independent replicas at a fixed seed (per-mode false-failure rate ~5e-6);
- plumbing: reproducible from the generator, clear errors;
- compilation: the same kernels compile for an sm_90 (H100) target with Triton's real frontend and
  ptxas, no GPU needed (the interpreter does not check what only the compiler rejects).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from critdiff_ref import lattice
from critdiff_ref.samplers import mcmc
from critdiff_ref.samplers.mcmc import _langevin as langevin_module
from critdiff_ref.samplers.mcmc import _metropolis as metropolis_module
from critdiff_ref.samplers.mcmc import triton_steps as triton_mcmc
from critdiff_ref.targets import Phi4Lattice, Phi4ZeroD
from critdiff_ref.testing import assert_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu":
    # Triton's interpreter (numpy) runs the kernels without a GPU; it must be chosen before triton is
    # first imported (triton jits its own tl.randn at import), i.e. here, at collection
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")
K_SIGMA = 5.0


def _field(target: Phi4Lattice, n_chains: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((n_chains, *target.shape), generator=gen, dtype=dtype).to(DEVICE)


def _tol(dtype: torch.dtype, scale: float) -> dict:
    return dict(rtol=0.0, atol=64 * torch.finfo(dtype).eps * scale)  # module docstring


# V = 5 (one tile of many chains), 216 (d = 3), 34^2 = 1156 > BLOCK (several tiles per chain)
LATTICES = [Phi4Lattice(5, 1, 0.3, 0.2), Phi4Lattice(6, 3, 0.1, 0.5), Phi4Lattice(34, 2, 0.2, 0.05)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("target", LATTICES, ids=lambda t: f"L{t.L}d{t.d}")
def test_langevin_kernel_is_the_eager_step_with_its_noise(target, dtype):
    phi = _field(target, 3, dtype)
    seed = torch.tensor([1234], dtype=torch.int64, device=DEVICE)
    out = triton_mcmc.langevin_step(target, phi, seed, 0.05)
    xi = triton_mcmc.philox_normal(1234, phi.numel(), dtype=dtype, device=DEVICE).reshape(phi.shape)
    assert_close(out, langevin_module._langevin_proposal(target, phi, xi, 0.05), **_tol(dtype, float(phi.abs().max()) ** 3))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("target", [Phi4Lattice(4, 1, 0.3, 0.2), Phi4Lattice(4, 3, 0.1, 0.5), Phi4Lattice(34, 2, 0.2, 0.05)],
                         ids=lambda t: f"L{t.L}d{t.d}")
def test_metropolis_kernel_is_the_eager_sweep_with_its_uniforms(target, dtype):
    phi = _field(target, 3, dtype)
    seed = torch.tensor([99], dtype=torch.int64, device=DEVICE)
    out, acc = triton_mcmc.metropolis_sweep(target, phi, seed, 1.0)
    n = phi.numel()
    u = triton_mcmc.philox_uniform(99, n, dtype=dtype, device=DEVICE).reshape(phi.shape)
    r = triton_mcmc.philox_uniform(99, n, n, dtype=dtype, device=DEVICE).reshape(phi.shape)
    ref, n_acc = phi, 0.0
    for mask in metropolis_module._cached_masks(target.L, target.d, phi.device):
        ref, a = metropolis_module._colour_update(target, ref, u, r, mask, 1.0)
        n_acc = n_acc + a
    # an accept decision could only differ if log r fell within rounding of -dS: at a fixed seed
    # it does not (the fields then agree to rounding), and both branches are exercised
    assert_close(out, ref, **_tol(dtype, float(phi.abs().max()) ** 4))
    assert_close(acc, n_acc / target.V, rtol=0.0, atol=0.0)
    assert 0.0 < float(acc.mean()) < 1.0


def _replicas(target: Phi4Lattice, n: int = 64) -> torch.Tensor:
    """n exact free-field samples (lam = 0): every later state of a correct sampler is exact too."""
    return target.free_field().sample(n, torch.Generator().manual_seed(5), dtype=torch.float64).to(DEVICE)


def _mode_power(samples: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    per_chain = (lattice.fft(samples, d).abs() ** 2).mean(dim=0)  # (R, *lattice): time averages
    return per_chain.mean(dim=0), per_chain.std(dim=0) / math.sqrt(per_chain.shape[0])


def test_metropolis_kernel_samples_the_free_field():
    target = Phi4Lattice(6, 1, 0.3, 0.0)
    res = mcmc.metropolis(target, _replicas(target), n_sweeps=200, step_size=1.5,
                          generator=torch.Generator().manual_seed(1), fused="triton")
    v, se = _mode_power(res.samples, 1)
    z = (v.cpu() - target.free_field().c0()) / se.cpu()
    assert bool((z.abs() < K_SIGMA).all()), z
    assert 0.3 < float(res.acceptance.mean()) < 0.95  # the chains move


def test_langevin_kernel_has_the_euler_stationary_variance():
    target = Phi4Lattice(6, 1, 0.3, 0.0)
    c0 = target.free_field().c0()
    dtau = 0.8 * float(c0.min())  # 40 % of the stability limit: the Euler bias is >= 25 % of c0 per mode
    # the slowest variance relaxes by (1 - dtau / max c0)^2 per step: 100 steps of burn-in leave < 1e-6
    res = mcmc.langevin(target, _replicas(target), n_steps=250, dtau=dtau, burn_in=100,
                        generator=torch.Generator().manual_seed(2), fused="triton")
    v, se = _mode_power(res.samples, 1)
    v, se = v.cpu(), se.cpu()
    z = (v - mcmc.euler_langevin_variance(c0, dtau)) / se
    assert bool((z.abs() < K_SIGMA).all()), z
    stiff = c0 == c0.min()
    assert bool(((v - c0)[stiff] > K_SIGMA * se[stiff]).all())  # and it is not c0: the bias is seen


def test_triton_chains_follow_the_generator():
    target = Phi4Lattice(4, 2, 0.2, 0.1)
    phi = _field(target, 2, torch.float64)

    def run(seed: int):
        return mcmc.langevin(target, phi, n_steps=3, dtau=0.05, generator=torch.Generator().manual_seed(seed), fused="triton").samples

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_triton_flag_errors(monkeypatch):
    target = Phi4Lattice(4, 2, 0.2, 0.1)
    phi = _field(target, 2, torch.float64)
    with pytest.raises(ValueError, match="unadjusted Langevin only"):
        mcmc.langevin(target, phi, n_steps=1, dtau=0.1, metropolize=True, fused="triton")
    with pytest.raises(TypeError, match="fused must be a bool"):  # HMC has no Triton kernel
        mcmc.hmc(target, phi, n_traj=1, eps=0.1, n_steps=1, fused="triton")
    with pytest.raises(TypeError, match="True, False or 'triton'"):
        mcmc.metropolis(target, phi, n_sweeps=1, step_size=1.0, fused="cuda")
    with pytest.raises(TypeError, match="Phi4Lattice"):
        zero_d = Phi4ZeroD(1.0, 1.0)
        mcmc.langevin(zero_d, torch.zeros((2, 1), dtype=torch.float64, device=DEVICE), n_steps=1, dtau=0.1, fused="triton")
    if DEVICE == "cpu":
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
        with pytest.raises(RuntimeError, match="CUDA device"):
            mcmc.langevin(target, phi, n_steps=1, dtau=0.1, fused="triton")


COMPILE_SCRIPT = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from critdiff_ref.samplers.mcmc import _triton_kernels as K
assert not K.INTERPRETED
tiles = ("constexpr",) * 3
for ptr in ("*fp32", "*fp64"):
    langevin = (ptr, ptr, ptr, "*i64", "i32", "i32", "i32", *tiles)
    colour = (ptr, ptr, "*i32", ptr, "*i64", "i32", "i32", "i32", "i32", *tiles)
    for d, rows, cols in ((1, 128, 8), (2, 1, 1024), (3, 16, 64)):
        tile = {"D": d, "ROWS": rows, "COLS": cols}
        for fn, types in ((K.langevin, langevin), (K.colour, colour)):
            names = fn.arg_names  # the kernel's parameters, in order
            src = ASTSource(fn=fn, signature=dict(zip(names, types, strict=True)), constexprs=tile)
            triton.compile(src, target=GPUTarget("cuda", 90, 32))
print("compiled")
"""


@pytest.mark.skipif(DEVICE == "cuda", reason="on a GPU the kernels run compiled in the tests above")
def test_kernels_compile_for_an_h100_without_one():
    """Triton's compiler (not the interpreter) accepts both kernels for fp32/fp64 and d = 1, 2, 3, down to
    PTX for sm_90; run in a fresh interpreter because this process loaded the kernels interpreted."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    done = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and "compiled" in done.stdout, done.stderr[-3000:]
