"""Trainers for score networks (THEORY 3, 4, 5): linear one/two-layer and local convolutional scores.

- ``linear``: the torch models, exact population / DSM losses; ``linear_training``: :func:`train`.
- ``steps``: deterministic steps to accuracy (:func:`steps_to_accuracy`, the stable entry point).
- ``experiment``: the one-layer vs two-layer vs local table and the ``critdiff train`` sub-command.
- ``dsm``: neural denoising score matching (import the module: ``from critdiff_ref.trainers import dsm``).
- ``fourier_local``: :class:`~.fourier_local.FourierLocalScore`, Fourier (Gaussian) + local CNN score with an exact,
  cheap Jacobian (circulant + coloured JVPs) for the stepwise exact DM-MCMC log q (THEORY 8; import the module).
- ``mlp``: :class:`ScoreMLP`, a fully connected score network for 1-D / low-dimensional targets (THEORY 6).
- ``cumulants``: the learned-cumulants experiment (trained MLP vs exact cumulants, THEORY 6; import the module);
  ``cumulants_checkpoint``: its weights-only checkpoints.
"""

from . import cumulants, cumulants_checkpoint, dsm, fourier_local
from .mlp import ScoreMLP
from .experiment import (
    ScalingTable,
    add_train_parser,
    fit_exponent,
    format_scaling_table,
    run_train,
    scaling_table,
)
from .linear import (
    LocalScoreNet,
    OneLayerConv,
    OneLayerFourier,
    TwoLayerConv,
    TwoLayerFourier,
    circular_conv,
    dsm_loss,
    effective_kernel,
    kaiming_kernels,
    population_loss,
    score_multiplier,
)
from .linear_training import TrainingReport, kernel_error, train, train_per_time
from .steps import (
    ARCHS,
    default_ell,
    fourier_descent,
    heavy_ball_parameters,
    local_descent,
    mismatch_descent,
    steps_to_accuracy,
)

__all__ = [
    "cumulants",
    "cumulants_checkpoint",
    "dsm",
    "fourier_local",
    "ScoreMLP",
    "ARCHS",
    "LocalScoreNet",
    "OneLayerConv",
    "OneLayerFourier",
    "ScalingTable",
    "TrainingReport",
    "TwoLayerConv",
    "TwoLayerFourier",
    "add_train_parser",
    "circular_conv",
    "default_ell",
    "dsm_loss",
    "effective_kernel",
    "fit_exponent",
    "format_scaling_table",
    "fourier_descent",
    "heavy_ball_parameters",
    "kaiming_kernels",
    "kernel_error",
    "local_descent",
    "mismatch_descent",
    "population_loss",
    "run_train",
    "scaling_table",
    "score_multiplier",
    "steps_to_accuracy",
    "train",
    "train_per_time",
]
