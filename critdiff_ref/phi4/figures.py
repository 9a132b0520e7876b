"""The phi^4 diffusion-model figures of the stochastic-quantisation paper as measured tables and plots
(THEORY 8, "Diffusion-model MCMC" and "Observables").

``critdiff phi4-figures --out DIR [--parts acceptance autocorrelation broken]`` writes, atomically,
``DIR/<part>.md`` (markdown tables with run lengths and wall times), ``DIR/<part>.json`` (strict JSON) and
``DIR/<part>.png``:

- ``acceptance``: DM-MCMC acceptance vs kappa at fixed L and vs L at ``kappa_critical``, each with its own
  DM (:meth:`FiguresConfig.dm`) trained on an HMC ensemble (:func:`critdiff_ref.phi4.dm.trained_dm`; checkpoints under
  ``DIR/checkpoints`` so a rerun trains nothing) and the EXACT log q (Jacobian log-det of the discretised
  PF-ODE map). The measured chain acceptance (standard error over independent chains) next to the
  stationary acceptance of an independence sampler estimated from all proposals,
  ``a = E_{q x q}[min(w(x), w(y))] / E_q[w]`` with ``w = p / q``
  (:func:`~critdiff_ref.phi4.chain_statistics.stationary_acceptance`), and HMC vs DM-MCMC ``chi_2`` with the
  power of that comparison against a 10 % bias (:func:`critdiff_ref.phi4.power.power_plan`).
- ``autocorrelation``: the normalised autocorrelation ``rho(t)`` of ``|M|`` and ``tau_int`` by the Gamma
  method (:func:`~critdiff_ref.phi4.chain_statistics.autocorrelation_row`) for local Metropolis (t in sweeps), HMC (trajectories)
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
L = 8 and ~0.04 s at L = 16 with 8 chains batched (``docs/phi4_figures/fourier_local``). Tables and plots: :mod:`.figures_markdown`; the command: :mod:`.commands.figures`.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .. import _io
from .._args import ConfigError
from .chain_statistics import autocorrelation_row, magnetisation_series, stationary_acceptance, well_changes
from .dm import DM_NETS, DMConfig, check_dm_checkpoint, trained_dm
from .ensemble import EnsembleParams, generate_ensemble, summarize_chains
from .figures_markdown import MARKDOWN, plot_part
from .power import power_plan
from .sampling import DMMCConfig, dm_burn_in, run_dm_mcmc

__all__ = ["PARTS", "FiguresConfig", "QUICK", "checkpoint_path", "acceptance_table", "autocorrelation_table",
           "broken_phase", "check_checkpoints", "write_figures"]

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
                raise ConfigError(name, v, f">= {lower}")
        for name in ("eps", "metropolis_step", "dm_lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < math.inf):
                raise ConfigError(name, v, "a finite real > 0")
        if self.ode_method not in ("euler", "heun", "rk4"):
            raise ConfigError("ode_method", self.ode_method, "'euler', 'heun' or 'rk4'")
        if self.net not in DM_NETS:
            raise ConfigError("net", self.net, f"one of {DM_NETS}")
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
        for part in PARTS:  # every DM the parts train: DMConfig validates the target and the network
            for L, kappa in self.targets(part):
                self.dm(L, kappa)

    def dm(self, L: int, kappa: float) -> DMConfig:
        """The diffusion model trained at ``(L, kappa)``: this config's network and DSM settings."""
        return DMConfig(L=L, d=self.d, kappa=kappa, lam=self.lam, net=self.net, channels=self.channels,
                        radius=self.radius, steps=self.dm_steps, batch=self.dm_batch, lr=self.dm_lr)

    @property
    def divergence(self) -> str:
        """The exact log q of ``net``: whole-sampler Jacobian (U-Net) or step by step (fourier-local)."""
        return "jacobian" if self.net == "unet" else "stepwise"

    def sampling(self, n_chains: int, n_iter: int) -> DMMCConfig:
        """DM-MCMC with ``n_chains`` chains of ``n_iter`` proposals and the exact log q (:attr:`divergence`)."""
        return DMMCConfig(chains=n_chains, iterations=n_iter, ode_steps=self.ode_steps, ode_method=self.ode_method,
                          divergence=self.divergence)

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

# -- the runs ----------------------------------------------------------------------------------------
def checkpoint_path(folder: str | None, cfg: FiguresConfig, L: int, kappa: float) -> str | None:
    """The checkpoint file of the DM at ``(L, kappa)`` in ``folder`` (``None``: no checkpoints)."""
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
        dm = cfg.dm(L, kappa)
        model, _, train = trained_dm(dm, configs, checkpoint=checkpoint_path(checkpoints, cfg, L, kappa), seed=cfg.seed,
                                     device=cfg.device)
        cache[key] = {"dm": dm, "configs": configs, "hmc": info, "model": model, "train": train}
    return cache[key]


