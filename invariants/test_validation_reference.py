"""The validator's exact measurements agree with independent closed forms (THEORY 2).

- Probing a deterministic sampler with the site basis recovers its generated covariance exactly:
  for the discretised PF-ODE the mode variances equal ``ode_gain(k)^2 v_T`` (closed-form per-mode
  gain of Euler/Heun/RK4) and the covariance is diagonal in Fourier space (translation invariance).
- The full-matrix W2 and KL of the report equal the diagonal formulas of ``observables``.
- The Monte Carlo path for stochastic samplers agrees with the exact Euler–Maruyama variance
  recursion ``sde_variance`` within its standard errors.
- Noise probing (start and every draw probed with site basis states) gives the Euler–Maruyama
  covariance exactly: Fourier-diagonal with mode variances ``sde_variance`` (no sampling noise).
"""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from critdiff_ref import OU, VE, VP, GaussianField
from critdiff_ref.observables import gaussian_kl, gaussian_w2
from critdiff_ref.samplers import ode_gain, probability_flow, reverse_sde, score_kernel_fn, sde_variance, time_grid
from critdiff_ref.validate import make_runner
from critdiff_ref.validate.checks import covariance_metrics, floor_variance, mc_mode_variance
from critdiff_ref.validate.checks.probes import probe_covariance, probe_noise_covariance

EPS = torch.finfo(torch.float64).eps
PROCESSES = {"VE": VE(), "VP": VP(), "OU": OU(T=5.0)}


@st.composite
def small_fields(draw):
    d = draw(st.sampled_from([1, 2]))
    L = draw(st.integers(4, 12 if d == 1 else 6))
    r = draw(st.sampled_from([0.0, 0.3, 2.0]))
    return GaussianField(L, d, r)


def _fourier_variance(f: GaussianField, Sigma: torch.Tensor) -> torch.Tensor:
    return covariance_metrics(f, Sigma, f.c0())["mode_variance"]


@given(f=small_fields(), name=st.sampled_from(sorted(PROCESSES)), method=st.sampled_from(["euler", "heun", "rk4"]),
       steps=st.integers(20, 60))
def test_probed_covariance_is_the_closed_form_gain(f, name, method, steps):
    """Basis-state probing of the PF-ODE sampler gives mode variances ``ode_gain^2 Xi(T)`` exactly."""
    process = PROCESSES[name]
    runner = make_runner(probability_flow, "score", process=process, sampler_kwargs={"method": method})
    Sigma, resid = probe_covariance(runner, f, steps)
    gain = ode_gain(score_kernel_fn(f, process), process, time_grid(process, steps), method)
    expected = gain**2 * float(process.Xi(process.T)) * f.mode_mask()
    v = _fourier_variance(f, Sigma)
    # rounding: steps x (a few FFTs + <= 10 flops) per step, x1e3 margin; relative to the largest variance
    tol = 1e3 * steps * EPS * float(expected.max())
    assert float((v - expected).abs().max()) <= tol
    m = covariance_metrics(f, Sigma, floor_variance(runner, f, steps))
    assert m["offdiag"] <= 1e3 * steps * EPS  # exact score: translation invariant, Fourier-diagonal
    assert resid <= 1e3 * steps * EPS  # and linear with no offset


@given(f=small_fields(), scale=st.floats(0.5, 1.5))
def test_full_matrix_w2_kl_equal_diagonal_formulas(f, scale):
    """For a Fourier-diagonal covariance the eigen-decomposition W2/KL equal sum-over-modes formulas."""
    c0 = f.c0()
    # a function of khat^2 only, so v(k) = v(-k) as for every real translation-invariant covariance
    v = c0 * scale * (1.0 + 0.1 * c0 / c0.max())
    V = f.V
    eye = torch.eye(V, dtype=torch.float64).reshape(V, *f.shape)
    from critdiff_ref import lattice

    Sigma = lattice.ifft(lattice.fft(eye, f.d) * v, f.d).real.reshape(V, V)
    m = covariance_metrics(f, Sigma, c0)
    # eigh/sqrt of V x V matrices vs elementwise formulas: ~V eps relative, x1e3 margin
    assert math.isclose(m["w2"], gaussian_w2(v, c0), rel_tol=1e3 * V * EPS, abs_tol=1e-9)
    assert math.isclose(m["kl"], gaussian_kl(v, c0), rel_tol=1e3 * V * EPS, abs_tol=1e-9)


@given(seed=st.integers(0, 2**16), steps=st.integers(10, 40))
def test_monte_carlo_matches_exact_em_variance(seed, steps):
    """Monte Carlo mode variances of Euler–Maruyama agree with the exact recursion within 5 standard errors."""
    f, process = GaussianField(4, 2, 0.5), VP()
    runner = make_runner(reverse_sde, "score", process=process)
    v_hat, se, _ = mc_mode_variance(runner, f, steps, 2000, seed, torch.float64, None)
    exact = sde_variance(score_kernel_fn(f, process), process, time_grid(process, steps), float(process.Xi(process.T)))
    z = (v_hat - exact) / se
    # 16 modes, 8 independent pairs (k, -k); |z| > 5 has probability 6e-7 per mode under the null
    # (the mean of 2000 exponential variables is close to normal: skewness 2/sqrt(2000) = 0.045)
    assert float(z.abs().max()) < 5.0


@given(f=small_fields(), name=st.sampled_from(sorted(PROCESSES)), steps=st.integers(10, 40))
def test_noise_probed_covariance_is_the_exact_em_recursion(f, name, steps):
    """Noise probing of Euler–Maruyama gives mode variances ``sde_variance`` (v <- m^2 v + g^2 h) exactly."""
    process = PROCESSES[name]
    runner = make_runner(reverse_sde, "score", process=process)
    Sigma, resid, draws = probe_noise_covariance(runner, f, steps)
    assert draws == steps  # one draw per step, the last included
    exact = sde_variance(score_kernel_fn(f, process), process, time_grid(process, steps),
                         float(process.Xi(process.T))) * f.mode_mask()
    v = _fourier_variance(f, Sigma)
    # rounding: steps x (a few FFTs + <= 10 flops) per step, x1e3 margin; relative to the largest variance
    tol = 1e3 * steps * EPS * float(exact.max())
    assert float((v - exact).abs().max()) <= tol
    m = covariance_metrics(f, Sigma, floor_variance(runner, f, steps))
    assert m["offdiag"] <= 1e3 * steps * EPS and resid <= 1e3 * steps * EPS
