"""The merged table of a sweep (markdown, CSV, JSON) and its plots (matplotlib, optional).

One row per job of the spec: ``id, group, kind, status``, the parameters that vary in its ``[[jobs]]``
entry (plus ``L, d, kappa, lam`` for phi4 and ``sampler`` for validate), the job kind's summary numbers
(:func:`critdiff_ref.sweep.jobs.summarize`), ``seconds`` from the log, and ``error`` for a failed job.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import defaultdict

from .. import _io
from .fss import binder_crossings, format_crossings
from .pooled import EXACT_DM_KIND, format_pools
from .jobs import summarize
from .spec import Job
from .store import write_atomic

__all__ = ["table_rows", "write_tables", "write_plots"]

_ALWAYS = {"phi4": ("L", "d", "kappa", "lam", "seed"), EXACT_DM_KIND: ("L", "kappa", "lam", "seed", "proposal_seed"),
           "validate": ("sampler", "adapter"), "report": ("section",),
           "call": ("function",)}


def table_rows(jobs: list[Job], records: dict[str, dict | None], log: dict[str, dict]) -> list[dict]:
    """Rows for ``jobs`` from their stored ``records`` (id -> record or None) and ``log`` (id -> last line)."""
    rows = []
    for job in jobs:
        rec = records.get(job.id)
        row = {"id": job.id, "group": job.group, "kind": job.kind, "status": rec["status"] if rec else "missing"}
        for key in _ALWAYS[job.kind]:
            row[key] = job.params.get(key)
        row.update({k: v for k, v in job.varying.items() if k not in row})
        if rec and rec["status"] == "ok":
            row.update(summarize(job.kind, rec["result"]))
        elif rec:
            row["error"] = rec.get("error")
        row["seconds"] = log.get(job.id, {}).get("seconds")
        rows.append(row)
    return rows


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.5g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v).replace("|", "\\|")


def _columns(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    return cols


def write_tables(out: str | os.PathLike, rows: list[dict], *, title: str = "sweep", note: str = "",
                 pools: list[dict] | None = None) -> dict:
    """Write ``table.md``, ``table.csv``, ``table.json`` into ``out``; returns ``{"crossings": [...]}`` (phi4
    Binder crossings, also in ``table.md`` and ``table.json``). ``pools``: the pooled ``phi4-exact-dm``
    studies (:func:`.pooled.exact_dm_pools`): a section of ``table.md`` and ``pooled.json``."""
    out = os.fspath(out)
    crossings = binder_crossings(rows)
    md = [f"# {title}", ""]
    if note:
        md += [note, ""]
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_kind[r["kind"]].append(r)
    for kind, kind_rows in by_kind.items():
        cols = _columns(kind_rows)
        md += [f"## {kind} ({len(kind_rows)} jobs)", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        md += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in kind_rows]
        md.append("")
    if crossings:
        md += ["## Binder cumulant crossings (finite-size scaling)", "", format_crossings(crossings), ""]
    if pools:
        md += ["## Exact DM-MCMC, chains pooled over jobs", "", format_pools(pools), ""]
        write_atomic(os.path.join(out, "pooled.json"), _io.strict_json({"pools": pools}, indent=1))
    write_atomic(os.path.join(out, "table.md"), "\n".join(md))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_columns(rows), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})
    write_atomic(os.path.join(out, "table.csv"), buf.getvalue())
    write_atomic(os.path.join(out, "table.json"), _io.strict_json({"rows": rows, "crossings": crossings}, indent=1))
    return {"crossings": crossings}


def write_plots(out: str | os.PathLike, rows: list[dict]) -> tuple[list[str], str]:
    """``plots/<group>_binder.png`` (U_L vs kappa per L, phi4) and ``plots/<group>_errors.png`` (validate:
    error at the largest step count per sampler); returns (files, note)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "matplotlib is not installed: plots skipped (pip install 'critdiff-ref[distributed]')"
    folder = os.path.join(os.fspath(out), "plots")
    os.makedirs(folder, exist_ok=True)
    files = []
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["status"] == "ok":
            groups[(r["kind"], r["group"])].append(r)
    for (kind, group), grp in groups.items():
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in group)
        if kind == "phi4" and len({r["kappa"] for r in grp}) > 1:
            fig, axes = plt.subplots(1, 2, figsize=(10, 4))
            for L in sorted({r["L"] for r in grp}):
                pts = sorted((r["kappa"], r["binder"], r["binder_err"], r["chi2"], r["chi2_err"]) for r in grp
                             if r["L"] == L)
                k, u, ue, c, ce = zip(*pts)
                axes[0].errorbar(k, u, yerr=ue, marker="o", ms=3, capsize=2, label=f"L = {L}")
                axes[1].errorbar(k, c, yerr=ce, marker="o", ms=3, capsize=2, label=f"L = {L}")
            axes[0].set(xlabel="kappa", ylabel="U_L = 1 - <M^4>/(3 <M^2>^2)", title=f"{group}: Binder cumulant")
            axes[1].set(xlabel="kappa", ylabel="chi_2", yscale="log", title="susceptibility")
            axes[0].legend()
        elif kind == "validate" and any(r.get("err_at_max_steps") is not None for r in grp):
            grp = [r for r in grp if r.get("err_at_max_steps") is not None]
            fig, axes = plt.subplots(figsize=(8, 0.3 * len(grp) + 1.5))
            labels = [str(r.get("name") or r["sampler"]) + (f" [{r['prediction_type']}]" if r.get("prediction_type")
                                                            else "") for r in grp]
            axes.barh(labels, [max(r["err_at_max_steps"], 1e-16) for r in grp],
                      color=["tab:green" if r.get("passed") else "tab:red" for r in grp])
            axes.set(xscale="log", xlabel="own relative covariance error at the largest step count", title=group)
        else:
            continue
        fig.tight_layout()
        path = os.path.join(folder, f"{safe}_{'binder' if kind == 'phi4' else 'errors'}.png")
        with _io.atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
        files.append(path)
    return files, ""
