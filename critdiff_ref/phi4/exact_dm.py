"""Exact DM-MCMC for lattice phi^4 at CPU cost (THEORY 8, "Diffusion-model MCMC", "Exactness").

:func:`run_exact_dm` trains the phi^4 DM with the fourier-local network
(:class:`~critdiff_ref.phi4.dm.DMConfig` ``net="fourier-local"``, VE sigma = 25, T = 1, through the one training
path :func:`critdiff_ref.phi4.dm.trained_dm`) on a thermalised, decorrelated HMC
ensemble (burn-in, then every ``ceil(2 tau_int(|M|))``-th trajectory), runs independence Metropolis with
PF-ODE proposals and the EXACT log q of the discretised flow by the chain rule
(``dmmc.dm_mcmc(log_q="stepwise")``), and compares ``M, |M|, chi_2, U_L`` of the chain and of the DM's
raw samples with a long, independent HMC run (Gamma-method errors over chains):
``z = (DM-MCMC - HMC) / sqrt(se_DM^2 + se_HMC^2)``; the check passes when ``|z| < 2`` for every
observable, and its power against a 10 % chi_2 bias is ``P(|Z + 0.1 chi_2 / se| > 2)``, ``Z ~ N(0, 1)``
(:func:`critdiff_ref.phi4.power.power_against_bias`). The command is ``critdiff phi4-exact-dm`` (or
``python -m critdiff_ref phi4-exact-dm``; :mod:`.commands.exact_dm`).

Every result keeps the magnetisation series of its chains, so independent runs of one network (different
``proposal_seed``; a ``phi4-exact-dm`` sweep runs them as jobs) pool exactly: :func:`pool_chains` runs the
Gamma method over all their chains together, as if they were one run with more chains.

Shapes: HMC configurations ``(n_kept, n_chains, *lattice)``; the result is a JSON-able dict.
"""

from __future__ import annotations

import inspect
import math
import time

import numpy as np
import torch

from ..samplers import dmmc, likelihood
from .dm import DMConfig, trained_dm
from .ensemble import EnsembleParams, generate_ensemble, summarize_chains, summarize_magnetisation
from .power import BIAS, Z_CHECK, power_against_bias

__all__ = ["OBSERVABLES", "PER_RUN", "z_scores", "pool_runs", "pool_chains", "check_exact_dm", "run_exact_dm"]

OBSERVABLES = ("M", "absM", "chi2", "binder")


def z_scores(summary: dict, reference: dict) -> dict:
    """``(value - reference) / sqrt(err^2 + reference_err^2)`` per observable of :data:`OBSERVABLES`."""
    return {k: (summary[k] - reference[k]) / math.hypot(summary[f"{k}_err"], reference[f"{k}_err"]) for k in OBSERVABLES}


def pool_runs(results: list[dict]) -> dict:
    """Pool :func:`run_exact_dm` results that share the HMC reference and the network (same ``seed`` and settings,
    different ``proposal_seed``): inverse-variance means ``sum w_i v_i / sum w_i``, ``w_i = 1/err_i^2``, error
    ``(sum w_i)^-1/2`` per observable, for ``dm_mcmc`` and ``dm_raw``; z-scores, pass and power recomputed."""
    if len(results) < 1:
        raise ValueError("results must hold at least one run_exact_dm result")
    ref = results[0]["hmc"]
    for r in results[1:]:
        if any(r["hmc"][k] != ref[k] for k in OBSERVABLES) or r["final_loss"] != results[0]["final_loss"]:
            raise ValueError("results must share the HMC reference and the network (same seed and settings)")

    def pooled(key: str) -> dict:
        out = {}
        for k in OBSERVABLES:
            w = [1.0 / r[key][f"{k}_err"] ** 2 for r in results]
            out[k] = sum(wi * r[key][k] for wi, r in zip(w, results)) / sum(w)
            out[f"{k}_err"] = sum(w) ** -0.5
        out["n_configs"] = sum(r[key]["n_configs"] for r in results)
        return out

    chain, raw = pooled("dm_mcmc"), pooled("dm_raw")
    chain["acceptance"] = sum(r["dm_mcmc"]["acceptance"] for r in results) / len(results)
    z_chain = z_scores(chain, ref)
    se = math.hypot(chain["chi2_err"], ref["chi2_err"])
    return {"n_runs": len(results), "hmc": ref, "dm_mcmc": chain, "dm_raw": raw, "z_dm_mcmc": z_chain,
            "z_dm_raw": z_scores(raw, ref), "passes": all(abs(z) < Z_CHECK for z in z_chain.values()),
            "chi2_combined_se": se, "power_10pct_chi2": power_against_bias(BIAS * ref["chi2"], se)}


