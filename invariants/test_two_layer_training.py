"""THEORY 4: a two-layer linear score converges logistically; depth removes critical slowing down.

Claims checked: torch GD on two real-space full-size circular convolutions (and on the Fourier form)
follows the per-mode recursion ``a <- a - eta conj(b) (C a b - 1)`` step by step, from balanced,
unbalanced and Kaiming-style starts; the balanced gradient flow is the logistic law; the general
(unbalanced) closed form built on the conserved ``Delta = a^2 - b^2`` matches ``solve_ivp``; GD at
the fixed point is stable below ``2 / sqrt(4 + C^2 Delta^2)`` and unstable above; steps to accuracy
at ``r = 0`` with an L-independent learning rate grow at most logarithmically in L; and a layer
mismatch ``Delta >> 1/max C`` brings the slowing down back (the crossover).
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from critdiff_ref import theory
from critdiff_ref.processes import OU
from critdiff_ref.strategies import diffusion_times, masses, processes, seeds
from critdiff_ref.targets import GaussianField
from critdiff_ref.trainers import (
    TwoLayerConv,
    TwoLayerFourier,
    fit_exponent,
    fourier_descent,
    kaiming_kernels,
    mismatch_descent,
    steps_to_accuracy,
    train,
)

EPS64 = float(np.finfo(np.float64).eps)


def _ivp(C, eta, a0, b0, taus):
    """Numerical gradient flow ``da = eta b (1 - C a b)``, ``db = eta a (1 - C a b)``; returns ``u = a b`` at ``taus``."""
    rhs = lambda s, y: [eta * y[1] * (1 - C * y[0] * y[1]), eta * y[0] * (1 - C * y[0] * y[1])]  # noqa: E731
    sol = solve_ivp(rhs, (0.0, float(np.max(taus))), [a0, b0], t_eval=taus, method="DOP853", rtol=1e-12, atol=1e-15)
    assert sol.success
    return sol.y[0] * sol.y[1]


def _start(Delta, u0):
    """Layer values with ``a^2 - b^2 = Delta`` and ``a b = u0`` (``a > 0``)."""
    a = math.sqrt((Delta + math.hypot(Delta, 2.0 * u0)) / 2.0)
    return a, u0 / a


@st.composite
def training_setups(draw, max_d: int = 3):
    d = draw(st.integers(1, max_d))
    L = draw(st.integers(3, {1: 12, 2: 6, 3: 4}[d]))
    field = GaussianField(L, d, draw(masses()))
    process = draw(processes())
    t = draw(diffusion_times(process, 0.02, 1.0))
    return field, process, t


@given(training_setups(), st.floats(0.05, 0.5), st.sampled_from(["conv-balanced", "conv-kaiming", "fourier"]), seeds())
def test_torch_training_follows_per_mode_recursion(setup, eta, start, seed):
    """Torch GD on the population loss moves every mode as a <- a - eta conj(b) (C ab - 1), b <- b - eta conj(a) (C ab - 1)."""
    field, process, t = setup
    gen = torch.Generator().manual_seed(seed)
    C = field.mode_variance(process, t)
    if start == "conv-balanced":
        model = TwoLayerConv(field.L, field.d)
    elif start == "conv-kaiming":
        model = TwoLayerConv(field.L, field.d, *kaiming_kernels(field.L, field.d, gen))
    else:
        a0, b0 = (0.05 + torch.rand(2, generator=gen, dtype=torch.float64)).tolist()
        model = TwoLayerFourier(field.L, field.d, a0, b0)
    with torch.no_grad():
        if start == "fourier":
            a, b = model.a.clone().to(torch.complex128), model.b.clone().to(torch.complex128)
        else:
            dims = tuple(range(field.d))
            a, b = torch.fft.fftn(model.a, dim=dims), torch.fft.fftn(model.b, dim=dims)
    # keep eta C |a|^2 moderate so that 6 steps stay O(1) (the recursion is exact for any eta; this only
    # keeps the comparison well-conditioned)
    eta = eta / max(1.0, float((C * (a.abs() ** 2 + b.abs() ** 2)).max()))
    steps = 6
    report = train(model, field, process, t, steps=steps, lr=eta, record_multipliers=True)
    mask = field.mode_mask()
    for n, w in enumerate(report.multipliers):
        expected = -(a * b)
        # a few FFT-sized sums per step, each rounding ~V eps relative to the largest multiplier
        tol = 64 * (n + 1) * field.V * EPS64 * max(1.0, float(expected.abs().max()))
        assert float((w.to(torch.complex128) - expected)[mask].abs().max()) <= tol, n
        g = C * a * b - 1.0
        a, b = a - eta * b.conj() * g, b - eta * a.conj() * g


@given(st.floats(0.01, 100.0), st.floats(0.05, 2.0), st.floats(1e-3, 0.9))
def test_balanced_flow_is_logistic(C, eta, u0_fraction):
    """From a = b the product follows u* / (1 + (u*/u0 - 1) exp(-2 eta tau)) (logistic law, rate free of C)."""
    u0 = u0_fraction / C
    taus = np.linspace(0.0, 12.0 / eta, 25)
    s = math.sqrt(u0)
    num = _ivp(C, eta, s, s, taus)
    closed = theory.logistic_product(C, eta, taus, u0)
    # DOP853 at rtol 1e-12: global relative error ~1e-10 over 12 e-foldings; u <= u* = 1/C
    np.testing.assert_allclose(num, closed, rtol=1e-9, atol=1e-12 / C)
    # and Delta = a^2 - b^2 = 0 exactly gives the same as the general closed form
    np.testing.assert_allclose(theory.two_layer_product(taus, C, 0.0, eta, u0), closed, rtol=1e-10, atol=1e-14 / C)


@st.composite
def unbalanced_starts(draw):
    C = draw(st.floats(0.05, 50.0))
    eta = draw(st.floats(0.05, 2.0))
    sign = draw(st.sampled_from([1.0, -1.0]))
    u0 = sign * draw(st.floats(0.01, 3.0)) / C
    # a balanced start with u0 < 0 sits in the basin of u = 0 (never reaches 1/C): keep |Delta| away from 0 then
    Delta = draw(st.floats(0.05, 5.0) if sign < 0 else st.floats(0.0, 5.0)) * draw(st.sampled_from([1.0, -1.0])) / C
    return C, Delta, u0, eta


@given(unbalanced_starts(), st.lists(st.sampled_from([0.05, 0.2, 0.5, 0.8, 0.95, 0.999]), min_size=1, max_size=4, unique=True))
def test_general_closed_form_matches_solve_ivp(start, fractions):
    """The closed-form time tau(u) from the conserved Delta = a^2 - b^2 agrees with the numerically integrated (a, b) flow."""
    C, Delta, u0, eta = start
    ustar = 1.0 / C
    if abs(u0 - ustar) < 1e-9 * ustar:
        u0 = 0.5 * ustar  # the fixed point itself has no trajectory
    us = np.array([u0 + f * (ustar - u0) for f in sorted(fractions)])
    taus = theory.two_layer_time_to(us, C, Delta, eta, u0)
    assert np.all(np.diff(taus) > 0) and taus[0] > 0  # u moves monotonically towards u*
    a0, b0 = _start(Delta, u0)
    num = _ivp(C, eta, a0, b0, np.asarray(taus))
    scale = max(abs(u0), ustar)
    # DOP853 at rtol 1e-12, atol 1e-15 over O(10) e-foldings: |error| ~1e-10 of the scale
    np.testing.assert_allclose(num, us, rtol=0, atol=1e-8 * scale)
    # inverting the closed form (brentq) returns the same u
    np.testing.assert_allclose(theory.two_layer_product(taus, C, Delta, eta, u0), us, rtol=0, atol=1e-10 * scale)


@given(unbalanced_starts())
def test_decay_rate_near_the_fixed_point(start):
    """Near u* the distance |u - u*| decays at the rate eta sqrt(4 + C^2 Delta^2)."""
    C, Delta, u0, eta = start
    ustar = 1.0 / C
    if abs(u0 - ustar) < 1e-3 * ustar:
        u0 = 0.5 * ustar
    d1, d2 = 1e-5 * (ustar - u0), 1e-6 * (ustar - u0)
    t1, t2 = theory.two_layer_time_to(np.array([ustar - d1, ustar - d2]), C, Delta, eta, u0)
    rate = math.log(10.0) / (t2 - t1)
    # linearisation error of the rate is O(C |u - u*|) <= 1e-5 * |C u0 - 1| relative; the log difference
    # of two closed-form times loses ~1e-10 to cancellation
    assert rate == pytest.approx(float(theory.two_layer_rate(C, Delta, eta)), rel=1e-4)


@given(st.floats(0.1, 100.0), st.floats(-3.0, 3.0), st.floats(1.05, 1.5), st.floats(0.3, 0.95))
def test_fixed_point_stability_bound(C, Delta_scaled, above, below):
    """GD at the fixed point ab = 1/C is linearly unstable for eta above 2/sqrt(4 + C^2 Delta^2) and stable below."""
    Delta = Delta_scaled / C
    bound = float(theory.two_layer_stability_bound(C, Delta))
    a, b = _start(Delta, 1.0 / C)
    s = math.hypot(a, b)
    # perturb along the Hessian's non-zero eigenvector (b, a); the zero direction is the valley ab = const
    x0, y0 = a + 1e-9 * b / s, b + 1e-9 * a / s
    start_err = abs(C * x0 * y0 - 1.0)
    n = 10
    for factor in (above, below):
        eta = factor * bound
        x, y = x0, y0
        for _ in range(n):
            g = C * x * y - 1.0
            x, y = x - eta * y * g, y - eta * x * g
        ratio = abs(C * x * y - 1.0) / start_err
        # linearised factor per step: 1 - eta C (a^2 + b^2) = 1 - 2 factor (Hessian eigenvalue sqrt(4 + C^2 Delta^2)).
        # After n = 10 steps the perturbation is <= 1e-9 * 2^10 ~ 1e-6: still linear, quadratic corrections
        # ~1e-6 relative; 10% slack covers them.  (Beyond the linear regime GD can slide along the valley to a
        # flatter fixed point -- discrete GD does not conserve Delta -- so only the local claim is tested.)
        if factor > 1:
            assert ratio >= 0.9 * (2 * factor - 1) ** n > 2.0
        else:
            assert ratio <= 1.1 * abs(1 - 2 * factor) ** n + 1e-5 < 0.5


@pytest.mark.parametrize("d", [1, 2, 3])
def test_steps_grow_at_most_logarithmically(d):
    """At r = 0 with the L-independent eta = 0.25 the two-layer steps to 1% grow at most like ln(max C), not L^2."""
    Ls = [8, 16, 32, 64] if d < 3 else [4, 8, 16]
    ns = [steps_to_accuracy("two-layer", L, d=d) for L in Ls]
    one = [steps_to_accuracy("one-layer", L, d=d) for L in Ls]
    c_max = []
    for L in Ls:
        f = GaussianField(L, d)
        c_max.append(float(f.mode_variance(OU(), 0.01).max()))
    # logistic law: the time from u0 to eps accuracy of mode C is ln(|1/(C u0) - 1| / eps) / (2 eta); it
    # depends on C only through this log, so across L it can change by at most ln(C_max(L)/C_max(L0)) / (2 eta)
    # (+1 for the ceiling)
    for L, n, cm in zip(Ls, ns, c_max):
        assert n <= ns[0] + math.log(cm / c_max[0]) / (2 * 0.25) + 1, L
    # contrast: the one-layer fit exponent is ~2 while the two-layer one is far below 1
    assert fit_exponent(Ls, ns) < 0.3 < 1.8 < fit_exponent(Ls, one)


def test_gd_steps_follow_the_flow_time_for_small_eta():
    """With a small learning rate the GD step count times eta approaches the closed-form flow time of the slowest mode."""
    f = GaussianField(16, 2)
    C = f.mode_variance(OU(), 0.01)[f.mode_mask()].numpy()
    u0, eps = 0.01, 1e-2
    flow = []
    for c in C:
        target = (1.0 / c) * (1 - eps) if u0 < 1.0 / c else (1.0 / c) * (1 + eps)
        flow.append(float(theory.two_layer_time_to(target, c, 0.0, 1.0, u0)))
    tau = max(flow)
    for eta in (0.02, 0.01):
        n = fourier_descent("two-layer", torch.as_tensor(C), eta, eps, a0=0.1, b0=0.1)
        # GD is a first-order (Euler) discretisation of the flow: relative time error O(eta * rate) with
        # rate <= 2 + |log-factor| ~ 2: at most ~4 eta relative, plus one step of rounding
        assert abs(n * eta - tau) <= 4 * eta * tau + eta


def test_mismatch_crossover():
    """Steps are flat in Delta while C_max Delta <~ 1 and grow ~linearly in C_max Delta beyond (the learning rate must shrink)."""
    f = GaussianField(32, 2)
    C = f.mode_variance(OU(), 0.01)[f.mode_mask()]
    c_max = float(C.max())
    n0 = mismatch_descent(C, 0.0)
    small = [mismatch_descent(C, x / c_max) for x in (0.01, 0.1, 1.0)]
    large = [mismatch_descent(C, x / c_max) for x in (10.0, 30.0, 100.0)]
    # below the crossover eta changes by at most 1/sqrt(1 + 1/4) and the modes still decay at ~2 eta:
    # a few steps at most (here ~1-2)
    assert all(abs(n - n0) <= 0.2 * n0 for n in small)
    # above it eta ~ 0.5/(C_max Delta): the soft modes (rate ~ 2 eta while C Delta << 1) need
    # ~ C_max Delta steps; between x = 10 and 100 the count must grow by at least half that ratio
    assert large[0] > 2 * n0 and large[1] > large[0] and large[2] > 5 * large[0]
    # a fixed O(1) mismatch (Kaiming-like) at growing L brings back z ~ 2
    Ls = [8, 16, 32, 64]
    ns = []
    for L in Ls:
        g = GaussianField(L, 2)
        ns.append(mismatch_descent(g.mode_variance(OU(), 0.01)[g.mode_mask()], 1.0))
    # C_max ~ L^2 and steps ~ C_max Delta: exponent 2 asymptotically, 1.8 observed with the balanced-like
    # L = 8 point; band [1.4, 2.3]
    assert 1.4 <= fit_exponent(Ls, ns) <= 2.3


def test_kaiming_start_is_above_the_crossover():
    """A Kaiming-style start (iid N(0, 1/V) kernel entries) has per-mode mismatch |Delta_k| = O(1) >> 1/max C, so steps grow ~L^2 again."""
    Ls, ns = [8, 16, 32], []
    for L in Ls:
        f = GaussianField(L, 2)
        C, mask = f.mode_variance(OU(), 0.01), f.mode_mask()
        a, b = kaiming_kernels(L, 2, torch.Generator().manual_seed(L))
        A, B = torch.fft.fftn(a)[mask], torch.fft.fftn(b)[mask]
        Delta = A.abs() ** 2 - B.abs() ** 2
        if L == 32:
            # |a_k|^2, |b_k|^2 ~ Exp(1) (complex Gaussian multipliers of variance V * 1/V = 1): |Delta_k| is
            # Laplace-distributed with mean 1 and sd 1; over ~V/2 = 512 independent modes the mean has
            # se 0.044, so the band +-0.3 is ~7 sigma (false-failure rate < 1e-11, fixed seed anyway)
            assert abs(float(Delta.abs().mean()) - 1.0) < 0.3
        # the learning rate must respect the fixed-point bound of the stiffest mismatched mode
        eta = 0.5 / math.sqrt(4.0 + (float(C.max()) * float(Delta.abs().max())) ** 2)
        ns.append(fourier_descent("two-layer", C[mask], eta, 1e-2, a0=A, b0=B))
    # C_max |Delta| ~ L^2 |Delta|_max: observed z ~ 2.4 (max |Delta| also grows slowly with the number of
    # modes); band [1.6, 3.0] around the z = 2 of a fixed mismatch, versus the balanced z ~ 0
    assert 1.6 <= fit_exponent(Ls, ns) <= 3.0
    assert ns[0] > steps_to_accuracy("two-layer", 8)
