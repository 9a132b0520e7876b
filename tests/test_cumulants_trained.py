"""Learned cumulants (issue 23; THEORY 6): the score MLP, its DSM training and checkpoint, the table and
its decomposition, and the power of the cumulant checks against planted bugs.

Fast tests are deterministic (fixed seeds, exact arithmetic where possible); the trained-network tests at
the quick and paper settings are marked ``slow``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from critdiff_ref.cli import main
from critdiff_ref.processes import VE, VP
from critdiff_ref.scores import exact_score
from critdiff_ref.trainers import ScoreMLP, cumulants, cumulants_checkpoint
from critdiff_ref.trainers.dsm import denoising_loss, train_dsm

TINY = replace(cumulants.QUICK, n_data=4096, epochs=2, n_gen=4000, em_steps=100, n_boot=50)


class ExactModule(torch.nn.Module):
    """The exact score as a module, standing in for a perfectly trained network."""

    def __init__(self, config):
        super().__init__()
        self.score = exact_score(config.target, cumulants.make_process(config))

    def forward(self, x, t):
        return self.score(x, t)


# -- the network --------------------------------------------------------------------------------------
@pytest.mark.parametrize("process", [VE(25.0), VP()])
def test_mlp_scalar_time_is_the_batch_of_equal_times(process):
    """The split first layer broadcasts one feature vector for a scalar t: same output as a (batch,) t."""
    model = ScoreMLP(2, process, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = model(x, 0.3)
    assert out.shape == x.shape and out.dtype == x.dtype
    # same float64 operations in a different broadcast order: a few ulps
    torch.testing.assert_close(out, model(x, torch.full((7,), 0.3, dtype=torch.float64)), rtol=1e-12, atol=1e-12)


def test_mlp_rejects_bad_inputs():
    model = ScoreMLP(1, VE(25.0))
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(3, 2), 0.5)
    with pytest.raises(ValueError, match="Xi"):
        model(torch.zeros(3, 1), 0.0)
    with pytest.raises(ValueError, match="hidden"):
        ScoreMLP(1, VE(25.0), hidden=())


def test_mlp_dsm_training_lowers_the_loss():
    """train_dsm (the U-Net's trainer) trains the MLP. The DSM loss on one fixed evaluation batch (same t and
    noise before and after): at initialisation eps_hat ~ 0 and the loss is ~E z^2 = 1; the two-peak VP
    optimum is ~0.25 (the minibatch losses of longer runs), so 100 Adam steps at lr 3e-3 must bring it
    below 0.5 (seeded, deterministic)."""
    config = replace(TINY, process="vp")
    process, data = cumulants.make_process(config), cumulants.training_data(config)
    model = cumulants.build_model(config)

    def eval_loss() -> float:
        with torch.no_grad():
            return float(denoising_loss(model, data[:2048], process, torch.Generator().manual_seed(5)))

    before = eval_loss()
    train_dsm(model, data, process, steps=100, batch_size=256, lr=3e-3, augment_data=False,
              generator=torch.Generator().manual_seed(0))
    after = eval_loss()
    assert before > 0.8 and after < 0.5, (before, after)


def test_time_blind_mutant_ignores_t():
    model = cumulants.build_model(TINY, time_blind=True)
    t = torch.tensor([0.01, 0.5, 0.99])
    feats = model.time(t)
    assert torch.equal(feats[0], feats[1]) and torch.equal(feats[1], feats[2])


# -- checkpoint ---------------------------------------------------------------------------------------
def test_checkpoint_round_trip_is_weights_only_and_atomic(tmp_path):
    model, info = cumulants.train_model(replace(TINY, epochs=1))
    path = tmp_path / "sub" / "ve.pt"
    cumulants_checkpoint.save_checkpoint(path, model, TINY, info)
    assert sorted(os.listdir(path.parent)) == ["ve.pt"]  # no temporary file left behind
    payload = torch.load(path, weights_only=True)  # plain tensors and values: loads without pickled code
    assert payload["format"] == 1
    loaded, info2 = cumulants_checkpoint.load_checkpoint(path, TINY)
    x = torch.linspace(-3, 3, 11, dtype=torch.float64).reshape(-1, 1)
    assert torch.equal(loaded(x, 0.2), model(x, 0.2))
    assert info2["steps"] == info["steps"]
    with pytest.raises(ValueError, match="differ"):
        cumulants_checkpoint.load_checkpoint(path, replace(TINY, hidden=(32, 32)))
    with pytest.raises(ValueError, match="differ"):
        cumulants_checkpoint.load_checkpoint(path, replace(TINY, process="vp"))


# -- table pieces -------------------------------------------------------------------------------------
def test_em_fit_recovers_an_exact_first_order_bias():
    """Rows built as kappa_n(0) + b0 + c h exactly: the weighted fit returns c and chi^2 = 0 (rounding)."""
    config = TINY
    exact0, exact_tmin = cumulants.exact_row(config), cumulants.exact_row(config, config.t_min)
    c = {2: 0.3, 4: -1.5, 6: 20.0, 8: -400.0}
    sweep = {N: {**{f"kappa_{n}": exact_tmin[f"kappa_{n}"] + c[n] / N for n in cumulants.ORDERS},
                 **{f"kappa_{n}_err": 0.01 * (1 + n) for n in cumulants.ORDERS}} for N in (250, 500, 1000, 2000)}
    fit = cumulants.fit_em_bias(config, sweep)
    for n in cumulants.ORDERS:
        f = fit[f"kappa_{n}"]
        assert f["c"] == pytest.approx(c[n], rel=1e-9)  # linear algebra on four points: rounding only
        assert f["bias"] == pytest.approx(exact_tmin[f"kappa_{n}"] - exact0[f"kappa_{n}"] + c[n] / config.em_steps,
                                          rel=1e-9, abs=1e-12)
        assert f["chi2"] < 1e-12


def test_paired_difference_of_shifted_samples_is_zero():
    """k_n (n >= 2) is shift invariant: x and x + 3 differ by 0 in every replica (rounding)."""
    x = torch.randn(500, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d = cumulants.paired_difference(x + 3.0, x, n_boot=20)
    for n in cumulants.ORDERS:
        # power sums of centred data up to order 8, |x| <~ 4: relative rounding ~1e-13 of k_n's scale (~n!)
        assert abs(d[f"kappa_{n}"]) < 1e-9 * math.factorial(n)
        assert d[f"kappa_{n}_err"] < 1e-9 * math.factorial(n)


def test_score_error_of_the_exact_score_is_zero():
    res = cumulants.score_error(ExactModule(TINY), TINY, n_t=4, n_x=100)
    assert res["weighted_l2"] == 0.0 and res["relative"] == 0.0


# -- checks with power --------------------------------------------------------------------------------
def _exact_table(kind: str, **kw):
    config = replace(TINY, process=kind)
    return cumulants.learned_cumulants(config, ExactModule(config), sweep_steps=(25, 50, 100, 200), **kw)


def test_exact_score_passes_and_wrong_vp_drift_sign_fails():
    """With a perfect score the checks pass (same noise as the exact-score row, so the trained row is the
    exact-score row, seeds fixed); with the VP drift sign flipped in the sampler every order fails."""
    ok = _exact_table("vp")
    assert cumulants.passes(ok)
    assert ok["trained"] == ok["exact_score"]
    bad = _exact_table("vp", process=cumulants.WrongDriftSign(VP()))
    failed = [abs(m - e) > tol for _, m, e, tol in cumulants.checks(bad)]
    assert all(failed)


def test_report_tables_print_the_published_rows():
    from critdiff_ref.report import learned

    res = _exact_table("ve")
    rows = learned.table_rows(res)
    assert [r[0] for r in rows] == ["exact", "data", "exact-score sampler", "trained", "trained (paper)",
                                    "data (paper)"]
    assert rows[4][1] == "1.07000(60)"  # the paper's VE kappa_2 = 1.0700(6) at two significant digits
    assert len(learned.decomposition_rows(res)) == len(cumulants.ORDERS)
    assert "kappa_8" in learned.format_result(res)


def test_cli_writes_strict_json_and_reuses_its_checkpoint(tmp_path, capsys):
    ck, js = tmp_path / "ve.pt", tmp_path / "ve.json"
    args = ["cumulants", "--process", "ve", "--epochs", "1", "--n-data", "1024", "--n-gen", "1000", "--steps", "50",
            "--sweep-steps", "25", "50", "--n-boot", "20", "--checkpoint", str(ck), "--json", str(js)]
    rc = main(args)
    assert rc in (0, 1)  # a one-epoch network may fail the checks; the file layout is what is tested here
    doc = json.loads(js.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert list(doc)[:5] == ["exact", "data", "exact_score", "trained", "process"] and doc["process"] == "ve"
    for row in ("data", "exact_score", "trained"):
        assert set(doc[row]) == {f"kappa_{n}{e}" for n in (2, 4, 6, 8) for e in ("", "_err")}
    assert doc["exact"]["kappa_8"] == -272.0 * 1.0**8
    assert ck.exists()
    capsys.readouterr()
    assert main(args) == rc  # second run loads the checkpoint: same weights, same seeds, same verdict
    assert "loaded" in capsys.readouterr().err


def test_cli_with_an_existing_checkpoint_records_its_training_and_refuses_contradicting_flags(tmp_path, capsys,
                                                                                                monkeypatch):
    """``--epochs 7 --checkpoint F`` with F trained for 1 epoch: an error naming both (nothing is retrained);
    without training flags the JSON records F's epochs / data, not the defaults, and the text says it was loaded."""
    from critdiff_ref.report import learned

    ck = tmp_path / "ve.pt"
    trained = replace(cumulants.QUICK, epochs=1, n_data=1024)
    model, info = cumulants.train_model(replace(trained, epochs=1, n_data=64))  # the weights do not matter here
    cumulants_checkpoint.save_checkpoint(ck, model, trained, info)
    seen = []
    monkeypatch.setattr(learned, "learned_cumulants", lambda config, *a, **k: seen.append(config) or pytest.fail("ran"))
    assert main(["cumulants", "--epochs", "7", "--checkpoint", str(ck)]) == 2
    err = capsys.readouterr().err
    assert "--epochs 7 (trained with 1)" in err and str(ck) in err and not seen
    config, given = learned.cumulants_config(learned.add_cumulants_parser(_subparsers()).parse_args(
        ["--checkpoint", str(ck), "--n-gen", "1000"]))
    assert (config.epochs, config.n_data, config.n_gen) == (1, 1024, 1000) and given == {"n_gen": 1000}


