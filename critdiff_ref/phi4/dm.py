"""The phi^4 diffusion model (THEORY 1, 8): one :class:`DMConfig`, one training path, train-once checkpoints.

A score network (``net="unet"``: :class:`~critdiff_ref.trainers.dsm.ScoreUNet`; ``net="fourier-local"``:
:class:`~critdiff_ref.trainers.fourier_local.FourierLocalScore`, whose step Jacobians are cheap and exact) is
trained by DSM under VE (``sigma = 25``, ``T = 1``, ``t >= t_min``) on configurations of the target
``Phi4Lattice(L, d, kappa, lam)`` (:func:`train_dm`).  Every caller (``critdiff phi4``, ``phi4-figures``, the
exact DM-MCMC study) builds a :class:`DMConfig` and trains through :func:`train_dm` / :func:`trained_dm`.

A checkpoint (:func:`save_dm_checkpoint`) holds the weights only (``state_dict``), the config that rebuilds
the network and the training record; it is read back with ``torch.load(weights_only=True)``
(:func:`critdiff_ref._io.read_checkpoint`: a damaged file is a one-line ValueError naming it) and refused
when a field of :data:`DM_MATCH` differs from the run that loads it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass

import torch

from .. import _io
from .._args import ConfigError
from ..processes import VE
from ..targets import Phi4Lattice
from ..trainers import dsm, fourier_local
from .ensemble import stderr_progress

__all__ = ["DM_CHECKPOINT_FORMAT", "DM_MATCH", "DM_NETS", "EXACT_DIVERGENCE_MAX_V", "T_MIN", "DMConfig",
           "default_dm_net", "train_dm", "save_dm_checkpoint", "load_dm_checkpoint", "check_dm_checkpoint",
           "trained_dm"]

DM_CHECKPOINT_FORMAT = "critdiff-phi4-dm/1"
# the fields a checkpoint must share with the run that loads it (the target and the network's shape)
DM_MATCH = ("L", "d", "kappa", "lam", "net", "channels", "radius", "depth", "sigma", "T")
# the score networks: the U-Net (exact log q by whole-sampler Jacobian, ~V^2 per proposal) and the
# Fourier-linear + local-CNN network whose step Jacobians are cheap and exact (``log_q="stepwise"``)
DM_NETS = ("unet", "fourier-local")
_DM_DEFAULTS = {"net": "unet", "radius": None, "depth": None}  # what a checkpoint written before these fields holds
EXACT_DIVERGENCE_MAX_V = 16
# the noise-conditional network is trained on t >= T_MIN and the PF-ODE stops there: proposals are
# x_{T_MIN} (VE: Xi(T_MIN) = 1e-3), whose density log q is what DM-MCMC uses, so the chain stays exact
T_MIN = 1e-3


def default_dm_net(L: int, d: int) -> str:
    """``dm_net="auto"``: the U-Net where its exact whole-sampler Jacobian log q is affordable
    (``V <= EXACT_DIVERGENCE_MAX_V``), else the fourier-local network, whose exact stepwise log q costs one
    ``V x V`` log-determinant per step (about 0.05 / 0.8 CPU-seconds per proposal at L = 16 / 32,
    docs/results/dm_mcmc.md) -- DM-MCMC is exact by default at every L (d <= 3; beyond, the U-Net and its
    Hutchinson log q)."""
    return "unet" if L**d <= EXACT_DIVERGENCE_MAX_V or d > 3 else "fourier-local"


def _int(name: str, value: object, lower: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, value, f"an int >= {lower}")
    if value < lower:
        raise ConfigError(name, value, f">= {lower}")
    return value


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
        raise ConfigError(name, value, "a finite real > 0")
    return float(value)


@dataclass(frozen=True)
class DMConfig:
    """Everything that defines one phi^4 diffusion model: the target, the network, the process and its training.

    Target ``Phi4Lattice(L, d, kappa, lam)``; network ``net`` (:data:`DM_NETS`): the U-Net with ``channels`` per
    level (``L`` divisible by ``2^(len(channels) - 1)``), or fourier-local with a local CNN of width
    ``channels[-1]``, receptive ``radius`` and ``depth`` site-wise layers; VE(``sigma``, ``T``), DSM on
    ``t >= t_min`` for ``steps`` Adam steps of ``batch`` configurations at learning rate ``lr``, in ``dtype``.
    The fields of :data:`DM_MATCH` are what a checkpoint must match. Validated on construction
    (:class:`~critdiff_ref._args.ConfigError`, a ValueError naming the field, its value and the allowed range).
    """

    L: int
    kappa: float
    lam: float
    d: int = 2
    net: str = "unet"
    channels: tuple[int, ...] = (8, 16)
    radius: int = 1
    depth: int = 2
    sigma: float = 25.0
    T: float = 1.0
    t_min: float = T_MIN
    steps: int = 1000
    batch: int = 64
    lr: float = 2e-3
    dtype: str = "float32"

    def __post_init__(self) -> None:
        _int("L", self.L, 2)
        _int("d", self.d, 1)
        Phi4Lattice(self.L, self.d, self.kappa, self.lam)  # ValueError naming kappa / lam and their range
        if self.net not in DM_NETS:
            raise ConfigError("net", self.net, f"one of {DM_NETS}")
        try:
            channels = tuple(self.channels)
        except TypeError:
            raise ConfigError("channels", self.channels, "a non-empty sequence of ints >= 1") from None
        if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
            raise ConfigError("channels", self.channels, "a non-empty sequence of ints >= 1")
        object.__setattr__(self, "channels", channels)
        if self.net == "unet":
            if self.L % 2 ** (len(channels) - 1):
                raise ConfigError("L", self.L, f"divisible by 2^(len(channels) - 1) = {2 ** (len(channels) - 1)} "
                                               f"(the U-Net halves L per level of channels {list(channels)})")
            if self.d > 3:
                raise ConfigError("d", self.d, "1, 2 or 3 for the convolutional U-Net")
        elif self.d > 3:
            raise ConfigError("d", self.d, "1, 2 or 3 for the fourier-local network")
        _int("radius", self.radius, 0)
        _int("depth", self.depth, 1)
        for name in ("sigma", "T", "lr"):
            _positive(name, getattr(self, name))
        if not (isinstance(self.t_min, (int, float)) and 0 < self.t_min < self.T):
            raise ConfigError("t_min", self.t_min, f"in (0, T) = (0, {self.T})")
        _int("steps", self.steps, 1)
        _int("batch", self.batch, 1)
        if self.dtype not in ("float32", "float64"):
            raise ConfigError("dtype", self.dtype, "'float32' or 'float64'")

    @property
    def target(self) -> Phi4Lattice:
        return Phi4Lattice(self.L, self.d, self.kappa, self.lam)

    @property
    def process(self) -> VE:
        """The forward process, VE(sigma, T) (THEORY 1)."""
        return VE(sigma=self.sigma, T=self.T)

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def checkpoint_config(self, data_std: float) -> dict:
        """The JSON-able settings a checkpoint stores: the :data:`DM_MATCH` fields (``radius``, ``depth``
        ``None`` for the U-Net) and the training data's standard deviation (the network's input scale)."""
        fl = self.net == "fourier-local"
        return {"L": self.L, "d": self.d, "kappa": float(self.kappa), "lam": float(self.lam), "net": self.net,
                "channels": list(self.channels), "radius": self.radius if fl else None,
                "depth": self.depth if fl else None, "sigma": float(self.sigma), "T": float(self.T),
                "data_std": float(data_std)}


def _build_dm(config: dict, *, dtype: torch.dtype, device: str, generator: torch.Generator | None) -> torch.nn.Module:
    """The untrained network of a :meth:`DMConfig.checkpoint_config` dict."""
    process = VE(sigma=config["sigma"], T=config["T"])
    if config.get("net", "unet") == "fourier-local":
        return fourier_local.FourierLocalScore(config["L"], config["d"], process, radius=config["radius"],
                                               channels=config["channels"][-1], depth=config["depth"],
                                               data_std=config["data_std"], generator=generator, dtype=dtype).to(device)
    return dsm.ScoreUNet(config["L"], config["d"], process, channels=tuple(config["channels"]),
                         data_std=config["data_std"], generator=generator, dtype=dtype).to(device)


def _freeze(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def train_dm(config: DMConfig, configs: torch.Tensor, *, seed: int, device: str = "cpu",
             progress: bool = False) -> tuple[torch.nn.Module, dict, dict]:
    """Train the network of ``config`` by DSM (THEORY 1, 8) on ``configs`` ``(..., *lattice)`` of its target.

    One generator seeded ``seed + 1`` initialises the network and draws the DSM minibatches and noise.
    Returns ``(model, checkpoint config, info)``: the frozen model (eval mode, ``config.dtype``), its
    :meth:`DMConfig.checkpoint_config` and the training record (steps, batch, lr, seed, the mean loss of the
    last ``min(50, steps)`` steps, seconds)."""
    if not isinstance(config, DMConfig):
        raise TypeError(f"config must be a DMConfig, got {type(config).__name__}")
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    data = configs.reshape(-1, *config.target.shape).to(dtype=config.torch_dtype, device=device)
    saved = config.checkpoint_config(float(data.std()))
    model = _build_dm(saved, dtype=config.torch_dtype, device=device, generator=gen)
    report = stderr_progress(desc="DSM training") if progress else None
    callback = (lambda n, total, loss: report(n, total)) if report else None
    if progress:
        print(f"[critdiff] training the score network ({config.steps} DSM steps)", file=sys.stderr)
    t0 = time.perf_counter()
    train = dsm.train_dsm(model, data, config.process, steps=config.steps, batch_size=config.batch, lr=config.lr,
                          t_min=config.t_min, generator=gen, callback=callback)
    for p in model.parameters():
        p.requires_grad_(False)
    info = {"dm_steps": int(config.steps), "dm_batch": int(config.batch), "dm_lr": float(config.lr), "seed": int(seed),
            "n_train": int(data.shape[0]), "final_loss": float(train.losses[-min(50, config.steps):].mean()),
            "train_seconds": time.perf_counter() - t0}
    return model, saved, info


def save_dm_checkpoint(path: str | os.PathLike, model: torch.nn.Module, config: dict, info: dict) -> str:
    """Write the weights only (``state_dict``) with the checkpoint ``config`` and training ``info`` atomically
    (:func:`critdiff_ref._io.save_weights`); returns the path."""
    payload = {"format": DM_CHECKPOINT_FORMAT, "config": dict(config), "info": dict(info),
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    return _io.save_weights(path, payload)


def _read(path: str | os.PathLike) -> dict:
    payload = _io.read_checkpoint(path, what="phi^4 DM checkpoint")
    if payload.get("format") != DM_CHECKPOINT_FORMAT or not isinstance(payload.get("config"), dict) \
            or not isinstance(payload.get("state_dict"), dict):
        raise ValueError(f"{os.fspath(path)}: not a phi^4 DM checkpoint (format {DM_CHECKPOINT_FORMAT!r})")
    return payload


def _mismatch(path: str | os.PathLike, saved: dict, expected: dict) -> None:
    saved = {**_DM_DEFAULTS, **saved}
    diff = [f"{k}: saved {saved.get(k)!r}, requested {expected.get(k)!r}" for k in DM_MATCH if saved.get(k) != expected.get(k)]
    if diff:
        raise ValueError(f"checkpoint {os.fspath(path)} does not match this run: " + "; ".join(diff))


def check_dm_checkpoint(path: str | os.PathLike, config: DMConfig) -> None:
    """Read ``path`` and check it against ``config`` without building a network (a run checks its checkpoint
    before any HMC or training): ValueError naming the file when it is damaged or a :data:`DM_MATCH` field differs."""
    _mismatch(path, _read(path)["config"], config.checkpoint_config(1.0))


def load_dm_checkpoint(path: str | os.PathLike, expected: DMConfig | dict, *, dtype: torch.dtype | None = None,
                       device: str = "cpu") -> tuple[torch.nn.Module, dict, dict]:
    """Load a :func:`save_dm_checkpoint` file into a fresh network of its kind (U-Net or fourier-local).

    ``expected``: the run's :class:`DMConfig` (or a checkpoint-config dict); a checkpoint whose
    :data:`DM_MATCH` fields differ raises ValueError naming each field with its saved and requested value.
    ``dtype``: default the config's (float32 for a dict).  Returns ``(model, config, info)`` like
    :func:`train_dm` (the model frozen, in eval mode)."""
    if isinstance(expected, DMConfig):
        dtype = expected.torch_dtype if dtype is None else dtype
        expected = expected.checkpoint_config(1.0)
    payload = _read(path)
    _mismatch(path, payload["config"], expected)
    saved = {**_DM_DEFAULTS, **payload["config"]}
    model = _build_dm(saved, dtype=torch.float32 if dtype is None else dtype, device=device, generator=None)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"{os.fspath(path)}: the weights do not fit the network its config describes ({first})") from None
    return _freeze(model), dict(saved), dict(payload.get("info", {}))


def trained_dm(config: DMConfig, configs: torch.Tensor, *, checkpoint: str | os.PathLike | None = None, seed: int,
               device: str = "cpu", progress: bool = False) -> tuple[torch.nn.Module, dict, dict]:
    """:func:`train_dm` once: with ``checkpoint`` an existing file is loaded (:func:`load_dm_checkpoint`, checked
    against ``config``) and a missing one is written after training. ``info["loaded"]`` says which happened."""
    if checkpoint is not None and os.path.exists(checkpoint):
        model, saved, info = load_dm_checkpoint(checkpoint, config, device=device)
        if progress:
            print(f"[critdiff] loaded the score network from {checkpoint}", file=sys.stderr)
        return model, saved, {**info, "loaded": True}
    model, saved, info = train_dm(config, configs, seed=seed, device=device, progress=progress)
    if checkpoint is not None:
        save_dm_checkpoint(checkpoint, model, saved, info)
    return model, saved, {**info, "loaded": False}
