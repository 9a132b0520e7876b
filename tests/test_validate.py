"""Unit tests for critdiff_ref.validate: adapters, checks, report, CLI (THEORY 2, 6, 8).

Each planted bug below must turn a passing sampler into a failing report with a message naming
what was off; correct samplers must pass.  Small fields and few step counts keep this file fast.
"""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from critdiff_ref import VP, GaussianField, TwoGaussianMixture
from critdiff_ref.samplers import probability_flow, reverse_sde
from critdiff_ref.validate import (
    Report,
    edm_heun,
    load_object,
    make_runner,
    reference_samplers,
    validate,
    validate_runner,
)
from critdiff_ref.validate import exact_denoiser, karras_sigmas
from critdiff_ref.validate.runners.execute import check_output, SamplerOutputError
from critdiff_ref.testing import assert_close

FIELDS = (GaussianField(8, 1, 0.0), GaussianField(4, 2, 0.5))
FAST = dict(fields=FIELDS, steps=(20, 40), targets=("gaussian",))


def rk4(score, process, x_T, steps, t_min=0.0):
    return probability_flow(score, process, x_T, steps, method="rk4", t_min=t_min)


def _failed(report: Report) -> list[str]:
    return [r.name for r in report.failures()]


# -- correct samplers pass --------------------------------------------------------------------
@pytest.mark.parametrize("runner_index, order", [(0, 1.0), (1, 2.0), (2, 4.0), (4, 1.0), (5, 2.0)])
def test_reference_samplers_pass_with_their_order(runner_index, order):
    runner = reference_samplers()[runner_index]
    report = validate_runner(runner, fields=FIELDS, steps=(20, 40), targets=("gaussian",), rtol=0.2)
    assert report.passed, report.diff()
    orders = [r.measured for r in report.results if r.name.endswith("/order")]
    # deterministic (no noise): between 20 and 40 steps the fitted slope is within 0.3 of the order
    # (measured: euler 0.93-0.98, heun 1.98-2.06, rk4 3.96-4.05 on these fields)
    assert all(abs(p - order) < 0.3 for p in orders), orders


def test_own_error_separates_sampler_from_schedule_floor():
    """With many RK4 steps the sampler's own error vanishes while the total error equals the floor."""
    f = GaussianField(8, 2, 0.0)
    report = validate(rk4, fields=[f], steps=(50, 100), targets=("gaussian",))
    last = report["gauss[d=2,L=8,r=0]/covariance@100"]
    # RK4 at 100 steps: ~1e-7 (observed 2.7e-8); the floor is the pure-noise start under VE, ~1e-2
    assert last.measured < 1e-6
    assert last.data["floor_error"] > 1e-3
    # total = floor + own up to the (negligible) own error (triangle inequality in the Frobenius norm)
    assert abs(last.data["total_error"] - last.data["floor_error"]) <= 2 * last.measured + 1e-12


def test_exact_start_has_no_floor():
    f = GaussianField(8, 1, 0.0)
    report = validate(rk4, fields=[f], steps=(50, 100), targets=("gaussian",), start="exact", process=VP())
    last = report["gauss[d=1,L=8,r=0]/covariance@100"]
    # start N(0, C_T) exactly: floor error is rounding (~1e-16 per mode, 64 eps margin)
    assert last.data["floor_error"] < 64 * torch.finfo(torch.float64).eps
    assert report.passed, report.diff()


def test_reverse_sde_monte_carlo_passes():
    report = validate(reverse_sde, fields=[GaussianField(4, 2, 0.5)], steps=(20, 40), targets=("gaussian",),
                      n_samples=1000)
    assert report.info["deterministic"] is False
    assert report.passed, report.diff()


