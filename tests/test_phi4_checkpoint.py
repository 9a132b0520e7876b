"""Train-once checkpoints of the phi^4 diffusion model (THEORY 8; issue 17 item 2): weights only, written
atomically, reloaded with ``torch.load(weights_only=True)``, refused when the target or network differ."""

from __future__ import annotations

import os
import re
from dataclasses import replace

import pytest
import torch

from critdiff_ref import _io
from critdiff_ref.cli import main
from critdiff_ref.phi4 import dm as pdm
from critdiff_ref.phi4 import experiment as pe
from critdiff_ref.phi4.dm import DMConfig

torch.set_num_threads(1)

CHANNELS = (4, 8)
DM = DMConfig(L=4, d=2, kappa=0.21, lam=0.022, channels=CHANNELS, steps=5, batch=8)
TARGET = DM.target


def _hmc_like(seed: int = 0) -> torch.Tensor:
    """Stand-in training configurations ``(n, chains, L, L)``: the checkpoint logic does not care where they come from."""
    return 0.7 * torch.randn((6, 4, 4, 4), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _train(path=None, dm: DMConfig = DM):
    return pdm.trained_dm(dm, _hmc_like(), checkpoint=path, seed=3)


def _scores(model) -> torch.Tensor:
    g = torch.Generator().manual_seed(11)
    x = torch.randn((5, 4, 4), generator=g)
    t = 1e-3 + torch.rand(5, generator=g, dtype=torch.float64) * (1 - 1e-3)
    return model(x, t)


def test_checkpoint_round_trip_gives_identical_scores(tmp_path):
    path = str(tmp_path / "dm.pt")
    model, config, info = _train(path)
    assert os.path.exists(path) and not info["loaded"]
    loaded, config2, info2 = pdm.load_dm_checkpoint(path, config)
    # the same float32 weights and the same fixed Fourier features: bit-identical scores (no tolerance)
    assert torch.equal(_scores(model), _scores(loaded))
    assert config2 == config and info2["final_loss"] == info["final_loss"]
    assert not any(p.requires_grad for p in loaded.parameters())
    # trained_dm with an existing checkpoint loads it instead of training
    again, _, info3 = _train(path)
    assert info3["loaded"] and torch.equal(_scores(again), _scores(model))


def test_the_file_holds_only_weights_and_plain_values(tmp_path):
    path = str(tmp_path / "dm.pt")
    _train(path)
    payload = torch.load(path, weights_only=True)  # raises if anything but tensors / plain containers were pickled
    assert payload["format"] == pdm.DM_CHECKPOINT_FORMAT
    assert set(payload) == {"format", "config", "info", "state_dict"}
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())


@pytest.mark.parametrize("field, other", [("L", 6), ("d", 3), ("kappa", 0.27), ("lam", 0.05), ("channels", [8, 16]),
                                          ("sigma", 10.0)])
def test_a_checkpoint_of_another_run_is_refused_naming_the_field(tmp_path, field, other):
    path = str(tmp_path / "dm.pt")
    _, config, _ = _train(path)
    with pytest.raises(ValueError, match=rf"{field}: saved .*, requested {re.escape(repr(other))}"):
        pdm.load_dm_checkpoint(path, {**config, field: other})


def test_trained_dm_refuses_a_checkpoint_of_another_kappa(tmp_path):
    path = str(tmp_path / "dm.pt")
    _train(path)
    with pytest.raises(ValueError, match="kappa: saved 0.21, requested 0.27"):
        _train(path, replace(DM, kappa=0.27))


def test_a_file_that_is_not_a_dm_checkpoint_is_refused(tmp_path):
    path = str(tmp_path / "other.pt")
    _io.save_weights(path, {"format": 1, "state_dict": {}})  # e.g. a learned-cumulants checkpoint
    with pytest.raises(ValueError, match="not a phi\\^4 DM checkpoint"):
        pdm.load_dm_checkpoint(path, DM)


def test_an_interrupted_save_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "dm.pt")
    model, config, info = _train(path)
    before = open(path, "rb").read()

    def broken_save(obj, f):
        open(f, "wb").write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        pdm.save_dm_checkpoint(path, model, config, info)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["dm.pt"]  # the temporary file is gone


def test_phi4_train_dm_with_a_checkpoint_trains_once_and_reproduces(tmp_path):
    """Training then sampling equals loading then sampling: the DM-MCMC stream has its own seed."""
    path = str(tmp_path / "dm.pt")
    kw = dict(n_chains=4, n_traj=24, burn_in=4, train_dm=True, dm_channels=CHANNELS, dm_steps=10, dm_batch=8,
              ode_steps=4, dm_chains=2, dm_iter=8, checkpoint=path)
    first = pe.run_phi4_experiment(4, 2, 0.2, 0.022, **kw)
    second = pe.run_phi4_experiment(4, 2, 0.2, 0.022, **kw)
    assert not first["dm"]["checkpoint_loaded"] and second["dm"]["checkpoint_loaded"]
    assert first["dm"]["dm_mcmc"] == second["dm"]["dm_mcmc"]
    assert first["dm"]["generated"] == second["dm"]["generated"]


