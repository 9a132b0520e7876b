"""Samplers built on torchdiffeq, torchsde and flow_matching, checked by the validator
(critdiff_ref.validate.libraries; THEORY 1, 2).  Each test skips without its library.

Exact numbers: deterministic samplers by basis-state probing, stochastic ones by Brownian-motion probing,
adaptive solvers by an orthonormal white-noise batch (no sampling noise anywhere except the Monte Carlo
cross-checks, which say so)."""

from __future__ import annotations

import math

import pytest
import torch

from critdiff_ref import GaussianField, VE, exact_score, lattice
from critdiff_ref.validate import validate
from critdiff_ref.validate.mutants import LIBRARY_MUTANTS
from critdiff_ref.validate.libraries import (
    FIXED_STEP_ORDERS,
    SDE_METHODS,
    adaptive_checks,
    flow_matching_sample,
    library_runners,
    odeint_probability_flow,
    sdeint_reverse_sde,
)

FIELD = GaussianField(8, 1, 0.0)
QUICK = dict(fields=[FIELD], targets=("gaussian",), steps=(10, 20, 50, 100))
# observed order at 50 -> 100 steps against the documented one: the pre-asymptotic drift of a two-point slope of an
# exact (noise-free) error; measured drifts are <= 0.13 (torchdiffeq, torchsde) on this field
ORDER_BAND = 0.3


def _row(report, suffix):
    return next(r for r in report.results if r.name.endswith(suffix))


@pytest.mark.parametrize("method", sorted(FIXED_STEP_ORDERS))
def test_torchdiffeq_fixed_step_method_reaches_its_documented_order(method):
    pytest.importorskip("torchdiffeq")
    p = FIXED_STEP_ORDERS[method]
    report = validate(odeint_probability_flow, "score", sampler_kwargs={"method": method}, order=p, **QUICK)
    assert report.passed, report.diff()
    assert abs(_row(report, "/order").measured - p) <= ORDER_BAND


@pytest.mark.parametrize("method", sorted(m for m in SDE_METHODS if m != "reversible_heun"))
def test_torchsde_method_has_its_exact_weak_order(method):
    pytest.importorskip("torchsde")
    p = SDE_METHODS[method][2]
    report = validate(sdeint_reverse_sde, "score", sampler_kwargs={"method": method}, order=p, **QUICK)
    assert report.passed, report.diff()
    weak = _row(report, "/weak_order")
    assert "linear probing" in weak.tolerance_source  # exact, from the probed Brownian motion
    assert abs(weak.measured - p) <= ORDER_BAND


def test_torchsde_probing_is_exact_on_a_two_dimensional_field():
    """The probe's draws are shaped like the field (not like torchsde's flattened state), so validate() probes
    exactly on d = 2 too: a finite observed order (Monte Carlo at this size would leave it unmeasurable)."""
    pytest.importorskip("torchsde")
    report = validate(sdeint_reverse_sde, "score", sampler_kwargs={"method": "euler"}, order=1.0,
                      fields=[GaussianField(4, 2, 0.0)], targets=("gaussian",), steps=(10, 20, 50, 100))
    assert report.passed, report.diff()
    assert math.isfinite(_row(report, "/order").measured) and _row(report, "/weak_order").passed


def test_torchsde_reversible_heun_is_unstable_at_coarse_steps_and_second_order_once_stable():
    """Finding: reversible Heun on the VE reverse SDE blows up at 10-20 steps, fails the weak-order row at 64-256
    steps, and is second order from 200 steps on."""
    pytest.importorskip("torchsde")
    report = validate(sdeint_reverse_sde, "score", sampler_kwargs={"method": "reversible_heun"}, order=2.0,
                      fields=[FIELD], targets=("gaussian",), steps=(10, 200, 400))
    assert _row(report, "covariance@10").measured > 10.0  # measured 64: an O(1) error would be < 1
    assert _row(report, "/weak_order").passed is False
    assert abs(_row(report, "/order").measured - 2.0) <= ORDER_BAND  # 1.95 at 200 -> 400


