"""The central experiment: steps to accuracy of one-layer vs two-layer vs local training (THEORY 3, 4, 5).

:func:`scaling_table` computes, for a list of L, the deterministic step counts of
:func:`critdiff_ref.trainers.steps_to_accuracy` per architecture and fits ``steps ~ L^z``;
:func:`format_scaling_table` prints it.  ``add_train_parser`` / ``run_train`` back the
``critdiff train`` sub-command.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np

from ..processes import Process
from .steps import ARCHS, steps_to_accuracy

__all__ = ["ScalingTable", "scaling_table", "format_scaling_table", "fit_exponent", "add_train_parser", "run_train"]

DEFAULT_ARCHS = ("one-layer", "one-layer-momentum", "two-layer", "local")


@dataclass(frozen=True)
class ScalingTable:
    """Rows ``{"L": L, arch: steps, ...}`` and fitted exponents ``z`` of ``steps ~ L^z`` per arch."""

    rows: tuple
    exponents: dict
    d: int
    r: float
    t: float
    eps: float
    ell: int | None = None


def fit_exponent(Ls, ns) -> float:
    """Least-squares slope of ``ln n`` against ``ln L`` (nan for fewer than two sizes)."""
    Ls, ns = np.asarray(Ls, float), np.asarray(ns, float)
    if Ls.shape != ns.shape:
        raise ValueError(f"Ls and ns must have the same length, got {Ls.shape} and {ns.shape}")
    if len(Ls) < 2:
        return float("nan")
    return float(np.polyfit(np.log(Ls), np.log(ns), 1)[0])


def scaling_table(
    Ls=(8, 16, 32, 64), d: int = 2, r: float = 0.0, t: float = 0.01, eps: float = 1e-2,
    process: Process | None = None, archs=DEFAULT_ARCHS, ell: int | None = None,
) -> ScalingTable:
    """Steps to accuracy for each ``arch`` and ``L`` (see :func:`steps_to_accuracy`), with ``z`` from a log-log fit.

    One layer: ``z = 2`` at ``r = 0`` (THEORY 3); heavy ball ``z ~ 1``; two layers ``z ~ 0`` (THEORY 4);
    local (one-layer kernel of radius ``ell``, default ``~ ln L``): the curvature spread of the field on
    the box, ``~ ell^2 ln L`` in d = 2 (polylogarithmic with ``ell ~ ln L``), ``~ ell L`` in d = 1.
    """
    Ls = [int(L) for L in Ls]
    if len(Ls) < 1:
        raise ValueError("Ls must hold at least one lattice size")
    archs = tuple(archs)
    bad = [a for a in archs if a not in ARCHS]
    if bad or not archs:
        raise ValueError(f"archs must be a non-empty subset of {ARCHS}, got {archs!r}")
    rows = []
    for L in Ls:
        row = {"L": L}
        for arch in archs:
            row[arch] = steps_to_accuracy(arch, L, d, r, t, eps, process, ell=ell if arch == "local" else None)
        rows.append(row)
    exps = {a: fit_exponent(Ls, [row[a] for row in rows]) for a in archs}
    return ScalingTable(tuple(rows), exps, d, float(r), float(t), float(eps), ell)


def format_scaling_table(table: ScalingTable) -> str:
    """Plain-text table of :func:`scaling_table` with an exponent row ``z``."""
    archs = [k for k in table.rows[0] if k != "L"]
    head = f"steps to relative accuracy {table.eps:g} (d={table.d}, r={table.r:g}, t={table.t:g}, OU unless set)"
    if table.ell is not None:
        head += f", local ell={table.ell}"
    width = max(12, max(len(a) for a in archs) + 2)
    lines = [head, "L".rjust(6) + "".join(a.rjust(width) for a in archs)]
    for row in table.rows:
        lines.append(str(row["L"]).rjust(6) + "".join(str(row[a]).rjust(width) for a in archs))
    z = "".join((f"{table.exponents[a]:.3f}" if math.isfinite(table.exponents[a]) else "-").rjust(width) for a in archs)
    lines.append("z".rjust(6) + z)
    return "\n".join(lines)


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``critdiff train``: the steps-to-accuracy table of one-layer / two-layer / local training."""
    p = subparsers.add_parser(
        "train", help="steps to accuracy: one-layer vs two-layer vs local linear scores (THEORY 3-5)",
        description="Deterministic full-batch GD on the exact population loss of a Gaussian lattice field; "
        "prints steps to relative accuracy per lattice size and the fitted exponents z (steps ~ L^z).",
    )
    p.add_argument("--L", type=int, nargs="+", default=[8, 16, 32, 64], help="lattice sizes")
    p.add_argument("--d", type=int, default=2, help="dimension")
    p.add_argument("--r", type=float, default=0.0, help="mass r >= 0 (0 is critical)")
    p.add_argument("--t", type=float, default=0.01, help="diffusion time of the OU process")
    p.add_argument("--eps", type=float, default=1e-2, help="relative accuracy in (0, 1)")
    p.add_argument("--ell", type=int, default=None, help="local radius (default round(ln L) per L)")
    p.add_argument("--arch", nargs="+", choices=ARCHS, default=list(DEFAULT_ARCHS), help="architectures")
    p.set_defaults(func=run_train)
    return p


def run_train(args: argparse.Namespace) -> int:
    """Run ``critdiff train``: print :func:`format_scaling_table` of :func:`scaling_table`; 0 on success."""
    table = scaling_table(args.L, d=args.d, r=args.r, t=args.t, eps=args.eps, archs=args.arch, ell=args.ell)
    print(format_scaling_table(table))
    return 0
