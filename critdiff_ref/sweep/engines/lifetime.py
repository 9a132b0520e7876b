"""No process outlives its sweep: workers die with the driver, and a reaper cleans up after a killed driver.

- :func:`die_with_parent` asks the kernel to ``SIGKILL`` this process when its parent dies (Linux
  ``prctl(PR_SET_PDEATHSIG)``; a no-op elsewhere).
- :func:`watch_driver` starts a daemon thread that kills this process's group as soon as the process
  ``pid`` (the sweep's driver) is gone (``pidfd_open`` where the kernel has it, else polling every 0.2 s):
  a process-pool worker is a child of the forkserver, not of the driver, so the death signal alone
  does not cover a ``SIGKILL`` of the driver.
- :func:`start_reaper` runs this file as a script (``python lifetime.py DRIVER PID:START...``, standard
  library only) in its own session:
  when the driver dies without shutting down its embedded Ray cluster (``SIGKILL``, out of memory),
  the reaper kills the listed processes and every descendant they have (found through ``/proc``), each
  only if it is still the process that was listed (same start time). Linux only; elsewhere a killed
  driver can leave Ray's processes behind (``ray stop`` ends them).
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import sys
import threading
import time

__all__ = ["die_with_parent", "watch_driver", "descendants", "start_time", "start_reaper", "reap"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """``SIGKILL`` this process when its parent exits (Linux); returns whether the kernel accepted it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _wait_gone(pid: int) -> None:
    """Block until process ``pid`` has exited."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            select.select([fd], [], [])
            return
        finally:
            os.close(fd)
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        time.sleep(0.2)


def watch_driver(pid: int) -> threading.Thread:
    """A daemon thread that kills this process's group (``SIGKILL``) once process ``pid`` has exited."""

    def watch() -> None:
        _wait_gone(pid)
        try:
            os.killpg(os.getpgid(0), signal.SIGKILL)
        finally:
            os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="critdiff-sweep-driver-watch", daemon=True)
    thread.start()
    return thread


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks after boot (``/proc/PID/stat`` field 22), None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read()
    except OSError:
        return None
    return int(text[text.rindex(b")") + 2:].split()[19])


def _parents() -> dict[int, int]:
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    text = fh.read()
            except OSError:
                continue
            found[int(name)] = int(text[text.rindex(b")") + 2:].split()[1])
    return found


def descendants(pids: list[int]) -> list[int]:
    """``pids`` and all their living descendants (Linux ``/proc``; just ``pids`` elsewhere)."""
    if not os.path.isdir("/proc"):
        return list(pids)
    parents = _parents()
    out, frontier = list(pids), list(pids)
    while frontier:
        kids = [c for c, p in parents.items() if p in frontier and c not in out]
        out.extend(kids)
        frontier = kids
    return out


def reap(listed: dict[int, int]) -> None:
    """``SIGKILL`` every process of ``listed`` (pid -> start time) still alive as itself, and its descendants."""
    alive = [pid for pid, t0 in listed.items() if start_time(pid) == t0]
    for pid in descendants(alive):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def start_reaper(pids: list[int]) -> subprocess.Popen | None:
    """A process that waits for this one to die, then :func:`reap` s ``pids``; stop it (``.kill()``) after a
    clean shutdown. None where there is no ``/proc``."""
    if not os.path.isdir("/proc"):
        return None
    listed = [f"{pid}:{start_time(pid)}" for pid in pids if start_time(pid) is not None]
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), str(os.getpid()), *listed],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


if __name__ == "__main__":  # the reaper: python lifetime.py DRIVER PID:START ...
    driver = int(sys.argv[1])
    targets = {int(p): int(t) for p, t in (arg.split(":") for arg in sys.argv[2:])}
    _wait_gone(driver)
    reap(targets)
