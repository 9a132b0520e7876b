"""Markov chain Monte Carlo for lattice phi^4 and any target with an action and a force (THEORY 8).

- :mod:`._hmc`: Hamiltonian Monte Carlo (leapfrog, ``H = S + pi^2/2``; step adapted during burn-in);
- :mod:`._compiled`: the whole HMC trajectory compiled, its on-disk cache and the eager/compiled choice;
- :mod:`._metropolis`: checkerboard local Metropolis;
- :mod:`._langevin`: Langevin / stochastic quantisation, optionally Metropolis-corrected (MALA);
- :mod:`._chains`: the shared chain loop and result record;
- :mod:`.triton_steps`: Triton kernels with in-kernel noise (CUDA, ``fused="triton"``).
"""

from ._chains import (
    Action,
    ChainResult,
    Callback,
)
from ._hmc import (
    hamiltonian,
    leapfrog,
    hmc_step,
    hmc,
)
from ._metropolis import (
    checkerboard_masks,
    local_action_change,
    metropolis_sweep,
    metropolis,
)
from ._langevin import (
    langevin_step,
    langevin,
    euler_langevin_variance,
)

__all__ = [
    "Action",
    "ChainResult",
    "Callback",
    "hamiltonian",
    "leapfrog",
    "hmc_step",
    "hmc",
    "checkerboard_masks",
    "local_action_change",
    "metropolis_sweep",
    "metropolis",
    "langevin_step",
    "langevin",
    "euler_langevin_variance",
]
