"""FlowMatchEulerDiscreteScheduler with use_karras_sigmas / use_exponential_sigmas discards the shift.

Needs only diffusers, torch, numpy.  Exact model as in flowmatch_heun_order_cap.py: rectified flow of a Gaussian
with per-mode variances c_k (critical 2-D lattice field, L = 16), exact velocity x (s - (1 - s) c) / C_s per mode,
one linear run from x_1 = 1, "error" = relative error of the generated variances against c (exact start, grid
ending at 0: all of it is the sampler's).

Cause: with Karras / exponential sigmas the grid is rebuilt from its two end points (rho = 7, or geometric, between
sigma_min and sigma_max); the shift survives only in sigma_min, steps crowd near sigma = 0, and Euler's error at
equal N grows.  Not a one-line fix (a design choice); measured against the shifted linear grid.
"""

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler


def critical_modes(L, d):
    """Per-mode variances c_k = 1 / khat^2 of the critical Gaussian lattice field, zero mode removed."""
    s = 4 * np.sin(np.pi * np.arange(L) / L) ** 2
    khat2 = sum(np.meshgrid(*([s] * d), indexing="ij")).ravel()[1:]
    return torch.tensor(1.0 / khat2, dtype=torch.float64)


def error(scheduler, n, c):
    scheduler.set_timesteps(n)
    x = torch.ones_like(c)
    for t in scheduler.timesteps:
        s = float(scheduler.sigmas[scheduler.step_index or 0])
        v = x * (s - (1 - s) * c) / ((1 - s) ** 2 * c + s**2)
        x = scheduler.step(v, t, x).prev_sample.to(torch.float64)
    return float((x**2 - c).norm() / c.norm())


def main():
    c = critical_modes(16, 2)
    n = 100
    base = error(FlowMatchEulerDiscreteScheduler(shift=3.0), n, c)
    print(f"Euler, shift 3, N = {n}: linear shifted grid {base:.3g}")
    print(f"RESULT shifted={base:.4g}")
    for kind in ("karras", "exponential", "beta"):
        err = error(FlowMatchEulerDiscreteScheduler(shift=3.0, **{f"use_{kind}_sigmas": True}), n, c)
        print(f"  use_{kind}_sigmas: {err:.3g} ({err / base:.2f}x)")
        print(f"RESULT {kind}_ratio={err / base:.3f}")


if __name__ == "__main__":
    main()
