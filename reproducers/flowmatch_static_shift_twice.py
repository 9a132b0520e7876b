"""FlowMatchEulerDiscreteScheduler / FlowMatchHeunDiscreteScheduler apply a static `shift` to sigma_min twice.

Needs only diffusers, torch, numpy.  No model is needed: the finding is in the schedule.

Cause: the constructor shifts the training sigmas and stores the shifted end as `self.sigma_min`; `set_timesteps`
spaces the inference grid linearly between `sigma_max` and that already shifted `sigma_min` and then shifts the
whole grid again.  The same map through `use_dynamic_shifting` (exponential, mu = ln shift) shifts once.  Fix
verified: a subclass whose constructor keeps the unshifted `sigma_min` (one line) gives the dynamic grid's end.
"""

import math

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler


def unshifted(sigma, shift):
    """Inverse of sigma -> shift sigma / (1 + (shift - 1) sigma)."""
    return sigma / (shift - (shift - 1) * sigma)


class FlowMatchEulerShiftOnce(FlowMatchEulerDiscreteScheduler):
    """The fix: keep sigma_min unshifted, so set_timesteps shifts it exactly once."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sigma_min = unshifted(self.sigma_min, self.config.shift)


def last_nonzero_sigma(scheduler, n, **kw):
    scheduler.set_timesteps(n, **kw)
    s = scheduler.sigmas
    return float(s[s > 0][-1])


def main():
    shift, n = 3.0, 50
    static = last_nonzero_sigma(FlowMatchEulerDiscreteScheduler(shift=shift), n)
    heun = FlowMatchHeunDiscreteScheduler(shift=shift)
    heun.set_timesteps(n)
    heun_last = float(heun.sigmas[heun.sigmas > 0][-1])
    dynamic = last_nonzero_sigma(FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True), n, mu=math.log(shift))
    fixed = last_nonzero_sigma(FlowMatchEulerShiftOnce(shift=shift), n)
    once = shift * 1e-3 / (1 + (shift - 1) * 1e-3)
    print(f"shift {shift}, N = {n}: last nonzero sigma")
    print(f"  static shift (Euler)        {static:.4g}")
    print(f"  static shift (Heun)         {heun_last:.4g}")
    print(f"  dynamic shifting, mu = ln 3 {dynamic:.4g}")
    print(f"  shift(1e-3) applied once    {once:.4g}")
    print(f"  patched (sigma_min kept)    {fixed:.4g}")
    print(f"RESULT static={static:.5g}")
    print(f"RESULT heun={heun_last:.5g}")
    print(f"RESULT dynamic={dynamic:.5g}")
    print(f"RESULT fixed={fixed:.5g}")


if __name__ == "__main__":
    main()
