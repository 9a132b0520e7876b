"""Coverage of every diffusers scheduler class and of the config variants that change the maths (THEORY 1, 2).

``critdiff coverage`` runs :func:`critdiff_ref.validate.validate` on every ``*Scheduler`` class that
``diffusers`` exports, except the ones the registry (:mod:`critdiff_ref.validate.registry`) names not applicable (with the one-line reason), and
prints the coverage table (docs/results/coverage.md): per class the own error at the two step counts, the observed order
against the documented one, the exact weak order (stochastic schedulers), the schedule floor and the
failed checks.  A class the adapters cannot run yet is listed with the registry's known-gap reason
(tried anyway: once an adapter handles it, it is validated).  ``--variants`` adds the configs that change
the maths (:func:`config_variants`: timestep spacing, Karras / exponential / beta sigmas, final sigma,
prediction type; thresholding is named, not run: it is a non-linear image-range projection).

The registry's catalogue holds the classes of the diffusers release it was written for; the test suite
compares it with ``dir(diffusers)``, so a new release's classes show up as a failing test.
``critdiff coverage --kdiffusion`` prints the k-diffusion table instead (:func:`kdiffusion_table`).
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
import warnings

from .. import _io
from ..targets import GaussianField
from .core import validate, validate_runner
from .checks.order import probed_weak_order_row
from .libraries.registry import (
    format_library_table,
    library_adaptive_reports,
    library_available,
    library_notes,
    library_table,
)
from .registry import LIBRARIES, catalogued_classes, known_gaps, not_applicable
from .runners.kdiffusion import KDIFFUSION_SAMPLERS, kdiffusion_runner

__all__ = [
    "NOT_APPLICABLE",
    "KNOWN_GAPS",
    "CLASSES",
    "exported_schedulers",
    "config_variants",
    "coverage_rows",
    "format_coverage_table",
    "kdiffusion_table",
    "format_kdiffusion_table",
    "add_coverage_parser",
    "check_coverage_args",
    "run_coverage",
]

# snapshots of the registry as this module was imported (coverage_rows reads the registry live)
NOT_APPLICABLE: dict[str, str] = not_applicable()
KNOWN_GAPS: dict[str, str] = known_gaps()
CLASSES: tuple[str, ...] = catalogued_classes()

INSTALL_DIFFUSERS = "pip install 'critdiff-ref[diffusers]'"

THRESHOLDING_REASON = ("dynamic thresholding clips x0 to an image range: non-linear by design, outside the exact "
                       "Gaussian check (validate reports its linearity failure)")


def exported_schedulers() -> list[str]:
    """Every ``*Scheduler`` name exported by the installed ``diffusers``."""
    import diffusers

    return sorted(n for n in dir(diffusers) if n.endswith("Scheduler"))


def config_variants(cls) -> list[tuple[str, dict]]:
    """``(label, overrides)`` for the config keys of ``cls`` that change the maths, each value but the default."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = cls().config
    out = []
    if "timestep_spacing" in config:
        for v in ("linspace", "leading", "trailing"):
            if v != config["timestep_spacing"]:
                out.append((f"timestep_spacing={v}", {"timestep_spacing": v}))
    for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"):
        if key in config and not config[key]:
            out.append((f"{key}=True", {key: True}))
    if "final_sigmas_type" in config:
        for v in ("zero", "sigma_min"):
            if v != config["final_sigmas_type"]:
                out.append((f"final_sigmas_type={v}", {"final_sigmas_type": v}))
    if "prediction_type" in config:
        for v in ("epsilon", "v_prediction", "sample"):
            if v != config["prediction_type"]:
                out.append((f"prediction_type={v}", {"prediction_type": v}))
    return out


