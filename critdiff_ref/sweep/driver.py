"""``run_spec``: load and check a spec, skip the jobs already done, run the rest on an engine, store each
result as it arrives, then write the merged table, the Binder crossings and the plots."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict

from .._progress import is_tty
from . import engines
from .spec import Job, Spec, load_spec
from .store import append_log, read_log, read_result, write_atomic, write_result
from .table import table_rows, write_plots, write_tables

__all__ = ["run_spec", "pending_jobs"]


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


def pending_jobs(spec: Spec, out: str | os.PathLike, *, retry_failed: bool = True) -> list[Job]:
    """The jobs of ``spec`` without a stored result in ``out`` (failed ones too when ``retry_failed``)."""
    todo = []
    for job in spec.jobs:
        rec = read_result(out, job)
        if rec is None or (rec["status"] != "ok" and retry_failed):
            todo.append(job)
    return todo


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
) -> dict:
    """Run a sweep (module :mod:`critdiff_ref.sweep`); returns a summary dict.

    ``out`` (default ``sweep-<name>``) receives ``results/<kind>-<id>.json`` (one per job, atomic),
    ``artifacts/``, ``log.jsonl``, ``spec.json``, ``table.{md,csv,json}`` and ``plots/``. Jobs whose
    result file exists are skipped (failed ones are rerun unless ``retry_failed=False``). ``engine``:
    ``auto`` (Ray when installed, else ``local``), ``ray``, ``local`` (process pool) or ``serial``;
    ``workers``: pool size / CPUs of the embedded Ray cluster; ``address``: join that Ray cluster.

    Returns ``{"out", "engine", "jobs", "skipped", "ran", "failed", "seconds", "rows", "crossings",
    "plots"}``; ``failed`` lists ``(filename, error)`` of every job whose stored status is not ``ok``.
    """
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be an int >= 1, got workers={workers!r}")
    engine = engines.resolve_engine(engine, address)
    out = os.fspath(out if out is not None else f"sweep-{spec.name}")
    os.makedirs(os.path.join(out, "results"), exist_ok=True)
    write_atomic(os.path.join(out, "spec.json"), json.dumps(
        {"name": spec.name, "source": spec.source,
         "jobs": [{**asdict(j), "filename": j.filename} for j in spec.jobs]}, indent=1, default=str) + "\n")
    todo = pending_jobs(spec, out, retry_failed=retry_failed)
    if progress:
        print(f"[critdiff sweep] {spec.name}: {len(spec.jobs)} jobs, {len(spec.jobs) - len(todo)} already done, "
              f"{len(todo)} to run on engine {engine!r} -> {out}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    bar = _Progress(len(todo), progress)
    if not todo:
        events = iter(())  # nothing to run: no pool, no Ray cluster
    elif engine == "serial":
        events = engines.run_serial(todo)
    elif engine == "local":
        events = engines.run_local(todo, workers)
    else:
        events = engines.run_ray(todo, workers, address)
    try:
        for job, outcome, attempts in events:
            write_result(out, job, outcome)
            append_log(out, job, outcome, attempts)
            bar.update(job, outcome)
    finally:
        bar.close()
        getattr(events, "close", lambda: None)()  # an interrupted sweep shuts its pool / Ray cluster down now
    seconds = time.monotonic() - t0
    records = {j.id: read_result(out, j) for j in spec.jobs}
    rows = table_rows(list(spec.jobs), records, read_log(out))
    note = f"Spec `{spec.name}`: {len(spec.jobs)} jobs. {spec.description}".strip()
    crossings = write_tables(out, rows, title=f"critdiff sweep: {spec.name}", note=note)["crossings"]
    files, plot_note = write_plots(out, rows) if plots else ([], "")
    if plot_note and progress:
        print(f"[critdiff sweep] {plot_note}", file=sys.stderr)
    failed = [(j.filename, (records[j.id] or {}).get("error", "no result")) for j in spec.jobs
              if (records[j.id] or {}).get("status") != "ok"]
    return {"out": out, "engine": engine, "jobs": len(spec.jobs), "skipped": len(spec.jobs) - len(todo),
            "ran": len(todo), "failed": failed, "seconds": seconds, "rows": rows, "crossings": crossings,
            "plots": files}
