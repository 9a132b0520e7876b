"""Invariant: the k-statistics are the unbiased estimators of the cumulants (THEORY 6, "Estimators").

``E[k_n] = kappa_n`` for every distribution and every sample size ``N >= n``.  Checked exactly by
enumerating all ``K^N`` samples of a small discrete distribution, against scipy for ``n <= 4``,
and statistically against the exact cumulants of Gaussian mixtures.
"""

import itertools
import math
from fractions import Fraction

import numpy as np
import scipy.stats
import torch
from hypothesis import given
from hypothesis import strategies as st

from critdiff_ref.observables import kstat, kstat_bootstrap, kstat_coefficients
from critdiff_ref.strategies import gaussian_mixtures, seeds
from critdiff_ref.targets.mixtures import moments_to_cumulants

# k-sigma bound for Monte Carlo comparisons: 5 sigma, two-sided normal tail 5.7e-7 per comparison.
K_SIGMA = 5.0
EPS = float(np.finfo(np.float64).eps)


@st.composite
def discrete_distributions(draw):
    """Support of K = 2 or 3 distinct small rationals, positive integer weights."""
    K = draw(st.integers(2, 3))
    support = draw(st.lists(st.integers(-6, 6), min_size=K, max_size=K, unique=True))
    support = [Fraction(v, draw(st.sampled_from([1, 2, 4]))) for v in support]
    weights = draw(st.lists(st.integers(1, 9), min_size=K, max_size=K))
    total = sum(weights)
    return support, [Fraction(w, total) for w in weights]


def exact_cumulant(support, probs, n):
    moments = [sum(p * v**r for v, p in zip(support, probs)) for r in range(n + 1)]
    return moments_to_cumulants(moments)[n - 1]


def multisets(K, N):
    """All count vectors (c_1..c_K) with sum N."""
    for cut in itertools.combinations(range(N + K - 1), K - 1):
        edges = (-1,) + cut + (N + K - 1,)
        yield tuple(edges[i + 1] - edges[i] - 1 for i in range(K))


@given(discrete_distributions(), st.integers(2, 8), st.integers(0, 4))
def test_kstat_is_exactly_unbiased(dist, n, extra):
    """Averaged over all samples of size N of a discrete distribution (enumerated as multisets with
    multinomial weights), k_n equals kappa_n exactly in rationals and to rounding in floating point."""
    support, probs = dist
    N = n + extra
    K = len(support)
    coeffs = kstat_coefficients(n, N, centred=False)
    expected = exact_cumulant(support, probs, n)

    total = Fraction(0)
    scale = 0.0
    samples, weights = [], []
    for counts in multisets(K, N):
        w = Fraction(math.factorial(N)) * math.prod(p**c / math.factorial(c) for p, c in zip(probs, counts))
        s = {r: sum(c * v**r for v, c in zip(support, counts)) for r in range(1, n + 1)}
        total += w * sum(c * math.prod(s[r] for r in mono) for mono, c in coeffs.items())
        scale += float(w) * sum(abs(float(c)) * math.prod(abs(float(s[r])) for r in mono) for mono, c in coeffs.items())
        samples.append([float(v) for v, c in zip(support, counts) for _ in range(c)])
        weights.append(float(w))
    # exact rational expectation of the polynomial in power sums: no tolerance
    assert total == expected

    # floating point: kstat along axis 0 of every multiset at once, then the weighted average
    x = np.array(samples).T  # (N, number of multisets)
    mean_k = float(np.sum(np.array(weights) * kstat(x, n, axis=0)))
    # rounding: each monomial is a product of <= 8 power sums of <= 12 terms and the coefficients
    # are rounded once, so each term carries <= ~32 eps relative error; the sum of absolute terms
    # ``scale`` (raw power sums, an upper bound for the centred ones kstat uses) times 64 eps
    # bounds the accumulated rounding.
    assert abs(mean_k - float(expected)) <= 64 * EPS * max(scale, abs(float(expected)))


@given(st.integers(1, 4), st.integers(5, 60), seeds(), st.floats(-10, 10), st.floats(0.1, 10))
def test_kstat_matches_scipy(n, N, seed, loc, scale):
    """For n <= 4 kstat equals scipy.stats.kstat (same estimator, different algebra)."""
    x = loc + scale * np.random.default_rng(seed).standard_gamma(2.0, size=(N, 3))
    ours = kstat(x, n, axis=0)
    ref = np.array([scipy.stats.kstat(x[:, j], n) for j in range(3)])
    # both are O(10) flops per sample on data of size ~|loc| + scale; cancellation of the power
    # sums against the mean costs up to (|loc|/scale + 1)^n in relative accuracy (scipy does
    # not centre): 1e3 eps times that factor.
    cancel = (abs(loc) / scale + 10.0) ** n
    np.testing.assert_allclose(ours, ref, rtol=1e3 * EPS * cancel, atol=1e3 * EPS * cancel * scale**n)


@given(gaussian_mixtures(), seeds())
def test_kstat_agrees_with_mixture_cumulants(mixture, seed):
    """On 50k draws of a Gaussian mixture, k_n (n = 1..8) agrees with the exact cumulant within
    5 bootstrap standard errors."""
    gen = torch.Generator().manual_seed(seed)
    x = mixture.sample(50_000, gen)
    est = kstat_bootstrap(x, range(1, 9), n_boot=100, generator=gen)
    exact = torch.tensor([mixture.cumulant(n) for n in range(1, 9)], dtype=torch.float64)
    # 5 sigma (normal tail 5.7e-7 per order; 8 orders x 12 examples: Bonferroni ~5e-5 per run);
    # the bootstrap SE is itself estimated from 100 resamples (relative error ~7%), so the
    # effective bound is >= 4.6 true sigma (tail < 5e-6 per comparison).
    z = (est.value - exact) / est.err
    assert bool((z.abs() < K_SIGMA).all()), f"z-scores {z.tolist()}"
