"""The phi^4 diffusion-model figures of the stochastic-quantisation paper as measured tables and plots
(THEORY 8, "Diffusion-model MCMC" and "Observables").

``critdiff phi4-figures --out DIR [--parts acceptance autocorrelation broken]`` writes, atomically,
``DIR/<part>.md`` (markdown tables with run lengths and wall times), ``DIR/<part>.json`` (strict JSON) and
``DIR/<part>.png``:

- ``acceptance``: DM-MCMC acceptance vs kappa at fixed L and vs L at ``kappa_critical``, each with its own
  DM trained on an HMC ensemble (:func:`critdiff_ref.phi4.experiment.trained_dm`; checkpoints under
  ``DIR/checkpoints`` so a rerun trains nothing) and the EXACT log q (Jacobian log-det of the discretised
  PF-ODE map). The measured chain acceptance (standard error over independent chains) next to the
  stationary acceptance of an independence sampler estimated from all proposals,
  ``a = E_{q x q}[min(w(x), w(y))] / E_q[w]`` with ``w = p / q`` (:func:`stationary_acceptance`).
- ``autocorrelation``: the normalised autocorrelation ``rho(t)`` of ``|M|`` and ``tau_int`` by the Gamma
  method (:func:`critdiff_ref.errors.gamma_method`) for local Metropolis (t in sweeps), HMC (trajectories)
  and DM-MCMC (proposals) at ``kappa_critical``, and the cost ``2 tau_int x (seconds per update)`` of one
  independent measurement.
- ``broken``: the magnetisation histogram at ``kappa_broken`` (broken phase) of HMC, the DM's own samples
  and DM-MCMC, with the number of sign changes of ``M`` along each chain (tunnelling).

Every random number comes from a seeded ``torch.Generator``. Cost at the defaults (L = 8, one thread): the
exact log q is ~0.36 s per proposal on an idle core (~V^2), so each part takes 3-6 min idle; measured on the
shared 2-core machine at load 4-6: acceptance 1820 s, autocorrelation 878 s, broken 804 s
(``docs/phi4_figures``). The paper's sizes (L = 16..64) need a GPU (docs/results/phi4-figures.md).
``--dm-net fourier-local`` (:class:`FiguresConfig` ``net``) trains the Fourier-linear + local-CNN network
instead, whose exact log q is computed step by step (``divergence="stepwise"``): ~0.005 s per proposal at
L = 8 and ~0.04 s at L = 16 with 8 chains batched (``docs/phi4_figures/fourier_local``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from .. import _io
from .._args import cli_device, cli_int, cli_positive_float
from ..errors import autocorrelation, gamma_method
from ..targets import Phi4Lattice
from .ensemble import EnsembleParams, generate_ensemble, summarize_chains
from .experiment import DM_NETS, run_dm_mcmc, trained_dm

__all__ = [
    "PARTS",
    "FiguresConfig",
    "QUICK",
    "stationary_acceptance",
    "magnetisation_series",
    "well_changes",
    "autocorrelation_row",
    "acceptance_table",
    "autocorrelation_table",
    "broken_phase",
    "write_figures",
    "add_phi4_figures_parser",
    "run_phi4_figures",
    "work_phi4_figures",
]

PARTS = ("acceptance", "autocorrelation", "broken")


@dataclass(frozen=True)
class FiguresConfig:
    """Settings of the three figures; validated on construction.

    ``L`` and ``kappas``: the acceptance-vs-kappa scan; ``sizes``: the acceptance-vs-L scan at
    ``kappa_critical`` (also the autocorrelation figure's kappa, at ``L``); ``kappa_broken``: the histogram.
    HMC training ensembles: ``hmc_chains x hmc_traj`` trajectories (``eps``, ``n_steps``) after ``burn_in``.
    DM: ``net`` (``"unet"``: U-Net with ``channels`` per level, exact log q by the whole-sampler Jacobian, ~V^2
    per proposal; ``"fourier-local"``: Fourier-linear + local CNN of width ``channels[-1]`` and receptive
    ``radius``, exact log q step by step, ``divergence="stepwise"``), ``dm_steps`` DSM steps; proposals by ``ode_method`` with ``ode_steps`` steps;
    acceptance runs ``dm_chains x dm_iter`` proposals. Autocorrelation: ``ac_chains`` chains of
    ``ac_updates`` HMC trajectories / Metropolis sweeps each and ``ac_proposals`` DM-MCMC proposals each.
    ``device``: where the chains and the DM run (``"cuda"`` for the paper's sizes).
    """

    L: int = 8
    d: int = 2
    lam: float = 0.022
    kappas: tuple[float, ...] = (0.1, 0.21, 0.27, 0.4)
    sizes: tuple[int, ...] = (4, 6, 8)
    kappa_critical: float = 0.27
    kappa_broken: float = 0.5
    hmc_chains: int = 16
    hmc_traj: int = 400
    burn_in: int = 100
    eps: float = 0.1
    n_steps: int = 10
    metropolis_step: float = 1.0
    channels: tuple[int, ...] = (8, 16)
    dm_steps: int = 1000
    dm_batch: int = 64
    dm_lr: float = 2e-3
    ode_steps: int = 8
    ode_method: str = "heun"
    dm_chains: int = 8
    dm_iter: int = 16
    ac_chains: int = 8
    ac_updates: int = 1000
    ac_proposals: int = 48
    t_max: int = 20
    seed: int = 0
    device: str = "cpu"
    net: str = "unet"
    radius: int = 1

    def __post_init__(self) -> None:
        for name, lower in (("L", 2), ("d", 1), ("hmc_chains", 2), ("hmc_traj", 4), ("burn_in", 0), ("n_steps", 1),
                            ("dm_steps", 1), ("dm_batch", 1), ("ode_steps", 1), ("dm_chains", 2), ("dm_iter", 4),
                            ("ac_chains", 2), ("ac_updates", 8), ("ac_proposals", 8), ("t_max", 1), ("seed", 0),
                            ("radius", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int >= {lower}, got {name}={v!r}")
            if v < lower:
                raise ValueError(f"{name} must be >= {lower}, got {name}={v}")
        for name in ("eps", "metropolis_step", "dm_lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < math.inf):
                raise ValueError(f"{name} must be a finite real > 0, got {name}={v!r}")
        if self.ode_method not in ("euler", "heun", "rk4"):
            raise ValueError(f"ode_method must be 'euler', 'heun' or 'rk4', got ode_method={self.ode_method!r}")
        if self.net not in DM_NETS:
            raise ValueError(f"net must be one of {DM_NETS}, got net={self.net!r}")
        object.__setattr__(self, "kappas", tuple(float(k) for k in self.kappas))
        object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if not self.kappas:
            raise ValueError("kappas must be a non-empty sequence of hopping parameters")
        if not self.sizes:
            raise ValueError("sizes must be a non-empty sequence of lattice sizes")
        step = 2 ** (len(self.channels) - 1) if self.net == "unet" else 1
        for L in (self.L, *self.sizes):  # the U-Net halves L per level; Metropolis needs an even L
            if L % max(step, 2):
                raise ValueError(f"sizes and L must be even and divisible by 2^(len(channels) - 1) = {step}, got L={L}")
        for kappa in (*self.kappas, self.kappa_critical, self.kappa_broken):
            Phi4Lattice(self.L, self.d, kappa, self.lam)  # validates kappa and lam (ValueError naming them)

    def targets(self, part: str) -> list[tuple[int, float]]:
        """The ``(L, kappa)`` points a part needs a trained DM at."""
        if part == "acceptance":
            points = [(self.L, k) for k in self.kappas] + [(L, self.kappa_critical) for L in self.sizes]
            return list(dict.fromkeys(points))
        if part == "autocorrelation":
            return [(self.L, self.kappa_critical)]
        if part == "broken":
            return [(self.L, self.kappa_broken)]
        raise ValueError(f"part must be one of {PARTS}, got part={part!r}")


# tiny settings for tests and smoke runs (seconds, not minutes)
QUICK = FiguresConfig(L=4, kappas=(0.21, 0.4), sizes=(4,), hmc_chains=4, hmc_traj=32, burn_in=16, dm_steps=30,
                      channels=(4, 8), ode_steps=4, dm_chains=2, dm_iter=8, ac_chains=2, ac_updates=40,
                      ac_proposals=12, t_max=4)


# -- estimators --------------------------------------------------------------------------------------
def stationary_acceptance(log_w: torch.Tensor | np.ndarray) -> float:
    """Stationary acceptance of independence Metropolis from iid proposals (THEORY 8, DM-MCMC).

    With importance weights ``w = p / q`` (up to a constant) the chain at stationarity (``x ~ p``) accepts
    ``y ~ q`` with probability ``min(1, w(y) / w(x))``, so ``a = E_{q x q}[min(w(x), w(y))] / E_q[w]``;
    estimated by the U-statistic over all pairs ``i != j`` of the ``n`` given ``log_w`` (any shape).
    Equals 1 iff ``w`` is constant (``q = p``).
    """
    lw = torch.as_tensor(log_w, dtype=torch.float64).reshape(-1)
    n = lw.numel()
    if n < 2 or not bool(torch.isfinite(lw).all()):
        raise ValueError(f"log_w must hold >= 2 finite log-weights, got {n} (finite: {bool(torch.isfinite(lw).all())})")
    w = torch.exp(lw - lw.max())
    ws = torch.sort(w).values
    # sum_{i != j} min(w_i, w_j) = 2 sum_k ws_k (n - 1 - k) over the ascending order (k = 0..n-1)
    pair_sum = 2.0 * float((ws * (n - 1 - torch.arange(n, dtype=torch.float64, device=ws.device))).sum())
    return pair_sum / (n * (n - 1)) / float(w.mean())


def magnetisation_series(configs: torch.Tensor, d: int) -> np.ndarray:
    """``M = (1/V) sum_x phi_x`` per configuration of ``(N, R, *lattice)`` chains: ``(N, R)`` float64."""
    if configs.ndim != d + 2:
        raise ValueError(f"configs must have shape (N, R, *lattice) with {d} lattice axes, got {tuple(configs.shape)}")
    return configs.to(torch.float64).mean(dim=tuple(range(2, configs.ndim))).cpu().numpy()


def well_changes(M: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Tunnelling events per chain of an ``(N, R)`` series: moves between the wells ``M > threshold`` and
    ``M < -threshold``, with hysteresis (a configuration with ``|M| <= threshold``, e.g. a two-domain
    state whose ``M`` fluctuates about 0, keeps the last well). ``threshold = 0``: sign changes. ``(R,)``."""
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] < 2:
        raise ValueError(f"M must have shape (N >= 2, R), got {M.shape}")
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite real >= 0, got threshold={threshold!r}")
    well = np.where(M > threshold, 1, np.where(M < -threshold, -1, 0))
    changes = np.zeros(M.shape[1], dtype=np.int64)
    last = well[0].copy()
    for w in well[1:]:
        moved = (w != 0) & (last != 0) & (w != last)
        changes += moved
        last = np.where(w != 0, w, last)
    return changes


def autocorrelation_row(abs_m: np.ndarray, *, seconds_per_update: float, unit: str, t_max: int) -> dict:
    """Gamma-method ``tau_int`` of ``|M|`` (THEORY 8: ``tau_int = 1/2 + sum_{t=1}^W rho(t)``, automatic window),
    ``rho(t)`` for ``t = 0..t_max`` (fewer when the chains are shorter), in units of ``unit``, and the cost
    ``2 tau_int x seconds_per_update`` of one independent measurement. ``abs_m`` ``(N, R)``."""
    g = gamma_method(abs_m)
    t_max = min(t_max, abs_m.shape[0] - 1)
    return {"unit": unit, "tau_int": g.tau_int, "tau_int_err": g.tau_int_err, "W": g.W, "n_total": g.n_total,
            "n_per_chain": int(abs_m.shape[0]), "n_chains": int(abs_m.shape[1]),
            "absM": g.value, "absM_err": g.err, "rho": autocorrelation(abs_m, t_max=t_max).tolist(),
            "seconds_per_update": seconds_per_update,
            "seconds_per_independent": 2.0 * g.tau_int * seconds_per_update}


# -- the runs ----------------------------------------------------------------------------------------
def _checkpoint_path(folder: str | None, cfg: FiguresConfig, L: int, kappa: float) -> str | None:
    if folder is None:
        return None
    ch = "-".join(str(c) for c in cfg.channels)
    net = "" if cfg.net == "unet" else f"_{cfg.net}-r{cfg.radius}"  # U-Net names as before (committed checkpoints)
    return os.path.join(folder, f"dm_L{L}_d{cfg.d}_kappa{kappa:g}_lam{cfg.lam:g}{net}_c{ch}_steps{cfg.dm_steps}"
                                f"_seed{cfg.seed}.pt")


def _hmc(cfg: FiguresConfig, L: int, kappa: float, *, n_chains: int, n_traj: int, seed: int) -> tuple[torch.Tensor, dict]:
    params = EnsembleParams(L=L, d=cfg.d, kappa=kappa, lam=cfg.lam, sampler="hmc", n_chains=n_chains, n_updates=n_traj,
                            burn_in=cfg.burn_in, step=cfg.eps, n_steps=cfg.n_steps, seed=seed, device=cfg.device)
    t0 = time.perf_counter()
    configs, info = generate_ensemble(params)
    return configs, {**info, "seconds": time.perf_counter() - t0}


def _model(cfg: FiguresConfig, L: int, kappa: float, checkpoints: str | None, cache: dict, progress: bool) -> dict:
    """HMC training ensemble and the DM at ``(L, kappa)``: trained (or loaded from its checkpoint) once per call."""
    key = (L, kappa)
    if key not in cache:
        if progress:
            print(f"[critdiff] phi4-figures: HMC ensemble and DM at L = {L}, kappa = {kappa:g}", file=sys.stderr)
        configs, info = _hmc(cfg, L, kappa, n_chains=cfg.hmc_chains, n_traj=cfg.hmc_traj, seed=cfg.seed)
        target = Phi4Lattice(L, cfg.d, kappa, cfg.lam)
        model, _, train = trained_dm(target, configs, checkpoint=_checkpoint_path(checkpoints, cfg, L, kappa),
                                     seed=cfg.seed, channels=cfg.channels, dm_steps=cfg.dm_steps, dm_batch=cfg.dm_batch,
                                     dm_lr=cfg.dm_lr, device=cfg.device, net=cfg.net, radius=cfg.radius)
        cache[key] = {"target": target, "configs": configs, "hmc": info, "model": model, "train": train}
    return cache[key]


def _divergence(cfg: FiguresConfig) -> str:
    """The exact log q of ``cfg.net``: whole-sampler Jacobian (U-Net) or step by step (fourier-local)."""
    return "jacobian" if cfg.net == "unet" else "stepwise"


def _dm_chain(cfg: FiguresConfig, m: dict, *, n_chains: int, n_iter: int) -> tuple[object, float]:
    t0 = time.perf_counter()
    res, _ = run_dm_mcmc(m["target"], m["model"], m["configs"], seed=cfg.seed, ode_steps=cfg.ode_steps,
                         ode_method=cfg.ode_method, divergence=_divergence(cfg), dm_chains=n_chains, dm_iter=n_iter,
                         device=cfg.device)
    return res, time.perf_counter() - t0


def acceptance_table(cfg: FiguresConfig, *, checkpoints: str | None = None, cache: dict | None = None,
                     progress: bool = False) -> dict:
    """DM-MCMC acceptance at every ``cfg.targets("acceptance")`` point (exact log q). Per row: chain
    acceptance with its standard error over the ``dm_chains`` independent chains, the stationary acceptance
    from all proposals (:func:`stationary_acceptance`), HMC vs DM-MCMC ``chi_2``, and the wall times."""
    cache = {} if cache is None else cache
    rows = []
    for L, kappa in cfg.targets("acceptance"):
        m = _model(cfg, L, kappa, checkpoints, cache, progress)
        res, seconds = _dm_chain(cfg, m, n_chains=cfg.dm_chains, n_iter=cfg.dm_iter)
        acc = res.acceptance.to(torch.float64)
        hmc = summarize_chains(m["configs"], cfg.d)
        chain = summarize_chains(res.samples, cfg.d)
        rows.append({
            "L": L, "kappa": kappa, "acceptance": float(acc.mean()),
            "acceptance_err": float(acc.std(correction=1) / math.sqrt(acc.numel())),
            "stationary_acceptance": stationary_acceptance(res.log_w),
            "n_proposals": int(res.log_q.numel()), "chi2_hmc": hmc["chi2"], "chi2_hmc_err": hmc["chi2_err"],
            "chi2_dm_mcmc": chain["chi2"], "chi2_dm_mcmc_err": chain["chi2_err"],
            "hmc_seconds": m["hmc"]["seconds"], "train_seconds": m["train"]["train_seconds"],
            "checkpoint_loaded": m["train"]["loaded"], "mcmc_seconds": seconds,
            "seconds_per_proposal": seconds / res.log_q.numel(),
        })
    return {"config": _json_config(cfg), "divergence": _divergence(cfg), "rows": rows}


def autocorrelation_table(cfg: FiguresConfig, *, checkpoints: str | None = None, cache: dict | None = None,
                          progress: bool = False) -> dict:
    """``rho(t)`` and ``tau_int`` of ``|M|`` for Metropolis (sweeps), HMC (trajectories) and DM-MCMC (proposals)
    at ``(cfg.L, cfg.kappa_critical)``, ``cfg.ac_chains`` independent chains each, with measured seconds per
    update of one chain (the chains run batched) and per independent measurement."""
    cache = {} if cache is None else cache
    L, kappa = cfg.L, cfg.kappa_critical
    m = _model(cfg, L, kappa, checkpoints, cache, progress)
    rows = {}
    if progress:
        print(f"[critdiff] phi4-figures: Metropolis, HMC and DM-MCMC chains at L = {L}, kappa = {kappa:g}", file=sys.stderr)
    met = EnsembleParams(L=L, d=cfg.d, kappa=kappa, lam=cfg.lam, sampler="metropolis", n_chains=cfg.ac_chains,
                         n_updates=cfg.ac_updates, burn_in=cfg.burn_in, step=cfg.metropolis_step, seed=cfg.seed + 2,
                         device=cfg.device)
    t0 = time.perf_counter()
    met_configs, met_info = generate_ensemble(met)
    dt = time.perf_counter() - t0
    rows["metropolis"] = {**autocorrelation_row(np.abs(magnetisation_series(met_configs, cfg.d)), unit="sweeps",
                                                seconds_per_update=dt / (cfg.ac_chains * (cfg.ac_updates + cfg.burn_in)),
                                                t_max=cfg.t_max), "acceptance": met_info["acceptance"], "seconds": dt}
    hmc_configs, hmc_info = _hmc(cfg, L, kappa, n_chains=cfg.ac_chains, n_traj=cfg.ac_updates, seed=cfg.seed + 4)
    dt = hmc_info["seconds"]
    rows["hmc"] = {**autocorrelation_row(np.abs(magnetisation_series(hmc_configs, cfg.d)), unit="trajectories",
                                         seconds_per_update=dt / (cfg.ac_chains * (cfg.ac_updates + cfg.burn_in)),
                                         t_max=cfg.t_max), "acceptance": hmc_info["acceptance"], "seconds": dt}
    res, dt = _dm_chain(cfg, m, n_chains=cfg.ac_chains, n_iter=cfg.ac_proposals)
    rows["dm_mcmc"] = {**autocorrelation_row(np.abs(magnetisation_series(res.samples, cfg.d)), unit="proposals",
                                             seconds_per_update=dt / res.log_q.numel(), t_max=cfg.t_max),
                       "acceptance": float(res.acceptance.mean()), "seconds": dt,
                       "train_seconds": m["train"]["train_seconds"], "checkpoint_loaded": m["train"]["loaded"]}
    return {"config": _json_config(cfg), "L": L, "kappa": kappa, "rows": rows}


def broken_phase(cfg: FiguresConfig, *, checkpoints: str | None = None, cache: dict | None = None,
                 progress: bool = False, bins: int = 40) -> dict:
    """Magnetisation histograms at ``(cfg.L, cfg.kappa_broken)``: the HMC training ensemble, the DM's own
    samples (PF-ODE proposals) and the DM-MCMC chain (``dm_chains x ac_proposals`` proposals), with the
    tunnelling events per chain (:func:`well_changes` with the threshold ``<|M|>_HMC / 2``) and the
    fraction of configurations with ``M > 0``."""
    cache = {} if cache is None else cache
    L, kappa = cfg.L, cfg.kappa_broken
    m = _model(cfg, L, kappa, checkpoints, cache, progress)
    res, dt = _dm_chain(cfg, m, n_chains=cfg.dm_chains, n_iter=cfg.ac_proposals)
    series = {"hmc": magnetisation_series(m["configs"], cfg.d), "dm_samples": magnetisation_series(res.proposals, cfg.d),
              "dm_mcmc": magnetisation_series(res.samples, cfg.d)}
    top = max(float(np.abs(s).max()) for s in series.values())
    edges = np.linspace(-top, top, bins + 1)
    threshold = 0.5 * float(np.abs(series["hmc"]).mean())
    rows = {}
    for name, M in series.items():
        flips = well_changes(M, threshold) if name != "dm_samples" else None  # raw proposals are iid, not a chain
        rows[name] = {"n": int(M.size), "n_per_chain": int(M.shape[0]), "n_chains": int(M.shape[1]),
                      "absM": float(np.abs(M).mean()), "fraction_positive": float((M > 0).mean()),
                      "histogram": np.histogram(M.reshape(-1), bins=edges, density=True)[0].tolist()}
        if flips is not None:
            both = ((M > threshold).any(0) & (M < -threshold).any(0)).sum()
            rows[name].update({"well_changes": int(flips.sum()), "sign_changes": int(well_changes(M).sum()),
                               "chains_in_both_wells": int(both)})
    return {"config": _json_config(cfg), "L": L, "kappa": kappa, "edges": edges.tolist(), "threshold": threshold,
            "rows": rows,
            "hmc_seconds": m["hmc"]["seconds"], "train_seconds": m["train"]["train_seconds"],
            "checkpoint_loaded": m["train"]["loaded"], "mcmc_seconds": dt, "acceptance": float(res.acceptance.mean())}


def _json_config(cfg: FiguresConfig) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}


