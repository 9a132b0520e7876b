"""Consistency and distilled samplers on the exact consistency function (THEORY 1 "Consistency functions",
THEORY 2; critdiff_ref.validate.runners.diffusers.consistency).

Claims checked: with the exact consistency function (the PF-ODE flow map, per mode sqrt(C_e / C_s)) fed
through each scheduler's own parametrisation, diffusers' LCM, TCD (every gamma), SCM and
CMStochasticIterative give the exact law of the ideal consistency sampler at EVERY step count -- one step
already the target law up to the start floor -- so their own error is at float32 rounding and flat in N;
the per-mode variances agree with a closed form written here from the papers' definitions; a planted
re-noising bug, and a real config that changes the re-noise variance, fail the check.
"""

from __future__ import annotations

import math

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from critdiff_ref import GaussianField  # noqa: E402
from critdiff_ref.validate import make_runner, validate, validate_runner  # noqa: E402
from critdiff_ref.validate.checks import floor_variance  # noqa: E402
from critdiff_ref.validate.checks.consistency import ROUNDING_PER_STEP  # noqa: E402
from critdiff_ref.validate.registry import CONSISTENCY_SCHEDULERS, consistency_kind  # noqa: E402
from critdiff_ref.validate.runners.diffusers.consistency import exact_law  # noqa: E402
from critdiff_ref.validate.mutants import MUTANTS  # noqa: E402
from critdiff_ref.validate.mutants.schedulers import LCMLikeScheduler  # noqa: E402
from critdiff_ref.validate.checks.probes import probe_covariance, probe_noise_covariance  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")
FIELD = GaussianField(8, 1, 0.0)  # critical d = 1: the zero mode removed, c0 from 0.25 to 1.7
MASSIVE = GaussianField(4, 2, 0.5)  # d = 2 with the zero mode kept
EPS32 = torch.finfo(torch.float32).eps

CASES = [
    ("LCMScheduler", "epsilon", {}),
    ("LCMScheduler", "v_prediction", {}),
    ("LCMScheduler", "sample", {}),
    ("TCDScheduler", "epsilon", {"eta": 0.0}),
    ("TCDScheduler", "epsilon", {"eta": 0.3}),
    ("TCDScheduler", "v_prediction", {"eta": 1.0}),
    ("SCMScheduler", None, {}),
    ("CMStochasticIterativeScheduler", None, {}),
]


def _ids(case) -> str:
    name, pred, kw = case
    return "-".join([name.replace("Scheduler", ""), *([pred] if pred else []), *(f"{k}={v}" for k, v in kw.items())])


# -- closed forms, written from the papers' definitions (independent of validate.consistency) -------------
def _closed_form(name: str, steps: int, c0: torch.Tensor, eta: float = 0.3) -> torch.Tensor:
    """Per-mode end variance of the ideal sampler (exact map, exact re-noise) on the scheduler's own table."""
    sched = getattr(diffusers, name)()
    if name == "SCMScheduler":
        sched.set_timesteps(steps, **({} if steps == 2 else {"intermediate_timesteps": None}))
    else:
        sched.set_timesteps(steps)
    m = c0 > 0
    if name in ("LCMScheduler", "TCDScheduler"):
        abar = sched.alphas_cumprod.double()
        ts = [int(t) for t in sched.timesteps]
        v = torch.ones_like(c0)  # x_T = z, unit variance
        for i, t in enumerate(ts):
            prev = ts[i + 1] if i + 1 < len(ts) else 0
            # LCM lands on the data (abar = 1); TCD on s = floor((1 - gamma) t_prev), timestep 0 at the end
            a_e = 1.0 if name == "LCMScheduler" else float(abar[math.floor((1 - eta) * prev)])
            v = v * (a_e * c0 + 1 - a_e) / (abar[t] * c0 + 1 - abar[t])
            if i + 1 < len(ts):
                r = float(abar[prev]) / a_e  # VP forward kernel from the landing level to t_prev
                v = r * v + 1 - r
        return torch.where(m, v, torch.zeros_like(v))
    if name == "SCMScheduler":
        sd = float(sched.config.sigma_data)
        ts = [float(t) for t in sched.timesteps]
        v = torch.full_like(c0, sd * sd)  # the Sana-Sprint pipeline starts from sigma_data z
        for i in range(len(ts) - 1):
            s = ts[i]
            v = v * c0 / (math.cos(s) ** 2 * c0 + math.sin(s) ** 2)  # y-units ratio: C_0 / C_s
            if i + 2 < len(ts):
                t = ts[i + 1]
                v = math.cos(t) ** 2 * v + sd * sd * math.sin(t) ** 2
        return torch.where(m, v / (sd * sd), torch.zeros_like(v))  # output x0 / sigma_data
    # CMStochasticIterative: VE, map to sigma_min, re-noise with sqrt(sigma'^2 - sigma_min^2)
    sig = [float(s) for s in sched.sigmas]
    s_min = float(sched.config.sigma_min)
    v = torch.full_like(c0, float(sched.init_noise_sigma) ** 2)
    for i in range(len(sig) - 1):
        v = v * (c0 + s_min**2) / (c0 + sig[i] ** 2)
        if i + 2 < len(sig):
            v = v + sig[i + 1] ** 2 - s_min**2
    return torch.where(m, v, torch.zeros_like(v))


