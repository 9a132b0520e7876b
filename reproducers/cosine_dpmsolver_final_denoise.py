"""CosineDPMSolverMultistepScheduler does not converge: its error stops at that of its last step, a denoise from
its default sigma_min = 0.3 straight to 0.

Needs only diffusers, torchsde, torch, numpy.  Exact model: a Gaussian with per-mode variances c_k (critical 1-D
lattice field, L = 16); the exact EDM denoiser is D(x, sigma) = c / (c + sigma^2) x, and the model output F that
the scheduler's own v-prediction preconditioning turns into D is F = (D - c_skip x) / c_out at the scheduler's
sigma.  Its noise comes from `scheduler.noise_sampler(sigma_i, sigma_{i+1})` (disjoint intervals: independent
draws), which is replaced after `set_timesteps` by one returning basis states, so one batched run (rows: the start,
then one row per draw) gives each mode's generated variance exactly.  "error" is the relative error against the
exact reverse-SDE end law from N(0, sigma_max^2 + 1) at sigma_max: v = c + (1 - c) (c / (c + sigma_max^2))^2.
"last step alone" is the exact error of x0 = D(x, 0.3) applied to the exact law at sigma = 0.3.

Cause: the default final_sigmas_type="zero" appends 0 after sigma_min = 0.3 and the last update to 0 is the
denoiser itself (first order, a step of fixed size 0.3).  Not a one-line fix (a smaller sigma_min changes the
model the scheduler was designed for); measured.
"""

import numpy as np
import torch
from diffusers import CosineDPMSolverMultistepScheduler


def critical_modes(L, d):
    """Per-mode variances c_k = 1 / khat^2 of the critical Gaussian lattice field, zero mode removed."""
    s = 4 * np.sin(np.pi * np.arange(L) / L) ** 2
    khat2 = sum(np.meshgrid(*([s] * d), indexing="ij")).ravel()[1:]
    return torch.tensor(1.0 / khat2, dtype=torch.float64)


def error(n, c):
    sched = CosineDPMSolverMultistepScheduler()
    sched.set_timesteps(n)
    x = torch.zeros(n + 1, len(c), dtype=torch.float64)
    x[0] = float(sched.init_noise_sigma)
    drawn = [0]

    def noise_sampler(sigma, sigma_next):
        drawn[0] += 1
        e = torch.zeros_like(x)
        e[drawn[0]] = 1.0
        return e

    sched.noise_sampler = noise_sampler
    sd = sched.config.sigma_data
    for t in sched.timesteps:
        sched.scale_model_input(x, t)  # sets the step index
        s = float(sched.sigmas[sched.step_index])
        c_skip, c_out = sd**2 / (s * s + sd**2), -s * sd / (s * s + sd**2) ** 0.5
        F = (c / (c + s * s) * x - c_skip * x) / c_out
        x = sched.step(F, t, x).prev_sample.to(torch.float64)
    sigma_max = sched.config.sigma_max
    v_sde = c + (1 - c) * (c / (c + sigma_max**2)) ** 2
    return float(((x**2).sum(0) - v_sde).norm() / v_sde.norm())


def main():
    c = critical_modes(16, 1)
    s = 0.3
    alone = float((c**2 / (c + s * s) - c).norm() / c.norm())
    steps = (25, 50, 100)
    errs = [error(n, c) for n in steps]
    print(f"errors at N = {steps}: " + ", ".join(f"{e:.3g}" for e in errs) + f"; last step alone {alone:.3g}")
    for n, e in zip(steps, errs):
        print(f"RESULT error_{n}={e:.4g}")
    print(f"RESULT last_step={alone:.4g}")
    print("documented: second-order multistep (SDE-DPM-Solver++ 2M); the error must fall as N grows")


if __name__ == "__main__":
    main()
