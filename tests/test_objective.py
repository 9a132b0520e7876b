"""Training-objective validation (THEORY 9): the exact optimum per parametrisation, the quadratic fit,
verdicts on correct and planted-bug objectives, reports, weighting and the CLI."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
import torch.nn.functional as F_nn

from critdiff_ref.objective import (
    OUTPUTS, ModelSpec, ddpm_case, ddpm_spec, denoiser_affine, min_snr_weighting, validate_objective,
)
from critdiff_ref.objective.family import FourierLinearModel, mode_classes
from critdiff_ref.targets.gaussian_field import GaussianField
from critdiff_ref.targets.mixtures import TwoGaussianMixture

# small but calibrated: 50 DDPM levels, 8 x 2048 samples = 327 per level (>= MIN_SAMPLES), L = 8
N_TRAIN = 50
FAST = dict(target=GaussianField(8), n_batches=8, batch_size=2048)


def _scheduler(prediction: str = "epsilon"):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=N_TRAIN, prediction_type=prediction)


def _eps_objective(sch, *, told=lambda t: t, loss=F_nn.mse_loss, randn=None):
    def objective(model, x0, generator):
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device) if randn is None else randn(x0)
        t = torch.randint(0, N_TRAIN, (x0.shape[0],), generator=generator, device=x0.device)
        return loss(model(sch.add_noise(x0, noise, t), told(t)), noise)

    return objective


# ------------------------------------------------------------------ exact optimum per parametrisation
@pytest.mark.parametrize("output", sorted(set(OUTPUTS) - {"edm"}))
def test_the_exact_per_mode_optimum_of_every_parametrisation_implies_the_posterior_mean(output):
    """THEORY 9: g* = E[x_t y] / C_t for each target y, pushed through D = A x + B out, is alpha c / C_t."""
    c = torch.tensor([0.05, 0.7, 3.0], dtype=torch.float64).reshape(1, -1)
    al = torch.tensor([0.9, 0.5, 0.05], dtype=torch.float64)
    si = (1 - al**2).sqrt() if output != "velocity" else 1 - al
    spec = ModelSpec(torch.arange(3.0), al, si, output)
    al, si = al.reshape(-1, 1), si.reshape(-1, 1)
    C = al**2 * c + si**2
    cross = {  # E[x_t y] with x_t = al x0 + si z
        "eps": si, "x0": al * c, "v": al * si - si * al * c, "score": -(C) / C, "velocity": si - al * c,
    }[output]
    g = cross / C if output != "score" else -1.0 / C
    A, B = denoiser_affine(spec)
    implied = A.reshape(-1, 1) + B.reshape(-1, 1) * g
    # closed forms in float64: a few ulps of round-off
    torch.testing.assert_close(implied, al * c / C, rtol=1e-12, atol=1e-14)


def test_edm_preconditioning_maps_the_optimal_F_to_the_posterior_mean():
    """THEORY 9: F* = (c/(c + sigma^2) - c_skip) / (c_out c_in) gives D = c/(c + sigma^2) x."""
    sd, sig, c = 0.5, torch.tensor([0.01, 0.3, 5.0, 80.0], dtype=torch.float64), 0.8
    norm = (sig**2 + sd**2).sqrt()
    spec = ModelSpec(0.25 * sig.log(), torch.ones(4), sig, "edm", "c_noise", input_scale=1 / norm,
                     c_skip=sd**2 / norm**2, c_out=sig * sd / norm)
    F_star = (c / (c + sig**2) - spec.c_skip) / (spec.c_out * spec.input_scale)
    A, B = denoiser_affine(spec)
    torch.testing.assert_close(A + B * spec.input_scale * F_star, c / (c + sig**2), rtol=1e-12, atol=1e-15)


def test_mode_classes_pair_k_with_minus_k():
    cls, reps = mode_classes(8, 2)
    assert reps.shape[0] == (64 + 4) // 2  # 4 self-conjugate modes (0 or L/2 on each axis)
    flipped = torch.roll(torch.flip(cls, (0, 1)), (1, 1), (0, 1))  # index -k mod L
    assert torch.equal(cls, flipped)


def test_model_spec_rejects_bad_declarations():
    with pytest.raises(ValueError, match="output must be one of"):
        ModelSpec(torch.arange(3.0), torch.ones(3), torch.ones(3), "noise")
    with pytest.raises(ValueError, match="one entry per conditioning value"):
        ModelSpec(torch.arange(3.0), torch.ones(2), torch.ones(3), "eps")
    with pytest.raises(ValueError, match="distinct"):
        ModelSpec(torch.zeros(3), torch.ones(3), torch.ones(3), "eps")
    with pytest.raises(ValueError, match="c_skip and c_out"):
        ModelSpec(torch.arange(3.0), torch.ones(3), torch.ones(3), "edm")
    with pytest.raises(TypeError, match="spec must be a ModelSpec"):
        validate_objective(lambda m, x, g: x.sum(), "eps")


# ------------------------------------------------------------------ verdicts end to end
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
def test_the_diffusers_eps_objective_passes_and_names_nothing(device):
    sch = _scheduler()
    report = validate_objective(_eps_objective(sch), ddpm_spec(sch, "eps"), **FAST, device=device)
    assert report.passed, report.table()
    assert report.levels_measured == N_TRAIN and report.off_grid == 0
    assert report.quadratic_defect < 1e-4  # float32 loss: ~1e-7 relative round-off


def test_telling_the_model_t_over_N_fails_and_names_the_values():
    """The planted t vs t * 1000 bug: the model is told t / N, off the declared index grid."""
    sch = _scheduler()
    report = validate_objective(_eps_objective(sch, told=lambda t: t.double() / N_TRAIN), ddpm_spec(sch, "eps"), **FAST)
    assert not report.passed
    assert report.off_grid > 0.9 * 8 * 2048  # every t > 0 lands off the grid (t = 0 maps to 0)
    assert "not on the declared grid" in report.failures[0] and re.search(r"e\.g\. 0\.\d", report.failures[0])


def test_noise_one_index_off_fails_at_named_levels_and_modes():
    sch = _scheduler()

    def objective(model, x0, generator):
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        t = torch.randint(0, N_TRAIN, (x0.shape[0],), generator=generator)
        return F_nn.mse_loss(model(sch.add_noise(x0, noise, (t + 1).clamp(max=N_TRAIN - 1)), t), noise)

    report = validate_objective(objective, ddpm_spec(sch, "eps"), **FAST)
    assert not report.passed
    assert report.off_levels and any("noise levels: timestep" in f for f in report.failures)
    assert report.off_levels[0].sigma > 0


def test_a_non_squared_loss_and_global_randomness_fail_the_quadratic_check():
    sch = _scheduler()
    l1 = validate_objective(_eps_objective(sch, loss=F_nn.l1_loss), ddpm_spec(sch, "eps"), **FAST)
    assert any("not a squared loss" in f for f in l1.failures)
    unseeded = validate_objective(_eps_objective(sch, randn=torch.randn_like), ddpm_spec(sch, "eps"), **FAST)
    assert any("reproducible from the generator" in f for f in unseeded.failures)


def test_min_snr_weighting_is_measured_as_documented_and_a_wrong_claim_fails():
    sch = _scheduler()
    case = ddpm_case("eps", snr_gamma=5.0, scheduler=sch)
    right = validate_objective(case.objective, case.spec, documented_weighting=case.documented_weighting, **FAST)
    assert right.passed, right.table()
    measured = torch.tensor([r.weight for r in right.levels])
    documented = torch.tensor([r.documented_weight for r in right.levels])
    se = torch.tensor([r.weight_stderr for r in right.levels])
    # each level within 5 standard errors (t with 7 dof: P(|t| > 5) = 1.6e-3 per level; Bonferroni-safe in the verdict)
    assert bool(((measured - documented).abs() < 5 * se + 1e-6).all())
    wrong = validate_objective(case.objective, case.spec, documented_weighting=min_snr_weighting(5.0, "v"), **FAST)
    assert any("loss weighting differs" in f for f in wrong.failures)


def test_the_two_peak_mixture_checks_a_non_gaussian_denoiser():
    sch = _scheduler()
    fast = {**FAST, "target": TwoGaussianMixture(1.0, 0.5)}
    good = validate_objective(_eps_objective(sch), ddpm_spec(sch, "eps"), **fast)
    assert good.passed, good.table()
    bad = validate_objective(_eps_objective(sch), ddpm_spec(sch, "x0"), **fast)  # eps read as x0
    assert not bad.passed and bad.off_levels


def test_report_json_is_strict_and_the_table_names_the_worst_level():
    sch = _scheduler()
    report = validate_objective(_eps_objective(sch, told=lambda t: (t + 1).clamp(max=N_TRAIN - 1)),
                                ddpm_spec(sch, "eps"), **FAST)
    data = json.loads(report.to_json())
    assert data["passed"] is False and len(data["levels"]) == N_TRAIN
    assert "OFF" in report.table()
    assert math.isfinite(data["global_chi2"])


def test_fourier_model_output_is_real_and_linear_per_mode():
    field = GaussianField(6)
    sch = _scheduler()
    model = FourierLinearModel(ddpm_spec(sch, "eps"), field)
    with torch.no_grad():
        model.theta.normal_()
    x = field.sample(3, torch.Generator().manual_seed(0), dtype=torch.float64)
    out = model(x, torch.tensor([0, 1, 2]))
    direct = torch.fft.ifftn(model.theta[1, :, 0][model.mode_class] * torch.fft.fftn(x[1])).real
    torch.testing.assert_close(out[1], direct, rtol=1e-12, atol=1e-12)  # float64 FFT round-off
