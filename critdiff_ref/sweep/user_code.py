"""The user's own code in a sweep: the import path its jobs use (references are imported by
:func:`critdiff_ref._user_code.import_object`), and a digest of the file that defines the object (part of the job id,
so editing your function reruns its jobs)."""

from __future__ import annotations

import hashlib
import inspect
import os
import pathlib
import sys
from typing import Any

__all__ = ["import_path", "use_import_path", "object_digest"]

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
