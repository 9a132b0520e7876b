"""THEORY 7: two deltas under Brownian noise are the Curie–Weiss magnet.

The modes of p_t (fixed points of the reverse drift, gamma = 0) solve m = tanh(m/(t sigma^2)); they
branch at t_c = 1/sigma^2 with mean-field exponents beta = 1/2 (m below t_c) and gamma = 1 (chi on
both sides).  Exponents and amplitudes are checked on deterministic root-finding output against
the Landau expansion, derived in ``critdiff_ref.thermo`` and here: with delta = |t - t_c|/t_c,
    m / sqrt(3 delta) = 1 - (2/5) delta - 0.0686 delta^2 + O(delta^3)       (t < t_c),
    2 delta chi       = 1 - (9/5) delta + 0.206 delta^2 + O(delta^3)         (t < t_c),
    delta chi         = 1 exactly                                           (t > t_c).
Root conditioning: G(m) = m - tanh(K m) has G' = 2 delta at the root, so the root's relative
error is ~ eps/delta (the ``COND`` terms below).  The reverse SDE with the exact tanh score then
ends at ±1 with equal frequency (binomial test).
"""

import math

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from critdiff_ref import thermo
from critdiff_ref.processes import Brownian
from critdiff_ref.samplers import reverse_sde
from critdiff_ref.targets import TwoDeltas

EPS = float(np.finfo(float).eps)
ALPHA = 1e-3  # false-failure rate of every statistical assertion in this module


def _K(t: float, sigma: float) -> float:
    return thermo.coupling(Brownian(sigma, T=max(4.0 / sigma**2, 1.0)), t)


@given(st.floats(0.2, 5.0), st.floats(1e-6, 1e-2))
def test_branching_time_is_inverse_sigma_squared(sigma, delta):
    """The number of score zeros jumps from 1 to 3 at t_c = 1/sigma^2, and critical_time finds it."""
    p = Brownian(sigma, T=4.0 / sigma**2)
    t_c = 1.0 / sigma**2
    # brentq on ln K(t) = -ln(sigma^2 t): d ln K / d ln t = -1, so the root's relative error is the
    # few-eps rounding of the logs (64 eps)
    assert math.isclose(thermo.critical_time(p), t_c, rel_tol=64 * EPS)
    above = thermo.two_delta_fixed_points(p, t_c * (1 + delta))
    below = thermo.two_delta_fixed_points(p, t_c * (1 - delta))
    assert len(above) == 1 and abs(above[0]) < 1e-300 + 64 * EPS
    assert len(below) == 3
    lo, mid, hi = below
    assert lo < 0 < hi and abs(mid) < 64 * EPS and math.isclose(lo, -hi, rel_tol=64 * EPS / delta)
    stable = [fp.stable for fp in thermo.curie_weiss_fixed_points(_K(t_c * (1 - delta), sigma))]
    assert stable == [True, False, True]


def test_magnetisation_exponent_is_one_half():
    """Below t_c, m ~ (t_c - t)^{1/2} with amplitude sqrt(3): fitted slope 1/2, and m/sqrt(3 delta) follows Landau."""
    sigma = 1.7
    t_c = 1 / sigma**2
    deltas = np.geomspace(1e-6, 1e-3, 13)
    m = np.array([thermo.curie_weiss_magnetisation(_K(t_c * (1 - d), sigma)) for d in deltas])
    slope = np.polyfit(np.log(deltas), np.log(m), 1)[0]
    # local slope is 1/2 - (2/5) delta, so the fit lies within (2/5) delta_max = 4e-4 of 1/2;
    # conditioning adds ~ eps/delta_min = 2e-10.  Bound 5e-4.
    assert abs(slope - 0.5) < 5e-4
    ratio = m / np.sqrt(3 * deltas)
    # remainder after the O(delta) term: 0.0686 delta^2 < delta^2 / 10, plus conditioning 64 eps/delta
    assert np.all(np.abs(ratio - (1 - 0.4 * deltas)) < deltas**2 / 10 + 64 * EPS / deltas)
    # above t_c the symmetric point is the only fixed point
    assert all(abs(thermo.curie_weiss_magnetisation(_K(t_c * (1 + d), sigma))) < 1e-300 + 64 * EPS for d in deltas)


def test_susceptibility_exponent_is_one_on_both_sides():
    """chi ~ |t - t_c|^{-1} above and below t_c, with the mean-field amplitude ratio 2."""
    sigma = 0.8
    t_c = 1 / sigma**2
    deltas = np.geomspace(1e-6, 1e-3, 13)
    chi_above = np.array([thermo.curie_weiss_susceptibility(_K(t_c * (1 + d), sigma)) for d in deltas])
    chi_below = np.array([thermo.curie_weiss_susceptibility(_K(t_c * (1 - d), sigma)) for d in deltas])
    slope_above = np.polyfit(np.log(deltas), np.log(chi_above), 1)[0]
    slope_below = np.polyfit(np.log(deltas), np.log(chi_below), 1)[0]
    # above: delta chi = 1 exactly, so only rounding of 1 - K (relative eps/delta_min = 2e-10)
    assert abs(slope_above + 1) < 1e-6
    assert np.all(np.abs(chi_above * deltas - 1) < 64 * EPS / deltas)
    # below: local slope -1 - (9/5) delta, fit within 1.8e-3 of -1; conditioning 2e-10.  Bound 2e-3.
    assert abs(slope_below + 1) < 2e-3
    # remainder after the O(delta) term: 0.206 delta^2 < delta^2 / 2, plus conditioning 64 eps/delta
    assert np.all(np.abs(2 * deltas * chi_below - (1 - 1.8 * deltas)) < deltas**2 / 2 + 64 * EPS / deltas)
    # amplitude ratio chi_above/chi_below = 2 / (1 - 9 delta/5 + ...) -> 2 (mean field)
    assert np.all(np.abs(chi_above / chi_below - 2) < 4 * deltas + 64 * EPS / deltas)


