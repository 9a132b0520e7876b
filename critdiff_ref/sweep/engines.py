"""The engines that run a sweep's jobs: ``serial`` (this process), ``local`` (a process pool) and ``ray``.

Each is a generator ``(jobs, ...) -> (job, outcome, attempts)`` in completion order; ``outcome`` is what
:func:`critdiff_ref.sweep.jobs.execute` returns (the job's own errors are already caught there). A worker
lost mid-job (killed, out of memory, node gone) is retried up to ``job.resources.max_retries`` times
(Ray's ``max_retries``; a fresh pool for ``local``), then recorded as an error. Every engine runs
``execute`` with the job's ``num_cpus`` torch threads, so all three give the same numbers.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Iterator

from .jobs import execute
from .spec import Job

__all__ = ["ENGINES", "ray_available", "resolve_engine", "run_serial", "run_local", "run_ray"]

ENGINES = ("auto", "ray", "local", "serial")

Event = tuple[Job, dict, int]


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_engine(engine: str, address: str | None = None) -> str:
    """``auto`` is ``ray`` when it imports, else ``local``; ``ray`` without ray (or ``address`` off ray) is refused."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got engine={engine!r}")
    if engine == "auto":
        engine = "ray" if ray_available() or address else "local"
    if engine == "ray" and not ray_available():
        raise ValueError("engine='ray' needs ray: pip install 'critdiff-ref[distributed]' (or use engine='local')")
    if address is not None and engine != "ray":
        raise ValueError(f"address={address!r} joins a Ray cluster: it needs engine='ray' or 'auto', got {engine!r}")
    return engine


def _lost(err: BaseException, attempts: int, hint: str = "") -> dict:
    return {"status": "error", "error": f"worker lost after {attempts} attempt(s): {type(err).__name__}: {err}{hint}",
            "traceback": "", "seconds": None, "host": None, "pid": None}


def run_serial(jobs: list[Job]) -> Iterator[Event]:
    """Every job in this process, in order (the reference the other engines must reproduce)."""
    for job in jobs:
        yield job, execute(job.kind, job.params, job.resources.num_cpus), 1


def _execute_marked(kind: str, params: dict, num_cpus: float, started: str, path: list[str]) -> dict:
    """:func:`execute` in a pool worker, leaving the file ``started`` behind first (who was running when
    the pool broke), with the driver's ``sys.path`` entries added (a ``call`` job imports what the driver can)."""
    # Deliberately not _io.atomic_path: the marker is empty and only its existence is read, and creating a
    # name (O_CREAT) is already atomic, so there is no partial state to hide; it lives in the driver's private
    # temporary folder for one run, so fsync buys nothing. open() creates it with 0o666 & ~umask (the kernel
    # applies the umask), the mode _io gives its files, unlike mkstemp's 0o600.
    open(started, "w").close()
    sys.path[:0] = [p for p in path if p not in sys.path]
    return execute(kind, params, num_cpus)


def run_local(jobs: list[Job], workers: int | None = None) -> Iterator[Event]:
    """A process pool of ``workers`` processes (default: the CPUs over the largest ``num_cpus``).

    Workers are forked from a ``forkserver`` that has imported torch and the job kinds once (a fresh
    worker costs milliseconds, and no worker is forked from a process with running threads).

    When a worker dies the pool breaks and every unfinished job fails with ``BrokenProcessPool``; they are
    resubmitted to a fresh pool, and those that had started (a marker file per job) count an attempt:
    a job lost more than its ``max_retries`` times is recorded as an error.
    """
    if workers is None:
        need = max((j.resources.num_cpus for j in jobs), default=1)
        workers = max(1, int((os.cpu_count() or 1) // max(1, need)))
    attempts: Counter = Counter()
    pending = list(jobs)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["critdiff_ref.sweep.jobs"])
    with tempfile.TemporaryDirectory(prefix="critdiff-sweep-") as markers:
        while pending:
            with ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=ctx) as pool:
                futures = {}
                for j in pending:
                    marker = os.path.join(markers, j.id)
                    if os.path.exists(marker):
                        os.unlink(marker)
                    futures[pool.submit(_execute_marked, j.kind, j.params, j.resources.num_cpus, marker, sys.path)] = j
                pending, broken = [], []
                for fut in as_completed(futures):
                    job = futures[fut]
                    try:
                        outcome = fut.result()
                    except BrokenProcessPool as err:
                        broken.append((job, err))
                        continue
                    yield job, outcome, attempts[job.id] + 1
            # the jobs that were running when the pool broke count an attempt; when none had started (workers
            # dying on start-up) all of them do, so a pool that cannot run anything ends after max_retries
            started = {job.id for job, _ in broken if os.path.exists(os.path.join(markers, job.id))}
            for job, err in broken:
                if job.id in started or not started:
                    attempts[job.id] += 1
                if attempts[job.id] > job.resources.max_retries:
                    hint = "" if started else (" (no job started: a script running a local sweep needs the "
                                               "`if __name__ == '__main__':` guard)")
                    yield job, _lost(err, attempts[job.id], hint), attempts[job.id]
                else:
                    pending.append(job)


def _check_fits(ray, jobs: list[Job], embedded: bool) -> None:
    total = ray.cluster_resources()
    for job in jobs:
        for key, want in (("CPU", job.resources.num_cpus), ("GPU", job.resources.num_gpus)):
            if want > total.get(key, 0):
                msg = (f"job {job.filename} asks for {key.lower()}s={want} but the Ray cluster has "
                       f"{total.get(key, 0)}")
                if embedded:
                    raise ValueError(msg + " (lower resources.num_" + ("cpus" if key == "CPU" else "gpus") +
                                     " or join a larger cluster with address=)")
                print(f"[critdiff sweep] warning: {msg}; it waits for the autoscaler", file=sys.stderr)


def run_ray(jobs: list[Job], workers: int | None = None, address: str | None = None) -> Iterator[Event]:
    """Ray tasks, one per job, with the job's ``num_cpus``, ``num_gpus`` and ``max_retries``.

    ``address=None`` starts an embedded local cluster with ``workers`` CPUs (default: all) and shuts it
    down at the end; ``address="auto"`` or ``"ray://host:10001"`` joins an existing cluster (left running).
    A Ray session already initialised in this process is used as it is.
    """
    import ray
    from ray.exceptions import RayError

    started = False
    if not ray.is_initialized():
        kw = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        if address is None:
            ray.init(num_cpus=workers or os.cpu_count() or 1, **kw)
        else:
            ray.init(address=address, **kw)
        started = True
    try:
        _check_fits(ray, jobs, embedded=started and address is None)
        task = ray.remote(execute)
        refs = {}
        for job in jobs:
            r = job.resources
            ref = task.options(num_cpus=r.num_cpus, num_gpus=r.num_gpus, max_retries=r.max_retries,
                               retry_exceptions=False).remote(job.kind, job.params, r.num_cpus)
            refs[ref] = job
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            job = refs.pop(done[0])
            try:
                outcome, attempts = ray.get(done[0]), 1
            except RayError as err:  # worker lost beyond max_retries, or the task could not be scheduled
                attempts = job.resources.max_retries + 1
                outcome = _lost(err, attempts)
            yield job, outcome, attempts
    finally:
        if started:
            ray.shutdown()
