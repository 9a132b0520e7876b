"""THEORY 6: cumulants under a linear forward SDE.

Convolution with a Gaussian adds only to kappa_2: kappa_2(t) = a^2 kappa_2(0) + Xi(t) and
kappa_n(t) = a(t)^n kappa_n(0) for n >= 3.  Under VE (a = 1) every cumulant of order >= 3 is
conserved exactly; under VP they decay as a^n.  Checked from the closed forms (exact rational
arithmetic on the mixture parameters) and independently by numerical quadrature of the exact
forward marginal density.
"""

import math

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from critdiff_ref.processes import VE
from critdiff_ref.strategies import diffusion_times, gaussian_mixtures, processes, two_peak_mixtures
from critdiff_ref.targets.mixtures import moments_to_cumulants


def _expected(kappa0: float, n: int, a: float, Xi: float) -> float:
    return a * a * kappa0 + Xi if n == 2 else a**n * kappa0


@given(gaussian_mixtures(), processes(("VE", "VP", "OU", "Brownian")), st.data())
def test_cumulants_of_marginal_closed_form(mixture, process, data):
    """kappa_n of the exact forward marginal equals a^n kappa_n(0) (n >= 3), a^2 kappa_2 + Xi (n = 2)."""
    t = data.draw(diffusion_times(process))
    a, Xi = float(process.a(t)), float(process.Xi(t))
    marginal = mixture.marginal(process, t)
    M = max(abs(m) for m in mixture.means) + max(mixture.stds)
    for n in range(2, 9):
        got, want = marginal.cumulant(n), _expected(mixture.cumulant(n), n, a, Xi)
        # The cumulant is computed exactly (rationals) from the marginal's parameters a m_i and
        # sqrt(a^2 s_i^2 + Xi), each rounded once (relative eps).  Every moment term is bounded by
        # (Xi + a^2 M^2)^(n/2) and the recursion's coefficients by 2^n, so the error is
        # <= n 2^n eps (Xi + a^2 M^2)^(n/2) (measured worst over 300 draws: 50x below this).
        tol = n * 2**n * 2.3e-16 * (Xi + a * a * M * M) ** (n / 2)
        assert abs(got - want) <= tol, (n, got, want, tol)


@given(two_peak_mixtures(), processes(("VE", "VP")), st.data())
def test_two_peak_closed_values(mixture, process, data):
    """Two peaks: kappa_4 = -2 mu^4, kappa_6 = 16 mu^6, kappa_8 = -272 mu^8, conserved (VE) or times a^n (VP)."""
    t = data.draw(diffusion_times(process))
    a = float(process.a(t))
    mu = mixture.mu
    closed = {2: mu**2 + mixture.s**2, 4: -2 * mu**4, 6: 16 * mu**6, 8: -272 * mu**8, 3: 0.0, 5: 0.0, 7: 0.0}
    for n, val in closed.items():
        # Bernoulli-number formula vs literal values: a few roundings of mu^n.
        assert math.isclose(mixture.cumulant(n), val, rel_tol=1e-14, abs_tol=1e-300)
        if n >= 3:
            got = mixture.marginal(process, t).cumulant(n)
            # marginal mu' = a mu rounded once: relative error n eps in mu'^n.
            assert math.isclose(got, a**n * val, rel_tol=16 * n * 2.3e-16, abs_tol=1e-300)
        if isinstance(process, VE) and n >= 3:
            # VE: a = 1 exactly, mu' = mu exactly, so the conserved value is reproduced to rounding.
            assert math.isclose(mixture.marginal(process, t).cumulant(n), mixture.cumulant(n), rel_tol=1e-14)


def _quadrature_cumulants(marginal, n_max: int = 8) -> list[float]:
    """Standardised cumulants kappa_n / sigma^n of a 1-D mixture from a trapezoidal rule on its density.

    The grid covers every component's mean +- 14 std with spacing (smallest std)/40: for a Gaussian
    integrand the trapezoidal error is below exp(-2 pi^2 40^2) and the truncation below e^-98."""
    lo = min(m - 14 * s for m, s in zip(marginal.means, marginal.stds))
    hi = max(m + 14 * s for m, s in zip(marginal.means, marginal.stds))
    h = min(marginal.stds) / 40
    x = torch.linspace(lo, hi, int(math.ceil((hi - lo) / h)) + 1, dtype=torch.float64)
    p = marginal.log_density(x).exp().numpy()
    xs = x.numpy()
    dx = xs[1] - xs[0]
    mean = np.sum(xs * p) * dx
    sigma = math.sqrt(np.sum((xs - mean) ** 2 * p) * dx)
    z = (xs - mean) / sigma
    moments = [np.sum(p) * dx] + [np.sum(z**k * p) * dx for k in range(1, n_max + 1)]
    moments = [m / moments[0] for m in moments]
    return [float(k) for k in moments_to_cumulants(moments)]


@given(gaussian_mixtures(max_components=3), processes(("VE", "VP")), st.data())
def test_cumulant_conservation_by_quadrature(mixture, process, data):
    """Quadrature of the exact marginal density reproduces kappa_n(t) = a^n kappa_n(0) (n >= 3)."""
    t = data.draw(diffusion_times(process))
    a, Xi = float(process.a(t)), float(process.Xi(t))
    marginal = mixture.marginal(process, t)
    quad = _quadrature_cumulants(marginal)
    sigma = math.sqrt(marginal.cumulant(2))
    for n in range(2, 9):
        want = _expected(mixture.cumulant(n), n, a, Xi) / sigma**n
        # Standardised moments up to order 8 are <= 8!! * (peak separation/sigma)^8-ish; sums of ~1e4
        # terms of size <= that give rounding ~1e-12 relative; the moment-to-cumulant recursion
        # multiplies by coefficients < 2^8 8!: tolerance 1e-7 absolute on kappa_n / sigma^n.
        assert abs(quad[n - 1] - (1.0 if n == 2 else want)) < 1e-7, (n, quad[n - 1], want)
