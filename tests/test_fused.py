"""Unit tests for critdiff_ref.samplers.fused: the compiled MCMC updates are the eager updates.

A fused chain draws the same random numbers from the same generator as the eager chain and runs
the same arithmetic compiled, so the two chains agree to rounding. Tolerance 1e-10 (float64): the
compiler may reorder sums (rounding ~1e-16 per operation), amplified by the trajectory's
sensitivity over <= 50 leapfrog steps of a stable integrator (|dH| <= 3 at this seed, acceptance
0.6-0.75, no trajectory diverges); an accept/reject decision can only differ if ``log u`` falls within ~1e-13
of ``-dH``, probability ~1e-13 per decision at a fixed seed (and the accept counts are compared).
"""

from __future__ import annotations

import shutil

import pytest
import torch

from critdiff_ref.samplers import fused as fused_module
from critdiff_ref.samplers import mcmc
from critdiff_ref.targets import Phi4Lattice
from critdiff_ref.testing import assert_close

pytestmark = pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None, reason="torch.compile on the CPU needs a C++ compiler"
)

TARGET = Phi4Lattice(6, 2, kappa=0.15, lam=0.3)  # symmetric phase, strongly non-Gaussian (lam = 0.3)


def _chain(sampler: str, fused: bool) -> mcmc.ChainResult:
    gen = torch.Generator().manual_seed(7)
    phi0 = 0.5 * torch.randn((3, *TARGET.shape), generator=gen, dtype=torch.float64)
    kw = dict(generator=gen, fused=fused, burn_in=2)
    if sampler == "hmc":
        return mcmc.hmc(TARGET, phi0, n_traj=8, eps=0.4, n_steps=5, **kw)
    if sampler == "metropolis":
        return mcmc.metropolis(TARGET, phi0, n_sweeps=8, step_size=1.0, **kw)
    return mcmc.langevin(TARGET, phi0, n_steps=8, dtau=0.05, metropolize=sampler == "mala", **kw)


@pytest.mark.parametrize("sampler", ["hmc", "metropolis", "langevin", "mala"])
def test_fused_chain_equals_eager_chain(sampler):
    eager, fused = _chain(sampler, False), _chain(sampler, True)
    assert_close(fused.samples, eager.samples, rtol=1e-10, atol=1e-10)  # rounding (module docstring)
    assert torch.equal(fused.acceptance, eager.acceptance)
    if sampler == "hmc":
        assert_close(fused.dH, eager.dH, rtol=1e-8, atol=1e-10)  # dH is a difference of O(V) energies
    if sampler in ("hmc", "mala", "metropolis"):
        assert 0.0 < float(eager.acceptance.mean()) < 1.0  # both branches of the accept step are exercised


def test_fused_leapfrog_is_one_compiled_function_reused():
    """The compiled bodies are built once per function (the cache returns the same object)."""
    assert fused_module.compiled(mcmc._drift_kick) is fused_module.compiled(mcmc._drift_kick)
    assert fused_module.kernel(mcmc._drift_kick, False) is mcmc._drift_kick


def test_fused_flag_is_checked(monkeypatch):
    phi0 = torch.zeros((1, *TARGET.shape), dtype=torch.float64)
    with pytest.raises(TypeError, match="fused must be a bool"):
        mcmc.hmc(TARGET, phi0, n_traj=1, eps=0.1, n_steps=1, fused=1)
    monkeypatch.setattr(fused_module.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="C\\+\\+ compiler"):
        mcmc.langevin(TARGET, phi0, n_steps=1, dtau=0.1, fused=True)
