"""Where a sweep keeps its results: one JSON file per job, written atomically, plus a log of timings.

``<out>/results/<kind>-<id>.json`` holds ``format, id, kind, version, group, params, status`` and either
``result`` or ``error`` / ``traceback``: only what the job's parameters determine, so two engines give
byte-identical files. Every file is strict JSON (:func:`critdiff_ref._io.strict_json`: a NaN or infinity is
``null``, its path listed under ``nulls``). Wall times, hosts and attempts go to ``<out>/log.jsonl`` (one
line per finished job); what a job printed goes to ``<out>/logs/<kind>-<id>.log``; figures a job returns
(``_files``, base64) go to ``<out>/artifacts/<id>/``. A result file that is not a record of its job (cut,
edited, a folder in its place) is reported by :func:`check_result` and its job runs again.
"""

from __future__ import annotations

import base64
import json
import os
import time

from .._io import atomic_path, strict_json
from .spec import Job

__all__ = ["FORMAT", "write_atomic", "result_path", "log_path", "write_result", "check_result", "read_result",
           "append_log", "read_log"]

FORMAT = 1


def write_atomic(path: str | os.PathLike, data: bytes | str) -> str:
    """Write ``data`` to ``path`` (its folder created) through :func:`critdiff_ref._io.atomic_path`: readers see
    the old file or the whole new one, never a part; the mode is ``0o666 & ~umask``."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
    return path


def result_path(out: str | os.PathLike, job: Job) -> str:
    return os.path.join(os.fspath(out), "results", job.filename)


def log_path(out: str | os.PathLike, job: Job) -> str:
    """``<out>/logs/<kind>-<id>.log``: what the job printed (stdout and stderr, in order)."""
    return os.path.join(os.path.abspath(os.fspath(out)), "logs", job.filename[:-len(".json")] + ".log")


def write_result(out: str | os.PathLike, job: Job, outcome: dict) -> str:
    """Store one job's outcome (from :func:`critdiff_ref.sweep.jobs.execute`); returns the result file."""
    from .spec import package_version

    record = {"format": FORMAT, "id": job.id, "kind": job.kind, "version": package_version(), "group": job.group,
              "params": job.params, "status": outcome["status"]}
    if outcome["status"] == "ok":
        result = dict(outcome["result"])
        files = result.pop("_files", None) or {}
        for name, b64 in files.items():
            write_atomic(os.path.join(os.fspath(out), "artifacts", job.id, os.path.basename(name)),
                         base64.b64decode(b64))
        if files:
            result["artifacts"] = [os.path.join("artifacts", job.id, os.path.basename(n)) for n in sorted(files)]
        record["result"] = result
    else:
        record["error"] = outcome.get("error", "unknown error")
        record["traceback"] = outcome.get("traceback", "")
    path = result_path(out, job)
    if os.path.isdir(path):  # not a record (check_result said so): keep it aside, out of the job's way
        n = 0
        while os.path.lexists(f"{path}.corrupt{n or ''}"):
            n += 1
        os.replace(path, f"{path}.corrupt{n or ''}")
    return write_atomic(path, strict_json(record, indent=1, sort_keys=True))


def check_result(out: str | os.PathLike, job: Job) -> tuple[dict | None, str | None]:
    """``(record, None)`` for a stored record of ``job``; ``(None, None)`` when there is none; ``(None, why)``
    when the file is there but is not a record of this job (the job is then run again)."""
    path = result_path(out, job)
    if not os.path.lexists(path):
        return None, None
    if os.path.isdir(path):
        return None, "is a folder"
    try:
        with open(path, "rb") as fh:
            record = json.loads(fh.read())
    except OSError as err:
        return None, f"cannot be read ({err.strerror})"
    except ValueError as err:
        return None, f"is not valid JSON ({err})"
    if not isinstance(record, dict):
        return None, f"holds a {type(record).__name__}, not a record"
    if record.get("id") != job.id:
        return None, f"has id {record.get('id')!r}, not {job.id!r}"
    if record.get("status") not in ("ok", "error"):
        return None, f"has status {record.get('status')!r} (not 'ok' or 'error')"
    if record["status"] == "ok" and not isinstance(record.get("result"), dict):
        return None, "has status 'ok' but no result"
    return record, None


def read_result(out: str | os.PathLike, job: Job) -> dict | None:
    """The stored record of ``job``, or ``None`` when there is none or it is not a record (:func:`check_result`)."""
    return check_result(out, job)[0]


def append_log(out: str | os.PathLike, job: Job, outcome: dict, attempts: int = 1) -> None:
    """One line of ``log.jsonl``: id, status, seconds, host, pid, attempts, time."""
    line = {"id": job.id, "kind": job.kind, "status": outcome["status"], "seconds": outcome.get("seconds"),
            "host": outcome.get("host"), "pid": outcome.get("pid"), "attempts": attempts, "time": time.time()}
    with open(os.path.join(os.fspath(out), "log.jsonl"), "a") as fh:
        fh.write(strict_json(line, indent=None))


def read_log(out: str | os.PathLike) -> dict[str, dict]:
    """The last log line of each job id (seconds of its latest run)."""
    found: dict[str, dict] = {}
    try:
        with open(os.path.join(os.fspath(out), "log.jsonl")) as fh:
            for text in fh:
                try:
                    line = json.loads(text)
                except ValueError:
                    continue  # a line cut by a crash
                if isinstance(line, dict):
                    found[line.get("id")] = line
    except OSError:
        pass
    return found
