"""critdiff_ref.validate.runners.brownian: Brownian-path noise probing of SDE solvers (issue 16, part 4).

Claims checked: the probe answers nested queries with the correlations of one Brownian path, exactly;
the torchsde-free BrownianPathNoiseSampler has that law; the probed covariance of diffusers'
DPMSolverSDEScheduler is the law of its real torchsde Brownian tree (Monte Carlo agreement); independent
draws in place of the tree change DPM-Solver++ SDE's weak order from 2 to 1 (why the tree matters).
"""

from __future__ import annotations

import math

import pytest
import torch

from critdiff_ref import GaussianField
from critdiff_ref.validate import make_runner, validate
from critdiff_ref.validate.checks import fourier_matrix as _fourier_matrix, floor_variance, mc_mode_variance
from critdiff_ref.validate.mutants import ref_dpmpp_sde
from critdiff_ref.validate.checks.probes import probe_noise_covariance
from critdiff_ref.validate.checks.order import probed_weak_order_row
from critdiff_ref.validate.runners.brownian import (
    BrownianPathNoiseSampler,
    BrownianProbe,
    NoiseRecorder,
    brownian_noise_run,
)

# torchsde warns when diffusers queries its tree a float32 rounding below the tree's own start (harmless)
pytestmark = pytest.mark.filterwarnings("ignore:Should have ta>=t0")
EPS = torch.finfo(torch.float64).eps


def _coefficients(queries):
    """Each query's answer as a vector of coefficients on the elementary increments (one-hot draws)."""
    points = [p for q in queries for p in q]
    M = len(set(points)) - 1
    count = iter(range(M))

    def draw(shape, dtype, device):
        e = torch.zeros(M, dtype=torch.float64)
        e[next(count)] = 1.0
        return e

    probe = BrownianProbe(points, draw, (M,))
    out = [probe(a, b) for a, b in queries]
    assert not probe.increments  # every increment dropped after its last query
    return out


def test_probe_reproduces_brownian_covariances_exactly():
    """Normalised increments of one path: unit variance; corr([a, b], [a, c]) = sqrt((b - a)/(c - a)) for
    nested intervals, 0 for disjoint ones, -1 for a reversed query."""
    a, mid, b, c = 3.0, 2.2, 1.5, 0.7
    q = _coefficients([(a, b), (a, mid), (b, c), (b, a)])
    # exact arithmetic on a handful of sqrt: 16 eps
    for v in q:
        assert abs(float(v @ v) - 1.0) < 16 * EPS
    assert abs(float(q[0] @ q[1]) - math.sqrt((a - mid) / (a - b))) < 16 * EPS
    assert abs(float(q[0] @ q[2])) < 16 * EPS
    assert abs(float(q[0] @ q[3]) + 1.0) < 16 * EPS


def test_brownian_noise_run_records_then_probes_linearly():
    """The recording run sees every queried point; the probed run draws once per elementary interval."""
    calls = []

    def run_with(z, ns):
        out = ns(2.0, 1.0) + ns(2.0, 1.5)  # nested, as dpmpp_sde queries
        return z + out

    def draw(shape, dtype, device):
        calls.append(shape)
        return torch.ones(shape, dtype=dtype)

    z = torch.zeros((3, 4), dtype=torch.float64)
    x = brownian_noise_run(run_with, draw, z)
    assert calls == [(3, 4), (3, 4)]  # points {1, 1.5, 2}: two elementary intervals
    # both increments equal to their sqrt length: W(1) - W(2) = -(sqrt(.5) + sqrt(.5)); W(1.5) - W(2) = -sqrt(.5)
    expected = -(2 * math.sqrt(0.5)) / 1.0 - math.sqrt(0.5) / math.sqrt(0.5)
    assert torch.allclose(x, torch.full_like(x, expected), rtol=0, atol=16 * EPS)
    rec = NoiseRecorder((2,))
    assert float(rec(1.0, 0.5).abs().sum()) == 0.0 and rec.points == [1.0, 0.5]


