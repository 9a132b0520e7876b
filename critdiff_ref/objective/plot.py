"""Figure of an objective report: the measured weighting and visited density per noise level, and the
per-level chi-square of the implied denoiser (THEORY 9).  matplotlib is optional."""

from __future__ import annotations

import math
import os

from .report import ObjectiveReport

__all__ = ["plot_report"]


def plot_report(report: ObjectiveReport, path: str | os.PathLike) -> str:
    """Write a three-panel PNG for ``report`` at ``path`` (ImportError naming matplotlib if absent)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - matplotlib is a documented optional dependency
        raise ImportError("plot_report needs matplotlib (pip install matplotlib)") from err
    rows = report.levels
    sigma = [r.sigma for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    ax = axes[0]
    ax.errorbar(sigma, [r.weight for r in rows], yerr=[r.weight_stderr for r in rows], fmt=".", ms=2, label="measured")
    if any(math.isfinite(r.documented_weight) for r in rows):
        ax.plot(sigma, [r.documented_weight for r in rows], "-", lw=1, label="documented")
    ax.set(xscale="log", yscale="log", xlabel="sigma", ylabel="loss weight (output space, relative)")
    ax.legend()
    total = sum(r.samples for r in rows) or 1
    axes[1].plot(sigma, [r.samples / total for r in rows], ".", ms=2)
    axes[1].set(xscale="log", xlabel="sigma", ylabel="visited fraction")
    ax = axes[2]
    ax.plot(sigma, [r.chi2 / r.dof if r.dof else math.nan for r in rows], ".", ms=2)
    off = [r for r in rows if r.off]
    ax.plot([r.sigma for r in off], [r.chi2 / r.dof for r in off], "rx", label="off")
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set(xscale="log", yscale="log", xlabel="sigma", ylabel="chi2 / dof of the implied denoiser")
    if off:
        ax.legend()
    fig.suptitle(f"{report.name} on {report.target}: {'PASS' if report.passed else 'FAIL'}")
    fig.savefig(os.fspath(path), dpi=110)
    plt.close(fig)
    return os.fspath(path)