def _mode_variances(f: GaussianField, Sigma: torch.Tensor) -> torch.Tensor:
    """diag(F Sigma F^H) with F the unitary lattice FFT: per-mode variances of a real-space covariance."""
    dims = tuple(range(1, f.d + 1))
    F = torch.fft.fftn(torch.eye(f.V, dtype=torch.complex128).reshape(f.V, *f.shape), dim=dims, norm="ortho")
    F = F.reshape(f.V, f.V).T
    return (F @ Sigma.to(torch.complex128) @ F.conj().T).diagonal().real.reshape(f.shape)


# -- every scheduler passes -------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_scheduler_is_exact_at_every_step_count(case):
    """Own error at rounding at N = 1, 2, 4, 8 (exact by noise probing): one step has the target law up to
    the start floor and no further step drifts from it."""
    name, pred, kw = case
    report = validate(getattr(diffusers, name), "diffusers", prediction_type=pred, sampler_kwargs=kw,
                      fields=(FIELD,), steps=(2, 4, 8))
    assert report.passed, report.diff()
    row = report["gauss[d=1,L=8,r=0]/consistency"]
    assert row.passed and row.data["steps"] == [1, 2, 4, 8]
    for n in (1, 2, 4, 8):
        cov = report[f"gauss[d=1,L=8,r=0]/covariance@{n}"]
        # deterministic TCD (gamma = 0) is probed in its start only; every other run in start and noise
        assert report.info["deterministic"] or "exact by noise probing" in cov.detail, cov.detail
        # the rounding bound of validate.consistency: 1e2 N eps(float32), the schedulers' float32 tables
        assert cov.measured <= ROUNDING_PER_STEP * n, (n, cov.measured)


@pytest.mark.parametrize("name", sorted(CONSISTENCY_SCHEDULERS))
@pytest.mark.parametrize("steps", [1, 3, 8])
def test_per_mode_variances_match_the_closed_form(name, steps):
    """Probed per-mode variances and the runner's exact floor equal the closed form of the ideal sampler."""
    f = MASSIVE
    runner = make_runner(getattr(diffusers, name), "diffusers")
    expected = _closed_form(name, steps, f.c0())
    # the floor the checks compare with is the same closed form, up to float64 rounding of ~5 flops/step
    floor = floor_variance(runner, f, steps)
    torch.testing.assert_close(floor, expected, rtol=1e3 * steps * torch.finfo(torch.float64).eps, atol=0.0)
    probed = (probe_covariance(runner, f, steps)[0] if runner.deterministic
              else probe_noise_covariance(runner, f, steps)[0])
    measured = _mode_variances(f, probed)
    # the sampler itself runs on float32 tables: the rounding bound 1e2 N eps(float32) per mode
    torch.testing.assert_close(measured, expected, rtol=ROUNDING_PER_STEP * steps, atol=0.0)


