"""Proof of power (THEORY 2): planted-bug samplers that validate() must fail, their correct parents it must
pass, and the power matrix over them (``critdiff mutants``).

:mod:`.samplers` (one-line-bug samplers and references), :mod:`.schedulers` (diffusers-like schedulers with
planted bugs), :mod:`.catalogue` (the registry: adapter, description, options), :mod:`.power` (the matrix
and the command).
"""

from .catalogue import CORRECT, LIBRARY_CORRECT, LIBRARY_MUTANTS, LIBRARY_NEEDS, LIBRARY_PARENTS, MUTANTS, PARENTS, Entry
from .power import QUICK_SETTINGS, add_mutants_parser, all_correct, all_mutants, format_power_matrix, power_matrix, run_mutants
from .samplers import ref_ddim, ref_dpmpp_sde, ref_edm_heun, ref_em, ref_flow_euler_sd3, ref_pf_euler, ref_pf_heun, ref_pf_rk4
from .schedulers import DDIMLikeScheduler, DDIMLikeSchedulerPrevIndexBug, LCMLikeScheduler, LCMLikeSchedulerRenoiseBug

__all__ = [
    "CORRECT",
    "MUTANTS",
    "PARENTS",
    "LIBRARY_MUTANTS",
    "LIBRARY_CORRECT",
    "LIBRARY_PARENTS",
    "LIBRARY_NEEDS",
    "all_mutants",
    "all_correct",
    "Entry",
    "QUICK_SETTINGS",
    "add_mutants_parser",
    "format_power_matrix",
    "power_matrix",
    "run_mutants",
    "ref_ddim",
    "ref_dpmpp_sde",
    "ref_edm_heun",
    "ref_em",
    "ref_flow_euler_sd3",
    "ref_pf_euler",
    "ref_pf_heun",
    "ref_pf_rk4",
    "DDIMLikeScheduler",
    "DDIMLikeSchedulerPrevIndexBug",
    "LCMLikeScheduler",
    "LCMLikeSchedulerRenoiseBug",
]
