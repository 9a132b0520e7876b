"""Validate a third-party diffusion sampler against exact answers (THEORY 1, 2, 6, 8).

``critdiff_ref.validate(sampler, adapter, ...)`` (the package is callable) or
:func:`validate` returns a :class:`Report` of :class:`CheckResult` rows; the orchestrator and its
arguments: :mod:`.core`.  The package is cut by the questions a user asks:

- how is a sampler called? :mod:`.runners` (one module per calling convention; diffusers schedulers by
  family over one shared loop);
- what is measured, with what tolerance? :mod:`.checks`;
- which third-party samplers are known, with what documented order, and why others are not covered?
  :mod:`.registry` (the one table the command line, the coverage table and the pytest plugin read);
- does the validator catch real bugs? :mod:`.mutants`;
- commands: :mod:`.cli` (``critdiff validate``), :mod:`.coverage` (``critdiff coverage``),
  :mod:`.mutants.power` (``critdiff mutants``); :mod:`.pytest_plugin` for a user's CI.
"""

import sys

from .checks.order import weak_order_row
from .checks.result import CheckResult
from .core import (
    N_SAMPLES,
    TARGETS,
    ArgumentError,
    CallableModule,
    check_validate_args,
    default_fields,
    validate,
    validate_runner,
)
from .references import edm_euler, edm_heun, flow_euler, flow_heun, reference_samplers
from .registry import ADAPTERS, DIFFUSERS, adapter_names, make_runner
from .report import Report
from .runners.base import Runner, Schedule, exact_denoiser, load_object
from .runners.denoiser import karras_sigmas
from .runners.execute import SamplerOutputError

__all__ = [
    "validate",
    "validate_runner",
    "check_validate_args",
    "ArgumentError",
    "weak_order_row",
    "reference_samplers",
    "default_fields",
    "Report",
    "CheckResult",
    "Runner",
    "Schedule",
    "SamplerOutputError",
    "make_runner",
    "load_object",
    "karras_sigmas",
    "edm_euler",
    "edm_heun",
    "flow_euler",
    "flow_heun",
    "exact_denoiser",
    "ADAPTERS",
    "DIFFUSERS",
    "adapter_names",
    "TARGETS",
    "N_SAMPLES",
]

# critdiff_ref.validate(...) calls validate(); its attributes stay ordinary module attributes
sys.modules[__name__].__class__ = CallableModule
