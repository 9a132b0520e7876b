"""Training cost and training scaling (THEORY 3, 4): one full-batch epoch on the exact population loss
for the one-layer and two-layer circular-convolution scores, and the steps-to-accuracy exponents
``steps ~ L^z`` (one-layer z = 2, heavy ball z = 1, two-layer z = 0: logarithmic).
"""

from __future__ import annotations

from critdiff_ref import OU, GaussianField
from critdiff_ref.trainers import OneLayerConv, TwoLayerConv, scaling_table, train

from .common import DEVICES, DIMS, DTYPES, VERSION, require_sites, resolve, synchronize

T_TRAIN = 0.01  # THEORY 3's checked setting: t = 0.01 under OU, where the condition number is largest
ARCH_MODELS = {"one-layer": OneLayerConv, "two-layer": TwoLayerConv}
# A full-size convolution layer costs V^2 multiply-adds per field (the population loss probes the
# model with one delta): cap V^2 so an epoch stays below a second on one CPU core.
EPOCH_MACS = {"cpu": 2**26, "cuda": 2**34}


class TrainingEpoch:
    """One epoch of full-batch GD on the exact population loss (``train(..., steps=1)``), r = 0, OU, t = 0.01.

    The epoch includes what :func:`critdiff_ref.trainers.train` does per step: the loss through the
    model's effective kernel, backward, the optimiser step and the per-mode error bookkeeping.
    """

    params = (["one-layer", "two-layer"], [8, 32], list(DIMS), list(DEVICES), list(DTYPES))
    param_names = ["arch", "L", "d", "device", "dtype"]
    version = VERSION

    def setup(self, arch, L, d, device, dtype):
        if arch not in ARCH_MODELS:
            raise ValueError(f"arch must be one of {tuple(ARCH_MODELS)}, got arch={arch!r}")
        self.device, dt = resolve(device, dtype)
        V = require_sites(L, d, 1, device)
        if V * V > EPOCH_MACS[device]:
            raise NotImplementedError(f"V^2 = {V * V} multiply-adds per layer over the cap on {device}")
        self.field, self.process = GaussianField(L, d, 0.0), OU()
        self.model = ARCH_MODELS[arch](L, d, dtype=dt).to(self.device)
        C_max = float(self.field.mode_variance(self.process, T_TRAIN).max())
        # THEORY 3: eta = 1/max C is stable for one layer; THEORY 4: eta = 0.25 for a balanced two-layer start.
        self.lr = 1.0 / C_max if arch == "one-layer" else 0.25

    def time_epoch(self, arch, L, d, device, dtype):
        train(self.model, self.field, self.process, T_TRAIN, steps=1, lr=self.lr)
        synchronize(self.device)


SCALING_LS = (8, 16, 32, 64)


class StepsToAccuracy:
    """Fitted ``z`` in ``steps ~ L^z`` to relative accuracy 1e-2 for each architecture (d = 2, r = 0,
    OU, t = 0.01, L = 8..64; :func:`critdiff_ref.trainers.scaling_table`).  Deterministic step counts."""

    params = (["one-layer", "one-layer-momentum", "two-layer"],)
    param_names = ["arch"]
    version = VERSION
    timeout = 300

    def setup(self, arch):
        self.table = scaling_table(Ls=SCALING_LS, d=2, r=0.0, t=T_TRAIN, eps=1e-2, archs=(arch,))

    def track_exponent(self, arch):
        return self.table.exponents[arch]

    track_exponent.unit = "exponent z (steps ~ L^z)"

    def track_steps_at_largest_L(self, arch):
        return self.table.rows[-1][arch]

    track_steps_at_largest_L.unit = "steps"
