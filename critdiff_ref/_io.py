"""Output files shared by every command: atomic writes that honour the umask, strict JSON, and
output paths checked before a run starts.

- :func:`atomic_path` / :func:`atomic_write_text`: write to a temporary file in the target's folder,
  ``fsync``, then ``os.replace`` into place, so a reader (or an interrupted run) never sees a
  half-written file and the previous file stays until the new one is complete.  The file gets the
  mode a plain ``open(path, "w")`` would give (``0o666 & ~umask``), not ``mkstemp``'s ``0o600``.
- :func:`strict_json`: JSON with ``allow_nan=False``; a NaN or infinity becomes ``null`` and its
  JSON path is listed under a top-level ``"nulls"`` key with the reason.
- :func:`save_weights` / :func:`read_checkpoint`: a checkpoint (tensors and plain values only) written by
  ``torch.save`` through :func:`atomic_path` and read back with ``torch.load(weights_only=True)``
  (no pickled code runs on load); its reader checks the ``"format"`` tag.
- :func:`check_output_file` / :func:`check_output_dir`: ``ValueError`` naming the flag the user typed
  when an output cannot be written (missing folder, a folder where a file is wanted, or the reverse).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import threading
from typing import Any, Iterator, Mapping

__all__ = ["umask", "atomic_path", "atomic_write_text", "save_weights", "read_checkpoint", "strict_json",
           "check_output_file", "check_output_dir"]

_UMASK_LOCK = threading.Lock()


def umask() -> int:
    """The process umask (read without changing it for longer than two system calls)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path next to ``path``; on normal exit it replaces ``path`` atomically.

    On any exception (``KeyboardInterrupt`` included) the temporary file is removed and ``path`` is
    left as it was.  The new file's mode is ``0o666 & ~umask``.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.tmp-", suffix=suffix)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as fh:  # the writer may have closed its handle: flush the data to disk
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`); returns the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    return os.fspath(path)


def save_weights(path: str | os.PathLike, payload: Mapping[str, Any]) -> str:
    """``torch.save(payload)`` to ``path`` atomically (:func:`atomic_path`), creating its folder; returns the path.

    ``payload`` must hold only what ``torch.load(weights_only=True)`` accepts (tensors, dicts, lists,
    str / int / float / bool / None) and a ``"format"`` tag that its reader checks."""
    import torch

    if "format" not in payload:
        raise ValueError("payload must have a 'format' key (checked by its reader)")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(dict(payload), tmp)
    return path


def _json_safe(obj: Any, where: str, nulls: dict, reasons: Mapping[str, str]) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        key = where.rpartition(".")[2]
        nulls[where] = reasons.get(where) or reasons.get(key) or f"{obj!r} (no finite value; JSON has no NaN/inf)"
        return None
    if isinstance(obj, Mapping):
        return {k: _json_safe(v, f"{where}.{k}" if where else str(k), nulls, reasons) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v, f"{where}[{i}]", nulls, reasons) for i, v in enumerate(obj)]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy / torch scalars
        return _json_safe(obj.item(), where, nulls, reasons)
    if hasattr(obj, "tolist"):  # numpy arrays, tensors
        return _json_safe(obj.tolist(), where, nulls, reasons)
    return obj


def strict_json(obj: Any, *, reasons: Mapping[str, str] | None = None, default=None, indent: int | None = 2,
                sort_keys: bool = False) -> str:
    """``obj`` as strict JSON (``allow_nan=False``): NaN / inf become ``null``, each listed with its reason.

    ``reasons`` maps a JSON path (``"dm.generated.binder"``, ``"[3].measured"``) or a bare key
    (``"binder"``) to the reason written for it; unlisted ones get a generic reason.  When ``obj`` is a
    dict the reasons go under its ``"nulls"`` key; otherwise the result is ``{"data": obj, "nulls": ...}``
    only when there were nulls.  ``default`` converts other objects (as in :func:`json.dumps`);
    ``sort_keys`` as in :func:`json.dumps` (a canonical form: equal data, equal bytes).
    """
    nulls: dict[str, str] = {}
    if default is not None:  # apply default first so its output is checked too
        obj = json.loads(json.dumps(obj, default=default, allow_nan=True))
    safe = _json_safe(obj, "", nulls, reasons or {})
    if nulls:
        safe = {**safe, "nulls": nulls} if isinstance(safe, dict) else {"data": safe, "nulls": nulls}
    return json.dumps(safe, indent=indent, allow_nan=False, sort_keys=sort_keys) + "\n"


def check_output_file(path: str | os.PathLike | None, flag: str, *, suffix: str | None = None) -> None:
    """ValueError naming ``flag`` unless ``path`` can be written as a file (its folder exists, it is
    not a folder, the folder is writable, and it ends with ``suffix`` when given).  ``None`` passes."""
    if path is None:
        return
    path = os.fspath(path)
    if suffix is not None and not path.endswith(suffix):
        raise ValueError(f"{flag} {path}: the file name must end in {suffix}")
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path}: is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: folder {folder} is not writable")


def check_output_dir(path: str | os.PathLike | None, flag: str) -> None:
    """ValueError naming ``flag`` when ``path`` exists and is not a folder, or its nearest existing
    parent is not a writable folder (it is created later, by the run; a file is created there and removed
    at once to find out).  ``None`` passes."""
    if path is None:
        return
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{flag} {path}: exists and is not a folder")
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{flag} {path}: {parent} is a file, so the folder cannot be created")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: {parent} is not writable")
    why = _unwritable(parent)
    if why:
        raise ValueError(f"{flag} {path}: {parent} is not writable ({why})")


def _unwritable(folder: str) -> str | None:
    """Why ``folder`` cannot take a new file, or None: a file is created there and removed at once (a read-only
    file system, ``/proc``, or root on a folder others cannot write all pass ``os.access``)."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".critdiff-write-check-")
    except OSError as err:
        return err.strerror or type(err).__name__
    os.close(fd)
    os.unlink(probe)
    return None


def read_checkpoint(path: str | os.PathLike, *, what: str = "checkpoint") -> dict:
    """Read a :func:`save_weights` file with ``torch.load(weights_only=True)`` onto the CPU.

    Every way a file can fail to be a checkpoint -- missing, a folder, empty, truncated, text or other
    garbage, pickled code, not a dict -- is ONE ``ValueError`` naming the file and ``what`` it should be
    (a command turns it into a one-line message and exit code 2), never a torch traceback."""
    import pickle
    import zipfile

    import torch

    name = os.fspath(path)
    if os.path.isdir(name):
        raise ValueError(f"{name}: is a folder, not a {what} file")
    if not os.path.isfile(name):
        raise ValueError(f"{name}: no such {what} file")
    if os.path.getsize(name) == 0:
        raise ValueError(f"{name}: empty file, not a {what}")
    try:
        payload = torch.load(name, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError,
            IndexError, TypeError, AttributeError, ImportError) as err:
        if isinstance(err, pickle.UnpicklingError):  # torch's message is a page of advice on weights_only
            reason = "not a torch.save file of tensors and plain values"
        else:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise ValueError(f"{name}: not a readable {what} (damaged, truncated or another kind of file: "
                         f"{type(err).__name__}: {reason})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{name}: not a {what} (holds a {type(payload).__name__}, not a dict)")
    return payload


__all__ += ["read_checkpoint"]


def check_writable_file(path: str | os.PathLike | None, flag: str, *, suffix: str | None = None) -> None:
    """:func:`check_output_file`, then a real probe: create and remove a temporary file in the folder, so a
    folder that only looks writable (a read-only mount, ``/proc``, permissions that ``os.access`` misjudges
    for root) fails here, before a run, and not when the result is saved. ``None`` passes."""
    check_output_file(path, flag, suffix=suffix)
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    why = _unwritable(folder)
    if why:
        raise ValueError(f"{flag} {os.fspath(path)}: cannot write in folder {folder} ({why})")


__all__ += ["check_writable_file"]
