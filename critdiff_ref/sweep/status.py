"""What a sweep's output folder holds, job by job: ``done``, ``failed`` or ``pending``.

:func:`job_states` reads the result files and the timing log; :func:`write_index` keeps ``<out>/index.json``
(one entry per job: its result and log files, group, varying parameters, state, attempts, seconds, error)
so a result file can be found by its parameters; :func:`sweep_status` is ``critdiff sweep status OUT``,
which needs only the folder (its ``spec.json`` lists the jobs of the last run); for ``phi4-exact-dm`` jobs it
also pools the chains finished so far (:mod:`.pooled`), so a long study can be read while it runs.
"""

from __future__ import annotations

import json
import os

from .. import _io
from .pooled import exact_dm_pools, format_pools
from .spec import Job, Resources
from .store import check_result, log_path, read_log, read_result, write_atomic

__all__ = ["job_states", "write_index", "jobs_of", "sweep_status", "format_status"]


def job_states(out: str | os.PathLike, jobs: list[Job]) -> list[dict]:
    """One dict per job: ``file, log, group, kind, varying, state`` (done | failed | pending), ``attempts``,
    ``seconds``, ``error`` (failed) and ``problem`` (a result file that is not a record: pending)."""
    out = os.fspath(out)
    log = read_log(out)
    states = []
    for job in jobs:
        rec, problem = check_result(out, job)
        state = "pending" if rec is None else "done" if rec["status"] == "ok" else "failed"
        entry = {"file": os.path.join("results", job.filename), "kind": job.kind, "group": job.group,
                 "varying": job.varying, "state": state}
        if os.path.isfile(log_path(out, job)):
            entry["log"] = os.path.relpath(log_path(out, job), os.path.abspath(out))
        line = log.get(job.id, {}) if rec is not None else {}
        entry.update(attempts=line.get("attempts"), seconds=line.get("seconds"))
        if state == "failed":
            entry["error"] = rec.get("error")
        if problem:
            entry["problem"] = problem
        states.append(entry)
    return states


def write_index(out: str | os.PathLike, jobs: list[Job]) -> str:
    """``<out>/index.json``: ``{"jobs": job_states(...)}`` (strict JSON)."""
    return write_atomic(os.path.join(os.fspath(out), "index.json"),
                        _io.strict_json({"jobs": job_states(out, jobs)}, indent=1))


def jobs_of(out: str | os.PathLike) -> tuple[str, list[Job]]:
    """The spec name and jobs of the last run into ``out`` (from its ``spec.json``); ``ValueError`` naming
    ``out`` when it is not a sweep folder."""
    out = os.fspath(out)
    path = os.path.join(out, "spec.json")
    if not os.path.isdir(out):
        raise ValueError(f"{out}: no such folder (give the --out folder of a sweep)")
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read())
        jobs = [Job(j["kind"], j["params"], j["id"], Resources(**j["resources"]), j.get("varying", {}),
                    j.get("group", "")) for j in data["jobs"]]
    except FileNotFoundError:
        raise ValueError(f"{out}: not a sweep folder (no spec.json)") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a sweep's spec.json ({type(err).__name__}: {err})") from None
    return str(data.get("name", "sweep")), jobs


def sweep_status(out: str | os.PathLike) -> dict:
    """``{"name", "out", "jobs": job_states(...), "done", "failed", "pending", "pools"}`` for the folder ``out``
    (``pools``: the finished ``phi4-exact-dm`` jobs pooled by study, :func:`.pooled.exact_dm_pools`)."""
    name, jobs = jobs_of(out)
    states = job_states(out, jobs)
    counts = {k: sum(s["state"] == k for s in states) for k in ("done", "failed", "pending")}
    exact = [j for j, s in zip(jobs, states) if j.kind == "phi4-exact-dm" and s["state"] == "done"]
    pools = exact_dm_pools(exact, {j.id: read_result(out, j) for j in exact}) if exact else []
    return {"name": name, "out": os.fspath(out), "jobs": states, **counts, "pools": pools}


def format_status(status: dict) -> str:
    """One header line and one line per job: state, result file, group, varying parameters, attempts, seconds."""
    lines = [f"{status['name']} in {status['out']}: {len(status['jobs'])} jobs, {status['done']} done, "
             f"{status['failed']} failed, {status['pending']} pending"]
    for s in status["jobs"]:
        varying = " ".join(f"{k}={v}" for k, v in s["varying"].items())
        tail = ""
        if s["attempts"] is not None:
            tail += f"  attempts={s['attempts']}"
        if s["seconds"] is not None:
            tail += f"  {s['seconds']:.1f} s"
        if s.get("error"):
            tail += f"  {s['error'][:160]}"
        if s.get("problem"):
            tail += f"  (result file {s['problem']})"
        lines.append(f"  {s['state']:<8} {os.path.basename(s['file'])}  {s['group']}  {varying}{tail}")
    if status.get("pools"):
        lines += ["", "Exact DM-MCMC, the chains of the finished jobs pooled:", format_pools(status["pools"])]
    return "\n".join(lines)
