"""The validation report: results of every check, a terminal table, JSON and plots (THEORY 2).

Plots (error vs steps on log axes; per-mode relative variance error vs ``|k|``) need matplotlib; without
it :meth:`Report.plot` returns no files and a note saying so.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field as dc_field

from .._io import atomic_path, atomic_write_text, strict_json
from .checks.result import CheckResult

__all__ = ["Report"]


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.3g}"


@dataclass
class Report:
    """All results for one sampler: ``passed`` is True when no check failed (informational rows ignored)."""

    sampler: str
    adapter: str
    results: list[CheckResult] = dc_field(default_factory=list)
    series: dict = dc_field(default_factory=dict)
    info: dict = dc_field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r.passed is not False for r in self.results) and bool(self.results)

    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.passed is False]

    def select(self, kind: str, field=None) -> list[CheckResult]:
        """The results of one check kind (``"covariance"``, ``"order"``, ...), on ``field`` when given, in order."""
        return [r for r in self.results if r.kind == kind and (field is None or r.field == field)]

    def __getitem__(self, name: str) -> CheckResult:
        """The result whose display name is ``name`` (``report["gauss[d=1,L=8,r=0]/order"]``)."""
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def table(self, *, verbose: bool = True) -> str:
        """A plain-text table, one row per check (``verbose=False``: only pass/fail rows)."""
        rows = [r for r in self.results if verbose or r.passed is not None]
        head = ("check", "measured", "reference", "tolerance", "status")
        body = [(r.name, _fmt(r.measured), _fmt(r.reference), _fmt(r.tolerance),
                 "info" if r.passed is None else ("PASS" if r.passed else "FAIL")) for r in rows]
        w = [max(len(head[i]), *(len(b[i]) for b in body)) if body else len(head[i]) for i in range(5)]
        line = "  ".join(h.ljust(w[i]) for i, h in enumerate(head))
        out = [f"{self.sampler} [{self.adapter}]: {'PASS' if self.passed else 'FAIL'} "
               f"({len(self.failures())} failed of {sum(r.passed is not None for r in self.results)})", line,
               "-" * len(line)]
        for b, r in zip(body, rows):
            out.append("  ".join(c.ljust(w[i]) for i, c in enumerate(b)))
            if r.passed is False or (verbose and r.detail and r.passed is None and r.kind in ("order", "weak_order")):
                out.append(f"    {r.detail}  [tolerance: {r.tolerance_source}]")
        return "\n".join(out)

    def diff(self) -> str:
        """What was off, one line per failed check (for pytest assertion messages)."""
        lines = [f"{r.name}: measured {_fmt(r.measured)} vs reference {_fmt(r.reference)} "
                 f"(|diff| allowed {_fmt(r.tolerance)}: {r.tolerance_source}) {r.detail}" for r in self.failures()]
        return "\n".join(lines) or "all checks passed"

    def to_dict(self) -> dict:
        return {"sampler": self.sampler, "adapter": self.adapter, "passed": self.passed, "info": self.info,
                "results": [r.to_dict() for r in self.results], "series": self.series}

    def to_json(self, path: str | None = None, *, indent: int | None = 2) -> str:
        """Strict JSON (NaN/inf as null, listed under ``"nulls"`` with the reason); written to ``path``
        atomically when given (the old file stays until the new one is complete)."""
        text = strict_json(self.to_dict(), default=str, indent=indent)
        if path is not None:
            atomic_write_text(path, text)
        return text

    def plot(self, directory: str) -> tuple[list[str], str]:
        """Write ``errors_vs_steps.png`` and ``per_mode.png`` into ``directory``; returns (files, note)."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return [], "matplotlib is not installed: plots skipped (pip install 'critdiff-ref[plot]')"
        os.makedirs(directory, exist_ok=True)
        files = []
        fig, ax = plt.subplots(figsize=(5, 4))
        for label, s in self.series.items():
            if s.get("steps"):
                ax.loglog(s["steps"], s["own_error"], "o-", label=f"{label} (own)")
                ax.loglog(s["steps"], s["total_error"], "x--", label=f"{label} (total)")
        ax.set_xlabel("steps")
        ax.set_ylabel("relative covariance error")
        ax.set_title(self.sampler)
        ax.legend(fontsize=6)
        path = os.path.join(directory, "errors_vs_steps.png")
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight")
        plt.close(fig)
        files.append(path)
        fig, ax = plt.subplots(figsize=(5, 4))
        for r in self.results:
            pm = r.data.get("per_mode") if r.data else None
            if pm:
                ax.plot(pm["k"], pm["rel_var_error"], ".", label=r.name)
        ax.set_xlabel("|k|")
        ax.set_ylabel("(v(k) - c0(k)) / c0(k)")
        ax.legend(fontsize=6)
        path = os.path.join(directory, "per_mode.png")
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight")
        plt.close(fig)
        files.append(path)
        return files, ""
