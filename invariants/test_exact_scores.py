"""THEORY 2, 6, 7, 8: every exact score is the gradient of the exact log marginal density.

Each test draws a target, a process and a time, builds the exact log-density of the forward
marginal independently of the score code (Gaussian log-density over modes, mixture logsumexp,
data-set logsumexp, 1-D quadrature), differentiates it with autograd and compares with
``exact_score(target, process)``.  All in float64.
"""

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from critdiff_ref import lattice
from critdiff_ref.processes import Brownian
from critdiff_ref.scores import exact_score
from critdiff_ref.strategies import (
    diffusion_times,
    gaussian_fields,
    gaussian_mixtures,
    processes,
    seeds,
    two_peak_mixtures,
)
from critdiff_ref.targets import EmpiricalDataset, Phi4Lattice, Phi4ZeroD, TwoDeltas
from critdiff_ref.testing import assert_close


def _autograd_score(log_density, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(log_density(x).sum(), x)
    return grad


@given(gaussian_fields(), processes(), st.data(), seeds())
def test_gaussian_field_score_is_gradient_of_log_density(field, process, data, seed):
    """The Fourier score -F^-1[F[x]/C_t] is grad log N(0, C_t) of the forward marginal (zero mode removed at r = 0)."""
    t = data.draw(diffusion_times(process, 0.01, 1.0))
    gen = torch.Generator().manual_seed(seed)
    x = field.forward_sample(process, field.sample(3, gen, dtype=torch.float64), t, gen)
    grad = _autograd_score(lambda y: field.log_density(y, process, t), x)
    if field.zero_mode_removed:
        grad = lattice.remove_zero_mode(grad, field.d)  # log_density ignores the k = 0 component of x
    score = exact_score(field, process)(x, t)
    # Both sides are two FFTs and a division: O(log V) roundings of the largest term |x|/min C.
    scale = float(x.abs().max()) / float(field.mode_variance(process, t)[field.mode_mask()].min())
    assert_close(score, grad, rtol=0.0, atol=256 * 2.2e-16 * scale)


@given(gaussian_fields(max_d=2), processes(("OU", "VP")), st.data(), seeds())
def test_gaussian_field_real_space_kernel(field, process, data, seed):
    """The score is the circular convolution of x with the real-space kernel K_t(x) (THEORY 2)."""
    t = data.draw(diffusion_times(process, 0.01, 1.0))
    x = field.sample(2, torch.Generator().manual_seed(seed), dtype=torch.float64)
    K = field.real_space_score_kernel(process, t)
    conv = torch.zeros_like(x)
    for idx in torch.cartesian_prod(*[torch.arange(field.L)] * field.d).reshape(-1, field.d):
        shift = tuple(int(i) for i in idx)
        conv += K[shift] * torch.roll(x, shifts=shift, dims=lattice.lattice_dims(field.d))
    # V-term sum of products bounded by sum |K| max|x|: rounding <= V eps sum|K| max|x|.
    bound = field.V * 2.2e-16 * float(K.abs().sum()) * float(x.abs().max())
    assert_close(exact_score(field, process)(x, t), conv, rtol=0.0, atol=16 * bound + 1e-300)


@given(gaussian_mixtures(), processes(), st.data())
def test_mixture_score_is_gradient_of_marginal_log_density(mixture, process, data):
    """Mixture score = d/dx log of the exact forward marginal mixture."""
    t = data.draw(diffusion_times(process))
    x = torch.linspace(-6, 6, 41, dtype=torch.float64)
    marginal = mixture.marginal(process, t)
    grad = _autograd_score(marginal.log_density, x)
    score = exact_score(mixture, process)(x, t)
    # |score| <= max |x - m| / s^2 ~ 1e3 for s >= 0.2; softmax + sum rounding: 64 eps of that scale.
    assert_close(score, grad, rtol=0.0, atol=64 * 2.2e-16 * (1 + float(grad.abs().max())))


@given(two_peak_mixtures(), processes(), st.data())
def test_two_peak_tanh_score(mixture, process, data):
    """The tanh form equals the general mixture score and grad log of the marginal (THEORY 6)."""
    t = data.draw(diffusion_times(process))
    x = torch.linspace(-5, 5, 31, dtype=torch.float64)
    tanh_form = exact_score(mixture, process)(x, t)
    general = exact_score(mixture.as_mixture(), process)(x, t)
    grad = _autograd_score(mixture.marginal(process, t).log_density, x)
    tol = 64 * 2.2e-16 * (1 + float(grad.abs().max()))  # a handful of elementwise ops
    assert_close(tanh_form, general, rtol=0.0, atol=tol)
    assert_close(tanh_form, grad, rtol=0.0, atol=tol)


@given(processes(), st.data(), seeds(), st.integers(1, 12), st.integers(1, 3))
def test_dataset_score_is_gradient_of_log_marginal(process, data, seed, N, D):
    """Softmax/Tweedie score (a<y> - x)/Xi = grad of logsumexp log p_t for a data set (THEORY 7)."""
    t = data.draw(diffusion_times(process, 0.05, 1.0))
    gen = torch.Generator().manual_seed(seed)
    ds = EmpiricalDataset(torch.randn(N, D, generator=gen, dtype=torch.float64))
    x = 2 * torch.randn(5, D, generator=gen, dtype=torch.float64)
    grad = _autograd_score(lambda y: ds.log_marginal(y, process, t), x)
    score = exact_score(ds, process)(x, t)
    Xi = float(process.Xi(t))
    # Tweedie divides O(|x| + |y|) by Xi: 256 eps of |score| + |x|/Xi.
    assert_close(score, grad, rtol=0.0, atol=256 * 2.2e-16 * (float(grad.abs().max()) + float(x.abs().max()) / Xi + 1))


@given(processes(), st.data(), st.floats(0.3, 3.0))
def test_two_deltas_score(process, data, mu):
    """Two deltas: (a mu tanh(a mu x / Xi) - x)/Xi = grad log p_t = data-set score with points +-mu."""
    t = data.draw(diffusion_times(process, 0.05, 1.0))
    target = TwoDeltas(mu)
    x = torch.linspace(-4, 4, 17, dtype=torch.float64)
    s = exact_score(target, process)(x, t)
    grad = _autograd_score(lambda y: target.log_marginal(y, process, t), x)
    ds = EmpiricalDataset(torch.tensor([[-mu], [mu]], dtype=torch.float64))
    s_ds = exact_score(ds, process)(x[:, None], t)[:, 0]
    Xi = float(process.Xi(t))
    tol = 256 * 2.2e-16 * (float(grad.abs().max()) + 4 / Xi + 1)
    assert_close(s, grad, rtol=0.0, atol=tol)
    assert_close(s, s_ds, rtol=0.0, atol=tol)


@given(st.sampled_from([1.0, -1.0]), processes(("OU", "VE", "VP")), st.data())
def test_phi4_zero_d_quadrature_score(mu2, process, data):
    """0-D phi^4: the quadrature score equals d/dx log p_t from an independent fine-grid quadrature.

    The package uses Tweedie sums on a 6001-point grid (or Gauss–Hermite for small noise); the
    reference differentiates log p_t(x) = log int exp(-S(y) - (x - a y)^2 / (2 Xi)) dy, evaluated by
    a 400001-point trapezoidal rule in log space, by central differences.  Times with
    sqrt(Xi)/a >= 0.02 (= 200 reference grid steps, trapezoid error < e^-1000)."""
    import numpy as np
    from scipy.special import logsumexp

    t = data.draw(diffusion_times(process, 0.0, 1.0))
    a, Xi = float(process.a(t)), float(process.Xi(t))
    target = Phi4ZeroD(mu2, 0.4)
    xs = np.array([-2.5, -0.7, 0.3, 1.9])
    s = exact_score(target, process)(torch.tensor(xs, dtype=torch.float64), t).numpy()
    if Xi == 0.0:
        np.testing.assert_allclose(s, target.force(torch.tensor(xs)).numpy(), rtol=1e-14)
        return
    if math.sqrt(Xi) / a < 0.02:
        return  # covered by test_phi4_zero_d_small_noise_branch below
    y = np.linspace(-target.phi_max, target.phi_max, 400001)
    S = mu2 * y**2 / 2 + 0.4 * y**4 / 24

    def log_p(x):
        return logsumexp(-S - (x - a * y) ** 2 / (2 * Xi))

    h = 1e-4
    fd = np.array([(log_p(x + h) - log_p(x - h)) / (2 * h) for x in xs])
    # central difference: h^2 |d^3 log p_t| / 6 <= 1e-8 |Xi^-1 scale|; logsumexp rounding eps/h ~ 2e-12.
    np.testing.assert_allclose(s, fd, rtol=1e-7, atol=1e-7 / Xi)


@given(st.sampled_from([1.0, -1.0]), st.floats(0.0, 0.99))
def test_phi4_zero_d_small_noise_branch(mu2, frac):
    """Both quadrature branches (Gauss–Hermite for small noise, grid Tweedie above) agree where both apply.

    A coarse 601-point density switches to Gauss–Hermite at a width 10x larger than the default
    6001-point one, so at the same time one uses each branch; both are converged (grid: width >= 2
    steps gives < e^-79 error; Gauss–Hermite: p_0 smooth on the scale sqrt(Xi))."""
    target = Phi4ZeroD(mu2, 0.4)
    process = Brownian(1.0, 1.0)  # a = 1, Xi = t
    fine, coarse = target.density(), Phi4ZeroD(mu2, 0.4, n_grid=601).density()
    width = 2 * fine.h * (coarse.h / fine.h) ** frac  # in [2 h_fine, 2 h_coarse): one branch each
    t = width**2
    x = torch.tensor([-2.5, -0.7, 0.3, 1.9], dtype=torch.float64)
    # both are sums of ~1e3 positive terms normalised by a softmax: 1e3 eps relative, times |score|.
    assert_close(fine.score(x, process, t), coarse.score(x, process, t), rtol=1e-10, atol=1e-10)


@given(st.integers(3, 6), st.integers(1, 2), st.floats(0.05, 0.2), processes(("OU", "VE")), st.data(), seeds())
def test_phi4_lattice_free_limit_score(L, d, kappa_frac, process, data, seed):
    """At lam = 0 lattice phi^4 is Gaussian with c0 = 1/(2 kappa (khat^2 + m^2)): its action is
    -log density up to a constant, so -dS/dphi is the t = 0 score (THEORY 8)."""
    kappa = kappa_frac * 2 / (2 * d)  # inside (0, 1/(2d))
    phi4 = Phi4Lattice(L, d, kappa, 0.0)
    x = torch.randn((2,) + phi4.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    score0 = exact_score(phi4, process)(x, 0.0)
    assert_close(score0, phi4.force(x), rtol=0.0, atol=1e3 * 2.2e-16 * float(phi4.force(x).abs().max()))
    t = data.draw(diffusion_times(process, 0.05, 1.0))
    free = phi4.free_field()
    grad = _autograd_score(lambda y: free.log_density(y, process, t), x)
    assert_close(exact_score(phi4, process)(x, t), grad, rtol=0.0, atol=1e3 * 2.2e-16 * float(grad.abs().max()))
