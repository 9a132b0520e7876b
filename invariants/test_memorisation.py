"""THEORY 7: a model trained exactly on N points (the empirical score) memorises them.

The reverse SDE with the exact score of the empirical distribution ends on the training points as
``t -> 0``, and the self weight of the point a path ends on passes 1/2 at the memorisation onset
``t_mem = R^2 / (2 sigma^2 ln N)`` (points on a sphere of radius R in d >> ln N dims; derivation
and finite-size corrections in ``critdiff_ref.thermo.condensation``): more data, later onset in reverse
time.  Paths come from ``critdiff_ref.samplers.reverse_sde`` started exactly from ``p_T`` (a data
point plus noise), on a geometric grid that resolves the ``1/t`` stiffness of the score.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from critdiff_ref.thermo import condensation as cond
from critdiff_ref.processes import Brownian
from critdiff_ref.samplers import reverse_sde
from critdiff_ref.targets import EmpiricalDataset

ALPHA = 1e-3  # false-failure rate of each statistical assertion in this module


def _exact_start(data: EmpiricalDataset, p: Brownian, n: int, gen: torch.Generator) -> torch.Tensor:
    """``x_T ~ p_T``: a uniformly drawn training point plus ``N(0, Xi(T))`` noise."""
    y0 = data.sample(n, gen)
    return y0 + math.sqrt(float(p.Xi(p.T))) * torch.randn(y0.shape, generator=gen, dtype=y0.dtype)


@pytest.mark.parametrize("D", [2, 3])
def test_reverse_dynamics_reproduces_training_points(D):
    """Every endpoint lies on a training point (up to the sampler's terminal noise) and all points are hit equally often."""
    sigma, T, t_min, steps, n = 1.0, 2.0, 1e-3, 150, 100 * 2**D
    p = Brownian(sigma, T)
    data = EmpiricalDataset(torch.tensor(list(itertools.product([-1.0, 1.0], repeat=D)), dtype=torch.float64))
    gen = torch.Generator().manual_seed(7 + D)
    times = torch.from_numpy(np.geomspace(T, t_min, steps + 1))
    x_end = reverse_sde(lambda x, t: data.score(x, p, t), p, _exact_start(data, p, n, gen), None, gen, grid=times)
    dist = torch.cdist(x_end, data.points)
    nearest = dist.argmin(-1)
    # Near an isolated point the score is (y - x)/(sigma^2 t) up to e^{-2/Xi} terms, and EM on a grid of
    # ratio 1 - r keeps each coordinate Gaussian with variance sigma^2 t/(1 - r) (test_curie_weiss):
    # |x_end - y|^2 / v ~ chi^2_D; per-endpoint bound at false-failure rate ALPHA / n
    r = 1 - float(times[-1] / times[-2])
    v = sigma**2 * t_min / (1 - r)
    bound = math.sqrt(v * stats.chi2.isf(ALPHA / n, D))
    assert float(dist.min(-1).values.max()) < bound < 0.5  # far inside the half-spacing 1: memorised
    # The hyperoctahedral group maps the data set to itself, acts transitively, and leaves the noise,
    # x_T's law and the (equivariant) EM chain invariant: the nearest point is exactly uniform, so the
    # counts are Multinomial(n, 1/N); chi-square test (expected count 100) at ALPHA
    counts = np.bincount(nearest.numpy(), minlength=data.N)
    assert stats.chisquare(counts).pvalue > ALPHA, counts


def test_memorisation_onset_moves_with_N():
    """The self weight of the final point crosses 1/2 at t_mem = R^2/(2 sigma^2 ln N), within the finite-size band."""
    D, R, sigma, T, t_min, steps, n = 64, 1.0, 1.0, 1.0, 1e-3, 120, 512
    p = Brownian(sigma, T)
    times = torch.from_numpy(np.geomspace(T, t_min, steps + 1))
    log_t = np.log(times.numpy())
    z_crit = stats.norm.isf(ALPHA / 2)
    onsets = []
    for M in (3, 5, 7):
        N = 2**M
        gen = torch.Generator().manual_seed(100 + M)
        z = torch.randn(N, D, generator=gen, dtype=torch.float64)
        data = EmpiricalDataset(R * z / z.norm(dim=-1, keepdim=True))
        x_end, path = reverse_sde(
            lambda x, t: data.score(x, p, t), p, _exact_start(data, p, n, gen), None, gen, grid=times, return_trajectory=True
        )
        final = torch.cdist(x_end, data.points).argmin(-1)  # the training point each path ended on
        self_w = torch.stack(
            [data.log_weights(path[k], p, t).gather(-1, final[:, None])[:, 0].exp() for k, t in enumerate(times.tolist())]
        )  # (steps + 1, n)
        w = self_w.mean(1).numpy()
        assert w[0] < 0.5 < w[-1] and w[-1] > 1 - 1e-6  # uncommitted at T, memorised at t_min
        k = int(np.argmax(w > 0.5))
        slope = (w[k] - w[k - 1]) / (log_t[k] - log_t[k - 1])
        log_on = log_t[k - 1] + (0.5 - w[k - 1]) / slope
        se_log = float(self_w[k].std()) / math.sqrt(n) / abs(slope)  # delta method on the crossing
        ratio = math.exp(log_on) / cond.memorisation_time(R, N, sigma)
        # finite-size band (condensation module docstring): the quenched ln Z of the other points sits
        # below the annealed one by the Gumbel shift ln(4 pi M ln 2)/2, so the self point wins at
        # smaller q: the onset moves up by g_M = ln(4 pi M ln 2)/(4 ln N); the q/d terms move it down
        # by 2 ln N / D;
        # the O(1) near-maximum sum in ln Z moves q by O(1), i.e. the ratio by 1/(2 ln N); plus the
        # crossing's Monte Carlo error at z_crit sigma
        g_M = math.log(4 * math.pi * M * math.log(2.0)) / (4 * math.log(N))
        margin = 1 / (2 * math.log(N)) + z_crit * se_log
        assert 1 - 2 * math.log(N) / D - margin < ratio < 1 + g_M + margin, (M, ratio, g_M, margin)
        onsets.append(math.exp(log_on))
    # more data, later memorisation in reverse time (t_mem halves from N = 8 to 128: ln 128 / ln 8 = 7/3)
    assert onsets[0] > onsets[1] > onsets[2]
