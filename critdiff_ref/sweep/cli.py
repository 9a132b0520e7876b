"""``critdiff sweep SPEC [KEY=VALUE ...]``: run a sweep file on Ray (an embedded local cluster, or ``--address``) or
a process pool; ``critdiff sweep status OUT``: the state of every job in an output folder."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from typing import Iterator

from .. import _args

__all__ = ["add_sweep_parser", "run_sweep", "example_path"]

EXAMPLES = ("fss_binder", "fss_binder_small", "phi4_exact_dm_L32", "phi4_exact_dm_small", "validation_matrix",
            "validation_matrix_small")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill PID``, a batch scheduler's time limit) stops a sweep as Ctrl-C does: finished results
    kept, one line saying how to resume. (A sweep started in the background by a script ignores SIGINT.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt("terminated")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def example_path(name: str) -> str:
    """The path of a spec shipped in ``critdiff_ref/sweep/examples`` (``name`` with or without ``.toml``)."""
    stem = name[:-5] if name.endswith(".toml") else name
    if stem not in EXAMPLES:
        raise ValueError(f"example must be one of {EXAMPLES}, got {name!r}")
    return os.path.join(os.path.dirname(__file__), "examples", f"{stem}.toml")


def add_sweep_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sweep", help="run a sweep spec (TOML/JSON: phi4, validate, report jobs over grids) on Ray "
                                     "or a process pool; resumes, keeps failures, writes a merged table; "
                                     "'critdiff sweep status OUT' shows what is done")
    p.add_argument("spec", help="the spec file (.toml or .json), or example:NAME for a shipped one "
                                f"({', '.join(EXAMPLES)}); or the word status, then the output folder")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="set a parameter or grid axis in every [[jobs]] entry that has it (kappa=0.27, L=[8,16], "
                        "resources.num_cpus=2); with status: the output folder")
    p.add_argument("--out", default=None, help="output folder (default: sweep-<name>)")
    p.add_argument("--engine", default="auto", choices=["auto", "ray", "local", "serial"],
                   help="auto: ray when installed, else a local process pool")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster: HOST:6379 (the head's GCS port), ray://HOST:10001 (Ray client), auto")
    p.add_argument("--workers", type=_args.cli_int(1), default=None,
                   help="pool processes / CPUs of the embedded Ray cluster")
    p.add_argument("--timeout", type=_args.cli_positive_float, default=None, metavar="SECONDS",
                   help="stop a job that runs longer (overrides resources.timeout)")
    p.add_argument("--retries", type=_args.cli_int(0), default=None,
                   help="rerun a job that raised this many times (overrides resources.retries)")
    p.add_argument("--no-retry-failed", action="store_true", help="also skip jobs whose stored result is an error")
    p.add_argument("--no-plots", action="store_true", help="do not draw the sweep's plots")
    p.add_argument("--dry-run", action="store_true", help="check the spec and list the jobs still to run")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def _status(args: argparse.Namespace) -> int:
    from .status import format_status, sweep_status

    if len(args.overrides) != 1:
        raise ValueError(f"status takes one output folder: critdiff sweep status OUT, got {args.overrides or 'none'}")
    status = sweep_status(args.overrides[0])
    print(format_status(status))
    return 0 if status["done"] == len(status["jobs"]) else 1


def run_sweep(args: argparse.Namespace) -> int:
    """Run ``critdiff sweep``: exit 0 when every job of the spec has an ``ok`` result, 1 otherwise."""
    from .. import _io
    from .driver import check_devices, pending_jobs, run_spec
    from .engines import resolve_engine
    from .engines.ray_engine import probe_address
    from .spec import load_spec

    if args.spec == "status":
        return _status(args)
    path = example_path(args.spec[len("example:"):]) if args.spec.startswith("example:") else args.spec
    overrides = list(args.overrides)
    overrides += [f"resources.timeout={args.timeout!r}"] if args.timeout is not None else []
    overrides += [f"resources.retries={args.retries}"] if args.retries is not None else []
    _io.check_output_dir(args.out, "--out")
    spec = load_spec(path, overrides)
    if args.dry_run:  # every check a run makes before it starts, then the list
        out = args.out or f"sweep-{spec.name}"
        _io.check_output_dir(out, "--out")
        engine = resolve_engine(args.engine, args.address)
        check_devices(list(spec.jobs), engine)
        if args.address is not None:
            probe_address(args.address)
        todo = pending_jobs(spec, out, retry_failed=not args.no_retry_failed) if os.path.isdir(out) else spec.jobs
        print(f"{spec.name}: {len(spec.jobs)} jobs, {len(todo)} to run into {out}")
        for job in todo:
            res = job.resources
            print(f"  {job.filename}  {job.group}  {job.varying}  cpus={res.num_cpus} gpus={res.num_gpus}"
                  + (f" timeout={res.timeout:g}" if res.timeout is not None else ""))
        return 0
    with _sigterm_as_interrupt():
        summary = run_spec(spec, args.out, engine=args.engine, workers=args.workers, address=args.address,
                           retry_failed=not args.no_retry_failed, plots=not args.no_plots, progress=not args.quiet)
    print(f"{summary['jobs']} jobs: {summary['skipped']} already done, {summary['ran']} ran on {summary['engine']} "
          f"in {summary['seconds']:.1f} s, {len(summary['failed'])} failed")
    for name, err in summary["failed"]:
        print(f"  FAILED {name}: {err}", file=sys.stderr)
    from .fss import format_crossings
    from .pooled import format_pools

    if summary["crossings"]:
        print(format_crossings(summary["crossings"]))
    if summary["pools"]:
        print(format_pools(summary["pools"]))
    print(f"table: {os.path.join(summary['out'], 'table.md')}  (state of each job: critdiff sweep status "
          f"{summary['out']})")
    return 0 if not summary["failed"] else 1
