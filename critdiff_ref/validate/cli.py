"""``critdiff validate``: check a sampler (``module:attr`` plus an adapter) or, with no sampler, our own
reference samplers and every fitting diffusers scheduler (when diffusers is installed)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
import time
import warnings

from .. import _io
from ..targets import GaussianField
from .core import N_SAMPLES, TARGETS, ArgumentError, check_validate_args, validate_runner
from .libraries.registry import library_adaptive_reports, library_notes, library_runners
from .references import reference_samplers
from .registry import adapter_names, default_diffusers, make_runner
from .runners.execute import field_label

__all__ = ["add_validate_parser", "run_validate", "work_validate", "DEFAULT_DIFFUSERS", "default_runners", "convergence_table",
           "format_convergence_table", "check_cli_args", "FLAGS"]

# validate()'s parameters as the command line spells them (error messages name what the user typed)
FLAGS = {"steps": "--steps", "rtol": "--rtol", "n_samples": "--n-samples", "targets": "--targets"}

# the default diffusers configs as this module was imported (default_runners reads the registry live)
DEFAULT_DIFFUSERS = default_diffusers()

# the field of the one-line summary: the critical 2-D field of validate()'s defaults
SUMMARY_FIELD = GaussianField(8, 2, 0.0)


def default_runners(include_diffusers: bool = True) -> tuple[list, str]:
    """Our reference samplers, plus the registry's default diffusers configs when diffusers imports; and a note."""
    runners = reference_samplers()
    if not include_diffusers:
        return runners, "diffusers schedulers skipped (--no-diffusers)"
    try:
        import diffusers
    except ImportError:
        return runners, "diffusers is not installed: only the reference samplers ran (pip install 'critdiff-ref[diffusers]')"
    note = f"diffusers {diffusers.__version__}"
    for cls_name, pred, *config in default_diffusers():
        config = config[0] if config else {}
        cls = getattr(diffusers, cls_name, None)
        if cls is None:
            note += f"; {cls_name} not in this diffusers version"
            continue
        label = cls_name + (f"[{pred}]" if pred else "") + "".join(f"[{k}={v:g}]" for k, v in config.items())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                scheduler = cls(**config) if config else cls
            except ImportError as exc:  # DPMSolverSDEScheduler without torchsde
                note += f"; {cls_name} skipped ({exc})"
                continue
            runners.append(make_runner(scheduler, "diffusers", prediction_type=pred, name=label))
    return runners, note


def check_cli_args(args: argparse.Namespace) -> tuple[int, ...]:
    """``critdiff validate``'s arguments, checked before any work: ValueError naming the flag as typed."""
    try:
        steps, _ = check_validate_args(args.steps, args.targets, args.rtol, args.n_samples)
    except ArgumentError as err:
        flag = FLAGS[err.parameter]
        typed = getattr(args, err.parameter)
        typed = " ".join(map(str, typed)) if isinstance(typed, (list, tuple)) else typed
        raise ValueError(f"{flag} {typed}: {err}") from None
    if args.order is not None and not (math.isfinite(args.order) and args.order > 0):
        raise ValueError(f"--order {args.order}: the documented order must be a number > 0")
    if getattr(args, "libraries", False) and args.sampler is not None:
        raise ValueError(f"--libraries adds the solver-library samplers to the default list; it cannot be combined "
                         f"with a sampler ({args.sampler})")
    _io.check_output_dir(args.plots, "--plots")
    _io.check_output_file(args.json, "--json")
    return steps


def convergence_table(runners, field=None, steps=(10, 20, 50, 100), n_samples: int = 2000) -> list[dict]:
    """Per runner: own relative covariance error at each step count on ``field`` (default: critical 2-D
    L = 16), the observed order over the two largest counts, the documented order, the schedule floor
    and the last-step jump error."""
    field = GaussianField(16, 2, 0.0) if field is None else field
    rows = []
    for r in runners:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rep = validate_runner(r, fields=[field], steps=steps, targets=("gaussian",), n_samples=n_samples)
        cov = rep.select("covariance")
        order = rep.select("order")
        series = next(iter(rep.series.values()), {})
        rows.append({
            "sampler": r.name,
            "deterministic": rep.info.get("deterministic"),
            "errors": {x.steps: x.measured for x in cov},
            "noise": dict(zip(series.get("steps", []), series.get("noise", []))),
            "observed_order": order[0].measured if order else math.nan,
            "documented_order": r.order,
            "floor_error": cov[-1].data.get("floor_error") if cov and cov[-1].data else math.nan,
            "endpoint_jump_error": cov[-1].data.get("endpoint_jump_error") if cov and cov[-1].data else None,
            "passed": rep.passed,
        })
    return rows


