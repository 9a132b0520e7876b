"""Pooling exact DM-MCMC runs by their chains (critdiff_ref.phi4.exact_dm.pool_chains, THEORY 8 "Exactness") and
the ``phi4-exact-dm`` sweep kind that spreads one study over jobs (critdiff_ref.sweep.pooled)."""

import json
import math
import os

import numpy as np
import pytest

from critdiff_ref.phi4.ensemble import summarize_magnetisation
from critdiff_ref.phi4.exact_dm import OBSERVABLES, pool_chains, pool_runs, run_exact_dm
from critdiff_ref.sweep import check_params, example_path, format_status, load_spec, run_spec, sweep_status
from critdiff_ref.sweep.pooled import exact_dm_pools

# a tiny study: L = 4, a 50-step network, 2 chains x 10 kept states per run (seconds)
TINY = dict(hmc_chains=4, hmc_traj=100, train_chains=2, train_traj=100, burn_in=50, dm_steps=50, dm_batch=16,
            ode_steps=4, dm_chains=2, dm_iter=12, dm_burn_in=2, batch_size=8)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs of one network (the first trains it into the checkpoint, the others load it)."""
    net = str(tmp_path_factory.mktemp("net") / "net.pt")
    return [run_exact_dm(4, checkpoint=net, proposal_seed=s, **TINY) for s in (10, 11, 12)]


def test_a_run_keeps_the_magnetisation_series_its_own_summary_is_made_of(runs):
    r = runs[0]
    for key, summary in (("dm_mcmc_M", r["dm_mcmc"]), ("dm_raw_M", r["dm_raw"])):
        M = np.asarray(r["series"][key])
        assert M.shape == (2, 10)  # dm_chains lists of dm_iter - dm_burn_in states
        again = summarize_magnetisation(M.T, 16)
        for k in OBSERVABLES:  # the same numbers through the same Gamma method: equal to rounding
            assert math.isclose(again[k], summary[k], rel_tol=1e-12, abs_tol=1e-15), (key, k)
    assert np.isclose(np.mean(r["series"]["acceptance"]), r["dm_mcmc"]["acceptance"], rtol=1e-12)
    assert r["checkpoint_loaded"] is False and runs[1]["checkpoint_loaded"] is True


def test_pooled_chains_are_one_gamma_analysis_over_every_chain(runs):
    pooled = pool_chains(runs)
    M = np.concatenate([np.asarray(r["series"]["dm_mcmc_M"]) for r in runs]).T  # (10, 6)
    direct = summarize_magnetisation(M, 16)
    for k in OBSERVABLES:
        assert math.isclose(pooled["dm_mcmc"][k], direct[k], rel_tol=1e-12, abs_tol=1e-15)
    assert pooled["n_chains"] == 6 and pooled["dm_mcmc"]["n_configs"] == 60 and pooled["proposal_seeds"] == [10, 11, 12]
    acc = [a for r in runs for a in r["series"]["acceptance"]]
    assert math.isclose(pooled["dm_mcmc"]["acceptance"], sum(acc) / 6, rel_tol=1e-12)
    # one run pools to itself
    single = pool_chains(runs[:1])
    assert all(math.isclose(single["dm_raw"][k], runs[0]["dm_raw"][k], rel_tol=1e-12, abs_tol=1e-15) for k in OBSERVABLES)


def _copy(run: dict, **settings) -> dict:
    out = json.loads(json.dumps(run))
    out["settings"].update(settings)
    return out


def test_runs_that_are_not_one_study_are_refused_with_the_reason(runs):
    with pytest.raises(ValueError, match="dm_steps"):
        pool_chains([runs[0], _copy(runs[1], dm_steps=51)])
    with pytest.raises(ValueError, match="share proposal seed 10"):
        pool_chains([runs[0], runs[0]])
    other = _copy(runs[1])
    other["final_loss"] += 1e-9
    with pytest.raises(ValueError, match="another HMC reference or network"):
        pool_chains([runs[0], other])
    short = _copy(runs[1])
    short["series"]["dm_mcmc_M"] = [c[:-1] for c in short["series"]["dm_mcmc_M"]]
    with pytest.raises(ValueError, match="states per chain"):
        pool_chains([runs[0], short])
    old = _copy(runs[1])
    del old["series"]
    with pytest.raises(ValueError, match="pool_runs"):
        pool_chains([runs[0], old])
    with pytest.raises(ValueError, match="at least one"):
        pool_chains([])


def _synthetic(M: np.ndarray, seed: int) -> dict:
    """A run_exact_dm-shaped result whose chains are the series ``M`` ``(chains, N)``."""
    s = summarize_magnetisation(M.T, 16)
    hmc = {k: 1.0 for k in OBSERVABLES} | {f"{k}_err": 0.01 for k in OBSERVABLES}
    return {"L": 4, "d": 2, "kappa": 0.21, "lam": 0.022, "hmc": hmc, "final_loss": 0.3,
            "settings": {"seed": 0, "proposal_seed": seed, "dm_chains": M.shape[0], "dm_iter": M.shape[1]},
            "dm_mcmc": {**s, "acceptance": 1.0}, "dm_raw": s,
            "series": {"dm_mcmc_M": M.tolist(), "dm_raw_M": M.tolist(), "acceptance": [1.0] * M.shape[0]}}


def test_pooling_chains_is_unbiased_where_inverse_variance_pooling_of_short_runs_is_not():
    # 400 short runs of 2 chains x 50 independent Gaussian magnetisations, V = 16, variance 1/16: chi_2 = 1
    # exactly. A run's chi_2 error grows with its chi_2, so inverse-variance weights favour low runs: a bias of
    # about -2 (relative error of one run)^2 = -2 * 2/100 = -4 %. Pooled over all 40 000 states the error is
    # sqrt(2/40000) = 0.7 %, so the bias is ~5.7 SE: pool_runs must miss by > 3 SE and pool_chains must
    # be within 3 SE (fixed seed: deterministic; a 3-SE miss of an unbiased pool has probability 0.27 %).
    rng = np.random.default_rng(0)
    results = [_synthetic(rng.normal(0.0, 0.25, size=(2, 50)), seed) for seed in range(400)]
    chains, runs_ = pool_chains(results)["dm_mcmc"], pool_runs(results)["dm_mcmc"]
    assert abs(chains["chi2"] - 1.0) < 3 * chains["chi2_err"]
    assert runs_["chi2"] < 1.0 - 3 * chains["chi2_err"]


# -- the sweep kind ------------------------------------------------------------------------------------------
def test_the_sweep_kind_fills_run_exact_dms_defaults_and_refuses_bad_values():
    full = check_params("phi4-exact-dm", {"L": 8, "proposal_seed": 3})
    assert full["dm_iter"] == 250 and full["proposal_seed"] == 3 and full["ode_method"] == "heun"
    bad = [({"L": 8, "ode_method": "midpoint"}, "ode_method"), ({"L": 8, "dm_iter": 5, "dm_burn_in": 4}, "dm_iter"),
           ({"L": 8, "checkpoint": "net.txt"}, "checkpoint"), ({"L": 8, "dm_chains": 0}, "dm_chains"),
           ({"L": 8, "kappa": -1.0}, "kappa"), ({"L": 8, "progress": True}, "progress"),
           ({"L": 8, "dm_steps": 1.5}, "dm_steps"), ({"L": 8, "device": "tpu"}, "device"), ({}, "'L'")]
    for params, name in bad:
        with pytest.raises(ValueError, match=name):
            check_params("phi4-exact-dm", params)


def test_the_shipped_exact_dm_examples_load():
    small = load_spec(example_path("phi4_exact_dm_small"))
    assert len(small.jobs) == 4 and {j.params["proposal_seed"] for j in small.jobs} == {100, 101, 102, 103}
    big = load_spec(example_path("phi4_exact_dm_L32"))
    assert all(j.params["L"] == 32 for j in big.jobs) and len({j.params["proposal_seed"] for j in big.jobs}) == len(big.jobs)


def test_a_sweep_of_chain_jobs_pools_into_one_row_and_resumes_to_the_same_numbers(tmp_path):
    spec = {"name": "exact-dm-tiny", "resources": {"num_cpus": 1},
            "jobs": [{"kind": "phi4-exact-dm", "name": "L4", "params": {"L": 4, **TINY},
                      "grid": {"proposal_seed": [10, 11, 12]}}]}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "out"
    first = run_spec(str(path), str(out), engine="serial", plots=False, progress=False)
    assert first["ran"] == 3 and not first["failed"] and len(first["pools"]) == 1
    pool = first["pools"][0]
    assert pool["n_chains"] == 6 and len(pool["jobs"]) == 3
    # the sweep's pool is pool_chains of its stored results
    stored = [json.loads((out / "results" / name).read_text())["result"] for name in pool["jobs"]]
    assert pool["dm_mcmc"]["chi2"] == pool_chains(stored)["dm_mcmc"]["chi2"]
    assert "Exact DM-MCMC, chains pooled over jobs" in (out / "table.md").read_text()
    assert json.loads((out / "pooled.json").read_text())["pools"][0]["n_chains"] == 6
    # critdiff sweep status pools what has finished (here: everything)
    status = sweep_status(str(out))
    assert status["pools"][0]["dm_mcmc"] == pool["dm_mcmc"] and "chains of the finished jobs pooled" in format_status(status)
    # resume: one result lost, one job reruns, the pooled numbers are the same (each job is a pure function of
    # its parameters and seeds)
    os.remove(out / "results" / pool["jobs"][1])
    again = run_spec(str(path), str(out), engine="serial", plots=False, progress=False)
    assert again["ran"] == 1 and again["skipped"] == 2
    assert again["pools"][0]["dm_mcmc"] == pool["dm_mcmc"]


def test_jobs_of_two_studies_pool_separately_and_a_failed_job_is_left_out():
    class J:  # the fields of sweep.spec.Job that pooling reads
        def __init__(self, id_, params, kind="phi4-exact-dm"):
            self.id, self.params, self.kind, self.filename = id_, params, kind, f"{kind}-{id_}.json"

    rng = np.random.default_rng(1)
    res = {i: _synthetic(rng.normal(0.0, 0.25, size=(2, 20)), seed=i) for i in range(4)}
    jobs = [J(0, {"L": 4, "seed": 0, "proposal_seed": 0}), J(1, {"L": 4, "seed": 0, "proposal_seed": 1}),
            J(2, {"L": 4, "seed": 1, "proposal_seed": 2}), J(3, {"L": 4, "seed": 0, "proposal_seed": 3}),
            J(4, {"L": 4}, kind="phi4")]
    records = {0: {"status": "ok", "result": res[0]}, 1: {"status": "ok", "result": res[1]},
               2: {"status": "ok", "result": res[2]}, 3: {"status": "error", "error": "x"}, 4: {"status": "ok"}}
    pools = exact_dm_pools(jobs, records)
    assert sorted(len(p["jobs"]) for p in pools) == [1, 2]
    assert all("error" not in p for p in pools)


# -- the committed L = 32 study (docs/results/phi4_exact_dm.md, "L = 32: the published Table 1 row") ---------
STUDY = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "results", "phi4_exact_dm", "L32_sweep")


def test_the_committed_L32_study_pools_to_the_documented_row_and_meets_the_criteria():
    names = sorted(n for n in os.listdir(os.path.join(STUDY, "results")) if n.endswith(".json"))
    results = []
    for name in names:
        with open(os.path.join(STUDY, "results", name)) as fh:
            record = json.load(fh)
        assert record["status"] == "ok"
        results.append(record["result"])
    pooled = pool_chains(results)
    with open(os.path.join(STUDY, "pooled.json")) as fh:
        (stored,) = json.load(fh)["pools"]
    for key in ("dm_mcmc", "dm_raw"):  # the sweep's own pooling of the same files (JSON round trip: exact)
        assert all(math.isclose(pooled[key][k], stored[key][k], rel_tol=1e-12) for k in OBSERVABLES)
    c, ref = pooled["dm_mcmc"], pooled["hmc"]
    proposals = sum(r["settings"]["dm_chains"] * r["settings"]["dm_iter"] for r in results)
    # the study's goals: chi_2 error <= 0.10 (the published DM row's), acceptance >= 0.4 over >= 1000
    # proposals, agreement with HMC within 2 combined SE on every observable
    assert c["chi2_err"] <= 0.10 and c["acceptance"] >= 0.4 and proposals >= 1000 and pooled["passes"]
    with open(os.path.join(STUDY, os.pardir, os.pardir, "phi4_exact_dm.md")) as fh:
        page = fh.read()
    assert f"| {c['chi2']:.3f} ± {c['chi2_err']:.3f} |" in page and f"{ref['chi2']:.3f} ± {ref['chi2_err']:.3f}" in page
    assert f"acceptance {c['acceptance']:.3f} over {proposals} proposals" in page
