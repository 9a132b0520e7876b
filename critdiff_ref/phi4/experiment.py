"""The lattice phi^4 experiment (THEORY 8): HMC observables with honest errors and, optionally, a neural
diffusion model trained on the HMC ensemble, its PF-ODE likelihood and diffusion-model MCMC.

``critdiff phi4 --L 8 --kappa 0.2 --lam 0.022 [--json FILE] [--train-dm [--checkpoint F.pt]]``:

1. HMC, the run of :func:`critdiff_ref.phi4.ensemble.run_hmc_experiment`: ``<M>, <|M|>, chi_2, U_L`` with Gamma-method
   errors over independent chains, ``tau_int`` of ``|M|`` (in trajectories) and the acceptance.
2. ``--train-dm``: local Metropolis at the same parameters (``tau_int`` in sweeps); a score network
   trained by DSM (VE, sigma = 25, T = 1) on the HMC configurations (``--dm-net``: a
   :class:`~critdiff_ref.trainers.dsm.ScoreUNet`, or a
   :class:`~critdiff_ref.trainers.fourier_local.FourierLocalScore` whose step Jacobians are cheap and exact;
   ``auto``: the U-Net for ``V <= 16``, else fourier-local); PF-ODE samples with their model log-density ``log q``; the observables of the raw
   generated configurations (jackknife errors, independent draws); ``R^2`` of ``S_eff = -log q``
   against the true action; DM-MCMC (independence Metropolis on the same proposals) with its
   acceptance, observables and ``tau_int`` of ``|M|`` (in proposals).  ``--checkpoint F.pt`` trains once:
   the weights (``state_dict`` only) and a JSON-able config are saved atomically and later loaded with
   ``torch.load(weights_only=True)``, refused (ValueError naming the field) when L, d, kappa, lam or the
   channels differ (:func:`trained_dm`).

Defaults (L = 8, d = 2) finish in about a minute on one CPU core (two with ``--train-dm``). GPU
settings for L = 32 / 64: ``--device cuda --dtype float32 --dm-channels 32 64 128 --dm-steps 20000
--dm-batch 256 --ode-steps 32 --divergence hutchinson --probes 4 --dm-chains 64 --dm-iter 256``
(and ``--traj 4000 --eps 0.05 --n-steps 20`` for HMC at L = 64).

``log q`` is by default the EXACT log-density of the discretised flow: for the U-Net (``V <= 16``)
``--divergence jacobian`` (Jacobian log-det, ``V`` vmapped backward passes per proposal), for fourier-local
``--divergence stepwise`` (the same log-det step by step, ~V^3 per step: 0.6 s per proposal at L = 16);
a U-Net beyond ``V = 16`` uses Hutchinson (APPROXIMATE:
on the residual from the Gaussian with the ensemble's ``<|phi_k|^2>``, whose divergence is exact: a control
variate); DM-MCMC is exact with ``jacobian``, exact up to the ODE error with ``exact``, and biased by the
probe noise in ``log q`` with Hutchinson (THEORY 8; see :mod:`critdiff_ref.samplers.dmmc`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from .ensemble import EnsembleParams, _hmc_ensemble, generate_ensemble, save_ensemble, stderr_progress, summarize_chains
from .. import _io, lattice
from .._args import cli_device, cli_int, cli_positive_float
from ..observables import phi4_observables
from ..processes import VE
from ..samplers import dmmc, likelihood
from ..targets import Phi4Lattice
from ..trainers import dsm, fourier_local

__all__ = ["JSON_KEYS", "DM_CHECKPOINT_FORMAT", "DM_MATCH", "DM_NETS", "default_dm_net", "dm_process", "dm_config", "train_dm", "save_dm_checkpoint",
           "load_dm_checkpoint", "trained_dm", "run_dm_mcmc", "run_phi4_experiment", "format_report", "add_phi4_parser",
           "run_phi4", "work_phi4"]

JSON_KEYS = ("M", "M_err", "absM", "absM_err", "chi2", "chi2_err", "binder", "binder_err", "tau_int_absM",
             "acceptance", "n_configs")
_OBS = ("M", "absM", "chi2", "binder")
EXACT_DIVERGENCE_MAX_V = 16
# the noise-conditional network is trained on t >= T_MIN and the PF-ODE stops there: proposals are
# x_{T_MIN} (VE: Xi(T_MIN) = 1e-3), whose density log q is what DM-MCMC uses, so the chain stays exact
T_MIN = 1e-3


DM_CHECKPOINT_FORMAT = "critdiff-phi4-dm/1"
# the fields a checkpoint must share with the run that loads it (the target and the network's shape)
DM_MATCH = ("L", "d", "kappa", "lam", "net", "channels", "radius", "depth", "sigma", "T")
# the score networks: the U-Net (exact log q by whole-sampler Jacobian, ~V^2 per proposal) and the
# Fourier-linear + local-CNN network whose step Jacobians are cheap and exact (``log_q="stepwise"``)
DM_NETS = ("unet", "fourier-local")
_DM_DEFAULTS = {"net": "unet", "radius": None, "depth": None}  # what a checkpoint written before these fields holds
DM_SIGMA, DM_T = 25.0, 1.0


def default_dm_net(L: int, d: int) -> str:
    """``dm_net="auto"``: the U-Net where its exact whole-sampler Jacobian log q is affordable
    (``V <= EXACT_DIVERGENCE_MAX_V``), else the fourier-local network, whose exact log q costs ~V^3 per step
    (0.6 s per proposal at L = 16, 5.9 s at L = 32 on this CPU) -- DM-MCMC is exact by default at every L
    (d <= 3; beyond, the U-Net and its Hutchinson log q)."""
    return "unet" if L**d <= EXACT_DIVERGENCE_MAX_V or d > 3 else "fourier-local"


def dm_process() -> VE:
    """The forward process of the phi^4 DM: VE with sigma = 25, T = 1 (THEORY 1, 8)."""
    return VE(sigma=DM_SIGMA, T=DM_T)


def dm_config(target: Phi4Lattice, channels: tuple[int, ...], data_std: float, *, net: str = "unet",
              radius: int = 1, depth: int = 2) -> dict:
    """The JSON-able settings that rebuild the phi^4 score network of a checkpoint: ``net="unet"`` a
    :class:`~critdiff_ref.trainers.dsm.ScoreUNet` with ``channels`` per level, ``net="fourier-local"`` a
    :class:`~critdiff_ref.trainers.fourier_local.FourierLocalScore` whose local CNN has width ``channels[-1]``,
    receptive radius ``radius`` and ``depth`` site-wise layers."""
    if net not in DM_NETS:
        raise ValueError(f"net must be one of {DM_NETS}, got net={net!r}")
    return {"L": target.L, "d": target.d, "kappa": float(target.kappa), "lam": float(target.lam), "net": net,
            "channels": [int(c) for c in channels], "radius": int(radius) if net == "fourier-local" else None,
            "depth": int(depth) if net == "fourier-local" else None,
            "sigma": DM_SIGMA, "T": DM_T, "data_std": float(data_std)}


def _build_dm(config: dict, *, dtype: torch.dtype, device: str, generator: torch.Generator | None) -> torch.nn.Module:
    process = VE(sigma=config["sigma"], T=config["T"])
    if config.get("net", "unet") == "fourier-local":
        return fourier_local.FourierLocalScore(config["L"], config["d"], process, radius=config["radius"],
                                               channels=config["channels"][-1], depth=config["depth"],
                                               data_std=config["data_std"],
                                               generator=generator, dtype=dtype).to(device)
    return dsm.ScoreUNet(config["L"], config["d"], process, channels=tuple(config["channels"]),
                         data_std=config["data_std"], generator=generator, dtype=dtype).to(device)


def train_dm(
    target: Phi4Lattice,
    hmc_configs: torch.Tensor,
    *,
    seed: int,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    channels: tuple[int, ...] = (8, 16),
    dm_steps: int = 1000,
    dm_batch: int = 64,
    dm_lr: float = 2e-3,
    progress: bool = False,
    net: str = "unet",
    radius: int = 1,
) -> tuple[torch.nn.Module, dict, dict]:
    """Train the phi^4 score network (``net``, :func:`dm_config`) by DSM (THEORY 1, 8; VE sigma = 25, T = 1, ``t >= T_MIN``) on the HMC
    configurations ``(..., *lattice)``. Returns ``(model, config, info)``: the frozen model (eval mode), its
    :func:`dm_config` and the training record (steps, batch, lr, seed, final loss, seconds)."""
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    data = hmc_configs.reshape(-1, *target.shape).to(dtype=dtype, device=device)
    config = dm_config(target, channels, float(data.std()), net=net, radius=radius)
    model = _build_dm(config, dtype=dtype, device=device, generator=gen)
    report = stderr_progress(desc="DSM training") if progress else None
    cb = (lambda n, total, loss: report(n, total)) if report else None
    if progress:
        print(f"[critdiff] training the score network ({dm_steps} DSM steps)", file=sys.stderr)
    t0 = time.perf_counter()
    train = dsm.train_dsm(model, data, dm_process(), steps=dm_steps, batch_size=dm_batch, lr=dm_lr, t_min=T_MIN,
                          generator=gen, callback=cb)
    for p in model.parameters():
        p.requires_grad_(False)
    info = {"dm_steps": int(dm_steps), "dm_batch": int(dm_batch), "dm_lr": float(dm_lr), "seed": int(seed),
            "n_train": int(data.shape[0]), "final_loss": float(train.losses[-min(50, dm_steps):].mean()),
            "train_seconds": time.perf_counter() - t0}
    return model, config, info


def save_dm_checkpoint(path: str | os.PathLike, model: dsm.ScoreUNet, config: dict, info: dict) -> str:
    """Write the DM weights only (``state_dict``) with its :func:`dm_config` and training ``info`` atomically
    (:func:`critdiff_ref._io.save_weights`); returns the path."""
    payload = {"format": DM_CHECKPOINT_FORMAT, "config": dict(config), "info": dict(info),
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    return _io.save_weights(path, payload)


def load_dm_checkpoint(
    path: str | os.PathLike, expected: dict, *, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> tuple[dsm.ScoreUNet, dict, dict]:
    """Load a :func:`save_dm_checkpoint` file (``torch.load(weights_only=True)``) into a fresh U-Net.

    ``expected`` is the :func:`dm_config` of the run; a checkpoint whose ``L, d, kappa, lam, net, channels,
    radius, sigma`` or ``T`` differ raises ValueError naming each field with its saved and requested value.
    Returns ``(model, config, info)`` like :func:`train_dm` (the model frozen, in eval mode)."""
    payload = _io.load_weights(path, DM_CHECKPOINT_FORMAT, what="phi^4 DM checkpoint")
    saved = payload["config"]
    saved = {**_DM_DEFAULTS, **saved}
    diff = [f"{k}: saved {saved.get(k)!r}, requested {expected.get(k)!r}" for k in DM_MATCH if saved.get(k) != expected.get(k)]
    if diff:
        raise ValueError(f"checkpoint {os.fspath(path)} does not match this run: " + "; ".join(diff))
    model = _build_dm(saved, dtype=dtype, device=device, generator=None)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, dict(saved), dict(payload["info"])


def trained_dm(
    target: Phi4Lattice,
    hmc_configs: torch.Tensor,
    *,
    checkpoint: str | os.PathLike | None = None,
    seed: int,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    channels: tuple[int, ...] = (8, 16),
    dm_steps: int = 1000,
    dm_batch: int = 64,
    dm_lr: float = 2e-3,
    progress: bool = False,
    net: str = "unet",
    radius: int = 1,
) -> tuple[torch.nn.Module, dict, dict]:
    """:func:`train_dm` once: with ``checkpoint`` an existing file is loaded (:func:`load_dm_checkpoint`,
    which checks it against this target and ``channels``) and a missing one is written after training.
    ``info["loaded"]`` says which happened."""
    if checkpoint is not None and os.path.exists(checkpoint):
        data = hmc_configs.reshape(-1, *target.shape)
        model, config, info = load_dm_checkpoint(checkpoint, dm_config(target, channels, float(data.std()), net=net,
                                                                       radius=radius),
                                                 dtype=dtype, device=device)
        if progress:
            print(f"[critdiff] loaded the score network from {checkpoint}", file=sys.stderr)
        return model, config, {**info, "loaded": True}
    model, config, info = train_dm(target, hmc_configs, seed=seed, dtype=dtype, device=device, channels=channels,
                                   dm_steps=dm_steps, dm_batch=dm_batch, dm_lr=dm_lr, progress=progress, net=net,
                                   radius=radius)
    if checkpoint is not None:
        save_dm_checkpoint(checkpoint, model, config, info)
    return model, config, {**info, "loaded": False}


def run_dm_mcmc(
    target: Phi4Lattice,
    model: torch.nn.Module,
    hmc_configs: torch.Tensor,
    *,
    seed: int,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    ode_steps: int = 16,
    ode_method: str = "heun",
    divergence: str = "auto",
    probes: int = 2,
    dm_chains: int = 8,
    dm_iter: int = 64,
    progress: bool = False,
) -> tuple[dmmc.DMMCResult, str]:
    """DM-MCMC (THEORY 8) with PF-ODE proposals of ``model`` stopped at ``T_MIN``: the prior's variance and
    the Hutchinson control variate (the Gaussian with the ensemble's ``<|phi_k|^2>``) come from
    ``hmc_configs``. ``divergence="auto"``: the exact step-by-step log q when the model has cheap exact
    step Jacobians (``score_jacobian``: the fourier-local network, any V), else the exact whole-sampler
    Jacobian log q for ``V <= EXACT_DIVERGENCE_MAX_V`` and Hutchinson (approximate) beyond.
    Returns ``(result, divergence used)``; randomness from a generator seeded ``seed + 3``."""
    process = dm_process()
    data = hmc_configs.reshape(-1, *target.shape).to(dtype=dtype, device=device)
    if divergence == "auto":  # the exact log q (Jacobian log-det of the discretised flow) where affordable
        if hasattr(model, "score_jacobian"):
            divergence = "stepwise"
        else:
            divergence = "jacobian" if target.V <= EXACT_DIVERGENCE_MAX_V else "hutchinson"
    if progress:
        print(f"[critdiff] DM-MCMC: {dm_chains} x {dm_iter} PF-ODE proposals ({ode_method}, {ode_steps} steps,"
              f" {divergence} divergence)", file=sys.stderr)
    prior = likelihood.isotropic_prior(process, target.L, target.d, data_variance=float(data.var()))
    power = (lattice.fft(data.to(torch.float64), target.d).abs() ** 2).mean(dim=0).cpu()
    reference = likelihood.ModePrior(power.clamp_min(1e-12), target.d)
    gen = torch.Generator(device=device).manual_seed(seed + 3)
    res = dmmc.dm_mcmc(target, model, process, prior, n_chains=dm_chains, n_iter=dm_iter, steps=ode_steps,
                       method=ode_method, t_min=T_MIN, log_q=divergence, n_probes=probes, control_variate=reference,
                       burn_in=min(8, dm_iter // 4), generator=gen, dtype=dtype, device=device)
    return res, divergence


def _dm_section(
    target: Phi4Lattice,
    hmc_configs: torch.Tensor,
    *,
    seed: int,
    dtype: torch.dtype,
    device: str,
    channels: tuple[int, ...],
    dm_steps: int,
    dm_batch: int,
    dm_lr: float,
    net: str = "unet",
    radius: int = 1,
    ode_steps: int,
    ode_method: str,
    divergence: str,
    probes: int,
    dm_chains: int,
    dm_iter: int,
    progress: bool,
    keep_arrays: bool = False,
    checkpoint: str | os.PathLike | None = None,
) -> dict:
    """Train the DM on the HMC configurations (or load it from ``checkpoint``), sample with log q, run
    DM-MCMC; observables of both."""
    model, _, info = trained_dm(target, hmc_configs, checkpoint=checkpoint, seed=seed, dtype=dtype, device=device,
                                channels=channels, dm_steps=dm_steps, dm_batch=dm_batch, dm_lr=dm_lr, progress=progress,
                                net=net, radius=radius)
    res, divergence = run_dm_mcmc(target, model, hmc_configs, seed=seed, dtype=dtype, device=device,
                                  ode_steps=ode_steps, ode_method=ode_method, divergence=divergence, probes=probes,
                                  dm_chains=dm_chains, dm_iter=dm_iter, progress=progress)
    raw = res.proposals.reshape(-1, *target.shape).to(torch.float64)
    raw_obs = phi4_observables(raw, target.d, n_blocks=min(20, raw.shape[0]))
    chain = summarize_chains(res.samples, target.d)
    generated = {k: float(raw_obs[k].value) for k in _OBS}
    generated.update({f"{k}_err": float(raw_obs[k].err) for k in _OBS})
    generated["n_configs"] = int(raw.shape[0])
    arrays = {}
    if keep_arrays:  # for plots (not JSON): log q and S per proposal, M of raw proposals and of the chain
        dims = tuple(range(-target.d, 0))
        arrays = {"arrays": {"log_q": res.log_q.detach().cpu(), "action": res.action.detach().cpu(),
                             "M_generated": raw.mean(dim=dims), "M_chain": res.samples.to(torch.float64).mean(dim=dims),
                             "M_hmc": hmc_configs.to(torch.float64).mean(dim=dims).cpu()}}  # (n_traj, n_chains)
    return {
        **arrays,
        "final_loss": info["final_loss"],
        "checkpoint_loaded": info["loaded"],
        "divergence": divergence,
        "generated": generated,
        "r2_action": likelihood.action_r2(res.log_q, res.action),
        "dm_mcmc": {**{k: chain[k] for k in JSON_KEYS if k in chain}, "acceptance": float(res.acceptance.mean())},
    }


def run_phi4_experiment(
    L: int = 8,
    d: int = 2,
    kappa: float = 0.2,
    lam: float = 0.022,
    *,
    n_chains: int = 16,
    n_traj: int = 400,
    burn_in: int = 100,
    eps: float = 0.1,
    n_steps: int = 10,
    seed: int = 0,
    dtype: str = "float64",
    device: str = "cpu",
    out: str | None = None,
    train_dm: bool = False,
    metropolis_step: float = 1.0,
    dm_channels: tuple[int, ...] = (8, 16),
    dm_steps: int = 1000,
    dm_batch: int = 64,
    dm_lr: float = 2e-3,
    ode_steps: int = 16,
    ode_method: str = "heun",
    divergence: str = "auto",
    probes: int = 2,
    dm_chains: int = 8,
    dm_iter: int = 64,
    dm_dtype: str = "float32",
    progress: bool = False,
    keep_arrays: bool = False,
    checkpoint: str | None = None,
    dm_net: str = "auto",
    dm_radius: int = 1,
) -> dict:
    """Run the experiment (module docstring). Returns ``{key: value for key in JSON_KEYS}`` for HMC, plus
    ``metropolis`` and ``dm`` sub-dicts when ``train_dm`` (``keep_arrays=True`` adds ``dm["arrays"]``:
    per-proposal ``log_q``, ``action`` and magnetisations, for plots; not JSON-serialisable). ``checkpoint``: a
    ``.pt`` file the trained DM is saved to, or loaded from when it exists (:func:`trained_dm`: train once)."""
    if divergence not in ("auto", "jacobian", "stepwise", "exact", "hutchinson"):
        raise ValueError("divergence must be 'auto', 'jacobian', 'stepwise', 'exact' or 'hutchinson', got"
                         f" divergence={divergence!r}")
    if dm_net not in ("auto", *DM_NETS):
        raise ValueError(f"dm_net must be 'auto' or one of {DM_NETS}, got dm_net={dm_net!r}")
    dm_net = default_dm_net(L, d) if dm_net == "auto" else dm_net
    if divergence == "stepwise" and dm_net != "fourier-local":
        raise ValueError("divergence='stepwise' needs dm_net='fourier-local' (the network with cheap exact step Jacobians)")
    if dm_dtype not in ("float32", "float64"):
        raise ValueError(f"dm_dtype must be 'float32' or 'float64', got dm_dtype={dm_dtype!r}")
    if checkpoint is not None and not str(checkpoint).endswith(".pt"):
        raise ValueError(f"checkpoint must be a .pt file name, got checkpoint={checkpoint!r}")
    hmc_configs, hmc_params, hmc = _hmc_ensemble(
        L, d, kappa, lam, n_chains=n_chains, n_traj=n_traj, burn_in=burn_in, eps=eps, n_steps=n_steps, thin=1,
        seed=seed, dtype=dtype, device=device, progress=progress,
    )
    if out is not None:
        save_ensemble(out, hmc_configs, hmc_params, hmc)  # the same summary keys as run_hmc_experiment's file
    result = {k: (int(hmc[k]) if k == "n_configs" else float(hmc[k])) for k in JSON_KEYS}
    if not train_dm:
        return result
    met_params = EnsembleParams(L=L, d=d, kappa=kappa, lam=lam, sampler="metropolis", n_chains=n_chains,
                                n_updates=n_traj, burn_in=burn_in, step=metropolis_step, seed=seed + 2,
                                dtype=dtype, device=device)
    met_configs, met_info = generate_ensemble(met_params, progress=progress)
    met = summarize_chains(met_configs, d)
    result["metropolis"] = {**{k: float(met[k]) for k in JSON_KEYS if k in met and k != "n_configs"},
                            "acceptance": met_info["acceptance"], "n_configs": int(met["n_configs"])}
    result["dm"] = _dm_section(
        Phi4Lattice(L, d, kappa, lam), hmc_configs, seed=seed, dtype=getattr(torch, dm_dtype), device=device,
        channels=tuple(dm_channels), dm_steps=dm_steps, dm_batch=dm_batch, dm_lr=dm_lr, ode_steps=ode_steps,
        ode_method=ode_method, divergence=divergence, probes=probes, dm_chains=dm_chains, dm_iter=dm_iter,
        progress=progress, keep_arrays=keep_arrays, checkpoint=checkpoint, net=dm_net, radius=dm_radius,
    )
    return result


def _row(name: str, r: dict, extra: str = "") -> str:
    cells = [f"{r[k]: .5f} +- {r[k + '_err']:.5f}" for k in _OBS]
    return f"{name:<12}" + "".join(f"{c:>24}" for c in cells) + extra


def format_report(result: dict) -> str:
    """A plain-text table of the experiment's observables."""
    head = f"{'':<12}" + "".join(f"{h:>24}" for h in ("<M>", "<|M|>", "chi_2", "U_L"))
    lines = [head, _row("HMC", result, f"   acc {result['acceptance']:.3f}  tau_int(|M|) {result['tau_int_absM']:.2f} traj"
                                        f"  N {result['n_configs']}")]
    if "metropolis" in result:
        m = result["metropolis"]
        lines.append(_row("Metropolis", m, f"   acc {m['acceptance']:.3f}  tau_int(|M|) {m['tau_int_absM']:.2f} sweeps"))
    if "dm" in result:
        dm = result["dm"]
        lines.append(_row("DM samples", dm["generated"], f"   N {dm['generated']['n_configs']}"))
        c = dm["dm_mcmc"]
        lines.append(_row("DM-MCMC", c, f"   acc {c['acceptance']:.3f}  tau_int(|M|) {c['tau_int_absM']:.2f} proposals"))
        lines.append(f"PF-ODE R^2(S_eff = -log q vs S) = {dm['r2_action']:.4f}  ({dm['divergence']} divergence);"
                     f" final DSM loss {dm['final_loss']:.4f}" + (" (checkpoint loaded)" if dm.get("checkpoint_loaded") else ""))
    return "\n".join(lines)


# -- CLI ---------------------------------------------------------------------------------------------
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
    g.add_argument("--divergence", choices=("auto", "jacobian", "stepwise", "exact", "hutchinson"), default="auto",
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


def run_phi4(args: argparse.Namespace) -> int:
    """Run ``critdiff phi4``: print the report, write ``--json`` if asked. Returns the exit code."""
    _io.check_output_file(args.json, "--json")
    _io.check_output_file(args.out, "--out", suffix=".npz")
    cumulants = getattr(args, "cumulants", False)
    if cumulants and not args.train_dm:
        raise ValueError("--cumulants needs --train-dm (the table compares HMC with the diffusion model and DM-MCMC)")
    if args.checkpoint is not None and not args.train_dm:
        raise ValueError(f"--checkpoint {args.checkpoint}: needs --train-dm (the checkpoint holds the diffusion model)")
    if args.checkpoint is not None and not os.path.exists(args.checkpoint):
        _io.check_output_file(args.checkpoint, "--checkpoint", suffix=".pt")
    result = run_phi4_experiment(
        args.L, args.d, args.kappa, args.lam, n_chains=args.chains, n_traj=args.traj, burn_in=args.burn_in,
        eps=args.eps, n_steps=args.n_steps, seed=args.seed, dtype=args.dtype, device=args.device, out=args.out,
        train_dm=args.train_dm, metropolis_step=args.metropolis_step, dm_channels=tuple(args.dm_channels),
        dm_steps=args.dm_steps, dm_batch=args.dm_batch, dm_lr=args.dm_lr, ode_steps=args.ode_steps,
        ode_method=args.ode_method, divergence=args.divergence, probes=args.probes, dm_chains=args.dm_chains,
        dm_iter=args.dm_iter, dm_dtype=args.dm_dtype, progress=not args.quiet, keep_arrays=cumulants, checkpoint=args.checkpoint,
        dm_net=args.dm_net, dm_radius=args.dm_radius,
    )
    print(format_report(result))
    if cumulants:  # magnetisation cumulants of the same run; the arrays (not JSON) are dropped after
        from .cumulants import format_cumulants, phi4_cumulants

        result["cumulants"] = phi4_cumulants(result, Phi4Lattice(args.L, args.d, args.kappa, args.lam), seed=args.seed)
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
    ns = parser.parse_args(["phi4", *sys.argv[1:]])
    sys.exit(run_phi4(ns))