# settings that may differ between runs pooled by pool_chains (each run's own chains)
PER_RUN = ("proposal_seed", "dm_chains")


def _proposal_seed(result: dict) -> int:
    s = result["settings"]
    return s["seed"] + 4 if s["proposal_seed"] < 0 else s["proposal_seed"]


def pool_chains(results: list[dict]) -> dict:
    """Pool :func:`run_exact_dm` results of one network and HMC reference by their chains: the kept
    magnetisation series of every chain of every run (``series``) go into one Gamma-method analysis
    (:func:`~critdiff_ref.phi4.ensemble.summarize_magnetisation`), for ``dm_mcmc`` and ``dm_raw``; acceptance is
    the mean over chains; z-scores, pass and power as in :func:`run_exact_dm`.

    The runs must share every setting but ``proposal_seed`` and ``dm_chains`` (so the HMC reference and the
    network are the same: checked on the reference's values and the final DSM loss too), keep the same number of
    states per chain, and use different proposal seeds (the same seed would repeat the same chains)."""
    if len(results) < 1:
        raise ValueError("results must hold at least one run_exact_dm result")
    missing = [i for i, r in enumerate(results) if "series" not in r]
    if missing:
        raise ValueError(f"results[{missing[0]}] keeps no chain series (a result from before series were kept): "
                         f"pool such results with pool_runs")
    first = results[0]
    shared = {k: v for k, v in first["settings"].items() if k not in PER_RUN}
    seeds: dict[int, int] = {}
    for i, r in enumerate(results):
        diff = sorted(k for k, v in shared.items() if r["settings"].get(k) != v)
        for k in ("L", "d", "kappa", "lam"):
            if r[k] != first[k]:
                diff.append(k)
        if diff:
            raise ValueError(f"results[{i}] differs from results[0] in {', '.join(diff)}: only runs of one network "
                             f"and reference (different proposal_seed) pool")
        if any(r["hmc"][k] != first["hmc"][k] for k in OBSERVABLES) or r["final_loss"] != first["final_loss"]:
            raise ValueError(f"results[{i}] has another HMC reference or network than results[0] (same settings, "
                             f"different numbers: another machine or torch build?)")
        seed = _proposal_seed(r)
        if seed in seeds:
            raise ValueError(f"results[{seeds[seed]}] and results[{i}] share proposal seed {seed}: their chains are "
                             f"copies; give every run its own proposal_seed")
        seeds[seed] = i
    V = first["L"] ** first["d"]

    def pooled(key: str) -> dict:
        series = [np.asarray(r["series"][key], dtype=np.float64) for r in results]  # each (chains, kept)
        lengths = sorted({x.shape[1] for x in series})
        if len(lengths) > 1:
            raise ValueError(f"the runs keep {lengths} states per chain: pool runs with the same dm_iter and dm_burn_in")
        return summarize_magnetisation(np.concatenate(series, axis=0).T, V)

    chain, raw = pooled("dm_mcmc_M"), pooled("dm_raw_M")
    acc = [a for r in results for a in r["series"]["acceptance"]]
    chain["acceptance"] = float(np.mean(acc))
    ref = first["hmc"]
    z_chain = z_scores(chain, ref)
    se = math.hypot(chain["chi2_err"], ref["chi2_err"])
    return {"n_runs": len(results), "n_chains": len(acc), "proposal_seeds": sorted(seeds), "hmc": ref,
            "final_loss": first["final_loss"], "settings": shared, "dm_mcmc": chain, "dm_raw": raw,
            "z_dm_mcmc": z_chain, "z_dm_raw": z_scores(raw, ref),
            "passes": all(abs(z) < Z_CHECK for z in z_chain.values()), "chi2_combined_se": se,
            "power_10pct_chi2": power_against_bias(BIAS * ref["chi2"], se)}


