"""The one diffusers sampling loop every scheduler family runs, and the plumbing the families share
(THEORY 1, 2): a fresh scheduler per run, the config without diffusers' bookkeeping keys, and exact noise
probing through the ``randn_tensor`` each scheduler module imports.

The loop is diffusers' standard one: ``set_timesteps(N)``, then per timestep ``t`` a model output and
``x <- step(out, t, x).prev_sample``.  A family differs only in its model output (the exact model in the
parametrisation the scheduler expects: :mod:`critdiff_ref.validate.runners.diffusers.discrete`, :mod:`critdiff_ref.validate.runners.diffusers.flow`, :mod:`critdiff_ref.validate.runners.diffusers.consistency`), in the
start scale and in the timesteps it visits.
"""

from __future__ import annotations

import copy
import inspect
import sys
from types import ModuleType
from typing import Any, Callable, Iterable

import torch

from ..base import supplied_noise

__all__ = ["prepared", "sample", "clean_config", "plain_config", "scheduler_module", "noise_run", "unclamped_instance"]

# model_output(scheduler, index, t, x) -> the model output at the loop's index-th timestep t
ModelOutput = Callable[[Any, int, Any, torch.Tensor], torch.Tensor]


def prepared(template: Any, steps: int, **set_timesteps_kwargs: Any) -> Any:
    """A fresh copy of ``template`` (``__init__`` can be slow: KDPM2 ~0.4 s) after ``set_timesteps(steps, **kw)``."""
    sched = copy.deepcopy(template)
    sched.set_timesteps(steps, **set_timesteps_kwargs)
    return sched


def sample(sched: Any, timesteps: Iterable, x: torch.Tensor, model_output: ModelOutput, step_kwargs: dict) -> torch.Tensor:
    """The standard loop: for each ``t``, ``x <- sched.step(model_output(sched, i, t, x), t, x, **step_kwargs).prev_sample``
    (the model output cast to the state's dtype, as a pipeline does).

    The step arguments a pipeline supplies are supplied the same way: ``prev_timestep`` = the next timestep of the
    loop (UnCLIP; None at the last step), and for a step taking ``old_pred_original_sample`` (CogVideoX's DPM
    pipeline) the previous step's x0 prediction and ``timestep_back`` = the previous timestep.
    """
    timesteps = list(timesteps)
    params = inspect.signature(sched.step).parameters
    old_x0 = None
    for i, t in enumerate(timesteps):
        out = model_output(sched, i, t, x).to(x.dtype)
        kw = dict(step_kwargs)
        if "prev_timestep" in params:
            kw.setdefault("prev_timestep", timesteps[i + 1] if i + 1 < len(timesteps) else None)
        if "old_pred_original_sample" in params:
            x, old_x0 = sched.step(out, old_x0, t, timesteps[i - 1] if i > 0 else None, x, **{**kw, "return_dict": False})
        else:
            x = sched.step(out, t, x, **kw).prev_sample
    return x


def clean_config(scheduler: Any) -> dict:
    """The scheduler's config as a dict, without ``_use_default_values`` (which would make ``from_config``
    silently drop overrides)."""
    return {k: v for k, v in dict(scheduler.config).items() if k != "_use_default_values"}


def plain_config(config: dict) -> dict:
    """The JSON-plain entries of a config (for the report's ``info``)."""
    return {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool, type(None)))}


def scheduler_module(cls: type) -> ModuleType | None:
    """The module a scheduler class is defined in (where its ``randn_tensor`` is looked up)."""
    return sys.modules.get(cls.__module__)


def noise_run(module: ModuleType | None, run: Callable) -> Callable | None:
    """``run_noise(target, steps, z, draw)`` for a scheduler drawing with ``module.randn_tensor`` (every draw
    becomes a probe: exact noise probing), or None when the module has no ``randn_tensor``.  A scheduler drawing
    elsewhere (torch.randn) is caught by the probing's own linearity check, which then falls back to Monte Carlo."""
    if not hasattr(module, "randn_tensor"):
        return None

    def run_noise(target, steps, z, draw):
        with supplied_noise(module, draw):
            return run(target, steps, z, None)

    return run_noise


def unclamped_instance(cls: type) -> Any:
    """``cls()`` with its default config minus the image-range assumptions (clip x0 to [-1, 1], dynamic
    thresholding): they are not part of the solver and make it non-linear.  Pass an instance to validate a
    config exactly as it is."""
    scheduler = cls()
    off = {k: False for k in ("clip_sample", "thresholding") if scheduler.config.get(k)}
    if off:
        scheduler = type(scheduler).from_config(scheduler.config, **off)
    return scheduler
