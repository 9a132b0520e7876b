"""Invariant: phi^4 Monte Carlo reproduces the exactly known free field (THEORY 8).

At ``lam = 0`` lattice phi^4 is Gaussian with mode variances
``c0(k) = 1 / (2 kappa (khat^2 + m^2))``, ``m^2 = 1/kappa - 2d`` (``Phi4Lattice.free_field().c0()``).
- HMC, checkerboard Metropolis and Metropolis-corrected Langevin (MALA) are exact: the measured
  ``<|phi_k|^2>`` equals ``c0(k)`` within standard errors.
- Uncorrected Euler Langevin is biased: per mode ``phi' = (1 - dtau/c0) phi + sqrt(2 dtau) xi``
  has the stationary variance ``c0 / (1 - dtau / (2 c0))`` (derived in
  :func:`critdiff_ref.samplers.mcmc.euler_langevin_variance`): an excess ``dtau/2 + O(dtau^2)``.
- Leapfrog is time-reversible (momentum flip returns to rounding), ``dH = O(eps^2)`` at fixed
  trajectory length, and action, force and leapfrog respect the Z2 symmetry ``phi -> -phi``.

Statistics: R = 64 independent chains started from exact free-field samples (so every later
state is exactly distributed if the sampler is right); per chain the time average of
``|phi_k|^2``; the standard error is the spread across chains / sqrt(R) (independent replicas).
"""

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from critdiff_ref import lattice
from critdiff_ref.samplers import mcmc
from critdiff_ref.strategies import seeds
from critdiff_ref.targets import Phi4Lattice
from critdiff_ref.testing import assert_close

