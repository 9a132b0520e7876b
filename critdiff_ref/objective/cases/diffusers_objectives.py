"""The standard training objectives built from diffusers' own pieces, as its training scripts use them.

* eps / v (``train_text_to_image.py``): ``DDPMScheduler.add_noise``, target ``noise`` or
  ``get_velocity``, optional min-SNR-gamma weights from ``training_utils.compute_snr``;
* flow matching (``train_dreambooth_sd3.py``): ``compute_density_for_timestep_sampling``, index
  ``floor(u N)``, ``FlowMatchEulerDiscreteScheduler.scale_noise``, target ``noise - x0``,
  ``compute_loss_weighting_for_sd3``;
* EDM-style (``train_dreambooth_lora_sdxl.py --do_edm_style_training``): with an ``EDMEulerScheduler``,
  ``add_noise``, ``precondition_inputs`` / ``precondition_outputs``, target ``x0`` and no weighting (the
  script says weighting "tends to result in numerical problems"); with an ``EulerDiscreteScheduler``,
  input ``x / sqrt(sigma^2 + 1)``, ``D = x - sigma eps`` and weight ``sigma^-2``.

Each ``*_case`` returns ``(objective, spec, documented_weighting, documented_density)``; the spec states
what the scheduler documents (conditioning grid, alpha, sigma, preconditioning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F_nn

from ..spec import ModelSpec
from .documented import min_snr_weighting, sd3_density, sd3_weighting, uniform_density

__all__ = ["Case", "ddpm_spec", "flow_match_spec", "edm_spec", "euler_edm_style_spec", "ddpm_case", "flow_match_case",
           "edm_case", "euler_edm_style_case", "DIFFUSERS_CASES"]


@dataclass(frozen=True)
class Case:
    """An objective with the spec it claims and the documented weighting / density (``None``: not stated)."""

    name: str
    objective: Callable
    spec: ModelSpec
    documented_weighting: Callable | None = None
    documented_density: Callable | None = None


def ddpm_spec(scheduler, output: str) -> ModelSpec:
    """Timestep index grid of a ``DDPMScheduler``: ``alpha = sqrt(alphas_cumprod)``, ``sigma = sqrt(1 - alphas_cumprod)``."""
    ab = scheduler.alphas_cumprod.to(torch.float64)
    return ModelSpec(torch.arange(ab.numel(), dtype=torch.float64), ab.sqrt(), (1 - ab).sqrt(), output, "timestep")


def flow_match_spec(scheduler) -> ModelSpec:
    """``FlowMatchEulerDiscreteScheduler`` training grid: ``timesteps = sigma N``, ``x_t = (1 - sigma) x0 + sigma z``."""
    sig = scheduler.sigmas.to(torch.float64)[: scheduler.config.num_train_timesteps]
    return ModelSpec(scheduler.timesteps.to(torch.float64), 1.0 - sig, sig, "velocity", "timestep")


def edm_spec(scheduler, sigma_data: float | None = None) -> ModelSpec:
    """EDM scheduler grid: conditioning ``c_noise = timesteps``, ``alpha = 1``, and the preconditioning
    ``c_in, c_skip, c_out`` with ``sigma_data`` (default: the scheduler's)."""
    n = scheduler.config.num_train_timesteps
    sd = float(scheduler.config.sigma_data if sigma_data is None else sigma_data)
    sig = scheduler.sigmas.to(torch.float64)[:n]
    norm = (sig**2 + sd**2).sqrt()
    sign = -1.0 if scheduler.config.prediction_type == "v_prediction" else 1.0
    return ModelSpec(scheduler.timesteps.to(torch.float64)[:n], torch.ones_like(sig), sig, "edm", "c_noise",
                     input_scale=1.0 / norm, c_skip=sd**2 / norm**2, c_out=sign * sig * sd / norm)


def _per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F_nn.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=list(range(1, pred.ndim)))


def ddpm_case(output: str = "eps", *, snr_gamma: float | None = None, scheduler=None) -> Case:
    """eps or v objective of ``train_text_to_image.py`` (optionally min-SNR-gamma weighted)."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import compute_snr

    sch = DDPMScheduler(num_train_timesteps=1000) if scheduler is None else scheduler
    n = sch.config.num_train_timesteps

    def objective(model, x0, generator):
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        timesteps = torch.randint(0, n, (x0.shape[0],), generator=generator).long()
        noisy = sch.add_noise(x0, noise, timesteps)
        target = noise if output == "eps" else sch.get_velocity(x0, noise, timesteps)
        pred = model(noisy, timesteps)
        if snr_gamma is None:
            return F_nn.mse_loss(pred.float(), target.float(), reduction="mean")
        snr = compute_snr(sch, timesteps)
        weights = torch.stack([snr, snr_gamma * torch.ones_like(timesteps)], dim=1).min(dim=1)[0]
        weights = weights / snr if output == "eps" else weights / (snr + 1)
        return (_per_sample_mse(pred, target) * weights).mean()

    weighting = (min_snr_weighting(snr_gamma, output) if snr_gamma is not None
                 else (lambda spec: torch.ones(spec.n_levels, dtype=torch.float64)))
    name = f"ddpm-{output}" + (f"-min-snr-{snr_gamma:g}" if snr_gamma is not None else "")
    return Case(name, objective, ddpm_spec(sch, output), weighting, uniform_density)


def flow_match_case(weighting_scheme: str = "logit_normal", *, scheduler=None) -> Case:
    """Flow-matching objective of ``train_dreambooth_sd3.py`` (logit-normal, mode or uniform density)."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

    sch = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000) if scheduler is None else scheduler
    n = sch.config.num_train_timesteps

    def objective(model, x0, generator):
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        u = compute_density_for_timestep_sampling(weighting_scheme, x0.shape[0], logit_mean=0.0, logit_std=1.0,
                                                  mode_scale=1.29, generator=generator)
        indices = (u * n).long()
        timesteps = sch.timesteps[indices]
        sigmas = sch.sigmas[indices].to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
        noisy = sch.scale_noise(x0, timesteps, noise)
        pred = model(noisy, timesteps)
        weighting = compute_loss_weighting_for_sd3(weighting_scheme, sigmas)
        target = noise - x0
        loss = torch.mean((weighting.float() * (pred.float() - target.float()) ** 2).reshape(x0.shape[0], -1), 1)
        return loss.mean()

    shift = float(getattr(sch, "shift", 1.0))
    suffix = "" if shift == 1.0 else f"-shift-{shift:g}"
    return Case(f"flow-match-{weighting_scheme.replace('_', '-')}{suffix}", objective, flow_match_spec(sch), sd3_weighting(weighting_scheme),
                sd3_density(weighting_scheme, n))



