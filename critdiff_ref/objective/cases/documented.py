"""Documented loss weightings and timestep densities, per conditioning value of a spec (THEORY 9).

Weightings are in the model-output space (the factor multiplying ``|out - target|^2``):
min-SNR-gamma (eps: ``min(snr, gamma) / snr``; v: ``min(snr, gamma) / (snr + 1)``), EDM's
``lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2`` on the denoiser (``lambda c_out^2 = 1`` on F),
and SD3's ``compute_loss_weighting_for_sd3`` schemes (``sigma_sqrt``: ``sigma^-2``; ``cosmap``:
``2 / (pi (1 - 2 sigma + 2 sigma^2))``; otherwise 1).  Densities: SD3's logit-normal and "mode"
timestep sampling mapped to an index by ``floor(u N)``, and the uniform index.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from scipy import optimize, special, stats

from ..spec import ModelSpec

__all__ = ["min_snr_weighting", "edm_weighting", "sd3_weighting", "sd3_density", "uniform_density"]

Documented = Callable[[ModelSpec], torch.Tensor]


def min_snr_weighting(gamma: float = 5.0, prediction: str = "eps") -> Documented:
    """Min-SNR-gamma weight in the eps or v output space (Hang et al. 2023; diffusers ``compute_snr``)."""
    if prediction not in ("eps", "v"):
        raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")

    def weight(spec: ModelSpec) -> torch.Tensor:
        snr = (spec.alpha / spec.sigma) ** 2
        return snr.clamp(max=gamma) / (snr if prediction == "eps" else snr + 1.0)

    return weight


def edm_weighting(sigma_data: float = 0.5) -> Documented:
    """EDM's ``lambda(sigma) c_out(sigma)^2`` (Karras et al. 2022): 1 for the raw F output; ``lambda`` for x0."""

    def weight(spec: ModelSpec) -> torch.Tensor:
        lam = (spec.sigma**2 + sigma_data**2) / (spec.sigma * sigma_data) ** 2
        return lam * spec.c_out**2 if spec.output == "edm" else lam

    return weight


def sd3_weighting(scheme: str) -> Documented:
    """diffusers ``compute_loss_weighting_for_sd3(scheme, sigmas)`` written out from the SD3 paper."""

    def weight(spec: ModelSpec) -> torch.Tensor:
        s = spec.sigma
        if scheme == "sigma_sqrt":
            return s**-2.0
        if scheme == "cosmap":
            return 2.0 / (math.pi * (1.0 - 2.0 * s + 2.0 * s * s))
        return torch.ones_like(s)

    return weight


def _index_probabilities(cdf: Callable[[np.ndarray], np.ndarray], n: int) -> np.ndarray:
    edges = cdf(np.arange(n + 1) / n)
    return np.diff(edges)


def sd3_density(scheme: str, n_train: int, *, logit_mean: float = 0.0, logit_std: float = 1.0,
                mode_scale: float = 1.29) -> Documented:
    """Probability of each index ``floor(u n_train)`` under SD3's timestep sampling (``u`` from
    ``compute_density_for_timestep_sampling``), assigned to the spec's levels in index order."""

    def cdf(u: np.ndarray) -> np.ndarray:
        if scheme == "logit_normal":
            with np.errstate(divide="ignore"):
                return stats.norm.cdf((special.logit(u) - logit_mean) / logit_std)
        if scheme == "mode":  # u' = 1 - u - s (cos^2(pi u / 2) - 1 + u), decreasing in u for s < ~1.3
            f = lambda v: 1 - v - mode_scale * (math.cos(math.pi * v / 2) ** 2 - 1 + v)
            inv = [1.0 - optimize.brentq(lambda v: f(v) - x, 0.0, 1.0) if 0 < x < 1 else float(x) for x in u]
            return np.array(inv)
        return u

    def density(spec: ModelSpec) -> torch.Tensor:
        if spec.n_levels != n_train:
            raise ValueError(f"sd3_density needs a spec with {n_train} levels, got {spec.n_levels}")
        return torch.as_tensor(_index_probabilities(cdf, n_train))

    return density


def uniform_density(spec: ModelSpec) -> torch.Tensor:
    """Every conditioning value equally likely (``torch.randint`` over the index)."""
    return torch.full((spec.n_levels,), 1.0 / spec.n_levels, dtype=torch.float64)
