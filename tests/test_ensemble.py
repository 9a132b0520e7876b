"""Unit tests for critdiff_ref.phi4.ensemble (parameters, generation, summaries, atomic .npz files) and the
``phi4`` experiment / sub-command built on it (critdiff_ref.phi4.experiment)."""

import argparse
import json
import math
import os

import numpy as np
import pytest
import torch

from critdiff_ref.phi4 import ensemble
from critdiff_ref.phi4.commands import phi4 as phi4_cli
from critdiff_ref.phi4 import experiment as pe
from critdiff_ref.observables import binder_cumulant, susceptibility


def small_params(**kw):
    base = dict(L=4, d=2, kappa=0.2, lam=0.1, n_chains=3, n_updates=8, burn_in=2, step=0.2, n_steps=4, seed=1)
    base.update(kw)
    return ensemble.EnsembleParams(**base)


@pytest.mark.parametrize("sampler", ensemble.SAMPLERS)
def test_generate_ensemble_shapes_and_reproducibility(sampler):
    step = {"hmc": 0.2, "metropolis": 1.0, "langevin": 0.05, "mala": 0.05}[sampler]
    params = small_params(sampler=sampler, step=step, thin=2)
    configs, info = ensemble.generate_ensemble(params)
    assert configs.shape == (4, 3, 4, 4) and configs.dtype == torch.float64
    assert 0.0 <= info["acceptance"] <= 1.0 and len(info["acceptance_per_chain"]) == 3
    again, _ = ensemble.generate_ensemble(params)
    assert torch.equal(configs, again)


def test_summarize_chains_is_the_plug_in_estimate():
    gen = torch.Generator().manual_seed(0)
    configs = torch.randn((50, 4, 3, 3), generator=gen, dtype=torch.float64) + 0.2
    s = ensemble.summarize_chains(configs, 2)
    M = configs.mean(dim=(2, 3)).reshape(-1)
    assert s["n_configs"] == 200
    assert math.isclose(s["M"], float(M.mean()), rel_tol=1e-12)
    assert math.isclose(s["absM"], float(M.abs().mean()), rel_tol=1e-12)
    assert math.isclose(s["chi2"], float(susceptibility(M, 9)), rel_tol=1e-12)
    assert math.isclose(s["binder"], float(binder_cumulant(M)), rel_tol=1e-12)
    # independent configurations: tau_int ~ 1/2 (Gamma method, err ~ sqrt(4 W / N) tau ~ 0.1 here)
    assert abs(s["tau_int_absM"] - 0.5) < 0.25
    with pytest.raises(ValueError, match="lattice axes"):
        ensemble.summarize_chains(configs[0], 2)


def test_save_and_load_round_trip(tmp_path):
    params = small_params()
    configs, info = ensemble.generate_ensemble(params)
    summary = {**ensemble.summarize_chains(configs, 2), **info}
    path = ensemble.save_ensemble(tmp_path / "run.npz", configs, params, summary)
    loaded, p2, s2 = ensemble.load_ensemble(path)
    assert np.array_equal(loaded, configs.numpy()) and p2 == params
    assert s2["M"] == summary["M"] and s2["n_configs"] == summary["n_configs"]
    assert os.listdir(tmp_path) == ["run.npz"]  # no temporary file left behind


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    params = small_params()
    configs, _ = ensemble.generate_ensemble(params)
    path = tmp_path / "run.npz"
    ensemble.save_ensemble(path, configs, params, {"tag": "old"})
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("simulated interruption while writing")

    monkeypatch.setattr(ensemble.np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        ensemble.save_ensemble(path, configs * 2, params, {"tag": "new"})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["run.npz"]
    assert ensemble.load_ensemble(path)[2] == {"tag": "old"}


def test_ensemble_parameters_are_validated(tmp_path):
    with pytest.raises(ValueError, match="sampler"):
        small_params(sampler="gibbs")
    with pytest.raises(ValueError, match="n_chains"):
        small_params(n_chains=1)
    with pytest.raises(TypeError, match="seed"):
        small_params(seed=1.5)
    with pytest.raises(ValueError, match="step"):
        small_params(step=0.0)
    with pytest.raises(ValueError, match="dtype"):
        small_params(dtype="float16")
    with pytest.raises(ValueError, match="kept configurations"):
        small_params(n_updates=8, thin=4)
    with pytest.raises(ValueError, match="kappa"):
        small_params(kappa=-0.1)
    with pytest.raises(TypeError, match="EnsembleParams"):
        ensemble.generate_ensemble({"L": 4})
    with pytest.raises(ValueError, match=".npz"):
        ensemble.save_ensemble(tmp_path / "x.txt", torch.zeros(1), small_params(), {})


def test_progress_reports_go_to_stderr(capsys):
    ensemble.generate_ensemble(small_params(), progress=True)
    err = capsys.readouterr().err
    assert "[critdiff] hmc chains: 10/10 updates (100%)" in err  # plain lines: stderr is not a terminal here


# -- the phi4 experiment and its sub-command ------------------------------------------------------
def _parse(argv):
    parser = argparse.ArgumentParser()
    phi4_cli.add_phi4_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["phi4", *argv])


