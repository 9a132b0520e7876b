"""Unit tests for critdiff_ref.theory (THEORY 3-5 closed forms): values at special points, validation."""

import math

import numpy as np
import pytest
import torch
from scipy import special

from critdiff_ref import theory
from critdiff_ref.theory import generation as theory_generation
from critdiff_ref.processes import OU, VE
from critdiff_ref.targets import GaussianField

C = np.array([0.05, 0.3, 1.0, 7.0])


# ---------------------------------------------------------------- one layer (THEORY 3)
def test_one_layer_flow_end_points_and_derivative():
    eta = 0.1
    K = -1.0 / C
    np.testing.assert_allclose(theory.one_layer_flow(C, eta, 0.0, w0=0.3), 0.3)
    np.testing.assert_allclose(theory.one_layer_flow(C, eta, 1e6), K, rtol=1e-14)
    # dw/dtau = -eta (C w + 1): central difference, error O(h^2 eta^3 C^3) ~ 1e-10 here
    h, tau = 1e-4, 3.0
    w = theory.one_layer_flow(C, eta, tau)
    dw = (theory.one_layer_flow(C, eta, tau + h) - theory.one_layer_flow(C, eta, tau - h)) / (2 * h)
    np.testing.assert_allclose(dw, -eta * (C * w + 1.0), rtol=1e-7, atol=1e-12)


def test_one_layer_gd_recursion_and_steps_by_brute_force():
    eta, eps = 1.5 / C.max(), 1e-3
    w = np.zeros_like(C)
    for n in range(1, 4):
        w = w - eta * (C * w + 1.0)
        np.testing.assert_allclose(theory.one_layer_gd(C, eta, n), w, rtol=1e-13)
    steps = theory.one_layer_steps(C, eta, eps)
    for c, n in zip(C, steps):
        err, k = 1.0, 0
        while err >= eps:
            err *= abs(1 - eta * c)
            k += 1
        assert n == k
    assert np.all(np.isinf(theory.one_layer_steps(C, 2.0 / C.max(), eps))[C == C.max()])
    assert theory.one_layer_steps(1.0, 0.5, 0.5, w0=-1.0)[()] == 0  # already exact: w0 = K


def test_one_layer_timescale_and_bound():
    np.testing.assert_allclose(theory.mode_timescale(C, 0.5), 2.0 / C)
    assert theory.one_layer_stability_bound(C) == 2.0 / 7.0


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: theory.one_layer_flow([1.0, -1.0], 0.1, 1.0), "C must be"),
        (lambda: theory.one_layer_flow(C, 0.0, 1.0), "eta"),
        (lambda: theory.one_layer_flow(C, 0.1, -1.0), "tau"),
        (lambda: theory.one_layer_gd(C, 0.1, -1), "n must"),
        (lambda: theory.one_layer_steps(C, 0.1, 1.0), "eps"),
        (lambda: theory.mode_timescale(C, float("nan")), "eta"),
    ],
)
def test_one_layer_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_eta_type_error():
    with pytest.raises(TypeError, match="eta"):
        theory.one_layer_flow(C, "0.1", 1.0)


# ---------------------------------------------------------------- two layers (THEORY 4)
def test_logistic_and_general_forms_at_the_ends():
    c, eta, u0 = 3.0, 0.25, 0.01
    assert theory.logistic_product(c, eta, 0.0, u0) == pytest.approx(u0, rel=1e-15)
    assert theory.logistic_product(c, eta, 1e4, u0) == pytest.approx(1 / c, rel=1e-15)
    assert theory.two_layer_time_to(u0, c, 0.4, eta, u0) == 0.0
    assert theory.two_layer_product(0.0, c, 0.4, eta, u0) == u0
    assert theory.two_layer_product(1e6, c, 0.4, eta, u0) == 1 / c
    # time_to and product are inverse functions (brentq at rtol 4 eps)
    tau = theory.two_layer_time_to(0.2, c, 0.4, eta, u0)
    assert theory.two_layer_product(tau, c, 0.4, eta, u0) == pytest.approx(0.2, rel=1e-12)


