"""Weak and strong order of the stochastic reverse-time samplers (THEORY 1, 2 "Discretized samplers").

Claims: on the Gaussian field (exact linear score) Euler–Maruyama has weak order 1 and strong
order 1 — not 1/2, because the reverse diffusion SDE has additive noise (``g`` depends on ``t``
only; the Milstein correction vanishes, see ``critdiff_ref.samplers.sde_order``) — and stochastic Heun
has weak order 2.  Weak errors are exact (per-mode variance recursions, and the same numbers by
probing the sampler code through linearity); strong errors are exact mean squares, confirmed by
Monte Carlo over Brownian paths with fixed seeds.  Geometric Brownian motion (multiplicative noise)
shows the same Monte Carlo estimator measuring EM's strong order 1/2, so it can tell 1/2 from 1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from critdiff_ref import OU, VE, VP, GaussianField, exact_score
from critdiff_ref.processes import sde_drift
from critdiff_ref.samplers import exact_start, reverse_sde, score_kernel_fn, sde_variance, stiffness, time_grid
from critdiff_ref.samplers.sde_schemes import (
    brownian_increments,
    coarsen_increments,
    euler_maruyama,
    refine_grid,
    replay_noise,
    reverse_sde_heun,
)
from critdiff_ref.samplers.sde_order import (
    em_strong_mse,
    fit_order,
    heun_variance,
    linear_sampler_variance,
    probe_linear_sampler,
    strong_error,
    strong_order,
    weak_error,
    weak_order,
    weak_order_check,
)
from critdiff_ref.strategies import masses, processes, seeds
from critdiff_ref.testing import assert_close

EPS = torch.finfo(torch.float64).eps
# Asymptotic regime for fitted orders: h * stiffness <= LAMBDA_H and N >= MIN_STEPS, three doublings.
# The error is C h^p (1 + D h + ...); the D h correction shifts the fitted slope by ~log2((1 + D h0) /
# (1 + D h0 / 2)), measured <= 0.15 here (EM 1.05-1.10, Heun 2.0-2.1 at these N); SLOPE_TOL is twice that.
LAMBDA_H = 0.05
MIN_STEPS = 64
SLOPE_TOL = 0.3
EXAMPLES = min(settings.default.max_examples, 6)
# Monte Carlo comparisons: |estimate - exact| <= K_SIGMA * SE, two-sided normal false-failure rate 6e-5 per check.
K_SIGMA = 4.0


def _steps(process, rate: float) -> int:
    n = max(MIN_STEPS, math.ceil(process.T * rate / LAMBDA_H))
    return 1 << (n - 1).bit_length()


def _field(data, max_L: int = 8, max_r: float = 4.0) -> GaussianField:
    d = data.draw(st.integers(1, 2), label="d")
    L = data.draw(st.integers(4, max_L if d == 1 else 6), label="L")
    return GaussianField(L, d, data.draw(masses(max_r=max_r), label="r"))


# -- exact weak errors --------------------------------------------------------------------------
@settings(max_examples=EXAMPLES)
@given(data=st.data(), steps=st.integers(4, 24))
def test_probing_the_sampler_code_reproduces_the_variance_recursions(data, steps):
    """Probing reverse_sde / reverse_sde_heun through linearity gives exactly the per-mode variance of
    the EM recursion samplers.sde_variance and of heun_variance (two independent computations)."""
    field = _field(data)
    process = data.draw(processes(kinds=("OU", "VE", "VP")), label="process")
    kernel, mask = score_kernel_fn(field, process), field.mode_mask()
    C_T = field.mode_variance(process, process.T)
    grid = time_grid(process, steps)
    for sampler, recursion in ((reverse_sde, sde_variance), (reverse_sde_heun, heun_variance)):
        probed = linear_sampler_variance(sampler, field, process, steps)
        exact = recursion(kernel, process, grid, C_T, mask)
        # both are ~N steps of O(1) float64 operations plus two FFTs per step: 64 eps per step,
        # relative to the largest variance (modes differ by up to ~L^2 at r = 0)
        assert_close(probed[mask], exact[mask], rtol=64 * steps * EPS, atol=64 * steps * EPS * float(exact[mask].max()))


@pytest.mark.parametrize("kind", ["OU", "VE", "VP"])
@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_weak_order_euler_maruyama_1_stochastic_heun_2(kind, data):
    """From the exact start N(0, C_T) the per-mode variance error of EM falls as h^1 and of stochastic Heun as h^2."""
    field = _field(data)
    process = data.draw(processes(kinds=(kind,)), label="process")
    kernel, mask = score_kernel_fn(field, process), field.mode_mask()
    C_T = field.mode_variance(process, process.T)
    n0 = _steps(process, stiffness(kernel, process, sde=True))
    steps = [n0, 2 * n0, 4 * n0]
    for recursion, order in ((sde_variance, 1.0), (heun_variance, 2.0)):
        errors = [weak_error(recursion(kernel, process, time_grid(process, n), C_T, mask), field, process) for n in steps]
        # the errors must sit 100x above rounding (N steps of ~eps each) for the fit to mean anything
        assert min(errors) > 1e2 * steps[-1] * EPS, (recursion.__name__, errors)
        fit = fit_order(steps, errors, process.T)
        assert abs(fit.order - order) <= SLOPE_TOL, f"{recursion.__name__}: {fit}"


def test_weak_order_of_the_sampler_code_by_probing():
    """weak_order() on the actual sampler functions (no recursion): EM 1, stochastic Heun 2 (VE, r = 0, d = 1)."""
    field, process = GaussianField(6, 1, 0.0), VE()
    # VE sigma = 25: stiffness 6.4, so N = 64 has h * stiffness = 0.1; measured slopes 1.05 and 2.06
    em = weak_order(reverse_sde, field, process, [64, 128, 256])
    heun = weak_order(reverse_sde_heun, field, process, [64, 128, 256])
    assert abs(em.order - 1.0) <= SLOPE_TOL, em
    assert abs(heun.order - 2.0) <= SLOPE_TOL, heun
    # at equal steps the second-order sampler is far more accurate (deterministic numbers: no tolerance)
    assert all(h < e for h, e in zip(heun.errors, em.errors)), (heun, em)


def test_probe_counts_one_noise_draw_per_step():
    """Both stochastic samplers draw exactly one noise tensor per step; the ODE limit (no noise) has S = 0."""
    field, process = GaussianField(5, 1, 0.3), OU()
    for sampler in (reverse_sde, reverse_sde_heun):
        _, S, M = probe_linear_sampler(sampler, field, process, 7)
        assert M == 7
        assert bool((S > 0).all())


# -- strong order ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["OU", "VE", "VP"])
@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_em_strong_order_is_one_for_additive_noise(kind, data):
    """The exact rms strong error of EM against the exact solution driven by the same path falls as h^1."""
    field = _field(data, max_r=1.0)  # r <= 1 bounds the stiffness, hence N, for the quadrature over N steps
    process = data.draw(processes(kinds=(kind,)), label="process")
    kernel, mask = score_kernel_fn(field, process), field.mode_mask()
    C_T = field.mode_variance(process, process.T)
    n0 = _steps(process, stiffness(kernel, process, sde=True))
    steps = [n0, 2 * n0, 4 * n0]
    errors = [float(em_strong_mse(kernel, process, time_grid(process, n), C_T, mask).mean().sqrt()) for n in steps]
    fit = fit_order(steps, errors, process.T)
    # order 1 (not 1/2): same asymptotic-regime band as the weak order; 1/2 lies outside it
    assert abs(fit.order - 1.0) <= SLOPE_TOL, fit


def test_strong_error_against_a_fine_path_tends_to_the_exact_solution():
    """em_strong_mse against EM on a grid refined F times approaches the error against the exact
    solution (Gauss–Legendre) as F grows, and the gap halves per doubling of F (the fine EM is order 1)."""
    field, process = GaussianField(6, 1, 0.0), VP()
    kernel, mask = score_kernel_fn(field, process), field.mode_mask()
    C_T, grid = field.mode_variance(process, process.T), time_grid(process, 16)
    exact = em_strong_mse(kernel, process, grid, C_T, mask)
    gaps = [float((em_strong_mse(kernel, process, grid, C_T, mask, factor=f) - exact).abs().max()) for f in (4, 8, 16, 32)]
    # the gap is -2 E[(X_c - X)(X_f - X)] + E|X_f - X|^2 = O(h^2 / F): ratios -> 2; [1.6, 2.4] allows
    # the O(1/F^2) term at F = 4 (measured ratios 1.9-2.0)
    ratios = [a / b for a, b in zip(gaps, gaps[1:])]
    assert all(1.6 <= q <= 2.4 for q in ratios), (gaps, ratios)


@pytest.mark.parametrize("process", [OU(), VE(), VP()], ids=["OU", "VE", "VP"])
@pytest.mark.parametrize("r", [0.0, 0.5])
def test_monte_carlo_strong_error_matches_exact(process, r):
    """strong_error (same Brownian path, coarse vs 8x finer EM) agrees with the exact em_strong_mse within K_SIGMA SE."""
    field = GaussianField(6, 1, r)
    kernel, mask = score_kernel_fn(field, process), field.mode_mask()
    C_T = field.mode_variance(process, process.T)
    gen = torch.Generator().manual_seed(20261123)
    x_T = exact_start(field, process, 400, gen)
    mc = strong_error(reverse_sde, exact_score(field, process), process, x_T, 16, 8, gen, noise=field.noise)
    exact = math.sqrt(float(em_strong_mse(kernel, process, time_grid(process, 16), C_T, mask, factor=8).mean()))
    # K_SIGMA standard errors (delta method over 400 independent paths; z-scores over 60 seeds had
    # mean -0.04, std 1.10, so the SE is calibrated)
    assert abs(mc.rms - exact) <= K_SIGMA * mc.se, (mc, exact)
    assert mc.se < 0.05 * mc.rms  # the check has power: a 20% error in the strong error would fail it


def _gbm_squared_errors(additive: bool, steps: list[int], n_paths: int, seed: int) -> np.ndarray:
    """Per-path squared errors ``(n_paths, len(steps))`` of EM for ``dX = mu X dt + sigma b(X) dW``
    against the exact solution driven by the same path (``b(X) = X``: GBM; ``b = 1``: additive)."""
    mu, sigma, n_fine = 0.5, 1.0, 16 * max(steps)
    gen = torch.Generator().manual_seed(seed)
    fine = torch.linspace(0.0, 1.0, n_fine + 1, dtype=torch.float64)
    dW = brownian_increments(fine, (n_paths,), gen)
    x0 = torch.ones(n_paths, dtype=torch.float64)
    if additive:  # X_T = e^mu + sigma int_0^1 e^{mu (1 - s)} dW, the Ito integral by midpoint weights on the
        # fine grid: its rms error ~ sigma mu^2 h_fine^2 / 8, negligible against the coarse errors
        mid = 0.5 * (fine[:-1] + fine[1:])
        exact = math.exp(mu) + sigma * (torch.exp(mu * (1.0 - mid))[:, None] * dW).sum(0)
        diffusion = lambda x, t: sigma  # noqa: E731
    else:
        exact = torch.exp(torch.tensor(mu - 0.5 * sigma**2) + sigma * dW.sum(0))
        diffusion = lambda x, t: sigma * x  # noqa: E731
    columns = []
    for n in steps:
        coarse = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)
        x = euler_maruyama(lambda x, t: mu * x, diffusion, x0, coarse, coarsen_increments(dW, n_fine // n))
        columns.append(((x - exact) ** 2).numpy())
    return np.stack(columns, axis=1)


@pytest.mark.parametrize("additive, order", [(False, 0.5), (True, 1.0)], ids=["multiplicative", "additive"])
def test_euler_maruyama_strong_order_half_multiplicative_one_additive(additive, order):
    """Monte Carlo strong order of the reference EM: 1/2 for geometric Brownian motion, 1 for additive noise."""
    steps = [8, 16, 32, 64]
    n_paths = 20000
    e2 = _gbm_squared_errors(additive, steps, n_paths, seed=7)
    mse = e2.mean(0)
    fit = fit_order(steps, np.sqrt(mse))
    # slope = sum_i w_i log rms_i; delta method with the full covariance of the per-path squared
    # errors (the step counts share paths): Var = w^T J Cov J w / n, J = diag(1 / (2 mse_i))
    x = np.log([1.0 / n for n in steps])
    w = (x - x.mean()) / ((x - x.mean()) ** 2).sum()
    jw = w / (2.0 * mse)
    slope_se = math.sqrt(float(jw @ np.cov(e2, rowvar=False) @ jw) / n_paths)
    # K_SIGMA SE plus 0.1 for the pre-asymptotic drift of a slope fitted at N = 8..64 (measured:
    # GBM 0.47 at N = 8..64 and 0.53 at 16..128; additive 0.97-1.0)
    assert abs(fit.order - order) <= 0.1 + K_SIGMA * slope_se, (fit, slope_se)
    assert K_SIGMA * slope_se < 0.15  # enough paths for 1/2 and 1 to be told apart


def test_monte_carlo_strong_order_of_the_sampler_code():
    """strong_order() on reverse_sde and reverse_sde_heun (same-path fine references): both order 1."""
    field, process = GaussianField(6, 1, 0.5), VE()
    gen = torch.Generator().manual_seed(11)
    x_T = exact_start(field, process, 200, gen)
    score = exact_score(field, process)
    for sampler in (reverse_sde, reverse_sde_heun):
        fit = strong_order(sampler, score, process, x_T, [16, 32, 64], 8, gen, noise=field.noise)
        # relative SE of each rms 2.5% at 200 paths (measured se/rms); worst-case slope SE (any correlation)
        # sum|w| max(rel SE) = 1.44 * 0.025 = 0.036, K_SIGMA of it 0.15, plus 0.15 for the pre-asymptotic
        # drift and the O(1/factor) bias of the fine reference: SLOPE_TOL = 0.3 (measured 1.02 and 1.06)
        assert abs(fit.order - 1.0) <= SLOPE_TOL, (sampler.__name__, fit)


def test_weak_order_check_row_for_reports():
    """weak_order_check gives a report row: EM passes as order 1, fails when documented as order 2."""
    field, process = GaussianField(6, 1, 0.0), VE()
    row = weak_order_check(reverse_sde, field, process, (64, 128, 256), order=1.0)
    assert row["passed"] and row["name"].endswith("/weak_order") and abs(row["measured"] - 1.0) <= SLOPE_TOL
    wrong = weak_order_check(reverse_sde, field, process, (64, 128, 256), order=2.0)
    assert not wrong["passed"]
    with pytest.raises(ValueError, match="band"):
        weak_order_check(reverse_sde, field, process, (64, 128), band=0)


# -- Brownian path plumbing -------------------------------------------------------------------------
@given(seed=seeds(), steps=st.integers(2, 12), factor=st.integers(1, 5))
def test_replayed_path_drives_reverse_sde_like_the_reference_em(seed, steps, factor):
    """reverse_sde driven by replay_noise equals euler_maruyama with the reverse-SDE drift on the same
    increments (two implementations), and coarsening preserves the path's end point exactly in sum."""
    field, process = GaussianField(5, 1, 0.0), VP()
    score = exact_score(field, process)
    gen = torch.Generator().manual_seed(seed)
    fine = refine_grid(time_grid(process, steps), factor)
    x_T = exact_start(field, process, 3, gen)
    dW = brownian_increments(fine, x_T.shape, gen, noise=field.noise)
    a = reverse_sde(score, process, x_T, None, grid=fine, noise=replay_noise(dW, fine))
    b = euler_maruyama(
        lambda x, t: sde_drift(process, score, x, t), lambda x, t: float(process.g(t)), x_T, fine, dW
    )
    # same operations up to association order: a few eps of difference per step, carried by a stable (contracting
    # or at most O(1)-growing) linear recursion, so the bound grows with the number of steps: 4 eps per step,
    # never below the 64-eps default (the fixed 64 eps was exceeded once, 2.12e-14 vs 2.09e-14 at 44 steps)
    assert_close(a, b, ulps=max(64, 4 * len(fine)))
    assert_close(coarsen_increments(dW, factor).sum(0), dW.sum(0))
    assert torch.equal(refine_grid(time_grid(process, steps), factor)[::factor], time_grid(process, steps))