def _subparsers():
    import argparse

    return argparse.ArgumentParser().add_subparsers()


# -- trained networks (slow) --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("process", ["vp", "ve"])
def test_quick_trained_network_passes_and_planted_bugs_fail(process):
    """QUICK settings, as in the quick report (trained-score sweep on n_gen / 4): the trained MLP passes
    (4 SE + measured EM bias; seeds fixed, 6e-5 two-sided false-failure rate per order for Gaussian
    errors); the time-blind network fails, and so does the trained network sampled with the VP drift
    sign flipped."""
    config = replace(cumulants.QUICK, process=process)
    n_sweep = config.n_gen // 4
    model, _ = cumulants.train_model(config)
    good = cumulants.learned_cumulants(config, model, n_sweep=n_sweep)
    assert cumulants.passes(good), cumulants.checks(good)
    blind, _ = cumulants.train_model(config, time_blind=True)
    bad = cumulants.learned_cumulants(config, blind, n_sweep=n_sweep)
    assert not cumulants.passes(bad), cumulants.checks(bad)
    if process == "vp":
        wrong = cumulants.learned_cumulants(config, model, n_sweep=n_sweep,
                                            process=cumulants.WrongDriftSign(cumulants.make_process(config)))
        assert not cumulants.passes(wrong), cumulants.checks(wrong)
