"""Unit tests for critdiff_ref.trainers.dsm: time features, the circular U-Net's symmetries, the DSM loss
against its closed-form Gaussian minimum, training, and input validation."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from critdiff_ref.processes import VE, VP
from critdiff_ref.samplers import likelihood
from critdiff_ref.scores import exact_score
from critdiff_ref.targets import Phi4Lattice
from critdiff_ref.testing import assert_close
from critdiff_ref.trainers import dsm

PROCESS = VE(sigma=25.0, T=1.0)


def small_model(L=4, d=2, seed=0, **kw):
    kw.setdefault("channels", (4, 8))
    kw.setdefault("embed_dim", 8)
    return dsm.ScoreUNet(L, d, PROCESS, generator=torch.Generator().manual_seed(seed), **kw)


def test_fourier_features_shape_range_and_determinism():
    t = torch.linspace(0.0, 1.0, 7)
    f1 = dsm.GaussianFourierFeatures(8, generator=torch.Generator().manual_seed(3))(t)
    f2 = dsm.GaussianFourierFeatures(8, generator=torch.Generator().manual_seed(3))(t)
    assert f1.shape == (7, 8) and torch.equal(f1, f2)
    # sin^2 + cos^2 = 1 for every frequency (float32 rounding)
    assert_close(f1[:, :4] ** 2 + f1[:, 4:] ** 2, torch.ones(7, 4), ulps=8)
    with pytest.raises(ValueError, match="dim must be even"):
        dsm.GaussianFourierFeatures(7)
    with pytest.raises(ValueError, match="scale"):
        dsm.GaussianFourierFeatures(8, scale=-1.0)


@pytest.mark.parametrize("L, d", [(8, 1), (4, 2), (4, 3)])
def test_unet_shapes_and_dtype_follow_the_input(L, d):
    model = small_model(L, d)
    x = torch.randn((3, *(L,) * d), dtype=torch.float64)
    out = model(x, 0.5)
    assert out.shape == x.shape and out.dtype == torch.float64
    out_t = model(x.float(), torch.tensor([0.1, 0.5, 0.9]))
    assert out_t.shape == x.shape and out_t.dtype == torch.float32
    vp = dsm.ScoreUNet(L, d, VP(beta_min=0.1, beta_max=20.0), channels=(4, 8), embed_dim=8)
    assert vp(x, torch.tensor([0.1, 0.5, 1.0])).shape == x.shape


def test_unet_is_exactly_odd_and_generator_seeded():
    model = small_model()
    x = torch.randn(5, 4, 4)
    # eps(-x) = (e(-x) - e(x))/2 = -(e(x) - e(-x))/2: IEEE subtraction is antisymmetric, so bit-exact
    assert torch.equal(model(-x, 0.3), -model(x, 0.3))
    twin = small_model()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))
    other = small_model(seed=1)
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), other.parameters()))


def test_unet_is_translation_equivariant_and_batch_independent():
    model = small_model(L=8, d=2, channels=(4, 8, 8)).double()
    x = torch.randn(4, 8, 8, dtype=torch.float64)
    torch.set_grad_enabled(False)
    try:
        out = model(x, 0.4)
    # two stride-2 levels: equivariant under shifts by multiples of 4 (circular padding everywhere);
    # convolutions of rolled inputs sum the same terms in another order: a few ulps of the output scale
        for shift in [(4, 0), (0, 4), (4, 4)]:
            assert_close(model(torch.roll(x, shift, dims=(1, 2)), 0.4), torch.roll(out, shift, dims=(1, 2)), ulps=256)
        # each configuration is processed on its own (GroupNorm, no batch statistics): needed by the
        # per-site autograd divergence of samplers.dmmc
        assert_close(model(x[2:3], 0.4), out[2:3], ulps=256)
    finally:
        torch.set_grad_enabled(True)


def test_unet_rejects_bad_arguments():
    with pytest.raises(ValueError, match="divisible"):
        dsm.ScoreUNet(6, 2, PROCESS, channels=(4, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        dsm.ScoreUNet(4, 2, PROCESS, channels=())
    with pytest.raises(ValueError, match="d must be 1, 2 or 3"):
        dsm.ScoreUNet(4, 4, PROCESS)
    with pytest.raises(ValueError, match="data_std"):
        dsm.ScoreUNet(4, 2, PROCESS, data_std=0.0)
    with pytest.raises(TypeError, match="odd"):
        dsm.ScoreUNet(4, 2, PROCESS, odd=1)
    model = small_model()
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(2, 4, 5), 0.5)
    with pytest.raises(ValueError, match="t must be"):
        model(torch.randn(2, 4, 4), torch.ones(3))
    with pytest.raises(ValueError, match="t must be > 0"):
        model(torch.randn(2, 4, 4), 0.0)
    with pytest.raises(TypeError, match="floating"):
        model(torch.zeros(2, 4, 4, dtype=torch.long), 0.5)


def test_augment_applies_lattice_symmetries():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, 4, dtype=torch.float64)
    y = dsm.augment(x, 2, gen)
    # translations, reflections and sign flips permute |phi| within each configuration
    assert torch.equal(torch.sort(y.abs().reshape(16, -1)).values, torch.sort(x.abs().reshape(16, -1)).values)
    signs = torch.sign((y.reshape(16, -1).sum(1)) / x.reshape(16, -1).sum(1))
    assert bool((signs == 1).any()) and bool((signs == -1).any())  # per-config signs drawn independently


@pytest.mark.parametrize("process", [VE(sigma=25.0, T=1.0), VP(beta_min=0.1, beta_max=20.0, T=1.0)])
def test_dsm_loss_of_the_exact_score_is_the_gaussian_minimum(process):
    """E_t (1/V) E|sqrt(Xi) s + z|^2 with the exact score = E_t (1/V) sum_k a^2 c0 / C_t (closed form)."""
    target = Phi4Lattice(4, 2, 0.2, 0.0)
    field = target.free_field()
    c0 = field.c0().numpy().reshape(-1)
    t_min = 1e-3

    def per_t(t):
        a2, Xi = float(process.a(t)) ** 2, float(process.Xi(t))
        return float(np.mean(a2 * c0 / (a2 * c0 + Xi)))

    expected = quad(per_t, t_min, 1.0, epsabs=1e-12, limit=200)[0] / (1.0 - t_min)
    gen = torch.Generator().manual_seed(11)
    score = exact_score(target, process)
    batches = torch.stack(
        [dsm.denoising_loss(score, field.sample(256, gen, dtype=torch.float64), process, gen, t_min=t_min) for _ in range(40)]
    )
    se = float(batches.std()) / math.sqrt(len(batches))
    # 5 sigma over 40 independent batch means (normal tail 6e-7)
    assert abs(float(batches.mean()) - expected) < 5.0 * se


def test_training_moves_the_loss_towards_the_exact_minimum():
    """A tiny U-Net trained by DSM on lam = 0 samples closes most of the gap to the exact-score loss."""
    target = Phi4Lattice(4, 2, 0.2, 0.0)
    field = target.free_field()
    gen = torch.Generator().manual_seed(5)
    data = field.sample(512, gen, dtype=torch.float32)
    model = small_model(data_std=float(data.std()))
    held_out = field.sample(512, gen, dtype=torch.float32)

    def loss(score):  # common random numbers: the same t and z for every score
        with torch.no_grad():
            return float(dsm.denoising_loss(score, held_out, PROCESS, torch.Generator().manual_seed(99)))

    exact = loss(lambda x, t: exact_score(target, PROCESS)(x.double(), t).float())
    before = loss(model)
    report = dsm.train_dsm(model, data, PROCESS, steps=60, batch_size=32, lr=3e-3, generator=gen)
    after = loss(model)
    assert report.losses.shape == (60,) and np.isfinite(report.losses).all()
    # the exact score is the minimiser (common noise: up to the estimator's noise of a few %) and an
    # untrained net is far above it; 60 Adam steps must remove at least half of the gap
    assert exact < before
    assert after - exact < 0.5 * (before - exact), (before, after, exact)


def test_train_dsm_rejects_bad_arguments():
    model = small_model()
    data = torch.randn(8, 4, 4)
    with pytest.raises(ValueError, match="steps"):
        dsm.train_dsm(model, data, PROCESS, steps=0)
    with pytest.raises(ValueError, match="lr"):
        dsm.train_dsm(model, data, PROCESS, steps=1, lr=0.0)
    with pytest.raises(ValueError, match="data"):
        dsm.train_dsm(model, data[:1], PROCESS, steps=1)
    with pytest.raises(TypeError, match="model"):
        dsm.train_dsm(lambda x, t: x, data, PROCESS, steps=1)
    with pytest.raises(ValueError, match="t_min"):
        dsm.denoising_loss(model, data, PROCESS, t_min=2.0)


def test_unet_divergences_agree():
    """The U-Net is a valid score for samplers.dmmc: exact and all-sign-vector Hutchinson divergences agree."""
    model = small_model(L=4, d=1, channels=(4, 8)).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    import itertools

    signs = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=4)), dtype=torch.float64)
    probes = signs.unsqueeze(1).expand(-1, 3, 4).contiguous()
    # averaging over all 2^V sign vectors is exact (E[eps eps^T] = I): rounding only
    assert_close(likelihood.divergence_hutchinson(model, x, 0.5, probes), likelihood.divergence_exact(model, x, 0.5), ulps=4096)
