"""The ``ray`` engine: one Ray task per job, on an embedded local cluster or a cluster joined by address.

- :func:`connect` checks the address before anything else happens: a ``host:port`` (or ``ray://host:port``)
  that does not answer a TCP connection within :data:`PROBE_SECONDS` is refused in one line naming it,
  ``ray://`` without the Ray client (``grpcio``) likewise, and any error of ``ray.init`` (no cluster,
  an auth token missing) becomes one line too.
- Every job must fit the embedded cluster (:func:`check_fits`), checked before the sweep starts.
- An embedded cluster is shut down at the end; if the driver is killed before that, a reaper process
  (:func:`.lifetime.start_reaper`, Linux) kills what it had started. A joined cluster is left running.
- Lost workers and timeouts are handled here, not by Ray's own retries, so the log records the real
  number of attempts: a task whose worker died is resubmitted up to ``max_retries`` times; one past its
  ``timeout`` is cancelled (``force=True``) and recorded as an error.
- Jobs run with the driver's current folder and ``sys.path`` on their import path (folders that exist on
  the node), and return what they printed, which the driver writes to ``<out>/logs/``.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterator

from ..capture import captured_output
from ..jobs import execute
from ..spec import Job
from ..user_code import use_import_path
from .lifetime import start_reaper

__all__ = ["PROBE_SECONDS", "parse_address", "probe_address", "connect", "RaySession", "check_fits", "run_ray"]

PROBE_SECONDS = 3.0
LOG_LIMIT = 1 << 20  # bytes of a job's output sent back (its end)


def parse_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``host:port`` or ``ray://host:port`` (default ports 6379 and 10001); None for
    ``auto`` / ``local``. ``ValueError`` for anything else."""
    if address in ("auto", "local"):
        return None
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    if not sep:
        host, port = rest, "10001" if address.startswith("ray://") else "6379"
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    return host, int(port)


def probe_address(address: str, seconds: float = PROBE_SECONDS) -> None:
    """``ValueError`` naming ``address`` unless a TCP connection to it opens within ``seconds``."""
    target = parse_address(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=seconds):
            pass
    except OSError as err:
        why = "timed out" if isinstance(err, socket.timeout) else (err.strerror or str(err))
        raise ValueError(f"address {address!r}: nothing answers at {target[0]}:{target[1]} ({why} after at most "
                         f"{seconds:g} s); is the Ray head running there (ray start --head) and the port open?") \
            from None


@dataclass
class RaySession:
    """A connected Ray: ``embedded`` when this process started the cluster (shut down by :meth:`close`)."""

    ray: object
    embedded: bool
    owned: bool
    reaper: object = None

    def close(self) -> None:
        if self.owned:
            self.ray.shutdown()
        if self.reaper is not None:
            self.reaper.kill()
            self.reaper.wait()


def connect(workers: int | None, address: str | None) -> RaySession:
    """Join ``address`` or start an embedded cluster of ``workers`` CPUs (module docstring)."""
    if address is not None:
        if address.startswith("ray://") and importlib.util.find_spec("grpc") is None:
            raise ValueError(f"address {address!r}: the Ray client (ray://) needs grpcio: "
                             "pip install 'critdiff-ref[distributed]' (or use the HOST:6379 address)")
        probe_address(address)
    import ray

    if ray.is_initialized():  # a session the caller opened: used as it is, left open
        return RaySession(ray, embedded=False, owned=False)
    kw = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    fd, said = tempfile.mkstemp(prefix="critdiff-ray-init-", suffix=".log")
    os.close(fd)
    try:
        try:
            with captured_output(said):  # Ray's own messages: shown after a success, dropped with a failure
                if address is None:
                    ray.init(num_cpus=workers or os.cpu_count() or 1, **kw)
                else:
                    ray.init(address=address, **kw)
        except Exception as err:  # noqa: BLE001 - ConnectionError, RuntimeError, auth errors: one line for the user
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            where = f"address {address!r}: could not join the Ray cluster" if address else "could not start Ray"
            raise ValueError(f"{where}: {type(err).__name__}: {first}") from None
        with open(said, encoding="utf-8", errors="replace") as fh:
            sys.stderr.write(fh.read())
    finally:
        os.unlink(said)
    session = RaySession(ray, embedded=address is None, owned=True)
    if session.embedded:
        node = getattr(ray._private.worker, "_global_node", None)
        pids = [info.process.pid for infos in getattr(node, "all_processes", {}).values() for info in infos
                if getattr(info, "process", None) is not None]
        session.reaper = start_reaper(pids) if pids else None
    return session