def test_phi4_command_prints_and_writes_exactly_the_documented_json(tmp_path, capsys):
    path = tmp_path / "phi4.json"
    args = _parse(["--L", "4", "--kappa", "0.2", "--lam", "0.1", "--chains", "4", "--traj", "40", "--burn-in", "10",
                   "--json", str(path), "--quiet"])
    assert phi4_cli.run_phi4(args) == 0
    out = capsys.readouterr().out
    assert "HMC" in out and "<|M|>" in out and "tau_int" in out
    data = json.loads(path.read_text())
    assert tuple(data) == pe.JSON_KEYS
    assert data["n_configs"] == 160 and 0 < data["acceptance"] <= 1
    assert data["absM_err"] > 0 and data["tau_int_absM"] >= 0.5 - 1e-12


def test_phi4_experiment_with_a_diffusion_model_runs_end_to_end():
    """Tiny settings: every section is present, finite, and DM-MCMC's acceptance is a probability."""
    res = pe.run_phi4_experiment(4, 2, 0.2, 0.1, n_chains=4, n_traj=24, burn_in=4, train_dm=True, dm_channels=(4, 8),
                                 dm_steps=5, dm_batch=16, ode_steps=4, dm_chains=4, dm_iter=8)
    assert set(res) == set(pe.JSON_KEYS) | {"metropolis", "dm"}
    dm = res["dm"]
    assert dm["divergence"] == "jacobian"  # V = 16: the exact log q (flow Jacobian log-det) is the default
    assert 0.0 <= dm["r2_action"] <= 1.0 and 0.0 <= dm["dm_mcmc"]["acceptance"] <= 1.0
    assert dm["generated"]["n_configs"] == 32
    assert all(math.isfinite(v) for v in dm["generated"].values())
    assert "tau_int_absM" in res["metropolis"] and "tau_int_absM" in dm["dm_mcmc"]
    text = pe.format_report(res)
    assert "DM-MCMC" in text and "R^2" in text and "Metropolis" in text


def test_phi4_rejects_bad_parameters():
    with pytest.raises(ValueError, match="kappa"):
        pe.run_phi4_experiment(4, 2, 0.3, 0.0)  # lam = 0 needs kappa < 1/(2d)
    with pytest.raises(ValueError, match="divergence"):
        pe.run_phi4_experiment(4, 2, 0.2, 0.1, divergence="fast")
    with pytest.raises(ValueError, match="dm_dtype"):
        pe.run_phi4_experiment(4, 2, 0.2, 0.1, dm_dtype="half")


