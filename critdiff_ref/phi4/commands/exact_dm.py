"""``critdiff phi4-exact-dm`` (also ``python -m critdiff_ref phi4-exact-dm``): one exact DM-MCMC study
(:func:`critdiff_ref.phi4.exact_dm.run_exact_dm`) from the command line.

Every keyword of :func:`~critdiff_ref.phi4.exact_dm.run_exact_dm` is a flag (``--hmc-chains 64``,
``--dm-iter 300``, ``--proposal-seed 1000``, ``--checkpoint net.pt``, ...). The result is printed as JSON
(``--json FILE`` also writes it, atomically) after one summary line with the z-scores and the power of the
chi_2 comparison against a 10 % bias (:mod:`critdiff_ref.phi4.power`).
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import sys

from ... import _io
from ..._args import flag_errors
from ..exact_dm import run_exact_dm
from ..power import power_line, power_plan

__all__ = ["add_phi4_exact_dm_parser", "run_phi4_exact_dm", "work_phi4_exact_dm", "main"]

_SKIP = ("L", "progress")
# DMConfig fields -> the flags of this command
FLAGS = {"L": "--L", "channels": "--channels", "radius": "--radius", "depth": "--depth", "steps": "--dm-steps",
         "batch": "--dm-batch", "lr": "--dm-lr"}


# what each keyword of run_exact_dm means, for --help
HELP = {
    "kappa": "hopping parameter kappa of the lattice phi^4 action",
    "lam": "quartic coupling lambda",
    "d": "lattice dimension",
    "seed": "seed of the HMC runs and of the network's training",
    "hmc_chains": "chains of the long HMC reference run",
    "hmc_traj": "trajectories per chain of the HMC reference run (after --burn-in)",
    "train_chains": "chains of the independent HMC run that makes the training set",
    "train_traj": "trajectories per chain of the training-set HMC run (thinned to every 2 tau_int)",
    "burn_in": "HMC trajectories discarded at the start of each chain",
    "eps": "HMC leapfrog step size",
    "n_steps": "HMC leapfrog steps per trajectory",
    "radius": "receptive radius of the fourier-local network's local CNN",
    "channels": "width of the local CNN",
    "depth": "site-wise layers of the local CNN",
    "dm_steps": "denoising-score-matching training steps",
    "dm_batch": "training batch size",
    "dm_lr": "training learning rate (Adam)",
    "ode_steps": "probability-flow ODE steps per proposal",
    "ode_method": "ODE method of the proposals (euler, heun, rk4)",
    "dm_chains": "independent DM-MCMC chains",
    "dm_iter": "DM-MCMC proposals per chain (including --dm-burn-in)",
    "dm_burn_in": "DM-MCMC proposals discarded at the start of each chain",
    "batch_size": "proposals computed together in one call",
    "device": "torch device (cpu, cuda)",
    "checkpoint": "network file: loaded if it exists (settings must match), else trained and saved there",
    "proposal_seed": "seed of the DM-MCMC proposals (-1: from --seed); independent streams of one network pool",
}


def _parameters() -> dict[str, inspect.Parameter]:
    return {name: par for name, par in inspect.signature(run_exact_dm).parameters.items()
            if name not in _SKIP and par.default is not inspect.Parameter.empty}


def add_phi4_exact_dm_parser(sub) -> argparse.ArgumentParser:
    """Register ``critdiff phi4-exact-dm``: ``--L`` and every keyword of ``run_exact_dm`` as a flag."""
    p = sub.add_parser("phi4-exact-dm", help="phi^4 exact DM-MCMC with a trained fourier-local network vs a long HMC "
                                             "run (z-scores, power against a 10 percent chi_2 bias)")
    p.add_argument("--L", type=int, required=True, help="lattice size")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the result to this file (atomically)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    for name, par in _parameters().items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(par.default), default=par.default,
                       help=HELP.get(name, name.replace("_", " ")))
    return p


def summary_line(result: dict) -> str:
    """z-scores of DM-MCMC vs HMC and the power line (flags for more proposals when it is below the goal)."""
    s = result["settings"]
    plan = power_plan(result["hmc"]["chi2"], result["dm_mcmc"]["chi2_err"], result["hmc"]["chi2_err"],
                      n_dm=int(result["dm_mcmc"]["n_configs"]), seconds_per_dm=result["seconds_per_proposal"])
    more = "--dm-iter / --dm-chains"
    if plan["n_dm_needed"]:
        per_chain = math.ceil(plan["n_dm_needed"] / s["dm_chains"])
        more = f"--dm-iter {per_chain + s['dm_burn_in']} (or runs pooled over --proposal-seed)"
    f = plan["hmc_factor"] or 1.0
    z = ", ".join(f"{k} {v:+.2f}" for k, v in result["z_dm_mcmc"].items())
    return (f"z (DM-MCMC vs HMC): {z}; {'passes' if result['passes'] else 'FAILS'} |z| < 2\n"
            + power_line(plan, more_dm=more, more_hmc=f"--hmc-traj {math.ceil(s['hmc_traj'] * f)}"))


def run_phi4_exact_dm(args: argparse.Namespace) -> int:
    """Run one study; print the summary line (stderr) and the result as JSON (stdout)."""
    _io.check_writable_file(args.json, "--json")
    kwargs = {name: getattr(args, name) for name in _parameters()}
    if kwargs["checkpoint"]:
        if os.path.isdir(kwargs["checkpoint"]):
            raise ValueError(f"--checkpoint {kwargs['checkpoint']}: is a folder; give a .pt file name")
        if os.path.exists(kwargs["checkpoint"]):
            _io.read_checkpoint(kwargs["checkpoint"], what="phi^4 DM checkpoint")
        else:
            _io.check_writable_file(kwargs["checkpoint"], "--checkpoint", suffix=".pt")
    with flag_errors(FLAGS):
        result = run_exact_dm(args.L, progress=not args.quiet, **kwargs)
    text = _io.strict_json(result, indent=1)
    print(summary_line(result), file=sys.stderr)
    print(text, end="")
    if args.json:
        _io.atomic_write_text(args.json, text)
    return 0


def work_phi4_exact_dm(args: argparse.Namespace) -> int:
    """One thread: the measured runs are single-threaded (the CPU is shared)."""
    return 0


def main(argv: list[str] | None = None) -> int:
    """``critdiff phi4-exact-dm ARGS`` called from Python (``argv``: the arguments, default ``sys.argv[1:]``)."""
    from ...cli import main as critdiff

    return critdiff(["phi4-exact-dm", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
