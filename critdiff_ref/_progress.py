"""Progress of long runs on stderr: a tqdm bar on a terminal, plain lines in a log, nothing when quiet.

``progress_callback(desc)`` returns a ``callback(done, total)`` for the chain loops and trainers;
``progress_lines(prefix)`` a ``say(message)`` for runs made of named stages (``critdiff report``).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

__all__ = ["is_tty", "progress_callback", "progress_lines"]


def is_tty(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_callback(
    desc: str, *, enabled: bool = True, stream: TextIO | None = None, every: float = 0.1, unit: str = "updates"
) -> Callable[[int, int], None] | None:
    """A ``callback(done, total)``: a tqdm bar when ``stream`` (default stderr) is a terminal, else a
    plain ``[critdiff] desc: done/total unit (pct%), t s`` line about every ``every`` of the run;
    ``None`` when not ``enabled`` (``--quiet``)."""
    if not enabled:
        return None
    stream = sys.stderr if stream is None else stream
    if is_tty(stream):
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency; plain lines if it is missing
            tqdm = None
        if tqdm is not None:
            bar: dict = {}

            def update(done: int, total: int) -> None:
                if "bar" not in bar:
                    bar["bar"] = tqdm(total=total, desc=desc, unit=unit.rstrip("s") or "it", file=stream,
                                      dynamic_ncols=True, leave=True)
                b = bar["bar"]
                b.update(done - b.n)
                if done >= total:
                    b.close()
                    del bar["bar"]

            return update
    state = {"next": 0.0, "t0": time.monotonic()}

    def line(done: int, total: int) -> None:
        if done / total + 1e-12 >= state["next"] or done == total:
            elapsed = time.monotonic() - state["t0"]
            print(f"[critdiff] {desc}: {done}/{total} {unit} ({100 * done / total:.0f}%), {elapsed:.1f} s",
                  file=stream, flush=True)
            state["next"] = done / total + every

    return line


def progress_lines(prefix: str, *, enabled: bool = True, stream: TextIO | None = None) -> Callable[[str], None]:
    """``say(message)``: ``[prefix  t s] message`` on stderr (through tqdm on a terminal so a bar
    in progress is not broken); does nothing when not ``enabled``."""
    t0 = time.monotonic()

    def say(msg: str) -> None:
        if not enabled:
            return
        out = sys.stderr if stream is None else stream
        text = f"[{prefix} {time.monotonic() - t0:6.1f} s] {msg}"
        if is_tty(out):
            try:
                from tqdm.auto import tqdm

                tqdm.write(text, file=out)
                return
            except ImportError:  # pragma: no cover
                pass
        print(text, file=out, flush=True)

    return say