def test_brownian_path_noise_sampler_has_the_brownian_law():
    """Monte Carlo (n = 20000 paths): unit variances and the nested / bridge correlations of one path,
    queried in an order that exercises extension on both sides and the Brownian bridge."""
    n = 20000
    ns = BrownianPathNoiseSampler(torch.zeros(n, dtype=torch.float64), torch.Generator().manual_seed(0))
    q_outer = ns(2.0, 0.5)  # two points
    q_inner = ns(2.0, 1.0)  # bridge between them
    q_left = ns(0.5, 0.1)  # extension below
    q_right = ns(3.0, 2.0)  # extension above
    qs = [q_outer, q_inner, q_left, q_right]
    corr = torch.corrcoef(torch.stack(qs))
    expected = torch.eye(4, dtype=torch.float64)
    expected[0, 1] = expected[1, 0] = math.sqrt(1.0 / 1.5)
    # standard error of a sample correlation ~ (1 - rho^2)/sqrt(n) <= 0.0071; variance SE sqrt(2/n) = 0.01;
    # 5 SE bounds (false-failure < 1e-5 per entry at this fixed seed's draw)
    assert float((corr - expected).abs().max()) < 5 / math.sqrt(n)
    for q in qs:
        assert abs(float(q.var()) - 1.0) < 5 * math.sqrt(2 / n)
    assert torch.equal(ns(2.0, 0.5), q_outer)  # a repeated query is the same increment


diffusers = pytest.importorskip("diffusers")


def _exact_modes(runner, f, steps):
    Sigma, resid, draws = probe_noise_covariance(runner, f, steps)
    return _fourier_matrix(f, Sigma).diagonal().real.reshape(f.shape), resid, draws


def test_dpmsolver_sde_probing_is_the_law_of_its_torchsde_tree():
    """DPMSolverSDEScheduler with its own torchsde BrownianInterval (Monte Carlo, 4000 samples) agrees with
    the probed exact per-mode variances within 5 standard errors on every mode (Bonferroni over 8 modes:
    false-failure < 5e-6), and the probe is linear to float32 rounding (the scheduler steps in float32)."""
    pytest.importorskip("torchsde")
    f = GaussianField(8, 1, 0.5)
    runner = make_runner(diffusers.DPMSolverSDEScheduler, "diffusers")
    exact, resid, draws = _exact_modes(runner, f, 10)
    assert draws == 2 * 9  # two queried points per step but the last (Euler to 0)
    assert resid < 1e2 * 10 * torch.finfo(torch.float32).eps  # validate's linearity tolerance
    v, se, _ = mc_mode_variance(runner, f, 10, 4000, 3, torch.float64, None)
    assert float(((v - exact).abs() / se).max()) < 5.0


def test_independent_draws_halve_dpmpp_sde_weak_order():
    """DPM-Solver++ SDE queries [sigma_i, sigma_mid] and then [sigma_i, sigma_{i+1}] of one path: with the
    tree's correlation its exact weak order is 2, with independent draws for the two queries it is 1."""
    def iid(model, x, sigmas, noise_sampler=None):
        calls = [0.0]

        def fresh(sigma, sigma_next):  # each query its own disjoint unit interval: independent draws
            calls[0] += 1.0
            return noise_sampler(calls[0], calls[0] + 1.0)

        return ref_dpmpp_sde(model, x, sigmas, noise_sampler=fresh)

    f = GaussianField(8, 1, 0.0)
    tree = make_runner(ref_dpmpp_sde, "denoiser", order=2.0)
    indep = make_runner(iid, "denoiser", order=2.0)
    tree.deterministic = indep.deterministic = False
    w_tree, w_iid = probed_weak_order_row(tree, f, 25), probed_weak_order_row(indep, f, 25)
    # observed 2.4 / 0.80 at 25-100 steps (2.18 / 0.85 at 50-200); the band is validate's weak-order band
    assert w_tree.passed and abs(w_tree.measured - 2.0) <= 0.5, w_tree
    assert not w_iid.passed and abs(w_iid.measured - 1.0) <= 0.3, w_iid