def format_convergence_table(rows: list[dict], steps=(10, 20, 50, 100)) -> str:
    """Markdown table of :func:`convergence_table` rows."""
    def f(v):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2g}"

    head = ["sampler", *[f"err@{n}" for n in steps], "observed order", "documented", "schedule floor", "last-step jump"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        def err(n):
            e, noise = r["errors"].get(n), r.get("noise", {}).get(n, 0.0)
            # Monte Carlo: debiased estimate and its standard error (0 means "below the noise")
            return f(e) if not noise else f"{f(e)} ± {noise:.1g}"

        cells = [r["sampler"] + ("" if r["deterministic"] else " (MC)"), *[err(n) for n in steps],
                 f(r["observed_order"]), f(r["documented_order"]), f(r["floor_error"]), f(r["endpoint_jump_error"])]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def add_validate_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("validate", help="validate a diffusion sampler against exact answers (default: ours + diffusers)")
    p.add_argument("sampler", nargs="?", default=None, help="the sampler as pkg.module:attr (default: reference samplers)")
    p.add_argument("--adapter", default="score", choices=list(adapter_names()),
                   help="how the sampler is called (docs/guides/validate.md)")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50, 100], help="increasing step counts")
    p.add_argument("--rtol", type=float, default=0.1, help="accuracy target at the largest step count")
    p.add_argument("--order", type=float, default=None, help="the sampler's documented order")
    p.add_argument("--prediction-type", default=None, choices=["epsilon", "v_prediction", "sample"],
                   help="diffusers: the model output the scheduler expects (default: the scheduler's config)")
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS),
                   help="which exact checks to run")
    p.add_argument("--n-samples", type=int, default=N_SAMPLES, help="Monte Carlo samples for stochastic samplers (>= 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--no-diffusers", action="store_true", help="with no sampler: skip the diffusers schedulers")
    p.add_argument("--libraries", action="store_true",
                   help="with no sampler: also the torchdiffeq / torchsde / flow_matching samplers and the adaptive "
                        "solvers' checks (docs/guides/libraries.md; each library when installed)")
    p.add_argument("--strict", action="store_true",
                   help="with no sampler: a failing diffusers scheduler or solver-library sampler fails the run (by "
                        "default their failures are documented findings that do not count)")
    p.add_argument("--table", action="store_true", help="print the error-vs-steps table on the critical 2-D field (L=16)")
    p.add_argument("--verbose", "-v", action="store_true", help="print every check of every sampler")
    p.add_argument("--json", metavar="FILE", default=None,
                   help="write all reports (with --table: the table's rows) as strict JSON, atomically")
    p.add_argument("--plots", metavar="DIR", default=None, help="write plots into this folder (needs matplotlib)")
    return p


def _summary_line(rep) -> str:
    label = field_label(SUMMARY_FIELD)
    crit = [r for r in rep.results if r.target == label and r.kind == "covariance" and r.passed is not None]
    order = [r for r in rep.results if r.target == label and r.kind == "order"]
    err = f"{crit[0].measured:.2g}" if crit and not math.isnan(crit[0].measured) else "-"
    series = rep.series.get(label, {})
    if series.get("noise") and series["noise"][-1]:
        err += f"±{series['noise'][-1]:.1g}"
    o = order[0] if order else None
    otxt = "-" if o is None or math.isnan(o.measured) else f"{o.measured:.2f} (doc {o.reference:g})"
    failures = rep.failures()
    fails = ", ".join(r.name for r in failures)
    if failures and failures[0].detail:  # the first reason, on the line (all of them with -v)
        reason = " ".join(failures[0].detail.split())
        fails += f" ({reason[:117] + '...' if len(reason) > 120 else reason})"
    return (f"{'PASS' if rep.passed else 'FAIL'}  {rep.sampler:<42} {rep.adapter:<9} err {err:<13} order {otxt:<16}"
            + (f"  failed: {fails}" if fails else ""))


