"""Sweeps beyond one machine: ``critdiff sweep SPEC`` on Ray or a local process pool.

A spec (TOML or JSON, :mod:`.spec`) names job kinds with grids over their parameters (:mod:`.jobs`):
``phi4`` lattice ensembles and DM-MCMC (THEORY 8), ``validate`` runs of one sampler configuration
(THEORY 2, 6, 8), ``report`` sections (THEORY 3-8) and ``call`` for any importable function.  Each job is
a pure function of its parameters and seed, stored atomically as one strict-JSON result file named by a
hash of its parameters, the package version, its source and the user's own code (:mod:`.store`), so a rerun
skips finished jobs and a failed job leaves its error behind while the sweep goes on.  Engines
(:mod:`.engines`): Ray (:mod:`.engines.ray_engine`: embedded local cluster, or ``address=`` to join one; per-job
CPUs, GPUs), a process pool (:mod:`.engines.pool`: one forkserver process per job) or serial, giving identical
result files; per job ``max_retries`` (lost worker), ``retries`` (exception) and ``timeout``, its output in
``logs/``; no worker outlives the driver (:mod:`.engines.lifetime`).  At the end: the merged table (markdown, CSV,
JSON), ``index.json`` and ``critdiff sweep status`` (:mod:`.status`), plots, and the Binder-cumulant
crossings of a finite-size-scaling sweep (:mod:`.fss`).  The user guide is ``docs/guides/sweeps.md``.

::

    from critdiff_ref.sweep import run_spec, example_path
    summary = run_spec(example_path("fss_binder_small"), "sweep-fss", engine="local")
    summary["crossings"]      # kappa_c ± err where U_L and U_2L cross

(A script that runs the ``local`` engine needs the ``if __name__ == "__main__":`` guard: the pool's
workers import the main module.)
"""

from .spec import Resources, Job, Spec, load_spec, job_id, apply_overrides
from .jobs import KINDS, check_params, execute, summarize
from .store import write_atomic, read_result, check_result
from .engines import ENGINES, ray_available
from .fss import crossing, binder_crossings
from .status import sweep_status, format_status
from .driver import run_spec, pending_jobs, SweepInterrupted
from .cli import example_path

__all__ = [
    "Resources",
    "Job",
    "Spec",
    "load_spec",
    "job_id",
    "apply_overrides",
    "KINDS",
    "check_params",
    "execute",
    "summarize",
    "write_atomic",
    "read_result",
    "check_result",
    "ENGINES",
    "ray_available",
    "crossing",
    "binder_crossings",
    "sweep_status",
    "format_status",
    "run_spec",
    "pending_jobs",
    "SweepInterrupted",
    "example_path",
]
