"""Gaussian variance recovery by the reverse samplers with the exact score (THEORY 2).

From the exact start ``N(0, C_T)`` both the PF-ODE and the reverse SDE end at ``c0``; from a
mismatched start ``N(0, C_T + delta_T)`` (pure noise ``Xi(T)``, or ``N(0, 1)`` for VP / OU) the ODE
ends at ``c0 + delta_T c0 / C_T`` and the SDE at ``c0 + delta_T (c0 / C_T)^2 exp(-2 Gamma(T))``.
Two independent checks:

- the exact per-mode gains of the discretised samplers at fine grids converge to those limits
  (deterministic; the tolerance is the Richardson estimate of the remaining discretisation error);
- Monte Carlo runs of :func:`probability_flow` / :func:`reverse_sde` reproduce the exact per-mode
  variance of the *same* discretised sampler within k standard errors.
"""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from critdiff_ref import OU, VE, VP, GaussianField, lattice
from critdiff_ref.samplers import (
    exact_start,
    ode_log_gain,
    ode_variance_limit,
    probability_flow,
    pure_noise_start,
    reverse_sde,
    score_kernel_fn,
    sde_variance,
    sde_variance_limit,
    standard_normal_start,
    stiffness,
    time_grid,
)
from critdiff_ref.scores import exact_score
from critdiff_ref.strategies import dimensions, lattice_sizes, masses, processes, seeds

EPS = torch.finfo(torch.float64).eps
MAX_L = {1: 16, 2: 8, 3: 4}
# Fine grid: h * stiffness <= 1/32, where the orders are asymptotic (calibrated in
# test_convergence_order.py: fitted slopes within 0.13 of p), so err(N) / err(2N) = 2^p (1 +- 0.1).
LAMBDA_H = 1.0 / 32.0


@st.composite
def _cases(draw):
    process = draw(processes(kinds=("OU", "VE", "VP")))
    d = draw(dimensions(1, 3))
    field = GaussianField(draw(lattice_sizes(d, max_L=MAX_L[d])), d, draw(masses()))
    starts = ["exact", "pure_noise"] + (["standard_normal"] if not isinstance(process, VE) else [])
    return field, process, draw(st.sampled_from(starts))


def _v_T(field: GaussianField, process, start: str) -> torch.Tensor:
    """Start variance per mode: C_T (exact), Xi(T) (pure noise) or 1 (standard normal)."""
    if start == "exact":
        return field.mode_variance(process, process.T)
    return torch.full(field.shape, 1.0 if start == "standard_normal" else float(process.Xi(process.T)), dtype=torch.float64)


def _fine_steps(process, rate: float) -> int:
    return 1 << (max(16, math.ceil(process.T * rate / LAMBDA_H)) - 1).bit_length()


def _assert_richardson(v_N, v_2N, limit, order: int, what: str) -> None:
    """|v_2N - limit| <= 2 |v_N - v_2N| / (2^p - 1) + 100 eps |limit|.

    In the asymptotic regime err(2N) = (v_N - v_2N) / (2^p - 1) (1 + O(h)); the factor 2 covers the
    O(h) correction (<= 10% at h * stiffness <= 1/32); 100 eps covers rounding of the log-gain / the
    unrolled variance recursion (relative ~ sqrt(N) eps).  A wrong limit formula misses by O(delta_T).
    """
    bound = 2.0 * (v_N - v_2N).abs() / (2**order - 1) + 1e2 * EPS * limit.abs()
    excess = (v_2N - limit).abs() - bound
    assert bool((excess <= 0).all()), f"{what}: worst excess {float(excess.max()):.3g}, |v_2N - limit| = {(v_2N - limit).abs().max():.3g}"


