"""The user's own code named on a command line or in a spec: ``"pkg.module:attr"`` imported from the current
folder or the import path, with one-line errors that say what the object is (``sampler``, ``scheduler``,
``function``).  One implementation for ``critdiff validate``, the pytest plugin and sweeps."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__all__ = ["import_object"]


def import_object(ref: Any, what: str) -> Any:
    """Import ``"pkg.module:attr"`` (``attr`` may be dotted) from the current folder or ``sys.path``.

    The current folder is put first on ``sys.path`` (as ``python -m`` does).  ``what`` names the object
    (``sampler``, ``scheduler``, ``function``) in the one-line ``ValueError`` raised when the reference is
    malformed, the module is missing, fails to import (any exception; a syntax error names the file and
    line), or lacks the attribute."""
    if not isinstance(ref, str) or ref.count(":") != 1 or not all(ref.split(":")):
        raise ValueError(f"{what} must be 'pkg.module:attr', got {what}={ref!r}")
    mod_name, attr = ref.split(":")
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        obj = importlib.import_module(mod_name)
    except ModuleNotFoundError as err:
        if err.name and mod_name.startswith(err.name):
            raise ValueError(f"{what}={ref!r}: no module named {err.name!r} in the current folder ({here}) "
                             f"or on the import path") from None
        raise ValueError(f"{what}={ref!r}: importing {mod_name!r} failed: {err}") from None
    except SyntaxError as err:
        raise ValueError(f"{what}={ref!r}: {err.filename}, line {err.lineno}: syntax error: {err.msg}") from None
    except (Exception, SystemExit, GeneratorExit) as err:  # noqa: BLE001 - the user's module failed to import
        raise ValueError(f"{what}={ref!r}: importing {mod_name!r} raised {type(err).__name__}: {err}") from None
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            owner = ".".join([mod_name, *attr.split(".")[:i]])
            raise ValueError(f"{what}={ref!r}: {owner!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    return obj