def test_denoiser_adapter_and_exact_denoiser():
    f = GaussianField(8, 1, 0.0)
    D = exact_denoiser(f, 80.0)
    x = f.sample(3, torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma = 1.7
    c0 = f.c0()
    expected = torch.fft.ifftn(torch.fft.fftn(x, dim=(-1,)) * (c0 / (c0 + sigma**2)), dim=(-1,)).real
    # D(x, sigma) = x + sigma^2 s = F^-1[c0 / (c0 + sigma^2) F x]: a few FFTs, 64 eps
    torch.testing.assert_close(D(x, sigma), expected, rtol=64 * 2.2e-16, atol=64 * 2.2e-16 * float(x.abs().max()))
    report = validate(edm_heun, "denoiser", **FAST)
    assert report.passed, report.diff()


def test_karras_sigmas():
    s = karras_sigmas(5, 0.002, 80.0)
    assert s.shape == (6,) and float(s[-1]) == 0.0
    assert math.isclose(float(s[0]), 80.0, rel_tol=1e-12) and math.isclose(float(s[4]), 0.002, rel_tol=1e-12)
    assert bool((torch.diff(s) < 0).all())
    with pytest.raises(ValueError, match="sigma_min"):
        karras_sigmas(5, 1.0, 0.5)
    with pytest.raises(ValueError, match="n must be"):
        karras_sigmas(0, 0.1, 1.0)


def test_generator_adapter():
    f = GaussianField(4, 2, 0.5)

    def exact(n, generator):
        return f.sample(n, generator, dtype=torch.float64)

    assert validate(exact, "generator", target=f, n_samples=2000).passed
    mix = TwoGaussianMixture(1.0, 0.5)
    good = validate(lambda n, g: mix.sample(n, g), "generator", target=mix, n_samples=2000)
    assert good.passed, good.diff()
    wrong = TwoGaussianMixture(1.3, 0.5)
    bad = validate(lambda n, g: wrong.sample(n, g), "generator", target=mix, n_samples=2000)
    assert "two-peak[mu=1,s=0.5]/kappa_2@100" in _failed(bad)


# -- planted bugs fail ------------------------------------------------------------------------
def test_scaled_score_fails():
    def bad(score, process, x_T, steps, **kw):
        return probability_flow(lambda x, t: 0.8 * score(x, t), process, x_T, steps, method="rk4")

    report = validate(bad, **FAST)
    assert "gauss[d=1,L=8,r=0]/covariance@40" in _failed(report)


def test_wrong_endpoint_fails_order():
    """Stopping at t_min = 0.02 while claiming 0: converges to the wrong limit, order ~ 0."""
    def bad(score, process, x_T, steps, **kw):
        return probability_flow(score, process, x_T, steps, method="rk4", t_min=0.02)

    report = validate(bad, **FAST, rtol=0.5)
    assert "gauss[d=1,L=8,r=0]/order" in _failed(report)


def test_nonlinear_sampler_fails_linearity():
    def clipped(score, process, x_T, steps, **kw):
        return probability_flow(score, process, x_T, steps, method="heun").clamp(-1.0, 1.0)

    report = validate(clipped, **FAST, rtol=0.9)
    assert "gauss[d=1,L=8,r=0]/linearity@40" in _failed(report)


def test_too_much_sde_noise_fails():
    def noisy(score, process, x_T, steps, generator=None, **kw):
        x = reverse_sde(score, process, x_T, steps, generator)
        return x + 0.5 * torch.randn(x.shape, generator=generator, dtype=x.dtype)

    report = validate(noisy, fields=[GaussianField(4, 2, 0.5)], steps=(20, 40), targets=("gaussian",), n_samples=1000)
    assert "gauss[d=2,L=4,r=0.5]/covariance@40" in _failed(report)


@pytest.mark.parametrize("mutate, message", [
    (lambda x: x[..., :-1], "output shape"),
    (lambda x: x.float(), "output dtype"),
    (lambda x: x * float("nan"), "NaN"),
    (lambda x: x.numpy(), "expected a torch.Tensor"),
])
def test_bad_output_is_a_failed_check_not_a_crash(mutate, message):
    def bad(score, process, x_T, steps, **kw):
        return mutate(rk4(score, process, x_T, steps))

    report = validate(bad, deterministic=True, **FAST)
    assert not report.passed
    assert any(message in r.detail for r in report.failures()), report.diff()


def test_raising_sampler_is_reported():
    def boom(score, process, x_T, steps, **kw):
        raise RuntimeError("kaboom")

    report = validate(boom, **FAST)
    assert not report.passed and "kaboom" in report.diff()


def test_check_output():
    like = torch.zeros(2, 3, dtype=torch.float64)
    assert check_output(torch.ones(2, 3, dtype=torch.float64), like, "x") is not None
    with pytest.raises(SamplerOutputError, match="shape"):
        check_output(torch.ones(3, 2, dtype=torch.float64), like, "x")


# -- report -----------------------------------------------------------------------------------
def test_report_json_table_plot(tmp_path):
    report = validate(rk4, **FAST)
    d = json.loads(report.to_json())
    assert d["passed"] is True and len(d["results"]) == len(report.results)
    assert {"name", "measured", "reference", "tolerance", "tolerance_source", "passed"} <= set(d["results"][0])
    assert "covariance@40" in report.table()
    files, note = report.plot(str(tmp_path))
    if importlib.util.find_spec("matplotlib") is not None:
        assert len(files) == 2 and all((tmp_path / p.split("/")[-1]).exists() for p in files)
    else:
        assert files == [] and "matplotlib" in note


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(adapter="nope"), ValueError, "adapter"),
    (dict(steps=(20, 10)), ValueError, "steps"),
    (dict(steps=()), ValueError, "steps"),
    (dict(rtol=2.0), ValueError, "rtol"),
    (dict(n_samples=5), ValueError, "n_samples"),
    (dict(targets=("nope",)), ValueError, "targets"),
    (dict(order=-1.0), ValueError, "order"),
    (dict(start="middle"), ValueError, "start"),
])
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        validate(rk4, **{**FAST, **kwargs})


