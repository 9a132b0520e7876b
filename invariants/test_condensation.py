"""THEORY 7: the posterior over 2^M points on a sphere is a random energy model that condenses.

With ``beta_tilde = nu beta a |x|`` the mean participation ratio ``E[Y]`` tends to 0 below
``beta_c = 2 sqrt(ln 2)`` and to ``1 - beta_c / beta_tilde`` above it.  The finite-M value is
computed exactly (``condensation.rem_participation_ratio_exact``: a one-dimensional quadrature of
``1/Z^2 = int s e^{-sZ} ds``), so the trends in M are checked on deterministic numbers with the
finite-size corrections of ``critdiff_ref.thermo.condensation``'s docstring:

- above ``beta_c``: ``E_M[Y] - (1 - beta_c/beta_tilde) = delta_M + next order`` with the Gumbel shift
  ``delta_M = (beta_c - beta_c(M)) / beta_tilde = ln(4 pi M ln 2) / (2 M sqrt(ln 2) beta_tilde)``;
  the next order is smaller by ``1 / ln(4 pi M ln 2) <= 0.29`` (M >= 4), so it is bounded by ``delta_M / 2``;
- below ``beta_c``: ``ln E_M[Y] / M -> -r`` (module docstring of condensation) with power-law
  prefactors, of which the largest is the Gumbel shift of the top level,
  ``(beta_tilde / beta_c) ln(4 pi M ln 2) <= ln(4 pi M ln 2)`` in ``ln Y``.

The quadrature itself is checked against sphere data sets drawn by ``sphere_dataset`` and weighed
by the posterior (the whole pipeline: radius, rescaled beta, weights), with a z-test.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from critdiff_ref.thermo import condensation as cond
from critdiff_ref.processes import Brownian

BETA_C = cond.REM_BETA_C
ALPHA = 1e-3  # false-failure rate of each statistical assertion in this module
MS = [4, 8, 12, 16]
# the quadrature's bin-width error at h = 0.05 is <= 2e-5 absolute (checked against h = 0.005 over
# beta_tilde in [0.8, 4], M in [4, 16]); every deterministic comparison below allows H_ERR
H_ERR = 1e-4


def _gumbel_shift(M: int) -> float:
    return math.log(4 * math.pi * M * math.log(2.0)) / (2 * M * math.sqrt(math.log(2.0)))


@pytest.mark.parametrize("ratio", [1.5, 2.0, 3.0])
def test_condensed_phase_approaches_one_minus_beta_c_over_beta(ratio):
    """Above beta_c, E_M[Y] decreases in M towards 1 - beta_c/beta_tilde, within the Gumbel shift."""
    bt = ratio * BETA_C
    limit = cond.rem_participation_ratio(bt)
    ey = np.array([cond.rem_participation_ratio_exact(bt, M) for M in MS])
    assert np.all(np.diff(ey) < 0) and np.all(ey > limit)
    for M, y in zip(MS, ey):
        delta = _gumbel_shift(M) / bt
        assert math.isclose(cond.rem_beta_c_finite(M), BETA_C - _gumbel_shift(M), rel_tol=1e-14)
        # leading correction delta_M, next order <= delta_M / 2 (module docstring); delta_M ~ ln M / M
        assert abs(y - limit - delta) <= delta / 2 + H_ERR, (M, y, limit, delta)


@pytest.mark.parametrize("ratio", [0.4, 0.5, 0.8])
def test_uncondensed_phase_shrinks_to_zero_exponentially(ratio):
    """Below beta_c, E_M[Y] decreases in M and ln E_M[Y] / M tends to the REM rate -r(beta_tilde)."""
    bt = ratio * BETA_C
    assert cond.rem_participation_ratio(bt) == 0.0
    r = math.log(2.0) - bt**2 / 2 if bt <= BETA_C / 2 else (BETA_C - bt) ** 2 / 2
    ey = np.array([cond.rem_participation_ratio_exact(bt, M) for M in MS])
    assert np.all(np.diff(ey) < 0) and np.all(ey > 0)
    for M, y in zip(MS, ey):
        # power-law prefactors: at most ln(4 pi M ln 2) in ln Y (module docstring), shrinking as ln M / M
        assert abs(math.log(y) / M + r) <= math.log(4 * math.pi * M * math.log(2.0)) / M, (M, y, r)


@pytest.mark.parametrize("ratio", [0.6, 2.0])
def test_sphere_levels_become_gaussian_as_one_over_d(ratio):
    """The exact sphere law of the levels tends to the Gaussian REM as d_amb -> inf, with error O(1/d_amb)."""
    bt, M = ratio * BETA_C, 6
    gauss = cond.rem_participation_ratio_exact(bt, M)
    diff = np.array([cond.rem_participation_ratio_exact(bt, M, d) - gauss for d in (256, 1024, 4096)])
    # u sqrt(d) has density e^{-v^2/2} (1 + O(1/d)): d * diff converges, so successive ratios of
    # diff at d and 4d approach 4; the O(1/d^2) remainder moves them by ~M^2/d < 15% at d = 256.
    # The bin error enters both quadratures alike (same h, level laws O(1/d) apart), so it cancels
    # to O(h^2 / d) in diff
    rates = diff[:-1] / diff[1:]
    assert np.all(np.abs(rates - 4) < 0.6), rates


@pytest.mark.parametrize("M,d_amb,ratio", [(5, 24, 0.7), (6, 40, 1.6), (4, 3, 2.5)])
def test_sphere_datasets_match_exact_finite_M_participation(M, d_amb, ratio):
    """The mean Y of the posterior over drawn sphere data sets equals the exact finite-M quadrature."""
    sigma, nu, n_sets, n_x = 1.3, 0.7, 300, 4
    p = Brownian(sigma, T=2.0)
    t = 0.4
    bt = ratio * BETA_C
    x_norm = bt * float(p.Xi(t)) / nu  # rescaled_beta = nu |x| / Xi (Brownian, a = 1)
    assert math.isclose(cond.rescaled_beta(nu, x_norm, p, t), bt, rel_tol=1e-14)
    gen = torch.Generator().manual_seed(1000 * M + d_amb)
    per_set = []
    for _ in range(n_sets):
        data = cond.sphere_dataset(M, nu, d_amb, gen)
        z = torch.randn(n_x, d_amb, generator=gen, dtype=torch.float64)
        x = x_norm * z / z.norm(dim=-1, keepdim=True)
        # the data set's points all have |y| = R, so the a^2|y|^2/2 energy is constant
        assert torch.allclose(data.points.norm(dim=-1), torch.full((2**M,), cond.rem_radius(M, nu, d_amb), dtype=torch.float64))
        per_set.append(float(data.participation_ratio(x, p, t).mean()))
    y = np.array(per_set)  # iid across data sets (the x's share a set, so average them first)
    se = y.std(ddof=1) / math.sqrt(n_sets)
    exact = cond.rem_participation_ratio_exact(bt, M, d_amb)
    # two-sided z-test at ALPHA (CLT over 300 sets; Y in [1/N, 1] has all moments), plus the quadrature's H_ERR
    assert abs(y.mean() - exact) < stats.norm.isf(ALPHA / 2) * se + H_ERR, (y.mean(), exact, se)
