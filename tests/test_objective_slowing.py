"""Critical slowing down of training with a user's objective (THEORY 3): SGD on the objective's
quadratic form needs exactly THEORY 3's step counts and ~L^2 steps for the slowest mode at small noise;
Adam, diagonal in the Fourier basis, does not slow down."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F_nn

from critdiff_ref.objective import ddpm_spec
from critdiff_ref.objective.slowing import training_steps

N_TRAIN = 10  # level 0 gets 1/10 of the samples


def _case(output: str):
    from diffusers import DDPMScheduler

    sch = DDPMScheduler(num_train_timesteps=N_TRAIN)

    def objective(model, x0, generator):
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        t = torch.randint(0, N_TRAIN, (x0.shape[0],), generator=generator)
        return F_nn.mse_loss(model(sch.add_noise(x0, noise, t), t), noise if output == "eps" else x0)

    return objective, ddpm_spec(sch, output)


@pytest.mark.parametrize("output", ["eps", "x0"])
def test_sgd_step_counts_are_theory_3s_and_grow_as_L_squared(output):
    objective, spec = _case(output)
    result = training_steps(objective, spec, (8, 12, 16, 24), optimizer="sgd", lr=1.0)
    # deterministic: SGD on the measured quadratic is THEORY 3's recursion with C -> H, step for step
    assert result.slowest_steps == result.theory_steps
    # z = 2 from the condition number (4d)/(4 sin^2(pi/L)): log-slope of (L / sin(pi/L))^... over L = 8..24 is
    # 1.96 for the exact C; the band allows the sampled curvature (H within a few % of C) and the log(1/eps) offset
    assert 1.7 < result.exponent < 2.3
    assert 1.7 < result.theory_exponent < 2.3
    # the measured curvatures give the exact-C count within 10 % (H estimated from ~800 samples per L)
    for got, exact in zip(result.slowest_steps, result.exact_steps):
        assert abs(got - exact) < 0.1 * exact


def test_adam_removes_the_L_dependence_for_the_denoiser_parametrisation():
    objective, spec = _case("x0")
    result = training_steps(objective, spec, (8, 16), optimizer="adam", lr=1e-2)
    # Adam's per-parameter normalisation is diagonal in the Fourier basis: every mode moves at ~lr per
    # step towards theta* ~ 1, so the count is set by lr, not by the condition number (SGD: exponent 2)
    assert abs(result.exponent) < 0.3


def test_a_user_optimiser_factory_is_run_as_given():
    objective, spec = _case("x0")
    sgd = training_steps(objective, spec, (8, 12), optimizer="sgd", lr=0.5)
    # the same SGD built by the user (curvatures normalised to max 1, so lr 0.5 is lr 0.5 / max H)
    own = training_steps(objective, spec, (8, 12), optimizer=lambda params: torch.optim.SGD(params, lr=0.5))
    assert own.slowest_steps == sgd.slowest_steps  # deterministic: the same recursion step for step
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        training_steps(objective, spec, (8, 12), optimizer=lambda params: None)


def test_bad_arguments_name_the_parameter():
    objective, spec = _case("eps")
    with pytest.raises(ValueError, match="optimizer"):
        training_steps(objective, spec, optimizer="lbfgs")
    with pytest.raises(ValueError, match="level"):
        training_steps(objective, spec, level=N_TRAIN)