def _sigmas_of(cls_kwargs, steps):
    sched = diffusers.DPMSolverSDEScheduler(**cls_kwargs)
    sched.set_timesteps(steps)
    return torch.cat([sched.sigmas[::2], sched.sigmas[-1:]]).double()  # first-stage sigmas, then 0


def test_dpmsolver_sde_is_dpmpp_sde_on_its_own_sigmas():
    """diffusers' DPMSolverSDEScheduler is k-diffusion's DPM-Solver++ SDE (our reference ref_dpmpp_sde) run on
    its own sigma sequence: equal exact covariances (both noise-probed on one Brownian path)."""
    f = GaussianField(8, 1, 0.0)
    sigma_max = float(_sigmas_of({}, 10)[0])

    def on_diffusers_sigmas(model, x, sigmas, noise_sampler=None):
        return ref_dpmpp_sde(model, x, _sigmas_of({}, len(sigmas) - 1), noise_sampler=noise_sampler)

    ours = make_runner(on_diffusers_sigmas, "denoiser", sigma_max=sigma_max)
    theirs = make_runner(diffusers.DPMSolverSDEScheduler, "diffusers")
    ours.deterministic = theirs.deterministic = False
    for n in (10, 25):
        a, _, _ = _exact_modes(ours, f, n)
        b, _, _ = _exact_modes(theirs, f, n)
        # diffusers keeps sigmas and step coefficients in float32: ~1e-6 relative per step, x10 margin at 25 steps
        assert float(((a - b).abs() / b.clamp_min(1e-12))[f.mode_mask()].max()) < 3e-4, n


def test_dpmsolver_sde_default_schedule_caps_the_weak_order():
    """Finding: on its default "linspace" sigmas DPMSolverSDEScheduler converges with weak order ~1.2, not 2
    (errors 0.137, 0.060, 0.026 at 25, 50, 100 steps; 0.011 at 200), although the solver is second order
    (2.2 on k-diffusion's Karras sigmas, test_kdiffusion.py); validate reports the failed order checks."""
    f = GaussianField(8, 1, 0.0)
    runner = make_runner(diffusers.DPMSolverSDEScheduler, "diffusers")
    runner.deterministic = False
    row = probed_weak_order_row(runner, f, 25)
    # observed 1.20 at 25-100; second order would be >= 1.7 here, first order <= 1.3
    assert 0.9 < row.measured < 1.5 and row.passed is False, row
    rep = validate(diffusers.DPMSolverSDEScheduler, "diffusers", fields=[f], steps=(25, 50), targets=("gaussian",))
    assert rep["gauss[d=1,L=8,r=0]/order"].passed is False
    assert "exact by noise probing" in rep["gauss[d=1,L=8,r=0]/covariance@50"].detail


@pytest.mark.slow
def test_dpmsolver_sde_karras_plateaus_at_the_final_denoise():
    """Finding: with use_karras_sigmas the order is ~1.7 at 25 -> 50 steps, then the error stops at the exact
    error of the final step x <- D(x, sigma_last) from sigma_last = sigma(t = 0) = 0.0292 to 0:
    max_k sigma_last^2 / (c0(k) + sigma_last^2) (the law at sigma_last being exact)."""
    f = GaussianField(8, 1, 0.0)
    sched = diffusers.DPMSolverSDEScheduler(use_karras_sigmas=True)
    runner = make_runner(sched, "diffusers")
    runner.deterministic = False
    sched.set_timesteps(10)
    s2 = float(sched.sigmas[-2]) ** 2
    c0 = f.c0()[f.mode_mask()]
    jump = float((s2 / (c0 + s2)).max())
    errors = []
    for n in (200, 400):
        v, _, _ = _exact_modes(runner, f, n)
        fl = floor_variance(runner, f, n)
        errors.append(float((v[f.mode_mask()] / fl[f.mode_mask()] - 1).abs().max()))
    # observed 0.00363 (200), within 10% of the jump 0.00339 at 400: the solver's own O(h^2) remainder is below it
    assert abs(errors[-1] - jump) < 0.1 * jump and errors[-1] < errors[0], (errors, jump)
