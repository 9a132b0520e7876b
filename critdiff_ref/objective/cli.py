"""``critdiff objective``: validate training objectives against the exact optimum (THEORY 9).

Default: the built-in diffusers objectives; ``--objective pkg.module:attr`` a user's (a
:class:`~.cases.diffusers_objectives.Case`, or a callable returning one); ``--mutants`` the power matrix.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .._io import atomic_write_text, check_output_dir, strict_json

__all__ = ["add_objective_parser", "run_objective", "load_case"]


def add_objective_parser(sub) -> argparse.ArgumentParser:
    from .cases.diffusers_objectives import DIFFUSERS_CASES

    p = sub.add_parser("objective", help="validate training objectives (eps, v, flow matching, EDM) against the exact optimum")
    p.add_argument("--case", choices=sorted(DIFFUSERS_CASES), nargs="+", default=None,
                   help="built-in diffusers objectives to validate (default: all)")
    p.add_argument("--objective", metavar="MODULE:ATTR", default=None,
                   help="a user objective: a Case, or a callable returning one")
    p.add_argument("--mutants", action="store_true", help="power matrix: planted bugs must fail, correct objectives pass")
    p.add_argument("--target", choices=("field", "mixture"), default="field",
                   help="data: the critical Gaussian field (L = 16, d = 2) or the two-peak mixture")
    p.add_argument("--L", type=int, default=16, help="lattice size of the field (d = 2, r = 0)")
    p.add_argument("--n-train", type=int, default=1000, help="training timesteps of the mutant schedulers")
    p.add_argument("--batches", type=int, default=64, help="independent batches")
    p.add_argument("--batch-size", type=int, default=4096, help="samples per batch")
    p.add_argument("--seed", type=int, default=0, help="seed of the torch.Generator")
    p.add_argument("--alpha", type=float, default=1e-3, help="false-failure rate of a correct objective")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the reports as strict JSON")
    p.add_argument("--plot", metavar="DIR", default=None,
                   help="write one figure per objective (weighting, density, chi-square per level; needs matplotlib)")
    return p


def load_case(path: str):
    """``pkg.module:attr`` -> the Case it names (calling it when it is a function of no arguments)."""
    from .cases.diffusers_objectives import Case

    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"--objective must be MODULE:ATTR, got {path!r}")
    obj = getattr(importlib.import_module(module), attr)
    if not isinstance(obj, Case) and callable(obj):
        obj = obj()
    if not isinstance(obj, Case):
        raise TypeError(f"--objective {path} must name a Case or a callable returning one, got {type(obj).__name__}")
    return obj


def run_objective(args: argparse.Namespace) -> int:
    from ..targets.gaussian_field import GaussianField
    from .cases.diffusers_objectives import DIFFUSERS_CASES
    from .cases.mutants import format_power_matrix, power_matrix
    from .report import NULL_REASONS
    from .validate import default_mixture, validate_objective

    check_output_dir(args.plot, "--plot")
    if args.n_train < 2:
        raise ValueError(f"--n-train must be >= 2, got {args.n_train}")

    target = default_mixture() if args.target == "mixture" else GaussianField(args.L, 2, 0.0)
    kwargs = dict(target=target, n_batches=args.batches, batch_size=args.batch_size, seed=args.seed, alpha=args.alpha)
    if args.mutants:
        rows = power_matrix(args.n_train, **kwargs)
        print(format_power_matrix(rows))
        if args.json:
            atomic_write_text(args.json, strict_json({"power_matrix": rows}))
        return 0 if all(r["ok"] for r in rows) else 1
    cases = [load_case(args.objective)] if args.objective else [DIFFUSERS_CASES[n]() for n in (args.case or DIFFUSERS_CASES)]
    reports = []
    for c in cases:
        report = validate_objective(c.objective, c.spec, name=c.name, documented_weighting=c.documented_weighting,
                                    documented_density=c.documented_density, **kwargs)
        print(report.table(), flush=True)
        reports.append(report.to_dict())
        if args.plot:
            from .plot import plot_report

            os.makedirs(args.plot, exist_ok=True)
            print(f"  figure: {plot_report(report, os.path.join(args.plot, c.name + '.png'))}")
    if args.json:
        atomic_write_text(args.json, strict_json({"reports": reports}, reasons=NULL_REASONS))
    sys.stdout.flush()
    return 0 if all(r["passed"] for r in reports) else 1
