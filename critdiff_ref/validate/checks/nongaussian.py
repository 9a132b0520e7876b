"""Checks on non-Gaussian targets (THEORY 6, 8): two-peak cumulants, 0-D phi^4 moments, lattice phi^4
observables against an HMC ensemble.  Statistical: tolerances are k standard errors (stated) plus the
user's accuracy target.
"""

from __future__ import annotations

import math
import traceback

import torch

from ...observables import kstat, kstat_bootstrap, phi4_observables
from ...targets import Phi4ZeroD, TwoGaussianMixture
from ..runners.base import Runner
from ..runners.execute import check_output, run_checked, white_noise
from .result import CheckResult, check_result

__all__ = ["mixture_check", "phi4_check", "phi4_lattice_check"]


def _sample_1d(runner: Runner, target, steps: int, n: int, seed: int, dtype, device) -> torch.Tensor:
    g = torch.Generator(device=device or "cpu").manual_seed(seed)
    z = white_noise(target, n, g, dtype, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return run_checked(runner, target, steps, z, g).to(torch.float64).cpu()


def _fail(target: str, kind: str, err: Exception, tol_src: str, steps: int | None = None) -> CheckResult:
    return check_result(target, kind, math.nan, math.nan, math.nan, tol_src, False, f"{type(err).__name__}: {err}",
                        {"traceback": traceback.format_exc(limit=3)}, steps=steps)


KSIGMA_SOURCE = ("4 bootstrap standard errors (two-sided false-failure 6e-5 per order) + rtol * |kappa_n| "
                 "+ Richardson estimate |k(N) - k(N/2)| / (2^p - 1) of the sampler's own O(h^p) bias")


def mixture_check(runner: Runner, target: TwoGaussianMixture, steps: int, *, rtol: float, n_samples: int,
                  seed: int, dtype=torch.float64, device=None, orders=(2, 4, 6, 8)) -> list[CheckResult]:
    """k-statistics of generated two-peak samples against the exact cumulants (THEORY 6).

    A correct sampler of order ``p`` is biased by ``O(h^p)`` at finite ``N``: the tolerance adds the
    Richardson estimate of that bias from a second run at ``N/2`` with the same seed (common random
    numbers), ``|k(N) - k(N/2)| / (2^p - 1)`` with ``p`` the documented order (1 when unknown, the most
    lenient).  A sampler that converges to the wrong law has ``k(N) ~ k(N/2)``: the allowance stays small.
    """
    label = f"two-peak[mu={target.mu:g},s={target.s:g}]"
    try:
        x = _sample_1d(runner, target, steps, n_samples, seed, dtype, device)
        est = kstat_bootstrap(x, orders, n_boot=200, generator=torch.Generator().manual_seed(seed + 1))
        half = max(1, steps // 2)
        x_half = _sample_1d(runner, target, half, n_samples, seed, dtype, device) if half < steps else x
        k_half = [float(kstat(x_half, n)) for n in orders]
    except Exception as err:  # noqa: BLE001
        return [_fail(label, "kappa", err, KSIGMA_SOURCE, steps)]
    p = float(runner.order) if runner.order else 1.0
    out = []
    for j, n in enumerate(orders):
        ref = target.cumulant(n)
        val, se = float(est.value[j]), float(est.err[j])
        bias = abs(val - k_half[j]) / (2.0**p - 1.0)
        tol = 4.0 * se + rtol * abs(ref) + bias
        out.append(check_result(label, f"kappa_{n}", val, ref, tol, KSIGMA_SOURCE, abs(val - ref) <= tol,
                                f"bootstrap se {se:.3g}, bias estimate {bias:.3g} (p = {p:g}), n = {n_samples}", steps=steps))
    return out


MOMENT_SOURCE = "4 standard errors of the sample mean (false-failure 6e-5) + rtol * |moment|"


def phi4_check(runner: Runner, target: Phi4ZeroD, steps: int, *, rtol: float, n_samples: int, seed: int,
               dtype=torch.float64, device=None, orders=(2, 4)) -> list[CheckResult]:
    """Moments ``<phi^n>`` of generated 0-D phi^4 samples against quadrature (THEORY 8)."""
    label = f"phi4-0d[mu2={target.mu2:g},g={target.g:g}]"
    try:
        x = _sample_1d(runner, target, steps, n_samples, seed, dtype, device)
    except Exception as err:  # noqa: BLE001
        return [_fail(label, "moment", err, MOMENT_SOURCE, steps)]
    out = []
    for n in orders:
        ref = target.moment(n)
        xn = x**n
        val, se = float(xn.mean()), float(xn.std() / math.sqrt(n_samples))
        tol = 4.0 * se + rtol * abs(ref)
        out.append(check_result(label, f"moment_{n}", val, ref, tol, MOMENT_SOURCE, abs(val - ref) <= tol,
                                f"se {se:.3g}, n = {n_samples}", steps=steps))
    return out


LATTICE_SOURCE = "4 combined standard errors sqrt(err_gen^2 + err_ref^2) (jackknife / Gamma method; false-failure 6e-5)"


def phi4_lattice_check(runner: Runner, target, *, n_samples: int, seed: int, reference: dict | None = None,
                       dtype=torch.float64, device=None, hmc_kwargs: dict | None = None) -> list[CheckResult]:
    """Observables ``|M|, chi_2, U_L`` of generated lattice phi^4 configurations against an HMC reference
    ensemble (THEORY 8), with combined errors.  ``reference``: a :func:`~critdiff_ref.phi4.ensemble.run_hmc_experiment`
    summary (computed here with ``hmc_kwargs`` when None)."""
    from ...phi4.ensemble import run_hmc_experiment  # lattice phi^4 ensembles: imported only when asked for

    label = f"phi4-lattice[d={target.d},L={target.L},kappa={target.kappa:g},lam={target.lam:g}]"
    try:
        g = torch.Generator(device=device or "cpu").manual_seed(seed)
        z = torch.randn((n_samples, *target.shape), generator=g, dtype=dtype, device=device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            phi = check_output(runner(target, 0, z, g), z, runner.name).to(torch.float64).cpu()
        gen = phi4_observables(phi, target.d)
        if reference is None:
            reference = run_hmc_experiment(target.L, target.d, target.kappa, target.lam, seed=seed + 1,
                                           **(hmc_kwargs or {}))
    except Exception as err:  # noqa: BLE001
        return [_fail(label, "observables", err, LATTICE_SOURCE)]
    out = []
    for key in ("absM", "chi2", "binder"):
        val, err = float(gen[key].value), float(gen[key].err)
        ref, ref_err = float(reference[key]), float(reference[f"{key}_err"])
        tol = 4.0 * math.hypot(err, ref_err)
        out.append(check_result(label, key, val, ref, tol, LATTICE_SOURCE, abs(val - ref) <= tol,
                                f"generated {val:.4g} +- {err:.2g} (n = {n_samples}), HMC {ref:.4g} +- {ref_err:.2g}"))
    return out
