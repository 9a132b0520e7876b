"""``critdiff phi4``: HMC observables of lattice phi^4 and, with ``--train-dm``, a diffusion model and DM-MCMC.

``critdiff phi4 --L 8 --kappa 0.2 --lam 0.022 [--json FILE] [--train-dm [--checkpoint F.pt] [--cumulants]]``
runs :func:`critdiff_ref.phi4.experiment.run_experiment`. Every flag becomes a field of
:class:`~critdiff_ref.phi4.ensemble.EnsembleParams` (HMC), :class:`~critdiff_ref.phi4.dm.DMConfig` (the DM) or
:class:`~critdiff_ref.phi4.sampling.DMMCConfig` (DM-MCMC); their errors name the flag (:data:`FLAGS`). All
output paths, an existing checkpoint and the run lengths are checked before the HMC run. With ``--train-dm``
the report ends with the power of the DM-MCMC vs HMC chi_2 comparison against a 10 % bias and, when it is
below 0.9, the flag values that buy it and their estimated cost (:mod:`critdiff_ref.phi4.power`).

Defaults (L = 8, d = 2) finish in about a minute on one CPU core (two with ``--train-dm``). GPU settings for
L = 32 / 64: ``--device cuda --dtype float32 --dm-channels 32 64 128 --dm-steps 20000 --dm-batch 256
--ode-steps 32 --divergence hutchinson --probes 4 --dm-chains 64 --dm-iter 256`` (and ``--traj 4000 --eps 0.05
--n-steps 20`` for HMC at L = 64).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from ... import _io
from ..._args import cli_device, cli_int, cli_positive_float, flag_errors
from ..dm import DM_NETS, EXACT_DIVERGENCE_MAX_V, DMConfig, default_dm_net
from ..ensemble import EnsembleParams
from ..experiment import format_report, run_experiment
from ..power import power_line
from ..sampling import DIVERGENCES, DMMCConfig, dm_burn_in, iterations_for

__all__ = ["FLAGS", "add_phi4_parser", "configs_from_args", "run_phi4", "work_phi4"]

# the field of each settings object -> the flag the user typed
FLAGS = {"L": "--L", "d": "--d", "kappa": "--kappa", "lam": "--lam", "n_chains": "--chains", "n_updates": "--traj",
         "burn_in": "--burn-in", "step": "--eps", "n_steps": "--n-steps", "seed": "--seed", "dtype": "--dtype",
         "channels": "--dm-channels", "radius": "--dm-radius", "steps": "--dm-steps", "batch": "--dm-batch",
         "lr": "--dm-lr", "net": "--dm-net", "chains": "--dm-chains", "iterations": "--dm-iter",
         "ode_steps": "--ode-steps", "ode_method": "--ode-method", "divergence": "--divergence", "probes": "--probes"}
_MET_FLAGS = {**FLAGS, "step": "--metropolis-step", "n_updates": "--traj"}
MIN_CUMULANT_CONFIGS = 8  # k_6 and its error (critdiff_ref.phi4.cumulants.magnetisation_cumulants)


def add_phi4_parser(sub) -> argparse.ArgumentParser:
    """Register ``critdiff phi4`` on an argparse sub-parser collection."""
    p = sub.add_parser("phi4", help="lattice phi^4: HMC observables with errors; optionally a diffusion model and DM-MCMC")
    p.add_argument("--L", type=int, default=8, help="lattice size (even for Metropolis)")
    p.add_argument("--d", type=int, default=2, help="lattice dimension")
    p.add_argument("--kappa", type=float, default=0.2, help="hopping parameter kappa >= 0")
    p.add_argument("--lam", type=float, default=0.022, help="quartic coupling lambda >= 0")
    p.add_argument("--chains", type=cli_int(2), default=16, help="independent HMC (and Metropolis) chains (>= 2)")
    p.add_argument("--traj", type=cli_int(4), default=400,
                   help="HMC trajectories (Metropolis sweeps) per chain after burn-in (>= 4)")
    p.add_argument("--burn-in", type=cli_int(0), default=100, help="trajectories discarded per chain (>= 0)")
    p.add_argument("--eps", type=cli_positive_float, default=0.1, help="leapfrog step (> 0)")
    p.add_argument("--n-steps", type=cli_int(1), default=10, help="leapfrog steps per trajectory (>= 1)")
    p.add_argument("--seed", type=cli_int(0), default=0, help="random seed (>= 0)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="precision of the chains")
    p.add_argument("--device", type=cli_device, default="cpu", help="torch device (cpu, cuda, cuda:N)")
    p.add_argument("--out", default=None, help="save the HMC configurations to this .npz file (written atomically)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    g = p.add_argument_group("diffusion model (--train-dm)")
    g.add_argument("--train-dm", action="store_true", help="train a DM on the HMC ensemble and run DM-MCMC")
    g.add_argument("--metropolis-step", type=cli_positive_float, default=1.0, help="local Metropolis proposal half-width (> 0)")
    g.add_argument("--dm-net", choices=("auto", *DM_NETS), default="auto",
                   help="score network: unet, or fourier-local (Fourier-linear + local CNN: cheap exact step Jacobians,"
                        f" so DM-MCMC is exact at any L with --divergence stepwise, the auto choice for it); auto: unet"
                        f" for V <= {EXACT_DIVERGENCE_MAX_V}, else fourier-local")
    g.add_argument("--dm-channels", type=int, nargs="+", default=[8, 16],
                   help="U-Net channels per level (fourier-local: the last is its local CNN width)")
    g.add_argument("--dm-radius", type=cli_int(0), default=1, help="fourier-local: receptive radius of the local CNN (>= 0)")
    g.add_argument("--dm-steps", type=cli_int(1), default=1000, help="DSM training steps (>= 1)")
    g.add_argument("--dm-batch", type=cli_int(1), default=64, help="DSM batch size (>= 1)")
    g.add_argument("--dm-lr", type=cli_positive_float, default=2e-3, help="DSM learning rate (Adam, > 0)")
    g.add_argument("--ode-steps", type=cli_int(1), default=16, help="PF-ODE steps per DM proposal (>= 1)")
    g.add_argument("--ode-method", choices=("euler", "heun", "rk4"), default="heun", help="PF-ODE integrator")
    g.add_argument("--divergence", choices=DIVERGENCES, default="auto",
                   help="log q: jacobian = exact log-det of the discretised flow (exact DM-MCMC, ~V backward passes),"
                        " stepwise = the same log-det step by step from cheap exact step Jacobians (--dm-net fourier-local),"
                        " exact = ODE-integrated exact divergence (exact up to O(h^p)), hutchinson = APPROXIMATE"
                        f" (biased chain); auto: stepwise for fourier-local, else jacobian for V <= {EXACT_DIVERGENCE_MAX_V},"
                        " else hutchinson")
    g.add_argument("--probes", type=cli_int(1), default=2, help="Hutchinson probes per configuration (>= 1)")
    g.add_argument("--dm-chains", type=int, default=8, help="DM-MCMC chains")
    g.add_argument("--dm-iter", type=int, default=64, help="DM-MCMC proposals per chain")
    g.add_argument("--dm-dtype", choices=("float32", "float64"), default="float32", help="DM network precision")
    g.add_argument("--cumulants", action="store_true",
                   help="with --train-dm: cumulants chi_2, g_4, g_6 of M from HMC, DM samples and DM-MCMC with errors"
                        " (critdiff_ref.phi4.cumulants; exit 1 if an exact sampler misses by > 5 SE)")
    g.add_argument("--checkpoint", metavar="FILE.pt", default=None,
                   help="train the DM once: load it from FILE.pt when it exists (L, d, kappa, lam and channels must"
                        " match), else train and save it there (weights only, written atomically)")
    return p


def configs_from_args(args: argparse.Namespace) -> tuple[EnsembleParams, DMConfig | None, DMMCConfig]:
    """The HMC, DM (``None`` without ``--train-dm``) and DM-MCMC settings of the flags; errors name the flag."""
    with flag_errors(FLAGS):
        hmc = EnsembleParams(L=args.L, d=args.d, kappa=args.kappa, lam=args.lam, sampler="hmc", n_chains=args.chains,
                             n_updates=args.traj, burn_in=args.burn_in, thin=1, step=args.eps, n_steps=args.n_steps,
                             seed=args.seed, dtype=args.dtype, device=args.device)
        sampling = DMMCConfig(chains=args.dm_chains, iterations=args.dm_iter, ode_steps=args.ode_steps,
                              ode_method=args.ode_method, divergence=args.divergence, probes=args.probes)
        if not args.train_dm:
            return hmc, None, sampling
        net = default_dm_net(args.L, args.d) if args.dm_net == "auto" else args.dm_net
        dm = DMConfig(L=args.L, d=args.d, kappa=args.kappa, lam=args.lam, net=net, channels=tuple(args.dm_channels),
                      radius=args.dm_radius, steps=args.dm_steps, batch=args.dm_batch, lr=args.dm_lr, dtype=args.dm_dtype)
    with flag_errors(_MET_FLAGS):  # local Metropolis runs at the same parameters with --metropolis-step
        EnsembleParams(L=args.L, d=args.d, kappa=args.kappa, lam=args.lam, sampler="metropolis", n_chains=args.chains,
                       n_updates=args.traj, burn_in=args.burn_in, step=args.metropolis_step, seed=args.seed + 2,
                       dtype=args.dtype, device=args.device)
    if args.divergence == "stepwise" and net != "fourier-local":
        raise ValueError("--divergence stepwise needs --dm-net fourier-local (the network with cheap exact step Jacobians)")
    if args.dm_chains < 2:
        raise ValueError(f"--dm-chains {args.dm_chains}: must be >= 2 (errors over independent chains)")
    return hmc, dm, sampling


def _check_cumulants(args: argparse.Namespace, sampling: DMMCConfig) -> None:
    if not args.train_dm:
        raise ValueError("--cumulants needs --train-dm (the table compares HMC with the diffusion model and DM-MCMC)")
    kept = sampling.kept
    if kept < MIN_CUMULANT_CONFIGS:
        need = iterations_for(math.ceil(MIN_CUMULANT_CONFIGS / args.dm_chains))
        raise ValueError(f"--cumulants needs >= {MIN_CUMULANT_CONFIGS} kept DM-MCMC configurations for g_6 and its "
                         f"error; --dm-chains {args.dm_chains} x --dm-iter {args.dm_iter} keeps {kept} "
                         f"(use --dm-iter {need} or more)")


def power_text(plan: dict, args: argparse.Namespace) -> str:
    """The power line of ``critdiff phi4 --train-dm`` with the flags that buy power >= the goal."""
    more_dm = "--dm-steps (training), --dm-iter or --dm-chains"
    if plan.get("n_dm_needed"):
        per_chain = math.ceil(plan["n_dm_needed"] / args.dm_chains)
        chains = math.ceil(plan["n_dm_needed"] / (args.dm_iter - dm_burn_in(args.dm_iter)))
        more_dm = f"--dm-iter {iterations_for(per_chain)} (or --dm-chains {chains})"
    f = plan.get("hmc_factor") or 1.0
    more_hmc = f"--traj {math.ceil(args.traj * f)} or --chains {math.ceil(args.chains * f)}"
    return power_line(plan, more_dm=more_dm, more_hmc=more_hmc)


def run_phi4(args: argparse.Namespace) -> int:
    """Run ``critdiff phi4``: print the report, write ``--json`` if asked. Returns the exit code."""
    _io.check_writable_file(args.json, "--json")
    _io.check_writable_file(args.out, "--out", suffix=".npz")
    cumulants = getattr(args, "cumulants", False)
    hmc, dm, sampling = configs_from_args(args)
    if cumulants:
        _check_cumulants(args, sampling)
    if args.checkpoint is not None:
        if not args.train_dm:
            raise ValueError(f"--checkpoint {args.checkpoint}: needs --train-dm (the checkpoint holds the diffusion model)")
        if os.path.isdir(args.checkpoint):
            raise ValueError(f"--checkpoint {args.checkpoint}: is a folder; give a .pt file name")
        if not os.path.exists(args.checkpoint):
            _io.check_writable_file(args.checkpoint, "--checkpoint", suffix=".pt")
    result = run_experiment(hmc, dm, sampling, metropolis_step=args.metropolis_step, out=args.out,
                            checkpoint=args.checkpoint, progress=not args.quiet, keep_arrays=cumulants)
    text = power_text(result["dm"]["power"], args) if "dm" in result else None
    print(format_report(result, power_text=text))
    if cumulants:  # magnetisation cumulants of the same run; the arrays (not JSON) are dropped after
        from ..cumulants import format_cumulants, phi4_cumulants

        result["cumulants"] = phi4_cumulants(result, hmc.target, seed=args.seed)
        del result["dm"]["arrays"]
        print(format_cumulants(result["cumulants"]))
    if args.json:  # strict JSON, atomically: NaN as null with a reason
        reasons = {"binder": "no finite Binder cumulant (<M^2> = 0: e.g. no trajectory was accepted)"}
        _io.atomic_write_text(args.json, _io.strict_json(result, reasons=reasons))
    return 1 if cumulants and not result["cumulants"]["passed"] else 0


def work_phi4(args: argparse.Namespace) -> int:
    """Elements of the largest per-step tensor of ``critdiff phi4`` (for the CPU thread count)."""
    V = args.L ** args.d
    work = args.chains * V
    if args.train_dm:
        work = max(work, args.dm_batch * max(args.dm_channels) * V, args.dm_chains * max(args.dm_channels) * V)
    return work


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="critdiff-phi4")
    add_phi4_parser(parser.add_subparsers(dest="command"))
    sys.exit(run_phi4(parser.parse_args(["phi4", *sys.argv[1:]])))
