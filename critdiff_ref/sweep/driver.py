"""``run_spec``: load and check a spec, skip the jobs already done, run the rest on an engine, store each
result as it arrives, then write the merged table, the Binder crossings and the plots.

Everything is checked before anything is created: the spec (every job, the user's modules imported), the
output folder, the devices of jobs that run on this machine, and the Ray address. Ctrl-C stops the
running jobs, keeps every finished result and raises :class:`SweepInterrupted`, whose message says what
was kept and how to resume.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict

import torch

from .. import _io
from .._progress import is_tty
from . import engines
from .pooled import exact_dm_pools
from .spec import Job, Spec, load_spec
from .status import write_index
from .store import append_log, check_result, log_path, read_log, read_result, write_atomic, write_result
from .table import table_rows, write_plots, write_tables
from .user_code import import_path

__all__ = ["run_spec", "pending_jobs", "check_devices", "SweepInterrupted"]


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: the message says how many results were kept and how to resume."""


class _Progress:
    """A tqdm bar over jobs on a terminal when tqdm is installed, otherwise one ``[critdiff sweep]`` line per
    finished job (its file, status, seconds and error), the job-level form of :mod:`critdiff_ref._progress`."""

    def __init__(self, total: int, enabled: bool, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.done, self.failed = total, 0, 0
        self.t0 = time.monotonic()
        self.bar = None
        self.enabled = enabled and total > 0
        if self.enabled and is_tty(self.stream):
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="job", file=self.stream, desc="critdiff sweep")
            except ImportError:
                pass

    def update(self, job: Job, outcome: dict) -> None:
        self.done += 1
        self.failed += outcome["status"] != "ok"
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed)
            self.bar.update(1)
            return
        secs = outcome.get("seconds")
        tail = f"{secs:.1f} s" if secs is not None else ""
        err = f"  {outcome.get('error', '')[:120]}" if outcome["status"] != "ok" else ""
        print(f"[critdiff sweep] {self.done}/{self.total} {job.filename} {outcome['status']} {tail} "
              f"(elapsed {time.monotonic() - self.t0:.1f} s, {self.failed} failed){err}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def pending_jobs(spec: Spec, out: str | os.PathLike, *, retry_failed: bool = True, warn=None) -> list[Job]:
    """The jobs of ``spec`` without a stored result in ``out`` (failed ones too when ``retry_failed``).
    A result file that is not a record of its job costs one ``warn(message)`` (default: a line on stderr)
    naming it, and the job is run again."""
    warn = warn or (lambda msg: print(f"[critdiff sweep] warning: {msg}", file=sys.stderr, flush=True))
    todo = []
    for job in spec.jobs:
        rec, problem = check_result(out, job)
        if problem is not None:
            warn(f"{os.path.join(os.fspath(out), 'results', job.filename)} {problem}: the job runs again")
        if rec is None or (rec["status"] != "ok" and retry_failed):
            todo.append(job)
    return todo


def check_devices(jobs: list[Job], engine: str) -> None:
    """Jobs that run on this machine (``serial``, ``local``) must name a device it has."""
    if engine not in ("serial", "local"):
        return
    for job in jobs:
        device = str(job.params.get("device", "cpu"))
        dev = torch.device(device)
        ok = (dev.type == "cpu" or (dev.type == "cuda" and torch.cuda.is_available()
                                    and (dev.index or 0) < torch.cuda.device_count())
              or (dev.type == "mps" and getattr(torch.backends, "mps", None) is not None
                  and torch.backends.mps.is_available()))
        if not ok:
            raise ValueError(f"job {job.filename} ({job.group}): device={device!r} is not available on this machine "
                             f"(engine {engine!r} runs jobs here; use engine='ray' with a cluster that has it)")


def _prepare(out: str, spec: Spec, todo: list[Job]) -> None:
    """Create ``out``, write ``spec.json`` and ``index.json``, clear the logs of the jobs about to run."""
    os.makedirs(os.path.join(out, "results"), exist_ok=True)
    write_atomic(os.path.join(out, "spec.json"), _io.strict_json(
        {"name": spec.name, "source": spec.source,
         "jobs": [{**asdict(j), "filename": j.filename} for j in spec.jobs]}, indent=1, default=str))
    for job in todo:
        if os.path.isfile(log_path(out, job)):
            os.unlink(log_path(out, job))  # this run's output only
    write_index(out, list(spec.jobs))


def run_spec(
    spec: str | os.PathLike | dict | Spec,
    out: str | os.PathLike | None = None,
    *,
    engine: str = "auto",
    workers: int | None = None,
    address: str | None = None,
    retry_failed: bool = True,
    plots: bool = True,
    progress: bool = True,
    overrides: list[str] | None = None,
) -> dict:
    """Run a sweep (module :mod:`critdiff_ref.sweep`); returns a summary dict.

    ``out`` (default ``sweep-<name>``) receives ``results/<kind>-<id>.json`` (one per job, atomic),
    ``logs/<kind>-<id>.log`` (what each job printed), ``artifacts/``, ``log.jsonl``, ``spec.json``,
    ``index.json`` (every job's file, parameters and state), ``table.{md,csv,json}`` and ``plots/``. Jobs
    whose result file exists are skipped (failed ones are rerun unless ``retry_failed=False``). ``engine``:
    ``auto`` (Ray when installed, else ``local``), ``ray``, ``local`` (process pool) or ``serial``;
    ``workers``: pool size / CPUs of the embedded Ray cluster; ``address``: join that Ray cluster;
    ``overrides``: ``KEY=VALUE`` items applied to the spec (:func:`critdiff_ref.sweep.spec.apply_overrides`).

    Returns ``{"out", "engine", "jobs", "skipped", "ran", "failed", "seconds", "rows", "crossings",
    "pools", "plots"}`` (``pools``: the pooled ``phi4-exact-dm`` studies, :mod:`.pooled`); ``failed`` lists ``(filename, error)`` of every job whose stored status is not ``ok``.
    Raises :class:`SweepInterrupted` on Ctrl-C, after storing every finished job.
    """
    if not isinstance(spec, Spec):
        spec = load_spec(spec, overrides)
    elif overrides:
        raise ValueError("overrides apply to a spec file or dict, not to a loaded Spec")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be an int >= 1, got workers={workers!r}")
    engine = engines.resolve_engine(engine, address)
    out = os.fspath(out if out is not None else f"sweep-{spec.name}")
    _io.check_output_dir(out, "out")
    check_devices(list(spec.jobs), engine)
    todo = pending_jobs(spec, out, retry_failed=retry_failed) if os.path.isdir(out) else list(spec.jobs)
    session = None
    if engine == "ray" and todo:
        from .engines import ray_engine

        session = ray_engine.connect(workers, address)  # before anything is created: a bad address fails here
    try:
        if session is not None:
            ray_engine.check_fits(session, todo)
        _prepare(out, spec, todo)
    except BaseException:
        if session is not None:
            session.close()
        raise
    if progress:
        print(f"[critdiff sweep] {spec.name}: {len(spec.jobs)} jobs, {len(spec.jobs) - len(todo)} already done, "
              f"{len(todo)} to run on engine {engine!r} -> {out}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    bar = _Progress(len(todo), progress)
    path, logs = import_path(), (lambda job: log_path(out, job))
    if not todo:
        events = iter(())  # nothing to run: no pool, no Ray cluster
    elif engine == "serial":
        events = engines.run_serial(todo, logs)
    elif engine == "local":
        from .engines.pool import run_pool

        events = run_pool(todo, workers, logs, path)
    else:
        from .engines.ray_engine import run_ray

        events = run_ray(todo, session, path, lambda job, text: write_atomic(logs(job), text))
    finished = 0
    try:
        for job, outcome, attempts in events:
            write_result(out, job, outcome)
            append_log(out, job, outcome, attempts)
            finished += 1
            bar.update(job, outcome)
    except KeyboardInterrupt:
        bar.close()
        write_index(out, list(spec.jobs))
        left = len(pending_jobs(spec, out, retry_failed=retry_failed, warn=lambda msg: None))
        raise SweepInterrupted(f"interrupted: kept {finished} result(s) finished in this run in {out} "
                               f"({len(spec.jobs) - left} of {len(spec.jobs)} jobs done); run the same command "
                               f"again to resume the {left} left") from None
    finally:
        bar.close()
        getattr(events, "close", lambda: None)()  # an interrupted sweep shuts its pool / Ray cluster down now
    seconds = time.monotonic() - t0
    records = {j.id: read_result(out, j) for j in spec.jobs}
    rows = table_rows(list(spec.jobs), records, read_log(out))
    note = f"Spec `{spec.name}`: {len(spec.jobs)} jobs. {spec.description}".strip()
    pools = exact_dm_pools(list(spec.jobs), records)
    crossings = write_tables(out, rows, title=f"critdiff sweep: {spec.name}", note=note, pools=pools)["crossings"]
    write_index(out, list(spec.jobs))
    files, plot_note = write_plots(out, rows) if plots else ([], "")
    if plot_note and progress:
        print(f"[critdiff sweep] {plot_note}", file=sys.stderr)
    failed = [(j.filename, (records[j.id] or {}).get("error", "no result")) for j in spec.jobs
              if (records[j.id] or {}).get("status") != "ok"]
    return {"out": out, "engine": engine, "jobs": len(spec.jobs), "skipped": len(spec.jobs) - len(todo),
            "ran": len(todo), "failed": failed, "seconds": seconds, "rows": rows, "crossings": crossings, "pools": pools,
            "plots": files}
