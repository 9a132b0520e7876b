"""The lattice phi^4 experiment (THEORY 8): HMC observables with honest errors and, optionally, a neural
diffusion model trained on the HMC ensemble, its PF-ODE likelihood and diffusion-model MCMC.

1. HMC (:class:`~critdiff_ref.phi4.ensemble.EnsembleParams`): ``<M>, <|M|>, chi_2, U_L`` with Gamma-method
   errors over independent chains, ``tau_int`` of ``|M|`` (in trajectories) and the acceptance.
2. With a :class:`~critdiff_ref.phi4.dm.DMConfig`: local Metropolis at the same parameters (``tau_int`` in
   sweeps); the score network trained by DSM on the HMC configurations (or loaded from a checkpoint:
   :func:`~critdiff_ref.phi4.dm.trained_dm`); PF-ODE samples with their model log-density ``log q``
   (:class:`~critdiff_ref.phi4.sampling.DMMCConfig`); the observables of the raw generated configurations
   (jackknife errors, independent draws); ``R^2`` of ``S_eff = -log q`` against the true action; DM-MCMC
   with its acceptance, observables, ``tau_int`` of ``|M|`` (in proposals), and the power of its ``chi_2``
   comparison with HMC against a 10 % bias (:func:`critdiff_ref.phi4.power.power_plan`).

``log q`` is by default the EXACT log-density of the discretised flow (U-Net for ``V <= 16``: Jacobian
log-det; fourier-local: the same log-det step by step); a U-Net beyond ``V = 16`` uses Hutchinson (APPROXIMATE,
on the residual from the Gaussian with the ensemble's ``<|phi_k|^2>``, a control variate). The command is
:mod:`critdiff_ref.phi4.commands.phi4` (``critdiff phi4``).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import torch

from ..observables import phi4_observables
from ..samplers import likelihood
from .dm import DMConfig, check_dm_checkpoint, default_dm_net, trained_dm
from .ensemble import EnsembleParams, generate_ensemble, save_ensemble, summarize_chains
from .power import power_plan
from .sampling import DMMCConfig, run_dm_mcmc

__all__ = ["JSON_KEYS", "OBSERVABLES", "run_experiment", "run_phi4_experiment", "dm_section", "format_report"]

JSON_KEYS = ("M", "M_err", "absM", "absM_err", "chi2", "chi2_err", "binder", "binder_err", "tau_int_absM",
             "acceptance", "n_configs")
OBSERVABLES = ("M", "absM", "chi2", "binder")


def dm_section(dm: DMConfig, hmc_configs: torch.Tensor, sampling: DMMCConfig = DMMCConfig(), *, seed: int,
               device: str = "cpu", progress: bool = False, keep_arrays: bool = False,
               checkpoint: str | os.PathLike | None = None, hmc_summary: dict | None = None) -> dict:
    """Train the DM on the HMC configurations ``(n, chains, *lattice)`` (or load it from ``checkpoint``), sample
    with log q, run DM-MCMC; observables of both. With ``hmc_summary`` (the HMC row) the result has ``power``:
    :func:`~critdiff_ref.phi4.power.power_plan` of the DM-MCMC vs HMC chi_2 comparison. ``keep_arrays`` adds
    ``arrays`` (not JSON): per-proposal ``log_q``, ``action`` and the magnetisations, for plots and cumulants."""
    target = dm.target
    model, _, info = trained_dm(dm, hmc_configs, checkpoint=checkpoint, seed=seed, device=device, progress=progress)
    t0 = time.perf_counter()
    res, divergence = run_dm_mcmc(dm, model, hmc_configs, sampling, seed=seed, device=device, progress=progress)
    seconds_per_proposal = (time.perf_counter() - t0) / (sampling.chains * sampling.iterations)
    raw = res.proposals.reshape(-1, *target.shape).to(torch.float64)
    raw_obs = phi4_observables(raw, target.d, n_blocks=min(20, raw.shape[0]))
    chain = summarize_chains(res.samples, target.d)
    generated = {k: float(raw_obs[k].value) for k in OBSERVABLES}
    generated.update({f"{k}_err": float(raw_obs[k].err) for k in OBSERVABLES})
    generated["n_configs"] = int(raw.shape[0])
    arrays = {}
    if keep_arrays:
        dims = tuple(range(-target.d, 0))
        arrays = {"arrays": {"log_q": res.log_q.detach().cpu(), "action": res.action.detach().cpu(),
                             "M_generated": raw.mean(dim=dims), "M_chain": res.samples.to(torch.float64).mean(dim=dims),
                             "M_hmc": hmc_configs.to(torch.float64).mean(dim=dims).cpu()}}  # (n_traj, n_chains)
    out = {
        **arrays,
        "final_loss": info["final_loss"],
        "checkpoint_loaded": info["loaded"],
        "divergence": divergence,
        "generated": generated,
        "r2_action": likelihood.action_r2(res.log_q, res.action),
        "dm_mcmc": {**{k: chain[k] for k in JSON_KEYS if k in chain}, "acceptance": float(res.acceptance.mean())},
    }
    if hmc_summary is not None:
        out["power"] = {**power_plan(float(hmc_summary["chi2"]), float(chain["chi2_err"]), float(hmc_summary["chi2_err"]),
                                     n_dm=sampling.kept, seconds_per_dm=seconds_per_proposal),
                        "seconds_per_proposal": seconds_per_proposal}
    return out


def _check_before_running(hmc: EnsembleParams, dm: DMConfig | None, sampling: DMMCConfig,
                          checkpoint: str | os.PathLike | None, metropolis_step: float) -> EnsembleParams | None:
    """Everything that would fail after the HMC run or the training, checked first (ValueError)."""
    if dm is None:
        return None
    if (dm.L, dm.d, dm.kappa, dm.lam) != (hmc.L, hmc.d, hmc.kappa, hmc.lam):
        raise ValueError(f"dm targets L={dm.L}, d={dm.d}, kappa={dm.kappa}, lam={dm.lam}; the HMC run L={hmc.L}, "
                         f"d={hmc.d}, kappa={hmc.kappa}, lam={hmc.lam}")
    sampling.resolve_divergence(dm)
    if sampling.chains < 2:
        raise ValueError(f"the DM-MCMC errors need >= 2 independent chains, got {sampling.chains} chain(s)")
    if checkpoint is not None:
        if not str(checkpoint).endswith(".pt"):
            raise ValueError(f"checkpoint must be a .pt file name, got checkpoint={checkpoint!r}")
        if os.path.exists(checkpoint):
            check_dm_checkpoint(checkpoint, dm)
    return replace(hmc, sampler="metropolis", step=metropolis_step, seed=hmc.seed + 2, thin=1, n_steps=10)


def run_experiment(hmc: EnsembleParams, dm: DMConfig | None = None, sampling: DMMCConfig = DMMCConfig(), *,
                   metropolis_step: float = 1.0, out: str | None = None, checkpoint: str | os.PathLike | None = None,
                   progress: bool = False, keep_arrays: bool = False) -> dict:
    """Run the experiment (module docstring): ``{key: value for key in JSON_KEYS}`` for HMC, plus ``metropolis``
    and ``dm`` (:func:`dm_section`) sub-dicts when ``dm`` is given. Every check that does not need the HMC run
    (the DM's target, divergence, an existing ``checkpoint`` against ``dm``, Metropolis' even L) runs first.
    ``out``: save the HMC configurations (``.npz``)."""
    if not isinstance(hmc, EnsembleParams) or hmc.sampler != "hmc":
        raise ValueError(f"hmc must be EnsembleParams with sampler='hmc', got {hmc!r}")
    met_params = _check_before_running(hmc, dm, sampling, checkpoint, metropolis_step)
    hmc_configs, hmc_info = generate_ensemble(hmc, progress=progress)
    summary = {**summarize_chains(hmc_configs, hmc.d), **hmc_info}
    if out is not None:
        save_ensemble(out, hmc_configs, hmc, summary)  # the same summary keys as run_hmc_experiment's file
    result = {k: (int(summary[k]) if k == "n_configs" else float(summary[k])) for k in JSON_KEYS}
    if dm is None:
        return result
    met_configs, met_info = generate_ensemble(met_params, progress=progress)
    met = summarize_chains(met_configs, hmc.d)
    result["metropolis"] = {**{k: float(met[k]) for k in JSON_KEYS if k in met and k != "n_configs"},
                            "acceptance": met_info["acceptance"], "n_configs": int(met["n_configs"])}
    result["dm"] = dm_section(dm, hmc_configs, sampling, seed=hmc.seed, device=hmc.device, progress=progress,
                              keep_arrays=keep_arrays, checkpoint=checkpoint, hmc_summary=result)
    return result


def run_phi4_experiment(
    L: int = 8, d: int = 2, kappa: float = 0.2, lam: float = 0.022, *, n_chains: int = 16, n_traj: int = 400,
    burn_in: int = 100, eps: float = 0.1, n_steps: int = 10, seed: int = 0, dtype: str = "float64",
    device: str = "cpu", out: str | None = None, train_dm: bool = False, metropolis_step: float = 1.0,
    dm_channels: tuple[int, ...] = (8, 16), dm_steps: int = 1000, dm_batch: int = 64, dm_lr: float = 2e-3,
    ode_steps: int = 16, ode_method: str = "heun", divergence: str = "auto", probes: int = 2, dm_chains: int = 8,
    dm_iter: int = 64, dm_dtype: str = "float32", progress: bool = False, keep_arrays: bool = False,
    checkpoint: str | None = None, dm_net: str = "auto", dm_radius: int = 1,
) -> dict:
    """:func:`run_experiment` with every setting as a flat keyword (the names of a ``critdiff sweep`` phi4 spec):
    builds the :class:`EnsembleParams`, and with ``train_dm`` the :class:`DMConfig` (``dm_net="auto"``:
    :func:`~critdiff_ref.phi4.dm.default_dm_net`) and :class:`DMMCConfig`."""
    hmc = EnsembleParams(L=L, d=d, kappa=kappa, lam=lam, sampler="hmc", n_chains=n_chains, n_updates=n_traj,
                         burn_in=burn_in, thin=1, step=eps, n_steps=n_steps, seed=seed, dtype=dtype, device=device)
    if divergence not in ("auto", "jacobian", "stepwise", "exact", "hutchinson"):
        raise ValueError("divergence must be 'auto', 'jacobian', 'stepwise', 'exact' or 'hutchinson', got"
                         f" divergence={divergence!r}")
    if dm_dtype not in ("float32", "float64"):
        raise ValueError(f"dm_dtype must be 'float32' or 'float64', got dm_dtype={dm_dtype!r}")
    if dm_net not in ("auto", "unet", "fourier-local"):
        raise ValueError(f"dm_net must be 'auto' or one of ('unet', 'fourier-local'), got dm_net={dm_net!r}")
    net = default_dm_net(L, d) if dm_net == "auto" else dm_net
    dm = DMConfig(L=L, d=d, kappa=kappa, lam=lam, net=net, channels=tuple(dm_channels), radius=dm_radius,
                  steps=dm_steps, batch=dm_batch, lr=dm_lr, dtype=dm_dtype) if train_dm else None
    sampling = DMMCConfig(chains=dm_chains, iterations=dm_iter, ode_steps=ode_steps, ode_method=ode_method,
                          divergence=divergence, probes=probes)
    if divergence == "stepwise" and net != "fourier-local":
        raise ValueError("divergence='stepwise' needs dm_net='fourier-local' (the network with cheap exact step Jacobians)")
    return run_experiment(hmc, dm, sampling, metropolis_step=metropolis_step, out=out, checkpoint=checkpoint,
                          progress=progress, keep_arrays=keep_arrays)


def _row(name: str, r: dict, extra: str = "") -> str:
    cells = [f"{r[k]: .5f} +- {r[k + '_err']:.5f}" for k in OBSERVABLES]
    return f"{name:<12}" + "".join(f"{c:>24}" for c in cells) + extra


def format_report(result: dict, *, power_text: str | None = None) -> str:
    """A plain-text table of the experiment's observables (``power_text``: a line under the DM-MCMC rows)."""
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
        if power_text:
            lines.append(f"DM-MCMC vs HMC: {power_text}")
    return "\n".join(lines)