def _row(name: str, variant: str, build, field, steps) -> dict:
    """Validate one scheduler (``build()`` returns the class or instance) and summarise it."""
    t0 = time.time()
    row = {"scheduler": name, "variant": variant, "status": "validated", "reason": "", "errors": {},
           "observed_order": math.nan, "documented_order": None, "weak_order": math.nan, "floor_error": math.nan,
           "failures": [], "seconds": 0.0}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rep = validate(build(), "diffusers", fields=[field], steps=steps, targets=("gaussian",))
    except Exception as err:  # noqa: BLE001 - an adapter refusing the class is a coverage row, not a crash
        message = f"{type(err).__name__}: {str(err).splitlines()[0][:140] if str(err) else ''}"
        if variant:  # the class itself refuses the config (or crashes on it): say so, with its message
            row.update(status="refused by the class", reason=message)
        else:
            row.update(status="not covered", reason=known_gaps().get(name, message))
        return row
    # the sampler could not run (the run check) or no covariance could be computed: not covered
    broken = [r for r in rep.results if r.kind == "run" or (r.kind == "covariance" and not math.isfinite(r.measured))]
    if broken:
        row.update(status="not covered", reason=known_gaps().get(name, broken[0].detail.splitlines()[0][:160]))
        return row
    cov = rep.select("covariance")
    for r in rep.results:
        if r.kind in ("order", "consistency"):
            row["observed_order"], row["documented_order"] = r.measured, rep.info.get("order")
            row["order_kind"] = r.kind
        elif r.kind == "weak_order":
            row["weak_order"] = r.measured
    row["errors"] = {r.steps: r.measured for r in cov}
    row["floor_error"] = cov[-1].data.get("floor_error", math.nan) if cov and cov[-1].data else math.nan
    row["exact"] = all("Monte Carlo" not in r.detail for r in cov)
    row["failures"] = [r.check for r in rep.failures()]
    row["passed"] = rep.passed
    row["seconds"] = time.time() - t0
    return row


def coverage_rows(names=None, *, variants: bool = False, field=None, steps=(50, 100), progress=None) -> list[dict]:
    """One row per exported scheduler class (and per config variant with ``variants=True``); module docstring.
    ``progress(row)`` is called with each row as it is done."""
    import diffusers

    field = GaussianField(16, 1, 0.0) if field is None else field
    rows: list[dict] = []
    _append = rows.append
    if progress is not None:
        def _append(row):  # noqa: F811 - report each row as it is done
            rows.append(row)
            progress(row)
    reasons = not_applicable()
    for name in (exported_schedulers() if names is None else names):
        if name in reasons:
            _append({"scheduler": name, "variant": "", "status": "not applicable", "reason": reasons[name]})
            continue
        cls = getattr(diffusers, name)
        row = _row(name, "", lambda: cls, field, steps)
        _append(row)
        if not variants or row["status"] != "validated":
            continue
        for label, overrides in config_variants(cls):
            def build(overrides=overrides):
                base = cls()
                off = {k: False for k in ("clip_sample", "thresholding") if base.config.get(k)}
                return cls.from_config({k: v for k, v in base.config.items() if k != "_use_default_values"},
                                       **off, **overrides)
            _append(_row(name, label, build, field, steps))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            has_thresholding = "thresholding" in cls().config
        if has_thresholding:
            _append({"scheduler": name, "variant": "thresholding=True", "status": "not applicable",
                         "reason": THRESHOLDING_REASON})
    return rows


