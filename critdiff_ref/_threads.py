"""How many CPU threads torch uses: chosen from the problem size, unless the user said.

Small tensor operations gain nothing from more threads, and on a loaded machine every parallel region
waits for its slowest, descheduled thread: on a busy 2-core runner ``critdiff validate`` ran 10x slower
with torch's default (one thread per core) than with one thread.  The policy:

1. an explicit ``--threads N`` wins;
2. else an explicit ``OMP_NUM_THREADS`` (torch already read it at import; we leave it alone);
3. else ``clamp(work // WORK_PER_THREAD, 1, usable cores)``: one thread per ``WORK_PER_THREAD``
   elements of the largest tensor a step touches, so small problems run on one thread.

The CLI applies it once per command (``work`` estimated by the command), the pytest plugin and the
test suite (``conftest.py``) apply it too.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

__all__ = ["WORK_PER_THREAD", "usable_cores", "idle_cores", "choose_threads", "set_threads", "threads", "user_threads"]

# elements of the largest per-step tensor per thread before a second thread pays (about 1 ms of
# elementwise work; torch's own grain size, 32768, is the floor below which it never splits)
WORK_PER_THREAD = 1 << 20


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def idle_cores() -> int:
    """Usable cores minus the other runnable work (1-minute load average, less our own ~1), at least 1."""
    cores = usable_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return cores
    return max(1, min(cores, int(cores - max(load - 1.0, 0.0) + 0.5)))


def choose_threads(work: int = 0, *, requested: int | None = None) -> int | None:
    """The thread count for a problem whose largest per-step tensor has ``work`` elements.

    ``requested`` (``--threads``) wins; otherwise ``None`` when ``OMP_NUM_THREADS`` is set (keep it);
    otherwise ``clamp(work // WORK_PER_THREAD, 1, usable_cores())``.
    """
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"--threads must be an integer >= 1, got {requested!r}")
        return requested
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return None
    if isinstance(work, bool) or not isinstance(work, int) or work < 0:
        raise ValueError(f"work must be an int >= 0 (tensor elements), got {work!r}")
    return max(1, min(usable_cores(), work // WORK_PER_THREAD))


def set_threads(work: int = 0, *, requested: int | None = None) -> int:
    """Apply :func:`choose_threads` to torch (``torch.set_num_threads``); returns the count in use."""
    n = choose_threads(work, requested=requested)
    if n is not None and n != torch.get_num_threads():
        torch.set_num_threads(n)
    return torch.get_num_threads()


_USER: list[int] = []  # the ``--threads`` counts in force (innermost last): the user's word, not a policy


def user_threads() -> int | None:
    """The ``--threads N`` the command line is running under (:func:`threads` with ``user=True``), else None.
    Policies that would lower the count (the MCMC load-average cap) leave a user's count alone."""
    return _USER[-1] if _USER else None


@contextlib.contextmanager
def threads(work: int = 0, *, requested: int | None = None, user: bool = False) -> Iterator[int]:
    """:func:`set_threads` for the duration of a ``with`` block, then the previous count again.
    ``user=True``: ``requested`` is the user's ``--threads`` (:func:`user_threads` reports it inside)."""
    before = torch.get_num_threads()
    pushed = user and requested is not None
    try:
        n = set_threads(work, requested=requested)
        if pushed:
            _USER.append(n)
        yield n
    finally:
        if pushed:
            _USER.pop()
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
