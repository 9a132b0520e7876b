"""Invariant: the probability-flow log-likelihood is the exact log-density up to the ODE order (THEORY 8, 1, 2).

With the EXACT Gaussian score of the lam = 0 phi^4 theory and the exact prior ``N(0, C_T)`` at ``T``,
``log q(x_0) = log p_T(x_T) + int_0^T div f dt`` equals ``GaussianField.log_density(x_0)`` up to the
discretisation error of the ODE method, which decays as ``h^p`` (Euler 1, Heun 2, RK4 4).
The divergence is right: autograd over every site gives ``sum_k K_t(k)`` for the Fourier score and
the trace of the full Jacobian for a nonlinear map; Hutchinson's estimator is unbiased (averaging
over all ``2^V`` sign vectors gives the trace exactly; the integrated estimate averages to the
exact-divergence value). The exact log-density of the discretised flow map (Jacobian log-det)
equals the per-mode gains of :func:`critdiff_ref.samplers.exact.ode_gain`.
"""

import itertools
import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from critdiff_ref.processes import VE, VP
from critdiff_ref.samplers import flow_jacobian, likelihood
from critdiff_ref.samplers.exact import ode_gain
from critdiff_ref.samplers.grids import time_grid
from critdiff_ref.scores import exact_score
from critdiff_ref.strategies import seeds
from critdiff_ref.targets import Phi4Lattice
from critdiff_ref.testing import assert_close

# ODE integrations are the expensive part: a quarter of the profile's examples (3 under ci).
FEW = settings(max_examples=max(2, settings.default.max_examples // 4))
ORDER = {"euler": 1, "heun": 2, "rk4": 4}
# step counts near the asymptotic regime for VE (sigma = 25) and VP (beta_max = 20): slopes observed on a
# grid of 64 cases (L in {4, 6}, d in {1, 2}, 4 kappas, both processes): Euler 0.91-1.03, Heun 1.91-2.30,
# RK4 3.78-4.64 (VP: partially cancelling error constants make RK4 look faster than h^4 at these h)
STEPS = {"euler": [64, 128, 256], "heun": [16, 32, 64], "rk4": [8, 16, 32]}


@st.composite
def free_theories(draw, max_V: int = 36):
    """lam = 0 phi^4 on L in {4, 6}, d in {1, 2}, kappa in [0.05, 0.8 / (2d)] (so r = m^2 > 0)."""
    d = draw(st.integers(1, 2))
    L = draw(st.sampled_from([L for L in (4, 6) if L**d <= max_V]))
    return Phi4Lattice(L, d, draw(st.floats(0.05, 0.8 / (2 * d))), 0.0)


processes = st.sampled_from([VE(sigma=25.0, T=1.0), VP(beta_min=0.1, beta_max=20.0, T=1.0)])


@FEW
@given(free_theories(), processes, st.sampled_from(sorted(ORDER)), seeds())
def test_pf_likelihood_with_exact_score_converges_at_the_method_order(target, process, method, seed):
    """log q from the PF-ODE with the exact score -> exact log p_0, error ~ h^p with p the method's order."""
    field = target.free_field()
    score = exact_score(target, process)
    prior = likelihood.exact_prior(field, process)
    x0 = field.sample(2, torch.Generator().manual_seed(seed), dtype=torch.float64)
    exact = field.log_density(x0)
    errs = []
    for steps in STEPS[method]:
        log_q = likelihood.pf_log_likelihood(score, process, x0, prior, steps=steps, method=method)
        errs.append(float((log_q - exact).abs().max()))
    slope = -np.polyfit(np.log(STEPS[method]), np.log(errs), 1)[0]
    # window [p - 0.3, p + 0.8] around the order p: covers the observed spread (see STEPS) and still
    # rejects an implementation one order lower
    assert ORDER[method] - 0.3 < slope < ORDER[method] + 0.8, f"{method}: slope {slope}, errors {errs}"
    # and the finest grid is actually close (not a converging-to-the-wrong-value artefact)
    assert errs[-1] < {"euler": 1.0, "heun": 0.06, "rk4": 1e-4}[method]


@given(free_theories(), processes, st.floats(0.0, 1.0), seeds())
def test_exact_divergence_of_the_fourier_score_is_the_sum_of_the_kernel(target, process, t, seed):
    """div_x s_t(x) = sum_k K_t(k) for the linear Fourier score, at every x."""
    field = target.free_field()
    x = field.sample(3, torch.Generator().manual_seed(seed), dtype=torch.float64)
    div = likelihood.divergence_exact(exact_score(target, process), x, t)
    expected = field.score_kernel(process, t).sum().expand(3)
    # V vector-Jacobian products through two FFTs: a few hundred ulps of |sum K|
    assert_close(div, expected, ulps=512)


@given(st.integers(1, 3), seeds())
def test_exact_divergence_equals_trace_of_full_jacobian(d, seed):
    """For the nonlinear phi^4 force (batch-independent map) the autograd divergence is tr J per config."""
    target = Phi4Lattice(4 if d < 3 else 2, d, 0.2, 0.5)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((3, *target.shape), generator=gen, dtype=torch.float64)
    div = likelihood.divergence_exact(lambda y, t: target.force(y), x, 0.0)
    traces = []
    for xi in x:
        J = torch.autograd.functional.jacobian(lambda y: target.force(y).reshape(-1), xi)
        traces.append(torch.diagonal(J.reshape(xi.numel(), xi.numel())).sum())
    assert_close(div, torch.stack(traces), ulps=64)
    # and the closed form: d F_x / d phi_x = -2 (1 - 2 lam) - 12 lam phi_x^2
    closed = (-2.0 * (1 - 2 * target.lam) - 12.0 * target.lam * x**2).reshape(3, -1).sum(1)
    assert_close(div, closed, ulps=64)


@given(st.sampled_from([4, 6, 8]), st.floats(0.0, 1.0), seeds())
def test_hutchinson_over_all_sign_vectors_is_the_exact_trace(L, t, seed):
    """Averaging eps^T J eps over all 2^V Rademacher vectors gives tr J exactly (E[eps eps^T] = I)."""
    target = Phi4Lattice(L, 1, 0.3, 0.0)
    process = VE()
    score = exact_score(target, process)
    x = target.free_field().sample(2, torch.Generator().manual_seed(seed), dtype=torch.float64)
    signs = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=L)), dtype=torch.float64)  # (2^V, V)
    probes = signs.unsqueeze(1).expand(-1, 2, L).contiguous()
    est = likelihood.divergence_hutchinson(score, x, t, probes)
    # 2^V terms of size |J| summed: a few hundred ulps of the trace
    assert_close(est, likelihood.divergence_exact(score, x, t), ulps=1024)


