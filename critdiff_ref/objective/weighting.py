"""The loss weighting and timestep density an objective actually applies, measured (THEORY 9).

For a squared loss ``w(c) |out - y|^2`` and ``out = theta x_in``, the curvature in level ``j`` summed
over modes is ``sum_i 2 w_j s_in,j^2 sum_sites x_t^2`` over the samples ``i`` at that level, so
``w_j`` is proportional to ``H_j / (n_j s_in,j^2 E sum x_t^2)`` (ratio estimator over independent
batches, sandwich standard error).  The visited density is the fraction of samples per level.  Both
are compared with documented ones when given; documented schemes are in :mod:`.cases.documented`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from scipy import stats

from .compare import MIN_SAMPLES, ROUNDOFF
from .fit import QuadraticFit
from .spec import ModelSpec

__all__ = ["measured_weighting", "density_check", "MIN_EXPECTED"]

MIN_EXPECTED = 5.0  # Pearson chi-square needs >= 5 expected counts per bin; rarer levels are pooled


def _documented(fn, spec: ModelSpec, what: str) -> np.ndarray:
    values = torch.as_tensor(fn(spec), dtype=torch.float64).reshape(-1)
    if values.numel() != spec.n_levels or not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
        raise ValueError(f"documented {what} must give {spec.n_levels} finite values >= 0, one per conditioning value")
    return values.numpy()


def measured_weighting(fit: QuadraticFit, spec: ModelSpec, model, documented: Callable | None, alpha: float) -> dict:
    """Per-level weight in the model-output space (relative), its standard error, and the comparison."""
    K = (spec.input_scale**2 * model.input_power()).numpy()  # (levels,)
    H_b = fit.curvature_groups[..., 0].sum(-1).numpy()  # (groups, levels)
    n_b = fit.counts_groups.numpy()
    den = (n_b * K).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = H_b.sum(0) / den
        resid = H_b - w * n_b * K
        nvis = (n_b > 0).sum(0)
        se = np.sqrt((resid**2).sum(0) * nvis / np.maximum(nvis - 1, 1)) / den
    ok = (nvis >= 3) & (den > 0) & (fit.counts.numpy() >= MIN_SAMPLES)
    w, se = np.where(ok, w, np.nan), np.where(ok, se, np.nan)
    counts = fit.counts.numpy()
    doc = np.full(spec.n_levels, np.nan)
    failures: list[str] = []
    summary: dict = {}
    if documented is not None:
        doc = _documented(documented, spec, "weighting")
        use = ok & (doc > 0)
        scale = np.nansum(np.where(use, counts * w, 0)) / np.sum(np.where(use, counts * doc, 0))
        w, se = w / scale, se / scale
        z = (w - doc) / np.sqrt(se**2 + (ROUNDOFF * doc) ** 2)
        # z has a t distribution with nu = groups - 1 (sandwich over the groups of batches)
        bad = use & (np.abs(z) > stats.t.isf(alpha / 2 / max(int(use.sum()), 1), np.maximum(nvis - 1, 1)))
        bad |= ok & (doc == 0) & (w > 10 * se)
        rel = np.where(use, w / np.where(doc > 0, doc, 1) - 1, np.nan)
        summary = {"compared_levels": int(use.sum()), "max_relative_deviation": float(np.nanmax(np.abs(rel))),
                   "off_levels": int(bad.sum())}
        if bad.any():
            idx = np.flatnonzero(bad)
            worst = sorted(idx, key=lambda j: -abs(z[j]))[:6]
            names = ", ".join(f"{spec.conditioning_name} {float(spec.conditioning[j]):.6g} (sigma={float(spec.sigma[j]):.4g}): "
                              f"{w[j]:.4g} vs {doc[j]:.4g}"
                              for j in worst)
            failures.append(f"loss weighting differs from the documented one (up to a constant) at {len(idx)} levels "
                            f"(measured vs documented: {names})")
        summary["summary"] = (f"compared with the documented weighting at {summary['compared_levels']} levels, "
                              f"max relative deviation {summary['max_relative_deviation']:.3g}")
    else:
        med = np.nanmedian(w) if ok.any() else 1.0
        med = med if np.isfinite(med) and med > 0 else 1.0  # zero curvature (not a squared loss): leave unscaled
        w, se = w / med, se / med
        summary = {"summary": f"measured at {int(ok.sum())} levels (relative to the median level), no documented weighting given"}
    return {"weight": w, "stderr": se, "documented": doc, "failures": failures, "summary_dict": summary}


def density_check(fit: QuadraticFit, spec: ModelSpec, documented: Callable | None, alpha: float) -> dict:
    """Visited fraction of each conditioning value vs a documented density (Pearson chi-square, rare bins pooled)."""
    counts = fit.counts.numpy()
    n = counts.sum()
    if documented is None:
        visited = int((counts > 0).sum())
        return {"failures": [], "summary_dict": {"visited_levels": visited,
                                                 "summary": f"{visited} of {spec.n_levels} values visited, no documented density given"}}
    p = _documented(documented, spec, "density")
    if not np.isclose(p.sum(), 1.0, atol=1e-6):
        raise ValueError(f"documented density must sum to 1 over the conditioning values, got {p.sum():.6g}")
    expected = n * p
    big = expected >= MIN_EXPECTED
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    chi2 = float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum())
    dof = int(keep.sum()) - 1
    pval = float(stats.chi2.sf(chi2, max(dof, 1)))
    failures = []
    outside = (p == 0) & (counts > 0)
    if outside.any():
        failures.append(f"{int(counts[outside].sum())} samples at {spec.conditioning_name} values the documented density never draws")
    if pval < alpha:
        dev = np.where(big, (counts - expected) / np.sqrt(np.where(big, expected, 1)), 0)
        worst = np.argsort(-np.abs(dev))[:4]
        names = ", ".join(f"{spec.conditioning_name} {float(spec.conditioning[j]):.6g}: {int(counts[j])} vs {expected[j]:.1f}"
                          for j in worst)
        failures.append(f"timestep density differs from the documented one: chi2 {chi2:.1f} on {dof} dof "
                        f"(p = {pval:.2g}); visited vs expected: {names}")
    return {"failures": failures, "summary_dict": {"chi2": chi2, "dof": dof, "p_value": pval,
                                                   "summary": f"chi2 {chi2:.1f} on {dof} dof vs documented (p = {pval:.3g})"}}
