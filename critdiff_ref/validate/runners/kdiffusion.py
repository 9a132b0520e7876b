"""k-diffusion's samplers (``k_diffusion/sampling.py``) validated through the ``denoiser`` adapter (THEORY 1, 2).

Importing ``k_diffusion.sampling`` runs the package ``__init__``, which imports k-diffusion's training and
evaluation code (torchvision, kornia, scikit-image, clean-fid, CLIP, wandb, ...).  ``sampling.py`` itself
needs only torch, scipy, torchdiffeq, torchsde, tqdm and one helper of ``k_diffusion/utils.py``
(``append_dims``).  :func:`load_sampling` therefore

1. imports ``k_diffusion.sampling`` normally when that works (a full install), else
2. executes the installed, unmodified ``k_diffusion/sampling.py`` as the module ``_critdiff_k_diffusion.sampling``
   of a private package, whose ``utils`` holds only the functions ``sampling.py`` uses, executed from the
   installed ``k_diffusion/utils.py`` source (found by parsing it, not copied here).

Light install (what docs/guides/kdiffusion.md and the ``kdiffusion`` extra describe):
``pip install "critdiff-ref[kdiffusion]" && pip install --no-deps k-diffusion==0.1.1.post1``.

:data:`KDIFFUSION_SAMPLERS` lists every ``sample_*`` function of ``sampling.py`` with its documented order
and how it is called; :func:`kdiffusion_runner` wraps one for ``validate``;
:func:`critdiff_ref.validate.coverage.kdiffusion_table` measures them all (``critdiff coverage --kdiffusion``; docs/guides/kdiffusion.md).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Callable, NamedTuple

from .base import Runner
from .denoiser import denoiser_runner

__all__ = [
    "load_sampling",
    "KDiffusionSampler",
    "KDIFFUSION_SAMPLERS",
    "sampler_names",
    "kdiffusion_runner",
]

_PRIVATE = "_critdiff_k_diffusion"


def _utils_subset(utils_path: Path, names: set[str]) -> types.ModuleType:
    """A module holding the top-level functions ``names`` of k-diffusion's ``utils.py``, executed from its source."""
    tree = ast.parse(utils_path.read_text())
    defs = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    missing = names - {d.name for d in defs}
    if missing:
        raise ImportError(f"k_diffusion/utils.py has no {sorted(missing)} (sampling.py needs them)")
    mod = types.ModuleType(f"{_PRIVATE}.utils")
    mod.__file__ = str(utils_path)
    import math as _math

    import torch as _torch

    mod.__dict__.update(torch=_torch, math=_math)
    exec(compile(ast.Module(body=defs, type_ignores=[]), str(utils_path), "exec"), mod.__dict__)  # noqa: S102
    return mod


@functools.lru_cache(maxsize=None)
def load_sampling() -> types.ModuleType:
    """``k_diffusion.sampling`` (module docstring); ``ImportError`` naming the light install when absent."""
    try:
        return importlib.import_module("k_diffusion.sampling")
    except ImportError as err:
        first = err
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("k-diffusion is not installed: pip install \"critdiff-ref[kdiffusion]\" && "
                          "pip install --no-deps k-diffusion==0.1.1.post1") from first
    root = Path(list(spec.submodule_search_locations)[0])
    sampling_path = root / "sampling.py"
    needed = {node.attr for node in ast.walk(ast.parse(sampling_path.read_text()))
              if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "utils"}
    pkg = types.ModuleType(_PRIVATE)
    pkg.__path__ = []  # a package with no files of its own: both submodules are set below
    pkg.__file__ = str(root / "__init__.py")
    utils = _utils_subset(root / "utils.py", needed)
    sys.modules[_PRIVATE], sys.modules[f"{_PRIVATE}.utils"] = pkg, utils
    pkg.utils = utils
    try:
        mspec = importlib.util.spec_from_file_location(f"{_PRIVATE}.sampling", sampling_path)
        module = importlib.util.module_from_spec(mspec)
        sys.modules[mspec.name] = module
        mspec.loader.exec_module(module)  # imports torch, scipy, torchdiffeq, torchsde, tqdm
    except ImportError as err:
        for key in (f"{_PRIVATE}.sampling", f"{_PRIVATE}.utils", _PRIVATE):
            sys.modules.pop(key, None)
        raise ImportError(f"k_diffusion/sampling.py needs {err.name}: pip install \"critdiff-ref[kdiffusion]\"") from err
    pkg.sampling = module
    return module


class KDiffusionSampler(NamedTuple):
    """One ``sample_*`` function of k-diffusion: documented order, noise, and how it is called.

    ``call``: ``"sigmas"`` (``f(model, x, sigmas, ...)``), ``"fast"`` (``f(model, x, sigma_min, sigma_max, n)``,
    ``n`` model evaluations) or ``"adaptive"`` (``f(model, x, sigma_min, sigma_max, rtol=, atol=)``, no step
    count: the tolerance is tied to the step count, ``rtol = atol = 1 / N^2``).  ``noise``: ``"none"``
    (deterministic), ``"iid"`` (``default_noise_sampler``: independent normals), ``"brownian"``
    (``BrownianTreeNoiseSampler``).  ``source``: where the order is documented.
    """

    order: float | None
    noise: str
    call: str
    source: str
    kwargs: dict = {}


