"""Unit tests of the targets (THEORY 2, 6, 7, 8): exact facts, samplers, and bad input."""

import math

import pytest
import torch

from critdiff_ref import lattice
from critdiff_ref.processes import OU, VE, VP, Brownian
from critdiff_ref.targets import (
    Density1D,
    EmpiricalDataset,
    GaussianField,
    GaussianMixture1D,
    Phi4Lattice,
    Phi4ZeroD,
    TwoDeltas,
    TwoGaussianMixture,
)
from critdiff_ref.testing import assert_close

# Statistical checks: fixed seeds; 6-sigma bounds (two-sided normal tail 2e-9 per comparison).
K_SIGMA = 6.0


class TestGaussianField:
    def test_c0_and_zero_mode(self):
        f = GaussianField(6, 2, 0.0)
        c0 = f.c0()
        assert c0.shape == (6, 6) and c0[0, 0] == 0.0
        assert_close(c0[1, 0], torch.tensor(1 / (4 * math.sin(math.pi / 6) ** 2), dtype=torch.float64))
        g = GaussianField(6, 2, 0.5)
        assert g.c0()[0, 0] == 2.0 and not g.zero_mode_removed

    @pytest.mark.parametrize("p", [OU(), VE(), VP()])
    def test_mode_variance(self, p):
        f = GaussianField(5, 3, 0.3)
        t = 0.37 * p.T
        assert_close(f.mode_variance(p, t), p.a(t) ** 2 * f.c0() + p.Xi(t))
        ts = torch.tensor([0.0, t], dtype=torch.float64)
        both = f.mode_variance(p, ts)
        assert both.shape == (2, 5, 5, 5)
        assert_close(both[1], f.mode_variance(p, t))
        crit = GaussianField(5, 2, 0.0)
        assert crit.mode_variance(p, t)[0, 0] == 0.0  # noise has no zero mode at r = 0 either

    def test_real_space_covariance_matches_dense_inverse(self):
        """G_0 = (khat^2 + r)^-1 as a V x V matrix inverse (independent of the FFT)."""
        f = GaussianField(4, 2, 0.7)
        dense = torch.linalg.inv(lattice.laplacian_matrix(4, 2) + 0.7 * torch.eye(16, dtype=torch.float64))
        # inverse of a matrix with condition number ~ 12: 1e3 eps.
        assert_close(f.real_space_covariance().flatten(), dense[0], rtol=1e-13, atol=1e-13)

    def test_sample_covariance(self):
        """Sample mode variances of the FFT sampler agree with c0 (chi^2-type k-sigma bound per mode)."""
        f = GaussianField(8, 2, 0.0)
        n = 4000
        x = f.sample(n, torch.Generator().manual_seed(0), dtype=torch.float64)
        assert x.shape == (n, 8, 8)
        assert float(x.mean(dim=(-2, -1)).abs().max()) < 1e-12  # zero mode removed exactly
        v = lattice.fft(x, 2).abs().pow(2).mean(0)
        mask = f.mode_mask()
        # |x_k|^2 / c0 has mean 1 and variance <= 2 (real modes) or 1 (complex): sd of the mean <= sqrt(2/n).
        z = ((v[mask] / f.c0()[mask]) - 1) / math.sqrt(2 / n)
        assert float(z.abs().max()) < K_SIGMA

    def test_log_density_normalised(self):
        """r > 0, d = 1, L = 2: the density integrates to 1 (2-D numerical quadrature)."""
        f = GaussianField(2, 1, 0.5)
        u = torch.linspace(-12, 12, 801, dtype=torch.float64)
        X = torch.stack(torch.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
        mass = f.log_density(X).exp().sum() * (u[1] - u[0]) ** 2
        assert abs(float(mass) - 1) < 1e-9  # trapezoid on a Gaussian: exponentially small error

    def test_log_density_matches_dense_gaussian(self):
        f = GaussianField(3, 2, 0.4)
        x = torch.randn(5, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        cov = torch.linalg.inv(lattice.laplacian_matrix(3, 2) + 0.4 * torch.eye(9, dtype=torch.float64))
        ref = torch.distributions.MultivariateNormal(torch.zeros(9, dtype=torch.float64), cov).log_prob(x.reshape(5, 9))
        assert_close(f.log_density(x), ref, rtol=1e-12, atol=1e-12)  # slogdet/solve of a 9x9 SPD matrix

    @pytest.mark.parametrize(
        "kw,exc,match",
        [
            (dict(L=1), ValueError, "L"),
            (dict(L=4, d=0), ValueError, "d"),
            (dict(L=4, r=-0.1), ValueError, "r"),
            (dict(L=4, r=float("inf")), ValueError, "r"),
            (dict(L=4, r="0"), TypeError, "r"),
            (dict(L=4, amplitude=0.0), ValueError, "amplitude"),
        ],
    )
    def test_bad_input(self, kw, exc, match):
        with pytest.raises(exc, match=match):
            GaussianField(**kw)

    def test_bad_field_shape(self):
        f = GaussianField(4, 2)
        with pytest.raises(ValueError, match="shape"):
            f.log_density(torch.zeros(3, 5, 5))
        with pytest.raises(ValueError, match="n must"):
            f.sample(0)
        with pytest.raises(ValueError, match=r"\[0, T\]"):
            f.mode_variance(VE(), 2.0)


class TestMixtures:
    def test_cumulants_of_single_gaussian(self):
        g = GaussianMixture1D((1.0,), (0.7,), (1.3,))
        assert g.cumulant(1) == 0.7 and math.isclose(g.cumulant(2), 1.69, rel_tol=1e-15)
        assert all(g.cumulant(n) == 0.0 for n in range(3, 9))

    def test_cumulants_against_numerical_cgf(self):
        """kappa_n = n-th derivative of log E[e^{kX}] at 0 (finite differences of the closed-form CGF)."""
        g = GaussianMixture1D((0.2, 0.5, 0.3), (-1.0, 0.5, 2.0), (0.4, 0.8, 0.3))

        def cgf(k):
            return math.log(sum(w * math.exp(m * k + s * s * k * k / 2) for w, m, s in zip(g.weights, g.means, g.stds)))

        h = 1e-2
        d2 = (cgf(h) - 2 * cgf(0) + cgf(-h)) / h**2
        d3 = (cgf(2 * h) - 2 * cgf(h) + 2 * cgf(-h) - cgf(-2 * h)) / (2 * h**3)
        # central differences: O(h^2) relative truncation with derivatives of order ~10: 1e-3.
        assert math.isclose(g.cumulant(2), d2, rel_tol=1e-3)
        assert math.isclose(g.cumulant(3), d3, rel_tol=1e-3, abs_tol=1e-3)

    def test_sampler_moments(self):
        g = GaussianMixture1D((0.3, 0.7), (-1.0, 2.0), (0.5, 0.4))
        n = 200_000
        x = g.sample(n, torch.Generator().manual_seed(3))
        for k in (1, 2):
            sd = math.sqrt((g.moment(2 * k) - g.moment(k) ** 2) / n)
            assert abs(float((x**k).mean()) - g.moment(k)) < K_SIGMA * sd

    def test_two_peak_sampler(self):
        t = TwoGaussianMixture(1.2, 0.3)
        x = t.sample((1000, 50), torch.Generator().manual_seed(4))
        n = x.numel()
        assert abs(float(x.mean())) < K_SIGMA * math.sqrt(t.cumulant(2) / n)
        assert abs(float(x.var()) - t.cumulant(2)) < K_SIGMA * math.sqrt((t.moment(4) - t.moment(2) ** 2) / n)

    @pytest.mark.parametrize(
        "args,match",
        [
            (((0.5, 0.6), (0.0, 1.0), (1.0, 1.0)), "sum to 1"),
            (((1.0,), (0.0, 1.0), (1.0,)), "same length"),
            (((0.5, 0.5), (0.0, 1.0), (1.0, 0.0)), "stds"),
            (((1.2, -0.2), (0.0, 1.0), (1.0, 1.0)), "weights"),
            (((1.0,), (float("nan"),), (1.0,)), "means"),
        ],
    )
    def test_bad_mixture(self, args, match):
        with pytest.raises(ValueError, match=match):
            GaussianMixture1D(*args)

    def test_bad_two_peak_and_order(self):
        with pytest.raises(ValueError, match="mu"):
            TwoGaussianMixture(-1.0, 1.0)
        with pytest.raises(ValueError, match="s must"):
            TwoGaussianMixture(1.0, 0.0)
        with pytest.raises(ValueError, match="order"):
            TwoGaussianMixture().cumulant(0)


class TestDiscrete:
    def test_two_deltas_needs_positive_time(self):
        with pytest.raises(ValueError, match="t must be > 0"):
            TwoDeltas().score(torch.zeros(3), Brownian(), 0.0)
        with pytest.raises(ValueError, match="mu"):
            TwoDeltas(0.0)

    def test_dataset_posterior(self):
        pts = torch.tensor([[0.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
        ds = EmpiricalDataset(pts)
        p = Brownian(1.0, 1.0)
        x = torch.tensor([[1.5, 0.0]], dtype=torch.float64)  # equidistant: equal weights
        assert_close(ds.log_weights(x, p, 0.5).exp(), torch.full((1, 2), 0.5, dtype=torch.float64))
        assert_close(ds.posterior_mean(x, p, 0.5), torch.tensor([[1.5, 0.0]], dtype=torch.float64))
        cov = ds.posterior_covariance(x, p, 0.5)
        assert_close(cov, torch.tensor([[[2.25, 0.0], [0.0, 0.0]]], dtype=torch.float64))
        assert_close(ds.participation_ratio(x, p, 0.5), torch.tensor([0.5], dtype=torch.float64))

    def test_bad_dataset(self):
        with pytest.raises(ValueError, match="points"):
            EmpiricalDataset(torch.zeros(3))
        with pytest.raises(ValueError, match="finite"):
            EmpiricalDataset(torch.tensor([[float("nan")]]))
        ds = EmpiricalDataset(torch.zeros(2, 3))
        with pytest.raises(ValueError, match="shape"):
            ds.score(torch.zeros(4, 2), Brownian(), 0.5)


class TestPhi4:
    @pytest.mark.parametrize("mu2", [1.0, -1.0])
    def test_zero_d_sampler_matches_quadrature(self, mu2):
        target = Phi4ZeroD(mu2, 0.4)
        n = 100_000
        x = target.sample(n, torch.Generator().manual_seed(5))
        for k in (2, 4):
            sd = math.sqrt((target.moment(2 * k) - target.moment(k) ** 2) / n)
            assert abs(float((x**k).mean()) - target.moment(k)) < K_SIGMA * sd

    def test_zero_d_normalisation(self):
        d = Phi4ZeroD(-1.0, 0.4).density()
        assert math.isclose(d.moment(0), 1.0, rel_tol=1e-13)
        assert abs(d.moment(1)) < 1e-13  # symmetric

    def test_density1d_validation(self):
        y = torch.linspace(-1, 1, 50, dtype=torch.float64)
        with pytest.raises(ValueError, match="decay"):
            Density1D(y, torch.zeros(50))
        with pytest.raises(ValueError, match="uniform"):
            Density1D(y**3, -(y**2) * 100)
        with pytest.raises(ValueError, match="g must"):
            Phi4ZeroD(1.0, 0.0)

    def test_grid_density_without_analytic_form_refuses_small_noise(self):
        y = torch.linspace(-10, 10, 2001, dtype=torch.float64)
        d = Density1D(y, -(y**2) / 2)
        with pytest.raises(ValueError, match="noise too small"):
            d.score(torch.zeros(2, dtype=torch.float64), VE(), 1e-6)
        # Gaussian check: N(0,1) under VE has score -x / (1 + Xi)
        x = torch.tensor([-1.0, 0.5], dtype=torch.float64)
        Xi = float(VE().Xi(0.5))
        assert_close(d.score(x, VE(), 0.5), -x / (1 + Xi), rtol=1e-12, atol=1e-12)

    @pytest.mark.parametrize("mu2", [1.0, -1.0])
    @pytest.mark.parametrize("process", [VE(), OU(), VP()], ids=["VE", "OU", "VP"])
    def test_grid_quadrature_matches_direct_sums(self, mu2, process):
        """Density1D.score and log_marginal (blocked sums) equal the plain (batch, grid) trapezoidal sums of
        p_t(x) = int p_0(y) N(x; a y, Xi) dy (THEORY 8): Tweedie (a <y> - x) / Xi and log p_t, any x shape."""
        target = Phi4ZeroD(mu2, 0.4)
        dens = target.density()
        y, n, e = dens.y, dens.y.numel(), torch.finfo(torch.float64).eps
        x = torch.linspace(-6.0, 6.0, 201, dtype=torch.float64).reshape(3, 67)  # more points than 2 blocks
        log_p0 = -target.action(y)
        log_Z = torch.logsumexp(log_p0, 0) + math.log(dens.h)  # trapezoid; the ends carry < e^-60
        for t in (1e-3 * process.T, 0.1 * process.T, process.T):
            a, Xi = float(process.a(t)), float(process.Xi(t))
            assert math.sqrt(Xi) / a >= 2 * dens.h  # the grid branch, not Gauss–Hermite
            logits = log_p0 - (x[..., None] - a * y) ** 2 / (2 * Xi)  # (3, 67, n)
            score = (a * (torch.softmax(logits, -1) * y).sum(-1) - x) / Xi
            log_pt = torch.logsumexp(logits, -1) + math.log(dens.h) - log_Z - 0.5 * math.log(2 * math.pi * Xi)
            # Same sums in another order and blocking. A sum of n positive terms has <= n eps relative
            # rounding; each weight e^(l - m) (m = max l) carries eps (|l| + |m|) from its logit, and the
            # weights that matter have |l| <= |m| + 40: so Z and sum e^(l-m) y are within k relative,
            # <y> within 2 k max|y|, and a <y> - x within 2 k (a max|y| + max|x|) (eps |x| included).
            m = float(logits.amax(-1).abs().max())
            k = (n + 2 * m + 80) * e
            scale = (a * float(y.abs().max()) + float(x.abs().max())) / Xi
            assert_close(dens.score(x, process, t), score, rtol=0.0, atol=2 * k * scale)
            assert_close(dens.log_marginal(x, process, t), log_pt, rtol=k, atol=2 * k)

    def test_lattice_action_and_force(self):
        phi4 = Phi4Lattice(4, 2, 0.25, 0.022)
        x = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(phi4.action(x).sum(), x)
        assert_close(phi4.force(x.detach()), -g)
        assert_close(phi4.action(-x.detach()), phi4.action(x.detach()))  # Z2 symmetry

    def test_free_field_covariance(self):
        """lam = 0: the action is 1/2 phi^T (2 kappa (-Lap + m^2)) phi (THEORY 8)."""
        phi4 = Phi4Lattice(3, 2, 0.1, 0.0)
        x = torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        A = 2 * 0.1 * (lattice.laplacian_matrix(3, 2) + (1 / 0.1 - 4) * torch.eye(9, dtype=torch.float64))
        xf = x.reshape(2, 9)
        assert_close(phi4.action(x), 0.5 * torch.einsum("bi,ij,bj->b", xf, A, xf))
        f = phi4.free_field()
        assert_close(f.real_space_covariance().flatten(), torch.linalg.inv(A)[0], rtol=1e-12, atol=1e-12)

    @pytest.mark.parametrize(
        "kw,match",
        [(dict(kappa=-0.1), "kappa"), (dict(lam=-1.0), "lam"), (dict(kappa=0.3, lam=0.0), "1/\\(2d\\)")],
    )
    def test_bad_lattice_params(self, kw, match):
        with pytest.raises(ValueError, match=match):
            Phi4Lattice(4, 2, **kw)


def test_colour_caches_sqrt_c0_per_dtype_without_changing_the_field():
    """colour() computes sqrt(c0) once per (dtype, device); the result is the uncached filter
    F^-1[sqrt(c0) F[z]] (to rounding of the two FFT routes: 1e-12 relative in float64, 1e-5 in
    float32, ~50 ulps of the field scale), and the cache is not part of the field's value."""
    field = GaussianField(6, 2, r=0.3)
    for dtype, rtol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        z = torch.randn((3, 6, 6), generator=torch.Generator().manual_seed(1), dtype=dtype)
        direct = torch.fft.ifftn(torch.fft.fftn(z, dim=(-2, -1)) * field.c0(dtype=dtype).sqrt(), dim=(-2, -1)).real
        first, second = field.colour(z), field.colour(z)
        assert_close(first, direct, rtol=rtol, atol=rtol)
        assert torch.equal(first, second)
    assert sum(key[0] == "sqrt_c0" for key in field._spectra) == 2  # one entry per dtype
    assert field == GaussianField(6, 2, r=0.3) and hash(field) == hash(GaussianField(6, 2, r=0.3))
    assert "sqrt" not in repr(field)