def test_probed_brownian_motion_answers_each_interval_once_and_refuses_overlaps():
    pytest.importorskip("torchsde")
    from critdiff_ref.validate.libraries import ProbedBrownian

    draws = []

    def noise(x, generator):
        draws.append(torch.randn_like(x))
        return draws[-1]

    bm = ProbedBrownian(torch.zeros(2, 3, dtype=torch.float64), noise, "space-time")
    W, U = bm(0.0, 0.5, return_U=True)
    assert torch.equal(bm(0.0, 0.5), W) and len(draws) == 2  # W and the space-time Levy area H
    assert torch.allclose(U, 0.5 * (0.5 * W + math.sqrt(0.5 / 12) * draws[1]), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="overlaps"):
        bm(0.25, 1.0)


def test_probed_brownian_has_the_law_of_torchsde_brownian_interval():
    """W ~ N(0, h), U ~ N(0, h^3/3), Cov(W, U) = h^2/2 (torchsde's U = int (W_s - W_a) ds): Monte Carlo of
    torchsde's BrownianInterval against the probe's exact second moments, 5 standard errors (false failure
    ~6e-7 per moment)."""
    torchsde = pytest.importorskip("torchsde")
    h, n = 0.3, 20000
    bm = torchsde.BrownianInterval(0.0, 1.0, size=(n, 1), dtype=torch.float64, entropy=3,
                                   levy_area_approximation="space-time")
    W, U = (v.reshape(-1) for v in bm(0.2, 0.2 + h, return_U=True))
    exact = {"WW": h, "UU": h**3 / 3, "WU": h * h / 2}
    for key, a, b in (("WW", W, W), ("UU", U, U), ("WU", W, U)):
        prod = a * b
        se = float(prod.std()) / math.sqrt(n)
        assert abs(float(prod.mean()) - exact[key]) <= 5 * se, key


@pytest.mark.parametrize("path", ["condot", "polynomial", "cosine"])
@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_flow_matching_ode_solver_on_exact_end_paths(path, method):
    pytest.importorskip("flow_matching")
    p = FIXED_STEP_ORDERS[method]
    report = validate(flow_matching_sample, "velocity", sampler_kwargs={"scheduler": path, "method": method},
                      order=p, **QUICK)
    assert report.passed, report.diff()
    assert _row(report, "schedule_floor@100").measured == 0.0  # exact ends: x_init = z is the tau = 0 law


def test_flow_matching_linear_vp_velocity_is_infinite_at_the_data_end():
    """Finding: LinearVPScheduler has sigma'(1) = -inf; rk4 evaluates tau = 1 and returns NaN (a failed run)."""
    pytest.importorskip("flow_matching")
    report = validate(flow_matching_sample, "velocity", sampler_kwargs={"scheduler": "linear_vp", "method": "rk4"},
                      order=4.0, **QUICK)
    assert report.results[0].name == "run" and report.results[0].passed is False
    ok = validate(flow_matching_sample, "velocity", sampler_kwargs={"scheduler": "linear_vp", "method": "midpoint"},
                  order=2.0, **QUICK)
    assert ok.passed, ok.diff()


def test_flow_matching_vp_start_floor_caps_the_order():
    """Finding: VPScheduler's alpha_0 = exp(-5.025) != 0, so x_init = z misses the tau = 0 law by
    alpha_0^2 (c0 - 1) per mode; midpoint's error stops there (order 0.38 at 50 -> 100, documented 2)."""
    pytest.importorskip("flow_matching")
    field = GaussianField(16, 1, 0.0)
    report = validate(flow_matching_sample, "velocity", sampler_kwargs={"scheduler": "vp", "method": "midpoint"},
                      order=2.0, fields=[field], targets=("gaussian",), steps=(10, 20, 50, 100))
    assert _row(report, "/order").passed is False
    # the plateau: the start's relative variance error alpha_0^2 (c0 - 1) survives the flow (THEORY 2: delta_0 =
    # delta_T c0 / C_T), at most e^-10.05 * max c0 = 2.8e-4 per mode (c0 = 6.6 on the softest mode); factor 2 for
    # the solver's own remaining error
    c0 = float(field.c0()[field.mode_mask()].max())
    assert _row(report, "covariance@100").measured < 2 * math.exp(-10.05) * c0