def format_coverage_table(rows: list[dict], steps=(50, 100)) -> str:
    """Markdown table of :func:`coverage_rows` (validated rows show numbers, the others their reason)."""
    def f(v):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2g}"

    head = ["scheduler", "config", "status", *[f"err@{n}" for n in steps], "order (observed / documented)",
            "weak order", "floor", "failed checks / reason"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["status"] != "validated":
            cells = [r["scheduler"], r["variant"] or "default", r["status"], *["" for _ in steps], "", "", "", r["reason"]]
        else:
            kind = r.get("order_kind", "order")
            order = ("consistency " + f(r["observed_order"]) if kind == "consistency"
                     else f"{f(r['observed_order'])} / {f(r['documented_order'])}")
            status = ("pass" if r["passed"] else "FAIL") + ("" if r.get("exact", True) else " (MC)")
            cells = [r["scheduler"], r["variant"] or "default", status, *[f(r["errors"].get(n)) for n in steps], order,
                     f(r["weak_order"]), f(r["floor_error"]), ", ".join(r["failures"])]
        out.append("| " + " | ".join(cells) + " |")
    n_val = sum(r["status"] == "validated" for r in rows if not r["variant"])
    n_na = sum(r["status"] == "not applicable" for r in rows if not r["variant"])
    n_gap = sum(r["status"] == "not covered" for r in rows if not r["variant"])
    out.append("")
    out.append(f"{n_val + n_na + n_gap} classes: {n_val} validated, {n_na} not applicable, {n_gap} not covered yet")
    return "\n".join(out)


# -- k-diffusion ---------------------------------------------------------------------------------
def kdiffusion_table(names=None, field=None, steps=(10, 20, 50, 100), weak_steps: int | None = 50,
                     weak_field=None) -> list[dict]:
    """Per sampler: own error at each step count on ``field`` (default critical 2-D L = 16), observed and
    documented order, floor, and (stochastic samplers) the exact weak order at ``weak_steps``, 2x, 4x on
    ``weak_field`` (default validate's first field, critical d = 1 L = 16: probing 4x the steps on 16 x 16
    exceeds the probe budget)."""
    field = GaussianField(16, 2, 0.0) if field is None else field
    weak_field = GaussianField(16, 1, 0.0) if weak_field is None else weak_field
    rows = []
    for name in (sorted(KDIFFUSION_SAMPLERS) if names is None else names):
        runner = kdiffusion_runner(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rep = validate_runner(runner, fields=[field], steps=steps, targets=("gaussian",))
        cov = rep.select("covariance")
        order = rep.select("order")
        weak = None
        if weak_steps and not runner.deterministic:
            weak = probed_weak_order_row(runner, weak_field, weak_steps)
        rows.append({
            "sampler": name,
            "noise": KDIFFUSION_SAMPLERS[name].noise,
            "errors": {r.steps: r.measured for r in cov},
            "exact": all("Monte Carlo" not in r.detail for r in cov),
            "observed_order": order[0].measured if order else math.nan,
            "documented_order": runner.order,
            "floor_error": cov[-1].data.get("floor_error") if cov and cov[-1].data else math.nan,
            "weak_order": None if weak is None else weak.measured,
            "weak_errors": None if weak is None else weak.detail,
            "passed": rep.passed,
            "failures": [r.check for r in rep.failures()],
        })
    return rows


def format_kdiffusion_table(rows: list[dict], steps=(10, 20, 50, 100)) -> str:
    """Markdown table of :func:`kdiffusion_table` rows."""
    def f(v):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2g}"

    head = ["sampler", "noise", *[str(n) for n in steps], "observed order", "documented", "weak order (exact)",
            "schedule floor", "validate"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["sampler"], r["noise"] + ("" if r["exact"] else " (MC)"), *[f(r["errors"].get(n)) for n in steps],
                 f(r["observed_order"]), f(r["documented_order"]), f(r["weak_order"]), f(r["floor_error"]),
                 "pass" if r["passed"] else "FAIL: " + ", ".join(r["failures"])]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def add_coverage_parser(sub):
    """``critdiff coverage``: every diffusers scheduler class (and config variant) validated or named n/a."""
    p = sub.add_parser("coverage", help="validate every diffusers scheduler class (docs/results/coverage.md)")
    p.add_argument("--names", nargs="+", default=None, help="scheduler classes (default: all exported; --list shows them)")
    p.add_argument("--list", action="store_true", help="print the scheduler classes and solver libraries, then exit")
    p.add_argument("--variants", action="store_true", help="also the config variants that change the maths")
    p.add_argument("--kdiffusion", action="store_true", help="print the k-diffusion table instead")
    p.add_argument("--libraries", action="store_true",
                   help="print the solver-library table (torchdiffeq, torchsde, flow_matching) and the adaptive "
                        "solvers' checks instead")
    p.add_argument("--steps", type=int, nargs=2, default=[50, 100], help="two increasing step counts")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the rows as JSON")
    return p


def check_coverage_args(args) -> tuple[int, int]:
    """The arguments of ``critdiff coverage``, checked before any work: ValueError naming the flag as typed."""
    _io.check_output_file(args.json, "--json")
    steps = tuple(args.steps)
    if any(n < 1 for n in steps) or steps[0] >= steps[1]:
        raise ValueError(f"--steps {' '.join(map(str, steps))}: two strictly increasing step counts >= 1 are needed")
    if sum(map(bool, (args.kdiffusion, args.libraries))) > 1:
        raise ValueError("--kdiffusion and --libraries each print their own table: give one of them")
    if not (args.kdiffusion or args.libraries or args.list) and importlib.util.find_spec("diffusers") is None:
        raise ValueError(f"the diffusers table needs diffusers ({INSTALL_DIFFUSERS}); --kdiffusion and --libraries "
                         "print the other tables")
    if args.names is not None:
        if args.kdiffusion or args.libraries:
            raise ValueError("--names selects diffusers scheduler classes; it cannot be combined with "
                             f"{'--kdiffusion' if args.kdiffusion else '--libraries'}")
        import diffusers  # noqa: F401 - a missing diffusers is one line (ImportError is not a usage error)

        known = set(exported_schedulers()) | set(not_applicable())
        bad = [n for n in args.names if n not in known]
        if bad:
            raise ValueError(f"--names {' '.join(bad)}: not a scheduler class of diffusers {diffusers.__version__} "
                             "(critdiff coverage --list shows them)")
    return steps


def run_coverage(args) -> int:
    """Print the coverage table; exit 1 if a class exported by diffusers is missing from the registry."""
    steps = check_coverage_args(args)  # before the run, not after minutes of it
    if args.list:
        if importlib.util.find_spec("diffusers") is None:
            print(f"diffusers scheduler classes: diffusers is not installed ({INSTALL_DIFFUSERS})")
        else:
            print("diffusers scheduler classes: " + " ".join(sorted(set(exported_schedulers()) | set(not_applicable()))))
        print(_libraries_line())
        return 0
    if args.kdiffusion:
        rows = kdiffusion_table()
        print(format_kdiffusion_table(rows))
    elif args.libraries:
        rows = _library_coverage()
    else:
        def progress(row):
            print(f"  {row['scheduler']} {row['variant'] or 'default'}: {row['status']}", file=sys.stderr, flush=True)

        rows = coverage_rows(args.names, variants=args.variants, steps=steps, progress=progress)
        print(format_coverage_table(rows, steps))
        print(_libraries_line())
        new = sorted(set(exported_schedulers()) - set(catalogued_classes()))
        if new and args.names is None:
            print(f"classes not in the catalogue (a new diffusers release?): {new}")
            return 1
    if args.json:  # strict JSON (NaN as null with a reason), written atomically
        _io.atomic_write_text(args.json, _io.strict_json(rows, default=str))
    return 0


def _libraries_line() -> str:
    """The registry's solver libraries, each installed or not (``critdiff coverage --libraries`` validates them)."""
    return "solver libraries (critdiff coverage --libraries): " + ", ".join(
        f"{lib} ({'installed' if library_available(lib) else 'not installed'})" for lib in LIBRARIES)


def _library_coverage() -> dict:
    """``--libraries``: the solver-library table and the adaptive checks, printed (a failure is a finding, as in the
    diffusers table: docs/results/libraries.md); returns what ``--json`` writes."""
    table = library_table()
    print(format_library_table(table))
    adaptive = library_adaptive_reports()
    for rep in adaptive:
        print()
        print(rep.table())
    notes = library_notes()
    for line in notes:
        print(line)
    return {"libraries": table, "adaptive": [rep.to_dict() for rep in adaptive], "not_installed": notes}