@settings(max_examples=min(settings.default.max_examples, 12))
@given(case=_cases())
def test_fine_grid_gains_reach_the_exact_limits(case):
    """RK4 PF-ODE and Euler–Maruyama per-mode variances converge to the exact end variances for every start."""
    field, process, start = case
    kernel = score_kernel_fn(field, process)
    mask = field.mode_mask()
    v_T = _v_T(field, process, start)

    n = _fine_steps(process, stiffness(kernel, process))
    ode = [(2.0 * ode_log_gain(kernel, process, time_grid(process, m), "rk4")).exp()[mask] * v_T[mask] for m in (n, 2 * n)]
    _assert_richardson(*ode, ode_variance_limit(field, process, v_T)[mask], 4, f"ODE {start}")

    n = _fine_steps(process, stiffness(kernel, process, sde=True))
    sde = [sde_variance(kernel, process, time_grid(process, m), v_T, mask)[mask] for m in (n, 2 * n, 4 * n)]
    # Euler–Maruyama is first order, so its error (~1e-3) would hide a wrong O(a(T)^2) term of the
    # limit (VP: a^2 ~ 1e-5).  One Richardson step 2 v_2N - v_N removes the h term (an expansion in
    # h: the exact per-mode recursion is smooth in h); the extrapolants are then second order.
    extrapolated = [2.0 * sde[1] - sde[0], 2.0 * sde[2] - sde[1]]
    _assert_richardson(*extrapolated, sde_variance_limit(field, process, v_T)[mask], 2, f"SDE {start}")


def test_exact_start_limits_are_c0():
    """With delta_T = 0 both limits are c0 itself (zero on the removed zero mode)."""
    for field in (GaussianField(6, 2, 0.0), GaussianField(5, 3, 0.7)):
        for process in (OU(), VE(), VP()):
            C_T = field.mode_variance(process, process.T)
            c0 = field.c0().masked_fill(~field.mode_mask(), 0.0)
            # C_T + 0 * c0 / C_T: a few roundings of numbers of size c0
            torch.testing.assert_close(ode_variance_limit(field, process, C_T), c0, rtol=16 * EPS, atol=0.0)
            torch.testing.assert_close(sde_variance_limit(field, process, C_T), c0, rtol=16 * EPS, atol=0.0)


def test_theory_worked_example_ve_pure_noise():
    """THEORY 2's check: VE sigma = 25, T = 1, c0 = 0.7, start N(0, Xi(T)) -> SDE c0 - c0 (c0/C_T)^2, ODE c0 (1 - c0/C_T)."""
    field, process = GaussianField(4, 1, r=1.0 / 0.7), VE(25.0, 1.0)  # zero mode: c0 = 1 / r = 0.7
    c0 = float(field.c0()[0])
    C_T = c0 + float(process.Xi(1.0))
    v_T = float(process.Xi(1.0))
    # closed forms evaluated in a different order: a few roundings of O(1) numbers
    assert math.isclose(float(ode_variance_limit(field, process, v_T)[0]), c0 * (1 - c0 / C_T), rel_tol=1e-14)
    assert math.isclose(float(sde_variance_limit(field, process, v_T)[0]), c0 - c0 * (c0 / C_T) ** 2, rel_tol=1e-14)


# -- Monte Carlo against the exact per-mode variance of the same discretised sampler ----------
# K_SIGMA = 5: two-sided normal tail 5.7e-7 per mode; <= 64 modes x 2 samplers x 12 cases gives a
# false-failure rate < 1e-3 for a fresh seed (the ci profile fixes the seeds).  The per-mode
# estimate is a mean of n = 4000 independent |x_k|^2 (chi-square-like, skewness 2 / sqrt(n) small).
K_SIGMA = 5.0
N_MC = 4000


def _mode_power(x: torch.Tensor, d: int) -> torch.Tensor:
    return lattice.fft(x, d).abs() ** 2


