"""Ensemble generation for lattice phi^4 as a user runs it (THEORY 8): parameters in, configurations
and a summary with honest errors out, saved atomically as ``.npz`` with the parameters as metadata.

``run_hmc_experiment(L, d, kappa, lam, ...)`` is the one-call library entry point (``critdiff phi4`` runs the same steps): batched
independent HMC chains, observables ``M, |M|, chi_2, U_L`` with errors from Wolff's Gamma method
over the replica chains (:func:`critdiff_ref.errors.gamma_method`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from .._args import ConfigError
from .._io import atomic_path
from .._progress import progress_callback
from ..errors import gamma_method
from ..samplers import mcmc
from ..targets import Phi4Lattice

__all__ = [
    "SAMPLERS",
    "EnsembleParams",
    "generate_ensemble",
    "summarize_chains",
    "summarize_magnetisation",
    "save_ensemble",
    "load_ensemble",
    "run_hmc_experiment",
    "stderr_progress",
]

SAMPLERS = ("hmc", "metropolis", "langevin", "mala")
# A run whose acceptance after burn-in is below this has frozen chains (a rejection streak of 20 updates
# on average): it fails instead of reporting chi_2 = 0 +- 0.  Langevin never rejects.
MIN_ACCEPTANCE = 0.05
FORMAT_VERSION = 1

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EnsembleParams:
    """Everything that defines an ensemble run; validated on construction.

    ``step`` is the HMC leapfrog step ``eps``, the Metropolis proposal half-width, or the Langevin
    ``dtau``; ``n_steps`` the leapfrog steps per HMC trajectory (ignored otherwise); ``n_updates``
    trajectories / sweeps / Langevin steps per chain after ``burn_in``; ``adapt``: HMC tunes ``step``
    during burn-in to a mean acceptance of 0.8 and freezes it (:func:`critdiff_ref.samplers.mcmc.hmc`).
    """

    L: int = 8
    d: int = 2
    kappa: float = 0.2
    lam: float = 0.022
    sampler: str = "hmc"
    n_chains: int = 16
    n_updates: int = 400
    burn_in: int = 100
    thin: int = 1
    step: float = 0.1
    n_steps: int = 10
    seed: int = 0
    dtype: str = "float64"
    device: str = "cpu"
    adapt: bool = True

    def __post_init__(self) -> None:
        Phi4Lattice(self.L, self.d, self.kappa, self.lam)  # validates L, d, kappa, lam
        if not isinstance(self.adapt, bool):
            raise TypeError(f"adapt must be a bool, got {self.adapt!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got sampler={self.sampler!r}")
        for name, lower in (("n_chains", 2), ("n_updates", 4), ("burn_in", 0), ("thin", 1), ("n_steps", 1), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int >= {lower}, got {v!r}")
            if v < lower:
                raise ConfigError(name, v, f">= {lower}")
        if self.n_updates // self.thin < 4:
            raise ConfigError("n_updates", self.n_updates, f">= 4 kept configurations x thin = {4 * self.thin}")
        if isinstance(self.step, bool) or not isinstance(self.step, (int, float)) or not (0 < self.step < math.inf):
            raise ConfigError("step", self.step, "a finite real > 0")
        if self.dtype not in ("float64", "float32"):
            raise ConfigError("dtype", self.dtype, "'float64' or 'float32'")
        if self.sampler == "metropolis" and self.L % 2:  # checkerboard sweeps: no two same-parity sites neighbour
            raise ConfigError("L", self.L, "even for local Metropolis (checkerboard sweeps)")

    @property
    def target(self) -> Phi4Lattice:
        return Phi4Lattice(self.L, self.d, self.kappa, self.lam)


def stderr_progress(every: float = 0.1, desc: str = "chains") -> Progress:
    """A progress callback on stderr: a tqdm bar on a terminal, else a ``done/total`` line about every
    ``every`` of the run (:func:`critdiff_ref._progress.progress_callback`)."""
    return progress_callback(desc, every=every)


def generate_ensemble(
    params: EnsembleParams, *, progress: Progress | bool | None = None
) -> tuple[torch.Tensor, dict]:
    """Run ``params.n_chains`` independent chains from a hot start: ``phi_x ~ N(0, 1/2)``, the
    ``kappa = lam = 0`` action's distribution (``phi = 0`` is a stationary point of every phi^4 action,
    from which HMC at L = 64 proposes ``dH ~ 9`` and never moves).

    Returns ``(configs, info)`` with ``configs`` ``(n_kept, n_chains, *lattice)`` and ``info`` holding
    ``acceptance`` (mean over chains), ``acceptance_per_chain`` and for HMC the step ``eps`` used after
    burn-in. ``progress=True`` prints to stderr.  Raises :class:`ValueError` naming the step when the
    acceptance after burn-in is below :data:`MIN_ACCEPTANCE` (frozen chains).
    """
    if not isinstance(params, EnsembleParams):
        raise TypeError(f"params must be an EnsembleParams, got {type(params).__name__}")
    report = stderr_progress(desc=f"{params.sampler} chains") if progress is True else (progress or None)
    callback = (lambda done, total, phi: report(done, total)) if report else None
    target = params.target
    dtype = getattr(torch, params.dtype)
    gen = torch.Generator(device=params.device).manual_seed(params.seed)
    phi0 = math.sqrt(0.5) * torch.randn((params.n_chains, *target.shape), generator=gen, dtype=dtype, device=params.device)
    common = dict(burn_in=params.burn_in, thin=params.thin, generator=gen, callback=callback)
    if params.sampler == "hmc":
        res = mcmc.hmc(target, phi0, n_traj=params.n_updates, eps=params.step, n_steps=params.n_steps,
                       adapt=params.adapt, notify=_stderr_notice if progress else None, **common)
    elif params.sampler == "metropolis":
        res = mcmc.metropolis(target, phi0, n_sweeps=params.n_updates, step_size=params.step, **common)
    else:
        res = mcmc.langevin(
            target, phi0, n_steps=params.n_updates, dtau=params.step, metropolize=params.sampler == "mala", **common
        )
    info = {
        "acceptance": float(res.acceptance.mean()),
        "acceptance_per_chain": res.acceptance.cpu().tolist(),
    }
    if res.dH is not None:
        info["mean_exp_minus_dH"] = float(torch.exp(-res.dH).mean())
    if res.eps is not None:
        info["eps"] = res.eps
    if params.sampler != "langevin" and info["acceptance"] < MIN_ACCEPTANCE:
        raise ValueError(_frozen_message(params, info))
    return res.samples, info


def _stderr_notice(message: str) -> None:
    print(f"[critdiff] {message}", file=sys.stderr, flush=True)


def _frozen_message(params: EnsembleParams, info: dict) -> str:
    """Why a run with acceptance below :data:`MIN_ACCEPTANCE` failed, naming the knobs (CLI flags)."""
    head = (f"{params.sampler}: acceptance {info['acceptance']:.3f} after burn-in is below {MIN_ACCEPTANCE}: "
            f"the chains are frozen and their observables meaningless")
    if params.sampler == "hmc":
        how = (f"leapfrog step eps = {info['eps']:.3g}" + (" (adapted during burn-in)" if params.adapt and params.burn_in else "")
               + f", n_steps = {params.n_steps}; lower the step (--eps) or the steps per trajectory (--n-steps)")
        if not (params.adapt and params.burn_in):
            how += ", or let burn-in tune the step (--burn-in > 0 with adaptation on)"
        return f"{head} ({how})"
    flag = "--metropolis-step" if params.sampler == "metropolis" else "the step"
    return f"{head} (step = {params.step:.3g}; lower {flag})"


def summarize_chains(configs: torch.Tensor, d: int, *, S: float = 1.5) -> dict:
    """``M, |M|, chi_2 = V(<M^2> - <M>^2), U_L = 1 - <M^4>/(3 <M^2>^2)`` with Gamma-method errors.

    ``configs`` ``(N, R, *lattice)``: N measurements of R independent chains (replicas).
    """
    if configs.ndim != d + 2:
        raise ValueError(f"configs must have shape (N, R, *lattice) with {d} lattice axes, got {tuple(configs.shape)}")
    V = math.prod(configs.shape[2:])
    M = configs.to(torch.float64).mean(dim=tuple(range(2, configs.ndim))).cpu().numpy()  # (N, R)
    return summarize_magnetisation(M, V, S=S)


def summarize_magnetisation(M: np.ndarray, V: int, *, S: float = 1.5) -> dict:
    """:func:`summarize_chains` from the magnetisation series ``M`` ``(N, R)`` (N measurements of R chains) of a
    lattice of ``V`` sites: the same observables and Gamma-method errors over all R replicas."""
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] < 2:
        raise ValueError(f"M must have shape (N, R) with N >= 2 measurements, got {M.shape}")
    prim = np.stack([M, M**2, M**4], axis=-1)
    g_M = gamma_method(M, S=S)
    g_abs = gamma_method(np.abs(M), S=S)
    g_chi = gamma_method(prim, lambda a: V * (a[1] - a[0] ** 2), S=S)
    g_U = gamma_method(prim, lambda a: 1.0 - a[2] / (3.0 * a[1] ** 2), S=S)
    return {
        "M": g_M.value,
        "M_err": g_M.err,
        "absM": g_abs.value,
        "absM_err": g_abs.err,
        "chi2": g_chi.value,
        "chi2_err": g_chi.err,
        "binder": g_U.value,
        "binder_err": g_U.err,
        "tau_int_absM": g_abs.tau_int,
        "tau_int_absM_err": g_abs.tau_int_err,
        "tau_int_M2": gamma_method(M**2, S=S).tau_int,
        "n_configs": int(M.size),
    }


def save_ensemble(path: str | os.PathLike, configs: torch.Tensor, params: EnsembleParams, summary: dict) -> str:
    """Write ``configs`` and JSON metadata (params, summary, format version) to ``path`` (.npz) atomically.

    The file is written to a temporary file in the same directory and moved into place with
    ``os.replace``, so readers never see a partial file. Returns the path written.
    """
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise ValueError(f"path must end in .npz, got {path!r}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"directory of path does not exist: {directory!r}")
    meta = json.dumps({"format_version": FORMAT_VERSION, "params": asdict(params), "summary": summary})
    with atomic_path(path, suffix=".npz") as tmp:  # the mode honours the umask
        with open(tmp, "wb") as fh:
            np.savez(fh, configs=configs.detach().cpu().numpy(), metadata=np.array(meta))
    return path


def load_ensemble(path: str | os.PathLike) -> tuple[np.ndarray, EnsembleParams, dict]:
    """Read a file written by :func:`save_ensemble`: ``(configs, params, summary)``."""
    with np.load(os.fspath(path), allow_pickle=False) as data:
        configs = data["configs"]
        meta = json.loads(str(data["metadata"]))
    return configs, EnsembleParams(**meta["params"]), meta["summary"]


def _hmc_ensemble(
    L: int,
    d: int,
    kappa: float,
    lam: float,
    *,
    n_chains: int,
    n_traj: int,
    burn_in: int,
    eps: float,
    n_steps: int,
    thin: int,
    seed: int,
    dtype: str,
    device: str,
    progress: Progress | bool | None,
) -> tuple[torch.Tensor, EnsembleParams, dict]:
    """The HMC run shared by :func:`run_hmc_experiment` and ``critdiff phi4``: validated parameters,
    configurations ``(n_kept, n_chains, *lattice)`` and their :func:`summarize_chains` summary plus acceptance."""
    params = EnsembleParams(
        L=L, d=d, kappa=kappa, lam=lam, sampler="hmc", n_chains=n_chains, n_updates=n_traj, burn_in=burn_in,
        thin=thin, step=eps, n_steps=n_steps, seed=seed, dtype=dtype, device=device,
    )
    configs, info = generate_ensemble(params, progress=progress)
    return configs, params, {**summarize_chains(configs, d), **info}


def run_hmc_experiment(
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
    thin: int = 1,
    seed: int = 0,
    dtype: str = "float64",
    device: str = "cpu",
    out: str | os.PathLike | None = None,
    progress: Progress | bool | None = None,
) -> dict:
    """HMC ensemble of lattice phi^4 (THEORY 8) and its summary with Gamma-method errors.

    Returns a dict with ``M, M_err, absM, absM_err, chi2, chi2_err, binder, binder_err,
    tau_int_absM, acceptance, n_configs`` (plus ``params`` and ``path`` when ``out`` is given,
    where the configurations are saved as ``.npz``). Defaults (L = 8, d = 2, 16 chains x 500
    trajectories of length 1) finish in well under a minute on one CPU core.
    """
    configs, params, summary = _hmc_ensemble(
        L, d, kappa, lam, n_chains=n_chains, n_traj=n_traj, burn_in=burn_in, eps=eps, n_steps=n_steps, thin=thin,
        seed=seed, dtype=dtype, device=device, progress=progress,
    )
    summary["params"] = asdict(params)
    if out is not None:
        summary["path"] = save_ensemble(out, configs, params, {k: v for k, v in summary.items() if k != "params"})
    return summary
