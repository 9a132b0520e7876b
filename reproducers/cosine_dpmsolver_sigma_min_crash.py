"""CosineDPMSolverMultistepScheduler(final_sigmas_type="sigma_min") crashes inside torchsde's BrownianInterval.

Needs only diffusers, torchsde, torch, numpy.  No exact model is needed: any finite model output reproduces it
(zeros here).  Cause: the last two sigmas are sigma_min up to float32 rounding (0.29999998 and 0.30000001); the
scheduler's Brownian tree is asked for an increment over that (reversed, ~3e-8 long) interval and recurses until
Python's limit.  The default final_sigmas_type="zero" runs.
"""

import torch
from diffusers import CosineDPMSolverMultistepScheduler


def run(final):
    sched = CosineDPMSolverMultistepScheduler(final_sigmas_type=final)
    sched.set_timesteps(20)
    x = torch.ones(1, 4) * float(sched.init_noise_sigma)
    tail = [float(s) for s in sched.sigmas[-3:]]
    try:
        for t in sched.timesteps:
            x = sched.step(torch.zeros_like(x), t, sched.scale_model_input(x, t),
                           generator=torch.Generator().manual_seed(0)).prev_sample
    except RecursionError:
        return "RecursionError", tail
    return "ok", tail


def main():
    for final in ("zero", "sigma_min"):
        outcome, tail = run(final)
        print(f"final_sigmas_type={final!r}: {outcome} (last sigmas {', '.join(f'{s:.8g}' for s in tail)})")
        print(f"RESULT {final}={outcome}")


if __name__ == "__main__":
    main()