def _compare(power: torch.Tensor, expected: torch.Tensor, mask: torch.Tensor, what: str) -> None:
    """Per mode: |mean - expected| <= K_SIGMA SE.  Pooled: the per-sample mode average of power / expected
    (one number per sample, so the k / -k duplicates are handled) has mean 1 within K_SIGMA SE."""
    n = power.shape[0]
    mean, se = power.mean(0)[mask], power.std(0)[mask] / math.sqrt(n)
    z = ((mean - expected[mask]) / se).abs()
    assert float(z.max()) <= K_SIGMA, f"{what}: max per-mode |z| = {float(z.max()):.2f}"
    pooled = (power[:, mask] / expected[mask]).mean(1)
    z_pooled = abs(float(pooled.mean()) - 1.0) / (float(pooled.std()) / math.sqrt(n))
    assert z_pooled <= K_SIGMA, f"{what}: pooled |z| = {z_pooled:.2f}"


@st.composite
def _mc_cases(draw):
    process = draw(processes(kinds=("OU", "VE", "VP")))
    d = draw(dimensions(1, 2))
    field = GaussianField(draw(lattice_sizes(d, min_L=3, max_L=6)), d, draw(masses()))
    starts = ["exact", "pure_noise"] + (["standard_normal"] if not isinstance(process, VE) else [])
    return field, process, draw(st.sampled_from(starts)), draw(seeds())


@settings(max_examples=min(settings.default.max_examples, 6))
@given(case=_mc_cases())
def test_sampled_mode_variances_match_exact_gains(case):
    """probability_flow (Heun, 24 steps) and reverse_sde (48 steps) reproduce gain^2 v_T and the EM variance
    recursion from the exact, pure-noise and N(0, 1) starts."""
    field, process, start, seed = case
    g = torch.Generator().manual_seed(seed)
    score, kernel, mask = exact_score(field, process), score_kernel_fn(field, process), field.mode_mask()
    if start == "exact":
        x_T = exact_start(field, process, N_MC, g)
    elif start == "pure_noise":
        x_T = pure_noise_start((N_MC, *field.shape), process, g, noise=field.noise)
    else:
        x_T = standard_normal_start((N_MC, *field.shape), g)
        x_T = lattice.remove_zero_mode(x_T, field.d) if field.zero_mode_removed else x_T
    v_T = _v_T(field, process, start)

    grid = time_grid(process, 24)
    x_ode = probability_flow(score, process, x_T, None, "heun", grid)
    expected = (2.0 * ode_log_gain(kernel, process, grid, "heun")).exp() * v_T
    _compare(_mode_power(x_ode, field.d), expected, mask, "PF-ODE heun")

    grid = time_grid(process, 48)
    x_sde = reverse_sde(score, process, x_T, None, g, grid, noise=field.noise)
    _compare(_mode_power(x_sde, field.d), sde_variance(kernel, process, grid, v_T, mask), mask, "reverse SDE")


def test_standard_normal_start_vp_reaches_c0_within_its_delta():
    """VP from N(0, 1): the exact limits differ from c0 only by delta_T = 1 - C_T = a(T)^2 (1 - c0) terms."""
    field, process = GaussianField(8, 2, 0.0), VP()
    mask = field.mode_mask()
    c0 = field.c0()[mask]
    C_T = field.mode_variance(process, process.T)[mask]
    a2 = float(process.a(process.T)) ** 2
    ode = ode_variance_limit(field, process, 1.0)[mask]
    sde = sde_variance_limit(field, process, 1.0)[mask]
    # delta_T = 1 - C_T = a^2 (1 - c0) exactly for VP (Xi = 1 - a^2).  The code forms delta_T by the
    # cancellation 1 - C_T: relative error ~ eps / a^2 ~ 5e-12 (rtol 1e-9 leaves 200x); atol covers the
    # final subtraction of c0 (a few eps * max c0)
    torch.testing.assert_close(ode - c0, a2 * (1.0 - c0) * c0 / C_T, rtol=1e-9, atol=1e2 * EPS * float(c0.max()))
    torch.testing.assert_close(sde - c0, a2 * (1.0 - c0) * (c0 / C_T) ** 2 * a2, rtol=1e-9, atol=1e2 * EPS * float(c0.max()))
