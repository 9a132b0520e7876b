"""Weights-only checkpoints of the learned-cumulants MLP (:mod:`critdiff_ref.trainers.cumulants`, THEORY 6).

A checkpoint holds ``{"format", "config", "info", "state_dict"}`` (tensors and plain values only), written
atomically and read with ``torch.load(weights_only=True)`` through :func:`critdiff_ref._io.read_checkpoint`:
a damaged file is one ValueError naming it. The saved ``config`` is the :class:`CumulantsConfig` the network
was trained with (:func:`saved_config`), so a run that loads it can record what really happened.
"""

from __future__ import annotations

import os
from dataclasses import asdict

from .. import _io
from .cumulants import CumulantsConfig, build_model
from .mlp import ScoreMLP

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "saved_config"]

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: str | os.PathLike, model: ScoreMLP, config: CumulantsConfig, info: dict) -> None:
    """Write ``{"format", "config", "info", "state_dict"}`` (tensors and plain values only) atomically
    (:func:`critdiff_ref._io.atomic_path`: a temporary file in the same folder, then ``os.replace``)."""
    payload = {"format": CHECKPOINT_FORMAT, "config": asdict(config) | {"hidden": list(config.hidden)},
               "info": {k: float(v) for k, v in info.items()},
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    _io.save_weights(path, payload)


def load_checkpoint(path: str | os.PathLike, config: CumulantsConfig) -> tuple[ScoreMLP, dict]:
    """Load a :func:`save_checkpoint` file with ``weights_only=True`` into :func:`build_model` ``(config)``.

    ValueError naming the file when it is damaged or not such a checkpoint (:func:`critdiff_ref._io.read_checkpoint`),
    or when its architecture (process, target, widths, features) differs from ``config``'s.
    Returns the model (eval mode) and the saved training ``info``; :func:`saved_config` gives the settings it
    was trained with.
    """
    payload, saved = _read_checkpoint(path)
    if saved.architecture() != config.architecture():
        diff = {k: (v, config.architecture()[k]) for k, v in saved.architecture().items() if config.architecture()[k] != v}
        raise ValueError(f"{path}: checkpoint settings differ from the requested ones (saved, requested): {diff}")
    model = build_model(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{path}: the weights do not fit the network its settings describe ({first})") from None
    model.eval()
    return model, dict(payload.get("info", {}))


def saved_config(path: str | os.PathLike) -> CumulantsConfig:
    """The :class:`CumulantsConfig` a :func:`save_checkpoint` file was trained with (ValueError naming the file
    when it is damaged or not a learned-cumulants checkpoint)."""
    return _read_checkpoint(path)[1]


def _read_checkpoint(path: str | os.PathLike) -> tuple[dict, CumulantsConfig]:
    payload = _io.read_checkpoint(path, what="learned-cumulants checkpoint")
    if payload.get("format") != CHECKPOINT_FORMAT or not isinstance(payload.get("config"), dict) \
            or not isinstance(payload.get("state_dict"), dict):
        raise ValueError(f"{os.fspath(path)}: not a learned-cumulants checkpoint (format {CHECKPOINT_FORMAT!r})")
    try:
        return payload, CumulantsConfig(**{**payload["config"], "hidden": tuple(payload["config"]["hidden"])})
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"{os.fspath(path)}: not a learned-cumulants checkpoint (its settings: {err})") from None
