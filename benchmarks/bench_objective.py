"""Cost of validating one training objective against the exact optimum (THEORY 9): the diffusers
eps, flow-matching and EDM objectives on the critical field (d = 2, r = 0), default sample budget
(64 batches of 4096: 262 samples per timestep on 1000 timesteps).  The target is < 1 minute of CPU
at the default L = 16."""

from __future__ import annotations

from critdiff_ref.objective import DIFFUSERS_CASES, validate_objective
from critdiff_ref.targets.gaussian_field import GaussianField

from .common import VERSION


class ValidateObjective:
    """``validate_objective`` on a built-in diffusers case (data, quadratic fit, comparison, report)."""

    params = (["ddpm-eps", "flow-match-logit-normal", "edm-euler"], [8, 16])
    param_names = ["case", "L"]
    version = VERSION
    timeout = 600

    def setup(self, case, L):
        if case not in DIFFUSERS_CASES:
            raise ValueError(f"case must be one of {sorted(DIFFUSERS_CASES)}, got case={case!r}")
        self.case = DIFFUSERS_CASES[case]()
        self.field = GaussianField(L, 2, 0.0)

    def time_validate(self, case, L):
        c = self.case
        validate_objective(c.objective, c.spec, target=self.field, documented_weighting=c.documented_weighting,
                           documented_density=c.documented_density)
