"""Validate diffusion TRAINING objectives against the exact optimum (THEORY 1, 2, 3, 9).

On a Gaussian field the optimum of every denoising objective is the posterior mean, known per
Fourier mode and noise level (THEORY 2, 9); a model linear per mode and tabulated in the conditioning
value represents it exactly, so a user's objective minimised over that family must land on it.
:func:`validate_objective` does that minimisation exactly (the objective is quadratic in the family's
parameters), reports per noise level and per mode where the implied denoiser is off, measures the
weighting and timestep density the objective applies, and compares them with documented ones.
Built-in cases from diffusers' training pieces live in :mod:`.cases.diffusers_objectives`, planted bugs in
:mod:`.cases.mutants`, and training speed vs L at criticality (THEORY 3) in :mod:`.slowing`.
"""

from .cases import (DIFFUSERS_CASES, Case, Mutant, correct_cases, ddpm_case, ddpm_spec, edm_case, edm_spec, edm_weighting,
                    flow_match_case, flow_match_spec, format_power_matrix, min_snr_weighting, planted_bugs, power_matrix,
                    sd3_density, sd3_weighting, uniform_density)
from .plot import plot_report
from .slowing import SlowingResult, training_steps
from .report import LevelRow, ModeRow, ObjectiveReport
from .spec import CONDITIONINGS, OUTPUTS, ModelSpec, denoiser_affine
from .validate import default_field, default_mixture, validate_objective

__all__ = [
    "validate_objective", "default_field", "default_mixture", "ObjectiveReport", "LevelRow", "ModeRow",
    "ModelSpec", "OUTPUTS", "CONDITIONINGS", "denoiser_affine",
    "Case", "DIFFUSERS_CASES", "ddpm_case", "flow_match_case", "edm_case", "ddpm_spec", "flow_match_spec", "edm_spec",
    "min_snr_weighting", "edm_weighting", "sd3_weighting", "sd3_density", "uniform_density",
    "Mutant", "correct_cases", "planted_bugs", "power_matrix", "format_power_matrix", "training_steps", "SlowingResult", "plot_report",
]
