"""Where a sweep keeps its results: one JSON file per job, written atomically, plus a log of timings.

``<out>/results/<kind>-<id>.json`` holds ``format, id, kind, version, group, params, status`` and either
``result`` or ``error`` / ``traceback``: only what the job's parameters determine, so two engines give
byte-identical files. Wall times, hosts and attempts go to ``<out>/log.jsonl`` (one line per finished
job); figures a job returns (``_files``, base64) go to ``<out>/artifacts/<id>/``.
"""

from __future__ import annotations

import base64
import json
import os
import time

from .._io import atomic_path
from .spec import Job

__all__ = ["FORMAT", "write_atomic", "result_path", "write_result", "read_result", "append_log", "read_log"]

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


def write_result(out: str | os.PathLike, job: Job, outcome: dict) -> str:
    """Store one job's outcome (from :func:`critdiff_ref.sweep.jobs.execute`); returns the result file."""
    from .spec import _version

    record = {"format": FORMAT, "id": job.id, "kind": job.kind, "version": _version(), "group": job.group,
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
    return write_atomic(result_path(out, job), json.dumps(record, indent=1, sort_keys=True) + "\n")


def read_result(out: str | os.PathLike, job: Job) -> dict | None:
    """The stored record of ``job``, or ``None`` when there is none (or it cannot be read)."""
    try:
        with open(result_path(out, job)) as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    return record if record.get("id") == job.id else None


def append_log(out: str | os.PathLike, job: Job, outcome: dict, attempts: int = 1) -> None:
    """One line of ``log.jsonl``: id, status, seconds, host, pid, attempts, time."""
    line = {"id": job.id, "kind": job.kind, "status": outcome["status"], "seconds": outcome.get("seconds"),
            "host": outcome.get("host"), "pid": outcome.get("pid"), "attempts": attempts, "time": time.time()}
    with open(os.path.join(os.fspath(out), "log.jsonl"), "a") as fh:
        fh.write(json.dumps(line) + "\n")


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
                found[line.get("id")] = line
    except OSError:
        pass
    return found
