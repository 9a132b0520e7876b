"""critdiff_ref.phi4.exact_dm: the exact (stepwise log q) DM-MCMC run for lattice phi^4 (THEORY 8, issue 17)."""

import math
import os

import pytest
import torch

from critdiff_ref.phi4.exact_dm import OBSERVABLES, pool_runs, run_exact_dm, z_scores
from critdiff_ref.phi4.power import Z_CHECK, power_against_bias


def test_power_against_bias_is_the_two_sided_normal_tail():
    # zero bias: the false-failure rate of a 2-sigma check, 2 (1 - Phi(2)) = 0.0455
    assert math.isclose(power_against_bias(0.0, 1.0), math.erfc(2.0 / math.sqrt(2.0)), rel_tol=1e-12)
    # bias = (2 + 1.645) se: 95 % power (plus the negligible far tail Phi(-5.645))
    assert math.isclose(power_against_bias(3.645, 1.0), 0.95, abs_tol=1e-3)
    assert power_against_bias(1.0, 0.1) > 1.0 - 1e-12
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="se"):
            power_against_bias(0.1, bad)


def test_z_scores_combine_the_errors_in_quadrature():
    a = {k: 1.0 for k in OBSERVABLES} | {f"{k}_err": 0.3 for k in OBSERVABLES}
    b = {k: 0.5 for k in OBSERVABLES} | {f"{k}_err": 0.4 for k in OBSERVABLES}
    assert all(math.isclose(z, 0.5 / 0.5) for z in z_scores(a, b).values())


def _fake_run(value: float, err: float, n: int, loss: float = 0.3) -> dict:
    summary = {k: value for k in OBSERVABLES} | {f"{k}_err": err for k in OBSERVABLES} | {"n_configs": n}
    hmc = {k: 1.0 for k in OBSERVABLES} | {f"{k}_err": 0.01 for k in OBSERVABLES}
    return {"hmc": hmc, "final_loss": loss, "dm_mcmc": {**summary, "acceptance": 0.5}, "dm_raw": dict(summary)}


def test_pool_runs_is_the_inverse_variance_mean():
    pooled = pool_runs([_fake_run(1.0, 0.1, 10), _fake_run(1.3, 0.2, 30)])
    w1, w2 = 1 / 0.01, 1 / 0.04
    assert math.isclose(pooled["dm_mcmc"]["chi2"], (w1 * 1.0 + w2 * 1.3) / (w1 + w2), rel_tol=1e-14)
    assert math.isclose(pooled["dm_mcmc"]["chi2_err"], (w1 + w2) ** -0.5, rel_tol=1e-14)
    assert pooled["dm_raw"]["n_configs"] == 40 and pooled["n_runs"] == 2
    # two equal runs: the error shrinks by sqrt(2), the value stays
    two = pool_runs([_fake_run(1.1, 0.2, 10), _fake_run(1.1, 0.2, 10)])
    assert math.isclose(two["dm_mcmc"]["absM_err"], 0.2 / math.sqrt(2), rel_tol=1e-14)
    with pytest.raises(ValueError, match="share"):
        pool_runs([_fake_run(1.0, 0.1, 10), _fake_run(1.0, 0.1, 10, loss=0.4)])
    with pytest.raises(ValueError, match="at least one"):
        pool_runs([])


def test_bad_input():
    with pytest.raises(ValueError, match="ode_method"):
        run_exact_dm(4, ode_method="midpoint")
    with pytest.raises(ValueError, match="kappa"):
        run_exact_dm(4, kappa=-0.1)
    # refused before any HMC run (these defaults would take minutes if the check came late)
    for bad, name in (({"dm_iter": 3, "dm_burn_in": 2}, "dm_iter"), ({"hmc_chains": 1}, "hmc_chains"),
                      ({"train_traj": 1}, "train_traj"), ({"checkpoint": "net.txt"}, "checkpoint"),
                      ({"batch_size": 0}, "batch_size")):
        with pytest.raises(ValueError, match=name):
            run_exact_dm(16, **bad)


# the slow test's required check: every |z| < 3 combined SE (two-sided normal tail 0.27 % per observable, ~1 %
# for the 4; seeds fixed, so the outcome is deterministic); the 2-SE criterion is printed and
# measured in docs/results/phi4_exact_dm.md
K_REQUIRED = 3.0


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CRITDIFF_SLOW") != "1", reason="slow: set CRITDIFF_SLOW=1")
def test_exact_dm_mcmc_with_a_trained_network_reproduces_hmc_at_L8():
    """L = 8, kappa = 0.21, lam = 0.022: DM-MCMC with the trained FourierLocalScore and the exact stepwise log q
    reproduces the long HMC run's M, |M|, chi_2, U_L within K_REQUIRED combined SE; its SE are small enough that a
    10 % chi_2 bias fails the 2-SE criterion with >= 95 % probability; the DM's raw samples fail (their chi_2 is
    low: the correction does something); the chain accepts.  (3 min at load ~1, ~23 min at load ~9; measured
    seed 0, network trained through phi4.dm.train_dm: z = 0.80, -1.38, -1.49, 0.20, power 0.977, acceptance
    0.81, raw chi_2 z = -12.6.)"""
    torch.set_num_threads(1)
    r = run_exact_dm(8, 0.21, 0.022, hmc_chains=64, hmc_traj=4000, dm_steps=2000, ode_steps=16, dm_chains=32,
                     dm_iter=300, seed=0)
    print({k: r[k] for k in ("z_dm_mcmc", "z_dm_raw", "power_10pct_chi2", "passes")}, r["dm_mcmc"]["acceptance"])
    assert all(abs(z) < K_REQUIRED for z in r["z_dm_mcmc"].values()), r["z_dm_mcmc"]
    assert r["power_10pct_chi2"] >= 0.95, r["power_10pct_chi2"]
    assert abs(r["z_dm_raw"]["chi2"]) > K_REQUIRED, r["z_dm_raw"]
    assert 0.2 < r["dm_mcmc"]["acceptance"] < 1.0, r["dm_mcmc"]["acceptance"]
    assert r["train_ensemble"]["thin"] >= 2 * r["train_ensemble"]["tau_int_absM"]
