"""THEORY 7: the exact score and its Jacobian are posterior (Boltzmann-ensemble) averages.

For any discrete p_0 (and 1-D Gaussian mixtures, whose posterior is a sampleable mixture) and any
linear forward process, with beta = 1/Xi:
score = grad ln p_t = (a <y> - x)/Xi, grad grad ln p_t = -I/Xi + a^2 Cov_post/Xi^2,
-grad_x F = a <y>, ln p_t = -|x|^2/(2 Xi) - beta F - (D/2) ln(2 pi Xi) and d<y>/dx = beta a Cov_post.
Each side is computed independently: autograd of ``log_marginal`` (cdist/logsumexp) or of the
free energy (energies/logsumexp) against the softmax-weight formulas.

Tolerances.  Every quantity is a softmax average of logits ``l_j = |x - a y_j|^2/(2 Xi)``; an
absolute rounding error ``eps * l`` in a logit becomes a relative error ``eps * l`` in its weight,
so every weight carries a relative error <= c eps (1 + L) with ``L = max_j l_j`` and c a few
dozen operations.  Multiplying by the scale of the averaged quantity gives the bounds below,
all with c = 64 (``K_EPS``).  Sizes stay N, batch <= 25 so ``torch.cdist`` uses its exact
(non-matmul) path.
"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from critdiff_ref import thermo
from critdiff_ref.processes import VP
from critdiff_ref.strategies import diffusion_times, gaussian_mixtures, processes
from critdiff_ref.targets import EmpiricalDataset, GaussianMixture1D, TwoDeltas
from critdiff_ref.testing import assert_close, eps

K_EPS = 64  # operation-count factor in every eps bound (module docstring)
EPS = eps(torch.float64)
ALPHA = 1e-3  # false-failure rate of the statistical test (posterior sampling)


@st.composite
def data_and_points(draw):
    """An EmpiricalDataset (N in 1..6 points in D in 1..3 dims, coords in [-3, 3]) and x (B, D)."""
    N, D, B = draw(st.integers(1, 6)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    coord = st.floats(-3.0, 3.0, allow_nan=False)
    pts = torch.tensor(draw(st.lists(coord, min_size=N * D, max_size=N * D)), dtype=torch.float64).reshape(N, D)
    xs = st.floats(-4.0, 4.0, allow_nan=False)
    x = torch.tensor(draw(st.lists(xs, min_size=B * D, max_size=B * D)), dtype=torch.float64).reshape(B, D)
    return EmpiricalDataset(pts), x


def _scales(data: EmpiricalDataset, x: torch.Tensor, a: float, Xi: float) -> tuple[float, float]:
    """``(1 + L, S)``: the logit bound and the length scale ``S = max|x| + a max|y|`` of the averages."""
    S = float(x.norm(dim=-1).max()) + a * float(data.points.norm(dim=-1).max())
    # floor at the data's unit scale: for |x - a y| < 1e-154 cdist's squared distance underflows
    # to 0, an absolute error far below eps at coordinates of order one
    S = max(S, 1.0)
    return 1.0 + S * S / (2 * Xi), S


@given(data_and_points(), st.data())
def test_score_is_tweedie_posterior_mean(dx, data):
    """The autograd gradient of ln p_t equals (a <y> - x)/Xi for every process, time and data set."""
    target, x = dx
    p = data.draw(processes())
    t = data.draw(diffusion_times(p, 0.05, 1.0))
    a, Xi = float(p.a(t)), float(p.Xi(t))
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(target.log_marginal(xr, p, t).sum(), xr)
    formula = (a * thermo.magnetisation(target, x, p, t) - x) / Xi
    one_plus_L, S = _scales(target, x, a, Xi)
    # weights' relative error K eps (1 + L) times the averaged vector's scale S / Xi
    assert_close(grad, formula, rtol=0.0, atol=K_EPS * EPS * one_plus_L * S / Xi)


@given(data_and_points(), st.data())
def test_score_jacobian_is_posterior_covariance(dx, data):
    """The Jacobian of the score equals -I/Xi + a^2 Cov_post/Xi^2 (blocks of different x are zero)."""
    target, x = dx
    p = data.draw(processes())
    t = data.draw(diffusion_times(p, 0.05, 1.0))
    a, Xi = float(p.a(t)), float(p.Xi(t))
    B, D = x.shape
    J = torch.autograd.functional.jacobian(lambda z: target.score(z, p, t), x)  # (B, D, B, D)
    cov = thermo.posterior_covariance(target, x, p, t)
    expected = torch.zeros(B, D, B, D, dtype=torch.float64)
    for b in range(B):
        expected[b, :, b, :] = -torch.eye(D, dtype=torch.float64) / Xi + a * a * cov[b] / Xi**2
    one_plus_L, S = _scales(target, x, a, Xi)
    # second moments of the weights: relative error K eps (1 + L) on a scale S^2/Xi^2, plus 1/Xi
    assert_close(J, expected, rtol=0.0, atol=K_EPS * EPS * one_plus_L * (S * S / Xi**2 + 1 / Xi))


@given(data_and_points(), st.data())
def test_free_energy_generates_mean_and_density(dx, data):
    """-grad_x F = a <y> and ln p_t = -|x|^2/(2 Xi) - F/Xi - (D/2) ln(2 pi Xi)."""
    target, x = dx
    p = data.draw(processes())
    t = data.draw(diffusion_times(p, 0.05, 1.0))
    a, Xi = float(p.a(t)), float(p.Xi(t))
    D = target.D
    xr = x.clone().requires_grad_(True)
    F = thermo.free_energy(target, xr, p, t)
    (gradF,) = torch.autograd.grad(F.sum(), xr)
    one_plus_L, S = _scales(target, x, a, Xi)
    # -grad F = Xi grad ln Z: weights' relative error K eps (1 + L) on the scale a S
    assert_close(-gradF, a * target.posterior_mean(x, p, t), rtol=0.0, atol=K_EPS * EPS * one_plus_L * a * S)
    rhs = -(x * x).sum(-1) / (2 * Xi) - F.detach() / Xi - 0.5 * D * math.log(2 * math.pi * Xi)
    # both sides are sums of terms of size <= 1 + L + |x|^2/(2Xi) + D |ln(2 pi Xi)| + ln N, each with
    # K eps relative rounding
    scale = one_plus_L + float((x * x).sum(-1).max()) / (2 * Xi) + D * abs(math.log(2 * math.pi * Xi)) + math.log(target.N)
    assert_close(target.log_marginal(x, p, t), rhs, rtol=0.0, atol=K_EPS * EPS * scale)


@given(data_and_points(), st.data())
def test_susceptibility_is_fluctuation_dissipation(dx, data):
    """d<y>/dx (autograd) equals beta a Cov_post (fluctuation–dissipation theorem)."""
    target, x = dx
    p = data.draw(processes())
    t = data.draw(diffusion_times(p, 0.05, 1.0))
    a, Xi = float(p.a(t)), float(p.Xi(t))
    B, D = x.shape
    J = torch.autograd.functional.jacobian(lambda z: target.posterior_mean(z, p, t), x)
    chi = thermo.susceptibility(target, x, p, t)
    one_plus_L, S = _scales(target, x, a, Xi)
    Y = max(float(target.points.norm(dim=-1).max()), 1.0)  # unit-scale floor as in _scales
    for b in range(B):
        # second moments of the weights on the scale a S^2/Xi (as for the score Jacobian, times Xi/a),
        # plus the autograd path's cancellation of the common -x/Xi logit gradient against y: S Y/Xi
        assert_close(J[b, :, b, :], chi[b], rtol=0.0, atol=K_EPS * EPS * one_plus_L * S * (a * S + Y) / Xi)


@given(st.floats(0.2, 3.0), st.lists(st.floats(-4.0, 4.0), min_size=1, max_size=8), st.data())
def test_two_deltas_is_a_two_point_data_set(mu, xs, data):
    """Two deltas ±mu are the data set {-mu, +mu}: same ln Z, <y>, Cov_post and Y, and the tanh score
    equals the autograd gradient of its ln p_t with Jacobian -1/Xi + a^2 Var_post/Xi^2 per site."""
    p = data.draw(processes())
    t = data.draw(diffusion_times(p, 0.05, 1.0))
    a, Xi = float(p.a(t)), float(p.Xi(t))
    x = torch.tensor(xs, dtype=torch.float64)
    deltas, pair = TwoDeltas(mu), EmpiricalDataset(torch.tensor([[-mu], [mu]], dtype=torch.float64))
    xe = x[:, None]
    one_plus_L = 1.0 + (float(x.abs().max()) + a * mu) ** 2 / (2 * Xi)
    S = max(float(x.abs().max()) + a * mu, 1.0)  # unit-scale floor as in _scales
    tol = K_EPS * EPS * one_plus_L  # weights' relative error (module docstring)
    assert_close(thermo.log_partition_function(deltas, x, p, t), thermo.log_partition_function(pair, xe, p, t), rtol=0.0, atol=tol)
    assert_close(thermo.magnetisation(deltas, x, p, t), thermo.magnetisation(pair, xe, p, t)[:, 0], rtol=0.0, atol=tol * mu)
    assert_close(thermo.posterior_covariance(deltas, x, p, t), thermo.posterior_covariance(pair, xe, p, t)[:, 0, 0], rtol=0.0, atol=tol * mu * mu)
    assert_close(thermo.participation_ratio(deltas, x, p, t), thermo.participation_ratio(pair, xe, p, t), rtol=0.0, atol=tol)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(deltas.log_marginal(xr, p, t).sum(), xr)
    assert_close(grad, deltas.score(x, p, t), rtol=0.0, atol=tol * S / Xi)
    J = torch.autograd.functional.jacobian(lambda z: deltas.score(z, p, t), x)
    expected = torch.diag(-1 / Xi + a * a * thermo.posterior_covariance(deltas, x, p, t) / Xi**2)
    assert_close(J, expected, rtol=0.0, atol=tol * (S * S / Xi**2 + 1 / Xi))


# -- continuous targets with a sampleable posterior: 1-D Gaussian mixtures ---------------------
@given(gaussian_mixtures(), st.lists(st.floats(-4.0, 4.0), min_size=1, max_size=6), st.data())
def test_mixture_score_and_jacobian_are_posterior_moments(mix, xs, data):
    """For a Gaussian-mixture p_0 the autograd score and its derivative equal (a <y> - x)/Xi and
    -1/Xi + a^2 Var_post/Xi^2, with <y>, Var_post from the exact posterior mixture; -dF/dx = a <y>."""
    p = data.draw(processes())
    t = data.draw(diffusion_times(p, 0.05, 1.0))
    a, Xi = float(p.a(t)), float(p.Xi(t))
    x = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(mix.marginal(p, t).log_density(x).sum(), x, create_graph=True)
    (hess,) = torch.autograd.grad(grad.sum(), x)  # elementwise target: the Jacobian is diagonal
    xd = x.detach()
    mean = thermo.magnetisation(mix, xd, p, t)
    var = thermo.posterior_covariance(mix, xd, p, t)
    # logits |x - a m_k|^2 / (2 (a^2 s_k^2 + Xi)) <= L with s_k >= 0.2, |m_k| <= 3: the responsibilities
    # carry K eps (1 + L) relative error (module docstring); the averaged quantities have scale
    # S = |x| + a (max|m_k| + 3 max s_k) for the mean and S^2 for the variance
    S = max(float(xd.abs().max()) + a * (max(map(abs, mix.means)) + 3 * max(mix.stds)), 1.0)
    one_plus_L = 1.0 + S * S / (2 * (a * a * min(mix.stds) ** 2 + Xi))
    tol = K_EPS * EPS * one_plus_L
    assert_close(grad.detach(), (a * mean - xd) / Xi, rtol=0.0, atol=tol * S / Xi)
    assert_close(hess, -1 / Xi + a * a * var / Xi**2, rtol=0.0, atol=tol * (S * S / Xi**2 + 1 / Xi))
    xr = xd.clone().requires_grad_(True)
    (dF,) = torch.autograd.grad(thermo.free_energy(mix, xr, p, t).sum(), xr)
    # F = -Xi ln p_t - x^2/2 + const: -dF/dx = Xi d ln p_t/dx + x cancels terms of size |x| down to a <y>
    assert_close(-dF, a * mean, rtol=0.0, atol=tol * (a * S + float(xd.abs().max())))


@pytest.mark.parametrize("kind", ["data", "deltas", "mixture"])
def test_posterior_samples_have_the_posterior_moments(kind):
    """posterior_sample draws from p(y | x): its sample mean and variance match <y> and Cov_post."""
    p, t, n = VP(), 0.4, 40_000
    gen = torch.Generator().manual_seed(11)
    if kind == "data":
        target = EmpiricalDataset(torch.tensor([[-1.0, 0.5], [0.3, 0.2], [2.0, -1.0], [0.0, 1.5]], dtype=torch.float64))
        x = torch.tensor([[0.1, 0.4], [1.2, -0.5]], dtype=torch.float64)
        var = torch.diagonal(thermo.posterior_covariance(target, x, p, t), dim1=-2, dim2=-1)
    else:
        target = TwoDeltas(1.3) if kind == "deltas" else GaussianMixture1D((0.3, 0.7), (-1.0, 2.0), (0.5, 0.3))
        x = torch.tensor([-1.0, 0.2, 1.5], dtype=torch.float64)
        var = thermo.posterior_covariance(target, x, p, t)
    y = thermo.posterior_sample(target, x, p, t, n, gen)
    mean = thermo.magnetisation(target, x, p, t)
    k = mean.numel()
    # two-sided z-tests, Bonferroni over the 2k coordinates: false-failure rate ALPHA in total.
    # The mean's standard error is exact (sqrt(Var_post / n)); the variance's is estimated from the
    # fourth central moment (CLT at n = 40000)
    z = stats.norm.isf(ALPHA / (4 * k))
    assert bool(((y.mean(0) - mean).abs() <= z * (var / n).sqrt()).all())
    dev2 = (y - mean) ** 2
    se_var = dev2.std(0) / math.sqrt(n)
    assert bool(((dev2.mean(0) - var).abs() <= z * se_var).all())
