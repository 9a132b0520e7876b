"""Closed forms for linear score networks (THEORY 2-5): no training loops, no state.

- :mod:`.linear`: one- and two-layer training dynamics, step counts, stability bounds (THEORY 3, 4);
- :mod:`.local`: local score kernels, truncation errors, optimal local kernels (THEORY 5);
- :mod:`.generation`: generation with a score trained at one time (THEORY 3);
- :mod:`.facts`: a target's exact facts as plain numbers (THEORY 2, 6, 8; ``critdiff facts``).
"""

from .linear import (
    one_layer_flow,
    one_layer_gd,
    mode_timescale,
    one_layer_stability_bound,
    one_layer_steps,
    logistic_product,
    two_layer_time_to,
    two_layer_product,
    two_layer_rate,
    two_layer_stability_bound,
    two_layer_steps_estimate,
)
from .local import (
    truncated_kernel,
    local_truncation_error,
    max_local_truncation_error,
    local_normal_equations,
    optimal_local_kernel,
)
from .generation import (
    trained_score_log_gain,
    trained_score_log_gain_ou,
    generation_std_error,
)
from .facts import (
    TARGETS,
    PROCESSES,
    target_facts,
    format_facts,
)

__all__ = [
    "one_layer_flow",
    "one_layer_gd",
    "mode_timescale",
    "one_layer_stability_bound",
    "one_layer_steps",
    "logistic_product",
    "two_layer_time_to",
    "two_layer_product",
    "two_layer_rate",
    "two_layer_stability_bound",
    "two_layer_steps_estimate",
    "truncated_kernel",
    "local_truncation_error",
    "max_local_truncation_error",
    "local_normal_equations",
    "optimal_local_kernel",
    "trained_score_log_gain",
    "trained_score_log_gain_ou",
    "generation_std_error",
    "TARGETS",
    "PROCESSES",
    "target_facts",
    "format_facts",
]