def _ray_job(kind: str, params: dict, num_cpus: float, retries: int, path: list[str]) -> dict:
    """A job in a Ray worker: :func:`execute` with its output captured and returned as ``log_text``."""
    use_import_path(path)
    fd, log = tempfile.mkstemp(prefix="critdiff-sweep-", suffix=".log")
    os.close(fd)
    try:
        outcome = execute(kind, params, num_cpus, retries=retries, log=log)
        with open(log, "rb") as fh:
            fh.seek(max(0, os.path.getsize(log) - LOG_LIMIT))
            outcome["log_text"] = fh.read().decode("utf-8", "replace")
    finally:
        os.unlink(log)
    return outcome


def check_fits(session: RaySession, jobs: list[Job]) -> None:
    """``ValueError`` when a job asks for more CPUs or GPUs than the embedded cluster has (a joined cluster
    may scale up: a warning)."""
    ray, embedded = session.ray, session.embedded
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


def _lost(message: str, attempts: int) -> dict:
    return {"status": "error", "error": message, "traceback": "", "seconds": None, "host": None, "pid": None,
            "attempts": attempts}


def run_ray(jobs: list[Job], session: RaySession, path: list[str] | None = None,
            write_log: Callable[[Job, str], None] | None = None) -> Iterator[tuple[Job, dict, int]]:
    """Yield ``(job, outcome, attempts)`` as Ray tasks finish (module docstring); ``write_log(job, text)``
    stores a job's output. Closes ``session`` at the end; on ``KeyboardInterrupt`` the tasks are cancelled,
    the outcomes already there are yielded and the interrupt is raised again."""
    ray = session.ray
    from ray.exceptions import GetTimeoutError, RayError

    task = ray.remote(_ray_job)
    refs: dict = {}
    lost: Counter = Counter()

    def submit(job: Job) -> None:
        r = job.resources
        ref = task.options(num_cpus=r.num_cpus, num_gpus=r.num_gpus, max_retries=0, retry_exceptions=False).remote(
            job.kind, job.params, r.num_cpus, r.retries, path or [])
        refs[ref] = (job, time.monotonic())

    def finish(ref) -> tuple[Job, dict, int] | None:
        job, t0 = refs.pop(ref)
        try:
            outcome = ray.get(ref, timeout=0)
        except GetTimeoutError:
            refs[ref] = (job, t0)
            return None
        except RayError as err:  # the worker died or the task could not run
            lost[job.id] += 1
            if lost[job.id] <= job.resources.max_retries:
                submit(job)
                return None
            first = (str(err).strip().splitlines() or [""])[0]
            return job, _lost(f"worker lost after {lost[job.id]} attempt(s): {type(err).__name__}: {first}",
                              lost[job.id]), lost[job.id]
        text = outcome.pop("log_text", "")
        if write_log is not None and text:
            write_log(job, text)
        return job, outcome, lost[job.id] + outcome["attempts"]

    try:
        for job in jobs:
            submit(job)
        while refs:
            deadlines = [t0 + j.resources.timeout for j, t0 in refs.values() if j.resources.timeout is not None]
            wait_s = None if not deadlines else max(0.0, min(deadlines) - time.monotonic())
            try:
                done, _ = ray.wait(list(refs), num_returns=1, timeout=wait_s)
            except KeyboardInterrupt:
                done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
                for ref in done:
                    event = finish(ref)
                    if event is not None:
                        yield event
                for ref in list(refs):
                    ray.cancel(ref, force=True)
                raise
            for ref in done:
                event = finish(ref)
                if event is not None:
                    yield event
            now = time.monotonic()
            for ref, (job, t0) in list(refs.items()):
                if job.resources.timeout is not None and now >= t0 + job.resources.timeout:
                    ray.cancel(ref, force=True)
                    refs.pop(ref)
                    attempts = lost[job.id] + 1
                    yield job, _lost(f"timed out after {job.resources.timeout:g} s (cancelled)", attempts), attempts
    finally:
        session.close()