def test_flow_matching_time_swap_is_invisible_on_gaussians_and_caught_by_the_mixture():
    """t = 0 / 1 swapped on CondOT: per mode the swapped ODE gives V(1) = C(0)/C(1) = c0, the right Gaussian end
    law; the two-peak cumulants catch it."""
    pytest.importorskip("flow_matching")
    sampler, adapter, _, options, _ = LIBRARY_MUTANTS["flow_matching_time_swapped"]
    kw, order = options["sampler_kwargs"], options["order"]
    gauss = validate(sampler, adapter, sampler_kwargs=kw, order=order, **QUICK)
    assert gauss.passed
    mix = validate(sampler, adapter, sampler_kwargs=kw, order=order, fields=[FIELD], targets=("mixture",),
                   steps=(50, 100))
    assert not mix.passed and _row(mix, "kappa_2@100").passed is False


@pytest.mark.parametrize("name", ["odeint_drift_sign_flipped", "sdeint_diffusion_squared",
                                  "sdeint_score_at_reverse_time"])
def test_planted_bug_fails_validate(name):
    pytest.importorskip("torchdiffeq" if name.startswith("odeint") else "torchsde")
    sampler, adapter, _, options, caught_by = LIBRARY_MUTANTS[name]
    report = validate(sampler, adapter, **{**options, **QUICK})
    assert not report.passed
    assert caught_by == "covariance" and _row(report, "covariance@100").passed is False


def test_planted_fixed_atol_fails_the_tolerance_check():
    pytest.importorskip("torchdiffeq")
    sampler = LIBRARY_MUTANTS["odeint_fixed_atol"].sampler
    rows = {r.name.split("/")[-1]: r for r in adaptive_checks("dopri5", sampler=sampler, sizes=(4, 8))}
    assert rows["tolerance"].passed is False  # 111x the tolerance at 1e-6, bound 26 steps
    assert rows["nfe_vs_tol"].passed is False  # NFE stops growing below tol = 1e-4


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "adaptive_heun"])
def test_torchdiffeq_adaptive_method_delivers_its_tolerance(method):
    pytest.importorskip("torchdiffeq")
    tols = (1e-3, 1e-4, 1e-5) if method == "adaptive_heun" else (1e-3, 1e-4, 1e-5, 1e-6)
    rows = adaptive_checks(method, tolerances=tols, sizes=(4, 8), size_tolerance=1e-4)
    assert all(r.passed for r in rows), [(r.name, r.measured, r.detail) for r in rows]
    nfe_L = rows[2].data["nfe"]
    assert nfe_L[0] == nfe_L[1]  # measured: the same steps at every L (stiffness set by c0 = 1/(4d))


@pytest.mark.slow
def test_adaptive_nfe_does_not_grow_with_L_at_criticality():
    """d = 2, L = 4, 8, 16, 32 at rtol = atol = 1e-5 (~40 s: L = 32 probes 1023 starts)."""
    pytest.importorskip("torchdiffeq")
    for method in ("dopri5", "bosh3"):
        rows = adaptive_checks(method, sizes=(4, 8, 16, 32))
        assert all(r.passed for r in rows), [(r.name, r.measured, r.detail) for r in rows]


