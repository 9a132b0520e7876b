"""The objectives a validation is run on (THEORY 9): the standard ones built from diffusers' own training pieces
(:mod:`.diffusers_objectives`), the loss weightings and timestep densities their documentation states
(:mod:`.documented`), and planted-bug objectives that must fail next to correct ones that must pass
(:mod:`.mutants`, the proof of power).
"""

from .diffusers_objectives import DIFFUSERS_CASES, Case, ddpm_case, ddpm_spec, edm_case, edm_spec, flow_match_case, flow_match_spec
from .documented import edm_weighting, min_snr_weighting, sd3_density, sd3_weighting, uniform_density
from .mutants import Mutant, correct_cases, format_power_matrix, planted_bugs, power_matrix

__all__ = [
    "Case", "DIFFUSERS_CASES", "ddpm_case", "flow_match_case", "edm_case", "ddpm_spec", "flow_match_spec", "edm_spec",
    "min_snr_weighting", "edm_weighting", "sd3_weighting", "sd3_density", "uniform_density",
    "Mutant", "correct_cases", "planted_bugs", "power_matrix", "format_power_matrix",
]
