"""The one registry of third-party samplers (THEORY 1, 2): per diffusers scheduler class its family, its
documented order, the configs ``critdiff validate`` runs by default, and its coverage status (covered, a
known gap with the reason, or not applicable with the reason); per adapter name the runner it builds.

Everything that lists samplers reads it: the default list of ``critdiff validate`` (:mod:`critdiff_ref.validate.cli`), the
coverage table (:mod:`.coverage`), the documented orders the runners carry (the order columns), the adapter
choices of the command line, the pytest plugin and sweeps.  k-diffusion's samplers have their own table
next to their runner (:data:`critdiff_ref.validate.runners.kdiffusion.KDIFFUSION_SAMPLERS`).
The general solver libraries (torchdiffeq, torchsde, flow_matching) are :data:`LIBRARIES`; their samplers,
adaptive checks and planted bugs are in :mod:`.libraries`.

Adding a diffusers scheduler of an existing family is one :data:`DIFFUSERS` entry (``docs/guides/extending.md``).
A class not listed is still run: its family is read from what it looks like (:func:`consistency_kind`,
:func:`is_flow_scheduler`; otherwise a diffusion-time scheduler), with no documented order.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Callable

from .runners.base import Runner, load_object
from .runners.denoiser import denoiser_runner
from .runners.diffusers.consistency import CONSISTENCY_KINDS, consistency_runner
from .runners.diffusers.continuous import continuous_runner
from .runners.diffusers.predictor_corrector import predictor_corrector_runner
from .runners.diffusers.discrete import discrete_runner
from .runners.diffusers.flow import flow_scheduler_runner
from .runners.diffusers.loop import unclamped_instance
from .runners.generator import generator_runner
from .runners.score import score_runner
from .runners.velocity import velocity_runner

__all__ = [
    "FAMILIES",
    "DefaultConfig",
    "SchedulerEntry",
    "DIFFUSERS",
    "catalogued_classes",
    "not_applicable",
    "known_gaps",
    "documented_order",
    "diffusers_orders",
    "consistency_schedulers",
    "default_diffusers",
    "consistency_kind",
    "is_flow_scheduler",
    "diffusers_runner",
    "Adapter",
    "ADAPTER_TABLE",
    "adapter_names",
    "ADAPTERS",
    "CONSISTENCY_SCHEDULERS",
    "make_runner",
    "LIBRARIES",
]

# diffusers scheduler families, each a runner over the one shared loop (runners.diffusers)
FAMILIES = ("discrete", "flow", "consistency", "continuous", "predictor_corrector")


@dataclass(frozen=True)
class DefaultConfig:
    """One configuration ``critdiff validate`` runs by default: a prediction type (None: the config's own) and
    constructor arguments (``{}``: the class with its default config)."""

    prediction_type: str | None = None
    config: dict = dc_field(default_factory=dict)


@dataclass(frozen=True)
class SchedulerEntry:
    """What we know of one diffusers scheduler class (module docstring).

    ``family``: ``"discrete"`` (``alphas_cumprod`` or EDM preconditioning), ``"flow"`` (rectified flow),
    ``"continuous"`` (a continuous VP time with the scheduler's own ``alpha_t``, ``sigma_t``), ``"predictor_corrector"``
    (``step_pred`` / ``step_correct`` on the score) or
    ``"consistency"`` (with ``kind`` one of ``lcm``, ``tcd``, ``trigflow``, ``cm``, its ``end`` level and
    ``documented`` behaviour); None for a class that is not applicable.  ``order``: the documented order with
    the default config (None: unknown).  ``defaults``: configs in ``critdiff validate``'s default list.
    ``gap``: applicable, but no runner fits yet (tried anyway, the reason shown while it fails).
    ``not_applicable``: why the class has no meaning on a Gaussian field with an exact model.
    """

    family: str | None
    order: float | None = None
    defaults: tuple[DefaultConfig, ...] = ()
    gap: str = ""
    not_applicable: str = ""
    kind: str | None = None
    end: str = ""
    documented: str = ""

    def __post_init__(self) -> None:
        if self.family not in (*FAMILIES, None):
            raise ValueError(f"family must be one of {FAMILIES} or None, got family={self.family!r}")
        if (self.family is None) != bool(self.not_applicable):
            raise ValueError(f"family=None exactly when not_applicable gives a reason, got family={self.family!r}, "
                             f"not_applicable={self.not_applicable!r}")
        if self.gap and self.not_applicable:
            raise ValueError("a class is either a known gap or not applicable, not both")
        if (self.family == "consistency") != (self.kind is not None):
            raise ValueError(f"kind is needed exactly for the consistency family, got family={self.family!r}, kind={self.kind!r}")
        if self.kind is not None and self.kind not in CONSISTENCY_KINDS:
            raise ValueError(f"kind must be one of {CONSISTENCY_KINDS}, got kind={self.kind!r}")
        if self.order is not None and not self.order > 0:
            raise ValueError(f"order must be > 0 or None, got order={self.order!r}")


def _discrete(order: float | None = None, *defaults: DefaultConfig, gap: str = "") -> SchedulerEntry:
    return SchedulerEntry("discrete", order, defaults, gap=gap)


def _continuous(order: float | None) -> SchedulerEntry:
    return SchedulerEntry("continuous", order)


def _predictor_corrector(order: float | None) -> SchedulerEntry:
    return SchedulerEntry("predictor_corrector", order)


def _flow(order: float | None, *defaults: DefaultConfig, gap: str = "") -> SchedulerEntry:
    return SchedulerEntry("flow", order, defaults, gap=gap)


def _consistency(kind: str, end: str, documented: str, *defaults: DefaultConfig) -> SchedulerEntry:
    return SchedulerEntry("consistency", None, defaults, kind=kind, end=end, documented=documented)


def _not_applicable(reason: str) -> SchedulerEntry:
    return SchedulerEntry(None, not_applicable=reason)


DEFAULT = DefaultConfig()
SD3_SHIFT = DefaultConfig(config={"shift": 3.0})  # what today's image and video models ship with: SD3's shift

# Every *Scheduler class exported by diffusers 0.42.1 (tests/test_coverage.py compares with dir(diffusers)).
# Orders: the schedulers' docstrings / papers.  The classes with default configs come first, in the order
# `critdiff validate` runs them; three prediction types are exercised through DDIM and DPM-Solver++.
DIFFUSERS: dict[str, SchedulerEntry] = {
    "DDIMScheduler": _discrete(1.0, DEFAULT, DefaultConfig("v_prediction"), DefaultConfig("sample")),
    "DDPMScheduler": _discrete(1.0, DEFAULT),
    "EulerDiscreteScheduler": _discrete(1.0, DEFAULT),
    "EulerAncestralDiscreteScheduler": _discrete(1.0, DEFAULT),
    "HeunDiscreteScheduler": _discrete(2.0, DEFAULT),
    "LMSDiscreteScheduler": _discrete(4.0, DEFAULT),
    "KDPM2DiscreteScheduler": _discrete(2.0, DEFAULT),
    "KDPM2AncestralDiscreteScheduler": _discrete(None, DEFAULT),
    "DPMSolverMultistepScheduler": _discrete(2.0, DEFAULT, DefaultConfig("v_prediction")),
    "DPMSolverSinglestepScheduler": _discrete(2.0, DEFAULT),
    "UniPCMultistepScheduler": _discrete(3.0, DEFAULT),  # solver_order = 2 predictor + UniC corrector: order p + 1
    "DEISMultistepScheduler": _discrete(2.0, DEFAULT),
    "PNDMScheduler": _discrete(4.0, DEFAULT),  # PLMS (skip_prk_steps) is a 4th-order linear multistep method
    "SASolverScheduler": _discrete(2.0, DEFAULT),
    "EDMEulerScheduler": _discrete(1.0, DEFAULT),
    "EDMDPMSolverMultistepScheduler": _discrete(2.0, DEFAULT),
    "FlowMatchEulerDiscreteScheduler": _flow(1.0, SD3_SHIFT),  # Euler on the rectified-flow ODE
    "FlowMatchHeunDiscreteScheduler": _flow(2.0, SD3_SHIFT),  # Heun (EDM Algorithm 1 in flow time)
    "FlowMatchLCMScheduler": _flow(None, SD3_SHIFT),  # consistency model: checked by the consistency check
    "LCMScheduler": _consistency("lcm", "sigma = 0 (data)",
                                 "exact at every step count; N <= original_inference_steps (50)", DEFAULT),
    "TCDScheduler": _consistency("tcd", "timestep 0 (sigma_0 = sqrt(beta_0 / (1 - beta_0)), not 0)",
                                 "exact at every step count for every gamma (eta) in [0, 1]; N <= original_inference_steps",
                                 DEFAULT),
    "DPMSolverSDEScheduler": _discrete(2.0, DEFAULT),  # k-diffusion's DPM-Solver++ SDE (two stages, midpoint in log sigma)
    # covered, not in the default list
    "SCMScheduler": _consistency("trigflow", "t = 0 (data), output / sigma_data as in the Sana-Sprint pipeline",
                                 "exact at every step count; N = 2 uses intermediate_timesteps = 1.3"),
    "CMStochasticIterativeScheduler": _consistency("cm", "sigma_min",
                                                   "exact at every step count; N <= num_train_timesteps (40)"),
    "CogVideoXDDIMScheduler": _discrete(1.0),  # DDIM on CogVideoX's zero-terminal-SNR schedule
    "CosineDPMSolverMultistepScheduler": _discrete(None),
    "DDIMParallelScheduler": _discrete(1.0),  # DDIM / DDPM with a batched (parallel) step: the same update
    "DDPMParallelScheduler": _discrete(1.0),
    "LTXEulerAncestralRFScheduler": _flow(1.0),  # Euler ancestral on the rectified flow: weak order 1
    "UnCLIPScheduler": _discrete(None),
    "CogVideoXDPMScheduler": _discrete(None),  # its pipeline's step arguments (previous x0, timestep_back): .loop.sample
    "MiniMaxH3Scheduler": _flow(1.0),  # Euler on the rectified flow, data-ward velocity (recognised from its step)
    "FlowMapEulerDiscreteScheduler": _flow(None),  # exact two-time flow map: checked for exactness at every step count
    "DDPMWuerstchenScheduler": _continuous(1.0),  # ancestral DDPM on Wuerstchen's continuous cosine abar(t): weak order 1
    "ScoreSdeVeScheduler": _predictor_corrector(1.0),  # Euler-Maruyama predictor on the VE reverse SDE: weak order 1
    "IPNDMScheduler": _continuous(4.0),  # 4th-order Adams-Bashforth on eps in DDIM form, v-diffusion trig schedule
    # one-line reasons: the class has no meaning on a Gaussian field with an exact model
    "AmusedScheduler": _not_applicable("discrete-state (masked image tokens), not a Gaussian diffusion"),
    "VQDiffusionScheduler": _not_applicable("discrete-state (vector-quantised tokens)"),
    "BlockRefinementScheduler": _not_applicable("discrete-state (token blocks committed by confidence)"),
    "DiscreteDDIMScheduler": _not_applicable("discrete-state (D3PM uniform corruption)"),
    "EntropyBoundScheduler": _not_applicable("discrete-state (uniform corruption, entropy-bounded unmasking)"),
    "RFD4ProteinaScheduler": _not_applicable("protein-structure flow: step() needs per-modality emit masks"),
    "KarrasVeScheduler": _not_applicable("removed from diffusers: exported as a dummy object with no config or step()"),
    "DDIMInverseScheduler": _not_applicable("inversion (data -> noise): no sampling end law to compare"),
    "DPMSolverMultistepInverseScheduler": _not_applicable("inversion (data -> noise): no sampling end law to compare"),
    "RePaintScheduler": _not_applicable("inpainting: step() needs original_image and a mask"),
    "HeliosScheduler": _not_applicable("multi-stage pyramid pipeline: set_timesteps per stage_index, the latent "
                                       "up-sampled and re-noised between stages"),
    "HeliosDMDScheduler": _not_applicable("distilled multi-stage pyramid pipeline: step() re-noises with the pipeline's "
                                          "dmd_noisy_tensor / dmd_sigmas per stage"),
    "PiflowScheduler": _not_applicable("the network outputs a distilled policy (n_grid x0 predictions rolled out per "
                                       "step): no exact-model counterpart"),
}


# -- views (read the registry at call time) ------------------------------------------------------
def catalogued_classes() -> tuple[str, ...]:
    """Every catalogued class name, sorted."""
    return tuple(sorted(DIFFUSERS))


def not_applicable() -> dict[str, str]:
    """Class -> why it is not applicable."""
    return {n: e.not_applicable for n, e in DIFFUSERS.items() if e.not_applicable}


def known_gaps() -> dict[str, str]:
    """Class -> why no runner fits it yet."""
    return {n: e.gap for n, e in DIFFUSERS.items() if e.gap}


def documented_order(class_name: str) -> float | None:
    """The documented order of a class with its default config (None: unknown or not catalogued)."""
    entry = DIFFUSERS.get(class_name)
    return None if entry is None else entry.order


def diffusers_orders() -> dict[str, float]:
    """Class -> documented order, for the classes that have one."""
    return {n: e.order for n, e in DIFFUSERS.items() if e.order is not None}


def consistency_schedulers() -> dict[str, dict[str, str]]:
    """Consistency class -> ``{"kind", "end", "documented"}``."""
    return {n: {"kind": e.kind, "end": e.end, "documented": e.documented}
            for n, e in DIFFUSERS.items() if e.family == "consistency"}


def default_diffusers() -> tuple[tuple, ...]:
    """``critdiff validate``'s default diffusers configs, in order: ``(class, prediction_type)`` or
    ``(class, prediction_type, constructor arguments)``."""
    return tuple((n, d.prediction_type, *((dict(d.config),) if d.config else ()))
                 for n, e in DIFFUSERS.items() for d in e.defaults)


# -- which family runs a scheduler ---------------------------------------------------------------
def _class_of(scheduler) -> type:
    return scheduler if isinstance(scheduler, type) else type(scheduler)


def consistency_kind(scheduler) -> str | None:
    """``"lcm"``, ``"tcd"``, ``"trigflow"``, ``"cm"`` for a consistency scheduler (class or instance), else None.

    A registered consistency class (or a subclass of one) by its entry; otherwise by parametrisation: a
    discrete boundary condition (``get_scalings_for_boundary_condition_discrete``, LCM-like) on an
    ``alphas_cumprod`` table.  FlowMatch* classes (FlowMatchLCM) are flow-matching schedulers.
    """
    cls = _class_of(scheduler)
    for klass in cls.__mro__:
        entry = DIFFUSERS.get(klass.__name__)
        if entry is not None and entry.family == "consistency":
            return entry.kind
    if cls.__name__.startswith("FlowMatch"):
        return None
    if hasattr(cls, "get_scalings_for_boundary_condition_discrete") and hasattr(cls, "step"):
        return "lcm"
    return None


def is_flow_scheduler(scheduler) -> bool:
    """A diffusers flow-matching scheduler the flow family fits: no ``alphas_cumprod`` and a ``FlowMatch*`` class, a
    registered ``"flow"`` class, or a subclass of one.  Other flow-shift configs (Helios' multi-stage pyramid
    schedulers, ``set_timesteps`` per stage) do not run the one-call-per-timestep loop and are left to the
    diffusion-time family's TypeError."""
    if hasattr(scheduler, "alphas_cumprod"):
        return False
    return any(k.__name__.startswith("FlowMatch") or getattr(DIFFUSERS.get(k.__name__), "family", None) == "flow"
               for k in _class_of(scheduler).__mro__)


def diffusers_runner(scheduler, *, prediction_type: str | None = None, sampler_kwargs: dict | None = None,
                     order: float | None = None, name: str | None = None) -> Runner:
    """The ``diffusers`` adapter: a scheduler (class or instance) run by its family's runner on the exact model.

    A class gets its default config minus the image-range clamps; pass an instance to validate a config exactly
    as it is.  ``order`` overrides the registry's documented order (consistency schedulers have none: their
    check is exactness at every step count).
    """
    sampler_kwargs = dict(sampler_kwargs or {})
    kind = consistency_kind(scheduler)
    if kind is not None:  # LCM, TCD, SCM, CMStochasticIterative: exact consistency function
        entry = DIFFUSERS.get(_class_of(scheduler).__name__)
        end = entry.end if entry is not None and entry.end else "sigma = 0 (data)"
        return consistency_runner(scheduler, kind=kind, end=end, prediction_type=prediction_type,
                                  sampler_kwargs=sampler_kwargs, name=name)
    if isinstance(scheduler, type):
        scheduler = unclamped_instance(scheduler)
    if not (hasattr(scheduler, "set_timesteps") and hasattr(scheduler, "config")
            and (hasattr(scheduler, "step") or hasattr(scheduler, "step_pred"))):
        raise TypeError(f"the diffusers adapter needs a diffusers scheduler, got {type(scheduler).__name__}")
    documented = documented_order(type(scheduler).__name__) if order is None else order
    registered = [DIFFUSERS[k.__name__].family for k in type(scheduler).__mro__ if k.__name__ in DIFFUSERS][:1]
    own_loop = {"continuous": continuous_runner, "predictor_corrector": predictor_corrector_runner}
    family = (own_loop[registered[0]] if registered and registered[0] in own_loop
              else flow_scheduler_runner if is_flow_scheduler(scheduler) else discrete_runner)
    return family(scheduler, prediction_type=prediction_type, sampler_kwargs=sampler_kwargs, order=documented, name=name)


# -- adapters -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Adapter:
    """How an adapter name builds a runner: ``factory(sampler, sampler_kwargs=, order=, name=, **options)`` with
    ``options`` the :func:`make_runner` arguments it takes; ``callable_only``: the sampler must be callable."""

    factory: Callable[..., Runner]
    options: tuple[str, ...] = ()
    callable_only: bool = True


# the calling conventions (runners/): name -> runner; the order is the one shown in --help
ADAPTER_TABLE: dict[str, Adapter] = {
    "score": Adapter(score_runner, ("process", "start")),
    "denoiser": Adapter(denoiser_runner, ("sigma_min", "sigma_max", "rho")),
    "k-diffusion": Adapter(denoiser_runner, ("sigma_min", "sigma_max", "rho")),
    "diffusers": Adapter(diffusers_runner, ("prediction_type",), callable_only=False),
    "generator": Adapter(generator_runner),
    "velocity": Adapter(velocity_runner),
}


def adapter_names() -> tuple[str, ...]:
    """The adapter names, read from :data:`ADAPTER_TABLE` at call time."""
    return tuple(ADAPTER_TABLE)


# views as this module was imported, for reading (code that must see later registry entries calls the functions)
ADAPTERS = adapter_names()
CONSISTENCY_SCHEDULERS = consistency_schedulers()


def make_runner(
    sampler,
    adapter: str = "score",
    *,
    process=None,
    start: str = "noise",
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    prediction_type: str | None = None,
    sampler_kwargs: dict | None = None,
    order: float | None = None,
    name: str | None = None,
) -> Runner:
    """Wrap ``sampler`` (an object or a ``"pkg.module:attr"`` string) with the named adapter (:data:`ADAPTER_TABLE`).

    A :class:`Runner` is already wrapped: it is returned as it is (``order`` / ``name`` override its own).
    """
    if isinstance(sampler, Runner):
        if order is not None:
            sampler.order = order
        if name is not None:
            sampler.name = name
        return sampler
    if isinstance(sampler, str):
        sampler = load_object(sampler, "scheduler" if adapter == "diffusers" else "sampler")
    if adapter not in ADAPTER_TABLE:
        raise ValueError(f"adapter must be one of {adapter_names()}, got adapter={adapter!r}")
    if order is not None and not (isinstance(order, (int, float)) and order > 0):
        raise ValueError(f"order must be a number > 0 or None, got order={order!r}")
    spec = ADAPTER_TABLE[adapter]
    if spec.callable_only and not callable(sampler):
        raise TypeError(f"sampler must be callable for the {adapter!r} adapter, got {type(sampler).__name__}")
    given = {"process": process, "start": start, "sigma_min": sigma_min, "sigma_max": sigma_max, "rho": rho,
             "prediction_type": prediction_type}
    return spec.factory(sampler, sampler_kwargs=dict(sampler_kwargs or {}), order=order, name=name,
                        **{k: given[k] for k in spec.options})


# -- general solver libraries (validate.libraries: their samplers, adaptive checks and planted bugs) -------------
# extra name in pyproject -> importable module; `critdiff validate --libraries`, `critdiff coverage --libraries`
# and `critdiff mutants` read this table
LIBRARIES = {"torchdiffeq": "torchdiffeq", "torchsde": "torchsde", "flow-matching": "flow_matching"}
