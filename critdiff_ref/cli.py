"""The ``critdiff`` command: thin argument parsing over library functions."""

from __future__ import annotations

import argparse
import json
import sys

from . import facts

__all__ = ["main"]


def _add_facts(sub) -> None:
    p = sub.add_parser("facts", help="print a target's exact facts (mode variances, cumulants, scores)")
    p.add_argument("--target", choices=sorted(facts.TARGETS), default="gaussian-field")
    p.add_argument("--process", choices=sorted(facts.PROCESSES), default="VE")
    p.add_argument("--L", type=int, default=16, help="lattice size (gaussian-field)")
    p.add_argument("--d", type=int, default=2, help="lattice dimension (gaussian-field)")
    p.add_argument("--r", type=float, default=0.0, help="mass r >= 0 (gaussian-field; 0 is critical)")
    p.add_argument("--times", type=float, nargs="+", default=None, help="diffusion times (default: 0, T/4, T/2, T)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the facts as JSON")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="critdiff", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    _add_facts(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["facts", *(argv or [])])
    if args.command == "facts":
        try:
            result = facts.target_facts(
                args.target, args.process, L=args.L, d=args.d, r=args.r, times=args.times
            )
        except (ValueError, TypeError) as err:
            print(f"critdiff facts: error: {err}", file=sys.stderr)
            return 2
        print(facts.format_facts(result))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(result, fh, indent=2)
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
