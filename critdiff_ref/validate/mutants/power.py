"""The validator's power matrix over the planted-bug samplers, and the ``critdiff mutants`` command (THEORY 2).

:func:`power_matrix` validates every mutant and correct sampler of :mod:`.catalogue`
and names the check that caught each mutant and by how much;
:func:`format_power_matrix` prints it as a table; ``critdiff mutants`` runs it.
"""

from __future__ import annotations

import math
from typing import Any

from ..._io import atomic_write_text, strict_json
from ...targets import GaussianField
from ..core import validate
from .catalogue import CORRECT, MUTANTS

__all__ = [
    "power_matrix",
    "format_power_matrix",
    "QUICK_SETTINGS",
    "add_mutants_parser",
    "run_mutants",
]


def power_matrix(names=None, *, include_correct: bool = True, **validate_kwargs: Any) -> list[tuple]:
    """Validate mutants (and correct samplers) and return rows ``(name, caught, check, margin)``.

    ``caught`` is True when validate() failed the sampler; ``check`` names the failed check with the
    largest margin (for a correct sampler: the check closest to failing); ``margin`` is that check's
    ``|measured - reference| / tolerance`` (for an order check the shortfall
    ``(documented - measured) / band``): > 1 fails, <= 1 passes.  ``names`` selects entries of
    ``MUTANTS`` / ``CORRECT`` (KeyError for others); extra keyword arguments go to ``validate()``
    on top of each entry's own options.
    """
    rows = []
    entries = dict(MUTANTS)
    if include_correct:
        entries.update(CORRECT)
    if names is not None:
        entries = {n: entries[n] for n in names}
    for name, entry in entries.items():
        report = validate(entry.sampler, entry.adapter, name=name, **{**entry.options, **validate_kwargs})
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
    for name, caught, check, margin in rows:
        kind = "mutant" if name in MUTANTS else "correct"
        ok = caught if kind == "mutant" else not caught
        result = ("caught" if caught else "MISSED") if kind == "mutant" else ("passed" if not caught else "FAILED")
        out.append(f"| {name} | {kind} | {result}{'' if ok else ' (!)'} | {check} | {margin:.3g} |")
    return "\n".join(out)


def add_mutants_parser(sub):
    """``critdiff mutants``: run the validator's power matrix (planted bugs must fail, correct samplers pass)."""
    p = sub.add_parser("mutants", help="validator power matrix: planted-bug samplers must fail, correct ones pass")
    p.add_argument("--names", nargs="+", default=None, help="entries of MUTANTS/CORRECT (default: all)")
    p.add_argument("--quick", action="store_true", help="one d=1 L=8 critical field, Gaussian checks only")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the rows as JSON")
    return p


def run_mutants(args) -> int:
    """Print the power matrix; exit 1 if a mutant was missed or a correct sampler failed."""
    unknown = [n for n in (args.names or []) if n not in MUTANTS and n not in CORRECT]
    if unknown:
        raise ValueError(f"names must be entries of MUTANTS or CORRECT, got unknown {unknown}")
    kw = {"seed": args.seed}
    if args.quick:
        kw.update(QUICK_SETTINGS, fields=(GaussianField(8, 1, 0.0),))
    rows = power_matrix(args.names, **kw)
    print(format_power_matrix(rows))
    if args.json:
        atomic_write_text(args.json, strict_json([list(r) for r in rows]))
    bad = [r for r in rows if (r[0] in MUTANTS) != r[1]]
    return 1 if bad else 0
