"""The phi^4 commands (THEORY 8): ``critdiff phi4`` (:mod:`.phi4`: HMC observables and, with ``--train-dm``, a
diffusion model and DM-MCMC), ``critdiff phi4-figures`` (:mod:`.figures`: the DM-MCMC figures as measured tables)
and ``critdiff phi4-exact-dm`` (:mod:`.exact_dm`: exact DM-MCMC vs a long HMC run). Each module parses flags
and calls the library functions of :mod:`critdiff_ref.phi4`.
"""

from . import exact_dm, figures, phi4
from .exact_dm import add_phi4_exact_dm_parser, run_phi4_exact_dm
from .figures import add_phi4_figures_parser, run_phi4_figures
from .phi4 import add_phi4_parser, run_phi4

__all__ = [
    "exact_dm",
    "figures",
    "phi4",
    "add_phi4_parser",
    "run_phi4",
    "add_phi4_figures_parser",
    "run_phi4_figures",
    "add_phi4_exact_dm_parser",
    "run_phi4_exact_dm",
]