# 5 sigma with R = 64 replicas: Student-t_63 two-sided tail ~5e-6 per mode; V <= 36 modes of which
# about half are independent (|phi_k| = |phi_-k|), ~3 examples per sampler: Bonferroni ~1e-3 per run.
K_SIGMA = 5.0
N_CHAINS = 64
# MCMC examples are expensive: a quarter of the profile's examples (3 under ci).
FEW = settings(max_examples=max(2, settings.default.max_examples // 4))


@st.composite
def free_theories(draw):
    """lam = 0 theories on even L in {4, 6}, d in {1, 2}, kappa in [0.05, 0.8 kappa_c] (kappa_c = 1/(2d))."""
    d = draw(st.integers(1, 2))
    L = draw(st.sampled_from([4, 6]))
    kappa = draw(st.floats(0.05, 0.8 / (2 * d)))
    return Phi4Lattice(L, d, kappa, 0.0)


def mode_power(samples: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over chains of the per-chain time average of |phi_k|^2, and its standard error."""
    per_chain = (lattice.fft(samples, d).abs() ** 2).mean(dim=0)  # (R, *lattice)
    R = per_chain.shape[0]
    return per_chain.mean(dim=0), per_chain.std(dim=0) / math.sqrt(R)


def run_sampler(name: str, target: Phi4Lattice, phi0: torch.Tensor, gen: torch.Generator):
    c0 = target.free_field().c0()
    if name == "hmc":
        # leapfrog is stable for eps * omega_max < 2, omega_max = 1/sqrt(min c0) <= 1.9 here
        return mcmc.hmc(target, phi0, n_traj=300, eps=0.2, n_steps=5, generator=gen)
    if name == "metropolis":
        # proposal width ~2 x the conditional std 1/sqrt(2): acceptance ~0.6
        return mcmc.metropolis(target, phi0, n_sweeps=300, step_size=1.5, generator=gen)
    # MALA step at a fifth of the Euler stability limit 2 min c0
    return mcmc.langevin(target, phi0, n_steps=400, dtau=0.4 * float(c0.min()), metropolize=True, generator=gen)


@FEW
@given(st.sampled_from(["hmc", "metropolis", "mala"]), free_theories(), seeds())
def test_exact_samplers_reproduce_free_field_covariance(sampler, target, seed):
    """At lam = 0, HMC, checkerboard Metropolis and MALA give <|phi_k|^2> = c0(k) for every mode
    within 5 standard errors."""
    gen = torch.Generator().manual_seed(seed)
    field = target.free_field()
    phi0 = field.sample(N_CHAINS, gen, dtype=torch.float64)
    res = run_sampler(sampler, target, phi0, gen)
    assert float(res.acceptance.mean()) > 0.3  # the chains move (otherwise the test is vacuous)
    v, se = mode_power(res.samples, target.d)
    c0 = field.c0()
    z = (v - c0) / se
    assert bool((z.abs() < K_SIGMA).all()), f"{sampler}: z-scores {z.flatten().tolist()}"


@FEW
@given(free_theories(), st.floats(0.3, 0.6), seeds())
def test_euler_langevin_has_the_predicted_bias(target, frac, seed):
    """Uncorrected Euler Langevin at lam = 0 converges to c0 / (1 - dtau/(2 c0)) per mode, not c0:
    the stiffest mode is measurably too wide (positive O(dtau) bias)."""
    gen = torch.Generator().manual_seed(seed)
    field = target.free_field()
    c0 = field.c0()
    dtau = frac * 2.0 * float(c0.min())  # a fraction of the stability limit 2 min c0
    phi0 = field.sample(N_CHAINS, gen, dtype=torch.float64)
    # burn-in: the slowest variance relaxes by (1 - dtau/max c0)^2 <= 0.8 per step here, so 150
    # steps leave < 1e-14 of the initial offset
    res = mcmc.langevin(target, phi0, n_steps=300, dtau=dtau, burn_in=150, generator=gen)
    v, se = mode_power(res.samples, target.d)
    predicted = mcmc.euler_langevin_variance(c0, dtau)
    z = (v - predicted) / se
    assert bool((z.abs() < K_SIGMA).all()), f"z-scores {z.flatten().tolist()}"
    stiff = c0 == c0.min()
    # at the stiffest mode the bias is c0 (1/(1 - frac) - 1) >= 43% of c0 ~ tens of SE
    assert bool(((v - c0)[stiff] > K_SIGMA * se[stiff]).all())


def test_euler_langevin_variance_formula_against_recursion():
    """The closed form is the fixed point of v <- (1 - dtau/c0)^2 v + 2 dtau (iterated to convergence)."""
    c0 = torch.tensor([0.3, 1.0, 2.5], dtype=torch.float64)
    dtau = 0.4
    v = c0.clone()
    for _ in range(2000):
        v = (1 - dtau / c0) ** 2 * v + 2 * dtau
    # contraction factor <= (1 - 0.4/2.5)^2 = 0.71 per step: converged to rounding
    assert_close(mcmc.euler_langevin_variance(c0, dtau), v, ulps=64)


@st.composite
def interacting_theories(draw):
    d = draw(st.integers(1, 3))
    L = draw(st.sampled_from([4, 6] if d < 3 else [4]))
    lam = draw(st.floats(0.0, 1.0))
    kappa = draw(st.floats(0.0, 0.9 / (2 * d)))
    return Phi4Lattice(L, d, kappa, lam)


@given(interacting_theories(), st.integers(1, 40), seeds())
def test_leapfrog_is_reversible(target, n_steps, seed):
    """Leapfrog forward, momentum flip, leapfrog again returns to the start to float64 rounding."""
    gen = torch.Generator().manual_seed(seed)
    phi = torch.randn((4, *target.shape), generator=gen, dtype=torch.float64)
    pi = torch.randn((4, *target.shape), generator=gen, dtype=torch.float64)
    eps = 1.0 / max(n_steps, 5)
    phi1, pi1 = mcmc.leapfrog(target, phi, pi, eps, n_steps)
    phi2, pi2 = mcmc.leapfrog(target, phi1, -pi1, eps, n_steps)
    # rounding of ~10 flops per site per step, amplified by at most the trajectory's Lyapunov
    # growth (fields O(1-3), trajectory length <= 1): 1e5 ulps of the field scale
    scale = float(phi.abs().max())
    assert_close(phi2, phi, rtol=0.0, atol=1e5 * torch.finfo(torch.float64).eps * scale)
    assert_close(-pi2, pi, rtol=0.0, atol=1e5 * torch.finfo(torch.float64).eps * float(pi.abs().max()))


@given(interacting_theories(), seeds())
def test_leapfrog_energy_error_scales_as_eps_squared(target, seed):
    """At fixed trajectory length 1 the RMS energy violation dH over chains scales as eps^2."""
    gen = torch.Generator().manual_seed(seed)
    # start from a typical-size configuration: N(0, 1/2) sites, the kappa = lam = 0 distribution
    phi = torch.randn((32, *target.shape), generator=gen, dtype=torch.float64) / math.sqrt(2)
    pi = torch.randn((32, *target.shape), generator=gen, dtype=torch.float64)
    H0 = mcmc.hamiltonian(target, phi, pi)
    steps = [20, 40, 80, 160]
    rms = []
    for n in steps:
        p1, q1 = mcmc.leapfrog(target, phi, pi, 1.0 / n, n)
        rms.append(float(((mcmc.hamiltonian(target, p1, q1) - H0) ** 2).mean().sqrt()))
    slope = np.polyfit(np.log(1.0 / np.array(steps)), np.log(rms), 1)[0]
    # second order integrator: slope 2 up to O((eps omega)^2) corrections, eps <= 0.05 and local
    # frequencies omega <~ 4 here (|phi| <~ 2.5 with lam <= 1): within [1.8, 2.2]
    assert 1.8 < slope < 2.2, f"slope {slope}, rms {rms}"


@given(interacting_theories(), seeds())
def test_z2_symmetry_of_action_force_and_leapfrog(target, seed):
    """S(-phi) = S(phi), F(-phi) = -F(phi) and leapfrog(-phi, -pi) = -leapfrog(phi, pi), bit for bit."""
    gen = torch.Generator().manual_seed(seed)
    phi = torch.randn((3, *target.shape), generator=gen, dtype=torch.float64)
    pi = torch.randn((3, *target.shape), generator=gen, dtype=torch.float64)
    # negation is exact in IEEE arithmetic and every term is odd or even in phi: equality
    assert torch.equal(target.action(-phi), target.action(phi))
    assert torch.equal(target.force(-phi), -target.force(phi))
    a_phi, a_pi = mcmc.leapfrog(target, phi, pi, 0.1, 7)
    b_phi, b_pi = mcmc.leapfrog(target, -phi, -pi, 0.1, 7)
    assert torch.equal(b_phi, -a_phi) and torch.equal(b_pi, -a_pi)
