"""Unit tests of the forward processes (THEORY 1): closed forms against their defining integrals."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate

from critdiff_ref.processes import OU, VE, VP, Brownian, check_time, forward_sample, ode_drift, sde_drift
from critdiff_ref.strategies import diffusion_times, processes


@given(st.data())
def test_a_and_Xi_match_their_integrals(data):
    """a = exp(-int gamma) and Xi = int_0^t exp(-2(Gamma(t) - Gamma(s))) g(s)^2 ds, by adaptive quadrature."""
    p = data.draw(processes())
    t = data.draw(diffusion_times(p))
    Gamma_t = integrate.quad(lambda s: float(p.gamma(s)), 0.0, t, epsabs=0, epsrel=1e-13)[0]
    Xi_t = integrate.quad(
        lambda s: math.exp(-2 * (float(p.Gamma(t)) - float(p.Gamma(s)))) * float(p.g(s)) ** 2,
        0.0, t, epsabs=0, epsrel=1e-12,
    )[0]
    # quad's requested relative accuracy is 1e-12..1e-13; allow 100x for its error estimate.
    assert math.isclose(float(p.Gamma(t)), Gamma_t, rel_tol=1e-10, abs_tol=1e-13)
    assert math.isclose(float(p.a(t)), math.exp(-Gamma_t), rel_tol=1e-10)
    assert math.isclose(float(p.Xi(t)), Xi_t, rel_tol=1e-10, abs_tol=1e-14)


@given(st.data())
def test_Xi_satisfies_its_ode(data):
    """dXi/dt = -2 gamma Xi + g^2 (central difference, O(h^2) error with h = 1e-5)."""
    p = data.draw(processes())
    t = data.draw(diffusion_times(p, 0.05, 0.95))
    h = 1e-5
    dXi = (float(p.Xi(t + h)) - float(p.Xi(t - h))) / (2 * h)
    rhs = -2 * float(p.gamma(t)) * float(p.Xi(t)) + float(p.g(t)) ** 2
    # truncation h^2 |Xi'''| / 6 plus rounding eps |Xi| / h; both < 1e-5 relative for these processes
    assert math.isclose(dXi, rhs, rel_tol=1e-5, abs_tol=1e-8)


@pytest.mark.parametrize("p", [OU(), VE(), VP(), Brownian(2.0, 3.0)])
def test_kinds_of_time(p):
    """Floats give floats, numpy arrays give arrays, tensors give tensors, with equal values."""
    ts = [0.0, 0.3 * p.T, p.T]
    arr = np.array(ts)
    ten = torch.tensor(ts, dtype=torch.float64)
    for f in ("gamma", "g", "Gamma", "a", "Xi"):
        fn = getattr(p, f)
        scal = [float(fn(t)) for t in ts]
        assert isinstance(fn(0.3 * p.T), float)
        np.testing.assert_allclose(fn(arr), scal, rtol=1e-15)
        assert isinstance(fn(ten), torch.Tensor)
        np.testing.assert_allclose(fn(ten).numpy(), scal, rtol=1e-15)


def test_closed_forms_table():
    """Spot values of THEORY 1's table."""
    assert math.isclose(OU().Xi(1.0), 1 - math.exp(-2))
    assert math.isclose(VE(25.0).Xi(1.0), (625 - 1) / (2 * math.log(25)))
    vp = VP(0.1, 20.0)
    assert math.isclose(vp.Xi(1.0), 1 - math.exp(-(0.1 + 19.9 / 2)))
    assert math.isclose(Brownian(2.0, 3.0).Xi(3.0), 12.0)


def test_forward_sample_moments():
    """x_t = a x0 + sqrt(Xi) z: with x0 = 1, mean a and variance Xi (200k draws, 6-sigma bounds)."""
    p, t, n = VP(), 0.4, 200_000
    x = forward_sample(p, torch.ones(n, dtype=torch.float64), t, torch.Generator().manual_seed(0))
    a, Xi = p.a(t), p.Xi(t)
    assert abs(float(x.mean()) - a) < 6 * math.sqrt(Xi / n)
    assert abs(float(x.var()) - Xi) < 6 * Xi * math.sqrt(2 / n)


def test_drifts():
    p = VP()
    x = torch.linspace(-1, 1, 5, dtype=torch.float64)
    score = lambda y, t: -y
    assert torch.allclose(sde_drift(p, score, x, 0.5), -p.gamma(0.5) * x + p.g(0.5) ** 2 * x)
    assert torch.allclose(ode_drift(p, score, x, 0.5), -p.gamma(0.5) * x + 0.5 * p.g(0.5) ** 2 * x)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: VE(sigma=1.0), "sigma"),
        (lambda: VE(sigma=float("nan")), "sigma"),
        (lambda: VP(beta_min=2.0, beta_max=1.0), "beta_min < beta_max"),
        (lambda: VP(beta_min=0.0), "beta_min"),
        (lambda: OU(T=-1.0), "T"),
        (lambda: Brownian(sigma=0.0), "sigma"),
        (lambda: VE(sigma="25"), "sigma"),
    ],
)
def test_bad_parameters(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_time_outside_range():
    with pytest.raises(ValueError, match=r"\[0, T\]"):
        check_time(VE(), 1.5)
    with pytest.raises(ValueError, match=r"\[0, T\]"):
        check_time(VE(), torch.tensor([0.1, -0.1]))
    with pytest.raises(ValueError, match=r"\[0, T\]"):
        forward_sample(OU(1.0), torch.zeros(3), 2.0)


def test_rectified_flow_closed_forms_are_consistent():
    """gamma = -a'/a, g^2 = Xi' + 2 gamma Xi and a = exp(-Gamma) for the linear interpolant (THEORY 1),
    checked by central differences: error O(h^2) ~ 1e-10 for h = 1e-5 plus rounding eps/h ~ 1e-11."""
    import numpy as np

    from critdiff_ref.processes import RectifiedFlow

    p, h = RectifiedFlow(), 1e-5
    t = np.linspace(0.05, 0.9, 7)
    da = (p.a(t + h) - p.a(t - h)) / (2 * h)
    dXi = (p.Xi(t + h) - p.Xi(t - h)) / (2 * h)
    np.testing.assert_allclose(p.gamma(t), -da / p.a(t), rtol=1e-8)
    np.testing.assert_allclose(p.g(t) ** 2, dXi + 2 * p.gamma(t) * p.Xi(t), rtol=1e-8)
    np.testing.assert_allclose(np.exp(-p.Gamma(t)), p.a(t), rtol=1e-13)
    with pytest.raises(ValueError, match="T must lie in"):
        RectifiedFlow(T=1.5)