@given(st.floats(0.2, 5.0), st.floats(0.05, 1.0))
def test_susceptibility_is_dm_dh(K, h):
    """chi = beta(1 - m^2)/(1 - beta(1 - m^2)) equals the central difference dm/dh on the equilibrium branch."""
    dh = 1e-5
    fd = (thermo.curie_weiss_magnetisation(K, h + dh) - thermo.curie_weiss_magnetisation(K, h - dh)) / (2 * dh)
    chi = thermo.curie_weiss_susceptibility(K, h)
    # truncation dh^2 |m'''|/6 with |m'''| <= 1e2 here (h >= 0.05 keeps away from the h = 0 jump;
    # K <= 5), plus rounding 4 eps / dh ~ 1e-10 from the roots' rtol.  Bound 1e-7 (1 + chi).
    assert abs(fd - chi) < 1e-7 * (1 + chi)


@given(st.floats(0.2, 5.0), st.floats(-1.0, 1.0))
def test_landau_landscape_stationary_points_are_fixed_points(K, h):
    """f(m) = m^2/2 - K^{-1} ln cosh(K(m + h)) has f' = 0 exactly at the fixed points, f'' > 0 exactly at
    the stable ones, and the equilibrium branch is its global minimum on [-1, 1]."""
    fps = thermo.curie_weiss_fixed_points(K, h)
    for fp in fps:
        m = torch.tensor(fp.m, dtype=torch.float64, requires_grad=True)
        (df,) = torch.autograd.grad(thermo.landau_free_energy(m, K, h), m, create_graph=True)
        (d2f,) = torch.autograd.grad(df, m)
        # f'(m) = m - tanh(K(m+h)) evaluated at a root accurate to 4 eps |m|: |f'| <= 64 eps (1 + K)
        assert abs(df.item()) < 64 * EPS * (1 + K)
        assert math.isclose(d2f.item(), fp.curvature, rel_tol=1e-12, abs_tol=64 * EPS * K)
        if abs(fp.curvature) > 1e-9:  # skip a tangent (spinodal) root, where the sign is undecided
            assert (d2f.item() > 0) == fp.stable
    grid = np.linspace(-1, 1, 20001)
    m_eq = thermo.curie_weiss_magnetisation(K, h)
    # the grid minimum is within spacing^2 max|f''|/2 = (1e-4)^2 (1 + K)/2 of the true minimum
    assert thermo.landau_free_energy(m_eq, K, h) <= thermo.landau_free_energy(grid, K, h).min() + 1e-8 * (1 + K)


@given(st.floats(0.3, 3.0), st.floats(0.05, 2.0))
def test_landau_landscape_is_minus_log_density(sigma, t):
    """At h = 0, f(x) = -K^{-1} ln p_t(x) - 1/2 - (Xi/2) ln(2 pi Xi) for two deltas ±1 under Brownian noise."""
    p = Brownian(sigma, T=2.0)
    Xi = sigma**2 * t
    K = thermo.coupling(p, t)
    x = torch.linspace(-2.5, 2.5, 101, dtype=torch.float64)
    lhs = thermo.landau_free_energy(x, K)
    rhs = -Xi * TwoDeltas(1.0).log_marginal(x, p, t) - 0.5 - 0.5 * Xi * math.log(2 * math.pi * Xi)
    # terms of size <= x^2/2 + 1 + |Xi ln(2 pi Xi)| + |x| each with a few eps rounding: 64 eps times that
    scale = 3.125 + 1 + abs(Xi * math.log(2 * math.pi * Xi)) + 2.5
    assert float((lhs - rhs).abs().max()) < 64 * EPS * scale


def test_reverse_dynamics_breaks_symmetry_evenly():
    """The reverse SDE with the exact two-delta score ends at ±1, each with probability 1/2."""
    sigma, T, t_min, steps, n = 1.0, 4.0, 1e-3, 400, 4000
    p = Brownian(sigma, T)
    target = TwoDeltas(1.0)
    gen = torch.Generator().manual_seed(20261123)
    y0 = target.sample(n, gen)
    x_T = y0 + math.sqrt(p.Xi(T)) * torch.randn(n, generator=gen, dtype=torch.float64)
    times = np.geomspace(T, t_min, steps + 1)  # constant ratio: the stiff 1/t drift stays resolved
    x_end = reverse_sde(lambda x, t: target.score(x, p, t), p, x_T, None, gen, grid=torch.from_numpy(times))
    # the chain is odd-symmetric (odd drift, symmetric noise and x_T), so #(x_end > 0) ~ Binomial(n, 1/2)
    k = int((x_end > 0).sum())
    assert stats.binomtest(k, n, 0.5).pvalue > ALPHA
    # near a delta EM's variance obeys v' = (1 - r)^2 v + sigma^2 r t, r = 1 - t_{k+1}/t_k, whose
    # solution is sigma^2 t / (1 - r): each endpoint is Gaussian about ±1 with that variance.  A
    # two-sided per-endpoint bound with false-failure rate ALPHA / n is z = Phi^{-1}(1 - ALPHA/(2n)).
    r = 1 - times[-1] / times[-2]
    sd = math.sqrt(sigma**2 * t_min / (1 - r))
    z = stats.norm.isf(ALPHA / (2 * n))
    assert float((x_end.abs() - 1).abs().max()) < z * sd
