"""Unit tests for critdiff_ref.validate.mutants: the correct references equal the library samplers, and every
mutant is a real deviation from its parent (it changes the output) in the convention it claims."""

from __future__ import annotations

import inspect

import pytest
import torch

from critdiff_ref import VE, VP, GaussianField, exact_score
from critdiff_ref.validate.mutants import power_matrix
from critdiff_ref.validate.mutants.schedulers import DDIMLikeScheduler
from critdiff_ref.validate.mutants import (
    CORRECT,
    MUTANTS,
    PARENTS,
    Entry,
    ref_edm_heun,
    ref_em,
    ref_pf_euler,
    ref_pf_heun,
    ref_pf_rk4,
)
from critdiff_ref.samplers import probability_flow, reverse_sde
from critdiff_ref.testing import assert_close
from critdiff_ref.validate import ADAPTERS, make_runner, validate
from critdiff_ref.validate import edm_heun, exact_denoiser, karras_sigmas

FIELD = GaussianField(6, 1, 0.0)


def _start(process, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return FIELD.sample(3, gen, dtype=torch.float64) + float(process.Xi(process.T)) ** 0.5 * FIELD.noise(
        torch.zeros(3, *FIELD.shape, dtype=torch.float64), gen
    )


@pytest.mark.parametrize("process", [VE(), VP()], ids=["VE", "VP"])
@pytest.mark.parametrize("method, ref", [("euler", ref_pf_euler), ("heun", ref_pf_heun), ("rk4", ref_pf_rk4)])
def test_reference_ode_samplers_equal_probability_flow(process, method, ref):
    """The references in mutants.py are the library's probability_flow on the uniform grid."""
    score, x_T = exact_score(FIELD, process), _start(process)
    # same arithmetic up to association order (RK4 time by subtraction vs the grid): 64 eps per step
    # relative to the output scale
    steps = 12
    out = ref(score, process, x_T, steps)
    expected = probability_flow(score, process, x_T, steps, method=method)
    assert_close(out, expected, rtol=64 * steps * 2.2e-16, atol=64 * steps * 2.2e-16 * float(expected.abs().max()))


def test_reference_em_equals_reverse_sde_with_the_same_generator():
    process = VE()
    score, x_T = exact_score(FIELD, process), _start(process)
    a = ref_em(score, process, x_T, 9, torch.Generator().manual_seed(5))
    b = reverse_sde(score, process, x_T, 9, torch.Generator().manual_seed(5))
    assert_close(a, b, rtol=64 * 9 * 2.2e-16, atol=64 * 9 * 2.2e-16 * float(b.abs().max()))


def test_reference_edm_heun_equals_the_validate_edm_heun():
    model = exact_denoiser(FIELD, 80.0)
    sigmas = karras_sigmas(10, 0.002, 80.0)
    x = 80.0 * torch.randn((2, *FIELD.shape), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(ref_edm_heun(model, x, sigmas), edm_heun(model, x, sigmas))


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_every_mutant_changes_its_parents_output(name):
    """Same start noise and generator through the same adapter: the mutant's output differs from its
    parent's (the bug has an effect)."""
    mutant, parent = MUTANTS[name], CORRECT[PARENTS[name]]
    assert mutant.adapter == parent.adapter
    assert mutant.options == parent.options  # validated under the same settings as its parent
    z = FIELD.noise(torch.zeros(3, *FIELD.shape, dtype=torch.float64), torch.Generator().manual_seed(2))
    out = []
    for entry in (mutant, parent):
        runner = make_runner(entry.sampler, entry.adapter, **entry.options)
        # 12 steps: h = T/12 is not a binary fraction (with h = T/16 float32 time accumulation is exact)
        out.append(runner(FIELD, 12, z, torch.Generator().manual_seed(3)))
    a, b = out
    # a relative change far above rounding (12 steps, 64 eps each): the deviation is real
    assert float((a - b).abs().max()) > 1e-10 * float(b.abs().max()), name


def test_registries_are_well_formed():
    validate_params = set(inspect.signature(validate).parameters)
    for name, entry in {**MUTANTS, **CORRECT}.items():
        assert isinstance(entry, Entry) and callable(entry.sampler), name
        assert entry.adapter in ADAPTERS, name
        assert entry.description, name
        assert set(entry.options) <= validate_params, (name, entry.options)
        assert entry.options.get("order", 0) > 0, f"{name}: every entry states its documented order"
    assert set(MUTANTS).isdisjoint(CORRECT)
    assert set(PARENTS) == set(MUTANTS) and set(PARENTS.values()) <= set(CORRECT)
    # every bug class of issue 10 is planted
    bugs = " ".join(e.description for e in MUTANTS.values()).lower()
    for phrase in ("previous timestep", "corrector", "sign", "drift", "g^2", "sqrt(h)", "abar", "float32", "t_min"):
        assert phrase in bugs, phrase


def test_ddim_like_scheduler_rejects_bad_config():
    with pytest.raises(ValueError, match="num_train_timesteps"):
        DDIMLikeScheduler(num_train_timesteps=1)
    with pytest.raises(ValueError, match="beta_start"):
        DDIMLikeScheduler(beta_start=0.1, beta_end=0.01)
    with pytest.raises(ValueError, match="num_inference_steps"):
        DDIMLikeScheduler().set_timesteps(0)


def test_references_reject_bad_steps_and_t_min():
    process, score = VE(), exact_score(FIELD, VE())
    x_T = _start(process)
    with pytest.raises(ValueError, match="steps"):
        ref_pf_heun(score, process, x_T, 0)
    with pytest.raises(ValueError, match="t_min"):
        ref_pf_euler(score, process, x_T, 4, t_min=2.0)


def test_power_matrix_rows_name_the_catching_check():
    """power_matrix returns (name, caught, check, margin); a caught mutant's check failed with margin > 1."""
    rows = power_matrix(["heun_dropped_second_stage", "ref_pf_heun"], fields=(GaussianField(6, 1, 0.0),),
                        targets=("gaussian",))
    by_name = {r[0]: r for r in rows}
    name, caught, check, margin = by_name["heun_dropped_second_stage"]
    assert caught and check.endswith("/order") and margin > 1.0, by_name
    name, caught, check, margin = by_name["ref_pf_heun"]
    assert not caught and margin <= 1.0, by_name
    with pytest.raises(KeyError):
        power_matrix(["no such sampler"])


def test_run_mutants_prints_the_matrix_and_sets_the_exit_code(capsys, tmp_path):
    import argparse
    import json

    from critdiff_ref.validate.mutants import add_mutants_parser, run_mutants

    parser = argparse.ArgumentParser()
    add_mutants_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "rows.json"
    args = parser.parse_args(["mutants", "--quick", "--names", "heun_dropped_second_stage", "ref_pf_heun", "--json", str(out)])
    assert run_mutants(args) == 0  # the mutant is caught and the correct sampler passes
    text = capsys.readouterr().out
    assert "| heun_dropped_second_stage | mutant | caught |" in text
    assert "| ref_pf_heun | correct | passed |" in text
    assert [r[0] for r in json.loads(out.read_text())] == ["heun_dropped_second_stage", "ref_pf_heun"]
    with pytest.raises(ValueError, match="names"):
        run_mutants(parser.parse_args(["mutants", "--names", "nope"]))


def test_run_mutants_objectives_adds_the_training_objective_matrix(capsys, tmp_path, monkeypatch):
    """``--objectives`` appends the objective power matrix; one objective verdict that is wrong makes the exit code 1."""
    import argparse
    import json

    from critdiff_ref.validate.mutants import add_mutants_parser, power, run_mutants

    rows = [{"name": "ddpm-eps", "parent": "ddpm-eps", "bug": "", "must_pass": True, "passed": True, "ok": True,
             "failures": []},
            {"name": "ddpm-eps:t-times-1000", "parent": "ddpm-eps", "bug": "model told t*1000", "must_pass": False,
             "passed": True, "ok": False, "failures": []}]
    monkeypatch.setattr(power, "objective_matrix", lambda: rows)
    parser = argparse.ArgumentParser()
    add_mutants_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "rows.json"
    args = parser.parse_args(["mutants", "--quick", "--names", "ref_pf_heun", "--objectives", "--json", str(out)])
    assert run_mutants(args) == 1  # the planted-bug objective passed: a missed mutant
    text = capsys.readouterr().out
    assert "training objectives" in text and "BAD ddpm-eps:t-times-1000" in text
    saved = json.loads(out.read_text())
    assert [r[0] for r in saved["samplers"]] == ["ref_pf_heun"] and saved["objectives"] == rows
    monkeypatch.setattr(power, "objective_matrix", lambda: rows[:1])
    assert run_mutants(parser.parse_args(["mutants", "--quick", "--names", "ref_pf_heun", "--objectives"])) == 0