def test_one_step_law_is_the_target_up_to_the_start_floor():
    """N = 1: LCM maps x_T ~ N(0, 1) to N(0, c0 / C_T) (start floor, abar_T c0 + 1 - abar_T = C_T), CM maps
    N(0, sigma_max^2) to N(0, (c0 + sigma_min^2) sigma_max^2 / (c0 + sigma_max^2))."""
    c0 = FIELD.c0()
    lcm = diffusers.LCMScheduler()
    abar_T = float(lcm.alphas_cumprod[999].double())
    torch.testing.assert_close(_closed_form("LCMScheduler", 1, c0), c0 / (abar_T * c0 + 1 - abar_T))
    cm = diffusers.CMStochasticIterativeScheduler()
    s_max, s_min = cm.config.sigma_max, cm.config.sigma_min
    torch.testing.assert_close(_closed_form("CMStochasticIterativeScheduler", 1, c0),
                               (c0 + s_min**2) * s_max**2 / (c0 + s_max**2) * FIELD.mode_mask())


def test_exact_law_is_the_flow_of_section_2_for_one_step():
    """exact_law's one-step value is THEORY 2's PF-ODE limit v_T C_e / C_s (here VE: sigma 3 -> 0.5)."""
    from critdiff_ref.validate.runners.diffusers.consistency import Level

    c0 = FIELD.c0()
    v = exact_law(c0, [Level(1.0, 3.0, 1.0, 0.5, None, None)], 2.0)
    torch.testing.assert_close(v, torch.where(c0 > 0, 2.0 * (c0 + 0.25) / (c0 + 9.0), torch.zeros_like(c0)))


# -- planted bugs and real configs that break the law ----------------------------------------------------------
def test_planted_renoise_bug_is_caught_and_its_parent_passes():
    """LCM-like re-noising with variance 1 - sqrt(abar'): exact at one step (nothing re-noised), O(1) wrong after."""
    kw = {"fields": (FIELD,), "steps": (2, 4, 8)}
    bad = validate(MUTANTS["lcm_renoise_sqrt_abar"].sampler, "diffusers", **kw)
    row = bad["gauss[d=1,L=8,r=0]/consistency"]
    assert row.passed is False
    err = dict(zip(row.data["steps"], row.data["own_error"]))
    # one step: float64 LCM-like arithmetic, 1e3 eps(float64); two and more: 1 - sqrt(abar') vs 1 - abar' is O(1)
    assert err[1] < 1e3 * torch.finfo(torch.float64).eps and min(err[2], err[4], err[8]) > 0.1, err
    good = validate(LCMLikeScheduler, "diffusers", **kw)
    assert good.passed, good.diff()


def test_cm_s_noise_changes_the_law_and_is_caught():
    """s_noise != 1 (a churn knob of CMStochasticIterative) re-noises with s_noise^2 (sigma'^2 - sigma_min^2):
    not law-preserving, so the check fails from two steps on and passes at one step (no re-noise)."""
    report = validate(diffusers.CMStochasticIterativeScheduler(s_noise=1.1, clip_denoised=False), "diffusers",
                      fields=(FIELD,), steps=(2, 4))
    row = report["gauss[d=1,L=8,r=0]/consistency"]
    err = dict(zip(row.data["steps"], row.data["own_error"]))
    # 1.21 x the re-noise variance: a relative law error of order 0.1 against a 2.4e-5 rounding bound
    assert row.passed is False and err[1] < ROUNDING_PER_STEP and err[2] > 1e-2, err


def test_cm_default_clip_denoised_is_nonlinear():
    """Finding: CMStochasticIterative's default clip_denoised=True clamps the denoised sample to [-1, 1]; an
    instance with its default config is not law-preserving (the class is validated with the clamp off)."""
    report = validate(diffusers.CMStochasticIterativeScheduler(), "diffusers", fields=(FIELD,), steps=(2,))
    assert report["gauss[d=1,L=8,r=0]/consistency"].passed is False
    assert validate(diffusers.CMStochasticIterativeScheduler, "diffusers", fields=(FIELD,), steps=(2,)).passed


def test_lcm_and_tcd_ignore_timestep_spacing_and_steps_offset():
    """Finding: LCM and TCD accept timestep_spacing and steps_offset in their config and never read them."""
    for name in ("LCMScheduler", "TCDScheduler"):
        base = getattr(diffusers, name)()
        base.set_timesteps(4)
        for cfg in ({"timestep_spacing": "trailing"}, {"timestep_spacing": "linspace"}, {"steps_offset": 1}):
            other = getattr(diffusers, name)(**cfg)
            other.set_timesteps(4)
            assert torch.equal(other.timesteps, base.timesteps), (name, cfg)