def test_phi4_experiment_reproduces_the_free_field_susceptibility():
    """lam = 0: chi_2 = V Var(M) = c0(k = 0) = 1 / (2 - 4 d kappa) exactly, <M> = 0 and U_L = 0 (Gaussian M)."""
    kappa = 0.2
    res = pe.run_phi4_experiment(4, 2, kappa, 0.0, n_chains=16, n_traj=300, burn_in=50)
    exact_chi2 = 1.0 / (2.0 - 8.0 * kappa)
    # Gamma-method errors over 16 independent chains x 300 trajectories; 5 sigma (normal tail 6e-7)
    assert abs(res["chi2"] - exact_chi2) < 5 * res["chi2_err"], (res["chi2"], res["chi2_err"], exact_chi2)
    assert abs(res["M"]) < 5 * res["M_err"]
    assert abs(res["binder"]) < 5 * res["binder_err"]


def test_hmc_and_phi4_files_carry_the_same_summary(tmp_path):
    """`critdiff phi4 --out` and run_hmc_experiment(out=...) write the same summary keys for the same run."""
    from critdiff_ref.phi4.ensemble import load_ensemble, run_hmc_experiment
    from critdiff_ref.phi4.experiment import run_phi4_experiment

    kw = dict(L=4, d=2, kappa=0.2, lam=0.022, n_chains=2, n_traj=6, burn_in=2)
    run_hmc_experiment(**kw, out=str(tmp_path / "hmc.npz"))
    run_phi4_experiment(**kw, out=str(tmp_path / "phi4.npz"))
    _, params_a, summary_a = load_ensemble(str(tmp_path / "hmc.npz"))
    _, params_b, summary_b = load_ensemble(str(tmp_path / "phi4.npz"))
    assert params_a == params_b and set(summary_a) == set(summary_b)
    assert summary_a == summary_b  # same seed, same chains


def test_hmc_at_L64_with_the_old_defaults_moves():
    """Issue 22: `critdiff phi4 --L 64` (eps 0.1, n_steps 10) used to start at phi = 0, propose dH ~ 9.4
    and accept nothing (chi_2 = 0 +- 0, exit 0).  From phi = 0 without adaptation it still does (the
    failure mode, deterministic at this seed); the default run (hot start, step adapted during burn-in)
    accepts most trajectories and its kept configurations differ from one another."""
    from critdiff_ref.samplers import mcmc
    from critdiff_ref.targets import Phi4Lattice

    cold = mcmc.hmc(Phi4Lattice(64, 2, 0.2, 0.022), torch.zeros((2, 64, 64), dtype=torch.float64), n_traj=5,
                    eps=0.1, n_steps=10, generator=torch.Generator().manual_seed(0), adapt=False)
    assert float(cold.acceptance.max()) == 0.0 and float(cold.dH.min()) > 5.0
    params = ensemble.EnsembleParams(L=64, n_chains=4, n_updates=20, burn_in=20, step=0.1, n_steps=10)
    configs, info = ensemble.generate_ensemble(params)
    # 4 chains x 20 trajectories tuned to 0.8: binomial SE 0.045, so 0.5 is ~7 SE below (false failure ~1e-12)
    assert info["acceptance"] > 0.5 and 0.0 < info["eps"] <= 0.1
    M = configs.mean(dim=(2, 3))
    assert len(set(M[:, 0].tolist())) > 10  # chain 0 visited more than 10 distinct states in 20 trajectories


def test_frozen_chains_fail_naming_the_step(capsys):
    """An acceptance below MIN_ACCEPTANCE after burn-in raises (exit code 2 on the CLI) and names --eps /
    --n-steps; with burn-in the same step is adapted and the run succeeds (issue 18 defect 5's case)."""
    with pytest.raises(ValueError, match="--eps.*--n-steps"):
        ensemble.generate_ensemble(small_params(L=8, step=5.0, burn_in=0, n_updates=8))
    from critdiff_ref import cli

    assert cli.main(["phi4", "--L", "8", "--eps", "5", "--traj", "20", "--burn-in", "0", "--quiet"]) == 2
    assert "frozen" in capsys.readouterr().err
    configs, info = ensemble.generate_ensemble(small_params(L=8, step=5.0, burn_in=30, n_updates=8))
    assert info["acceptance"] > ensemble.MIN_ACCEPTANCE and info["eps"] < 5.0
