"""``critdiff phi4-figures``: the phi^4 DM-MCMC figures (:mod:`critdiff_ref.phi4.figures`) from the command line.

Flags override :class:`~critdiff_ref.phi4.figures.FiguresConfig` fields (:data:`FLAGS`; ``--quick`` starts from
:data:`~critdiff_ref.phi4.figures.QUICK`); a bad value is named by its flag. The output folder and the
checkpoint folder are checked, and every existing checkpoint read, before any work. After the run one line
per part names its markdown file; the acceptance part adds the power of its chi_2 comparisons.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

from ... import _io
from ..._args import cli_device, cli_int, cli_positive_float, flag_errors
from ..dm import DM_NETS
from ..figures import PARTS, QUICK, FiguresConfig, write_figures
from ..figures_markdown import power_note

__all__ = ["FLAGS", "add_phi4_figures_parser", "config_from_args", "run_phi4_figures", "work_phi4_figures"]

def add_phi4_figures_parser(sub) -> argparse.ArgumentParser:
    """Register ``critdiff phi4-figures`` on an argparse sub-parser collection."""
    p = sub.add_parser("phi4-figures", help="phi^4 DM-MCMC figures: acceptance vs kappa and L, |M| autocorrelation, "
                                            "broken-phase histogram (markdown + PNG)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which figures")
    p.add_argument("--checkpoints", default=None,
                   help="folder of trained DMs, reused across runs (default: OUT/checkpoints)")
    p.add_argument("--quick", action="store_true", help="tiny settings (seconds; smoke test, not a measurement)")
    p.add_argument("--L", type=cli_int(2), default=None, help="lattice size of the kappa scan and figures b, c")
    p.add_argument("--kappas", type=float, nargs="+", default=None, help="kappa scan")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="L scan at --kappa-critical")
    p.add_argument("--kappa-critical", type=float, default=None, help="kappa of the L scan and the autocorrelation")
    p.add_argument("--kappa-broken", type=float, default=None, help="kappa of the broken-phase histogram")
    p.add_argument("--channels", type=int, nargs="+", default=None, help="U-Net channels per level")
    p.add_argument("--dm-net", choices=DM_NETS, default=None,
                   help="score network: unet (default; exact log q by the whole-sampler Jacobian, ~V^2 per proposal) "
                        "or fourier-local (exact log q step by step, cheap)")
    p.add_argument("--dm-radius", type=cli_int(0), default=None, help="fourier-local: receptive radius of the local CNN")
    p.add_argument("--dm-steps", type=cli_int(1), default=None, help="DSM training steps")
    p.add_argument("--dm-batch", type=cli_int(1), default=None, help="DSM batch size")
    p.add_argument("--hmc-chains", type=cli_int(2), default=None, help="HMC chains of each training ensemble")
    p.add_argument("--hmc-traj", type=cli_int(4), default=None, help="HMC trajectories per chain of each training ensemble")
    p.add_argument("--eps", type=cli_positive_float, default=None, help="HMC leapfrog step (tuned during burn-in)")
    p.add_argument("--n-steps", type=cli_int(1), default=None, help="HMC leapfrog steps per trajectory")
    p.add_argument("--dm-chains", type=cli_int(2), default=None, help="DM-MCMC chains (acceptance, broken phase)")
    p.add_argument("--ac-chains", type=cli_int(2), default=None, help="chains per sampler (autocorrelation)")
    p.add_argument("--device", type=cli_device, default=None, help="torch device (cpu, cuda, cuda:N)")
    p.add_argument("--dm-iter", type=cli_int(4), default=None, help="DM-MCMC proposals per chain (acceptance)")
    p.add_argument("--ac-updates", type=cli_int(8), default=None, help="HMC trajectories / Metropolis sweeps per chain")
    p.add_argument("--ac-proposals", type=cli_int(8), default=None, help="DM-MCMC proposals per chain (b, c)")
    p.add_argument("--ode-steps", type=cli_int(1), default=None, help="PF-ODE steps per proposal")
    p.add_argument("--lr", type=cli_positive_float, default=None, help="DSM learning rate")
    p.add_argument("--seed", type=cli_int(0), default=None, help="random seed")
    p.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


# argparse destination -> FiguresConfig field
_FIELDS = {"L": "L", "kappas": "kappas", "sizes": "sizes", "kappa_critical": "kappa_critical",
           "kappa_broken": "kappa_broken", "dm_steps": "dm_steps", "dm_iter": "dm_iter", "ac_updates": "ac_updates",
           "ac_proposals": "ac_proposals", "ode_steps": "ode_steps", "lr": "dm_lr", "seed": "seed",
           "channels": "channels", "dm_batch": "dm_batch", "hmc_chains": "hmc_chains", "hmc_traj": "hmc_traj",
           "eps": "eps", "n_steps": "n_steps", "dm_chains": "dm_chains", "ac_chains": "ac_chains", "device": "device",
           "dm_net": "net", "dm_radius": "radius"}
# a field (of FiguresConfig or the DMConfig it builds) -> the flag the user typed
FLAGS = {field: "--" + dest.replace("_", "-") for dest, field in _FIELDS.items()} | {
    "steps": "--dm-steps", "batch": "--dm-batch", "lr": "--lr", "net": "--dm-net", "radius": "--dm-radius",
    "kappa": "--kappas / --kappa-critical / --kappa-broken"}


def config_from_args(args: argparse.Namespace) -> FiguresConfig:
    """The :class:`FiguresConfig` of the flags (``--quick``: from :data:`QUICK`); errors name the flag."""
    cfg = QUICK if args.quick else FiguresConfig()
    with flag_errors(FLAGS):
        return replace(cfg, **{field: getattr(args, dest) for dest, field in _FIELDS.items()
                               if getattr(args, dest) is not None})


def run_phi4_figures(args: argparse.Namespace) -> int:
    """Run ``critdiff phi4-figures``; returns the exit code."""
    _io.check_output_dir(args.out, "--out")
    cfg = config_from_args(args)
    if not args.no_plots:
        import matplotlib  # noqa: F401  (before any work: the plots need it)
    results = write_figures(args.out, cfg, parts=tuple(args.parts),
                            checkpoints=args.checkpoints if args.checkpoints is not None else "default",
                            plots=not args.no_plots, progress=not args.quiet)
    for part, result in results.items():
        print(f"{part}: {os.path.join(args.out, part + '.md')} ({result['seconds']:.0f} s)")
        if part == "acceptance":
            print("  " + power_note(result))
    return 0


def work_phi4_figures(args: argparse.Namespace) -> int:
    """Elements of the largest per-step tensor (for the CPU thread count): a DSM batch of the U-Net."""
    base = QUICK if args.quick else FiguresConfig()
    L = args.L or base.L
    return (args.dm_batch or base.dm_batch) * max(args.channels or base.channels) * L ** base.d