def test_two_layer_rate_bound_and_estimate():
    np.testing.assert_allclose(theory.two_layer_rate(C, 0.0, 0.3), 0.6)
    np.testing.assert_allclose(theory.two_layer_stability_bound(C, 0.0), 1.0)
    np.testing.assert_allclose(theory.two_layer_stability_bound(2.0, 1.5), 2 / math.sqrt(4 + 9))
    np.testing.assert_allclose(
        theory.two_layer_steps_estimate(C, 0.25, 1e-2, 0.01), np.log(np.abs(1 / (C * 0.01) - 1) / 1e-2) / 0.5
    )


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: theory.two_layer_time_to(0.1, 2.0, 0.0, 0.25, -0.1), "balanced"),
        (lambda: theory.two_layer_time_to(0.1, 2.0, 0.3, 0.25, 0.5), "fixed point"),
        (lambda: theory.two_layer_product(-1.0, 2.0, 0.3, 0.25, 0.1), "tau"),
        (lambda: theory.two_layer_product(1.0, 2.0, float("inf"), 0.25, 0.1), "finite"),
        (lambda: theory.logistic_product(2.0, 0.25, 1.0, 0.0), "u0"),
        (lambda: theory.two_layer_steps_estimate(2.0, 0.25, 0.0, 0.1), "eps"),
    ],
)
def test_two_layer_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- local kernels (THEORY 5)
def test_full_box_has_no_truncation_error():
    f = GaussianField(7, 2, 0.5)
    # FFT round trip of the full kernel: rounding ~ a few eps
    assert theory.local_truncation_error(f, OU(), 0.3, 3) < 64 * np.finfo(float).eps
    errs = theory.local_truncation_error(f, OU(), np.array([0.1, 0.3]), 1)
    assert errs.shape == (2,) and np.all((errs > 0) & (errs < 1))


def test_local_normal_equations_shapes_and_definiteness():
    f = GaussianField(9, 2)
    A, h, sites = theory.local_normal_equations(f, OU(), 0.2, 2)
    assert A.shape == (25, 25) and h.shape == (25,) and sites.shape == (25, 2)
    torch.testing.assert_close(A, A.T, rtol=0, atol=1e-12)
    assert float(torch.linalg.eigvalsh(A)[0]) > 0
    K = theory.optimal_local_kernel(f, OU(), 0.2, 2)
    assert K.shape == (9, 9)


def test_max_local_truncation_error_uses_the_grid():
    m = theory.max_local_truncation_error(8, 2, 1, n_times=5)
    ts = np.geomspace(1e-3, 10.0, 5)
    assert m == float(np.max(theory.local_truncation_error(GaussianField(8, 2), OU(T=10.0), ts, 1)))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: theory.truncated_kernel(GaussianField(8, 2), OU(), 0.3, -1), "ell"),
        (lambda: theory.truncated_kernel(GaussianField(8, 2), OU(), 0.3, True), "ell"),
        (lambda: theory.local_truncation_error(GaussianField(8, 2), OU(), 0.0, 1), "t must be > 0"),
        (lambda: theory.max_local_truncation_error(8, 2, 1, t_min=1.0, t_max=0.5), "t_min < t_max"),
        (lambda: theory.max_local_truncation_error(8, 2, 1, n_times=0), "n_times"),
        (lambda: theory.optimal_local_kernel(GaussianField(8, 2), OU(), 0.3, 4), "2 ell \\+ 1 < L"),
    ],
)
def test_local_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- generation (THEORY 3)
def test_exp_scaled_expi_asymptotic_branch_matches_direct():
    z = np.array([10.0, 499.0, 501.0, 600.0, 700.0])
    direct = np.exp(-z) * special.expi(z)  # representable up to z ~ 709
    np.testing.assert_allclose(theory_generation._exp_scaled_expi(z), direct, rtol=1e-13)


def test_generation_std_error_validation():
    f = GaussianField(8, 2)
    with pytest.raises(ValueError, match="method"):
        theory.generation_std_error(f, 10.0, method="exact")
    with pytest.raises(ValueError, match="closed"):
        theory.generation_std_error(f, 10.0, process=VE(), method="closed")
    with pytest.raises(ValueError, match="closed"):
        theory.generation_std_error(f, 10.0, method="closed", arch="two-layer")
    with pytest.raises(ValueError, match="arch"):
        theory.trained_score_log_gain(f, OU(), 10.0, arch="three-layer")
    with pytest.raises(ValueError, match="tau"):
        theory.trained_score_log_gain_ou(f, 5.0, float("nan"))
    res = theory.generation_std_error(f, 10.0)
    assert set(res) == {"rms", "max", "per_mode"} and res["per_mode"].shape == (63,)
