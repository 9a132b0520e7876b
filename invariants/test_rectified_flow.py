"""Rectified flow / flow matching (THEORY 1 "Rectified flow", THEORY 2 "Exact PF-ODE solution").

Claims checked, each side computed independently:

- the exact velocity is ``v = -(x + t s)/(1 - t)`` (closed-form per-mode kernel vs the score formula),
  with ``s`` from autograd of the closed-form marginal density for 1-D mixtures (denoiser form near t = 1);
- ``v`` transports the marginals: the continuity equation ``d_t log p_t + d_x v + v d_x log p_t = 0``
  (time derivative by central differences, space derivatives by autograd through ``exact_velocity``);
- the exact flow from ``t1`` to ``t2`` multiplies a mode by ``sqrt(C_t2 / C_t1)`` (Gauss–Legendre quadrature
  of the velocity kernel vs the closed form), so a start ``N(0, v_T)`` ends at ``ode_variance_limit``;
- Euler on the flow ODE has order 1 and Heun order 2, measured on exact per-mode gains (no Monte Carlo).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from critdiff_ref import GaussianField, lattice
from critdiff_ref.processes import RectifiedFlow
from critdiff_ref.samplers import ode_variance_limit
from critdiff_ref.scores import exact_score, exact_velocity
from critdiff_ref.strategies import gaussian_fields, gaussian_mixtures, seeds, two_peak_mixtures
from critdiff_ref.validate.references import flow_euler, flow_heun

FLOW = RectifiedFlow(1.0)
EPS = torch.finfo(torch.float64).eps
EXAMPLES = min(settings.default.max_examples, 12)


def _fluctuating_noise(f: GaussianField, n: int, seed: int) -> torch.Tensor:
    x = torch.randn((n, *f.shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return lattice.remove_zero_mode(x, f.d) if f.zero_mode_removed else x


def _mode_gains(f: GaussianField, linear_map) -> torch.Tensor:
    """Per-mode multipliers of a Fourier-diagonal linear map: its response to the site-0 delta
    (whose unitary FFT is 1/sqrt(V) in every mode)."""
    delta = torch.zeros((1, *f.shape), dtype=torch.float64)
    delta.view(-1)[0] = 1.0
    return (lattice.fft(linear_map(delta), f.d)[0] * math.sqrt(f.V)).real


@settings(max_examples=EXAMPLES)
@given(f=gaussian_fields(max_d=2), t=st.floats(0.0, 1.0), seed=seeds())
def test_field_velocity_equals_score_formula(f, t, seed):
    """On a Gaussian field the per-mode velocity ``x (t - (1 - t) c0)/C_t`` equals ``-(x + t s)/(1 - t)``
    for t < 1 (on the fluctuating modes) and ``x`` at t = 1."""
    x = _fluctuating_noise(f, 3, seed)
    v = exact_velocity(f, FLOW)(x, t)
    if t == 1.0:
        expected = x
        tol = 8 * EPS  # one FFT pair of a unit-gain kernel
    else:
        expected = -(x + t * exact_score(f, FLOW)(x, t)) / (1.0 - t)
        # the formula cancels x + t s = O((1 - t)) x: rounding eps |x| (1 + t |K|) / (1 - t), |K| <= 1/min C_t,
        # C_t >= t^2 + (1 - t)^2 min c0 >= 1/(2 + 1/min c0); x 64 for the FFT pairs
        c_min = float(f.c0()[f.mode_mask()].min())
        tol = 64 * EPS * (1.0 + t * (2.0 + 1.0 / c_min)) / (1.0 - t)
    scale = float(x.abs().max())
    assert float((v - expected).abs().max()) <= tol * scale


@settings(max_examples=EXAMPLES)
@given(mix=st.one_of(gaussian_mixtures(), two_peak_mixtures()), t=st.floats(0.0, 1.0))
def test_mixture_velocity_equals_autograd_score_formula(mix, t):
    """1-D mixtures: ``exact_velocity`` (posterior-mean form for t > 1/2) equals ``-(x + t s)/(1 - t)`` with ``s``
    the autograd derivative of the closed-form marginal log-density, and ``x - E[x_0]`` at t = 1."""
    x = torch.linspace(-4.0, 4.0, 41, dtype=torch.float64, requires_grad=True)
    v = exact_velocity(mix, FLOW)(x.detach(), t)
    if t == 1.0:
        expected = x.detach() - mix.moment(1)
        # E[x_0] = sum w m in closed form; one subtraction
        tol = 16 * EPS * (4.0 + abs(mix.moment(1)))
    else:
        logp = mix.marginal(FLOW, t).log_density(x).sum()
        (s,) = torch.autograd.grad(logp, x)
        expected = -(x.detach() + t * s) / (1.0 - t)
        # same cancellation as for the field, |s| <= (|x| + max|a m|)/min var, min var >= min(s_i^2, 1/2) ~ 0.04;
        # rounding eps (|x| + t |s|)/(1 - t), x 64 for logsumexp/softmax reductions
        s_max = float(s.abs().max())
        tol = 64 * EPS * (4.0 + t * s_max) / (1.0 - t)
    assert float((v - expected).abs().max()) <= tol


@settings(max_examples=EXAMPLES)
@given(mix=gaussian_mixtures(max_components=3), t=st.floats(0.05, 0.95))
def test_velocity_transports_the_marginals(mix, t):
    """Continuity equation of the flow: ``d_t log p_t = -(d_x v + v d_x log p_t)`` for 1-D mixtures."""
    x = torch.linspace(-4.0, 4.0, 33, dtype=torch.float64, requires_grad=True)
    h = 1e-4
    with torch.no_grad():
        dlogp_dt = (mix.marginal(FLOW, t + h).log_density(x) - mix.marginal(FLOW, t - h).log_density(x)) / (2 * h)
    logp = mix.marginal(FLOW, t).log_density(x)
    (s,) = torch.autograd.grad(logp.sum(), x)
    v = exact_velocity(mix, FLOW)(x, t)
    (dv_dx,) = torch.autograd.grad(v.sum(), x)
    rhs = -(dv_dx + v.detach() * s)
    # central differences: h^2/6 |d_t^3 log p| (log p_t is smooth in t, third derivative O(1e2) at the
    # narrowest widths here, sd >= 0.05) ~ 2e-7, plus rounding eps |log p| / h ~ 1e-10; 1e-5 (x 50) relative
    # to the size of the terms
    scale = 1.0 + float(dlogp_dt.abs().max())
    assert float((dlogp_dt - rhs.detach()).abs().max()) <= 1e-5 * scale


@settings(max_examples=EXAMPLES)
@given(f=gaussian_fields(max_d=2), t1=st.floats(0.05, 1.0), frac=st.floats(0.0, 0.95), v_T=st.floats(0.25, 4.0))
def test_exact_flow_gain_and_variance_recovery(f, t1, frac, v_T):
    """The flow of the exact velocity from t1 to t2 multiplies a mode by sqrt(C_t2 / C_t1): quadrature of the
    velocity kernel vs the closed form; from N(0, v_T) it ends at ``ode_variance_limit`` (C_t2 + delta C_t2/C_t1)."""
    t2 = frac * t1
    vel = exact_velocity(f, FLOW)
    nodes, weights = np.polynomial.legendre.leggauss(64)
    ts = 0.5 * (t1 - t2) * nodes + 0.5 * (t1 + t2)
    # log gain = int_{t1}^{t2} K(t) dt = -(t1 - t2)/2 sum_j w_j K(t_j)
    log_gain = -0.5 * (t1 - t2) * sum(w * _mode_gains(f, lambda x, tt=tt: vel(x, float(tt))) for w, tt in zip(weights, ts))
    mask = f.mode_mask()
    C1, C2 = f.mode_variance(FLOW, t1), f.mode_variance(FLOW, t2)
    exact = torch.where(mask, 0.5 * torch.log(C2 / torch.where(mask, C1, torch.ones_like(C1))), torch.zeros_like(C1))
    # K(t) is a ratio of quadratics in t with poles at complex t (C_t > 0 on [0, 1]): 64-node Gauss–Legendre converges
    # geometrically; on these fields (min C_t >= 1/(2 + 1/min c0)) the remainder is far below 1e-10
    assert float((log_gain - exact)[mask].abs().max()) <= 1e-10
    end = torch.where(mask, v_T * torch.exp(2.0 * log_gain), torch.zeros_like(C1))
    limit = ode_variance_limit(f, RectifiedFlow(t1), v_T, t2)
    # exp of a 1e-10 log error: 2e-10 relative
    assert float(((end - limit).abs() / torch.where(mask, limit, torch.ones_like(limit)))[mask].max()) <= 1e-9


# Flow-ODE orders on exact per-mode gains.  The error is C h^p (1 + D h + ...); over 40 random cases
# (d = 1, 2, r in {0} u [1e-3, 4], t1 in [0.2, 1], t1 - t2 >= 0.1) the slope from 64 to 128 steps deviated from
# p by at most 0.008 (Euler) and 0.019 (Heun); SLOPE_TOL = 0.1 is five times the worst seen.
SLOPE_TOL = 0.1


@settings(max_examples=EXAMPLES)
@given(f=gaussian_fields(max_d=2), t1=st.floats(0.2, 1.0), frac=st.floats(0.0, 0.5))
def test_flow_euler_order_1_heun_order_2(f, t1, frac):
    """Euler has global order 1 and Heun order 2 on the rectified-flow ODE, for every field and time interval."""
    t2 = frac * t1
    vel = exact_velocity(f, FLOW)
    mask = f.mode_mask()
    C1, C2 = f.mode_variance(FLOW, t1), f.mode_variance(FLOW, t2)
    exact = torch.where(mask, (C2 / torch.where(mask, C1, torch.ones_like(C1))).sqrt(), torch.ones_like(C1))
    for sampler, p in ((flow_euler, 1.0), (flow_heun, 2.0)):
        errors = []
        for n in (64, 128):
            sig = torch.linspace(t1, t2, n + 1, dtype=torch.float64)
            gain = _mode_gains(f, lambda x: sampler(vel, x, sig))
            errors.append(float(((gain - exact).abs() / exact)[mask].max()))
        # errors >= 1e-9 here (Heun at 128 steps), far above the ~1e-14 rounding of the gains
        slope = math.log2(errors[0] / errors[1])
        assert abs(slope - p) <= SLOPE_TOL, (sampler.__name__, errors, slope)