KDIFFUSION_SAMPLERS: dict[str, KDiffusionSampler] = {
    "euler": KDiffusionSampler(1.0, "none", "sigmas", "Karras et al. 2022, Alg. 2 without churn (Euler)"),
    "euler_ancestral": KDiffusionSampler(1.0, "iid", "sigmas", "Euler step to sigma_down + ancestral noise (first order)"),
    "heun": KDiffusionSampler(2.0, "none", "sigmas", "Karras et al. 2022, Alg. 2 (Heun, 2nd order)"),
    "dpm_2": KDiffusionSampler(2.0, "none", "sigmas", "DPM-Solver-2 (Lu et al. 2022), midpoint in log sigma"),
    "dpm_2_ancestral": KDiffusionSampler(2.0, "iid", "sigmas", "DPM-Solver-2 step to sigma_down + ancestral noise"),
    "lms": KDiffusionSampler(4.0, "none", "sigmas", "linear multistep, order=4 (its default)"),
    "dpm_fast": KDiffusionSampler(3.0, "none", "fast", "DPM-Solver-fast (Lu et al. 2022): steps of order 3 (last 1-2)"),
    "dpm_adaptive": KDiffusionSampler(None, "none", "adaptive", "DPM-Solver-12/23 adaptive: error-controlled, no order"),
    "dpmpp_2s_ancestral": KDiffusionSampler(2.0, "iid", "sigmas", "DPM-Solver++(2S) step to sigma_down + ancestral noise"),
    "dpmpp_sde": KDiffusionSampler(2.0, "brownian", "sigmas", "DPM-Solver++ (stochastic), 2 stages (r = 1/2)"),
    "dpmpp_2m": KDiffusionSampler(2.0, "none", "sigmas", "DPM-Solver++(2M) (Lu et al. 2022b)"),
    "dpmpp_2m_sde": KDiffusionSampler(2.0, "brownian", "sigmas", "DPM-Solver++(2M) SDE, midpoint (Lu et al. 2022b)"),
    "dpmpp_3m_sde": KDiffusionSampler(3.0, "brownian", "sigmas", "DPM-Solver++(3M) SDE"),
}


def sampler_names() -> list[str]:
    """Every ``sample_*`` function name (without the prefix) of the installed ``k_diffusion.sampling``."""
    sampling = load_sampling()
    return sorted(n[len("sample_"):] for n, f in vars(sampling).items() if n.startswith("sample_") and callable(f))


def _wrap(name: str, entry: KDiffusionSampler, fn: Callable) -> Callable:
    """``sampler(model, x, sigmas[, noise_sampler])`` for the denoiser adapter, whatever ``fn``'s calling convention
    (no ``**kwargs``: the adapter passes ``generator=`` only to samplers that name it, and k-diffusion's do not)."""
    def call(model, x, sigmas, **kw):
        kw = {"disable": True, **entry.kwargs, **kw}
        if entry.call == "sigmas":
            return fn(model, x, sigmas, **kw)
        pos = sigmas[sigmas > 0]
        if entry.call == "fast":
            return fn(model, x, float(pos.min()), float(pos.max()), len(sigmas) - 1, **kw)
        tol = 1.0 / (len(sigmas) - 1) ** 2
        return fn(model, x, float(pos.min()), float(pos.max()), rtol=tol, atol=tol, **kw)

    if entry.noise == "none":
        def sampler(model, x, sigmas):
            return call(model, x, sigmas)
    else:
        def sampler(model, x, sigmas, noise_sampler=None):
            return call(model, x, sigmas, noise_sampler=noise_sampler)
    sampler.__name__ = sampler.__qualname__ = f"k_diffusion.sample_{name}"
    return sampler


def kdiffusion_runner(name: str, **denoiser_kw) -> Runner:
    """``k_diffusion.sampling.sample_<name>`` through the denoiser adapter (its documented order);
    ``denoiser_kw`` go to :func:`.denoiser.denoiser_runner` (``sigma_min``, ``sigma_max``, ``rho``, ``order``, ...)."""
    if name not in KDIFFUSION_SAMPLERS:
        raise ValueError(f"name must be one of {sorted(KDIFFUSION_SAMPLERS)}, got {name!r}")
    entry = KDIFFUSION_SAMPLERS[name]
    fn = getattr(load_sampling(), f"sample_{name}")
    kw = {"order": entry.order, "name": f"k_diffusion.sample_{name}", **denoiser_kw}
    runner = denoiser_runner(_wrap(name, entry, fn), **kw)
    runner.deterministic = entry.noise == "none"
    if entry.call != "sigmas":
        # DPM-Solver fast / adaptive integrate from sigma_max to sigma_min (the smallest positive sigma the wrapper
        # passes) and return x there, with no final denoise: the exact flow ends at sigma_min too
        to_zero = runner.schedule
        end = float(runner.info["sigma_min"]) ** 2
        runner.schedule = lambda target, steps: dataclasses.replace(to_zero(target, steps), t_min=end)
    return runner
