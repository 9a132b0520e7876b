"""The user's own code in a sweep: ``"pkg.module:attr"`` references imported with one-line errors, the
current folder on the import path, and a digest of the file that defines the object (part of the job id,
so editing your function reruns its jobs)."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import pathlib
import sys
from typing import Any

__all__ = ["import_path", "use_import_path", "import_object", "object_digest"]

_PACKAGE = pathlib.Path(__file__).resolve().parents[1]


def import_path() -> list[str]:
    """The entries a job prepends to ``sys.path``: the current folder (absolute), then the driver's own
    entries outside the Python installation (``PYTHONPATH``, a script's folder), so a job imports what
    ``python -c "import mod"`` run here would import; the installation's folders are the worker's own."""
    here = os.getcwd()
    prefixes = {os.path.abspath(p) + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    out = [here]
    for entry in sys.path:
        path = os.path.abspath(entry) if entry else here
        if path not in out and os.path.isdir(path) and not any((path + os.sep).startswith(p) for p in prefixes):
            out.append(path)
    return out


def use_import_path(path: list[str]) -> None:
    """Prepend the existing folders of ``path`` (from :func:`import_path`) to this process's ``sys.path``."""
    sys.path[:0] = [p for p in path if p not in sys.path and os.path.isdir(p)]


def import_object(ref: Any, what: str) -> Any:
    """Import ``"pkg.module:attr"`` (``attr`` may be dotted) from the current folder or ``sys.path``.

    ``what`` names the parameter (``function``, ``sampler``) in the one-line ``ValueError`` raised when the
    reference is malformed, the module is missing, fails to import (any exception, syntax errors too), or
    lacks the attribute."""
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
    except Exception as err:  # noqa: BLE001 - the user's module raised while importing: say so in one line
        raise ValueError(f"{what}={ref!r}: importing {mod_name!r} raised {type(err).__name__}: {err}") from None
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            owner = ".".join([mod_name, *attr.split(".")[:i]])
            raise ValueError(f"{what}={ref!r}: {owner!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    return obj


def object_digest(obj: Any) -> str | None:
    """SHA-256 of the source file defining ``obj`` (its module's file), or None when it has no Python
    source or lives in this package (already covered by the package digest)."""
    try:
        path = inspect.getsourcefile(obj) or inspect.getsourcefile(inspect.getmodule(obj))
    except TypeError:
        path = None
    if path is None:
        module = inspect.getmodule(obj)
        path = getattr(module, "__file__", None)
    if not path or not path.endswith(".py") or not os.path.isfile(path):
        return None
    resolved = pathlib.Path(path).resolve()
    if resolved.is_relative_to(_PACKAGE):
        return None
    return hashlib.sha256(resolved.read_bytes()).hexdigest()
