"""Unit tests for critdiff_ref.samplers.fused: the compiled MCMC updates are the eager updates, and a
captured whole sampler (PF-ODE, reverse SDE with ``fused=True``) is the eager sampler.

A fused chain draws the same random numbers from the same generator as the eager chain and runs
the same arithmetic compiled, so the two chains agree to rounding. Tolerance 1e-10 (float64): the
compiler may reorder sums (rounding ~1e-16 per operation), amplified by the trajectory's
sensitivity over <= 50 leapfrog steps of a stable integrator (|dH| <= 3 at this seed, acceptance
0.6-0.75, no trajectory diverges); an accept/reject decision can only differ if ``log u`` falls within ~1e-13
of ``-dH``, probability ~1e-13 per decision at a fixed seed (and the accept counts are compared).
"""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from critdiff_ref import OU, VE, VP, exact_score
from critdiff_ref.samplers import fused as fused_module
from critdiff_ref.samplers import mcmc, probability_flow, reverse_sde
from critdiff_ref.samplers.mcmc import _hmc
from critdiff_ref.targets import GaussianField, Phi4Lattice
from critdiff_ref.trainers.dsm import ScoreUNet
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


@pytest.mark.parametrize("L,chains", [(6, 4), (5, 5)])  # 5 x 5 x 5: an odd number of momenta
def test_chains_last_compiled_chain_equals_eager_chain(L, chains):
    """From ``CHAINS_LAST_MIN`` chains the compiled trajectory runs on chains-last fields (another
    program, another memory order): still the eager chain to rounding (module docstring), final state
    back in ``(n_chains, *lattice)`` and dense."""
    assert chains >= _hmc.CHAINS_LAST_MIN
    target = Phi4Lattice(L, 2, kappa=0.15, lam=0.3)
    runs = []
    for fused in (False, True):
        gen = torch.Generator().manual_seed(7)
        phi0 = 0.5 * torch.randn((chains, *target.shape), generator=gen, dtype=torch.float64)
        runs.append(mcmc.hmc(target, phi0, n_traj=8, eps=0.4, n_steps=5, generator=gen, fused=fused, burn_in=2))
    eager, fused = runs
    assert_close(fused.samples, eager.samples, rtol=1e-10, atol=1e-10)  # rounding (module docstring)
    assert torch.equal(fused.acceptance, eager.acceptance)
    assert_close(fused.dH, eager.dH, rtol=1e-8, atol=1e-10)  # dH is a difference of O(V) energies
    assert fused.final.shape == eager.final.shape and fused.final.is_contiguous()
    assert 0.0 < float(eager.acceptance.mean()) < 1.0  # both branches of the accept step are exercised


def test_auto_switches_to_the_compiled_trajectory_mid_run_on_the_same_chain(monkeypatch):
    """``fused="auto"`` times eager trajectories, then (the cost model forced here) runs the compiled
    whole trajectory from the fourth on: the same chain as the all-eager one to rounding (module
    docstring), the same adapted step (adaptation ends with the 2 burn-in trajectories, before the switch)."""
    from critdiff_ref.samplers.mcmc import _compiled

    monkeypatch.setattr(_compiled, "worth_compiling", lambda *args: True)
    calls = []
    program = _hmc._program
    monkeypatch.setattr(_hmc, "_program", lambda *args: calls.append(1) or program(*args))
    eager, auto = _chain("hmc", False), _chain("hmc", "auto")
    assert calls == [1]  # compiled once, mid-run
    assert_close(auto.samples, eager.samples, rtol=1e-10, atol=1e-10)
    assert torch.equal(auto.acceptance, eager.acceptance) and auto.eps == eager.eps
    assert 0.0 < float(eager.acceptance.mean()) < 1.0


def test_fused_leapfrog_is_one_compiled_function_reused():
    """The compiled bodies are built once per function (the cache returns the same object)."""
    assert fused_module.compiled(_hmc._drift_kick) is fused_module.compiled(_hmc._drift_kick)
    assert fused_module.kernel(_hmc._drift_kick, False) is _hmc._drift_kick


def test_fused_flag_is_checked(monkeypatch):
    phi0 = torch.zeros((1, *TARGET.shape), dtype=torch.float64)
    with pytest.raises(TypeError, match="fused must be a bool"):
        mcmc.hmc(TARGET, phi0, n_traj=1, eps=0.1, n_steps=1, fused=1)
    monkeypatch.setattr(fused_module.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="C\\+\\+ compiler"):
        mcmc.langevin(TARGET, phi0, n_steps=1, dtau=0.1, fused=True)



# -- captured whole samplers -------------------------------------------------------------------
# The captured loop performs the eager loop's tensor operations, compiled; inductor may fuse and
# reorder elementwise arithmetic (rounding ~1e-16 relative per operation) and the FFT score is the
# same aten FFT. Over <= 4 steps of a contracting flow (|x| = O(1)) the difference stays within a
# few hundred ulps: tolerance 1e-12 in float64.
FIELD = GaussianField(6, 2, r=0.0)  # critical: the zero mode is removed by the score and the noise
FUSED_TOL = dict(rtol=1e-12, atol=1e-12)


