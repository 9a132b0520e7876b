"""Invariant: forward noising adds only to the second cumulant, seen in samples (THEORY 6).

``kappa_2(t) = a^2 kappa_2(0) + Xi(t)`` and ``kappa_n(t) = a(t)^n kappa_n(0)`` for ``n >= 3``
(VE: conserved; VP: decaying as ``a^n``).  Samples of the two-peak mixture pushed through
``processes.forward_sample`` give k-statistics that agree with the exact marginal cumulants within
bootstrap errors.  On a lattice the connected two-point function becomes
``G_t(x) = a^2 G_0(x) + Xi delta_{x0}`` (``a^2 c0(k) + Xi`` per mode): noise enters only at
coinciding points.
"""

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from critdiff_ref import lattice
from critdiff_ref.observables import connected_two_point, connected_two_point_momentum, kstat_bootstrap
from critdiff_ref.processes import VE, VP, forward_sample
from critdiff_ref.strategies import diffusion_times, gaussian_fields, processes, seeds, two_peak_mixtures

# 5 sigma: two-sided normal tail 5.7e-7 per comparison.
K_SIGMA = 5.0
# Lattice comparisons: up to V = 256 sites per example, 12 examples, so Bonferroni asks for a
# per-comparison rate ~1e-7 for a ~1e-4 false-failure rate per run: 5.5 sigma (3.8e-8).
K_SIGMA_LATTICE = 5.5


@given(two_peak_mixtures(), st.data(), seeds())
def test_forward_noised_mixture_kstats_match_exact_cumulants(mixture, data, seed):
    """k-statistics (orders 2..8) of forward-noised two-peak samples agree with the exact marginal
    cumulants within 5 bootstrap standard errors."""
    process = data.draw(processes())
    t = data.draw(diffusion_times(process))
    gen = torch.Generator().manual_seed(seed)
    x0 = mixture.sample(50_000, gen)
    xt = forward_sample(process, x0, t, gen)
    orders = range(2, 9)
    est = kstat_bootstrap(xt, orders, n_boot=100, generator=gen)
    exact = torch.tensor([mixture.marginal(process, t).cumulant(n) for n in orders], dtype=torch.float64)
    # 5 sigma per order (5.7e-7); 7 orders x 12 examples (Bonferroni ~5e-5 per run); the
    # bootstrap SE itself has ~7% relative error from 100 resamples (>= 4.6 true sigma).
    z = (est.value - exact) / est.err
    assert bool((z.abs() < K_SIGMA).all()), f"{process}, t={t}: z-scores {z.tolist()}"


@given(two_peak_mixtures(), st.data())
def test_marginal_cumulants_scale_as_a_to_the_n(mixture, data):
    """The exact marginal has kappa_n(t) = a^n kappa_n(0) for n >= 3 (VE: a = 1, conserved) and
    kappa_2(t) = a^2 kappa_2(0) + Xi."""
    process = data.draw(processes())
    t = data.draw(diffusion_times(process))
    a, Xi = float(process.a(t)), float(process.Xi(t))
    marg = mixture.marginal(process, t)
    # closed forms through Bernoulli numbers and two float multiplications: 64 ulps
    tol = 64 * torch.finfo(torch.float64).eps
    assert math.isclose(marg.cumulant(2), a * a * mixture.cumulant(2) + Xi, rel_tol=tol, abs_tol=tol)
    for n in range(3, 9):
        assert math.isclose(marg.cumulant(n), a**n * mixture.cumulant(n), rel_tol=tol, abs_tol=1e-300)
        if isinstance(process, VE):
            assert math.isclose(marg.cumulant(n), mixture.cumulant(n), rel_tol=tol, abs_tol=1e-300)


def test_ve_keeps_fourth_cumulant_vp_kills_it():
    """Sampled VE at t = T keeps kappa_4 = -2 mu^4 (non-Gaussian end) while VP at t = T drives it to ~0."""
    from critdiff_ref.targets import TwoGaussianMixture

    mix = TwoGaussianMixture(2.0, 0.3)
    gen = torch.Generator().manual_seed(7)
    x0 = mix.sample(100_000, gen)
    k4_0 = -2.0 * mix.mu**4
    ve, vp = VE(sigma=2.0, T=1.0), VP()
    est_ve = kstat_bootstrap(forward_sample(ve, x0, 1.0, gen), [4], n_boot=100, generator=gen)
    est_vp = kstat_bootstrap(forward_sample(vp, x0, 1.0, gen), [4], n_boot=100, generator=gen)
    # VE keeps kappa_4 = -32 exactly; 5-sigma band
    assert abs(float(est_ve.value[0]) - k4_0) < K_SIGMA * float(est_ve.err[0])
    # VP: a(1)^4 kappa_4 = e^{-2 B(1)} (-32) ~ -1e-8, indistinguishable from 0; and VE's value is
    # > 5 sigma away from 0 (the end of a VE forward process is NOT Gaussian)
    assert abs(float(est_vp.value[0]) - float(vp.a(1.0)) ** 4 * k4_0) < K_SIGMA * float(est_vp.err[0])
    assert abs(float(est_ve.value[0])) > K_SIGMA * float(est_ve.err[0])


@given(gaussian_fields(max_d=2), st.data(), seeds())
def test_lattice_two_point_gains_Xi_only_at_coinciding_points(field, data, seed):
    """The connected two-point function of forward-noised GaussianField samples is a^2 G_0(x) off
    the diagonal and a^2 G_0(0) + Xi at x = 0 (minus Xi/V everywhere at r = 0, where the noise
    has no zero mode); per mode a^2 c0(k) + Xi."""
    process = data.draw(processes())
    t = data.draw(diffusion_times(process))
    gen = torch.Generator().manual_seed(seed)
    N, d, V = 2000, field.d, field.V
    x0 = field.sample(N, gen, dtype=torch.float64)
    xt = field.forward_sample(process, x0, t, gen)
    a, Xi = float(process.a(t)), float(process.Xi(t))

    delta = torch.zeros(field.shape, dtype=torch.float64)
    delta[(0,) * d] = 1.0
    noise_cov = delta - (1.0 / V if field.zero_mode_removed else 0.0)
    expected_x = a * a * field.real_space_covariance() + Xi * noise_cov
    expected_k = field.mode_variance(process, t)

    # per-configuration estimates are independent, so SE = std / sqrt(N); the connected
    # estimator's subtraction of <M>^2 shifts the mean by O(G(k=0) / (V N)), far below one SE.
    power = lattice.fft(xt, d).abs() ** 2
    per_config_x = torch.fft.ifftn(power, dim=lattice.lattice_dims(d)).real
    se_x = per_config_x.std(dim=0) / math.sqrt(N)
    se_k = power.std(dim=0) / math.sqrt(N)
    G_x = connected_two_point(xt, d)
    G_k = connected_two_point_momentum(xt, d)
    # a removed zero mode is exactly 0 in data and noise: allow rounding only there
    atol = 1e3 * torch.finfo(torch.float64).eps * float(expected_k.max())
    assert bool(((G_x - expected_x).abs() <= K_SIGMA_LATTICE * se_x + atol).all())
    assert bool(((G_k - expected_k).abs() <= K_SIGMA_LATTICE * se_k + atol).all())
