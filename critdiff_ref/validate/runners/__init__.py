"""How each kind of sampler is called (THEORY 1, 2): every adapter wraps a user's sampler into a
:class:`Runner`, ``runner(target, steps, z, generator) -> x_0``, that maps white noise ``z``
(``(n, *event)``, unit variance per Fourier mode, zero mode removed for a critical field) to samples by
building the start the convention needs, the exact model the sampler expects, and calling the sampler.
``runner.schedule(target, steps)`` says, in exact terms, which continuous flow the run discretises
(:class:`Schedule`: a process, the start variance ``v_T`` and the end time ``t_min``), so that the error
the schedule's endpoints imply is computed exactly and separated from the sampler's own error.

One module per calling convention: :mod:`.score`, :mod:`.denoiser` (k-diffusion / EDM),
:mod:`.velocity` (flow matching), :mod:`.generator` (black box), :mod:`.diffusers` (schedulers, by
family over one shared loop), :mod:`.kdiffusion` (k-diffusion's sampling.py); :mod:`.brownian` answers
Brownian-tree noise queries exactly; :mod:`.execute` runs a runner for the checks.  Which adapter name
maps to which runner: :mod:`critdiff_ref.validate.registry`.
"""

from .base import Runner, Schedule, accepts, brownian_in_sigma, callable_name, event_shape, exact_denoiser, load_object, supplied_noise
from .brownian import BrownianPathNoiseSampler, BrownianProbe, NoiseRecorder, brownian_noise_run
from .denoiser import denoiser_runner, karras_sigmas
from .execute import SamplerOutputError, check_output, field_label, is_deterministic, run_checked, white_noise
from .generator import generator_runner
from .kdiffusion import KDIFFUSION_SAMPLERS, KDiffusionSampler, kdiffusion_runner, load_sampling, sampler_names
from .score import score_runner
from .velocity import flow_schedule, flow_sigmas, shift_map, velocity_runner

__all__ = [
    "Runner",
    "Schedule",
    "accepts",
    "brownian_in_sigma",
    "callable_name",
    "event_shape",
    "exact_denoiser",
    "load_object",
    "supplied_noise",
    "BrownianPathNoiseSampler",
    "BrownianProbe",
    "NoiseRecorder",
    "brownian_noise_run",
    "denoiser_runner",
    "karras_sigmas",
    "SamplerOutputError",
    "check_output",
    "field_label",
    "is_deterministic",
    "run_checked",
    "white_noise",
    "generator_runner",
    "KDIFFUSION_SAMPLERS",
    "KDiffusionSampler",
    "kdiffusion_runner",
    "load_sampling",
    "sampler_names",
    "score_runner",
    "flow_schedule",
    "flow_sigmas",
    "shift_map",
    "velocity_runner",
]
