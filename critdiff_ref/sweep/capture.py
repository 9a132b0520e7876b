"""Around a running job: its output captured into its log file, and a timeout alarm for jobs run in the driver."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator

__all__ = ["JobTimeout", "captured_output", "alarm"]


class JobTimeout(BaseException):
    """Raised in a job running in the driver (``serial``) when its ``timeout`` has passed; a BaseException so
    the job's own ``except Exception`` does not swallow it."""


@contextlib.contextmanager
def captured_output(log: str | None) -> Iterator[None]:
    """File descriptors 1 and 2 (``print``, C libraries, subprocesses) appended to ``log`` while the job runs."""
    if log is None:
        yield
        return
    os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    streams = sys.stdout, sys.stderr
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    text = open(os.dup(fd), "a", buffering=1, encoding="utf-8", errors="replace")  # print(), whatever sys.stdout was
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = sys.stderr = text
        yield
    finally:
        sys.stdout, sys.stderr = streams
        text.close()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


@contextlib.contextmanager
def alarm(timeout: float | None) -> Iterator[None]:
    """``JobTimeout`` in this (main) thread after ``timeout`` seconds; nothing off the main thread."""
    if timeout is None or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def ring(signum, frame):
        raise JobTimeout(f"timed out after {timeout:g} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