def test_tcd_ends_at_timestep_0_not_at_the_data():
    """Finding: TCD's last step lands on timestep 0 (abar_0 = 1 - beta_0, sigma_0 = 0.029), so its exact end law
    is abar_0 c0 + 1 - abar_0 plus the start memory, not c0: the schedule floor is that offset, not 0."""
    runner = make_runner(diffusers.TCDScheduler, "diffusers", sampler_kwargs={"eta": 1.0})
    abar0 = float(diffusers.TCDScheduler().alphas_cumprod[0].double())
    assert runner.schedule(FIELD, 4).t_min == pytest.approx((1 - abar0) / abar0, rel=1e-12)  # sigma_0^2
    report = validate_runner(runner, fields=(FIELD,), steps=(4,), targets=("gaussian",))
    c0 = FIELD.c0()
    closed = _closed_form("TCDScheduler", 4, c0, eta=1.0)
    floor = report["gauss[d=1,L=8,r=0]/schedule_floor@4"].measured
    # the reported floor is the closed form's error against c0 (float64 rounding)
    assert floor == pytest.approx(float((closed - c0).norm() / c0.norm()), rel=1e-9)
    # and it is the end offset, not rounding: the offset alone is 5.8e-4 on this field; the start memory
    # (the product of abar over the re-noise levels) adds a few percent, far inside a factor 2
    offset = float((((abar0 * c0 + 1 - abar0) * FIELD.mode_mask()) - c0).norm() / c0.norm())
    assert 0.5 * offset < floor < 2.0 * offset, (floor, offset)


# -- plumbing ----------------------------------------------------------------------------------------------
def test_steps_beyond_the_scheduler_limit_and_non_gaussian_targets_are_reported():
    report = validate(diffusers.LCMScheduler, "diffusers", fields=(FIELD,), steps=(8, 100))
    notes = {r.name: r for r in report.results if r.name.startswith("consistency/")}
    assert "100" in notes["consistency/steps"].detail and notes["consistency/steps"].passed is None
    assert notes["consistency/non_gaussian"].passed is None
    assert report.info["steps"] == [1, 8] and report.passed, report.diff()


def test_monte_carlo_fallback_when_the_noise_cannot_be_supplied():
    """Without run_noise the covariance is estimated by Monte Carlo; the check then allows 3 standard errors."""
    runner = make_runner(diffusers.LCMScheduler, "diffusers")
    runner.run_noise = None
    report = validate_runner(runner, fields=(GaussianField(4, 1, 0.5),), steps=(2, 4), targets=("gaussian",),
                             n_samples=4000, seed=3)
    row = report["gauss[d=1,L=4,r=0.5]/consistency"]
    # MC noise of a per-mode variance with 4000 samples is ~ sqrt(2/4000) ~ 2%: the tolerance is 3 SE
    assert "exact by noise probing" not in report["gauss[d=1,L=4,r=0.5]/covariance@4"].detail
    assert row.passed and max(row.data["tolerance"]) > 1e-3, row


def test_dispatch_and_bad_arguments():
    assert {consistency_kind(getattr(diffusers, n)) for n in CONSISTENCY_SCHEDULERS} == {"lcm", "tcd", "trigflow", "cm"}
    assert consistency_kind(LCMLikeScheduler) == "lcm"
    assert consistency_kind(diffusers.FlowMatchLCMScheduler) is None  # flow matching, not handled here
    assert consistency_kind(diffusers.DDIMScheduler) is None
    with pytest.raises(ValueError, match="eta"):
        make_runner(diffusers.TCDScheduler, "diffusers", sampler_kwargs={"eta": 1.5})
    with pytest.raises(ValueError, match="prediction_type"):
        make_runner(diffusers.SCMScheduler, "diffusers", prediction_type="epsilon")
    with pytest.raises(TypeError, match="Gaussian"):
        make_runner(diffusers.LCMScheduler, "diffusers")(object(), 2, torch.zeros(3, 1))
