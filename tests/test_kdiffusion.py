"""k-diffusion's samplers (k_diffusion/sampling.py) through the denoiser adapter (issue 16, parts 4 and 6).

Skipped cleanly when k_diffusion.sampling cannot be loaded (light install: pip install
"critdiff-ref[kdiffusion]" && pip install --no-deps k-diffusion==0.1.1.post1).  Default suite: every
sampler on one small critical field at 25 and 50 steps (exact: deterministic probing or Brownian-path
noise probing); the full matrix at validate()'s defaults is ``slow``.
"""

from __future__ import annotations

import pytest
import torch

from critdiff_ref import GaussianField
from critdiff_ref.validate import validate_runner
from critdiff_ref.validate.runners.kdiffusion import KDIFFUSION_SAMPLERS, kdiffusion_runner, load_sampling, sampler_names

try:
    SAMPLING = load_sampling()
except ImportError as err:  # pragma: no cover - depends on the environment
    pytest.skip(f"k_diffusion.sampling not importable: {err}", allow_module_level=True)

pytestmark = pytest.mark.filterwarnings("ignore")
FIELD = GaussianField(8, 1, 0.0)

# Findings (README "k-diffusion on the critical 2-D Gaussian field"): samplers whose measured order is below
# the documented one, asserted below as failing their order check.
BELOW_DOCUMENTED = {
    "dpmpp_3m_sde": "weak order ~1.9 (3 documented): the SDE variant's third-order correction does not lift it above 2",
}


def test_every_sampler_of_sampling_py_is_catalogued():
    """A k-diffusion release adding or removing a sample_* function fails here (the README table lists all)."""
    assert sampler_names() == sorted(KDIFFUSION_SAMPLERS)


@pytest.mark.parametrize("name", sorted(KDIFFUSION_SAMPLERS))
def test_sampler_is_exact_and_converges_at_its_documented_order(name):
    entry = KDIFFUSION_SAMPLERS[name]
    runner = kdiffusion_runner(name)
    # deterministic samplers at 50 -> 100 (LMS is pre-asymptotic at 25 -> 50: 3.4), stochastic ones at 25 -> 50
    # (their exact noise probing costs more per step)
    steps = (50, 100) if entry.noise == "none" else (25, 50)
    rep = validate_runner(runner, fields=[FIELD], steps=steps, targets=("gaussian",))
    cov = [r for r in rep.results if "/covariance@" in r.name]
    assert len(cov) == 2 and all("Error" not in r.detail for r in cov), rep.diff()
    if entry.noise != "none":
        # every draw supplied (noise_sampler): exact, no Monte Carlo
        assert all("exact by noise probing" in r.detail for r in cov), [r.detail for r in cov]
        assert rep["gauss[d=1,L=8,r=0]/weak_order"].passed is not None or entry.order is None
    order = rep["gauss[d=1,L=8,r=0]/order"]
    if name in BELOW_DOCUMENTED:
        assert order.passed is False, (name, order)
    elif entry.order is not None:
        # validate's band (documented - 0.5)
        assert order.passed, (name, order)


def test_reference_dpmpp_sde_is_k_diffusions():
    """Our mutant-catalogue reference (the parent of the planted Brownian-increment bug) is k-diffusion's
    sample_dpmpp_sde: same output on the same Brownian path."""
    from critdiff_ref.validate import exact_denoiser, karras_sigmas
    from critdiff_ref.validate.mutants import ref_dpmpp_sde
    from critdiff_ref.validate.runners.brownian import BrownianPathNoiseSampler

    model = exact_denoiser(FIELD, 80.0)
    sigmas = karras_sigmas(12, 0.002, 80.0)
    x = 80.0 * torch.randn((3, *FIELD.shape), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ns = BrownianPathNoiseSampler(x, torch.Generator().manual_seed(2))
    ours = ref_dpmpp_sde(model, x, sigmas, noise_sampler=ns)
    theirs = SAMPLING.sample_dpmpp_sde(model, x, sigmas, noise_sampler=ns, disable=True)  # same path, cached
    # same operations up to association order: 64 eps per step relative to the output scale
    torch.testing.assert_close(ours, theirs, rtol=0, atol=64 * 12 * 2.2e-16 * float(theirs.abs().max()))


def test_brownian_probe_is_the_law_of_k_diffusions_tree():
    """sample_dpmpp_sde with its default torchsde BrownianTreeNoiseSampler (Monte Carlo, 4000 samples) agrees
    with the Brownian-path-probed exact per-mode variances within 5 standard errors on every mode
    (Bonferroni over 8 modes: false-failure < 5e-6)."""
    from critdiff_ref.validate.checks import fourier_matrix as _fourier_matrix, mc_mode_variance
    from critdiff_ref.validate.checks.probes import probe_noise_covariance

    f = GaussianField(8, 1, 0.5)
    runner = kdiffusion_runner("dpmpp_sde")
    Sigma, resid, draws = probe_noise_covariance(runner, f, 8)
    exact = _fourier_matrix(f, Sigma).diagonal().real.reshape(f.shape)
    assert draws == 2 * 7 and resid < 1e3 * 8 * torch.finfo(torch.float64).eps  # rounding (float64)
    v, se, _ = mc_mode_variance(runner, f, 8, 4000, 5, torch.float64, None)
    assert float(((v - exact).abs() / se).max()) < 5.0


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(KDIFFUSION_SAMPLERS))
def test_full_matrix(name):
    """validate() at its defaults (three fields, steps 10..100, mixture cumulants, 0-D phi^4): passes unless
    the README names a finding for it."""
    runner = kdiffusion_runner(name)
    rep = validate_runner(runner)
    if name in BELOW_DOCUMENTED or name in FULL_MATRIX_FAILS:
        assert not rep.passed
    else:
        assert rep.passed, rep.diff()


# measured at validate()'s defaults (README k-diffusion table)
FULL_MATRIX_FAILS = {
    "euler_ancestral": "first order with a large constant: own error 0.10-0.12 > rtol 0.1 at 100 steps",
    "dpm_adaptive": "error-controlled, not step-controlled: with rtol = atol = 1/N^2 its own error barely moves "
                    "(1.0e-3 -> 9.4e-4 from N = 50 to 100 on d = 1, L = 16), so the convergence check (>= 0.5) fails",
}
