"""Unit tests for critdiff_ref.samplers.mcmc: local action changes, checkerboards, chain bookkeeping,
reproducibility, small-step limits and input validation (the statistical invariants live in
invariants/test_mcmc_free_field.py)."""

import math
import os

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from critdiff_ref.samplers import mcmc
from critdiff_ref.strategies import seeds
from critdiff_ref.targets import Phi4Lattice
from critdiff_ref.testing import assert_close


@st.composite
def theories(draw):
    d = draw(st.integers(1, 3))
    L = draw(st.sampled_from([4, 6] if d < 3 else [4]))
    return Phi4Lattice(L, d, draw(st.floats(0.0, 0.4 / d)), draw(st.floats(0.0, 1.0)))


@given(theories(), seeds())
def test_local_action_change_is_the_exact_difference_on_a_checkerboard(target, seed):
    """Changing all even (or odd) sites at once: sum of the per-site changes = S(new) - S(old)."""
    gen = torch.Generator().manual_seed(seed)
    phi = torch.randn((2, *target.shape), generator=gen, dtype=torch.float64)
    proposal = phi + torch.randn(phi.shape, generator=gen, dtype=torch.float64)
    for mask in mcmc.checkerboard_masks(target.L, target.d):
        new = torch.where(mask, proposal, phi)
        dS = mcmc.local_action_change(target, phi, new)
        assert bool((dS[:, ~mask] == 0).all())
        # sums of V terms of size |S|/V: a few hundred ulps of the action's scale
        scale = float(target.action(phi).abs().max() + target.action(new).abs().max())
        assert_close(dS.reshape(2, -1).sum(1), target.action(new) - target.action(phi), rtol=0.0,
                     atol=256 * torch.finfo(torch.float64).eps * scale)


@pytest.mark.parametrize("L, d", [(4, 1), (6, 2), (4, 3)])
def test_checkerboard_masks_partition_into_non_neighbours(L, d):
    even, odd = mcmc.checkerboard_masks(L, d)
    assert int(even.sum()) == int(odd.sum()) == L**d // 2 and bool((even ^ odd).all())
    for mu in range(d):
        for s in (1, -1):
            # no even site has an even neighbour (periodic, L even)
            assert not bool((even & torch.roll(even, s, dims=mu)).any())


def test_chain_bookkeeping_burn_in_thin_and_callback():
    target = Phi4Lattice(4, 2, 0.2, 0.1)
    phi0 = torch.zeros((3, 4, 4), dtype=torch.float64)
    calls = []
    res = mcmc.hmc(target, phi0, n_traj=10, eps=0.1, n_steps=5, burn_in=4, thin=3,
                   generator=torch.Generator().manual_seed(0), callback=lambda done, total, phi: calls.append((done, total)))
    assert res.samples.shape == (3, 3, 4, 4)  # updates 3, 6, 9 after burn-in
    assert res.dH.shape == (10, 3) and res.acceptance.shape == (3,)
    assert bool(((res.acceptance >= 0) & (res.acceptance <= 1)).all())
    assert calls == [(i, 14) for i in range(1, 15)]
    assert res.final.shape == (3, 4, 4)
    assert torch.equal(phi0, torch.zeros_like(phi0))  # the start is not modified in place


@pytest.mark.parametrize("sampler", ["hmc", "metropolis", "langevin", "mala"])
def test_same_seed_same_chain(sampler):
    target = Phi4Lattice(4, 2, 0.2, 0.5)

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        phi0 = torch.zeros((2, 4, 4), dtype=torch.float64)
        if sampler == "hmc":
            return mcmc.hmc(target, phi0, n_traj=5, eps=0.1, n_steps=3, generator=gen).samples
        if sampler == "metropolis":
            return mcmc.metropolis(target, phi0, n_sweeps=5, step_size=1.0, generator=gen).samples
        return mcmc.langevin(target, phi0, n_steps=5, dtau=0.05, metropolize=sampler == "mala", generator=gen).samples

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_small_steps_accept_almost_everything():
    """dH = O(eps^2) and the MALA log-ratio = O(dtau^{3/2}): tiny steps are (almost) always accepted."""
    target = Phi4Lattice(4, 2, 0.2, 0.3)
    gen = torch.Generator().manual_seed(3)
    phi0 = torch.randn((8, 4, 4), generator=gen, dtype=torch.float64) * 0.5
    hmc = mcmc.hmc(target, phi0, n_traj=20, eps=0.01, n_steps=10, generator=gen)
    # |dH| ~ eps^2 x O(V) = 1e-4 x O(10): rejection probability ~1e-3 per trajectory
    assert float(hmc.acceptance.mean()) > 0.97 and float(hmc.dH.abs().max()) < 0.05
    mala = mcmc.langevin(target, phi0, n_steps=20, dtau=1e-4, metropolize=True, generator=gen)
    assert float(mala.acceptance.mean()) > 0.97
    lang = mcmc.langevin(target, phi0, n_steps=3, dtau=0.5, generator=gen)
    assert bool((lang.acceptance == 1).all())  # uncorrected Langevin never rejects