def test_bad_sampler_arguments():
    with pytest.raises(ValueError, match="target="):
        validate(lambda n, g: None, "generator")
    with pytest.raises(TypeError, match="callable"):
        validate(42, "score")
    with pytest.raises(ValueError, match="pkg.module:attr"):
        load_object("no_colon_here")
    assert load_object("critdiff_ref.samplers:probability_flow") is probability_flow
    with pytest.raises(TypeError, match="diffusers scheduler"):
        make_runner(object(), "diffusers")


# -- CLI --------------------------------------------------------------------------------------
def _cli(argv):
    import argparse

    from critdiff_ref.validate.cli import add_validate_parser, run_validate

    parser = argparse.ArgumentParser()
    add_validate_parser(parser.add_subparsers())
    return run_validate(parser.parse_args(["validate", *argv]))


def test_cli_module_attr(capsys, tmp_path):
    out = tmp_path / "r.json"
    rc = _cli(["critdiff_ref.validate:edm_heun", "--adapter", "denoiser", "--steps", "20", "40",
               "--targets", "gaussian", "--json", str(out)])
    assert rc == 0
    assert "PASS" in capsys.readouterr().out
    doc = json.loads(out.read_text())  # strict JSON: with a non-finite number the list is {"data": ..., "nulls": ...}
    assert (doc["data"] if isinstance(doc, dict) else doc)[0]["passed"] is True


def test_cli_failing_sampler_exit_code(capsys):
    rc = _cli(["critdiff_ref.samplers:probability_flow", "--steps", "2", "4", "--targets", "gaussian", "--rtol", "0.01"])
    assert rc == 1
    assert "FAIL" in capsys.readouterr().out


def test_lattice_phi4_generator_against_hmc():
    """A generator of lattice phi^4 configurations is compared with an HMC ensemble (|M|, chi_2, U_L)."""
    from critdiff_ref import Phi4Lattice
    from critdiff_ref.phi4.ensemble import EnsembleParams, generate_ensemble, run_hmc_experiment

    target = Phi4Lattice(4, 2, 0.2, 0.022)
    reference = run_hmc_experiment(4, 2, 0.2, 0.022, n_chains=16, n_traj=200, burn_in=50, seed=3)

    def hmc_generator(kappa):
        def generate(n, generator):
            seed = int(torch.randint(0, 2**30, (1,), generator=generator))
            params = EnsembleParams(L=4, d=2, kappa=kappa, lam=0.022, n_chains=n, n_updates=4, burn_in=60, seed=seed)
            return generate_ensemble(params)[0][-1]  # the last configuration of n independent chains

        return generate

    good = validate(hmc_generator(0.2), "generator", target=target, n_samples=400, reference=reference)
    assert good.passed, good.diff()
    # kappa 0.23 instead of 0.2: |M| 0.39 vs 0.29 (observed), > 4 combined standard errors
    bad = validate(hmc_generator(0.23), "generator", target=target, n_samples=400, reference=reference)
    assert "phi4-lattice[d=2,L=4,kappa=0.2,lam=0.022]/absM" in _failed(bad)


