"""The phi^4 DM-MCMC figures (THEORY 8; issue 17 item 3): the estimators behind the tables checked against
exact values with error bounds (Gamma-method tau_int of an AR(1) series, the stationary acceptance of an
independence sampler with log-normal weights) and made to fail by planted bugs; the table code on tiny
settings, reproducible and reusing its checkpoints."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from critdiff_ref.cli import main
from critdiff_ref.errors import gamma_method, jackknife
from critdiff_ref.phi4 import chain_statistics as cs
from critdiff_ref.phi4 import figures as pf

torch.set_num_threads(1)

# one significance level: |z| <= K fails a correct estimator with probability <= 6e-5 (normal tails)
K = 4.0


# -- Gamma method on an AR(1) series: tau_int = (1 + rho) / (2 (1 - rho)) ------------------------------
def _ar1(rho: float, n: int, replicas: int, seed: int) -> np.ndarray:
    """Stationary AR(1) ``x_{i+1} = rho x_i + sqrt(1 - rho^2) z``, ``(n, replicas)``: rho(t) = rho^|t|."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, replicas))
    x = np.empty((n, replicas))
    x[0] = z[0]
    c = math.sqrt(1 - rho * rho)
    for i in range(1, n):
        x[i] = rho * x[i - 1] + c * z[i]
    return x


def _tau_check(tau_hat: float, tau_err: float, W: int, rho: float) -> bool:
    """The Gamma method's window-W estimate has mean ``1/2 + sum_{t=1}^W rho^t`` (up to O(W/N)); accept
    within K of its own error (Wolff eq. 42), and require the window to capture all but 1 % of the exact
    ``tau_int = (1 + rho) / (2 (1 - rho))``."""
    tau_exact = (1 + rho) / (2 * (1 - rho))
    tau_window = 0.5 + sum(rho**t for t in range(1, W + 1))
    return abs(tau_hat - tau_window) <= K * tau_err and tau_window >= 0.99 * tau_exact


RHO, N_AR, R_AR = 0.8, 100_000, 4  # tau_int = 4.5; tau_err ~ 4.5 sqrt(4 (W + 1/2 - tau) / 4e5) ~ 0.09 at W ~ 25


def test_gamma_method_tau_int_of_ar1_matches_the_exact_value():
    x = _ar1(RHO, N_AR, R_AR, seed=1)
    g = gamma_method(x)
    assert _tau_check(g.tau_int, g.tau_int_err, g.W, RHO), (g.tau_int, g.tau_int_err, g.W)
    # rho(t) itself: the first lags within K standard errors (Bartlett: var rho(t) <= (2 tau_int) / N_total)
    se = math.sqrt(2 * (1 + RHO) / (2 * (1 - RHO)) / (N_AR * R_AR))
    r = cs.autocorrelation_row(x, seconds_per_update=1.0, unit="steps", t_max=5)
    assert np.all(np.abs(np.asarray(r["rho"]) - RHO ** np.arange(6)) <= K * se * np.sqrt(np.arange(6) + 1))
    assert r["seconds_per_independent"] == pytest.approx(2 * g.tau_int)


@pytest.mark.parametrize("bug", ["forgets the half of rho(0)", "thinned series quoted in unthinned units"])
def test_planted_tau_int_bugs_fail_the_ar1_check(bug):
    x = _ar1(RHO, N_AR, R_AR, seed=1)
    g = gamma_method(x)
    if bug == "forgets the half of rho(0)":  # tau = sum_{t=0}^W rho(t): +0.5, i.e. > K sigma at tau_err ~ 0.09
        tau, err, W = g.tau_int + 0.5, g.tau_int_err, g.W
    else:  # every 2nd point: tau_int(rho^2) = 2.28 in steps of 2, misreported as steps of 1
        h = gamma_method(x[::2])
        tau, err, W = h.tau_int, h.tau_int_err, h.W
    assert g.tau_int_err < 0.5 / K  # the resolution that makes the +0.5 bug detectable
    assert not _tau_check(tau, err, W, RHO)


# -- stationary acceptance of independence Metropolis ---------------------------------------------------
def _lognormal_acceptance(sigma: float) -> float:
    """Exact stationary acceptance for ``log w ~ N(0, sigma^2)`` under q: ``2 Phi(-sigma / sqrt 2)``
    (E[min(w1, w2)] = 2 exp(sigma^2/2) Phi(-sigma/sqrt 2), E[w] = exp(sigma^2/2))."""
    return math.erfc(sigma / 2.0)  # 2 Phi(-s/sqrt2) = erfc(s/2)


