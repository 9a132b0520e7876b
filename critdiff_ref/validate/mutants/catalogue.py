"""Planted-bug samplers and their correct references: the catalogue of the validator's power test (THEORY 1, 2).

Each mutant is a correct reference sampler below with exactly one line changed (marked ``# BUG``),
a bug of a kind real diffusion libraries have shipped.  ``validate()`` must fail every mutant and
pass every correct sampler; :func:`critdiff_ref.validate.mutants.power.power_matrix` runs that matrix and names
the check that caught each mutant and by how much.  The samplers: :mod:`critdiff_ref.validate.mutants.samplers` and :mod:`critdiff_ref.validate.mutants.schedulers`.

Conventions (those of :mod:`critdiff_ref.validate.runners`):

- ``"score"``: ``sampler(score, process, x_T, steps, **kw) -> x_0`` integrating ``T -> t_min`` on the
  uniform grid ``t_i = T - i (T - t_min)/N`` with the PF-ODE ``dx/dt = -gamma x - (g^2/2) s`` or the
  reverse SDE ``dx = [-gamma x - g^2 s] dt + g dW_bar`` (THEORY 1).
- ``"denoiser"``: ``sampler(model, x, sigmas) -> x_0`` with ``model(x, sigma) = x + sigma^2 s``
  (k-diffusion / EDM, VE in sigma).
- ``"diffusers"``: a scheduler class with diffusers' interface (:mod:`.schedulers`) run by the
  adapter's standard loop (``set_timesteps``, ``scale_model_input``, ``step(...).prev_sample``).
- ``"velocity"``: ``sampler(velocity, x_1, sigmas) -> x_0`` with the rectified-flow velocity and uniform
  ``sigmas`` from 1 to 0 (flow matching, :mod:`critdiff_ref.validate.runners.velocity`).

Registry entries are :class:`Entry` ``(sampler, adapter, description, options, caught_by)``; ``options`` are
the ``validate()`` keyword arguments the sampler is written for (its documented ``order``, and
``process=VP()`` for the samplers whose formulas hold for VP only); they take precedence over the power
matrix's settings.  The planted bugs of the solver-library samplers are in the same format
(:data:`LIBRARY_MUTANTS`, their parents :data:`LIBRARY_CORRECT`, each needing the libraries in
:data:`LIBRARY_NEEDS`).
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

from ...processes import VP
from ...samplers import probability_flow, reverse_sde
from ...samplers.sde_schemes import reverse_sde_heun
from ..libraries.flow_matching_ode import flow_matching_sample
from ..libraries.mutants import (
    flow_matching_time_swapped,
    odeint_drift_sign_flipped,
    odeint_fixed_atol,
    sdeint_diffusion_squared,
    sdeint_score_at_reverse_time,
)
from ..libraries.odeint import odeint_probability_flow
from ..libraries.sdeint import sdeint_reverse_sde
from ..references import edm_euler
from .samplers import (
    mut_ddim_abar_swapped,
    mut_dpmpp_sde_increment_wrong_interval,
    mut_edm_heun_wrong_time,
    mut_em_g2_factor,
    mut_em_noise_scale,
    mut_euler_flow_sign,
    mut_euler_vp_drift_factor,
    mut_flow_euler_shift_twice,
    mut_heun_dropped_stage,
    mut_heun_no_final_step,
    mut_heun_previous_time,
    mut_rk4_float32_time,
    ref_ddim,
    ref_dpmpp_sde,
    ref_edm_heun,
    ref_em,
    ref_flow_euler_sd3,
    ref_pf_euler,
    ref_pf_heun,
    ref_pf_rk4,
)
from .schedulers import DDIMLikeScheduler, DDIMLikeSchedulerPrevIndexBug, LCMLikeScheduler, LCMLikeSchedulerRenoiseBug

__all__ = ["Entry", "MUTANTS", "CORRECT", "PARENTS", "LIBRARY_MUTANTS", "LIBRARY_CORRECT", "LIBRARY_PARENTS",
           "LIBRARY_NEEDS"]


class Entry(NamedTuple):
    """A registry row: the sampler, its adapter name, one line on what it is, validate() options, and (planted bugs)
    the kind of check that must catch it (``""``: any)."""

    sampler: Callable
    adapter: str
    description: str
    options: dict = {}
    caught_by: str = ""


_VP = {"process": VP()}

MUTANTS: dict[str, Entry] = {
    "heun_previous_timestep": Entry(mut_heun_previous_time, "score",
                                    "PF-ODE Heun, first stage told the previous timestep (off-by-one index)", {"order": 2.0}),
    "heun_dropped_second_stage": Entry(mut_heun_dropped_stage, "score",
                                       "PF-ODE Heun with the corrector stage dropped (Euler sold as Heun)", {"order": 2.0}),
    "heun_no_final_step": Entry(mut_heun_no_final_step, "score",
                                "PF-ODE Heun stopping one step early (no denoise to t_min)", {"order": 2.0}),
    "euler_flow_sign": Entry(mut_euler_flow_sign, "score",
                             "PF-ODE Euler with +g^2/2 s (sign error in the probability-flow drift)", {"order": 1.0}),
    "euler_vp_drift_factor_2": Entry(mut_euler_vp_drift_factor, "score",
                                     "PF-ODE Euler with the VP drift -beta x instead of -beta x / 2", {"order": 1.0, **_VP}),
    "em_g2_factor_2": Entry(mut_em_g2_factor, "score",
                            "Euler-Maruyama with g^2/2 s in the reverse drift (missing factor 2 in g^2)", {"order": 1.0}),
    "em_noise_g_not_g_sqrt_h": Entry(mut_em_noise_scale, "score",
                                     "Euler-Maruyama with noise g z instead of g sqrt(h) z", {"order": 1.0}),
    "ddim_abar_sqrt_swapped": Entry(mut_ddim_abar_swapped, "score",
                                    "DDIM (VP) with abar and sqrt(abar) swapped in the schedule", {"order": 1.0, **_VP}),
    "rk4_float32_time": Entry(mut_rk4_float32_time, "score",
                              "PF-ODE RK4 accumulating its time in float32", {"order": 4.0}),
    "edm_heun_corrector_wrong_sigma": Entry(mut_edm_heun_wrong_time, "denoiser",
                                            "EDM Heun with the corrector's denoiser at the step's start sigma", {"order": 2.0}),
    "ddim_scheduler_prev_index": Entry(DDIMLikeSchedulerPrevIndexBug, "diffusers",
                                       "diffusers-like DDIM stepping to timesteps[i + 2] (previous-timestep index off by one)",
                                       {"order": 1.0}),
    "dpmpp_sde_increment_wrong_interval": Entry(mut_dpmpp_sde_increment_wrong_interval, "denoiser",
                                                "DPM-Solver++ SDE with the stage-2 Brownian increment at the wrong time "
                                                "([sigma_mid, sigma_next] instead of [sigma_i, sigma_next])", {"order": 2.0}),
    # consistency samplers: "order" is diffusers' one model call per step; validate() replaces the order
    # check by the consistency check (the exact law at every step count, validate.checks.consistency)
    "lcm_renoise_sqrt_abar": Entry(LCMLikeSchedulerRenoiseBug, "diffusers",
                                   "LCM-like consistency sampler re-noising with variance 1 - sqrt(abar') (sqrt(abar) for abar)",
                                   {"order": 1.0}),
    "flow_euler_shift_twice": Entry(mut_flow_euler_shift_twice, "velocity",
                                    "flow-matching Euler (SD3 shift 3) with the shift applied twice to the model's time",
                                    {"order": 1.0}),
}

# mutant -> the CORRECT entry it deviates from by one line
PARENTS: dict[str, str] = {
    "heun_previous_timestep": "ref_pf_heun",
    "heun_dropped_second_stage": "ref_pf_heun",
    "heun_no_final_step": "ref_pf_heun",
    "euler_flow_sign": "ref_pf_euler",
    "euler_vp_drift_factor_2": "ref_pf_euler[VP]",
    "em_g2_factor_2": "ref_em",
    "em_noise_g_not_g_sqrt_h": "ref_em",
    "ddim_abar_sqrt_swapped": "ref_ddim[VP]",
    "rk4_float32_time": "ref_pf_rk4",
    "edm_heun_corrector_wrong_sigma": "ref_edm_heun",
    "dpmpp_sde_increment_wrong_interval": "ref_dpmpp_sde",
    "ddim_scheduler_prev_index": "ddim_scheduler",
    "lcm_renoise_sqrt_abar": "lcm_scheduler",
    "flow_euler_shift_twice": "ref_flow_euler_sd3",
}

CORRECT: dict[str, Entry] = {
    "probability_flow[euler]": Entry(functools.partial(probability_flow, method="euler"), "score",
                                     "samplers.probability_flow, Euler", {"order": 1.0}),
    "probability_flow[heun]": Entry(functools.partial(probability_flow, method="heun"), "score",
                                    "samplers.probability_flow, Heun", {"order": 2.0}),
    "probability_flow[rk4]": Entry(functools.partial(probability_flow, method="rk4"), "score",
                                   "samplers.probability_flow, RK4", {"order": 4.0}),
    "reverse_sde": Entry(reverse_sde, "score", "samplers.reverse_sde (Euler-Maruyama)", {"order": 1.0}),
    "reverse_sde_heun": Entry(reverse_sde_heun, "score", "sde_order.reverse_sde_heun (stochastic Heun)", {"order": 2.0}),
    "ref_pf_euler": Entry(ref_pf_euler, "score", "reference PF-ODE Euler (parent of euler_* mutants)", {"order": 1.0}),
    "ref_pf_euler[VP]": Entry(ref_pf_euler, "score", "reference PF-ODE Euler on VP", {"order": 1.0, **_VP}),
    "ref_pf_heun": Entry(ref_pf_heun, "score", "reference PF-ODE Heun (parent of heun_* mutants)", {"order": 2.0}),
    "ref_pf_rk4": Entry(ref_pf_rk4, "score", "reference PF-ODE RK4 (parent of rk4_float32_time)", {"order": 4.0}),
    "ref_em": Entry(ref_em, "score", "reference Euler-Maruyama (parent of em_* mutants)", {"order": 1.0}),
    "ref_ddim[VP]": Entry(ref_ddim, "score", "reference DDIM eta = 0 on VP (parent of ddim_* mutants)", {"order": 1.0, **_VP}),
    "ref_edm_heun": Entry(ref_edm_heun, "denoiser", "reference EDM Heun (parent of edm_* mutants)", {"order": 2.0}),
    "ref_dpmpp_sde": Entry(ref_dpmpp_sde, "denoiser", "reference DPM-Solver++ SDE on one Brownian path (parent of dpmpp_sde_*)",
                           {"order": 2.0}),
    "edm_euler": Entry(edm_euler, "denoiser", "validate.references.edm_euler (k-diffusion sample_euler)", {"order": 1.0}),
    "ddim_scheduler": Entry(DDIMLikeScheduler, "diffusers", "diffusers-like DDIM scheduler (parent of ddim_scheduler_*)",
                            {"order": 1.0}),
    "lcm_scheduler": Entry(LCMLikeScheduler, "diffusers", "diffusers-like LCM scheduler (parent of lcm_*)", {"order": 1.0}),
    "ref_flow_euler_sd3": Entry(ref_flow_euler_sd3, "velocity", "reference flow-matching Euler, SD3 shift 3 (parent of flow_*)",
                                {"order": 1.0}),
}

# planted bugs in samplers built on the solver libraries (validate.libraries.mutants); ``caught_by`` names the check
# kind that must catch the bug.  "adaptive": run through adaptive_checks(options["method"], sampler=...), not validate()
LIBRARY_MUTANTS: dict[str, Entry] = {
    "odeint_drift_sign_flipped": Entry(
        odeint_drift_sign_flipped, "score", "torchdiffeq odeint (RK4) on the PF-ODE with the drift negated",
        {"order": 4.0, "sampler_kwargs": {"method": "rk4"}}, "covariance"),
    "sdeint_diffusion_squared": Entry(
        sdeint_diffusion_squared, "score", "torchsde sdeint (Euler) with g^2 handed over as the diffusion",
        {"order": 1.0, "sampler_kwargs": {"method": "euler"}}, "covariance"),
    "sdeint_score_at_reverse_time": Entry(
        sdeint_score_at_reverse_time, "score", "torchsde sdeint (Euler) with the score at torchsde's time u, not T - u",
        {"order": 1.0, "sampler_kwargs": {"method": "euler"}}, "covariance"),
    # invisible on Gaussians (the swapped ODE has the right Gaussian end law): the two-peak mixture catches it
    "flow_matching_time_swapped": Entry(
        flow_matching_time_swapped, "velocity", "flow_matching ODESolver (midpoint) with t = 0 and t = 1 swapped",
        {"order": 2.0, "sampler_kwargs": {"method": "midpoint"}, "targets": ("gaussian", "mixture")}, "kappa_2"),
    "odeint_fixed_atol": Entry(
        odeint_fixed_atol, "adaptive", "adaptive torchdiffeq PF-ODE (dopri5) forwarding rtol but keeping atol = 1e-3",
        {"method": "dopri5"}, "tolerance"),
}

# the correct library samplers the planted bugs deviate from (the same options, so the same checks run)
LIBRARY_CORRECT: dict[str, Entry] = {
    "torchdiffeq.odeint[rk4]": Entry(odeint_probability_flow, "score", "torchdiffeq odeint (RK4) on the PF-ODE",
                                     {"order": 4.0, "sampler_kwargs": {"method": "rk4"}}),
    "torchsde.sdeint[euler]": Entry(sdeint_reverse_sde, "score", "torchsde sdeint (Euler) on the reverse SDE",
                                    {"order": 1.0, "sampler_kwargs": {"method": "euler"}}),
    "flow_matching.ODESolver[condot,midpoint]": Entry(
        flow_matching_sample, "velocity", "flow_matching ODESolver (midpoint) on the CondOT path",
        {"order": 2.0, "sampler_kwargs": {"scheduler": "condot", "method": "midpoint"},
         "targets": ("gaussian", "mixture")}),
    "torchdiffeq.odeint[dopri5]": Entry(odeint_probability_flow, "adaptive", "adaptive torchdiffeq PF-ODE (dopri5)",
                                        {"method": "dopri5"}),
}

LIBRARY_PARENTS: dict[str, str] = {
    "odeint_drift_sign_flipped": "torchdiffeq.odeint[rk4]",
    "sdeint_diffusion_squared": "torchsde.sdeint[euler]",
    "sdeint_score_at_reverse_time": "torchsde.sdeint[euler]",
    "flow_matching_time_swapped": "flow_matching.ODESolver[condot,midpoint]",
    "odeint_fixed_atol": "torchdiffeq.odeint[dopri5]",
}

# library entry (planted bug or correct sampler) -> the solver libraries (keys of the registry's LIBRARIES) it needs
LIBRARY_NEEDS: dict[str, tuple[str, ...]] = {
    "odeint_drift_sign_flipped": ("torchdiffeq",),
    "sdeint_diffusion_squared": ("torchsde",),
    "sdeint_score_at_reverse_time": ("torchsde",),
    "flow_matching_time_swapped": ("flow-matching", "torchdiffeq"),
    "odeint_fixed_atol": ("torchdiffeq",),
    "torchdiffeq.odeint[rk4]": ("torchdiffeq",),
    "torchsde.sdeint[euler]": ("torchsde",),
    "flow_matching.ODESolver[condot,midpoint]": ("flow-matching", "torchdiffeq"),
    "torchdiffeq.odeint[dopri5]": ("torchdiffeq",),
}
