"""``validate_objective``: minimise a user's training objective over a family that contains the exact
optimum, and check that the implied denoiser is the exact posterior mean (THEORY 2, 6, 9).

The objective is a function ``objective(model, x0, generator) -> scalar loss`` written in the user's
own parametrisation; it must draw all its randomness (noise, timesteps) from ``generator`` and call
``model(x_in, c)`` with ``c`` the conditioning values declared in the :class:`~.spec.ModelSpec`.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .._args import integer, real
from ..targets.gaussian_field import GaussianField
from ..targets.mixtures import TwoGaussianMixture
from .compare import MIN_SAMPLES, Comparison, compare_denoiser
from .family import FourierLinearModel, TwoPeakModel
from .fit import Objective, QuadraticFit, fit_quadratic
from .report import LevelRow, ModeRow, ObjectiveReport
from .spec import ModelSpec
from .weighting import density_check, measured_weighting

__all__ = ["validate_objective", "default_field", "default_mixture", "QUADRATIC_TOLERANCE"]

# a squared loss is exactly quadratic in theta; a float32 loss carries ~1e-7 relative round-off per
# term, so a relative gradient mismatch above 1e-4 means the loss is not quadratic (or not reproducible)
QUADRATIC_TOLERANCE = 1e-4
MAX_NAMED = 6  # levels / modes named in a failure message


def default_field() -> GaussianField:
    """The critical Gaussian field the validator trains on by default: ``d = 2``, ``L = 16``, ``r = 0``."""
    return GaussianField(16, 2, 0.0)


def default_mixture() -> TwoGaussianMixture:
    """The non-Gaussian check: the two-peak mixture ``mu = 1``, ``s = 0.5`` on an ``8 x 8`` lattice of sites."""
    return TwoGaussianMixture(1.0, 0.5)


def _model_and_data(target, spec: ModelSpec, dtype, device) -> tuple[torch.nn.Module, Callable, str]:
    if isinstance(target, GaussianField):
        model = FourierLinearModel(spec, target, dtype=dtype, device=device)
        return (model, (lambda n, g: target.sample(n, g, dtype=dtype, device=device)),
                f"GaussianField(L={target.L}, d={target.d}, r={target.r})")
    if isinstance(target, TwoGaussianMixture):
        model = TwoPeakModel(spec, target, dtype=dtype, device=device)
        return (model, (lambda n, g: target.sample((n, 8, 8), g, dtype=dtype, device=device)),
                f"TwoGaussianMixture(mu={target.mu}, s={target.s})")
    raise TypeError(f"target must be a GaussianField or a TwoGaussianMixture, got {type(target).__name__}")


def _names(items: list[str], total: int) -> str:
    shown = ", ".join(items[:MAX_NAMED])
    return shown + (f" and {total - MAX_NAMED} more" if total > MAX_NAMED else "")


def _level_rows(spec, cmp: Comparison, fit: QuadraticFit, labels, off_level, weights) -> list[LevelRow]:
    rows = []
    for j in range(spec.n_levels):
        ratio = np.abs(cmp.implied[j] - cmp.exact[j]) / cmp.stderr[j]
        finite = np.isfinite(ratio)
        k, f = np.unravel_index(int(np.nanargmax(np.where(finite, ratio, -1.0))), ratio.shape) if finite.any() else (0, 0)
        rows.append(LevelRow(
            index=j, conditioning=float(spec.conditioning[j]), alpha=float(spec.alpha[j]), sigma=float(spec.sigma[j]),
            samples=int(fit.counts[j]), measured=bool(cmp.measured[j]), chi2=float(cmp.level_chi2[j]),
            dof=int(cmp.level_dof[j]), p_value=float(cmp.level_p[j]), off=bool(off_level[j]),
            worst_mode=labels[k] + ("" if cmp.implied.shape[-1] == 1 else f"[feature {f}]"),
            worst_implied=float(cmp.implied[j, k, f]), worst_exact=float(cmp.exact[j, k, f]),
            worst_stderr=float(cmp.stderr[j, k, f]),
            weight=float(weights["weight"][j]), weight_stderr=float(weights["stderr"][j]),
            documented_weight=float(weights["documented"][j]),
        ))
    return rows


def validate_objective(
    objective: Objective,
    spec: ModelSpec,
    *,
    target: GaussianField | TwoGaussianMixture | None = None,
    name: str = "objective",
    n_batches: int = 64,
    batch_size: int = 4096,
    seed: int = 0,
    alpha: float = 1e-3,
    documented_weighting: Callable[[ModelSpec], torch.Tensor] | None = None,
    documented_density: Callable[[ModelSpec], torch.Tensor] | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> ObjectiveReport:
    """Validate a training objective against the exact optimum (THEORY 9).

    Parameters
    ----------
    objective
        ``objective(model, x0, generator) -> scalar loss``; ``x0`` is ``(batch, *lattice)``.
    spec
        The conditioning grid, forward process and output kind the objective claims (:class:`ModelSpec`).
    target
        The data: a :class:`GaussianField` (default :func:`default_field`) or a :class:`TwoGaussianMixture`.
    n_batches, batch_size
        Independent batches (>= 8) and their size. The standard errors are first order in 1/samples per
        level, so aim for >= 250 samples per conditioning value (the default gives 262 on 1000 timesteps;
        below ~100 the chi-square tests run a few per cent hot and the false-failure rate grows).
    alpha
        False-failure rate of a correct objective (Bonferroni over the tests made).
    documented_weighting
        ``spec -> (n_levels,)`` loss weight per level in the model-output space, to compare.
    documented_density
        ``spec -> (n_levels,)`` probability of each conditioning value, to compare.
    dtype, device
        Of the data, the model and the generator (float64 on CPU is the reference).

    Returns
    -------
    ObjectiveReport
        ``.passed`` is the verdict; failure messages name the levels and modes where the implied
        denoiser is off.
    """
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a ModelSpec, got {type(spec).__name__}")
    if not callable(objective):
        raise TypeError(f"objective must be callable (model, x0, generator) -> loss, got {type(objective).__name__}")
    n_batches = integer("n_batches", n_batches, 8)
    batch_size = integer("batch_size", batch_size, 1)
    alpha = real("alpha", alpha, positive=True)
    if alpha >= 1:
        raise ValueError(f"alpha must lie in (0, 1), got alpha={alpha}")
    target = default_field() if target is None else target
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    device = torch.device(device)
    model, sample_x0, target_name = _model_and_data(target, spec, dtype, device)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    fit = fit_quadratic(objective, model, sample_x0, n_batches=n_batches, batch_size=batch_size, generator=generator)
    cmp = compare_denoiser(fit, spec, model.exact_coefficients(), model.feature_scales())
    labels = model.mode_labels()
    weights = measured_weighting(fit, spec, model, documented_weighting, alpha / 4)
    density = density_check(fit, spec, documented_density, alpha / 4)

    n_lev, n_mod = int(cmp.measured.sum()), int((cmp.mode_dof > 0).sum())
    off_level = cmp.measured & (cmp.level_p < alpha / 4 / max(n_lev, 1))
    off_mode = (cmp.mode_dof > 0) & (cmp.mode_p < alpha / 4 / max(n_mod, 1))
    failures = []
    if fit.off_grid:
        vals = ", ".join(f"{v:.6g}" for v in fit.off_grid_values)
        failures.append(f"the model was called {fit.off_grid} times with {spec.conditioning_name} values not on the "
                        f"declared grid (e.g. {vals}; grid {float(spec.conditioning.min()):.6g}..{float(spec.conditioning.max()):.6g}): "
                        f"the model is told a different noise level than the one added")
    if fit.quadratic_defect > QUADRATIC_TOLERANCE:
        failures.append(f"the loss is not a squared loss in the model output reproducible from the generator "
                        f"(relative gradient mismatch {fit.quadratic_defect:.2e} > {QUADRATIC_TOLERANCE:g})")
    if n_lev < 2:
        failures.append(f"only {n_lev} {spec.conditioning_name} values got the {MIN_SAMPLES} samples needed to "
                        f"measure them: raise n_batches or batch_size")
    if off_level.any():
        idx = np.flatnonzero(off_level)
        worst = sorted(idx, key=lambda j: -cmp.level_chi2[j] / max(cmp.level_dof[j], 1))
        names = [f"{spec.conditioning_name} {float(spec.conditioning[j]):.6g} (sigma={float(spec.sigma[j]):.4g}, "
                 f"chi2/dof={cmp.level_chi2[j] / max(cmp.level_dof[j], 1):.3g})" for j in worst]
        failures.append(f"implied denoiser off at {len(idx)} of {n_lev} noise levels: {_names(names, len(idx))}")
    if off_mode.any():
        idx = np.flatnonzero(off_mode)
        worst = sorted(idx, key=lambda k: -cmp.mode_chi2[k] / max(cmp.mode_dof[k], 1))
        names = [f"k={labels[k]} (chi2/dof={cmp.mode_chi2[k] / max(cmp.mode_dof[k], 1):.3g})" for k in worst]
        failures.append(f"implied denoiser off in {len(idx)} of {n_mod} modes: {_names(names, len(idx))}")
    failures += weights["failures"] + density["failures"]

    variances = model.mode_variances() if hasattr(model, "mode_variances") else torch.full((len(labels),), math.nan)
    modes = [ModeRow(mode=labels[k], variance=float(variances[k]), chi2=float(cmp.mode_chi2[k]), dof=int(cmp.mode_dof[k]),
                     p_value=float(cmp.mode_p[k]), off=bool(off_mode[k]),
                     worst_level=int(np.nanargmax(np.where(np.isfinite(cmp.chi2[:, k]), cmp.chi2[:, k], -1.0))))
             for k in range(len(labels))]
    return ObjectiveReport(
        name=name, target=target_name, output=spec.output, conditioning_name=spec.conditioning_name,
        passed=not failures, failures=tuple(failures), alpha=alpha, n_samples=n_batches * batch_size,
        n_batches=n_batches, levels=tuple(_level_rows(spec, cmp, fit, labels, off_level, weights)), modes=tuple(modes),
        global_chi2=cmp.global_chi2, global_dof=cmp.global_dof, global_p=cmp.global_p,
        quadratic_defect=fit.quadratic_defect, off_grid=fit.off_grid, off_grid_values=fit.off_grid_values,
        levels_measured=n_lev, weighting=weights["summary_dict"], density=density["summary_dict"],
    )
