"""The validator's own power test (issue 10): every planted-bug sampler in critdiff_ref.validate.mutants FAILS
validate() and the report names the check that caught it and by how much; every correct sampler PASSES.

- CI: one critical field (d = 1, L = 8), the Gaussian checks only (exact probing for deterministic
  samplers, Monte Carlo for stochastic ones), validate()'s default step counts, rtol and order band.
- Slow (CRITDIFF_SLOW=1): validate() at its full defaults (three fields, mixture cumulants, phi^4
  moments) on every mutant, and the correct-sampler matrix repeated under several seeds.

False failures of correct samplers: the deterministic Gaussian checks have none (exact numbers:
own error 0.0003-0.087 against rtol 0.1 at N = 100, orders within 0.1 of the documented ones). The
Monte Carlo checks have the rates validate() states: covariance ``rtol + 3 SE`` (< 1e-3 each, one
sided), kappa_n and phi^4 moments ``4 SE + rtol |ref|`` (6e-5 each); the seeds are fixed in CI.
"""

from __future__ import annotations

import math
import os

import pytest

from critdiff_ref import GaussianField
from critdiff_ref.validate.mutants import CORRECT, MUTANTS
from critdiff_ref.validate.mutants import power_matrix
from critdiff_ref.validate import validate

SLOW = pytest.mark.skipif(os.environ.get("CRITDIFF_SLOW") != "1", reason="slow: set CRITDIFF_SLOW=1")
CI_SETTINGS = {"fields": (GaussianField(8, 1, 0.0),), "targets": ("gaussian",), "n_samples": 1000}

# The check kind expected to catch each mutant (the one its bug class must trip), and why.
EXPECTED = {
    "heun_previous_timestep": "order",  # an O(h) time shift: Heun drops to order 1 (< 2 - 0.5)
    "heun_dropped_second_stage": "order",  # Euler: order 1
    "heun_no_final_step": "order",  # leaves the O(h) noise Xi(t_{N-1}) in the sample: order 1
    "euler_flow_sign": "covariance",  # the flow amplifies instead of contracting: O(1) error
    "euler_vp_drift_factor_2": "covariance",  # wrong flow: O(1) error at every N
    "em_g2_factor_2": "covariance",  # the SDE no longer has the data as its end law
    "em_noise_g_not_g_sqrt_h": "covariance",  # variance O(1/h) too large
    "ddim_abar_sqrt_swapped": "covariance",  # wrong schedule: O(1) error
    "rk4_float32_time": "order",  # ~1e-6 error plateau from time rounding: RK4's h^4 not seen
    "edm_heun_corrector_wrong_sigma": "order",  # corrector at the wrong sigma: order 1
    "ddim_scheduler_prev_index": "covariance",  # runs through the schedule twice as fast: O(1) error
    # the two stages' noises lose their Brownian correlation: weak order 2 -> 1 (order 0.83, weak order 0.85)
    "dpmpp_sde_increment_wrong_interval": "order",
    "lcm_renoise_sqrt_abar": "consistency",  # exact at 1 step, O(1) law error from the first re-noise on
    "flow_euler_shift_twice": "covariance",  # velocity read at the wrong time: a different flow, O(1) error
}


# PF-ODE Euler on VE(sigma = 25), N = 100 has a real first-order bias in the two-peak cumulants (kappa_8
# -213 +- 7 against -272 over seeds 0-2); this suite found it, and the mixture check now adds the sampler's
# Richardson bias estimate |k(N) - k(N/2)| / (2^p - 1) to its tolerance, so it passes on every seed.


def _kind(check_name: str) -> str:
    return check_name.rsplit("/", 1)[-1].split("@")[0]


def _assert_caught(name: str, report) -> None:
    assert not report.passed, f"mutant {name} passed validation:\n{report.table()}"
    kinds = {_kind(r.name) for r in report.failures()}
    assert EXPECTED[name] in kinds, f"{name}: expected a failed {EXPECTED[name]} check, got {kinds}\n{report.diff()}"
    for r in report.failures():
        # the report says by how much: a measured value, its reference and tolerance, and where the tolerance comes from
        assert r.tolerance_source and math.isfinite(r.tolerance), r
        assert r.name in report.diff()


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_fails_validation(name):
    entry = MUTANTS[name]
    report = validate(entry.sampler, entry.adapter, name=name, **{**entry.options, **CI_SETTINGS})
    _assert_caught(name, report)


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_sampler_passes_validation(name):
    entry = CORRECT[name]
    report = validate(entry.sampler, entry.adapter, name=name, **{**entry.options, **CI_SETTINGS})
    assert report.passed, f"correct sampler {name} failed:\n{report.diff()}"


# Real diffusers schedulers (default configs) that must pass; the rest of diffusers is the validate suite's.
DIFFUSERS_CI = ["EulerDiscreteScheduler", "DPMSolverMultistepScheduler"]
DIFFUSERS_SLOW = ["DDIMScheduler", "HeunDiscreteScheduler"]


@pytest.mark.parametrize("cls_name", DIFFUSERS_CI)
def test_real_diffusers_scheduler_passes_validation(cls_name):
    diffusers = pytest.importorskip("diffusers")
    report = validate(getattr(diffusers, cls_name), "diffusers", **CI_SETTINGS)
    assert report.passed, f"{cls_name} failed:\n{report.diff()}"


# Found by this matrix (reported to the validate lead; adapter or scheduler still to be settled):
# HeunDiscreteScheduler at full defaults fails the order check on the d = 2, L = 8 fields, own
# errors 1.49e-3 -> 8.81e-4 (r = 0, order 0.76) and 1.56e-3 -> 1.13e-3 (r = 0.5, order 0.46) at
# N = 50 -> 100, against documented order 2; it passes on the d = 1 field.
_XFAIL_HEUN = pytest.mark.xfail(strict=False, reason="diffusers Heun: order < 1.5 at N = 50 -> 100 on d = 2 fields")


@SLOW
@pytest.mark.parametrize(
    "cls_name",
    [pytest.param(c, marks=_XFAIL_HEUN) if c == "HeunDiscreteScheduler" else c for c in DIFFUSERS_CI + DIFFUSERS_SLOW],
)
def test_real_diffusers_scheduler_passes_default_validation(cls_name):
    diffusers = pytest.importorskip("diffusers")
    report = validate(getattr(diffusers, cls_name), "diffusers")
    assert report.passed, f"{cls_name} failed:\n{report.diff()}"


@SLOW
@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_fails_default_validation(name):
    """At validate()'s full defaults (three fields, all targets)."""
    entry = MUTANTS[name]
    _assert_caught(name, validate(entry.sampler, entry.adapter, name=name, **entry.options))


@SLOW
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "name", sorted(CORRECT)
)
def test_correct_sampler_passes_default_validation_under_several_seeds(name, seed):
    entry = CORRECT[name]
    report = validate(entry.sampler, entry.adapter, name=name, seed=seed, **entry.options)
    assert report.passed, f"correct sampler {name} failed at seed {seed}:\n{report.diff()}"


@SLOW
def test_power_matrix_at_defaults_catches_every_mutant_and_passes_every_correct_sampler():
    rows = power_matrix()
    for name, caught, check, margin in rows:
        if name in MUTANTS:
            assert caught and margin > 1.0, (name, check, margin)
        else:
            assert not caught and margin <= 1.0, (name, check, margin)