def _naive_acceptance(log_w: torch.Tensor) -> torch.Tensor:
    """PLANTED BUG: the mean of min(1, w_j / w_i) over proposal pairs, as if the current state were drawn
    from q (it is drawn from p at stationarity)."""
    lw = log_w.reshape(-1)
    return torch.clamp(torch.exp(lw[None, :] - lw[:, None]), max=1.0).mean()


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_stationary_acceptance_of_lognormal_weights(sigma):
    g = torch.Generator().manual_seed(7)
    log_w = sigma * torch.randn(2000, generator=g, dtype=torch.float64)
    est = jackknife(lambda x: torch.tensor(cs.stationary_acceptance(x)), log_w, n_blocks=20)
    exact = _lognormal_acceptance(sigma)
    # K jackknife standard errors (20 blocks of iid draws)
    assert abs(float(est.value) - exact) <= K * float(est.err), (float(est.value), float(est.err), exact)
    naive = jackknife(_naive_acceptance, log_w, n_blocks=20)
    assert abs(float(naive.value) - exact) > K * float(naive.err)  # the planted bug fails the same check


def test_stationary_acceptance_is_one_for_exact_proposals_and_the_chain_agrees():
    assert cs.stationary_acceptance(torch.full((50,), -3.2)) == pytest.approx(1.0, abs=1e-15)  # w constant
    # measured acceptance of a long independence chain on iid log-normal weights vs the estimator
    from critdiff_ref.samplers.dmmc import independence_metropolis

    g = torch.Generator().manual_seed(3)
    log_w = torch.randn((4000, 8), generator=g, dtype=torch.float64)
    _, accepted = independence_metropolis(log_w, g)
    per_chain = accepted[1:].double().mean(dim=0)  # 8 independent chains: their spread gives the SE
    se = float(per_chain.std(correction=1)) / math.sqrt(8)
    assert abs(float(per_chain.mean()) - _lognormal_acceptance(1.0)) <= K * se
    with pytest.raises(ValueError, match="log_w"):
        cs.stationary_acceptance(torch.tensor([0.0, float("nan")]))


# -- helpers -----------------------------------------------------------------------------------------
def test_well_changes_and_magnetisation_series():
    M = np.array([[1.0, -1.0], [-0.5, -2.0], [0.3, -0.1], [0.2, 0.4], [-0.9, 0.1]])
    assert cs.well_changes(M).tolist() == [3, 1]  # plain sign changes
    # hysteresis at 0.6: chain 0 goes + -> (0.3, 0.2, ignored) -> -: one move; chain 1 stays in the - well
    assert cs.well_changes(M, 0.6).tolist() == [1, 0]
    cfg = torch.ones((3, 2, 4, 4)) * torch.tensor([1.0, -2.0]).reshape(1, 2, 1, 1)
    assert np.array_equal(cs.magnetisation_series(cfg, 2), np.tile([1.0, -2.0], (3, 1)))
    with pytest.raises(ValueError, match="M must have shape"):
        cs.well_changes(np.zeros(5))
    with pytest.raises(ValueError, match="threshold"):
        cs.well_changes(M, -1.0)


@pytest.mark.parametrize("kw, name", [({"ode_method": "euler2"}, "ode_method"), ({"sizes": (4, 5)}, "L=5"),
                                      ({"kappas": (-0.1,)}, "kappa"), ({"dm_chains": 1}, "dm_chains"),
                                      ({"eps": 0.0}, "eps"), ({"kappas": ()}, "kappas"), ({"net": "mlp"}, "net")])
def test_bad_settings_raise_naming_the_parameter(kw, name):
    with pytest.raises(ValueError, match=name):
        pf.FiguresConfig(**kw)


# -- the tables on tiny settings ------------------------------------------------------------------------
TINY = replace(pf.QUICK, kappas=(0.21,), sizes=(4,), kappa_critical=0.21, dm_steps=10)


def test_acceptance_table_is_reproducible_and_reuses_its_checkpoints(tmp_path):
    first = pf.write_figures(tmp_path, TINY, parts=("acceptance",), plots=False)["acceptance"]
    second = pf.write_figures(tmp_path, TINY, parts=("acceptance",), plots=False)["acceptance"]
    (row1,), (row2,) = first["rows"], second["rows"]
    assert not row1["checkpoint_loaded"] and row2["checkpoint_loaded"]
    for key in ("acceptance", "acceptance_err", "stationary_acceptance", "chi2_dm_mcmc", "chi2_hmc"):
        assert row1[key] == row2[key]
    assert 0.0 <= row1["acceptance"] <= 1.0 and 0.0 <= row1["stationary_acceptance"] <= 1.0
    assert row1["n_proposals"] == TINY.dm_chains * TINY.dm_iter
    assert os.listdir(tmp_path / "checkpoints") == [os.path.basename(pf.checkpoint_path("", TINY, 4, 0.21))]
    text = (tmp_path / "acceptance.md").read_text()
    assert "| 4 | 0.21 |" in text and "loaded" in text
    json.loads((tmp_path / "acceptance.json").read_text())


