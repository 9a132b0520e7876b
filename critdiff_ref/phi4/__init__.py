"""Lattice phi^4 experiments (THEORY 8): HMC ensembles with honest errors, saved atomically
(:mod:`.ensemble`), and the ``critdiff phi4`` experiment with a diffusion model and DM-MCMC
(:mod:`.experiment`, with train-once DM checkpoints), and the paper's DM-MCMC figures as measured
tables (:mod:`.figures`: acceptance vs kappa and L, ``|M|`` autocorrelation, broken-phase histogram),
and the magnetisation cumulants chi_2, g_4, g_6 of HMC, the DM and DM-MCMC (:mod:`.cumulants`, THEORY 6),
and exact DM-MCMC at CPU cost with a cheap-Jacobian network and the stepwise log q (:mod:`.exact_dm`).
The target itself is :class:`critdiff_ref.targets.Phi4Lattice`; the
samplers are in :mod:`critdiff_ref.samplers.mcmc` and :mod:`critdiff_ref.samplers.dmmc`.
"""

from . import cumulants, ensemble, exact_dm, experiment, figures
from .ensemble import (
    SAMPLERS,
    EnsembleParams,
    generate_ensemble,
    summarize_chains,
    save_ensemble,
    load_ensemble,
    run_hmc_experiment,
    stderr_progress,
)
from .experiment import (
    JSON_KEYS,
    run_phi4_experiment,
    format_report,
    add_phi4_parser,
    run_phi4,
)

__all__ = [
    "cumulants",
    "ensemble",
    "exact_dm",
    "experiment",
    "figures",
    "SAMPLERS",
    "EnsembleParams",
    "generate_ensemble",
    "summarize_chains",
    "save_ensemble",
    "load_ensemble",
    "run_hmc_experiment",
    "stderr_progress",
    "JSON_KEYS",
    "run_phi4_experiment",
    "format_report",
    "add_phi4_parser",
    "run_phi4",
]