def test_cli_checkpoint_needs_train_dm_and_a_pt_name(tmp_path, capsys):
    assert main(["phi4", "--L", "4", "--checkpoint", str(tmp_path / "dm.pt"), "--quiet"]) == 2
    assert "needs --train-dm" in capsys.readouterr().err
    assert main(["phi4", "--L", "4", "--train-dm", "--checkpoint", str(tmp_path / "dm.bin"), "--quiet"]) == 2
    assert "--checkpoint" in capsys.readouterr().err


# -- the fourier-local network (cheap exact step Jacobians, issue 17 item 1) through critdiff phi4 ---------
def test_fourier_local_checkpoint_round_trip_and_net_mismatch(tmp_path):
    """``net="fourier-local"`` is saved and rebuilt like the U-Net (bit-identical scores); a checkpoint of
    the other network or another radius is refused naming the field."""
    path = str(tmp_path / "fl.pt")
    model, config, _ = _train(path, replace(DM, net="fourier-local", radius=1))
    assert config["net"] == "fourier-local" and config["radius"] == 1 and hasattr(model, "score_jacobian")
    loaded, _, _ = pdm.load_dm_checkpoint(path, config)
    assert torch.equal(_scores(model), _scores(loaded))
    with pytest.raises(ValueError, match="net: saved 'fourier-local', requested 'unet'"):
        _train(path)
    with pytest.raises(ValueError, match="radius: saved 1, requested 2"):
        _train(path, replace(DM, net="fourier-local", radius=2))
    with pytest.raises(ValueError, match="net must be one of"):
        replace(DM, net="mlp")


def test_phi4_experiment_with_fourier_local_runs_exact_stepwise_dm_mcmc():
    """``dm_net="fourier-local"`` with ``divergence="auto"`` picks the exact step-by-step log q (any V), runs
    DM-MCMC with it and reports it; ``stepwise`` with the U-Net is refused before any work."""
    out = pe.run_phi4_experiment(4, 2, 0.21, 0.022, n_chains=2, n_traj=20, burn_in=5, train_dm=True,
                                 dm_net="fourier-local", dm_channels=(4,), dm_steps=5, dm_batch=8, ode_steps=4,
                                 dm_chains=2, dm_iter=4)
    assert out["dm"]["divergence"] == "stepwise"
    assert 0.0 <= out["dm"]["dm_mcmc"]["acceptance"] <= 1.0
    with pytest.raises(ValueError, match="stepwise.*fourier-local"):
        pe.run_phi4_experiment(4, 2, 0.21, 0.022, train_dm=True, divergence="stepwise")


def test_the_auto_network_keeps_dm_mcmc_exact_at_every_volume():
    """``dm_net="auto"``: the U-Net where its whole-sampler Jacobian is affordable (V <= 16), the fourier-local
    network (exact stepwise log q) beyond -- never the approximate Hutchinson log q by default (d <= 3)."""
    assert pdm.default_dm_net(4, 2) == "unet" and pdm.default_dm_net(16, 1) == "unet"
    assert pdm.default_dm_net(8, 2) == "fourier-local" and pdm.default_dm_net(32, 2) == "fourier-local"
    assert pdm.default_dm_net(3, 3) == "fourier-local" and pdm.default_dm_net(2, 4) == "unet"  # d = 4: V = 16
    out = pe.run_phi4_experiment(6, 2, 0.21, 0.022, n_chains=2, n_traj=20, burn_in=5, train_dm=True, dm_channels=(4,),
                                 dm_steps=5, dm_batch=8, ode_steps=4, dm_chains=2, dm_iter=4)
    assert out["dm"]["divergence"] == "stepwise"  # V = 36 > 16


def test_a_fourier_local_checkpoint_keeps_its_depth(tmp_path):
    """The config rebuilds the network it saved, depth included (``phi4.exact_dm`` trains a depth-d network
    through the same path): bit-identical scores after loading; another depth is refused."""
    from critdiff_ref.trainers.fourier_local import FourierLocalScore

    dm3 = replace(DM, net="fourier-local", channels=(4,), radius=1, depth=3)
    config = dm3.checkpoint_config(0.9)
    net = FourierLocalScore(4, 2, dm3.process, radius=1, channels=4, depth=3, data_std=0.9,
                            generator=torch.Generator().manual_seed(5))
    path = pdm.save_dm_checkpoint(str(tmp_path / "fl3.pt"), net, config, {"final_loss": 0.0})
    loaded, _, _ = pdm.load_dm_checkpoint(path, config)
    assert torch.equal(_scores(net), _scores(loaded))
    with pytest.raises(ValueError, match="depth: saved 3, requested 2"):
        pdm.load_dm_checkpoint(path, replace(dm3, depth=2))