def _series(configs: torch.Tensor) -> list[list[float]]:
    """The magnetisation of ``configs`` ``(N, R, *lattice)`` per chain: ``R`` lists of ``N`` numbers."""
    return configs.to(torch.float64).mean(dim=tuple(range(2, configs.ndim))).T.tolist()


def _summary(configs: torch.Tensor, d: int) -> dict:
    s = summarize_chains(configs, d)
    return {k: float(v) for k, v in s.items()}


def _thinned_training_set(configs: torch.Tensor, tau_int: float) -> tuple[torch.Tensor, int]:
    """Every ``ceil(2 tau_int)``-th configuration of every chain: ``((n, *lattice), thin)``."""
    thin = max(1, math.ceil(2.0 * tau_int))
    return configs[thin - 1::thin].reshape(-1, *configs.shape[2:]), thin


# lower bounds of the counts (the rest is checked by DMConfig and EnsembleParams)
_LOWER = {"hmc_chains": 2, "train_chains": 1, "hmc_traj": 2, "train_traj": 2, "ode_steps": 1, "dm_chains": 1,
          "batch_size": 1, "dm_burn_in": 0}


def check_exact_dm(L: int, **settings) -> DMConfig:
    """Every argument of :func:`run_exact_dm` (``settings``: its keywords, defaults filled in) checked before any
    HMC or training: ValueError naming the parameter and its allowed range. Returns the run's :class:`DMConfig`."""
    p = {**{k: v.default for k, v in inspect.signature(run_exact_dm).parameters.items()
            if v.default is not inspect.Parameter.empty}, **settings}
    if p["ode_method"] not in ("euler", "heun", "rk4"):
        raise ValueError(f"ode_method must be 'euler', 'heun' or 'rk4', got ode_method={p['ode_method']!r}")
    for name, low in _LOWER.items():
        if p[name] < low:
            raise ValueError(f"{name} must be >= {low}, got {name}={p[name]}")
    if p["dm_iter"] < p["dm_burn_in"] + 2:
        raise ValueError(f"dm_iter must be >= dm_burn_in + 2 = {p['dm_burn_in'] + 2} (two kept states per chain), "
                         f"got dm_iter={p['dm_iter']}")
    if p["checkpoint"] and not str(p["checkpoint"]).endswith(".pt"):
        raise ValueError(f"checkpoint must be a .pt file name, got checkpoint={p['checkpoint']!r}")
    dm = DMConfig(L=L, d=p["d"], kappa=p["kappa"], lam=p["lam"], net="fourier-local", channels=(p["channels"],),
                  radius=p["radius"], depth=p["depth"], steps=p["dm_steps"], batch=p["dm_batch"], lr=p["dm_lr"],
                  dtype="float32")
    for chains, traj in ((p["hmc_chains"], p["hmc_traj"]), (p["train_chains"], p["train_traj"])):
        EnsembleParams(L=L, d=p["d"], kappa=p["kappa"], lam=p["lam"], n_chains=chains, n_updates=traj,
                       burn_in=p["burn_in"], step=p["eps"], n_steps=p["n_steps"], seed=p["seed"], device=p["device"])
    return dm


