"""LCMScheduler and TCDScheduler accept timestep_spacing and steps_offset and ignore them.

Needs only diffusers, torch, numpy.  No model is needed: the schedule is compared directly.  Cause: their
`set_timesteps` builds the timesteps from `original_inference_steps` alone and never reads the two config fields.
"""

import torch
from diffusers import LCMScheduler, TCDScheduler


def main():
    for cls in (LCMScheduler, TCDScheduler):
        seen = {}
        for spacing in ("leading", "trailing", "linspace"):
            for offset in (0, 1):
                sched = cls(timestep_spacing=spacing, steps_offset=offset)
                sched.set_timesteps(4)
                seen[(spacing, offset)] = tuple(int(t) for t in sched.timesteps)
        distinct = len(set(seen.values()))
        print(f"{cls.__name__}: {distinct} distinct schedule(s) over 3 spacings x 2 offsets: {sorted(set(seen.values()))}")
        print(f"RESULT {cls.__name__}_distinct={distinct}")


if __name__ == "__main__":
    main()