def _start(seed: int = 3) -> torch.Tensor:
    return torch.randn((2, *FIELD.shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("method,fused", [("euler", True), ("rk4", True), ("rk4", "graph")])
def test_captured_probability_flow_equals_eager(method, fused):
    score, x_T = exact_score(FIELD, OU()), _start()
    eager = probability_flow(score, OU(), x_T, 3, method, snapshots=[0, 2, 3])
    captured = probability_flow(score, OU(), x_T, 3, method, snapshots=[0, 2, 3], fused=fused)
    for a, b in zip(captured, eager):
        assert_close(a, b, **FUSED_TOL)  # rounding (FUSED_TOL comment)
    x_other = _start(4)  # the captured program is reused for any start of that shape
    n_captured = len(fused_module._CAPTURED)
    again = probability_flow(score, OU(), x_other, 3, method, snapshots=[0, 2, 3], fused=fused)
    assert len(fused_module._CAPTURED) == n_captured
    assert_close(again[0], probability_flow(score, OU(), x_other, 3, method), **FUSED_TOL)
    assert_close(again[1][0], x_other, rtol=0, atol=0)  # snapshot 0 is the start itself


def test_graph_capture_of_a_network_score_with_value_checks():
    """A U-Net score validates its times with a Python read of a tensor (``bool((Xi <= 0).any())``): the
    recording takes the value of the recording run, and the replay equals the eager sampler. float32:
    the replay runs the recorded aten operations themselves, so the difference is at most rounding of a
    few ulps of the O(1) output (tolerance 1e-5)."""
    process = VP()
    net = ScoreUNet(8, 2, process, generator=torch.Generator().manual_seed(0))
    x_T = torch.randn((3, 8, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager = probability_flow(net, process, x_T, 2, "heun", t_min=1e-3)
    captured = probability_flow(net, process, x_T, 2, "heun", t_min=1e-3, fused="graph")
    assert_close(captured, eager, rtol=1e-5, atol=1e-5)


def test_captured_reverse_sde_is_the_same_run():
    """The noise is drawn before the loop in the eager order: same generator seed, same run."""
    process = VE(sigma=5.0)
    score = exact_score(FIELD, process)
    x_T = 3.0 * _start()

    def run(fused: bool):
        gen = torch.Generator().manual_seed(11)
        return reverse_sde(score, process, x_T, 4, gen, noise=FIELD.noise, return_trajectory=True, fused=fused)

    (x_e, traj_e), (x_f, traj_f) = run(False), run(True)
    assert_close(x_f, x_e, **FUSED_TOL)  # rounding (FUSED_TOL comment)
    assert_close(traj_f, traj_e, **FUSED_TOL)
    assert traj_f.shape == (5, *x_T.shape)
    assert not torch.equal(run(True)[0], reverse_sde(score, process, x_T, 4, torch.Generator().manual_seed(12), noise=FIELD.noise, fused=True))


def test_captured_sampler_names_the_first_non_finite_step():
    """A NaN inside the captured loop is found from the returned flags: same error as the eager loop."""

    def score(x, t):  # NaN below t = 0.4: on the grid 1, 0.75, 0.5, 0.25, 0 step 3 (from t = 0.25) is bad
        return -x * (1.0 if t > 0.4 else math.nan)

    process = VE(sigma=5.0)
    for fused in (False, True):
        with pytest.raises(FloatingPointError, match="non-finite state after step 3 "):
            probability_flow(score, process, _start(), 4, "euler", fused=fused)


def test_captured_sampler_checks_its_inputs():
    score, x_T = exact_score(FIELD, OU()), _start()
    with pytest.raises(TypeError, match="True, False or 'graph'"):
        probability_flow(score, OU(), x_T, 2, fused="yes")
    with pytest.raises(ValueError, match="without autograd"):
        probability_flow(score, OU(), x_T.clone().requires_grad_(), 2, fused=True)


def test_capture_cache_is_bounded_and_keyed_by_identity(monkeypatch):
    monkeypatch.setattr(fused_module, "_CAPTURED", type(fused_module._CAPTURED)())
    monkeypatch.setattr(fused_module, "MAX_CAPTURED", 2)
    x = torch.ones(3, dtype=torch.float64)
    def shift(c: float):
        return lambda y: (y + c,)

    loops = [shift(c) for c in range(3)]
    outs = [fused_module.capture(fused_module.Identity(f), f, (x,))(x)[0] for f in loops]
    assert [float(o[0]) for o in outs] == [1.0, 2.0, 3.0]
    assert len(fused_module._CAPTURED) == 2  # the least recently used loop was dropped
    assert fused_module.Identity(loops[0]) != fused_module.Identity(lambda y: (y,))
    fused_module.clear_captured()
    assert len(fused_module._CAPTURED) == 0


def test_a_compile_is_announced_before_and_timed_after(monkeypatch):
    """``notify`` hears of a compile before it starts (with its estimate and the cache) and after it ends;
    an eager run (``fused=False``) compiles nothing and says nothing."""
    from critdiff_ref.samplers.mcmc import _compiled

    monkeypatch.setattr(_compiled, "compile_estimate", lambda *args: _compiled.COLD_COMPILE_SECONDS)
    heard: list[str] = []
    gen = torch.Generator().manual_seed(7)
    phi0 = 0.5 * torch.randn((2, *TARGET.shape), generator=gen, dtype=torch.float64)
    mcmc.hmc(TARGET, phi0, n_traj=2, eps=0.4, n_steps=5, generator=gen, fused=True, notify=heard.append)
    assert len(heard) == 2 and "compiling" in heard[0] and "the first time" in heard[0] and "compiled in" in heard[1]
    heard.clear()
    mcmc.hmc(TARGET, phi0, n_traj=2, eps=0.4, n_steps=5, generator=gen, fused=False, notify=heard.append)
    assert heard == []
