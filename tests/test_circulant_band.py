"""The structured (circulant-plus-band) step Jacobians of the exact stepwise log q (THEORY 8): the operator
algebra equals dense matrix algebra, FourierLocalScore's operator equals autograd's Jacobian, and the fast
``stepwise_flow_log_density(jacobian="structured")`` equals the dense reference path and the log-det of the
whole discretised map from ``torch.func.jacrev``, with tolerances in units of float64 eps; planted bugs fail."""

import dataclasses
import math

import pytest
import torch
from torch.func import jacrev

from critdiff_ref.processes import VE, VP
from critdiff_ref.samplers import flow_jacobian, likelihood
from critdiff_ref.samplers.circulant_band import CirculantBand, band_geometry
from critdiff_ref.samplers.grids import resolve_grid
from critdiff_ref.samplers.reverse import METHODS
from critdiff_ref.testing import assert_close

from fourier_local_nets import autograd_jacobian, random_net

EPS64 = torch.finfo(torch.float64).eps
T_MIN = 1e-3


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _random_operator(L: int, d: int, radius: int, seed: int, batch: int = 2) -> CirculantBand:
    geo = band_geometry(L, d, radius)
    g = torch.Generator().manual_seed(seed)
    V, W = L**d, geo.offsets.shape[0]
    return CirculantBand(torch.randn((batch, V), generator=g, dtype=torch.float64),
                         torch.randn((batch, W, V), generator=g, dtype=torch.float64), geo)


