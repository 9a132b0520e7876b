"""The ``local`` engine: one process per job, at most ``workers`` at a time, forked from a ``forkserver``.

The forkserver imports torch and the job kinds once, so a job's process starts in milliseconds, and no
job is forked from a process with running threads. One process per job means a worker that dies
(killed, out of memory, ``os._exit``) loses only its own job: that job is started again up to its
``max_retries`` times, the others run on untouched. A job past its ``timeout`` is killed (its whole
process group) and recorded as an error. Each job's process

- leaves the terminal's process group (``setpgid``), so Ctrl-C reaches the driver alone, which stops
  the running jobs, keeps the finished ones and says how to resume;
- dies with the driver: a thread waits on the driver's pid (:func:`.lifetime.watch_driver`) and the
  kernel kills it when the forkserver goes (:func:`.lifetime.die_with_parent`);
- sends its outcome to the driver through a pipe, and its output to ``<out>/logs/<kind>-<id>.log``;
- is not a daemon, so a job may start processes of its own (a DataLoader's workers).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import Counter, deque
from multiprocessing.connection import wait
from typing import Iterator

from ..jobs import execute
from ..spec import Job
from ..user_code import use_import_path
from .lifetime import die_with_parent, watch_driver

__all__ = ["run_pool", "default_workers"]

GUARD_HINT = (" (the job's process died before it started: a script running a local sweep needs the "
              "`if __name__ == '__main__':` guard)")


def default_workers(jobs: list[Job]) -> int:
    """The CPUs of this machine over the largest ``num_cpus`` a job asks for (at least 1)."""
    need = max((j.resources.num_cpus for j in jobs), default=1)
    return max(1, int((os.cpu_count() or 1) // max(1, need)))


def _job_process(conn, kind: str, params: dict, num_cpus: float, retries: int, log: str | None,
                 path: list[str], driver: int) -> None:
    """The body of a job's process (module docstring): report ``started``, run, send the outcome."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    watch_driver(driver)
    use_import_path(path)
    conn.send(("started", os.getpid()))
    conn.send(("done", execute(kind, params, num_cpus, retries=retries, log=log)))
    conn.close()


def _error(message: str, attempts: int, seconds: float | None = None) -> dict:
    return {"status": "error", "error": message, "traceback": "", "seconds": seconds, "host": os.uname().nodename,
            "pid": None, "attempts": attempts}


def _kill(proc) -> None:
    """``SIGKILL`` the job's process group (the job's own children too), then reap the process."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.join(5)


class _Running:
    """A started job: its process, the driver's end of its pipe, when it started, whether it said so."""

    def __init__(self, job: Job, proc, conn):
        self.job, self.proc, self.conn = job, proc, conn
        self.t0 = time.monotonic()
        self.started = False
        self.outcome: dict | None = None

    def drain(self) -> None:
        """Read what the job has sent so far (``started``, then its outcome)."""
        try:
            while self.conn.poll():
                tag, value = self.conn.recv()
                if tag == "started":
                    self.started = True
                else:
                    self.outcome = value
        except (EOFError, OSError):
            pass

    @property
    def deadline(self) -> float | None:
        t = self.job.resources.timeout
        return None if t is None else self.t0 + t


def run_pool(jobs: list[Job], workers: int | None = None, logs=None, path: list[str] | None = None
             ) -> Iterator[tuple[Job, dict, int]]:
    """Yield ``(job, outcome, attempts)`` as jobs finish (module docstring). ``logs(job)``: the job's log file
    (None: no capture); ``path``: ``sys.path`` entries for the jobs (:func:`critdiff_ref.sweep.user_code.import_path`).

    On ``KeyboardInterrupt`` the running jobs are killed, the outcomes that had already arrived are
    yielded, and the interrupt is raised again."""
    workers = workers or default_workers(jobs)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["critdiff_ref.sweep.jobs"])
    queue, running, lost = deque(jobs), [], Counter()
    interrupted = False
    try:
        while queue or running:
            while queue and len(running) < workers and not interrupted:
                job = queue.popleft()
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_job_process, name=f"critdiff-sweep {job.filename}",
                                   args=(send, job.kind, job.params, job.resources.num_cpus, job.resources.retries,
                                         logs(job) if logs else None, path or [], os.getpid()))
                proc.start()
                send.close()
                running.append(_Running(job, proc, recv))
            deadlines = [r.deadline for r in running if r.deadline is not None]
            timeout = None if not deadlines else max(0.0, min(deadlines) - time.monotonic())
            try:
                wait([r.conn for r in running] + [r.proc.sentinel for r in running], timeout)
            except KeyboardInterrupt:
                interrupted = True
            now = time.monotonic()
            for r in list(running):
                r.drain()
                if r.outcome is not None:
                    r.proc.join(5)
                    running.remove(r)
                    yield r.job, r.outcome, lost[r.job.id] + r.outcome["attempts"]
                elif interrupted:
                    continue
                elif r.proc.exitcode is not None or not r.proc.is_alive():
                    running.remove(r)
                    r.proc.join(5)
                    lost[r.job.id] += 1
                    if lost[r.job.id] > r.job.resources.max_retries or not r.started:
                        why = f"exit code {r.proc.exitcode}" if (r.proc.exitcode or 0) >= 0 else \
                            f"killed by signal {-r.proc.exitcode}"
                        hint = "" if r.started else GUARD_HINT
                        yield r.job, _error(f"worker lost after {lost[r.job.id]} attempt(s): {why}{hint}",
                                            lost[r.job.id], now - r.t0), lost[r.job.id]
                    else:
                        queue.appendleft(r.job)
                elif r.deadline is not None and now >= r.deadline:
                    _kill(r.proc)
                    running.remove(r)
                    r.drain()
                    attempts = lost[r.job.id] + 1
                    yield r.job, _error(f"timed out after {r.job.resources.timeout:g} s (killed)", attempts,
                                        now - r.t0), attempts
            if interrupted:
                raise KeyboardInterrupt
    finally:
        for r in running:
            _kill(r.proc)
            r.conn.close()
