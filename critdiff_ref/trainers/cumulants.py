"""Learned cumulants (THEORY 6): the cumulants paper's Table 1, a trained score MLP on the two-peak model.

:func:`learned_cumulants` (the command ``critdiff cumulants``, :mod:`critdiff_ref.report.learned`):

1. Train :class:`~critdiff_ref.trainers.mlp.ScoreMLP` by DSM (:func:`~critdiff_ref.trainers.dsm.train_dsm`)
   on ``n_data`` draws of ``1/2 N(mu, s^2) + 1/2 N(-mu, s^2)`` under VE (sigma = 25) or VP
   (beta 0.1..20), or load a weights-only checkpoint (:mod:`.cumulants_checkpoint`).
2. Generate ``n_gen`` samples by Euler–Maruyama (:func:`~critdiff_ref.samplers.reverse_sde`) from
   ``N(0, Xi(T))`` down to ``t_min``, with the trained and with the exact score (the same start and
   the same noise: common random numbers).
3. Table: rows exact / data / exact-score sampler / trained, k-statistics kappa_2..kappa_8 with
   bootstrap errors (:func:`~critdiff_ref.observables.kstat_bootstrap`).
4. Decomposition of each trained-row deviation: ``bias`` of the exact-score sampler at 250 / 500 /
   1000 / 2000 steps fitted as ``b_0 + c h`` (Euler–Maruyama is weak order 1; ``b_0`` = the exact
   ``kappa_n(t_min) - kappa_n(0)``), the training error ``trained - exact-score`` on common noise
   (paired bootstrap), and the score error itself, ``E_t Xi(t) E_{p_t} |s_theta - s|^2`` (the DSM
   excess loss).

Paper settings (``PAPER``): ``n_data = 10^6`` (inferred from the data row's bootstrap errors),
batch 512, Adam lr 1e-4, 200 epochs, 1000 EM steps; :data:`QUICK` is a reduced size for tests and
the quick report.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
import torch

from .._args import ConfigError
from ..processes import VE, VP, Process
from ..targets import TwoGaussianMixture
from .dsm import train_dsm
from .mlp import ScoreMLP

__all__ = [
    "CumulantsConfig",
    "PAPER",
    "QUICK",
    "ORDERS",
    "SWEEP_STEPS",
    "make_process",
    "build_model",
    "ignore_time",
    "WrongDriftSign",
    "training_data",
    "train_model",
    "TRAINING_FIELDS",
    "network_score",
    "generate",
    "cumulant_row",
    "paired_difference",
    "exact_row",
    "fit_em_bias",
    "score_error",
    "learned_cumulants",
    "tolerance",
    "checks",
    "passes",
]

TRAINING_FIELDS = ("n_data", "epochs", "batch_size", "lr")  # what a loaded checkpoint's training used


@dataclass(frozen=True)
class CumulantsConfig:
    """Every setting of one learned-cumulants run (target, process, network, training, sampling)."""

    process: str = "ve"
    mu: float = 1.0
    s: float = 0.25
    sigma: float = 25.0
    beta_min: float = 0.1
    beta_max: float = 20.0
    n_data: int = 1_000_000
    epochs: int = 200
    batch_size: int = 512
    lr: float = 1e-4
    hidden: tuple[int, ...] = (64, 64)
    embed_dim: int = 128
    fourier_scale: float = 16.0
    t_min: float = 1e-3
    em_steps: int = 1000
    n_gen: int = 1_000_000
    n_boot: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if self.process not in ("ve", "vp"):
            raise ConfigError("process", self.process, "'ve' or 'vp'")
        for name in ("n_data", "epochs", "batch_size", "embed_dim", "em_steps", "n_gen", "n_boot"):
            v = getattr(self, name)
            lower = 8 if name in ("n_data", "n_gen") else 1
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lower:
                raise ConfigError(name, v, f"an int >= {lower}")
        for name in ("mu", "s", "sigma", "beta_min", "beta_max", "lr", "fourier_scale", "t_min"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(name, v, "a finite real >= 0")
        if not 0.0 < self.t_min < 1.0:
            raise ConfigError("t_min", self.t_min, "in (0, T) = (0, 1)")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    @property
    def target(self) -> TwoGaussianMixture:
        return TwoGaussianMixture(self.mu, self.s)

    @property
    def train_steps(self) -> int:
        """``epochs * ceil(n_data / batch_size)`` optimiser steps."""
        return self.epochs * -(-self.n_data // self.batch_size)

    def training(self) -> dict:
        """The settings of training alone (a checkpoint records them; sampling does not need them)."""
        return {name: getattr(self, name) for name in TRAINING_FIELDS}

    def architecture(self) -> dict:
        """The settings a checkpoint must match to be loaded into :func:`build_model`."""
        return {"process": self.process, "mu": self.mu, "s": self.s, "sigma": self.sigma, "beta_min": self.beta_min,
                "beta_max": self.beta_max, "hidden": list(self.hidden), "embed_dim": self.embed_dim,
                "fourier_scale": self.fourier_scale}


PAPER = CumulantsConfig()
QUICK = replace(PAPER, n_data=50_000, epochs=20, lr=1e-3, n_gen=20_000, n_boot=100)


def make_process(config: CumulantsConfig) -> Process:
    """VE(sigma) or VP(beta_min, beta_max), T = 1 (THEORY 1)."""
    if config.process == "ve":
        return VE(sigma=config.sigma)
    return VP(beta_min=config.beta_min, beta_max=config.beta_max)


def build_model(config: CumulantsConfig, *, time_blind: bool = False) -> ScoreMLP:
    """The untrained :class:`ScoreMLP` of ``config`` (float32, seeded). ``time_blind``: a planted bug,
    the time features frozen at ``t = T/2`` (the network ignores t; see :func:`ignore_time`)."""
    gen = torch.Generator().manual_seed(config.seed)
    model = ScoreMLP(1, make_process(config), hidden=config.hidden, embed_dim=config.embed_dim,
                     fourier_scale=config.fourier_scale, data_std=math.sqrt(config.target.cumulant(2)), generator=gen)
    if time_blind:
        ignore_time(model)
    return model


class _FrozenTime(torch.nn.Module):
    """Time features evaluated at one fixed time, whatever t is asked for (planted bug)."""

    def __init__(self, features: torch.nn.Module, t_fixed: float):
        super().__init__()
        self.features, self.t_fixed = features, float(t_fixed)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.features(torch.full_like(t, self.t_fixed))


def ignore_time(model: ScoreMLP) -> ScoreMLP:
    """Planted bug: replace the time embedding by its value at ``T/2`` (in place; returns ``model``).
    The preconditioning ``c_in(t)`` and ``1/sqrt(Xi(t))`` still see t; the learned part does not."""
    model.time = _FrozenTime(model.time, 0.5 * float(model.process.T))
    return model


@dataclass(frozen=True)
class WrongDriftSign:
    """Planted bug for the sampler: ``process`` with the sign of its drift ``-gamma x`` flipped (``gamma -> -gamma``;
    ``a``, ``Xi``, ``g`` unchanged), so the reverse SDE steps with ``+gamma x - g^2 s`` (wrong for VP, a no-op for VE)."""

    process: Process

    @property
    def T(self) -> float:
        return self.process.T

    def gamma(self, t):
        return -self.process.gamma(t)

    def g(self, t):
        return self.process.g(t)

    def Gamma(self, t):
        return -self.process.Gamma(t)

    def a(self, t):
        return self.process.a(t)

    def Xi(self, t):
        return self.process.Xi(t)


def training_data(config: CumulantsConfig) -> torch.Tensor:
    """The ``(n_data, 1)`` float32 training set (seeded by ``config.seed``)."""
    gen = torch.Generator().manual_seed(config.seed + 1)
    return config.target.sample((config.n_data, 1), gen, dtype=torch.float64).to(torch.float32)


def train_model(
    config: CumulantsConfig,
    *,
    time_blind: bool = False,
    callback: Callable[[int, int, float], None] | None = None,
) -> tuple[ScoreMLP, dict]:
    """Train the MLP by DSM (:func:`train_dsm`: Adam at ``lr`` with cosine decay, batch ``batch_size``,
    ``train_steps`` steps, ``t ~ U(t_min, T)``, no augmentation). Returns the model and
    ``{"seconds", "steps", "loss_first", "loss_last"}`` (mean minibatch loss over the first / last 1 %)."""
    model = build_model(config, time_blind=time_blind)
    gen = torch.Generator().manual_seed(config.seed + 2)
    t0 = time.monotonic()
    report = train_dsm(model, training_data(config), make_process(config), steps=config.train_steps,
                       batch_size=config.batch_size, lr=config.lr, t_min=config.t_min, augment_data=False,
                       generator=gen, callback=callback)
    k = max(1, len(report.losses) // 100)
    info = {"seconds": time.monotonic() - t0, "steps": config.train_steps,
            "loss_first": float(report.losses[:k].mean()), "loss_last": float(report.losses[-k:].mean())}
    return model, info


# -- generation and cumulants --------------------------------------------------------------------------
ORDERS = (2, 4, 6, 8)
SWEEP_STEPS = (250, 500, 1000, 2000)

Score = Callable[[torch.Tensor, object], torch.Tensor]


def network_score(model: torch.nn.Module) -> Score:
    """``model`` as a sampler score: no autograd, one time for the whole batch."""

    def score(x: torch.Tensor, t) -> torch.Tensor:
        with torch.no_grad():
            return model(x, t)

    return score


def generate(score: Score, config: CumulantsConfig, *, steps: int | None = None, n: int | None = None,
             seed: int | None = None, process: Process | None = None) -> torch.Tensor:
    """``n`` (default ``n_gen``) float64 samples, shape ``(n,)``: Euler–Maruyama with ``steps`` (default
    ``em_steps``) uniform steps from ``x_T ~ N(0, Xi(T))`` down to ``t_min`` (THEORY 1).

    The start and the noise come from one generator seeded by ``seed`` (default ``config.seed + 3``), so
    two scores run with the same seed see the same noise (common random numbers). ``process``
    replaces the sampler's process (planted bugs); the default is ``make_process(config)``.
    """
    from ..samplers import pure_noise_start, reverse_sde

    process = make_process(config) if process is None else process
    gen = torch.Generator().manual_seed(config.seed + 3 if seed is None else seed)
    n = config.n_gen if n is None else n
    x_T = pure_noise_start((n, 1), make_process(config), gen)
    x0 = reverse_sde(score, process, x_T, config.em_steps if steps is None else steps, generator=gen,
                     t_min=config.t_min)
    return x0.reshape(-1)


def cumulant_row(x: torch.Tensor, *, n_boot: int = 200, seed: int = 0) -> dict:
    """``{"kappa_n": k_n, "kappa_n_err": bootstrap SE}`` for n in :data:`ORDERS` (unbiased k-statistics)."""
    from ..observables import kstat_bootstrap

    est = kstat_bootstrap(x.to(torch.float64), ORDERS, n_boot=n_boot, generator=torch.Generator().manual_seed(seed))
    row = {}
    for j, n in enumerate(ORDERS):
        row[f"kappa_{n}"], row[f"kappa_{n}_err"] = float(est.value[j]), float(est.err[j])
    return row


def paired_difference(x: torch.Tensor, y: torch.Tensor, *, n_boot: int = 200, seed: int = 0) -> dict:
    """``k_n(x) - k_n(y)`` for samples paired by index (common random numbers), with the bootstrap SE of
    the difference (one resample of the pairs per replica): ``{"kappa_n": .., "kappa_n_err": ..}``."""
    from ..errors import bootstrap
    from ..observables import kstat

    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got {tuple(x.shape)} and {tuple(y.shape)}")

    def diff(pairs: torch.Tensor) -> torch.Tensor:
        return torch.stack([kstat(pairs[:, 0], n) - kstat(pairs[:, 1], n) for n in ORDERS])

    est = bootstrap(diff, torch.stack([x, y], dim=1).to(torch.float64), n_boot=n_boot,
                    generator=torch.Generator().manual_seed(seed))
    row = {}
    for j, n in enumerate(ORDERS):
        row[f"kappa_{n}"], row[f"kappa_{n}_err"] = float(est.value[j]), float(est.err[j])
    return row


def exact_row(config: CumulantsConfig, t: float = 0.0) -> dict:
    """Exact ``kappa_n`` of the target (``t = 0``) or of its forward marginal at ``t`` (THEORY 6)."""
    target = config.target if t == 0.0 else config.target.marginal(make_process(config), t)
    return {f"kappa_{n}": float(target.cumulant(n)) for n in ORDERS}


# -- decomposition ---------------------------------------------------------------------------------------
def fit_em_bias(config: CumulantsConfig, sweep: dict) -> dict:
    """Weak-order-1 fit of the exact-score sampler's deviation: ``k_n(h) - kappa_n(0) = b_0 + c h``.

    ``sweep`` maps step counts N (``h = T/N``) to :func:`cumulant_row` results; ``b_0 = kappa_n(t_min) -
    kappa_n(0)`` is exact (the sampler stops at ``t_min``), ``c`` is a weighted least-squares fit
    (weights ``1/SE^2``). Per order: ``{"c", "c_err", "chi2", "bias", "bias_err"}`` with ``bias`` the fitted
    deviation at ``em_steps``.
    """
    exact0, exact_tmin = exact_row(config), exact_row(config, config.t_min)
    T = float(make_process(config).T)
    out = {}
    for n in ORDERS:
        key = f"kappa_{n}"
        h = np.array([T / N for N in sweep])
        dev = np.array([sweep[N][key] for N in sweep]) - exact0[key]
        err = np.array([sweep[N][f"{key}_err"] for N in sweep])
        b0 = exact_tmin[key] - exact0[key]
        w = 1.0 / err**2
        c = float(np.sum(w * h * (dev - b0)) / np.sum(w * h * h))
        c_err = float(1.0 / math.sqrt(np.sum(w * h * h)))
        chi2 = float(np.sum(w * (dev - b0 - c * h) ** 2))
        h0 = T / config.em_steps
        out[key] = {"b0": b0, "c": c, "c_err": c_err, "chi2": chi2, "dof": len(h) - 1, "bias": b0 + c * h0,
                    "bias_err": c_err * h0}
    return out


def score_error(model: torch.nn.Module, config: CumulantsConfig, *, n_t: int = 64, n_x: int = 20_000,
                seed: int = 0) -> dict:
    """Weighted L2 error of the trained score against the exact one over ``t`` (THEORY 1, 6).

    ``E_t Xi(t) E_{x ~ p_t} |s_theta - s|^2`` with ``t`` on ``n_t`` midpoints of ``[t_min, T]`` and
    ``n_x`` exact draws of ``p_t`` per time: the DSM excess loss (the DSM loss minus its minimum,
    reached by the exact score, with the training weighting ``lambda = Xi``). Also relative to
    ``E_t Xi E |s|^2`` and the per-time profile ``{"t", "mse"}`` (``E |s_theta - s|^2`` at each t).
    """
    from ..scores import exact_score

    process = make_process(config)
    exact = exact_score(config.target, process)
    gen = torch.Generator().manual_seed(seed)
    ts = config.t_min + (float(process.T) - config.t_min) * (np.arange(n_t) + 0.5) / n_t
    num = den = 0.0
    profile = []
    for t in ts:
        x = config.target.marginal(process, float(t)).sample((n_x, 1), gen, dtype=torch.float64)
        with torch.no_grad():
            d = model(x, float(t)) - exact(x, float(t))
        Xi = float(process.Xi(float(t)))
        mse = float((d * d).mean())
        profile.append(mse)
        num += Xi * mse / n_t
        den += Xi * float((exact(x, float(t)) ** 2).mean()) / n_t
    return {"weighted_l2": num, "relative": math.sqrt(num / den), "t": ts.tolist(), "mse": profile}


def learned_cumulants(
    config: CumulantsConfig,
    model: torch.nn.Module | None = None,
    *,
    sweep_steps: tuple[int, ...] = SWEEP_STEPS,
    n_sweep: int | None = None,
    process: Process | None = None,
    progress: Callable[[str], None] = lambda msg: None,
) -> dict:
    """The table and its decomposition for one process (``model`` trained here when None).

    Returns ``{"process", "exact", "data", "exact_score", "trained", "training_effect", "em_fit",
    "sweep": {"steps", "exact_score", "trained"}, "score_error", "training", "config"}``: rows as in
    :func:`cumulant_row`; ``training_effect`` = trained minus exact-score sampler on common noise
    (:func:`paired_difference`); ``em_fit`` from :func:`fit_em_bias` on the exact-score sweep (``n_gen``
    samples per step count; the trained score is run on ``n_sweep``, default ``n_gen``, away from
    ``em_steps``: it costs far more per sample). ``process`` replaces the sampler's process for the trained
    rows (planted bugs).
    """
    from ..scores import exact_score

    training = {}
    if model is None:
        progress(f"{config.process}: training {config.train_steps} steps")
        model, training = train_model(config)
    model.eval()
    trained_score, ref_score = network_score(model), exact_score(config.target, make_process(config))
    out = {"process": config.process, "exact": exact_row(config)}
    progress(f"{config.process}: data row")
    out["data"] = cumulant_row(training_data(config).reshape(-1), n_boot=config.n_boot, seed=config.seed + 4)
    n_sweep = config.n_gen if n_sweep is None else n_sweep
    sweep_exact, sweep_trained = {}, {}
    x_ref = x_net = None
    for N in sorted(set(sweep_steps) | {config.em_steps}):
        size = config.n_gen if N == config.em_steps else n_sweep
        progress(f"{config.process}: {N} EM steps: exact score ({config.n_gen} samples), trained ({size})")
        xe = generate(ref_score, config, steps=N)
        xt = generate(trained_score, config, steps=N, n=size, process=process)
        sweep_exact[N] = cumulant_row(xe, n_boot=config.n_boot, seed=config.seed + 5)
        sweep_trained[N] = cumulant_row(xt, n_boot=config.n_boot, seed=config.seed + 5)
        if N == config.em_steps:
            x_ref, x_net = xe, xt
    out["exact_score"], out["trained"] = sweep_exact[config.em_steps], sweep_trained[config.em_steps]
    progress(f"{config.process}: paired bootstrap and score error")
    out["training_effect"] = paired_difference(x_net, x_ref, n_boot=config.n_boot, seed=config.seed + 6)
    fit_input = {N: r for N, r in sweep_exact.items() if N in sweep_steps} or sweep_exact
    out["em_fit"] = fit_em_bias(config, fit_input)
    out["sweep"] = {"steps": sorted(sweep_exact), "exact_score": [sweep_exact[N] for N in sorted(sweep_exact)],
                    "trained": [sweep_trained[N] for N in sorted(sweep_trained)], "n": n_sweep}
    out["score_error"] = score_error(model, config, seed=config.seed + 7)
    out["training"] = training
    out["config"] = asdict(config) | {"hidden": list(config.hidden)}
    return out


def tolerance(result: dict, n: int, k: float = 4.0) -> float:
    """The check's tolerance for ``trained kappa_n``: ``k`` bootstrap SE of the trained row plus the
    measured Euler–Maruyama bias ``|b_0 + c h|`` (:func:`fit_em_bias`)."""
    key = f"kappa_{n}"
    return k * result["trained"][f"{key}_err"] + abs(result["em_fit"][key]["bias"])


def checks(result: dict, k: float = 4.0) -> list[tuple[str, float, float, float]]:
    """``(name, measured, exact, tolerance)`` per order: trained ``kappa_n`` vs exact within :func:`tolerance`."""
    return [(f"{result['process'].upper()} trained kappa_{n}", result["trained"][f"kappa_{n}"],
             result["exact"][f"kappa_{n}"], tolerance(result, n, k)) for n in ORDERS]


def passes(result: dict, k: float = 4.0) -> bool:
    """True iff every :func:`checks` row holds."""
    return all(abs(m - e) <= tol for _, m, e, tol in checks(result, k))