def _dm_chain(cfg: FiguresConfig, m: dict, *, n_chains: int, n_iter: int) -> tuple[object, float]:
    t0 = time.perf_counter()
    res, _ = run_dm_mcmc(m["dm"], m["model"], m["configs"], cfg.sampling(n_chains, n_iter), seed=cfg.seed,
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
        kept = cfg.dm_chains * (cfg.dm_iter - dm_burn_in(cfg.dm_iter))
        plan = power_plan(float(hmc["chi2"]), float(chain["chi2_err"]), float(hmc["chi2_err"]), n_dm=kept,
                          seconds_per_dm=seconds / res.log_q.numel())
        rows.append({
            "L": L, "kappa": kappa, "acceptance": float(acc.mean()),
            "acceptance_err": float(acc.std(correction=1) / math.sqrt(acc.numel())),
            "stationary_acceptance": stationary_acceptance(res.log_w),
            "n_proposals": int(res.log_q.numel()), "chi2_hmc": hmc["chi2"], "chi2_hmc_err": hmc["chi2_err"],
            "chi2_dm_mcmc": chain["chi2"], "chi2_dm_mcmc_err": chain["chi2_err"],
            "hmc_seconds": m["hmc"]["seconds"], "train_seconds": m["train"]["train_seconds"],
            "checkpoint_loaded": m["train"]["loaded"], "mcmc_seconds": seconds,
            "seconds_per_proposal": seconds / res.log_q.numel(),
            "power_10pct_chi2": plan["power"], "power": plan,
        })
    return {"config": _json_config(cfg), "divergence": cfg.divergence, "rows": rows}


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


_RUN = {"acceptance": acceptance_table, "autocorrelation": autocorrelation_table, "broken": broken_phase}


def check_checkpoints(cfg: FiguresConfig, folder: str | None, parts: tuple[str, ...] = PARTS) -> None:
    """Before any work: every existing checkpoint the ``parts`` would load is readable and matches its
    :meth:`FiguresConfig.dm` (one-line ValueError naming the file), and ``folder`` can be created or written."""
    if folder is None:
        return
    _io.check_output_dir(folder, "--checkpoints")
    for part in parts:
        for L, kappa in cfg.targets(part):
            path = checkpoint_path(folder, cfg, L, kappa)
            if os.path.isdir(path):
                raise ValueError(f"{path}: is a folder where the checkpoint of L = {L}, kappa = {kappa:g} belongs")
            if os.path.exists(path):
                check_dm_checkpoint(path, cfg.dm(L, kappa))


def write_figures(out: str | os.PathLike, cfg: FiguresConfig = FiguresConfig(), *, parts: tuple[str, ...] = PARTS,
                  checkpoints: str | os.PathLike | None = "default", plots: bool = True,
                  progress: bool = False) -> dict:
    """Run ``parts`` and write ``out/<part>.md``, ``.json`` and (``plots``) ``.png`` atomically; returns
    ``{part: result}`` where each result also holds its total ``seconds``. ``checkpoints``: folder of the
    trained DMs (``"default"``: ``out/checkpoints``; ``None``: train every time, save nothing), checked
    first (:func:`check_checkpoints`)."""
    for part in parts:
        if part not in PARTS:
            raise ValueError(f"parts must be a subset of {PARTS}, got part {part!r}")
    out = os.fspath(out)
    _io.check_output_dir(out, "out")
    ck = os.path.join(out, "checkpoints") if checkpoints == "default" else (None if checkpoints is None else os.fspath(checkpoints))
    check_checkpoints(cfg, ck, tuple(parts))
    os.makedirs(out, exist_ok=True)
    if ck is not None:  # the trained networks are saved there: a folder that cannot take them fails now
        try:
            os.makedirs(ck, exist_ok=True)
        except OSError as err:
            raise ValueError(f"--checkpoints {ck}: cannot create the folder ({err.strerror})") from None
        _io.check_writable_file(os.path.join(ck, "checkpoint.pt"), "--checkpoints")
    cache: dict = {}
    results = {}
    for part in parts:
        t0 = time.perf_counter()
        result = _RUN[part](cfg, checkpoints=ck, cache=cache, progress=progress)
        result["seconds"] = time.perf_counter() - t0
        md = MARKDOWN[part](result) + f"\nTotal wall time of this part: {result['seconds']:.0f} s (one CPU thread).\n"
        _io.atomic_write_text(os.path.join(out, f"{part}.md"), md)
        _io.atomic_write_text(os.path.join(out, f"{part}.json"), _io.strict_json(result))
        if plots:
            plot_part(part, result, os.path.join(out, f"{part}.png"))
        if progress:
            print(md, file=sys.stderr)
        results[part] = result
    return results

