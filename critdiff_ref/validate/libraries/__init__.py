"""Samplers built on general solver libraries, checked by the validator (THEORY 1, 2): torchdiffeq ``odeint`` on
the probability-flow ODE, torchsde ``sdeint`` on the reverse SDE (with an exactly probed Brownian motion), and
flow_matching's ``ODESolver`` on its affine paths; adaptive solvers' error vs tolerance and function evaluations;
planted bugs (:mod:`.mutants`; their catalogue is the power matrix's, :mod:`critdiff_ref.validate.mutants`).  Every library is optional: the modules import it only when a sampler runs.
"""

from .adaptive import AdaptiveProbe, adaptive_checks, adaptive_probe, probe_starts
from .flow_matching_ode import PATH_SCHEDULERS, flow_matching_sample, path_scheduler, path_velocity
from .odeint import ADAPTIVE_ERROR_ORDERS, FIXED_STEP_ORDERS, odeint_probability_flow, pf_ode_drift
from ..registry import LIBRARIES
from .registry import (
    format_library_table,
    library_adaptive_reports,
    library_adaptive_rows,
    library_available,
    library_notes,
    library_runners,
    library_table,
)
from .sdeint import SDE_METHODS, DiagonalReverseSDE, ProbedBrownian, ReverseSDE, sdeint_reverse_sde

__all__ = [
    "odeint_probability_flow",
    "pf_ode_drift",
    "FIXED_STEP_ORDERS",
    "ADAPTIVE_ERROR_ORDERS",
    "sdeint_reverse_sde",
    "SDE_METHODS",
    "ProbedBrownian",
    "ReverseSDE",
    "DiagonalReverseSDE",
    "flow_matching_sample",
    "path_velocity",
    "path_scheduler",
    "PATH_SCHEDULERS",
    "adaptive_probe",
    "adaptive_checks",
    "probe_starts",
    "AdaptiveProbe",
    "library_runners",
    "library_adaptive_rows",
    "library_adaptive_reports",
    "library_notes",
    "library_available",
    "library_table",
    "format_library_table",
    "LIBRARIES",
]
