"""Diffusion as equilibrium statistical mechanics (THEORY 7).

- :mod:`.posterior`: the posterior over clean data as a Boltzmann ensemble (free energy, magnetisation,
  susceptibility, participation ratio, fluctuation-dissipation), ``critdiff thermo``;
- :mod:`.curie_weiss`: two deltas as the Curie-Weiss magnet (fixed points, Landau landscape, exponents);
- :mod:`.condensation`: the random-energy picture of finite data sets (condensation, memorisation).
"""

from . import condensation, curie_weiss, posterior
from .posterior import (
    inverse_temperature,
    log_partition_function,
    free_energy,
    internal_energy,
    posterior_entropy,
    magnetisation,
    posterior_covariance,
    susceptibility,
    participation_ratio,
    mixture_posterior,
    posterior_sample,
    thermo_report,
    format_thermo_report,
    add_thermo_parser,
    run_thermo,
)
from .curie_weiss import (
    FixedPoint,
    coupling,
    critical_time,
    curie_weiss_fixed_points,
    curie_weiss_magnetisation,
    curie_weiss_susceptibility,
    landau_free_energy,
    two_delta_fixed_points,
)
from .condensation import (
    REM_BETA_C,
    rem_radius,
    sphere_dataset,
    rescaled_beta,
    rem_participation_ratio,
    rem_beta_c_finite,
    rem_participation_ratio_exact,
    condensation_time,
    memorisation_time,
)

__all__ = [
    "condensation",
    "curie_weiss",
    "posterior",
    "inverse_temperature",
    "log_partition_function",
    "free_energy",
    "internal_energy",
    "posterior_entropy",
    "magnetisation",
    "posterior_covariance",
    "susceptibility",
    "participation_ratio",
    "mixture_posterior",
    "posterior_sample",
    "thermo_report",
    "format_thermo_report",
    "add_thermo_parser",
    "run_thermo",
    "FixedPoint",
    "coupling",
    "critical_time",
    "curie_weiss_fixed_points",
    "curie_weiss_magnetisation",
    "curie_weiss_susceptibility",
    "landau_free_energy",
    "two_delta_fixed_points",
    "REM_BETA_C",
    "rem_radius",
    "sphere_dataset",
    "rescaled_beta",
    "rem_participation_ratio",
    "rem_beta_c_finite",
    "rem_participation_ratio_exact",
    "condensation_time",
    "memorisation_time",
]