@contextlib.contextmanager
def _diffusers_log_once():
    """Collect diffusers' logged warnings (one scheduler config warns at every construction) and print
    each distinct message once, with its count, when the block ends."""
    seen: dict[str, int] = {}

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = " ".join(record.getMessage().split())
            seen[msg] = seen.get(msg, 0) + 1

    log = logging.getLogger("diffusers")
    saved = (log.handlers[:], log.propagate, log.level)
    log.handlers[:] = [Collect(logging.WARNING)]
    log.propagate = False
    log.setLevel(logging.WARNING)
    try:
        yield seen
    finally:
        log.handlers[:], log.propagate = saved[0], saved[1]
        log.setLevel(saved[2])
        for msg, n in seen.items():
            print(f"diffusers warned{f' ({n}x)' if n > 1 else ''}: {msg}", file=sys.stderr)


def work_validate(args: argparse.Namespace) -> int:
    """Elements of the largest per-step tensor: Monte Carlo batches on 64-site fields (a few 10^5: one thread)."""
    return 64 * args.n_samples


def run_validate(args: argparse.Namespace) -> int:
    t0 = time.time()
    steps = check_cli_args(args)
    if args.sampler is None:
        runners, note = default_runners(include_diffusers=not args.no_diffusers)
        n_ref = sum(r.adapter != "diffusers" for r in runners)  # ours come first; only they count by default
        if getattr(args, "libraries", False):  # third-party like diffusers: findings (docs/results/libraries.md)
            runners[n_ref:n_ref] = [r for _, r in library_runners()]
            note = "\n".join(n for n in [note, *library_notes()] if n)
    else:
        runners = [make_runner(args.sampler, args.adapter, prediction_type=args.prediction_type, order=args.order)]
        note, n_ref = "", 1
    if args.table:
        with _diffusers_log_once():
            rows = convergence_table(runners, steps=steps, n_samples=args.n_samples)
        print(format_convergence_table(rows, steps))
        if note:
            print(f"\n{note}")
        if args.json:
            _io.atomic_write_text(args.json, _io.strict_json({"steps": list(steps), "rows": rows, "note": note}))
        return 0
    reports = []
    with _diffusers_log_once():
        for r in runners:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rep = validate_runner(r, steps=steps, rtol=args.rtol, targets=tuple(args.targets),
                                      n_samples=args.n_samples, seed=args.seed)
            reports.append(rep)
            print(rep.table() if args.verbose else _summary_line(rep), flush=True)
        if getattr(args, "libraries", False):  # adaptive solvers: error vs tolerance, NFE vs tolerance and L
            for rep in library_adaptive_reports():
                reports.append(rep)
                print(rep.table() if args.verbose else _summary_line(rep), flush=True)
    if note:
        print(note)
    print(f"{sum(r.passed for r in reports)}/{len(reports)} samplers passed in {time.time() - t0:.0f} s "
          "(err: own relative covariance error at the largest step count on the critical 2-D field)")
    uncounted = [r.sampler for r in reports[n_ref:] if not r.passed] if args.sampler is None else []
    if uncounted and not args.strict:
        print(f"{len(uncounted)} third-party sampler(s) failed ({', '.join(uncounted)}): documented findings about "
              "those samplers (docs/guides/diffusers.md, docs/results/libraries.md), they do not count towards the exit "
              "code; --strict counts them")
    if args.json:
        _io.atomic_write_text(args.json, _io.strict_json([r.to_dict() for r in reports], default=str))
    if args.plots:
        for r in reports:
            files, msg = r.plot(os.path.join(args.plots, r.sampler.replace("/", "_").replace("[", "_").replace("]", "")))
            if msg:
                print(msg, file=sys.stderr)
                break
    counted = reports if args.strict or args.sampler is not None else reports[:n_ref]
    return 0 if all(r.passed for r in counted) else 1