def test_single_step_count_has_no_order_row_failure():
    report = validate(rk4, fields=[GaussianField(8, 1, 0.0)], steps=(40,), targets=("gaussian",))
    assert report.passed, report.diff()
    assert report["gauss[d=1,L=8,r=0]/order"].passed is None


def test_weak_order_row_for_stochastic_samplers_with_noise_argument():
    """Stochastic score samplers taking noise= get an exact weak-order row (issue 10): EM has weak order 1,
    stochastic Heun 2; claiming order 2 for EM fails the row (the row can fail)."""
    from critdiff_ref.samplers import reverse_sde
    from critdiff_ref.samplers.sde_schemes import reverse_sde_heun
    from critdiff_ref.validate import validate as run_validation

    def weak(report):
        rows = [c for c in report.results if c.name.endswith("weak_order")]
        assert len(rows) == 1
        return rows[0]

    em = weak(run_validation(reverse_sde, "score", targets=("gaussian",), order=1))
    assert em.passed and abs(em.measured - 1.0) <= 0.3  # the row's band: pre-asymptotic slope drift
    heun = weak(run_validation(reverse_sde_heun, "score", targets=("gaussian",), order=2))
    assert heun.passed and abs(heun.measured - 2.0) <= 0.3
    wrong = weak(run_validation(reverse_sde, "score", targets=("gaussian",), order=2))
    assert wrong.passed is False


@pytest.mark.parametrize("r", [0.0, 0.5])
def test_noise_probing_gives_the_exact_em_covariance(r):
    """Exact noise probing of reverse_sde (Euler–Maruyama, noise through ``noise=``): the probed
    covariance is diagonal in Fourier space with the closed-form EM mode variances of
    samplers.sde_variance (the recursion v <- m^2 v + g^2 h, no sampling), to rounding: 1e-10
    relative (float64, 24 steps of ~10 flops per entry, summed over (N + 1) V probe rows)."""
    from critdiff_ref.samplers import score_kernel_fn, sde_variance, time_grid
    from critdiff_ref.validate.checks import fourier_matrix as _fourier_matrix
    from critdiff_ref.validate.checks.probes import probe_noise_covariance

    field, N = GaussianField(6, 2, r), 24
    runner = make_runner(reverse_sde, "score")  # default process VE(25), start N(0, Xi(T))
    process = runner.schedule(field, N).process
    Sigma, resid, draws = probe_noise_covariance(runner, field, N)
    assert draws == N and resid < 1e-12  # one draw per step; linear in start and noise to rounding
    Sk = _fourier_matrix(field, Sigma)
    v = sde_variance(score_kernel_fn(field, process), process, time_grid(process, N),
                     float(process.Xi(process.T)), field.mode_mask())
    mask = field.mode_mask()
    assert_close(Sk.diagonal().real.reshape(field.shape)[mask], v[mask], rtol=1e-10, atol=0.0)
    assert float((Sk - torch.diag(Sk.diagonal())).abs().max()) < 1e-10 * float(v.max())


def test_stochastic_score_sampler_is_checked_exactly_when_its_noise_can_be_supplied():
    """reverse_sde takes noise=: its covariance rows are exact (no Monte Carlo noise in the tolerance);
    the same sampler without a noise argument falls back to Monte Carlo."""
    f = GaussianField(6, 2, 0.0)
    exact = validate(reverse_sde, fields=[f], steps=(50, 100), targets=("gaussian",))
    row = exact["gauss[d=2,L=6,r=0]/covariance@100"]
    assert "exact by noise probing (100 draws)" in row.detail and "MC noise" not in row.detail

    def em_without_noise_argument(score, process, x_T, steps, generator=None):
        return reverse_sde(score, process, x_T, steps, generator)

    mc = validate(em_without_noise_argument, fields=[f], steps=(50, 100), targets=("gaussian",), n_samples=256)
    assert "MC noise" in mc["gauss[d=2,L=6,r=0]/covariance@100"].detail


def test_stochastic_score_sampler_is_measured_against_the_reverse_sde_floor():
    """The own error of a stochastic sampler is measured against the exact reverse-SDE end law
    (start memory (C/C_T)^2), not the PF-ODE one (C/C_T): with the ODE floor, Euler–Maruyama's exact
    errors on the critical d = 1 field plateaued at the ODE-vs-SDE gap (0.062, 0.061 at 50, 100 steps:
    order 0.03). Against the SDE floor they fall at EM's weak order 1 (exact, deterministic values:
    0.0044, 0.0019, slope 1.17; band 0.25 for the pre-asymptotic drift at these step counts)."""
    f = GaussianField(16, 1, 0.0)
    rep = validate(reverse_sde, fields=[f], targets=("gaussian",))
    order = rep["gauss[d=1,L=16,r=0]/order"]
    assert order.passed is not False and abs(order.measured - 1.0) < 0.25


