"""Unit tests for the phi^4 observables and the error-analysis API of critdiff_ref.observables
(the AR(1) / known-answer invariants live in invariants/test_error_analysis.py)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from critdiff_ref import errors
from critdiff_ref import observables as obs
from critdiff_ref.strategies import seeds
from critdiff_ref.targets import Phi4Lattice
from critdiff_ref.testing import assert_close


@given(st.integers(1, 3), seeds())
def test_two_point_functions_agree_with_a_direct_translation_average(d, seed):
    """G(x) = (1/V) sum_y <phi_{y+x} phi_y> - <M>^2 (rolls), and G(k) = sum_x G(x) e^{-ikx}."""
    L = 4 if d < 3 else 3
    gen = torch.Generator().manual_seed(seed)
    phi = torch.randn((5, *(L,) * d), generator=gen, dtype=torch.float64) + 0.3
    G = obs.connected_two_point(phi, d)
    dims = tuple(range(1, d + 1))
    M = phi.mean(dim=dims)
    for x in [(0,) * d, (1,) + (0,) * (d - 1), (L - 1,) * d]:
        direct = (torch.roll(phi, shifts=tuple(-s for s in x), dims=dims) * phi).mean(dim=dims).mean() - M.mean() ** 2
        assert_close(G[x], direct, ulps=256)  # FFT of V terms vs a direct sum: a few hundred ulps
    Gk = obs.connected_two_point_momentum(phi, d)
    assert_close(Gk, torch.fft.fftn(G, dim=tuple(range(d))).real, rtol=0.0,
                 atol=1e3 * torch.finfo(torch.float64).eps * float(Gk.abs().max()))


def test_two_point_function_of_the_free_field_matches_its_covariance():
    """lam = 0 exact samples: measured G(x) = real_space_covariance within 5 standard errors."""
    field = Phi4Lattice(6, 2, 0.2, 0.0).free_field()
    gen = torch.Generator().manual_seed(2)
    batches = torch.stack([obs.connected_two_point(field.sample(200, gen, dtype=torch.float64), 2) for _ in range(30)])
    mean, se = batches.mean(0), batches.std(0) / math.sqrt(30)
    # 5 sigma over 30 independent batches, 36 entries (Student-t_29 tail ~3e-5 each)
    assert bool(((mean - field.real_space_covariance()).abs() < 5 * se).all())


def test_magnetization_susceptibility_binder_closed_forms():
    phi = torch.tensor([[[1.0, 3.0], [2.0, 2.0]], [[-1.0, -1.0], [-1.0, -1.0]]], dtype=torch.float64)
    M = obs.magnetization(phi, 2)
    assert torch.equal(M, torch.tensor([2.0, -1.0], dtype=torch.float64))
    # chi_2 = V (<M^2> - <M>^2) = 4 (2.5 - 0.25)
    assert_close(obs.susceptibility(M, 4), torch.tensor(9.0, dtype=torch.float64))
    # M = +-c with equal weight: <M^4> = <M^2>^2, so U_L = 1 - 1/3 = 2/3 exactly (ordered phase)
    two_state = torch.tensor([0.7, -0.7, 0.7, -0.7], dtype=torch.float64)
    assert_close(obs.binder_cumulant(two_state), torch.tensor(2.0 / 3.0, dtype=torch.float64))


def test_binder_cumulant_of_gaussian_magnetization_is_zero():
    """Gaussian M (symmetric phase / free field): <M^4> = 3 <M^2>^2, U_L -> 0 (delta-method error)."""
    gen = torch.Generator().manual_seed(4)
    M = torch.randn(50_000, generator=gen, dtype=torch.float64)
    est = errors.jackknife(obs.binder_cumulant, M, n_blocks=50)
    # the blocked jackknife estimates the estimator's sd (bias O(1/N) << err); 5 sigma: tail 6e-7
    assert abs(float(est.value)) < 5 * float(est.err)


def test_phi4_observables_are_the_plug_in_values():
    gen = torch.Generator().manual_seed(5)
    phi = torch.randn((64, 4, 4), generator=gen, dtype=torch.float64) * 0.5 + 0.1
    res = obs.phi4_observables(phi, 2, n_blocks=8)
    M = obs.magnetization(phi, 2)
    assert_close(res["M"].value, M.mean())
    assert_close(res["absM"].value, M.abs().mean())
    assert_close(res["chi2"].value, obs.susceptibility(M, 16))
    assert_close(res["binder"].value, obs.binder_cumulant(M))
    assert all(float(e.err) > 0 for e in res.values())
    # for the mean the blocked jackknife error is the standard error of the block means
    blocks = M.reshape(8, 8).mean(1)
    assert_close(res["M"].err, blocks.std() / math.sqrt(8), ulps=256)


def test_gamma_method_of_independent_data_is_the_naive_error():
    gen = np.random.default_rng(0)
    x = gen.normal(size=(4000, 4))
    g = errors.gamma_method(x)
    # white noise: tau_int = 1/2 within its error (Wolff eq. 42), err = sd / sqrt(N) within ~a few %
    assert abs(g.tau_int - 0.5) < 4 * g.tau_int_err + 0.02
    assert abs(g.err / (x.std() / math.sqrt(x.size)) - 1) < 0.1
    assert g.ess == pytest.approx(x.size / (2 * g.tau_int))


def _ar1(rho: float, N: int, seed: int) -> np.ndarray:
    """A stationary AR(1) chain ``x_{i+1} = rho x_i + sqrt(1 - rho^2) z_i`` of unit variance, shape (N,)."""
    z = torch.randn(N, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()
    x = np.empty(N)
    x[0] = z[0]
    for i in range(1, N):
        x[i] = rho * x[i - 1] + math.sqrt(1 - rho * rho) * z[i]
    return x


@given(st.floats(-0.95, -0.5), st.integers(20, 400), seeds())
def test_gamma_method_never_reports_a_zero_error_on_anti_correlated_chains(rho, N, seed):
    """On anti-correlated chains tau_int is floored at 1/2: the error is the naive one, positive and finite
    (the windowed sum stops at lag 1, where 1 + 2 rho(1) <= 0 gave an error of 0)."""
    x = _ar1(rho, N, seed)
    g = errors.gamma_method(x)
    assert math.isfinite(g.err) and g.err > 0 and g.tau_int >= 0.5
    assert math.isfinite(g.tau_int_err) and g.ess <= N * (1 + 1e-12)


def test_gamma_method_error_of_a_short_rho_minus_0_9_chain_is_the_naive_upper_bound():
    """For AR(1) with rho = -0.9 and N = 200 the error is the naive sd / sqrt(N) (with Wolff's bias factor),
    which bounds the exact error of the mean from above."""
    rho, N = -0.9, 200
    x = _ar1(rho, N, seed=3)
    g = errors.gamma_method(x)
    assert g.tau_int == 0.5 and g.W == 1
    # floored C_F = Gamma(0), bias-corrected by (1 + 1/N) (Wolff eq. 49): rounding only
    assert math.isclose(g.err, math.sqrt(x.var() * (1 + 1 / N) / N), rel_tol=1e-12)
    # exact var of the mean (1/N)[1 + 2 sum_t (1 - t/N) rho^t] is 0.053 / N: the naive error is ~4.4x the
    # exact one, far outside the ~15% spread of the sample variance at N = 200
    t = np.arange(1, N)
    exact = math.sqrt((1 + 2 * np.sum((1 - t / N) * rho**t)) / N)
    assert exact < g.err < 10 * exact


def test_gamma_method_tau_int_of_a_long_rho_0_8_chain_is_the_exact_one_within_its_error():
    """For AR(1) with rho = 0.8 (N = 10^5) tau_int agrees with (1 + rho) / (2 (1 - rho)) = 4.5 within 5 of
    its stated errors (Wolff eq. 42) plus the window's truncation bias: the floor leaves it alone."""
    rho, N = 0.8, 100_000
    g = errors.gamma_method(_ar1(rho, N, seed=5))
    exact = (1 + rho) / (2 * (1 - rho))
    # 5 sigma: two-sided normal tail 5.7e-7; truncation drops sum_{t > W} rho^t = rho^(W+1) / (1 - rho)
    trunc = rho ** (g.W + 1) / (1 - rho)
    assert abs(g.tau_int - exact) <= 5 * g.tau_int_err + trunc
    assert g.tau_int_err < 0.05 * exact  # the bound is informative: 5 sigma < 25% of tau_int


def test_error_analysis_rejects_bad_input():
    with pytest.raises(ValueError, match="S must be"):
        errors.gamma_method(np.zeros(10), S=0.0)
    with pytest.raises(ValueError, match=r"shape \(N,\) or \(N, R\)"):
        errors.gamma_method(np.zeros((4, 3, 2)))
    with pytest.raises(TypeError, match="scalar"):
        errors.gamma_method(np.ones((10, 2, 2)) + np.arange(10)[:, None, None], lambda a: a)
    with pytest.raises(ValueError, match="non-finite"):
        errors.gamma_method(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="n_blocks"):
        errors.jackknife(lambda m: m.mean(), torch.zeros(10), n_blocks=11)
    with pytest.raises(ValueError, match="n_boot"):
        errors.bootstrap(lambda m: m.mean(), torch.zeros(10), n_boot=1)
    with pytest.raises(ValueError, match="lattice axes"):
        obs.connected_two_point(torch.zeros(4, 4), 2)
    with pytest.raises(TypeError, match="d must be an int"):
        obs.magnetization(torch.zeros(2, 4), 1.5)
