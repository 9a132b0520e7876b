"""``critdiff report``: reproduce the published phenomena with figures, numbers and pass/fail checks.

:data:`SECTIONS` lists the sections (:mod:`critdiff_ref.report.sections`, THEORY 3-5, and
:mod:`critdiff_ref.report.nongaussian`, THEORY 6-8); :func:`write_report` runs them and writes
``report.md``, ``report.json`` and the PNGs into one folder.
Figures need matplotlib (the ``report`` extra); without it the numbers and checks are still written.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .nongaussian import section_cumulants, section_phi4, section_symmetry
from .sections import Context, Section, _md_table, section_generation, section_local, section_training

__all__ = ["SECTIONS", "write_report", "add_report_parser", "run_report"]


SECTIONS: dict[str, Callable[[Context], Section]] = {
    "training": section_training,
    "generation": section_generation,
    "local": section_local,
    "cumulants": section_cumulants,
    "symmetry": section_symmetry,
    "phi4": section_phi4,
}


def _markdown(sections: list[Section], command: str, versions: dict) -> str:
    lines = ["# critdiff report", "", f"Command: `{command}`", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), ""]
    n_pass = sum(c.passed for s in sections for c in s.checks)
    n_all = sum(len(s.checks) for s in sections)
    lines += [f"**{n_pass}/{n_all} checks pass.**", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        lines += [f"![{f}]({f})" for f in s.figures] + [""]
        for t in s.tables:
            lines += [t, ""]
        rows = [[c.name, c.measured, c.predicted, c.tolerance, "pass" if c.passed else "FAIL", c.source] for c in s.checks]
        lines += [_md_table(["check", "measured", "predicted", "tolerance", "result", "source"], rows), ""]
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
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()

    def say(msg: str) -> None:
        if progress:
            print(f"[critdiff report {time.monotonic() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True)

    ctx = Context(out, full, device, say)
    sections = []
    for i, name in enumerate(names):
        say(f"section {i + 1}/{len(names)}: {name}")
        sections.append(SECTIONS[name](ctx))
    versions = {"critdiff_ref": _version(), "python": platform.python_version(), "torch": torch.__version__,
                "numpy": np.__version__}
    command = "critdiff report " + ("--full" if full else "--quick") + (f" --only {' '.join(only)}" if only else "")
    doc = {
        "command": command,
        "versions": versions,
        "mode": "full" if full else "quick",
        "seconds": time.monotonic() - t0,
        "sections": {s.key: {"title": s.title, "numbers": s.numbers, "figures": s.figures,
                             "checks": [dict(asdict(c), passed=c.passed) for c in s.checks]} for s in sections},
    }
    doc["passed"] = all(c["passed"] for s in doc["sections"].values() for c in s["checks"])
    (out / "report.json").write_text(json.dumps(doc, indent=2, default=_jsonable))
    (out / "report.md").write_text(_markdown(sections, command, versions))
    say(f"wrote {out / 'report.md'}")
    return doc


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
    mode.add_argument("--quick", action="store_true", help="small sizes, minutes on a CPU (default)")
    mode.add_argument("--full", action="store_true", help="the published sizes (GPU recommended)")
    p.add_argument("--device", default="cpu", help="torch device for the Monte Carlo sections (cpu, cuda)")
    p.add_argument("--out", default="critdiff-report", help="output folder")
    p.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=None, help="run only these sections")
    return p


def run_report(args) -> int:
    doc = write_report(args.out, full=args.full, device=args.device, only=args.only)
    for key, s in doc["sections"].items():
        n_pass = sum(c["passed"] for c in s["checks"])
        print(f"{key:12s} {n_pass}/{len(s['checks'])} checks pass")
        for c in s["checks"]:
            if not c["passed"]:
                print(f"  FAIL {c['name']}: measured {c['measured']:.4g}, predicted {c['predicted']:.4g} "
                      f"+- {c['tolerance']:.3g} ({c['source']})")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0 if doc["passed"] else 1