def test_metropolis_acceptance_falls_with_the_step_size():
    target = Phi4Lattice(4, 2, 0.2, 0.1)
    phi0 = torch.zeros((8, 4, 4), dtype=torch.float64)
    acc = [float(mcmc.metropolis(target, phi0, n_sweeps=20, step_size=s, generator=torch.Generator().manual_seed(0))
                 .acceptance.mean()) for s in (0.1, 1.0, 5.0)]
    assert acc[0] > acc[1] > acc[2] and acc[0] > 0.9


def test_diverging_trajectories_raise():
    target = Phi4Lattice(4, 2, 0.2, 1.0)
    phi0 = torch.full((2, 4, 4), 50.0, dtype=torch.float64)
    with pytest.raises(FloatingPointError, match="langevin"):
        mcmc.langevin(target, phi0, n_steps=50, dtau=1.0, generator=torch.Generator().manual_seed(0))


def test_euler_langevin_variance_small_step_expansion():
    """c0 / (1 - dtau/(2 c0)) = c0 + dtau/2 + O(dtau^2)."""
    c0 = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    for dtau in (1e-2, 1e-3):
        excess = mcmc.euler_langevin_variance(c0, dtau) - c0
        # next term dtau^2 / (4 c0) <= 0.5 dtau^2
        assert_close(excess, torch.full_like(c0, dtau / 2), rtol=0.0, atol=0.51 * dtau**2)
    with pytest.raises(ValueError, match="dtau must be < 2 min c0"):
        mcmc.euler_langevin_variance(c0, 1.0)


def test_invalid_arguments_are_rejected():
    target = Phi4Lattice(4, 2, 0.2, 0.1)
    phi0 = torch.zeros((2, 4, 4), dtype=torch.float64)
    with pytest.raises(ValueError, match="eps"):
        mcmc.hmc(target, phi0, n_traj=1, eps=0.0, n_steps=1)
    with pytest.raises(ValueError, match="n_steps"):
        mcmc.hmc(target, phi0, n_traj=1, eps=0.1, n_steps=0)
    with pytest.raises(TypeError, match="n_traj"):
        mcmc.hmc(target, phi0, n_traj=True, eps=0.1, n_steps=1)
    with pytest.raises(ValueError, match="phi0 must have shape"):
        mcmc.hmc(target, torch.zeros((2, 4, 5), dtype=torch.float64), n_traj=1, eps=0.1, n_steps=1)
    with pytest.raises(ValueError, match="finite"):
        mcmc.hmc(target, torch.full((2, 4, 4), math.nan, dtype=torch.float64), n_traj=1, eps=0.1, n_steps=1)
    with pytest.raises(TypeError, match="floating"):
        mcmc.hmc(target, torch.zeros((2, 4, 4), dtype=torch.long), n_traj=1, eps=0.1, n_steps=1)
    with pytest.raises(TypeError, match="action"):
        mcmc.hmc(object(), phi0, n_traj=1, eps=0.1, n_steps=1)
    with pytest.raises(ValueError, match="even L"):
        mcmc.metropolis(Phi4Lattice(5, 2, 0.2, 0.1), torch.zeros((2, 5, 5), dtype=torch.float64), n_sweeps=1, step_size=1.0)
    with pytest.raises(TypeError, match="Phi4Lattice"):
        mcmc.metropolis(object(), phi0, n_sweeps=1, step_size=1.0)
    with pytest.raises(ValueError, match="step_size"):
        mcmc.metropolis(target, phi0, n_sweeps=1, step_size=-1.0)
    with pytest.raises(ValueError, match="burn_in"):
        mcmc.metropolis(target, phi0, n_sweeps=1, step_size=1.0, burn_in=-1)
    with pytest.raises(TypeError, match="metropolize"):
        mcmc.langevin(target, phi0, n_steps=1, dtau=0.1, metropolize=1)
    with pytest.raises(ValueError, match="thin"):
        mcmc.langevin(target, phi0, n_steps=1, dtau=0.1, thin=0)


