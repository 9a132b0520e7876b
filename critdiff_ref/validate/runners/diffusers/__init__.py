"""diffusers schedulers run on exact models, by family (THEORY 1, 2): :mod:`.discrete` (diffusion-time
schedules: ``alphas_cumprod`` or EDM preconditioning), :mod:`.flow` (flow matching on the rectified flow),
:mod:`.continuous` (a continuous VP time with the scheduler's own levels: DDPMWuerstchen, IPNDM),
:mod:`.predictor_corrector` (ScoreSdeVe's ``step_pred`` / ``step_correct`` on the exact score),
:mod:`.consistency` (LCM, TCD, SCM, CMStochasticIterative on the exact consistency function).  Every family
runs the one loop of :mod:`.loop`.  Which class belongs to which family: :mod:`critdiff_ref.validate.registry`.
"""

from .consistency import CONSISTENCY_KINDS, Level, consistency_levels, consistency_runner, exact_law
from .continuous import SIGMA_AT_PURE_NOISE, continuous_runner, vp_levels
from .discrete import discrete_runner, end_sigma, timestep_sigma
from .flow import FLOW_PREDICTIONS, flow_scheduler_runner, velocity_sign
from .predictor_corrector import predictor_corrector_runner
from .loop import clean_config, noise_run, plain_config, prepared, sample, scheduler_module, unclamped_instance

__all__ = [
    "CONSISTENCY_KINDS",
    "Level",
    "consistency_levels",
    "consistency_runner",
    "exact_law",
    "SIGMA_AT_PURE_NOISE",
    "continuous_runner",
    "vp_levels",
    "discrete_runner",
    "end_sigma",
    "timestep_sigma",
    "FLOW_PREDICTIONS",
    "flow_scheduler_runner",
    "velocity_sign",
    "predictor_corrector_runner",
    "clean_config",
    "noise_run",
    "plain_config",
    "prepared",
    "sample",
    "scheduler_module",
    "unclamped_instance",
]
