"""``critdiff report``: reproduce the published phenomena with figures, numbers and pass/fail checks.

:data:`SECTIONS` lists the sections (:mod:`critdiff_ref.report.sections`, THEORY 3-5, and
:mod:`critdiff_ref.report.nongaussian`, THEORY 6-8); :func:`write_report` runs them and writes
``report.md``, ``report.json`` and the PNGs into one folder.
Figures need matplotlib (the ``report`` extra); without it the numbers and checks are still written.

Outputs are staged: the sections write into a hidden folder inside ``out`` and the files move into
place (one ``os.replace`` each) only when every section has finished, so an interrupted run leaves the
previous report as it was; its completed sections go to ``out/partial-<time>/`` with a report that
says it is partial.  An ``--only`` run says so at the top, and names the files of earlier runs it
leaves in the folder.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import _io
from .._progress import is_tty, progress_callback, progress_lines
from .learned import section_learned_cumulants
from .nongaussian import section_cumulants, section_phi4, section_symmetry
from .._args import cli_device
from .sections import Context, Section, md_table, section_generation, section_local, section_training

__all__ = ["SECTIONS", "write_report", "add_report_parser", "run_report", "work_report"]


SECTIONS: dict[str, Callable[[Context], Section]] = {
    "training": section_training,
    "generation": section_generation,
    "local": section_local,
    "cumulants": section_cumulants,
    "learned_cumulants": section_learned_cumulants,
    "symmetry": section_symmetry,
    "phi4": section_phi4,
}


def _markdown(sections: list[Section], command: str, versions: dict, partial: str = "") -> str:
    lines = ["# critdiff report", "", *([f"**Partial report.** {partial}", ""] if partial else []),
             f"Command: `{command}`", "", "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), ""]
    n_pass = sum(c.passed for s in sections for c in s.checks)
    n_all = sum(len(s.checks) for s in sections)
    lines += [f"**{n_pass}/{n_all} checks pass.**", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        lines += [f"![{f}]({f})" for f in s.figures] + [""]
        for t in s.tables:
            lines += [t, ""]
        rows = [[c.name, c.measured, c.predicted, c.tolerance, "pass" if c.passed else "FAIL", c.source] for c in s.checks]
        lines += [md_table(["check", "measured", "predicted", "tolerance", "result", "source"], rows), ""]
    return "\n".join(lines)


def write_report(
    out: str | os.PathLike = "critdiff-report",
    *,
    full: bool = False,
    device: str = "cpu",
    only: list[str] | None = None,
    progress: bool = True,
) -> dict:
    """Run the sections (all, or ``only``), write ``report.md``, ``report.json`` and figures into ``out``.

    Returns the JSON document: ``{"sections": {key: {"numbers", "checks", "figures"}}, "passed": bool, ...}``.
    """
    names = list(SECTIONS) if not only else list(only)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise ValueError(f"only must name sections in {tuple(SECTIONS)}, got {unknown}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got device={device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available")
    out = Path(out)
    _io.check_output_dir(out, "out")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    say = progress_lines("critdiff report", enabled=progress)
    bar = progress_callback("report", enabled=progress and is_tty(), unit="sections")
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
    versions = {"critdiff_ref": _version(), "python": platform.python_version(), "torch": torch.__version__,
                "numpy": np.__version__}
    command = "critdiff report " + ("--full" if full else "--quick") + (f" --only {' '.join(only)}" if only else "")
    ctx = Context(staging, full, device, say)
    sections: list[Section] = []
    try:
        for i, name in enumerate(names):
            say(f"section {i + 1}/{len(names)}: {name}")
            sections.append(SECTIONS[name](ctx))
            if bar:
                bar(i + 1, len(names))
    except BaseException as err:
        note = (f"Interrupted during section {name!r} ({type(err).__name__}{': ' + str(err) if str(err) else ''}); "
                f"completed: {', '.join(s.key for s in sections) or 'none'}.")
        _write(staging, _document(sections, command, versions, full, t0, note), sections, command, versions, note)
        dest = out / time.strftime("partial-%Y%m%d-%H%M%S")
        while dest.exists():
            dest = dest.with_name(dest.name + "x")
        os.replace(staging, dest)
        os.chmod(dest, 0o777 & ~_io.umask())
        say(f"interrupted: the previous report in {out} is unchanged; the completed sections are in {dest}")
        raise
    note = ""
    if only:
        produced = {f for s in sections for f in s.figures} | {"report.md", "report.json"}
        earlier = sorted(p.name for p in out.iterdir() if p.is_file() and p.name not in produced)
        note = (f"Only the sections {', '.join(names)} were run (--only); "
                f"not in this report: {', '.join(n for n in SECTIONS if n not in names) or 'none'}."
                + (f" Files in this folder from earlier runs, not described here: {', '.join(earlier)}." if earlier else ""))
    doc = _document(sections, command, versions, full, t0, note)
    _write(staging, doc, sections, command, versions, note)
    for f in [*(f for s in sections for f in s.figures), "report.json", "report.md"]:  # the report last
        os.replace(staging / f, out / f)
    shutil.rmtree(staging, ignore_errors=True)
    say(f"wrote {out / 'report.md'}")
    return doc


def _document(sections: list[Section], command: str, versions: dict, full: bool, t0: float, partial: str) -> dict:
    doc = {
        "command": command,
        "versions": versions,
        "mode": "full" if full else "quick",
        "seconds": time.monotonic() - t0,
        "partial": partial or None,
        "sections": {s.key: {"title": s.title, "numbers": s.numbers, "figures": s.figures,
                             "checks": [dict(asdict(c), passed=c.passed) for c in s.checks]} for s in sections},
    }
    doc["passed"] = all(c["passed"] for s in doc["sections"].values() for c in s["checks"])
    return doc


def _write(folder: Path, doc: dict, sections: list[Section], command: str, versions: dict, partial: str) -> None:
    """report.json (strict JSON) and report.md into ``folder`` (the staging folder: moved into place later)."""
    (folder / "report.json").write_text(_io.strict_json(doc, default=_jsonable))
    (folder / "report.md").write_text(_markdown(sections, command, versions, partial))


def _version() -> str:
    from .. import __version__

    return __version__


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, (np.ndarray, torch.Tensor)):
        return v.tolist()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def add_report_parser(sub):
    p = sub.add_parser("report", help="reproduce the papers' phenomena: figures, numbers, pass/fail")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, minutes on a CPU (the default mode)")
    mode.add_argument("--full", action="store_true", help="the published sizes (GPU recommended)")
    p.add_argument("--device", type=cli_device, default="cpu",
                   help="torch device for the Monte Carlo sections (cpu, cuda, cuda:N)")
    p.add_argument("--out", default="critdiff-report",
                   help="output folder (files replaced only when the run completes; an interrupted run leaves "
                        "its completed sections in OUT/partial-<time>/)")
    p.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=None,
                   help="run only these sections (the report says it is partial)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def work_report(args) -> int:
    """Elements of the largest per-step tensor: quick sizes are small (one thread); --full trains at L = 64."""
    return 1 << 22 if args.full else 0


def run_report(args) -> int:
    _io.check_output_dir(args.out, "--out")
    doc = write_report(args.out, full=args.full, device=args.device, only=args.only, progress=not args.quiet)
    for key, s in doc["sections"].items():
        n_pass = sum(c["passed"] for c in s["checks"])
        print(f"{key:12s} {n_pass}/{len(s['checks'])} checks pass")
        for c in s["checks"]:
            if not c["passed"]:
                print(f"  FAIL {c['name']}: measured {c['measured']:.4g}, predicted {c['predicted']:.4g} "
                      f"+- {c['tolerance']:.3g} ({c['source']})")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0 if doc["passed"] else 1
