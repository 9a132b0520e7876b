"""FlowMatchEulerDiscreteScheduler(stochastic_sampling=True) does not converge on a flow-matching (velocity) model:
the law tends to half the data variance per mode.

Needs only diffusers, torch, numpy.  Exact model: the rectified flow of a Gaussian with per-mode variances c_k
(critical 2-D lattice field, L = 16), exact velocity x (s - (1 - s) c) / C_s per mode, C_s = (1 - s)^2 c + s^2.
The step x0 = x - sigma v, x' = (1 - sigma') x0 + sigma' noise is linear in the start and every noise draw; the
scheduler's module function `randn_tensor` is replaced by one that returns basis states, so one batched run
(rows: the start, then one row per draw) gives each mode's generated variance exactly (sum of squares over rows).

Cause: it is LCM's denoise / re-noise step.  With the velocity model, x0 = x - sigma v is the posterior mean
E[x0 | x_s], whose variance c^2 / C_s is smaller than c; re-noising does not restore the lost part, so every step
loses O(1) variance and the law does not converge.  With a consistency model (x0 = the flow map to s = 0) the same
step is exact.  By design (a consistency-model option), not a one-line bug.
"""

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.schedulers import scheduling_flow_match_euler_discrete as module


def critical_modes(L, d):
    """Per-mode variances c_k = 1 / khat^2 of the critical Gaussian lattice field, zero mode removed."""
    s = 4 * np.sin(np.pi * np.arange(L) / L) ** 2
    khat2 = sum(np.meshgrid(*([s] * d), indexing="ij")).ravel()[1:]
    return torch.tensor(1.0 / khat2, dtype=torch.float64)


def variances(n, c):
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0, stochastic_sampling=True)
    sched.set_timesteps(n)
    x = torch.zeros(n + 1, len(c), dtype=torch.float64)
    x[0] = 1.0  # the start z at sigma = 1 (exact: C_1 = 1)
    drawn = [0]

    def randn_tensor(shape, generator=None, device=None, dtype=None, **_):
        drawn[0] += 1
        e = torch.zeros(shape, dtype=torch.float64)
        e[drawn[0]] = 1.0
        return e

    original, module.randn_tensor = module.randn_tensor, randn_tensor
    try:
        for t in sched.timesteps:
            s = float(sched.sigmas[sched.step_index or 0])
            v = x * (s - (1 - s) * c) / ((1 - s) ** 2 * c + s**2)
            x = sched.step(v, t, x).prev_sample.to(torch.float64)
    finally:
        module.randn_tensor = original
    return (x**2).sum(0)


def main():
    c = critical_modes(16, 2)
    for n in (10, 100, 400):
        v = variances(n, c)
        err = float((v - c).norm() / c.norm())
        ratio = float((v / c).mean())
        print(f"N = {n:4d}: relative error {err:.3g}, mean per-mode v / c {ratio:.3f}")
        print(f"RESULT error_{n}={err:.4g}")
        print(f"RESULT ratio_{n}={ratio:.4g}")
    print("documented: the Euler step converges (first order); with stochastic_sampling it does not")


if __name__ == "__main__":
    main()
