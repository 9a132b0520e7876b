"""Lattice phi^4 experiments (THEORY 8): HMC ensembles with honest errors, saved atomically
(:mod:`.ensemble`); the phi^4 diffusion model, one :class:`~.dm.DMConfig` with one training path and train-once
checkpoints (:mod:`.dm`); DM-MCMC with it (:mod:`.sampling`) and the power of its comparisons (:mod:`.power`);
the ``critdiff phi4`` experiment (:mod:`.experiment`, command :mod:`.commands.phi4`); the paper's DM-MCMC figures as
measured tables (:mod:`.figures`: acceptance vs kappa and L, ``|M|`` autocorrelation, broken-phase histogram;
estimators :mod:`.chain_statistics`, tables :mod:`.figures_markdown`, command :mod:`.commands.figures`); the
magnetisation cumulants chi_2, g_4, g_6 of HMC, the DM and DM-MCMC (:mod:`.cumulants`, THEORY 6); exact
DM-MCMC with a trained cheap-Jacobian network and the stepwise log q (:mod:`.exact_dm`, command
:mod:`.commands.exact_dm`). The target itself is :class:`critdiff_ref.targets.Phi4Lattice`; the samplers are in
:mod:`critdiff_ref.samplers.mcmc` and :mod:`critdiff_ref.samplers.dmmc`.
"""

from . import chain_statistics, commands, cumulants, dm, ensemble, exact_dm, experiment, figures, power, sampling
from .dm import DMConfig, load_dm_checkpoint, save_dm_checkpoint, train_dm, trained_dm
from .ensemble import (
    SAMPLERS,
    EnsembleParams,
    generate_ensemble,
    summarize_chains,
    summarize_magnetisation,
    save_ensemble,
    load_ensemble,
    run_hmc_experiment,
    stderr_progress,
)
from .experiment import JSON_KEYS, format_report, run_experiment, run_phi4_experiment
from .commands import add_phi4_parser, run_phi4
from .power import power_against_bias, power_plan
from .sampling import DMMCConfig, run_dm_mcmc

__all__ = [
    "chain_statistics",
    "commands",
    "cumulants",
    "dm",
    "ensemble",
    "exact_dm",
    "experiment",
    "figures",
    "power",
    "sampling",
    "DMConfig",
    "DMMCConfig",
    "train_dm",
    "trained_dm",
    "save_dm_checkpoint",
    "load_dm_checkpoint",
    "run_dm_mcmc",
    "power_against_bias",
    "power_plan",
    "SAMPLERS",
    "EnsembleParams",
    "generate_ensemble",
    "summarize_chains",
    "summarize_magnetisation",
    "save_ensemble",
    "load_ensemble",
    "run_hmc_experiment",
    "stderr_progress",
    "JSON_KEYS",
    "run_experiment",
    "run_phi4_experiment",
    "format_report",
    "add_phi4_parser",
    "run_phi4",
]