def _product_bound(n: int, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Componentwise rounding bound of a matrix product computed two ways: each entry is an ``n``-term sum,
    ``|fl(sum) - sum| <= gamma_n sum |a_k b_k|`` (Higham, Thm 3.5) for either order of summation; the FFT
    convolution of the circulants adds ``O(log2 V)`` eps of the same scale."""
    gamma = n * EPS64 / (1.0 - n * EPS64)
    return 2.0 * gamma * (left.abs() @ right.abs())


@pytest.mark.parametrize("L, d, radius", [(4, 2, 1), (6, 2, 1), (5, 1, 2), (4, 2, 2), (3, 1, 1), (2, 2, 1), (4, 3, 1),
                                          (6, 2, 0)])
def test_operator_algebra_equals_dense_matrix_algebra(L, d, radius):
    """compose / apply / + / * / plus_identity of circulant-plus-band operators = the same dense matrix algebra."""
    J1, J2, P = (_random_operator(L, d, radius, seed) for seed in (1, 2, 3))
    D1, D2, DP = J1.dense(), J2.dense(), P.dense()
    V = L**d
    # dense(): the definition entry by entry (a gather and W scattered additions: exact up to one rounding each)
    geo = J1.geometry
    explicit = torch.zeros_like(D1)
    for i in range(V):
        for j in range(V):
            explicit[:, i, j] = J1.kernel[:, geo.diff[i, j]]
        for w in range(geo.offsets.shape[0]):
            explicit[:, i, geo.window[w, i]] += J1.band[:, w, i]
    assert_close(D1, explicit, rtol=0.0, atol=4 * EPS64 * float(explicit.abs().max()))  # <= W + 1 additions
    got = J2.compose(J1, scale=0.3, plus=P, identity=0.7)
    ref = 0.7 * torch.eye(V, dtype=torch.float64) + DP + 0.3 * (D2 @ D1)
    # V-term dot products (dense) vs W-term products plus an FFT convolution (structured): gamma_V bound
    bound = _product_bound(V + 4 * math.ceil(math.log2(V)), D2, D1) * 0.3 + 4 * EPS64 * (DP.abs() + 0.7)
    assert bool(((got - ref).abs() <= bound).all()), float(((got - ref).abs() - bound).max())
    A = torch.randn((2, V, V), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    bound = _product_bound(V + 4 * math.ceil(math.log2(V)), D2, A)
    assert bool(((J2 @ A - D2 @ A).abs() <= bound).all())
    eye = torch.eye(V, dtype=torch.float64)
    assert_close(eye + 0.5 * (J1 + J2), eye + 0.5 * (D1 + D2), ulps=4)  # a few roundings per entry
    assert_close((2.0 * J1).plus_identity(-1.5).dense(), 2.0 * D1 - 1.5 * eye, ulps=4)


def test_wrong_band_shift_in_compose_fails():
    """Planted bug: C_2 B_1 with the band coefficients taken at i + o_w instead of i - o_w."""
    J1, J2 = _random_operator(4, 2, 1, 5), _random_operator(4, 2, 1, 6)
    ref = J2.dense() @ J1.dense()
    buggy_geo = dataclasses.replace(J1.geometry, back=J1.geometry.window)
    bad = CirculantBand(J2.kernel, J2.band, buggy_geo).compose(CirculantBand(J1.kernel, J1.band, buggy_geo))
    # the wrong entries are O(1) products of N(0, 1) numbers: far beyond the gamma_V bound (~1e-13)
    assert float((bad - ref).abs().max()) > 1e-3


@pytest.mark.parametrize("L, d, radius", [(4, 2, 1), (6, 2, 1), (4, 2, 0), (2, 2, 1), (3, 1, 1), (4, 3, 1), (4, 2, 2)])
@pytest.mark.parametrize("odd", [True, False])
def test_score_jacobian_operator_equals_jacrev(L, d, radius, odd):
    """The operator's dense form = reverse-mode autograd's Jacobian; its score = forward() bit for bit."""
    net = random_net(L, d, VE(), radius, seed=L + 10 * radius, odd=odd)
    x = torch.randn((3, *(L,) * d), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for t in (T_MIN, 0.3, 1.0):
        s, J = net.score_jacobian_operator(x, t)
        ref = autograd_jacobian(net, x, t)
        # the same derivative terms summed in another order (per-site reverse mode vs autograd, FFT vs its
        # transpose): a few eps of max |J|; 64 eps as for score_jacobian (tests/test_stepwise_log_q.py)
        assert_close(J.dense(), ref, rtol=0.0, atol=64 * EPS64 * float(ref.abs().max()))
        assert torch.equal(s, net(x, t))


def test_mirrored_taps_fail(monkeypatch):
    """Planted bug: the per-site window derivatives stored at the mirrored offsets (J_loc transposed)."""
    net = random_net(4, 2, VE(), 1, seed=3, odd=False)
    x = torch.randn((2, 4, 4), generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    ref = autograd_jacobian(net, x, 0.3)
    slots = net._tap_slots(band_geometry(4, 2, 1))
    monkeypatch.setattr(net, "_tap_slots", lambda geometry: slots.flip(0))
    _, J = net.score_jacobian_operator(x, 0.3)
    # an untrained CNN's local derivatives are not symmetric: O(0.01..0.1) errors vs a 64-eps agreement
    assert float((J.dense() - ref).abs().max()) > 1e6 * 64 * EPS64 * float(ref.abs().max())


def _flow_map(net, process, method: str, steps: int):
    """The discretised PF-ODE map x_T -> x_0 as a plain function (the sampler as run)."""
    times = [float(t) for t in resolve_grid(process, steps, "uniform", T_MIN)]
    step = METHODS[method]

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        return -float(process.gamma(t)) * x - 0.5 * float(process.g(t)) ** 2 * net(x, t)

    def flow(x: torch.Tensor) -> torch.Tensor:
        for i in range(len(times) - 1):
            x = step(velocity, x, times[i], times[i + 1] - times[i])
        return x

    return flow


@pytest.mark.parametrize("shape", [(4, 2), (6, 2), (8, 1)])
@pytest.mark.parametrize("method", ["euler", "heun", "rk4"])
@pytest.mark.parametrize("process", [VE(sigma=25.0, T=1.0), VP(beta_min=0.1, beta_max=20.0, T=1.0)], ids=["VE", "VP"])
def test_structured_log_q_equals_dense_reference_and_jacrev(shape, method, process):
    """Fast path (circulant-plus-band step Jacobians) = dense reference path = slogdet of jacrev of the whole map."""
    L, d = shape
    steps = 4
    net = random_net(L, d, process, 1, seed=L + d)
    prior = likelihood.isotropic_prior(process, L, d)
    xT = prior.sample(3, torch.Generator().manual_seed(7))
    kw = dict(steps=steps, method=method, t_min=T_MIN)
    x0, lq = flow_jacobian.stepwise_flow_log_density(net, process, xT, prior, jacobian="structured", **kw)
    x0_ref, lq_ref = flow_jacobian.stepwise_flow_log_density(net, process, xT, prior, jacobian="dense", **kw)
    # Tolerance: log q = log p_T - sum_k log|det D_k|. D_k's entries differ between the paths by the rounding
    # of their products (gamma_V relative, V <= 36); slogdet's sensitivity |d log det| <= V ||D^-1|| ||dD||
    # = V cond(D) ||dD|| / ||D||, with cond(D_k) <= 1.3 for these cases (measured with torch.linalg.cond):
    # per step <= 36 * 1.3 * 2 gamma_36 ~ 3.4e3 eps, times 4 steps ~ 1.4e4 eps; 1e5 eps absolute leaves room
    # for the norm-equivalence constants (|log q| ~ 1e1..1e2; observed differences <= 128 eps)
    atol = 1e5 * EPS64
    assert_close(lq, lq_ref, rtol=0.0, atol=atol)
    # the states: the score values are bit-identical (same forward operations), the step the same code
    assert torch.equal(x0, x0_ref)
    # against autograd's Jacobian of the whole discretised map (torch.func.jacrev, another algorithm): the
    # same bound plus the rounding of the V x V chain products through `steps` steps (same order, 1e5 eps)
    flow = _flow_map(net, process, method, steps)
    for b in range(xT.shape[0]):
        J = jacrev(lambda z: flow(z.unsqueeze(0)).reshape(-1))(xT[b]).reshape(L**d, L**d)
        lq_jacrev = prior.log_prob(xT[b:b + 1]) - torch.linalg.slogdet(J)[1]
        assert_close(lq[b:b + 1], lq_jacrev, rtol=0.0, atol=2 * atol)


def test_bad_jacobian_argument():
    process = VE()
    net = random_net(4, 2, process, 1, seed=0)
    prior = likelihood.isotropic_prior(process, 4, 2)
    xT = prior.sample(1, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="jacobian"):
        flow_jacobian.stepwise_flow_log_density(net, process, xT, prior, steps=2, jacobian="sparse")
    with pytest.raises(ValueError, match="radius"):
        band_geometry(4, 2, -1)
    J = _random_operator(4, 2, 1, 0)
    with pytest.raises(ValueError, match="kernel must be"):
        CirculantBand(J.kernel[:, :5], J.band, J.geometry)
    with pytest.raises(ValueError, match="same lattice"):
        J.compose(_random_operator(4, 2, 2, 0))


def test_structured_heun_without_the_product_term_fails(monkeypatch):
    """Planted bug: the structured Heun Jacobian without dt^2/2 J_f(y) J_f(x) (compose with scale 0)."""
    process = VE(sigma=25.0, T=1.0)
    net = random_net(4, 2, process, 1, seed=2)
    prior = likelihood.isotropic_prior(process, 4, 2)
    xT = prior.sample(2, torch.Generator().manual_seed(8))
    kw = dict(steps=4, method="heun", t_min=T_MIN)
    _, lq_ref = flow_jacobian.stepwise_flow_log_density(net, process, xT, prior, jacobian="dense", **kw)
    compose = CirculantBand.compose
    monkeypatch.setattr(CirculantBand, "compose", lambda self, first, *, scale=1.0, plus=None, identity=0.0:
                        compose(self, first, scale=0.0, plus=plus, identity=identity))
    _, lq = flow_jacobian.stepwise_flow_log_density(net, process, xT, prior, jacobian="structured", **kw)
    # the dropped term is O(1) per step at T (g^2 h / 2 ~ 40 for VE sigma = 25): far beyond the 1e5-eps agreement
    assert float((lq - lq_ref).abs().max()) > 1e6 * 1e5 * EPS64


@pytest.mark.parametrize("threads", [1, 2])
def test_slogdet_per_matrix_is_exact_with_threads(threads):
    """flow_jacobian.slogdet_per_matrix = numpy's LAPACK slogdet per matrix, with 1 and 2 intra-op threads
    (batched CPU slogdet with 2 threads returned log-dets off by ~1e-3 in torch 2.13 + oneMKL)."""
    import numpy as np

    D = torch.eye(256, dtype=torch.float64) + 0.01 * torch.randn((3, 256, 256), generator=torch.Generator().manual_seed(9),
                                                                   dtype=torch.float64)
    ref = torch.tensor([np.linalg.slogdet(M.numpy())[1] for M in D], dtype=torch.float64)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sign, logdet = flow_jacobian.slogdet_per_matrix(D)
    finally:
        torch.set_num_threads(previous)
    # two LU factorisations of the same matrix (pivoting identical, blocking may differ): log|det| is a sum
    # of 256 log|pivots| of size <= 0.1, each within a few eps: 256 * 4 eps absolute
    assert_close(logdet, ref, rtol=0.0, atol=256 * 4 * EPS64)
    assert bool((sign == 1).all())