def run_exact_dm(
    L: int,
    kappa: float = 0.21,
    lam: float = 0.022,
    *,
    d: int = 2,
    seed: int = 0,
    hmc_chains: int = 64,
    hmc_traj: int = 4000,
    train_chains: int = 16,
    train_traj: int = 1500,
    burn_in: int = 300,
    eps: float = 0.1,
    n_steps: int = 10,
    radius: int = 1,
    channels: int = 16,
    depth: int = 2,
    dm_steps: int = 3000,
    dm_batch: int = 64,
    dm_lr: float = 3e-3,
    ode_steps: int = 16,
    ode_method: str = "heun",
    dm_chains: int = 16,
    dm_iter: int = 250,
    dm_burn_in: int = 10,
    batch_size: int = 32,
    device: str = "cpu",
    checkpoint: str = "",
    proposal_seed: int = -1,
    progress: bool = False,
) -> dict:
    """HMC reference, DSM training, exact DM-MCMC (module docstring): a JSON-able dict.

    Keys: ``hmc`` and ``train_ensemble`` (summaries with ``tau_int_absM``, ``acceptance``, ``thin``,
    ``n_configs``), ``dm_raw`` (the DM's own samples), ``dm_mcmc`` (the chain, with ``acceptance``),
    ``z_dm_mcmc`` / ``z_dm_raw`` (vs HMC), ``passes`` (every ``|z| < 2``), ``chi2_combined_se``,
    ``power_10pct_chi2``, ``final_loss``, the settings, wall times (``seconds``) and ``series``: the
    magnetisation of every kept state per chain (``dm_mcmc_M``, ``dm_raw_M``: lists of ``dm_chains`` lists) and
    the acceptance per chain, for :func:`pool_chains`.  The network trains
    in float32 (:func:`critdiff_ref.phi4.dm.train_dm`: the mean DSM loss of the last 50 steps is ``final_loss``);
    the proposals and their log q are float64 (the same weights).  Seeds: reference HMC ``seed``, training HMC
    ``seed + 1``, network and DSM ``train_dm(seed=seed + 2)`` (one generator seeded ``seed + 3``), proposals
    ``seed + 4`` (or ``proposal_seed`` when >= 0: independent chains of the same network, to pool runs).
    ``checkpoint``: a ``.pt`` path: the network is loaded from it when it exists (checked against the
    :class:`DMConfig`), else trained and saved there (weights only, atomically); ``""``: train, save nothing.
    """
    settings = {k: v for k, v in locals().items() if k not in ("L", "progress")}
    dm = check_exact_dm(L, **settings)
    target = dm.target
    seconds = {}
    say = (lambda msg: print(f"[exact_dm L={L}] {msg}", flush=True)) if progress else (lambda msg: None)

    t0 = time.perf_counter()
    ref_configs, ref_info = generate_ensemble(EnsembleParams(L=L, d=d, kappa=kappa, lam=lam, n_chains=hmc_chains,
                                                             n_updates=hmc_traj, burn_in=burn_in, step=eps,
                                                             n_steps=n_steps, seed=seed, device=device))
    hmc = {**_summary(ref_configs, d), "acceptance": ref_info["acceptance"], "burn_in": burn_in}
    seconds["hmc"] = time.perf_counter() - t0
    say(f"HMC reference {hmc_chains} x {hmc_traj}: chi2 {hmc['chi2']:.4f} +- {hmc['chi2_err']:.4f}, "
        f"tau_int(|M|) {hmc['tau_int_absM']:.2f} ({seconds['hmc']:.0f} s)")

    t0 = time.perf_counter()
    tr_configs, tr_info = generate_ensemble(EnsembleParams(L=L, d=d, kappa=kappa, lam=lam, n_chains=train_chains,
                                                           n_updates=train_traj, burn_in=burn_in, step=eps,
                                                           n_steps=n_steps, seed=seed + 1, device=device))
    tr = _summary(tr_configs, d)
    # thermalisation: |M| of the first and second halves of the kept trajectories agree (z of the difference)
    half = tr_configs.shape[0] // 2
    a, b = _summary(tr_configs[:half], d), _summary(tr_configs[half:], d)
    z_half = (a["absM"] - b["absM"]) / math.hypot(a["absM_err"], b["absM_err"])
    data, thin = _thinned_training_set(tr_configs, tr["tau_int_absM"])
    train_ensemble = {**tr, "acceptance": tr_info["acceptance"], "thin": thin, "n_train": int(data.shape[0]),
                      "burn_in_over_tau_int": burn_in / tr["tau_int_absM"], "z_absM_first_vs_second_half": z_half}
    seconds["train_hmc"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    net, _, info = trained_dm(dm, data, checkpoint=checkpoint or None, seed=seed + 2, device=device)
    final_loss = info["final_loss"]
    data_std = float(data.to(torch.float64).std())
    seconds["train_dm"] = time.perf_counter() - t0
    say(f"DSM {dm_steps} steps on {data.shape[0]} configs (thin {thin}): final loss {final_loss:.4f} "
        f"({seconds['train_dm']:.0f} s{', checkpoint loaded' if info['loaded'] else ''})")

    t0 = time.perf_counter()
    net = net.to(torch.float64)
    prior = likelihood.isotropic_prior(dm.process, L, d, data_variance=data_std**2)
    res = dmmc.dm_mcmc(target, net, dm.process, prior, n_chains=dm_chains, n_iter=dm_iter, steps=ode_steps,
                       method=ode_method, t_min=dm.t_min, log_q="stepwise", burn_in=dm_burn_in, batch_size=batch_size,
                       generator=torch.Generator(device=device).manual_seed(seed + 4 if proposal_seed < 0 else proposal_seed),
                       dtype=torch.float64, device=device)
    seconds["dm_mcmc"] = time.perf_counter() - t0
    chain = {**_summary(res.samples, d), "acceptance": float(res.acceptance.mean())}
    raw_configs = res.proposals[dm_burn_in:]
    raw = _summary(raw_configs, d)
    z_chain, z_raw = z_scores(chain, hmc), z_scores(raw, hmc)
    se = math.hypot(chain["chi2_err"], hmc["chi2_err"])
    say(f"DM-MCMC {dm_chains} x {dm_iter} ({ode_method} {ode_steps}): acceptance {chain['acceptance']:.3f}, "
        f"z {z_chain} ({seconds['dm_mcmc']:.0f} s)")
    return {
        "L": L, "d": d, "kappa": kappa, "lam": lam,
        "settings": {"hmc_chains": hmc_chains, "hmc_traj": hmc_traj, "train_chains": train_chains, "train_traj": train_traj,
                     "burn_in": burn_in, "eps": eps, "n_steps": n_steps, "radius": radius, "channels": channels,
                     "depth": depth, "dm_steps": dm_steps, "dm_batch": dm_batch, "dm_lr": dm_lr, "ode_steps": ode_steps,
                     "ode_method": ode_method, "dm_chains": dm_chains, "dm_iter": dm_iter, "dm_burn_in": dm_burn_in,
                     "seed": seed, "proposal_seed": proposal_seed},
        "hmc": hmc,
        "train_ensemble": train_ensemble,
        "final_loss": final_loss,
        "checkpoint_loaded": info["loaded"],
        "dm_raw": raw,
        "dm_mcmc": chain,
        "z_dm_mcmc": z_chain,
        "z_dm_raw": z_raw,
        "passes": all(abs(z) < Z_CHECK for z in z_chain.values()),
        "chi2_combined_se": se,
        "power_10pct_chi2": power_against_bias(BIAS * hmc["chi2"], se),
        "seconds_per_proposal": seconds["dm_mcmc"] / (dm_chains * dm_iter),
        "seconds": seconds,
        "series": {"dm_mcmc_M": _series(res.samples), "dm_raw_M": _series(raw_configs),
                   "acceptance": [float(a) for a in res.acceptance]},
    }

