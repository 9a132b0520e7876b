"""What is measured, with what tolerance (THEORY 2, 6, 8): every check returns a :class:`CheckResult`
with structured fields (target, kind, step count, field) and a display name built from them.

:mod:`.covariance` (Gaussian fields: own / total covariance error, linearity, schedule floor),
:mod:`.probes` (exact covariances by basis-state and noise probing), :mod:`.order` (observed and weak
order), :mod:`.consistency` (consistency samplers: exact at every step count), :mod:`.nongaussian`
(two-peak cumulants, 0-D and lattice phi^4).
"""

from .consistency import ROUNDING_PER_STEP, consistency_check, consistency_plan
from .covariance import (
    RTOL_SOURCE,
    covariance_metrics,
    endpoint_jump_error,
    floor_variance,
    fourier_matrix,
    gaussian_checks,
    mc_mode_variance,
)
from .nongaussian import mixture_check, phi4_check, phi4_lattice_check
from .order import WEAK_ORDER_BAND, observed_order, order_check, probed_weak_order_row, weak_order_row
from .probes import MAX_NOISE_PROBE_ELEMENTS, probe_covariance, probe_noise_covariance
from .result import CheckResult, check_label, check_result, display_name

__all__ = [
    "ROUNDING_PER_STEP",
    "consistency_check",
    "consistency_plan",
    "RTOL_SOURCE",
    "covariance_metrics",
    "endpoint_jump_error",
    "floor_variance",
    "fourier_matrix",
    "gaussian_checks",
    "mc_mode_variance",
    "mixture_check",
    "phi4_check",
    "phi4_lattice_check",
    "WEAK_ORDER_BAND",
    "observed_order",
    "order_check",
    "probed_weak_order_row",
    "weak_order_row",
    "MAX_NOISE_PROBE_ELEMENTS",
    "probe_covariance",
    "probe_noise_covariance",
    "CheckResult",
    "check_label",
    "check_result",
    "display_name",
]
