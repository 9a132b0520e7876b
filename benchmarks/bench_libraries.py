"""Adaptive ODE solvers from torchdiffeq on the critical Gaussian field (``critdiff_ref.validate.libraries``):
function evaluations and delivered error against L and the tolerance, and the wall time of one probe solve.

The tests assert only that NFE does not grow as a power of L over L = 4..16 (``adaptive_checks``); these
benchmarks show it over a larger range.  ``setup`` raises NotImplementedError (asv: skip) without torchdiffeq or
when the probe batch (``L^d`` starts of ``L^d`` sites) exceeds the CPU size cap.
"""

from __future__ import annotations

import importlib.util

from critdiff_ref import GaussianField

from .common import VERSION, require_sites


class AdaptivePFODE:
    """dopri5 / bosh3 on the PF-ODE (VE(25, 1)) of the critical d = 2 field, probe batch of L^2 white-noise starts."""

    params = ([4, 8, 16, 32, 64], ["dopri5", "bosh3"], [1e-4, 1e-6])
    param_names = ["L", "method", "rtol"]
    version = VERSION

    def setup(self, L, method, rtol):
        if importlib.util.find_spec("torchdiffeq") is None:
            raise NotImplementedError("torchdiffeq is not installed")
        require_sites(L, 2, L * L, "cpu")
        from critdiff_ref.validate.libraries import adaptive_probe

        self.field = GaussianField(L, 2, 0.0)
        self.probe = adaptive_probe
        self.result = None

    def _result(self, method, rtol):
        if self.result is None:
            self.result = self.probe(method, self.field, rtol=rtol)
        return self.result

    def time_probe_solve(self, L, method, rtol):
        self.probe(method, self.field, rtol=rtol)

    def track_nfe(self, L, method, rtol):
        return self._result(method, rtol).nfe

    track_nfe.unit = "drift evaluations"

    def track_global_error_over_tolerance(self, L, method, rtol):
        return self._result(method, rtol).state_error

    track_global_error_over_tolerance.unit = "requested tolerances"

    def track_worst_mode_error_over_tolerance(self, L, method, rtol):
        res = self._result(method, rtol)
        return res.mode_error / res.rtol

    track_worst_mode_error_over_tolerance.unit = "requested tolerances"