# -- markdown and plots ------------------------------------------------------------------------------
def _pm(v: float, e: float, nd: int = 3) -> str:
    return f"{v:.{nd}f} ± {e:.{nd}f}"


def acceptance_markdown(result: dict) -> str:
    """The acceptance table as markdown (run lengths and wall times included)."""
    c = result["config"]
    net = (f"U-Net channels {c['channels']}" if c.get("net", "unet") == "unet" else
           f"fourier-local (local CNN width {c['channels'][-1]}, radius {c['radius']}; log-det step by step)")
    lines = [f"DM-MCMC acceptance, exact log q (Jacobian log-det of the discretised PF-ODE, {c['ode_method']}, "
             f"{c['ode_steps']} steps), lam = {c['lam']}, d = {c['d']}. DM: {net}, "
             f"{c['dm_steps']} DSM steps on {c['hmc_chains']} x {c['hmc_traj']} HMC trajectories; "
             f"{c['dm_chains']} chains x {c['dm_iter']} proposals per row. Acceptance error: standard error over "
             "the independent chains. Stationary acceptance: E[min(w(x), w(y))] / E[w] over all proposal pairs.",
             "",
             "| L | kappa | acceptance | stationary acceptance | chi_2 HMC | chi_2 DM-MCMC | HMC s | train s | "
             "DM-MCMC s (s / proposal) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        train = "loaded" if r["checkpoint_loaded"] else f"{r['train_seconds']:.0f}"
        lines.append(f"| {r['L']} | {r['kappa']:g} | {_pm(r['acceptance'], r['acceptance_err'], 2)} | "
                     f"{r['stationary_acceptance']:.2f} | {_pm(r['chi2_hmc'], r['chi2_hmc_err'], 2)} | "
                     f"{_pm(r['chi2_dm_mcmc'], r['chi2_dm_mcmc_err'], 2)} | {r['hmc_seconds']:.1f} | {train} | "
                     f"{r['mcmc_seconds']:.0f} ({r['seconds_per_proposal']:.3f}) |")
    return "\n".join(lines) + "\n"


_NAMES = {"metropolis": "local Metropolis", "hmc": "HMC", "dm_mcmc": "DM-MCMC", "dm_samples": "DM samples"}


def autocorrelation_markdown(result: dict) -> str:
    """The autocorrelation table as markdown."""
    c = result["config"]
    lines = [f"|M| autocorrelation at L = {result['L']}, kappa = {result['kappa']:g}, lam = {c['lam']}: "
             f"{c['ac_chains']} independent chains per sampler; tau_int by the Gamma method (S = 1.5). "
             "Seconds per update are per chain on one CPU thread with the chains batched; an independent "
             f"measurement costs 2 tau_int updates. HMC: {c['n_steps']} leapfrog steps per trajectory (eps "
             "tuned in burn-in); Metropolis: one sweep = V single-site updates; DM-MCMC: one PF-ODE proposal "
             "with its exact log q (DM training time not included).",
             "",
             "| sampler | acceptance | <\\|M\\|> | tau_int(\\|M\\|) | unit | N per chain | s / update | s / independent |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in result["rows"].items():
        lines.append(f"| {_NAMES[name]} | {r['acceptance']:.2f} | {_pm(r['absM'], r['absM_err'], 4)} | "
                     f"{_pm(r['tau_int'], r['tau_int_err'], 2)} | {r['unit']} | {r['n_per_chain']} | "
                     f"{r['seconds_per_update']:.2e} | {r['seconds_per_independent']:.2e} |")
    return "\n".join(lines) + "\n"


def tunnelling_statement(result: dict) -> str:
    """One sentence on tunnelling between the two wells, from the measured sign changes of ``M``."""
    h, d = result["rows"]["hmc"], result["rows"]["dm_mcmc"]
    return (f"Tunnelling (moves between M > {result['threshold']:.2f} and M < -{result['threshold']:.2f}, i.e. "
            f"<|M|>_HMC / 2, with hysteresis): HMC {h['well_changes']} in {h['n_chains']} chains x {h['n_per_chain']} "
            f"trajectories ({h['chains_in_both_wells']} chains visit both wells); DM-MCMC {d['well_changes']} in "
            f"{d['n_chains']} chains x {d['n_per_chain']} proposals ({d['chains_in_both_wells']} chains visit both "
            f"wells). Plain sign changes of M (two-domain states with M near 0 included): HMC {h['sign_changes']}, "
            f"DM-MCMC {d['sign_changes']}.")


def broken_markdown(result: dict) -> str:
    """The broken-phase summary as markdown."""
    c = result["config"]
    lines = [f"Broken phase L = {result['L']}, kappa = {result['kappa']:g}, lam = {c['lam']}: magnetisation of the HMC "
             f"training ensemble ({c['hmc_chains']} x {c['hmc_traj']} trajectories, hot starts), the DM's own samples and "
             f"DM-MCMC ({c['dm_chains']} x {c['ac_proposals']} proposals, acceptance {result['acceptance']:.2f}). "
             f"Wall times: HMC {result['hmc_seconds']:.1f} s, DM training "
             + ("loaded from checkpoint" if result["checkpoint_loaded"] else f"{result['train_seconds']:.0f} s")
             + f", DM-MCMC {result['mcmc_seconds']:.0f} s.",
             "",
             "| sampler | N | <\\|M\\|> | fraction M > 0 | tunnelling events (well changes) |",
             "|---|---|---|---|---|"]
    for name, r in result["rows"].items():
        flips = f"{r['well_changes']} ({r['n_chains']} chains)" if "well_changes" in r else "– (iid)"
        lines.append(f"| {_NAMES[name]} | {r['n']} | {r['absM']:.4f} | {r['fraction_positive']:.2f} | {flips} |")
    return "\n".join(lines) + "\n\n" + tunnelling_statement(result) + "\n"


def _save_plot(fig, path: str) -> None:
    with _io.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)


def _plot(part: str, result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if part == "acceptance":
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        c = result["config"]
        for ax, key, fixed, label in ((axes[0], "kappa", ("L", c["L"]), "kappa"),
                                      (axes[1], "L", ("kappa", c["kappa_critical"]), "L")):
            rows = sorted((r for r in result["rows"] if r[fixed[0]] == fixed[1]), key=lambda r: r[key])
            x = [r[key] for r in rows]
            ax.errorbar(x, [r["acceptance"] for r in rows], [r["acceptance_err"] for r in rows], fmt="o-", label="chain")
            ax.plot(x, [r["stationary_acceptance"] for r in rows], "s--", label="stationary (all pairs)")
            ax.axhspan(0.4, 0.6, color="0.9", label="published range (L >= 16)")
            ax.set_xlabel(label)
            ax.set_ylabel("DM-MCMC acceptance")
            ax.set_ylim(0, 1)
            ax.set_title(f"{fixed[0]} = {fixed[1]}")
        axes[0].legend(fontsize=7)
    elif part == "autocorrelation":
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for name, r in result["rows"].items():
            rho = np.asarray(r["rho"])
            t = np.arange(rho.size)
            axes[0].plot(t, rho, "o-", ms=3, label=f"{_NAMES[name]} (t in {r['unit']})")
            axes[1].plot(t[1:] * r["seconds_per_update"], rho[1:], "o-", ms=3, label=_NAMES[name])
        axes[0].set_xlabel("t (updates: sweeps / trajectories / proposals)")
        axes[1].set_xlabel("t x (CPU seconds per update of one chain)")
        axes[1].set_xscale("log")
        for ax in axes:
            ax.axhline(0, color="k", lw=0.5)
            ax.set_ylabel("rho_|M|(t)")
        axes[0].legend(fontsize=7)
        fig.suptitle(f"L = {result['L']}, kappa = {result['kappa']:g}")
    elif part == "broken":
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        edges = np.asarray(result["edges"])
        for name, r in result["rows"].items():
            ax.stairs(r["histogram"], edges, label=_NAMES[name])
        ax.set_xlabel("M")
        ax.set_ylabel("density")
        ax.set_title(f"L = {result['L']}, kappa = {result['kappa']:g}")
        ax.legend(fontsize=7)
    else:  # pragma: no cover - guarded by write_figures
        raise ValueError(part)
    fig.tight_layout()
    _save_plot(fig, path)
    plt.close(fig)


_RUN = {"acceptance": acceptance_table, "autocorrelation": autocorrelation_table, "broken": broken_phase}
_MD = {"acceptance": acceptance_markdown, "autocorrelation": autocorrelation_markdown, "broken": broken_markdown}


def write_figures(out: str | os.PathLike, cfg: FiguresConfig = FiguresConfig(), *, parts: tuple[str, ...] = PARTS,
                  checkpoints: str | os.PathLike | None = "default", plots: bool = True,
                  progress: bool = False) -> dict:
    """Run ``parts`` and write ``out/<part>.md``, ``.json`` and (``plots``) ``.png`` atomically; returns
    ``{part: result}`` where each result also holds its total ``seconds``. ``checkpoints``: folder of the
    trained DMs (``"default"``: ``out/checkpoints``; ``None``: train every time, save nothing)."""
    for part in parts:
        if part not in PARTS:
            raise ValueError(f"parts must be a subset of {PARTS}, got part {part!r}")
    out = os.fspath(out)
    _io.check_output_dir(out, "out")
    os.makedirs(out, exist_ok=True)
    ck = os.path.join(out, "checkpoints") if checkpoints == "default" else (None if checkpoints is None else os.fspath(checkpoints))
    cache: dict = {}
    results = {}
    for part in parts:
        t0 = time.perf_counter()
        result = _RUN[part](cfg, checkpoints=ck, cache=cache, progress=progress)
        result["seconds"] = time.perf_counter() - t0
        md = _MD[part](result) + f"\nTotal wall time of this part: {result['seconds']:.0f} s (one CPU thread).\n"
        _io.atomic_write_text(os.path.join(out, f"{part}.md"), md)
        _io.atomic_write_text(os.path.join(out, f"{part}.json"), _io.strict_json(result))
        if plots:
            _plot(part, result, os.path.join(out, f"{part}.png"))
        if progress:
            print(md, file=sys.stderr)
        results[part] = result
    return results


# -- CLI ---------------------------------------------------------------------------------------------
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


_FLAGS = {"L": "L", "kappas": "kappas", "sizes": "sizes", "kappa_critical": "kappa_critical",
          "kappa_broken": "kappa_broken", "dm_steps": "dm_steps", "dm_iter": "dm_iter", "ac_updates": "ac_updates",
          "ac_proposals": "ac_proposals", "ode_steps": "ode_steps", "lr": "dm_lr", "seed": "seed",
          "channels": "channels", "dm_batch": "dm_batch", "hmc_chains": "hmc_chains", "hmc_traj": "hmc_traj",
          "eps": "eps", "n_steps": "n_steps", "dm_chains": "dm_chains", "ac_chains": "ac_chains", "device": "device",
          "dm_net": "net", "dm_radius": "radius"}


def run_phi4_figures(args: argparse.Namespace) -> int:
    """Run ``critdiff phi4-figures``; returns the exit code."""
    _io.check_output_dir(args.out, "--out")
    cfg = QUICK if args.quick else FiguresConfig()
    cfg = replace(cfg, **{field: getattr(args, flag) for flag, field in _FLAGS.items() if getattr(args, flag) is not None})
    results = write_figures(args.out, cfg, parts=tuple(args.parts),
                            checkpoints=args.checkpoints if args.checkpoints is not None else "default",
                            plots=not args.no_plots, progress=not args.quiet)
    for part, result in results.items():
        print(f"{part}: {os.path.join(args.out, part + '.md')} ({result['seconds']:.0f} s)")
    return 0


def work_phi4_figures(args: argparse.Namespace) -> int:
    """Elements of the largest per-step tensor (for the CPU thread count): a DSM batch of the U-Net."""
    base = QUICK if args.quick else FiguresConfig()
    L = args.L or base.L
    return (args.dm_batch or base.dm_batch) * max(args.channels or base.channels) * L ** base.d