# -- issue 22: step adaptation, the frozen start, the thread policy, the compile cache ------------
def _burn_in_state(target, phi0, **kw):
    """Run an adapting chain and record (state, generator state) when burn-in ends."""
    gen = torch.Generator().manual_seed(11)
    seen = {}

    def callback(done, total, phi):
        if done == kw["burn_in"]:
            seen["phi"], seen["gen"] = phi.clone(), gen.get_state()

    res = mcmc.hmc(target, phi0, generator=gen, callback=callback, fused=False, **kw)
    return res, seen


def test_adaptation_rescues_a_frozen_step_and_then_freezes_it():
    """eps0 = 5 accepts nothing; dual averaging over 60 burn-in trajectories lowers it until about 80 %
    are accepted, and the kept chain is plain HMC with the final step: rerunning it from the burn-in
    state and generator state with adapt=False and eps=result.eps gives the same samples exactly."""
    target = Phi4Lattice(8, 2, 0.2, 0.022)
    phi0 = math.sqrt(0.5) * torch.randn((16, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    frozen = mcmc.hmc(target, phi0, n_traj=10, eps=5.0, n_steps=10, generator=torch.Generator().manual_seed(1),
                      adapt=False, fused=False)
    assert float(frozen.acceptance.max()) == 0.0 and frozen.eps == 5.0  # the failure mode being fixed
    res, seen = _burn_in_state(target, phi0, n_traj=40, eps=5.0, n_steps=10, burn_in=60)
    assert res.eps < 5.0
    # 16 chains x 40 trajectories: the SE of the mean acceptance is sqrt(0.8 * 0.2 / 640) = 0.016 (less
    # with autocorrelation accounted for: the decisions are nearly independent); 0.6 is 12 SE below 0.8,
    # a margin that also covers the step estimate's own spread (false-failure rate ~0 at this fixed seed)
    assert float(res.acceptance.mean()) > 0.6
    gen = torch.Generator()
    gen.set_state(seen["gen"])
    again = mcmc.hmc(target, seen["phi"], n_traj=40, eps=res.eps, n_steps=10, generator=gen, adapt=False, fused=False)
    assert torch.equal(again.samples, res.samples) and again.eps == res.eps


def test_adaptation_never_raises_the_step():
    """A step accepted ~always stays exactly eps0 (the adapted step is capped at the caller's)."""
    target = Phi4Lattice(4, 2, 0.2, 0.1)
    phi0 = torch.randn((4, 4, 4), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = mcmc.hmc(target, phi0, n_traj=4, eps=0.01, n_steps=5, burn_in=20, generator=torch.Generator().manual_seed(0))
    assert res.eps == 0.01
    assert mcmc.hmc(target, phi0, n_traj=4, eps=0.01, n_steps=5, generator=torch.Generator()).eps == 0.01
    with pytest.raises(ValueError, match="target_acceptance"):
        mcmc.hmc(target, phi0, n_traj=1, eps=0.1, n_steps=1, target_acceptance=1.0)
    with pytest.raises(TypeError, match="adapt"):
        mcmc.hmc(target, phi0, n_traj=1, eps=0.1, n_steps=1, adapt=1)
    with pytest.raises(TypeError, match="fused must be a bool or 'auto'"):
        mcmc.hmc(target, phi0, n_traj=1, eps=0.1, n_steps=1, fused="fast")


def test_dual_averaging_reaches_the_target_on_a_known_acceptance_curve():
    """Deterministic acceptance curve alpha(eps) = exp(-(eps / 0.2)^4): the frozen step lands where
    alpha = 0.8, i.e. eps* = 0.2 (ln 1.25)^(1/4) = 0.1379; 200 noiseless updates leave the averaged
    iterate within 5 % (its O(m^-1/4) transient, checked: 1.5 % at this budget)."""
    from critdiff_ref.samplers.mcmc._hmc import _DualAveraging

    da = _DualAveraging(1.0, 0.8)
    eps = 1.0
    for _ in range(200):
        eps = da.update(math.exp(-((eps / 0.2) ** 4)))
    assert abs(da.final / (0.2 * math.log(1.25) ** 0.25) - 1.0) < 0.05


def test_chain_threads_follow_problem_size_and_restore_torch(monkeypatch):
    from critdiff_ref import _threads
    from critdiff_ref.samplers.mcmc import _chains

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert _chains.chain_threads(16 * 64 * 64, "cpu") == 1  # 65k sites: one thread (the 7x slowdown of issue 22)
    assert _chains.chain_threads(2**40, "cpu") <= torch.get_num_threads()  # never above torch's setting
    monkeypatch.setattr(_threads, "idle_cores", lambda: 1)
    assert _chains.chain_threads(2**40, "cpu") == 1  # a loaded machine: no oversubscription
    before = torch.get_num_threads()
    seen = []
    mcmc.hmc(Phi4Lattice(4, 2, 0.2, 0.1), torch.zeros((2, 4, 4), dtype=torch.float64), n_traj=2, eps=0.1, n_steps=2,
             callback=lambda done, total, phi: seen.append(torch.get_num_threads()))
    assert seen == [1, 1] and torch.get_num_threads() == before
    with _threads.threads(requested=2, user=True):  # a CLI --threads 2 is the user's word: not capped by load
        assert _threads.user_threads() == 2 and _chains.chain_threads(16 * 64 * 64, "cpu") == 2
    assert _threads.user_threads() is None and torch.get_num_threads() == before


def test_compile_cache_is_persistent_and_the_estimate_reads_its_marker(monkeypatch, tmp_path):
    from critdiff_ref.samplers.mcmc import _compiled

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _compiled.persistent_cache() == str(tmp_path / "critdiff_ref" / "inductor")
    inputs = (torch.zeros(2, 4),)
    key = ("test-key", 1)
    assert _compiled.compile_estimate(key, inputs) == _compiled.COLD_COMPILE_SECONDS
    marker = _compiled._marker((key, _compiled._signature(inputs), torch.get_num_threads()))
    os.makedirs(os.path.dirname(marker))
    open(marker, "w").close()
    assert _compiled.compile_estimate(key, inputs) == _compiled.WARM_COMPILE_SECONDS
    # a run whose eager remainder is shorter than PAYBACK warm compiles stays eager, a longer one compiles
    warm = _compiled.PAYBACK * _compiled.WARM_COMPILE_SECONDS
    per_update = 0.01
    assert not _compiled.worth_compiling(per_update, int(0.9 * warm / per_update), key, inputs)
    assert _compiled.worth_compiling(per_update, int(1.1 * warm / per_update), key, inputs)


def test_momenta_are_standard_normal_in_one_order_on_every_layout():
    """HMC's momenta come from uniforms by Box-Muller (``_hmc._normals``) in one site-major, chain-minor
    order: the chains-first and the chains-last layouts read the same momentum at each site.  Their law is
    N(0, 1): with n = 2^20 draws the sample mean, variance - 1 and (fourth moment - 3) have standard
    errors 1/sqrt(n), sqrt(2/n), sqrt(96/n); 6 of them (false failure ~1e-9 each, fixed seed anyway).
    A planted bug -- ``r = sqrt(-log(1 - w1))``, variance 1/2 -- fails the variance check by ~360 sigma."""
    from critdiff_ref.samplers.mcmc import _hmc

    gen = torch.Generator().manual_seed(3)
    phi = torch.zeros(4, 16, 8, dtype=torch.float64)
    w, u = _hmc._draws(phi, gen)
    first = _hmc._momenta(w, phi, False)
    last = _hmc._momenta(w, phi.movedim(0, -1).contiguous(), True)
    assert first.shape == phi.shape and torch.equal(first, last.movedim(-1, 0))
    assert u.shape == (4,) and float(u.min()) >= 0.0 and float(u.max()) < 1.0
    n = 2**20
    z = _hmc._normals(torch.rand(n, generator=gen, dtype=torch.float64), n)
    assert bool(torch.isfinite(z).all())
    assert abs(float(z.mean())) < 6 / math.sqrt(n)
    assert abs(float(z.var()) - 1.0) < 6 * math.sqrt(2 / n)
    assert abs(float((z**4).mean()) - 3.0) < 6 * math.sqrt(96 / n)
    m = n // 2
    w = torch.rand(n, generator=gen, dtype=torch.float64)
    bad = torch.sqrt(-torch.log1p(-w[:m])) * torch.cos(2 * math.pi * w[m:])
    assert abs(float(bad.var()) - 1.0) > 6 * math.sqrt(2 / m)  # the planted bug is seen
    assert _hmc._normals(torch.rand(6, generator=gen, dtype=torch.float64), 5).shape == (5,)  # odd count
