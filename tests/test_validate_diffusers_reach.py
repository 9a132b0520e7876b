"""The diffusers classes with their own calling contract, each on its exact model (THEORY 1, 2): the step arguments
a pipeline supplies (UnCLIP, CogVideoXDPM), a data-ward velocity (MiniMaxH3), the exact two-time flow map
(FlowMapEuler), a continuous VP time read from the scheduler (DDPMWuerstchen, IPNDM) and the predictor-corrector
loop (ScoreSdeVe)."""

from __future__ import annotations

import math

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from critdiff_ref import GaussianField  # noqa: E402
from critdiff_ref.validate import validate  # noqa: E402
from critdiff_ref.validate.registry import diffusers_runner, known_gaps, not_applicable  # noqa: E402
from critdiff_ref.validate.runners.diffusers.flow import velocity_sign  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")
FIELD = GaussianField(8, 1, 0.0)
LABEL = "gauss[d=1,L=8,r=0]"
EPS32 = torch.finfo(torch.float32).eps


def _run(scheduler, steps, **kw):
    return validate(scheduler, "diffusers", fields=[FIELD], steps=steps, targets=("gaussian",), **kw)


def _errors(report, steps):
    return [report[f"{LABEL}/covariance@{n}"].measured for n in steps]


def test_at_most_two_classes_are_not_covered():
    """Every applicable class has a runner: no known gap is left (the goal is at most 2 of 49)."""
    assert len(known_gaps()) <= 2, known_gaps()
    assert {"HeliosScheduler", "HeliosDMDScheduler", "PiflowScheduler"} <= set(not_applicable())


def test_unclip_converges_with_its_pipelines_prev_timestep():
    """UnCLIP's step goes to ``prev_timestep`` (default t - 1): the loop passes the next timestep as its pipeline does,
    and the ancestral sampler converges at weak order ~1 (observed 0.92); without it (the planted bug: prev_timestep
    None) each step moves by one training timestep only and the error stays ~0.8."""
    steps = (50, 100)
    right = _run(diffusers.UnCLIPScheduler, steps)
    assert right.passed, right.diff()
    # order 1 halves the error per doubling: observed ratio 1.9 (0.086 -> 0.045); 1.5 leaves room for pre-asymptotics
    e50, e100 = _errors(right, steps)
    assert e50 > 1.5 * e100
    planted = _run(diffusers.UnCLIPScheduler, steps, sampler_kwargs={"prev_timestep": None})
    assert not planted.passed and _errors(planted, steps)[-1] > 0.5


def test_cogvideox_dpm_runs_its_pipelines_multistep_and_converges():
    """CogVideoXDPM's step takes the previous x0 prediction and timestep_back from the pipeline: supplied, the
    stochastic solver is exactly noise-probed and converges (observed 0.265, 0.104 at 50, 100 steps: order 1.35)."""
    steps = (50, 100)
    rep = _run(diffusers.CogVideoXDPMScheduler, steps)
    cov = rep[f"{LABEL}/covariance@100"]
    assert "exact by noise probing" in cov.detail
    e50, e100 = _errors(rep, steps)
    assert e50 > 2.0 * e100  # order >= 1: observed ratio 2.55


def test_minimax_h3_velocity_is_data_ward_and_converges():
    """MiniMaxH3's model predicts a data-ward velocity (x0 = x + sigma out), read from its step: sign -1 (FlowMatch
    Euler +1); with it the Euler sampler has its documented order 1."""
    sched = diffusers.MiniMaxH3Scheduler()
    assert velocity_sign(sched, {}) == -1.0
    assert velocity_sign(diffusers.FlowMatchEulerDiscreteScheduler(), {}) == 1.0
    rep = _run(diffusers.MiniMaxH3Scheduler, (50, 100))
    assert rep.passed, rep.diff()
    assert abs(rep[f"{LABEL}/order"].measured - 1.0) < 0.2  # observed 0.94: Euler's first order


def test_flow_map_euler_is_exact_at_every_step_count():
    """On the exact two-time flow map every FlowMapEuler step lands on the exact flow: own error at rounding for every
    N, one step included (the consistency check)."""
    rep = _run(diffusers.FlowMapEulerDiscreteScheduler, (4, 16))
    assert rep.passed, rep.diff()
    for n in (1, 4, 16):
        # float64 flow-map gains, float64 sigmas: 1e3 * eps(float64) per step is generous
        assert rep[f"{LABEL}/covariance@{n}"].measured < 1e3 * n * torch.finfo(torch.float64).eps


def test_wuerstchen_ends_at_its_clamped_alpha_cumprod():
    """DDPMWuerstchen clamps abar to 0.9999 at t = 0: the reference ends there (read through add_noise), and the
    ancestral sampler passes with weak order ~1."""
    sch = diffusers_runner(diffusers.DDPMWuerstchenScheduler).schedule(FIELD, 10)
    # the scheduler's float32 cosine: sigma^2 = (1 - abar) / abar with abar = 0.9999 to float32 rounding
    assert sch.t_min == pytest.approx(1e-4 / 0.9999, rel=1e-3)
    assert sch.out_scale == pytest.approx(math.sqrt(0.9999), rel=10 * EPS32)
    rep = _run(diffusers.DDPMWuerstchenScheduler, (50, 100))
    assert rep.passed, rep.diff()


def test_ipndm_starts_exactly_and_converges_at_high_order():
    """IPNDM starts at alpha = 0 (pure noise, the exact marginal: zero schedule floor) and its 4-step Adams-Bashforth
    converges fast: observed 1.2e-3, 1.4e-4 at 50, 100 steps (order 3.1, documented 4)."""
    steps = (50, 100)
    rep = _run(diffusers.IPNDMScheduler, steps)
    assert rep[f"{LABEL}/schedule_floor@100"].measured < 1e-12  # exact start and end: the floor is c0 itself
    e50, e100 = _errors(rep, steps)
    assert e50 > 2.0**2.5 * e100  # order > 2.5: well above a second-order method (observed 3.1)


def test_score_sde_ve_predictor_is_exactly_probed_and_first_order():
    """ScoreSdeVe without corrector is Euler-Maruyama on the VE reverse SDE: exact by noise probing, weak order ~1.
    With its default corrector the norm-set Langevin step is non-linear: measured by Monte Carlo."""
    predictor = diffusers.ScoreSdeVeScheduler(correct_steps=0)
    rep = _run(predictor, (50, 100))
    assert "exact by noise probing" in rep[f"{LABEL}/covariance@100"].detail
    assert rep[f"{LABEL}/weak_order"].measured == pytest.approx(1.0, abs=0.3)  # the documented band (order.py)
    assert diffusers_runner(diffusers.ScoreSdeVeScheduler).run_noise is None