@FEW
@given(free_theories(max_V=16), seeds())
def test_integrated_hutchinson_likelihood_is_unbiased(target, seed):
    """E over probes of the Hutchinson PF log-likelihood = the exact-divergence value on the same grid."""
    process = VE()
    field = target.free_field()
    score = exact_score(target, process)
    prior = likelihood.exact_prior(field, process)
    gen = torch.Generator().manual_seed(seed)
    R = 400
    x0 = field.sample(1, gen, dtype=torch.float64).expand(R, *target.shape).contiguous()
    exact = likelihood.pf_log_likelihood(score, process, x0[:1], prior, steps=8)
    hutch = likelihood.pf_log_likelihood(score, process, x0, prior, steps=8, divergence="hutchinson", generator=gen)
    se = float(hutch.std()) / math.sqrt(R)
    assert se > 0  # the probes do vary (otherwise the check is vacuous)
    # 5 sigma over R = 400 independent probe sets: two-sided normal tail 6e-7 per example
    assert abs(float(hutch.mean() - exact[0])) < 5.0 * se


@given(free_theories(max_V=16), processes, st.sampled_from(sorted(ORDER)), st.integers(2, 12), seeds())
def test_flow_jacobian_density_matches_the_exact_per_mode_gains(target, process, method, steps, seed):
    """The discretised PF map is linear for the exact Gaussian score: x_0 = F^-1[gain F[x_T]], so its
    exact log-density is log p_T(x_T) - sum_k log|gain_k| with ode_gain's per-mode factors."""
    field = target.free_field()
    score = exact_score(target, process)
    prior = likelihood.isotropic_prior(process, target.L, target.d)
    xT = prior.sample(2, torch.Generator().manual_seed(seed))
    x0, log_q = flow_jacobian.flow_jacobian_log_density(score, process, xT, prior, steps=steps, method=method)
    grid = time_grid(process, steps)
    gain = ode_gain(lambda t: field.score_kernel(process, float(t)), process, grid, method)
    expected = prior.log_prob(xT) - torch.log(gain.abs()).sum()
    # log-det of a V x V matrix from V backward passes vs a sum of V logs: 1e3 ulps of |log q|
    assert_close(log_q, expected, ulps=1024)
    # the same number is the density of N(0, gain^2 Xi(T)) per mode at x_0
    assert_close(log_q, likelihood.ModePrior(gain**2 * prior.mode_variance, target.d).log_prob(x0), ulps=1024)


@given(free_theories(max_V=16), st.floats(0.3, 3.0), seeds())
def test_gaussian_control_variate_keeps_hutchinson_unbiased_and_exact_for_its_own_score(target, factor, seed):
    """Hutchinson on s - s_ref plus the exact trace of s_ref: zero variance (= exact divergence, to
    rounding) when s is s_ref's own score, and still unbiased when the reference is off by ``factor``."""
    process = VE()
    field = target.free_field()
    score = exact_score(target, process)
    prior = likelihood.exact_prior(field, process)
    gen = torch.Generator().manual_seed(seed)
    x0 = field.sample(3, gen, dtype=torch.float64)
    exact = likelihood.pf_log_likelihood(score, process, x0, prior, steps=6)
    own = likelihood.ModePrior(field.c0(), target.d)
    same = likelihood.pf_log_likelihood(score, process, x0, prior, steps=6, divergence="hutchinson", control_variate=own,
                                  generator=gen)
    # residual score is 0 up to rounding of two FFT pairs: the integrated estimate equals the exact one
    assert_close(same, exact, rtol=0.0, atol=1e3 * torch.finfo(torch.float64).eps * float(exact.abs().max()))
    R = 200
    xr = x0[:1].expand(R, *target.shape).contiguous()
    off = likelihood.ModePrior(factor * field.c0(), target.d)
    est = likelihood.pf_log_likelihood(score, process, xr, prior, steps=6, divergence="hutchinson", control_variate=off,
                                 generator=gen)
    se = float(est.std()) / math.sqrt(R)
    # 5 sigma over R = 200 independent probe sets (normal tail 6e-7); se = 0 only if factor == 1
    assert abs(float(est.mean() - exact[0])) <= 5.0 * se + 1e-9 * abs(float(exact[0]))
