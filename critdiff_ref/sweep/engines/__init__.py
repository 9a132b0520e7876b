"""The engines that run a sweep's jobs: ``serial`` (this process), ``local`` (a process pool, :mod:`.pool`) and
``ray`` (:mod:`.ray_engine`).

Each is a generator of ``(job, outcome, attempts)`` in completion order; ``outcome`` is what
:func:`critdiff_ref.sweep.jobs.execute` returns (the job's own errors are already caught there, and rerun
``resources.retries`` times), ``attempts`` counts every start of the job: a worker lost mid-job (killed,
out of memory, node gone) is started again up to ``resources.max_retries`` times, then recorded as an
error. A job past ``resources.timeout`` is stopped and recorded as an error. Every engine runs ``execute``
with the job's ``num_cpus`` torch threads, so all three give the same numbers.

No process outlives its sweep (:mod:`.lifetime`); choosing the engine, and the serial one: :mod:`.choice`.
The engines add no THEORY section of their own: the jobs they run cite theirs (THEORY 2-8).
"""

from .choice import ENGINES, ray_available, resolve_engine, run_serial

__all__ = ["ENGINES", "ray_available", "resolve_engine", "run_serial"]