def test_bad_inputs_raise_naming_the_parameter():
    process, field = VP(), GaussianField(4, 1, 0.0)
    grid = time_grid(process, 4)
    with pytest.raises(ValueError, match="factor"):
        refine_grid(grid, 0)
    with pytest.raises(ValueError, match="factor"):
        coarsen_increments(torch.zeros(5, 2), 2)
    with pytest.raises(ValueError, match="monotone"):
        brownian_increments(torch.tensor([1.0, 0.5, 0.7]), (2,))
    with pytest.raises(ValueError, match="increments"):
        replay_noise(torch.zeros(3, 2), grid)
    noise = replay_noise(torch.zeros(4, 2), grid)
    for _ in range(4):
        noise(torch.zeros(2))
    with pytest.raises(RuntimeError, match="draw 5"):
        noise(torch.zeros(2))
    with pytest.raises(ValueError, match="errors"):
        fit_order([4, 8], [0.1, 0.0])
    with pytest.raises(ValueError, match="steps"):
        fit_order([4, 4], [0.1, 0.2])
    with pytest.raises(TypeError, match="field"):
        probe_linear_sampler(reverse_sde, "not a field", process, 4)
    with pytest.raises(ValueError, match="n_paths"):
        strong_error(reverse_sde, exact_score(field, process), process, torch.zeros(1, 4, dtype=torch.float64), 4)
    with pytest.raises(ValueError, match="n_quad"):
        em_strong_mse(score_kernel_fn(field, process), process, grid, 1.0, n_quad=0)
    with pytest.raises(TypeError, match="noise"):
        reverse_sde_heun(exact_score(field, process), process, torch.zeros(1, 4, dtype=torch.float64), 4, noise=3)
