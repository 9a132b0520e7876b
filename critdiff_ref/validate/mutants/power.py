"""The validator's power matrix over the planted-bug samplers, and the ``critdiff mutants`` command (THEORY 2).

:func:`power_matrix` validates every mutant and correct sampler of :mod:`.catalogue`
and names the check that caught each mutant and by how much;
:func:`format_power_matrix` prints it as a table; ``critdiff mutants`` runs it.
"""

from __future__ import annotations

import math
from typing import Any

from ..._io import atomic_write_text, check_output_file, strict_json
from ...objective import format_power_matrix as format_objective_matrix, power_matrix as objective_matrix
from ...targets import GaussianField
from ..core import validate
from ..libraries.adaptive import adaptive_checks
from ..libraries.registry import library_available
from ..report import Report
from .catalogue import CORRECT, LIBRARY_CORRECT, LIBRARY_MUTANTS, LIBRARY_NEEDS, MUTANTS, Entry

__all__ = [
    "all_mutants",
    "all_correct",
    "power_matrix",
    "format_power_matrix",
    "QUICK_SETTINGS",
    "add_mutants_parser",
    "run_mutants",
]


def _installed(entries: dict[str, Entry]) -> dict[str, Entry]:
    return {name: e for name, e in entries.items() if all(library_available(lib) for lib in LIBRARY_NEEDS[name])}


def all_mutants() -> dict[str, Entry]:
    """The planted bugs: :data:`.catalogue.MUTANTS`, then those of the solver libraries that are installed
    (:data:`.catalogue.LIBRARY_MUTANTS`)."""
    return {**MUTANTS, **_installed(LIBRARY_MUTANTS)}


def all_correct() -> dict[str, Entry]:
    """The correct samplers: :data:`.catalogue.CORRECT`, then the library parents whose libraries are installed."""
    return {**CORRECT, **_installed(LIBRARY_CORRECT)}


def _run_entry(name: str, entry: Entry, validate_kwargs: dict) -> Report:
    """validate() the entry (its own options win over ``validate_kwargs``); an ``"adaptive"`` entry goes
    through the adaptive solvers' checks instead."""
    if entry.adapter == "adaptive":
        return Report(name, "adaptive", results=adaptive_checks(entry.options["method"], sampler=entry.sampler))
    return validate(entry.sampler, entry.adapter, name=name, **{**validate_kwargs, **entry.options})


def power_matrix(names=None, *, include_correct: bool = True, **validate_kwargs: Any) -> list[tuple]:
    """Validate mutants (and correct samplers) and return rows ``(name, caught, check, margin)``.

    ``caught`` is True when validate() failed the sampler; ``check`` names the failed check with the
    largest margin (for a correct sampler: the check closest to failing); ``margin`` is that check's
    ``|measured - reference| / tolerance`` (for an order check the shortfall
    ``(documented - measured) / band``): > 1 fails, <= 1 passes.  ``names`` selects entries of
    :func:`all_mutants` / :func:`all_correct` (KeyError for others); extra keyword arguments go to ``validate()``
    under each entry's own options.
    """
    rows = []
    entries = all_mutants()
    if include_correct:
        entries.update(all_correct())
    if names is not None:
        entries = {n: entries[n] for n in names}
    for name, entry in entries.items():
        report = _run_entry(name, entry, validate_kwargs)
        check, margin = _worst_check(report)
        rows.append((name, not report.passed, check, margin))
    return rows


def _margin(result) -> float:
    """How far a check is from its limit in units of its tolerance (> 1 fails, NaN counts as inf)."""
    if result.passed is None:
        return -math.inf
    m, ref, tol = float(result.measured), float(result.reference), float(result.tolerance)
    if not math.isfinite(m):
        return math.inf
    if result.kind == "order":
        # order checks pass when measured >= reference - tol: margin = shortfall / tol + 1
        return (ref - m) / tol if tol > 0 else (math.inf if m < ref else 0.0)
    return abs(m - ref) / tol if tol > 0 else (math.inf if m != ref else 0.0)


def _worst_check(report) -> tuple[str, float]:
    results = [r for r in report.results if r.passed is not None]
    if not results:
        return "no checks ran", math.inf
    failed = [r for r in results if r.passed is False]
    pool = failed or results
    worst = max(pool, key=_margin)
    return worst.name, _margin(worst)


# validate() settings of the quick matrix (CI): one critical field, the Gaussian checks only.
QUICK_SETTINGS: dict = {"targets": ("gaussian",), "n_samples": 1000}


def format_power_matrix(rows) -> str:
    """Markdown table of :func:`power_matrix` rows: mutants first (caught?), then correct samplers (passed?)."""
    out = ["| sampler | kind | result | deciding check | margin |", "|---|---|---|---|---|"]
    mutants = all_mutants()
    for name, caught, check, margin in rows:
        kind = "mutant" if name in mutants else "correct"
        ok = caught if kind == "mutant" else not caught
        result = ("caught" if caught else "MISSED") if kind == "mutant" else ("passed" if not caught else "FAILED")
        out.append(f"| {name} | {kind} | {result}{'' if ok else ' (!)'} | {check} | {margin:.3g} |")
    return "\n".join(out)


def add_mutants_parser(sub):
    """``critdiff mutants``: run the validator's power matrix (planted bugs must fail, correct samplers pass)."""
    p = sub.add_parser("mutants", help="validator power matrix: planted-bug samplers must fail, correct ones pass")
    p.add_argument("--names", nargs="+", default=None,
                   help="entries of the catalogue (default: all; with the solver libraries installed, their planted "
                        "bugs too; --list shows them)")
    p.add_argument("--list", action="store_true", help="print the catalogue's names, then exit")
    p.add_argument("--quick", action="store_true", help="one d=1 L=8 critical field, Gaussian checks only")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--objectives", action="store_true",
                   help="also the training-objective power matrix: planted-bug objectives must fail, correct "
                        "ones pass (about 2.5 CPU-minutes; the same as critdiff objective --mutants)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the rows as JSON")
    return p


def run_mutants(args) -> int:
    """Print the power matrix; exit 1 if a mutant was missed or a correct sampler failed."""
    check_output_file(args.json, "--json")  # before the run, not after it
    mutants, correct = all_mutants(), all_correct()
    unknown = [n for n in (args.names or []) if n not in mutants and n not in correct]
    if unknown:
        missing = [n for n in unknown if n in LIBRARY_NEEDS]
        why = (f" ({', '.join(missing)}: needs a solver library that is not installed: pip install "
               "'critdiff-ref[libraries]')" if missing else "")
        raise ValueError(f"--names {' '.join(unknown)}: not in the mutants catalogue{why} "
                         "(critdiff mutants --list shows it)")
    if getattr(args, "list", False):
        print("planted bugs: " + " ".join(mutants))
        print("correct samplers: " + " ".join(correct))
        return 0
    kw = {"seed": args.seed}
    if args.quick:
        kw.update(QUICK_SETTINGS, fields=(GaussianField(8, 1, 0.0),))
    rows = power_matrix(args.names, **kw)
    print(format_power_matrix(rows))
    bad = [r for r in rows if (r[0] in mutants) != r[1]]
    if not args.objectives:
        if args.json:
            atomic_write_text(args.json, strict_json([list(r) for r in rows]))
        return 1 if bad else 0
    objective_rows = objective_matrix()
    print("\ntraining objectives:\n" + format_objective_matrix(objective_rows))
    if args.json:
        atomic_write_text(args.json, strict_json({"samplers": [list(r) for r in rows], "objectives": objective_rows}))
    return 1 if bad or not all(r["ok"] for r in objective_rows) else 0
