"""Old import paths that the README once told users to use, kept working with a DeprecationWarning.

These modules moved into concept packages (and the validate package was cut into runners, checks,
mutants and a registry).  ``import critdiff_ref.mutants`` (or
``from critdiff_ref import condensation``) gives a small stand-in module whose attributes are
looked up, on first use, in the new homes listed here; nothing else is aliased.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

# old path -> the modules its public names live in now (searched in order)
MOVED: dict[str, tuple[str, ...]] = {
    "critdiff_ref.mutants": ("critdiff_ref.validate.mutants", "critdiff_ref.validate.mutants.samplers"),
    "critdiff_ref.sde_order": ("critdiff_ref.samplers.sde_order", "critdiff_ref.samplers.sde_schemes"),
    "critdiff_ref.curie_weiss": ("critdiff_ref.thermo.curie_weiss",),
    "critdiff_ref.condensation": ("critdiff_ref.thermo.condensation",),
    "critdiff_ref.ensemble": ("critdiff_ref.phi4.ensemble",),
    # the validate package cut into runners/, checks/, mutants/ and a registry
    "critdiff_ref.validate.adapters": ("critdiff_ref.validate.registry", "critdiff_ref.validate.references",
                                       "critdiff_ref.validate.runners"),
    "critdiff_ref.validate.runner": ("critdiff_ref.validate.runners.base",),
    "critdiff_ref.validate.running": ("critdiff_ref.validate.runners.execute",),
    "critdiff_ref.validate.schedulers": ("critdiff_ref.validate.runners.diffusers.discrete",
                                         "critdiff_ref.validate.registry"),
    "critdiff_ref.validate.flow": ("critdiff_ref.validate.references", "critdiff_ref.validate.runners.velocity",
                                   "critdiff_ref.validate.runners.diffusers.flow", "critdiff_ref.validate.registry",
                                   "critdiff_ref.scores"),
    "critdiff_ref.validate.consistency": ("critdiff_ref.validate.runners.diffusers.consistency",
                                          "critdiff_ref.validate.checks.consistency", "critdiff_ref.validate.registry"),
    "critdiff_ref.validate.sde_solvers": ("critdiff_ref.validate.runners.brownian",
                                          "critdiff_ref.validate.checks.order"),
    "critdiff_ref.validate.kdiffusion": ("critdiff_ref.validate.runners.kdiffusion", "critdiff_ref.validate.coverage"),
    "critdiff_ref.validate.sde_order": ("critdiff_ref.samplers.sde_order",),
    "critdiff_ref.validate.mutant_catalogue": ("critdiff_ref.validate.mutants.catalogue",
                                               "critdiff_ref.validate.mutants.samplers"),
    "critdiff_ref.validate.mutant_schedulers": ("critdiff_ref.validate.mutants.schedulers",),
    "critdiff_ref.validate.probes": ("critdiff_ref.validate.checks.probes",),
    "critdiff_ref.validate.nongaussian": ("critdiff_ref.validate.checks.nongaussian",),
}


class _MovedModule(types.ModuleType):
    """Stand-in for a moved module: attribute access is forwarded to the new homes."""

    def __init__(self, name: str, homes: tuple[str, ...]):
        super().__init__(name, f"Moved: use {' / '.join(homes)}.")
        self._homes = homes

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        for home in self._homes:
            module = importlib.import_module(home)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} (moved to {self._homes[0]}) has no attribute {attr!r}")

    def __dir__(self):
        return sorted({n for home in self._homes for n in getattr(importlib.import_module(home), "__all__", ())})


def moved_module(name: str) -> _MovedModule:
    """The stand-in for ``name`` (a key of :data:`MOVED`), with a DeprecationWarning naming the new home."""
    warnings.warn(f"{name} moved to {MOVED[name][0]}; the old path will be removed", DeprecationWarning, stacklevel=3)
    return _MovedModule(name, MOVED[name])


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        return moved_module(spec.name)

    def exec_module(self, module):
        pass


def install() -> None:
    """Put the finder for the old paths on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
