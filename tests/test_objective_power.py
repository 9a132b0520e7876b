"""Power of the objective validator (THEORY 9): every planted bug (one line from a correct parent built
from diffusers' training pieces) fails, every correct objective (eps, v, x0, score, min-SNR, flow
matching, EDM) passes - on a 50-timestep schedule, L = 8, 327 samples per level."""

from __future__ import annotations

import json

import pytest

from critdiff_ref import cli
from critdiff_ref.objective.cases.mutants import correct_cases, planted_bugs, power_matrix
from critdiff_ref.targets.gaussian_field import GaussianField
from critdiff_ref.objective import validate_objective

N_TRAIN = 50
FAST = dict(target=GaussianField(8), n_batches=8, batch_size=2048)
CORRECT = {c.name: c for c in correct_cases(N_TRAIN)}
BUGS = {m.case.name: m for m in planted_bugs(N_TRAIN)}


def _validate(case):
    return validate_objective(case.objective, case.spec, name=case.name, documented_weighting=case.documented_weighting,
                              documented_density=case.documented_density, **FAST)


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_objectives_pass(name):
    report = _validate(CORRECT[name])
    assert report.passed, report.table()


@pytest.mark.parametrize("name", sorted(BUGS))
def test_planted_bugs_fail_and_say_where(name):
    report = _validate(BUGS[name].case)
    assert not report.passed, f"{name} ({BUGS[name].bug}) passed:\n{report.table()}"
    assert report.failures


def test_the_catalogue_covers_each_bug_class_once():
    parents = {m.parent for m in BUGS.values()}
    assert parents <= set(CORRECT) | {"ddpm-eps-min-snr-5"}
    assert len(BUGS) == 8 and all(m.bug for m in BUGS.values())


@pytest.mark.slow
def test_power_matrix_and_cli_json(tmp_path):
    rows = power_matrix(N_TRAIN, **FAST)
    assert all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]
    out = tmp_path / "m.json"
    code = cli.main(["objective", "--mutants", "--n-train", str(N_TRAIN), "--L", "8", "--batches", "8",
                     "--batch-size", "2048", "--json", str(out)])
    assert code == 0
    assert len(json.loads(out.read_text())["power_matrix"]) == len(rows)