def test_a_runner_is_accepted_as_it_is():
    """validate / make_runner take an already wrapped Runner without wrapping it again."""
    r = make_runner(reverse_sde, "score")
    assert make_runner(r, "score", order=1.0) is r and r.order == 1.0
    rep = validate(r, fields=[GaussianField(4, 1, 0.5)], steps=(10, 20), targets=("gaussian",))
    assert all(res.name != "run" for res in rep.results)  # no "sampler must run" failure


def _euler_ancestral(model, x, sigmas, generator=None, noise_sampler=None):
    """k-diffusion's sample_euler_ancestral (eta = 1), written out: a stochastic denoiser sampler."""
    if noise_sampler is None:
        noise_sampler = lambda s, s_next: torch.randn(x.shape, generator=generator, dtype=x.dtype)  # noqa: E731
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        up = min(s_next, math.sqrt(s_next**2 * (s**2 - s_next**2) / s**2))
        down = math.sqrt(s_next**2 - up**2)
        x = x + (x - model(x, s)) / s * (down - s)
        if s_next > 0:
            x = x + noise_sampler(s, s_next) * up
    return x


def test_k_diffusion_ancestral_sampler_is_noise_probed():
    """A denoiser sampler taking k-diffusion's noise_sampler is probed exactly: Monte Carlo with 4000
    samples agrees within 5 standard errors on every mode (Bonferroni over 8 modes: false-failure
    < 5e-6 at this fixed seed), and its exact covariance errors converge at order 1 (exact values)."""
    from critdiff_ref.validate.checks import fourier_matrix as _fourier_matrix, mc_mode_variance
    from critdiff_ref.validate.checks.probes import probe_noise_covariance

    f = GaussianField(8, 1, 0.5)
    runner = make_runner(_euler_ancestral, "denoiser", order=1.0)
    Sigma, resid, draws = probe_noise_covariance(runner, f, 20)
    assert draws == 19 and resid < 1e-12  # no draw after the last step to sigma = 0
    exact = _fourier_matrix(f, Sigma).diagonal().real.reshape(f.shape)
    v, se, _ = mc_mode_variance(runner, f, 20, 4000, 5, torch.float64, None)
    assert float(((v - exact).abs() / se).max()) < 5.0
    rep = validate(runner, fields=[f], steps=(50, 100), targets=("gaussian",))
    assert "exact by noise probing" in rep["gauss[d=1,L=8,r=0.5]/covariance@100"].detail
    assert rep["gauss[d=1,L=8,r=0.5]/order"].passed, rep.diff()


def test_noise_probing_falls_back_to_monte_carlo_when_it_cannot_be_exact():
    """A sampler that takes noise= but draws part of its noise elsewhere leaves a probing residual far
    above rounding: the covariance row says so and uses Monte Carlo; one whose noise= argument breaks
    (here: it expects a different callable signature) falls back the same way."""
    f = GaussianField(4, 1, 0.5)

    def leaky(score, process, x_T, steps, generator=None, noise=None):
        half = {"i": 0}

        def mixed(x, g):  # every other draw bypasses the supplied noise
            half["i"] += 1
            return noise(x, g) if (noise is not None and half["i"] % 2) else torch.randn(x.shape, generator=g, dtype=x.dtype)

        return reverse_sde(score, process, x_T, steps, generator, noise=mixed)

    def wrong_signature(score, process, x_T, steps, generator=None, noise=None):
        z = None if noise is None else noise(x_T)  # calls noise with one argument: TypeError when probed
        return reverse_sde(score, process, x_T + (0.0 if z is None else 0.0 * z), steps, generator)

    for sampler, note in ((leaky, "noise probing not exact"), (wrong_signature, "noise probing failed (TypeError")):
        rep = validate(sampler, fields=[f], steps=(20,), targets=("gaussian",), n_samples=256)
        detail = rep["gauss[d=1,L=4,r=0.5]/covariance@20"].detail
        assert note in detail and "MC noise" in detail, detail
