"""diffusers-like schedulers for the validator's power test (THEORY 1, 2): a DDIM-like and an
LCM-like scheduler with diffusers' interface (``set_timesteps``, ``scale_model_input``,
``step(...).prev_sample``), each with a planted-bug subclass one line (marked ``# BUG``) away.
Registered in :mod:`.catalogue`.  Their noise is drawn through this
module's :func:`randn_tensor`, as diffusers' schedulers draw through theirs, so the validator's exact
noise probing (:func:`critdiff_ref.validate.runners.base.supplied_noise`) reaches it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = ["DDIMLikeScheduler", "DDIMLikeSchedulerPrevIndexBug", "LCMLikeScheduler", "LCMLikeSchedulerRenoiseBug",
           "randn_tensor"]


# -- diffusers-like scheduler (the standard loop: set_timesteps, scale_model_input, step) ----------
class _Output(NamedTuple):
    prev_sample: torch.Tensor


class DDIMLikeScheduler:
    """A minimal DDIM scheduler (eta = 0, epsilon prediction, order 1) with diffusers' interface and
    conventions: linear betas 1e-4..0.02 over 1000 training steps, ``abar = cumprod(1 - beta)``,
    "leading" timesteps ``t_i = (N - 1 - i) * (1000 // N)``, final ``abar = 1`` (denoise to sigma = 0).

    ``step`` moves the sample from ``timesteps[i]`` to ``timesteps[i + 1]`` (its step index is
    counted internally, as in diffusers): ``x0 = (x - sqrt(1 - abar) eps) / sqrt(abar)``,
    ``x <- sqrt(abar') x0 + sqrt(1 - abar') eps``.
    """

    order = 1
    init_noise_sigma = 1.0

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        if isinstance(num_train_timesteps, bool) or not isinstance(num_train_timesteps, int) or num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be an int >= 2, got {num_train_timesteps!r}")
        if not (0.0 < beta_start < beta_end < 1.0):
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}")
        self.config = {"num_train_timesteps": num_train_timesteps, "beta_start": beta_start, "beta_end": beta_end,
                       "prediction_type": "epsilon"}
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.timesteps = torch.zeros(0, dtype=torch.long)
        self._step_index = 0

    @classmethod
    def from_config(cls, config: dict, **overrides):
        kw = {k: v for k, v in {**config, **overrides}.items() if k in ("num_train_timesteps", "beta_start", "beta_end")}
        return cls(**kw)

    def set_timesteps(self, num_inference_steps: int) -> None:
        n_train = self.config["num_train_timesteps"]
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= n_train:
            raise ValueError(f"num_inference_steps must be an int in [1, {n_train}], got {num_inference_steps!r}")
        ratio = n_train // num_inference_steps
        self.timesteps = torch.arange(num_inference_steps - 1, -1, -1, dtype=torch.long) * ratio
        self._step_index = 0

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        return sample

    def _abar(self, index: int) -> float:
        """``abar`` at ``timesteps[index]``; 1 past the end (the final step denoises to sigma = 0)."""
        return float(self.alphas_cumprod[int(self.timesteps[index])]) if index < len(self.timesteps) else 1.0

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, **kwargs) -> _Output:
        i = self._step_index
        abar, abar_prev = self._abar(i), self._abar(i + 1)
        x0 = (sample - math.sqrt(1.0 - abar) * model_output) / math.sqrt(abar)
        self._step_index += 1
        return _Output(math.sqrt(abar_prev) * x0 + math.sqrt(1.0 - abar_prev) * model_output)


class DDIMLikeSchedulerPrevIndexBug(DDIMLikeScheduler):
    """DDIMLikeScheduler whose step looks up the previous timestep one index too far."""

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, **kwargs) -> _Output:
        i = self._step_index
        abar, abar_prev = self._abar(i), self._abar(i + 2)  # BUG: timesteps[i + 2] instead of timesteps[i + 1]
        x0 = (sample - math.sqrt(1.0 - abar) * model_output) / math.sqrt(abar)
        self._step_index += 1
        return _Output(math.sqrt(abar_prev) * x0 + math.sqrt(1.0 - abar_prev) * model_output)


def randn_tensor(shape, generator=None, device=None, dtype=None) -> torch.Tensor:
    """Standard normal draws, the module-level noise source diffusers schedulers use (so the validator can
    supply the noise of the schedulers below, as it does for diffusers': exact noise probing)."""
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype or torch.float64)


class LCMLikeScheduler:
    """A minimal latent-consistency-model scheduler with diffusers' interface (LCMScheduler's defaults:
    scaled-linear betas 0.00085..0.012, 50 distillation timesteps ``20 j - 1``, epsilon prediction).

    ``step``: ``x0 = (x - sqrt(1 - abar) eps) / sqrt(abar)``, ``denoised = c_skip x + c_out x0`` with
    ``c_skip = 0.25 / (100 t^2 + 0.25)``, ``c_out = 10 t / sqrt(100 t^2 + 0.25)``; then, except on the last
    step, re-noise to the next timestep: ``x <- sqrt(abar') denoised + sqrt(1 - abar') z`` (THEORY 1,
    "Consistency functions": with the exact consistency function every step count gives the exact law).
    """

    order = 1
    init_noise_sigma = 1.0

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012,
                 original_inference_steps: int = 50):
        if isinstance(num_train_timesteps, bool) or not isinstance(num_train_timesteps, int) or num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be an int >= 2, got {num_train_timesteps!r}")
        if not (0.0 < beta_start < beta_end < 1.0):
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}")
        if not isinstance(original_inference_steps, int) or not 1 <= original_inference_steps <= num_train_timesteps:
            raise ValueError(f"original_inference_steps must be an int in [1, {num_train_timesteps}], "
                             f"got {original_inference_steps!r}")
        self.config = {"num_train_timesteps": num_train_timesteps, "beta_start": beta_start, "beta_end": beta_end,
                       "original_inference_steps": original_inference_steps, "prediction_type": "epsilon"}
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.timesteps = torch.zeros(0, dtype=torch.long)
        self.step_index = 0

    @classmethod
    def from_config(cls, config: dict, **overrides):
        keys = ("num_train_timesteps", "beta_start", "beta_end", "original_inference_steps")
        return cls(**{k: v for k, v in {**config, **overrides}.items() if k in keys})

    def set_timesteps(self, num_inference_steps: int) -> None:
        n_orig = self.config["original_inference_steps"]
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= n_orig:
            raise ValueError(f"num_inference_steps must be an int in [1, {n_orig}], got {num_inference_steps!r}")
        k = self.config["num_train_timesteps"] // n_orig
        origin = (torch.arange(n_orig, 0, -1, dtype=torch.long) * k - 1)  # 999, 979, ..., 19
        index = torch.floor(torch.linspace(0, n_orig, num_inference_steps + 1, dtype=torch.float64)[:-1]).long()
        self.timesteps = origin[index]
        self.step_index = 0

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        return sample

    def get_scalings_for_boundary_condition_discrete(self, timestep) -> tuple[float, float]:
        """LCM's boundary-condition scalings ``(c_skip, c_out)`` (sigma_data = 0.5, timestep scaling 10)."""
        scaled = 10.0 * float(timestep)
        return 0.25 / (scaled**2 + 0.25), scaled / (scaled**2 + 0.25) ** 0.5

    def _step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator, noise_variance):
        i = self.step_index
        abar = float(self.alphas_cumprod[int(self.timesteps[i])])
        c_skip, c_out = self.get_scalings_for_boundary_condition_discrete(timestep)
        x0 = (sample - math.sqrt(1.0 - abar) * model_output) / math.sqrt(abar)
        denoised = c_out * x0 + c_skip * sample
        self.step_index += 1
        if self.step_index == len(self.timesteps):
            return _Output(denoised)
        abar_next = float(self.alphas_cumprod[int(self.timesteps[self.step_index])])
        z = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        return _Output(math.sqrt(abar_next) * denoised + math.sqrt(noise_variance(abar_next)) * z)

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator=None, **kwargs) -> _Output:
        return self._step(model_output, timestep, sample, generator, lambda abar_next: 1.0 - abar_next)


class LCMLikeSchedulerRenoiseBug(LCMLikeScheduler):
    """LCMLikeScheduler re-noising with variance 1 - sqrt(abar') (sqrt(abar) where abar is right)."""

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator=None, **kwargs) -> _Output:
        return self._step(model_output, timestep, sample, generator,
                          lambda abar_next: 1.0 - math.sqrt(abar_next))  # BUG: sqrt(abar') where abar' is right
