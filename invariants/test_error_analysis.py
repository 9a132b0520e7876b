"""Invariant: the error estimators are honest on data with known answers (THEORY 6 "Estimators",
THEORY 8 "Observables", "Integrated autocorrelation time").

- Wolff's Gamma method on an AR(1) chain ``x_{i+1} = rho x_i + sqrt(1 - rho^2) z``: the exact
  normalised autocorrelation is ``rho^t``, ``tau_int = (1 + rho) / (2 (1 - rho))`` and the exact
  variance of the mean of N steps is ``(1/N)[1 + 2 sum_{t=1}^{N-1} (1 - t/N) rho^t]``.
- The jackknife reproduces ``s / sqrt(N)`` for a mean exactly and the delta method for smooth
  functions of means; the bootstrap reproduces the plug-in standard error of the mean.
"""

import math

import numpy as np
import pytest
import scipy.signal
import torch
from hypothesis import given
from hypothesis import strategies as st

from critdiff_ref.errors import autocorrelation, bootstrap, gamma_method, jackknife
from critdiff_ref.strategies import seeds
from critdiff_ref.testing import assert_close

# 5 sigma: two-sided normal tail 5.7e-7 per comparison.
K_SIGMA = 5.0


def ar1(rho: float, N: int, R: int, seed: int) -> np.ndarray:
    """R independent stationary AR(1) chains of length N with unit variance, shape (N, R)."""
    z = torch.randn((N, R), generator=torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()
    z[0] /= math.sqrt(1 - rho * rho)  # x_0 ~ N(0, 1): stationary start
    return scipy.signal.lfilter([math.sqrt(1 - rho * rho)], [1.0, -rho], z, axis=0)


def exact_var_of_mean(rho: float, N: int) -> float:
    t = np.arange(1, N)
    return (1.0 + 2.0 * np.sum((1.0 - t / N) * rho**t)) / N


@given(st.floats(0.0, 0.9), st.sampled_from([1, 4, 16]), seeds())
def test_gamma_method_recovers_ar1_tau_int_and_error(rho, R, seed):
    """On AR(1) chains the Gamma method's tau_int and error of the mean agree with the exact values
    within 5 of its own stated errors plus the window truncation bias."""
    N_total = 32_000
    N = N_total // R
    x = ar1(rho, N, R, seed)
    res = gamma_method(x)
    tau_exact = (1 + rho) / (2 * (1 - rho))
    # truncation at the window W drops sum_{t > W} rho^t = rho^{W+1} / (1 - rho) (a downward bias)
    trunc = rho ** (res.W + 1) / (1 - rho)
    assert abs(res.tau_int - tau_exact) <= K_SIGMA * res.tau_int_err + trunc
    err_exact = math.sqrt(exact_var_of_mean(rho, N) / R)
    # err ~ sqrt(tau_int), so its relative error is half that of tau_int (delta method)
    rel = K_SIGMA * res.tau_int_err / (2 * res.tau_int) + trunc / (2 * tau_exact)
    # the chain variance itself is estimated from N_total samples: relative error of
    # sqrt(Gamma(0)) ~ sqrt(tau_int / N_total), 5 sigma of it
    rel += K_SIGMA * math.sqrt(tau_exact / N_total)
    assert abs(res.err / err_exact - 1) <= rel
    assert abs(res.ess - N_total / (2 * res.tau_int)) <= 1e-9 * N_total


def test_gamma_method_errors_cover_the_truth():
    """Over 300 independent AR(1) chains (rho = 0.7) the z-scores mean/err have unit spread."""
    rho, N, n_runs = 0.7, 2000, 300
    x = ar1(rho, N, n_runs, seed=11)
    z = np.array([gamma_method(x[:, j]).value / gamma_method(x[:, j]).err for j in range(n_runs)])
    # if err is right, z ~ N(0, 1) up to the ~10% relative noise of err (sqrt(4(W+1/2)/N) with
    # W ~ 15), which inflates the spread by < 2%; the sample std of 300 normals has SE
    # 1/sqrt(600) = 0.041: 5 sigma of that plus 0.05 for the err noise and truncation bias.
    assert abs(float(np.std(z)) - 1.0) < K_SIGMA / math.sqrt(2 * n_runs) + 0.05
    assert abs(float(np.mean(z))) < K_SIGMA / math.sqrt(n_runs)


@given(st.floats(0.0, 0.9), seeds())
def test_autocorrelation_of_ar1(rho, seed):
    """The normalised autocorrelation of AR(1) is rho^t (checked at lag 1 with Bartlett's variance)."""
    R, N = 8, 4000
    x = ar1(rho, N, R, seed)
    acf = autocorrelation(x, t_max=10)
    assert acf[0] == 1.0
    # Bartlett: Var(r_1) ~ (1 - rho^2) / N_total for AR(1); plus the O(1/N) bias of the
    # mean-subtracted estimator, (1 + rho)/N_total (Marriott-Pope), well under one sigma.
    se = math.sqrt((1 - rho * rho) / (N * R)) + (1 + rho) / (N * R)
    assert abs(acf[1] - rho) < K_SIGMA * se


@given(st.integers(20, 400), st.integers(2, 10), seeds())
def test_jackknife_of_mean_is_standard_error(N, B, seed):
    """Delete-one jackknife of a mean equals s/sqrt(N); the delete-one-block jackknife equals the
    standard error of the block means (algebraic identities)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N * B, generator=gen, dtype=torch.float64) * 3 + 1
    est = jackknife(lambda y: y.mean(), x)
    assert_close(est.err, x.std() / math.sqrt(N * B), ulps=4096)  # O(N) summations of rounding
    est_b = jackknife(lambda y: y.mean(), x, n_blocks=B)
    block_means = x.reshape(B, N).mean(dim=1)
    assert_close(est_b.err, block_means.std() / math.sqrt(B), ulps=4096)
    assert_close(est_b.value, x.mean())


@given(st.floats(0.5, 5.0), seeds())
def test_jackknife_matches_delta_method_for_mean_squared(mu, seed):
    """For f = mean^2 the delete-one jackknife equals the delta method 2 |mean| s / sqrt(N) up to
    the second-order term (deterministic bound)."""
    gen = torch.Generator().manual_seed(seed)
    N = 500
    x = mu + torch.randn(N, generator=gen, dtype=torch.float64)
    est = jackknife(lambda y: y.mean() ** 2, x)
    xbar = float(x.mean())
    delta = 2 * abs(xbar) * float(x.std()) / math.sqrt(N)
    # theta_i - theta = -2 xbar e_i + e_i^2 with e_i = (x_i - xbar)/(N - 1): the quadratic term is
    # at most max|e| / (2 |xbar|) relative to the linear one (plus the (N-1)/N vs N/(N-1) factors)
    e_max = float((x - xbar).abs().max()) / (N - 1)
    assert abs(float(est.err) / delta - 1) <= e_max / abs(xbar) + 2.0 / N


@given(seeds())
def test_bootstrap_of_mean_matches_plug_in_error(seed):
    """The bootstrap SE of a mean converges to the plug-in s sqrt((N-1)/N) / sqrt(N)."""
    gen = torch.Generator().manual_seed(seed)
    N, n_boot = 300, 400
    x = torch.randn(N, generator=gen, dtype=torch.float64) * 2
    est = bootstrap(lambda y: y.mean(), x, n_boot=n_boot, generator=gen)
    plug_in = float(x.std()) * math.sqrt((N - 1) / N) / math.sqrt(N)
    # a standard deviation of n_boot near-normal replicas has relative SE 1/sqrt(2 (n_boot - 1))
    assert abs(float(est.err) / plug_in - 1) < K_SIGMA / math.sqrt(2 * (n_boot - 1))


def test_blocked_jackknife_on_ar1_matches_exact_error():
    """With blocks much longer than tau_int the blocked jackknife of an AR(1) mean is honest."""
    rho, N, B = 0.8, 100_000, 100
    x = torch.from_numpy(ar1(rho, N, 1, seed=3)[:, 0])
    est = jackknife(lambda y: y.mean(), x, n_blocks=B)
    exact = math.sqrt(exact_var_of_mean(rho, N))
    # SE of a standard deviation from B block means: relative 1/sqrt(2 (B - 1)) = 7%; block-end
    # correlations bias the variance down by ~ 2 tau_int / block = 1.9%
    tau = (1 + rho) / (2 * (1 - rho))
    assert abs(float(est.err) / exact - 1) < K_SIGMA / math.sqrt(2 * (B - 1)) + 2 * tau * B / N


@given(st.floats(0.0, 0.95), st.integers(500, 4000), seeds())
def test_gamma_method_agrees_with_pyerrors(rho, N, seed):
    """Independent cross-check: pyerrors' Gamma method (same algorithm, Wolff 2004, S = 1.5) gives the
    same value, error and tau_int for one chain and for a derived quantity <x^2> - <x>^2 (pyerrors is a
    test dependency, so CI runs this; it is not skipped when missing)."""
    import pyerrors as pe
    x = ar1(rho, N, 1, seed)[:, 0]
    ours = gamma_method(x, S=1.5)
    ref = pe.Obs([x], ["ens"])
    ref.gamma_method(S=1.5)
    assert math.isclose(ours.value, ref.value, rel_tol=1e-12, abs_tol=1e-15)
    # Both floor tau_int at 1/2 where the windowed sum of barely correlated data dips below it (pyerrors
    # per window, ours at the chosen W); their O(W/N) bias corrections of Gamma differ. So tau_int agrees
    # (observed within 0.08 tau_int_err over 400 chains) and the error per unit tau_int, Gamma(0)/N,
    # agrees to O(W/N) (observed <= 0.6 W/N).
    def agree(mine, theirs):
        tau = theirs.e_tauint["ens"]
        per_tau = (mine.err**2 / mine.tau_int) / (theirs.dvalue**2 / tau)
        return (abs(max(mine.tau_int, 0.5) - tau) <= mine.tau_int_err
                and abs(per_tau - 1.0) <= 0.01 + 1.5 * mine.W / mine.n_total)

    assert agree(ours, ref), (ours, ref.dvalue, ref.e_tauint["ens"])
    derived = pe.Obs([x**2], ["ens"]) - pe.Obs([x], ["ens"]) ** 2
    derived.gamma_method(S=1.5)
    mine = gamma_method(np.stack([x, x**2], -1)[:, None, :], lambda a: a[1] - a[0] ** 2, S=1.5)
    assert math.isclose(mine.value, derived.value, rel_tol=1e-12)
    assert agree(mine, derived), (mine, derived.dvalue, derived.e_tauint["ens"])