def test_flow_matching_adaptive_solver_evaluates_the_model_past_the_data_end():
    """Finding: ODESolver.sample with dopri5 steps past tau = 1 and interpolates back (torchdiffeq's dense output;
    sample() passes no step_t), so the velocity model is called at tau > 1, outside the path."""
    pytest.importorskip("flow_matching")
    from flow_matching.solver import ODESolver

    times = []

    def model(x, t):
        times.append(float(t))
        return -x

    y = ODESolver(model).sample(torch.ones(3, dtype=torch.float64), None, method="dopri5", rtol=1e-6, atol=1e-6,
                                time_grid=torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert max(times) > 1.1  # measured 1.21
    assert abs(float(y[0]) - math.exp(-1.0)) < 1e-6  # the interpolated answer is still within tolerance here


def test_library_runners_are_named_once_and_run():
    runners = library_runners()
    names = [n for n, _ in runners]
    assert len(names) == len(set(names))
    for name, runner in runners[:1]:
        report = validate(runner, fields=[FIELD], targets=("gaussian",), steps=(50, 100))
        assert report.passed, report.diff()


def test_bad_arguments_raise_naming_the_parameter():
    """Checked before the optional library is imported: the messages come without it too."""
    f, p = FIELD, VE()
    x = torch.zeros(2, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="method"):
        odeint_probability_flow(exact_score(f, p), p, x, 10, method="rk45")
    with pytest.raises(ValueError, match="steps"):
        sdeint_reverse_sde(exact_score(f, p), p, x, 0)
    with pytest.raises(ValueError, match="rtol"):
        odeint_probability_flow(exact_score(f, p), p, x, method="dopri5", rtol=0.0)
    with pytest.raises(ValueError, match="scheduler"):
        flow_matching_sample(lambda x, t: x, x, torch.tensor([1.0, 0.0]), scheduler="ddpm")


def test_probe_starts_are_orthonormal_white_noise_at_the_typical_radius():
    """sum_i x_i x_i^T = V Xi P exactly (P the kept-mode projector): the covariance identity the adaptive probe
    rests on; float64 rounding of an SVD, 1e-12 relative."""
    from critdiff_ref.validate.libraries import probe_starts

    f = GaussianField(4, 2, 0.0)
    x = probe_starts(f, 3.0, torch.Generator().manual_seed(1)).reshape(-1, f.V)
    assert x.shape == (f.V - 1, f.V)  # the zero mode is not a direction of the start
    P = torch.eye(f.V, dtype=torch.float64) - 1.0 / f.V
    assert torch.allclose(x.T @ x, f.V * 3.0 * P, rtol=0, atol=1e-12 * f.V * 3.0)


def test_adaptive_probe_error_vanishes_at_tight_tolerance():
    """The exact per-mode reference Xi(T) C_0 / C_T (THEORY 2) is what the solver converges to: at rtol = atol =
    1e-11 dopri5's worst per-mode variance error is below 1e-8 (the tolerance check's measured 8-14 x tol, with
    margin)."""
    pytest.importorskip("torchdiffeq")
    from critdiff_ref.validate.libraries import adaptive_probe

    probe = adaptive_probe("dopri5", GaussianField(4, 2, 0.0), rtol=1e-11)
    assert probe.mode_error < 1e-8 and probe.state_error < 10.0


def test_adaptive_checks_reject_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        adaptive_checks("rk4")
    with pytest.raises(ValueError, match="tolerances"):
        adaptive_checks("dopri5", tolerances=(1e-3,))


def test_sdeint_sampler_without_noise_is_seeded_by_its_generator():
    """The ordinary (non-probed) path: a torchsde BrownianInterval seeded from the generator."""
    pytest.importorskip("torchsde")
    f, p = FIELD, VE()
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    runs = [sdeint_reverse_sde(exact_score(f, p), p, x, 20, generator=torch.Generator().manual_seed(s))
            for s in (5, 5, 6)]
    assert torch.equal(runs[0], runs[1]) and not torch.allclose(runs[0], runs[2])


def test_torchdiffeq_adaptive_steps_past_the_end_time_unless_told_to_land_on_it():
    """Finding: without ``step_t`` torchdiffeq's dopri5 evaluates the drift beyond t_min (then interpolates back);
    our PF-ODE wrapper forces a step onto t_min, so the VE score is never asked for t < 0."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    times = []

    def f(t, x):
        times.append(float(t))
        return -x

    t = torch.tensor([1.0, 0.0], dtype=torch.float64)
    torchdiffeq.odeint(f, torch.ones(3, dtype=torch.float64), t, method="dopri5", rtol=1e-6, atol=1e-6)
    assert min(times) < 0.0
    times.clear()
    torchdiffeq.odeint(f, torch.ones(3, dtype=torch.float64), t, method="dopri5", rtol=1e-6, atol=1e-6,
                       options={"step_t": t[1:]})
    assert min(times) >= 0.0