def test_autocorrelation_and_broken_phase_tables(tmp_path):
    res = pf.write_figures(tmp_path, TINY, parts=("autocorrelation", "broken"), plots=False)
    ac = res["autocorrelation"]["rows"]
    assert set(ac) == {"metropolis", "hmc", "dm_mcmc"}
    assert [ac[k]["unit"] for k in ("metropolis", "hmc", "dm_mcmc")] == ["sweeps", "trajectories", "proposals"]
    for r in ac.values():
        assert r["rho"][0] == pytest.approx(1.0) and r["tau_int"] > 0 and r["seconds_per_update"] > 0
    br = res["broken"]["rows"]
    assert br["hmc"]["n"] == TINY.hmc_chains * TINY.hmc_traj and "well_changes" not in br["dm_samples"]
    assert np.sum(br["hmc"]["histogram"]) * np.diff(res["broken"]["edges"])[0] == pytest.approx(1.0)
    assert "Tunnelling" in (tmp_path / "broken.md").read_text()
    assert br["hmc"]["well_changes"] <= br["hmc"]["sign_changes"]  # hysteresis only removes moves


@pytest.mark.slow
def test_cli_quick_writes_every_part_with_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["phi4-figures", "--quick", "--out", str(tmp_path / "figs"), "--quiet"]) == 0
    for part in pf.PARTS:
        for ext in ("md", "json", "png"):
            assert (tmp_path / "figs" / f"{part}.{ext}").stat().st_size > 0
    with pytest.raises(SystemExit):  # argparse: --parts must be one of PARTS
        main(["phi4-figures", "--quick", "--out", str(tmp_path / "figs"), "--parts", "nope"])


def test_cli_rejects_an_output_path_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["phi4-figures", "--quick", "--out", str(f), "--quiet"]) == 2
    assert "--out" in capsys.readouterr().err


def test_cli_flags_reach_the_config(tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["phi4-figures", "--quick", "--parts", "broken", "--no-plots", "--quiet", "--out", str(out),
                 "--dm-steps", "5", "--channels", "4", "8", "--dm-batch", "8", "--hmc-traj", "16", "--seed", "2"]) == 0
    cfg = json.loads((out / "broken.json").read_text())["config"]
    assert (cfg["dm_steps"], cfg["channels"], cfg["dm_batch"], cfg["hmc_traj"], cfg["seed"]) == (5, [4, 8], 8, 16, 2)
    assert not (out / "broken.png").exists()


def test_fourier_local_acceptance_table_uses_the_stepwise_exact_log_q(tmp_path, monkeypatch):
    """``net="fourier-local"`` trains that network, keeps its own checkpoint next to the U-Net's and runs
    DM-MCMC with the step-by-step exact log q (``divergence="stepwise"``)."""
    seen = []
    run = pf.run_dm_mcmc

    def spy(*args, **kwargs):
        res = run(*args, **kwargs)
        seen.append((type(args[1]).__name__, args[3].divergence, res[1]))
        return res

    monkeypatch.setattr(pf, "run_dm_mcmc", spy)
    cfg = replace(TINY, net="fourier-local")
    res = pf.write_figures(tmp_path, cfg, parts=("acceptance",), plots=False)["acceptance"]
    assert seen == [("FourierLocalScore", "stepwise", "stepwise")]
    assert res["divergence"] == "stepwise" and res["config"]["net"] == "fourier-local"
    (row,) = res["rows"]
    assert 0.0 <= row["acceptance"] <= 1.0 and row["n_proposals"] == cfg.dm_chains * cfg.dm_iter
    # one checkpoint per network: the U-Net's name is unchanged, the fourier-local one differs
    assert pf.checkpoint_path("", cfg, 4, 0.21) != pf.checkpoint_path("", TINY, 4, 0.21)
    assert os.listdir(tmp_path / "checkpoints") == [os.path.basename(pf.checkpoint_path("", cfg, 4, 0.21))]
    assert "fourier-local" in (tmp_path / "acceptance.md").read_text()
    # the seeded run reproduces exactly from its checkpoint (DM-MCMC has its own seeded stream)
    again = pf.write_figures(tmp_path, cfg, parts=("acceptance",), plots=False)["acceptance"]["rows"][0]
    assert again["checkpoint_loaded"] and again["acceptance"] == row["acceptance"]
    assert again["stationary_acceptance"] == row["stationary_acceptance"]


def test_cli_dm_net_flag_reaches_the_config(tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["phi4-figures", "--quick", "--parts", "acceptance", "--no-plots", "--quiet", "--out", str(out),
                 "--kappas", "0.21", "--sizes", "4", "--dm-steps", "5", "--dm-net", "fourier-local",
                 "--dm-radius", "2"]) == 0
    result = json.loads((out / "acceptance.json").read_text())
    assert (result["config"]["net"], result["config"]["radius"], result["divergence"]) == ("fourier-local", 2, "stepwise")
    with pytest.raises(SystemExit):  # argparse: --dm-net must be one of DM_NETS
        main(["phi4-figures", "--quick", "--out", str(out), "--dm-net", "mlp"])
