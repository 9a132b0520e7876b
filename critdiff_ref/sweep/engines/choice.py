"""Which engine runs a sweep (:data:`ENGINES`, :func:`resolve_engine`) and the ``serial`` one, the reference the
process pool (:mod:`.pool`) and Ray (:mod:`.ray_engine`) must reproduce."""

from __future__ import annotations

import importlib.util
from typing import Callable, Iterator

from ..jobs import execute
from ..spec import Job

__all__ = ["ENGINES", "ray_available", "resolve_engine", "run_serial"]

ENGINES = ("auto", "ray", "local", "serial")

Event = tuple[Job, dict, int]


def ray_available() -> bool:
    """Whether ``ray`` is installed (looked up, not imported: importing it takes seconds)."""
    return importlib.util.find_spec("ray") is not None


def resolve_engine(engine: str, address: str | None = None) -> str:
    """``auto`` is ``ray`` when it is installed (or ``address`` is given), else ``local``; ``ray`` without ray
    (or ``address`` off ray) is refused."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got engine={engine!r}")
    if engine == "auto":
        engine = "ray" if ray_available() or address else "local"
    if engine == "ray" and not ray_available():
        raise ValueError("engine='ray' needs ray: pip install 'critdiff-ref[distributed]' (or use engine='local')")
    if address is not None and engine != "ray":
        raise ValueError(f"address={address!r} joins a Ray cluster: it needs engine='ray' or 'auto', got {engine!r}")
    return engine


def run_serial(jobs: list[Job], logs: Callable[[Job], str] | None = None) -> Iterator[Event]:
    """Every job in this process, in order (the reference the other engines must reproduce); a ``timeout``
    is enforced with ``SIGALRM`` (the job gets ``JobTimeout``), output goes to ``logs(job)``."""
    for job in jobs:
        r = job.resources
        outcome = execute(job.kind, job.params, r.num_cpus, retries=r.retries, log=logs(job) if logs else None,
                          timeout=r.timeout)
        yield job, outcome, outcome["attempts"]
