"""THEORY 5: how well a local (radius-ell) kernel represents the critical score, and how fast it trains.

Claims checked: the FFT formula for the relative truncation error eps(t; ell, L, d) equals a dense
real-space covariance computation; the best box-supported kernel (normal equations) beats
truncation and matches a direct weighted least-squares fit; at r = 0, eps_max grows like L^{1/2}
in d = 1, eps_max^2 grows linearly in ln L in d = 2 with a slope falling with ell, eps_max
converges in d = 3, and ell ~ ln L keeps the d = 2 error bounded; the trained three-layer
convolutional net reaches the best local loss, with a kernel error that grows with L at fixed ell
and stays controlled with ell ~ ln L; local GD steps are bounded by the box condition number.
"""

import math
import os

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from critdiff_ref import lattice, theory
from critdiff_ref.processes import OU
from critdiff_ref.strategies import diffusion_times, masses, processes
from critdiff_ref.targets import GaussianField
from critdiff_ref.trainers import LocalScoreNet, default_ell, fit_exponent, kernel_error, local_descent, train

slow = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("CRITDIFF_SLOW") != "1", reason="large lattices: set CRITDIFF_SLOW=1"),
]


@st.composite
def local_setups(draw):
    d = draw(st.integers(1, 2))
    L = draw(st.integers(5, {1: 24, 2: 9}[d]))
    field = GaussianField(L, d, draw(masses()))
    process = draw(processes())
    t = draw(diffusion_times(process, 0.02, 1.0))
    ell = draw(st.integers(0, (L - 2) // 2))
    return field, process, t, ell


def _dense_covariance(field, process, t):
    """Real-space covariance of phi_t from the explicit Laplacian matrix (independent of the FFT path)."""
    V = field.V
    lap = lattice.laplacian_matrix(field.L, field.d)
    a2, Xi = float(process.a(t)) ** 2, float(process.Xi(t))
    if field.zero_mode_removed:
        P = torch.eye(V, dtype=torch.float64) - 1.0 / V
        return a2 * torch.linalg.pinv(lap, hermitian=True) + Xi * P
    return a2 * torch.linalg.inv(lap + field.r * torch.eye(V, dtype=torch.float64)) + Xi * torch.eye(V, dtype=torch.float64)


@given(local_setups())
def test_truncation_error_matches_dense_computation(setup):
    """eps(t; ell)^2 = Var[(K_t - K_ell) * phi_t](x) / Var[K_t * phi_t](x), with the variances from the dense covariance."""
    field, process, t, ell = setup
    Sigma = _dense_covariance(field, process, t)
    K = field.real_space_score_kernel(process, t)
    K_ell = theory.truncated_kernel(field, process, t, ell)
    # s(0) = sum_y K(-y) phi(y): the row vector is K at -y, flattened in row-major site order
    flip = lambda k: torch.roll(k.flip(tuple(range(field.d))), (1,) * field.d, tuple(range(field.d))).reshape(-1)  # noqa: E731
    e, s = flip(K - K_ell), flip(K)
    dense = math.sqrt(float(e @ Sigma @ e) / float(s @ Sigma @ s))
    fft = theory.local_truncation_error(field, process, t, ell)
    # both are O(V^2) sums of float64 products with |terms| <= the score variance: ~1e-12 relative
    assert fft == pytest.approx(dense, rel=1e-8, abs=1e-10)
    # the box keeps exactly the sites with |x|_inf <= ell, and leaves K unchanged there
    box = lattice.box_mask(field.L, field.d, ell)
    assert torch.equal(K_ell[box], K[box]) and bool((K_ell[~box] == 0).all())


@given(local_setups())
def test_optimal_local_kernel_is_the_weighted_least_squares_fit(setup):
    """The normal-equation kernel minimises sum_k C_t |K_hat - K_t|^2 over box kernels: it equals a direct lstsq fit and beats truncation."""
    field, process, t, ell = setup
    dims = lattice.lattice_dims(field.d)
    K_opt = theory.optimal_local_kernel(field, process, t, ell)
    C = field.mode_variance(process, t).reshape(-1)
    K = field.score_kernel(process, t).reshape(-1)
    box = lattice.box_mask(field.L, field.d, ell)
    sites = box.nonzero()
    # design matrix: column j = FFT of the delta at box site j, rows weighted by sqrt(C) (complex lstsq)
    cols = []
    for s_ in sites:
        delta = torch.zeros(field.shape, dtype=torch.float64)
        delta[tuple(s_.tolist())] = 1.0
        cols.append(torch.fft.fftn(delta, dim=dims).reshape(-1))
    w = C.sqrt().to(torch.complex128)
    X = torch.stack(cols, 1) * w[:, None]
    sol = torch.linalg.lstsq(X, (w * K)[:, None], driver="gelsd").solution[:, 0].real
    direct = torch.zeros(field.shape, dtype=torch.float64)
    direct[tuple(sites[:, mu] for mu in range(field.d))] = sol

    def loss(k):
        return float((C * (torch.fft.fftn(k, dim=dims).reshape(-1) - K).abs() ** 2).sum())

    # normal equations vs QR/SVD least squares: the conditioning of A (box covariance, <= ~1e4 here)
    # times eps, relative to the kernel scale; compared through the loss they minimise
    assert loss(K_opt) == pytest.approx(loss(direct), rel=1e-8, abs=1e-10 * loss(torch.zeros_like(K_opt)))
    assert loss(K_opt) <= loss(theory.truncated_kernel(field, process, t, ell)) * (1 + 1e-10) + 1e-12


def _eps_max(Ls, d, ell):
    return [theory.max_local_truncation_error(L, d, ell) for L in Ls]


def test_d1_error_grows_like_sqrt_L():
    """In d = 1 at fixed ell = 3 the worst-time local error grows like L^{1/2}: locality buys nothing."""
    Ls = [64, 128, 256, 512, 1024, 2048]
    e = _eps_max(Ls, 1, 3)
    assert all(b > a for a, b in zip(e, e[1:]))
    # THEORY 5 measured 0.19 .. 1.45; the local slope falls towards 1/2 from above (finite-ell correction
    # ~ ell/L): fitted 0.59 over the range, 0.52 on the last doubling. Bands [0.45, 0.7] and [0.45, 0.6]
    assert 0.45 <= fit_exponent(Ls, e) <= 0.7
    assert 0.45 <= math.log(e[-1] / e[-2]) / math.log(2) <= 0.6


def _d2_slopes(Ls, ells):
    out = {}
    for ell in ells:
        e2 = np.square(_eps_max(Ls, 2, ell))
        incr = np.diff(e2)  # per doubling of L, i.e. per ln 2
        out[ell] = (e2, incr)
    return out


def test_d2_error_squared_is_linear_in_ln_L():
    """In d = 2 at fixed ell, eps_max^2 grows linearly in ln L, with a slope that falls with ell."""
    Ls = [32, 64, 128]
    res = _d2_slopes(Ls, (1, 2, 3))
    for ell, (e2, incr) in res.items():
        assert np.all(incr > 0), ell
        # linear in ln L: equal increments per doubling; observed within 5% (ell = 1) to 12% (ell = 3,
        # box still large relative to L = 32): band 25%
        assert incr[1] == pytest.approx(incr[0], rel=0.25), ell
    slope = {ell: res[ell][1].mean() for ell in res}
    # THEORY: slope ~ ell^-2 roughly; observed ratios slope(1)/slope(2) ~ 3.2, slope(1)/slope(3) ~ 6.5; require the
    # ordering with at least a factor 2 and 3.5 (an ell^-1 law would give only 2 and 3)
    assert slope[1] > 2 * slope[2] and slope[1] > 3.5 * slope[3]


@pytest.mark.parametrize("ell", [1])
def test_d3_error_converges_in_L(ell):
    """In d = 3 at fixed ell the worst-time local error converges as L grows: a finite kernel suffices."""
    Ls = [8, 16, 32]
    e = _eps_max(Ls, 3, ell)
    assert e[0] < e[1] < e[2]
    # increments shrink geometrically (THEORY: 0.020, 0.011, 0.005 for ell = 1): the ratio of successive
    # increments is ~0.5; require < 0.75, and the geometric tail bound keeps the limit below twice e[-1]
    q = (e[2] - e[1]) / (e[1] - e[0])
    assert q < 0.75
    assert e[2] + (e[2] - e[1]) * q / (1 - q) < 2 * e[2]


def test_d2_ell_growing_like_ln_L_keeps_the_error_bounded():
    """In d = 2, ell = round(ln L) keeps eps_max bounded where a fixed ell lets it grow."""
    Ls = [16, 32, 64, 128]
    grown = [theory.max_local_truncation_error(L, 2, default_ell(L)) for L in Ls]
    fixed = _eps_max(Ls, 2, 3)
    # fixed ell = 3 grows by ~3.4x over L = 16..128; with ell ~ ln L the last doublings change it by
    # < 5% (observed 0.043, 0.045, 0.046): band 15%, and the fixed-ell error ends well above
    assert fixed[-1] > 2.5 * fixed[0]
    assert max(grown[1:]) <= 1.15 * grown[1]
    assert grown[-1] < 0.7 * fixed[-1]


@pytest.mark.parametrize(
    "d,Ls,ell",
    [
        pytest.param(2, [32, 64, 128, 256, 512], 2, marks=slow),
        pytest.param(3, [8, 16, 32, 64], 1, marks=slow),
        pytest.param(3, [16, 32, 64], 2, marks=slow),  # at L = 8 a radius-2 box spans 5/8 of the lattice
    ],
)
def test_local_error_scaling_large_lattices(d, Ls, ell):
    """Large-L versions: d = 2 eps_max^2 linear in ln L (THEORY 5: 0.077 .. 0.171 at ell = 2), d = 3 converging."""
    e = _eps_max(Ls, d, ell)
    incr = np.diff(np.square(e) if d == 2 else e)
    if d == 2:
        # equal increments of eps^2 per doubling within 25% (linear in ln L)
        assert np.all(np.abs(incr / incr.mean() - 1) < 0.25)
    else:
        assert np.all(incr[1:] < 0.75 * incr[:-1])  # geometric convergence


def test_trained_three_layer_net_kernel_error():
    """The trained 3-layer, 4-channel conv net reaches the best local loss; its kernel error grows with L at fixed ell, not with ell ~ ln L."""
    process = OU(T=10.0)
    ts = np.geomspace(1e-3, 10.0, 80)
    errors = {"fixed": [], "log": []}
    for L in (8, 16, 32):
        field = GaussianField(L, 2)
        # the diffusion time where a radius-1 kernel is worst (THEORY 5: the error peaks at intermediate t)
        t = float(ts[np.argmax(theory.local_truncation_error(field, process, ts, 1))])
        C, K = field.mode_variance(process, t), field.score_kernel(process, t)
        for kind, ell in (("fixed", 1), ("log", default_ell(L))):
            net = LocalScoreNet(L, 2, ell, generator=torch.Generator().manual_seed(L + ell))
            report = train(net, field, process, t, steps=250, lr=0.05, optimizer="adam")
            K_opt = theory.optimal_local_kernel(field, process, t, ell)
            best = 0.5 * float((C * (torch.fft.fftn(K_opt) - K).abs() ** 2).sum()) / field.V
            # the box optimum is a hard lower bound (rounding 1e-12 relative); Adam gets within 1% in
            # 250 steps here (observed <= 1.01): allow 10%
            assert report.losses[-1] >= best * (1 - 1e-10)
            assert report.losses[-1] <= 1.1 * best, (L, ell)
            errors[kind].append(kernel_error(net, field, process, t))
    fixed, grown = errors["fixed"], errors["log"]
    # fixed ell = 1: 0.054, 0.082, 0.100 (observed); the claim is growth: increasing, >= 1.3x over 8..32
    assert fixed[0] < fixed[1] < fixed[2] and fixed[2] >= 1.3 * fixed[0]
    # ell ~ ln L: 0.012, 0.008, 0.012 (observed); controlled: never above half the smallest fixed-ell error
    assert max(grown) <= 0.5 * min(fixed)


@pytest.mark.parametrize("d,Ls", [(1, [8, 16, 32, 64]), (2, [8, 16, 32, 64]), (3, [6, 8, 12, 16])])
def test_local_gd_steps_bounded_by_the_box_condition_number(d, Ls):
    """Local GD steps obey n <= ln(eps)/ln(1 - 1/kappa_box) + 1; kappa_box grows ~L in d = 1, ~ln L in d = 2, converges in d = 3 (fixed ell = 1)."""
    process, t, eps = OU(), 0.01, 1e-2
    kappas = []
    for L in Ls:
        field = GaussianField(L, d)
        A, _, _ = theory.local_normal_equations(field, process, t, 1)
        ev = torch.linalg.eigvalsh(A)
        kappa = float(ev[-1] / ev[0])
        kappas.append(kappa)
        n = local_descent(field, process, t, 1, eps)
        # GD with eta = 1/lambda_max contracts the A-norm error by at least (1 - 1/kappa) per step
        assert n <= math.log(eps) / math.log(1 - 1 / kappa) + 1, L
    if d == 1:
        # box-average variance of a 1-d random walk: kappa ~ alpha L + beta, so the increments per doubling
        # double (observed 5.3, 11.2, 22.6); band [1.7, 2.3] for the ratio
        incr = np.diff(kappas)
        assert np.all((1.7 <= incr[1:] / incr[:-1]) & (incr[1:] / incr[:-1] <= 2.3))
    elif d == 2:
        incr = np.diff(kappas)  # ~ const per doubling (ln L); a power law with z >= 0.5 would double them
        assert np.all(incr > 0) and incr[-1] <= 1.3 * incr[0]
    else:
        incr = np.diff(kappas)
        assert np.all(incr > 0) and incr[-1] < 0.8 * incr[0]  # sum of 1/|x| over shells converges
