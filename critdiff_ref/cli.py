"""The ``critdiff`` command: thin argument parsing over library functions.

Each sub-command lives next to the code it runs, as a pair ``add_<name>_parser(subparsers)`` /
``run_<name>(args) -> int``; this module only lists them.  ``ValueError``/``TypeError`` from the
library (bad input) and argparse's own errors become exit code 2 with one line
``critdiff <command>: error: ...`` on stderr (``--help`` shows the usage); an ``OSError`` (a file that
cannot be read or written) is one line and exit code 1; Ctrl-C is one line and exit code 130 (a
command that keeps partial work says what it kept); a closed pipe (``critdiff ... | head -1``) ends the
command quietly with exit code 141, as ``SIGPIPE`` would.  Before a command runs, its
``--json`` file is checked (:func:`critdiff_ref._io.check_output_file`) and torch's thread count is set
from ``--threads``, ``OMP_NUM_THREADS`` or the problem size (:mod:`critdiff_ref._threads`; a module
may define ``work_<name>(args)``, the elements of its largest per-step tensor, default small).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import _args, _io, _threads

__all__ = ["main", "SUBCOMMANDS", "HelpFormatter", "Parser"]

# (name, module, help) — the module defines add_<name>_parser and run_<name> (a "-" in name is "_" there).
SUBCOMMANDS: list[tuple[str, str, str]] = [
    ("validate", "critdiff_ref.validate.cli",
     "validate a diffusion sampler against exact answers (default: ours + diffusers schedulers)"),
    ("facts", "critdiff_ref.cli", "print a target's exact facts (mode variances, cumulants, scores)"),
    ("mutants", "critdiff_ref.validate.mutants",
     "validator power matrix: planted-bug samplers must fail, correct ones pass"),
    ("coverage", "critdiff_ref.validate.coverage",
     "validate every diffusers scheduler class and config variant (docs/results/coverage.md); --kdiffusion"),
    ("train", "critdiff_ref.trainers.experiment",
     "steps to accuracy: one-layer vs two-layer vs local linear scores (THEORY 3-5)"),
    ("thermo", "critdiff_ref.thermo",
     "Curie-Weiss fixed points, m, chi and exact REM participation ratios (THEORY 7)"),
    ("phi4", "critdiff_ref.phi4.commands.phi4",
     "lattice phi^4: HMC observables with errors; --train-dm adds a diffusion model and DM-MCMC"),
    ("phi4-figures", "critdiff_ref.phi4.commands.figures",
     "phi^4 DM-MCMC figures: acceptance vs kappa and L, |M| autocorrelation, broken-phase histogram"),
    ("phi4-exact-dm", "critdiff_ref.phi4.commands.exact_dm",
     "phi^4 exact DM-MCMC with a trained fourier-local network vs a long HMC run (z-scores, power)"),
    ("report", "critdiff_ref.report", "reproduce the papers' phenomena: figures, numbers, pass/fail"),
    ("cumulants", "critdiff_ref.report.learned",
     "learned cumulants: a trained score MLP vs exact kappa_2..kappa_8 under VE and VP (THEORY 6)"),
    ("sweep", "critdiff_ref.sweep.cli", "run a sweep spec (phi4 / validate / report grids) on Ray or a process pool"),
    ("objective", "critdiff_ref.objective.cli",
     "validate training objectives (eps, v, flow matching, EDM; --mutants) against the exact optimum"),
]

DEFAULT_COMMAND = "validate"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows the default of every option that takes a value (on/off flags, ``None`` and empty-list
    defaults, whose help says what happens, are left as written)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0 or action.default is None or action.default == []:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line, ``critdiff <command>: error: ...`` (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (usage: {self.prog} --help)\n")


def add_facts_parser(sub) -> argparse.ArgumentParser:
    from .theory import facts

    p = sub.add_parser("facts", help="print a target's exact facts (mode variances, cumulants, scores)")
    p.add_argument("--target", choices=sorted(facts.TARGETS), default="gaussian-field", help="the target distribution")
    p.add_argument("--process", choices=sorted(facts.PROCESSES), default="VE", help="the forward process")
    p.add_argument("--L", type=int, default=16, help="lattice size (gaussian-field)")
    p.add_argument("--d", type=int, default=2, help="lattice dimension (gaussian-field)")
    p.add_argument("--r", type=float, default=0.0, help="mass r >= 0 (gaussian-field; 0 is critical)")
    p.add_argument("--times", type=float, nargs="+", default=None, help="diffusion times (default: 0, T/4, T/2, T)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the facts as JSON")
    return p


def run_facts(args: argparse.Namespace) -> int:
    from .theory import facts

    result = facts.target_facts(args.target, args.process, L=args.L, d=args.d, r=args.r, times=args.times)
    print(facts.format_facts(result))
    if args.json:
        _io.atomic_write_text(args.json, _io.strict_json(result))
    return 0


def _build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, importing the modules of every sub-command (``only``: just that one's module)."""
    parser = Parser(prog="critdiff", description="Reference diffusion models with exact answers.")
    sub = parser.add_subparsers(dest="command")
    for name, module, help_ in SUBCOMMANDS:
        if only is not None and name != only:
            sub.add_parser(name, help=help_)  # listed in --help, not imported
            continue
        mod = importlib.import_module(module)
        fn = name.replace("-", "_")  # phi4-figures -> add_phi4_figures_parser
        p = getattr(mod, f"add_{fn}_parser")(sub)
        p.formatter_class = HelpFormatter
        p.add_argument("--threads", type=_args.cli_int(1), default=None,
                       help="CPU threads for torch (>= 1; default: OMP_NUM_THREADS if set, else from the problem size)")
        p.set_defaults(run=getattr(mod, f"run_{fn}"), work=getattr(mod, f"work_{fn}", None))
    return parser


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = [DEFAULT_COMMAND, *argv]
    names = [name for name, _, _ in SUBCOMMANDS]
    command = argv[0] if argv[0] in names else None
    prog = f"critdiff {command}" if command else "critdiff"
    try:
        parser = _build_parser(command)
        args, extra = parser.parse_known_args(argv)
        if extra:  # reported by the sub-command's name, not the top-level parser's
            parser.exit(2, f"{prog}: error: unrecognized arguments: {' '.join(extra)} (usage: {prog} --help)\n")
        _io.check_output_file(getattr(args, "json", None), "--json")
        with _threads.threads(args.work(args) if args.work else 0, requested=args.threads, user=True):
            code = int(args.run(args))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except (ValueError, TypeError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _quiet_stdout()
        return 141
    except OSError as err:
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        print(f"{prog}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        try:
            print(f"{prog}: {str(err) or 'interrupted'}", file=sys.stderr, flush=True)
        except (OSError, KeyboardInterrupt):
            pass
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