def sigma_batch(sch, n: int, x0: torch.Tensor, generator: torch.Generator):
    """What the EDM-style branch of ``train_dreambooth_lora_sdxl.py`` draws for a batch of a sigma-table scheduler:
    noise, a uniform timestep index in ``[0, n)``, ``add_noise`` and the matching ``sigmas`` shaped for broadcasting.
    Returns ``(timesteps, noisy, sigmas)``."""
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    indices = torch.randint(0, n, (x0.shape[0],), generator=generator)
    timesteps = sch.timesteps[indices]
    noisy = sch.add_noise(x0, noise, timesteps)
    return timesteps, noisy, sch.sigmas[indices].to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))


def edm_case(*, scheduler=None) -> Case:
    """EDM-style objective of ``train_dreambooth_lora_sdxl.py`` with an ``EDMEulerScheduler``: plain MSE on
    the preconditioned denoiser (the script applies no weighting for EDM schedulers), documented as such."""
    from diffusers import EDMEulerScheduler

    sch = EDMEulerScheduler(num_train_timesteps=1000) if scheduler is None else scheduler
    n = sch.config.num_train_timesteps

    def objective(model, x0, generator):
        timesteps, noisy, sigmas = sigma_batch(sch, n, x0, generator)
        pred = model(sch.precondition_inputs(noisy, sigmas), timesteps)
        pred = sch.precondition_outputs(noisy, pred, sigmas)
        return F_nn.mse_loss(pred.float(), x0.float(), reduction="mean")

    # no weighting on D is a weight c_out^2 on the raw output F
    return Case("edm-euler", objective, edm_spec(sch), lambda spec: spec.c_out**2, uniform_density)


def euler_edm_style_spec(scheduler) -> ModelSpec:
    """``EulerDiscreteScheduler`` EDM-style grid: ``x_t = x0 + sigma z`` (``alpha = 1``), model input
    ``x_t / sqrt(sigma^2 + 1)``, eps output (``D = x_t - sigma eps``)."""
    n = scheduler.config.num_train_timesteps
    sig = scheduler.sigmas.to(torch.float64)[:n]
    return ModelSpec(scheduler.timesteps.to(torch.float64)[:n], torch.ones_like(sig), sig, "eps", "timestep",
                     input_scale=1.0 / (sig**2 + 1).sqrt())


def euler_edm_style_case(*, scheduler=None) -> Case:
    """EDM-style objective of ``train_dreambooth_lora_sdxl.py`` with an ``EulerDiscreteScheduler`` (eps
    prediction, input ``x / sqrt(sigma^2 + 1)``, loss ``sigma^-2 |D - x0|^2``)."""
    from diffusers import EulerDiscreteScheduler

    sch = EulerDiscreteScheduler(num_train_timesteps=1000) if scheduler is None else scheduler
    n = sch.config.num_train_timesteps

    def objective(model, x0, generator):
        timesteps, noisy, sigmas = sigma_batch(sch, n, x0, generator)
        pred = model(noisy / ((sigmas**2 + 1) ** 0.5), timesteps)
        pred = pred * (-sigmas) + noisy
        weighting = (sigmas**-2.0).float()
        loss = torch.mean((weighting * (pred.float() - x0.float()) ** 2).reshape(x0.shape[0], -1), 1)
        return loss.mean()

    # sigma^-2 on D = x - sigma eps is weight 1 on the eps output
    return Case("euler-edm-style-eps", objective, euler_edm_style_spec(sch),
                lambda spec: torch.ones(spec.n_levels, dtype=torch.float64), uniform_density)


# name -> builder of the built-in cases validated by default (`critdiff objective`)
DIFFUSERS_CASES: dict[str, Callable[[], Case]] = {
    "ddpm-eps": lambda: ddpm_case("eps"),
    "ddpm-v": lambda: ddpm_case("v", scheduler=_v_scheduler()),
    "ddpm-eps-min-snr-5": lambda: ddpm_case("eps", snr_gamma=5.0),
    "flow-match-logit-normal": lambda: flow_match_case("logit_normal"),
    "flow-match-mode": lambda: flow_match_case("mode"),
    "flow-match-cosmap": lambda: flow_match_case("cosmap"),
    "flow-match-logit-normal-shift-3": lambda: flow_match_case("logit_normal", scheduler=_flow_shifted(3.0)),
    "edm-euler": lambda: edm_case(),
    "euler-edm-style-eps": lambda: euler_edm_style_case(),
}


def _flow_shifted(shift: float):
    """SD3's scheduler configuration: ``FlowMatchEulerDiscreteScheduler(shift=3.0)``."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)


def _v_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, prediction_type="v_prediction")
