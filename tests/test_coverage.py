"""critdiff_ref.validate.coverage: every diffusers scheduler class is validated or named not applicable
with its reason (issue 16, part 5); the catalogue and the coverage table (docs/coverage.md) follow the installed diffusers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from critdiff_ref import GaussianField
from critdiff_ref.validate.coverage import (
    CLASSES,
    KNOWN_GAPS,
    NOT_APPLICABLE,
    config_variants,
    coverage_rows,
    exported_schedulers,
    format_coverage_table,
)

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.filterwarnings("ignore")
TABLE = Path(__file__).resolve().parents[1] / "docs" / "coverage.md"  # the table the README links to


def test_catalogue_is_what_diffusers_exports():
    """A diffusers release adding or removing a *Scheduler class fails here: update CLASSES (and docs/coverage.md
    table with `critdiff coverage --variants`)."""
    exported = exported_schedulers()
    assert exported == sorted(CLASSES), {"new": sorted(set(exported) - set(CLASSES)),
                                         "gone": sorted(set(CLASSES) - set(exported))}


def test_reasons_are_one_line_and_name_catalogued_classes():
    for table in (NOT_APPLICABLE, KNOWN_GAPS):
        for name, reason in table.items():
            assert name in CLASSES, name
            assert reason and "\n" not in reason and len(reason) < 160, name
    assert set(NOT_APPLICABLE).isdisjoint(KNOWN_GAPS)


def _readme_rows() -> dict[str, str]:
    """Default-config rows of the coverage table (docs/coverage.md): class -> status cell."""
    text = TABLE.read_text()
    start = text.index("## Default configurations")
    rows = {}
    for line in text[start:].splitlines()[1:]:
        if line.startswith("## "):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 3 and cells[1] == "default":
            rows[cells[0]] = cells[2]
    return rows


def test_readme_table_accounts_for_every_class():
    """The coverage table (docs/coverage.md) has one default row per catalogued class: validated (pass / FAIL, with numbers)
    or not applicable / not covered with the catalogue's reason; no class is left out silently."""
    rows = _readme_rows()
    assert sorted(rows) == sorted(CLASSES), sorted(set(CLASSES) ^ set(rows))
    for name, status in rows.items():
        if name in NOT_APPLICABLE:
            assert status == "not applicable", name
        else:
            assert re.match(r"(pass|FAIL)( \(MC\))?$", status) or (status == "not covered" and name in KNOWN_GAPS), (name, status)


def test_coverage_rows_validate_name_or_explain(monkeypatch):
    """One applicable class validated with numbers, one n/a class with its reason, one gap tried and explained (a
    planted gap on a class no runner can run: Helios' multi-stage set_timesteps fails without its stage_index)."""
    from critdiff_ref.validate import registry

    monkeypatch.setitem(registry.DIFFUSERS, "HeliosScheduler", registry.SchedulerEntry("discrete", gap="a planted gap"))
    rows = coverage_rows(["DDIMScheduler", "AmusedScheduler", "HeliosScheduler"], field=GaussianField(8, 1, 0.0),
                         steps=(20, 40))
    by = {r["scheduler"]: r for r in rows}
    assert by["DDIMScheduler"]["status"] == "validated" and set(by["DDIMScheduler"]["errors"]) == {20, 40}
    assert by["DDIMScheduler"]["documented_order"] == 1.0 and by["DDIMScheduler"]["observed_order"] > 0.5
    assert by["AmusedScheduler"] == {"scheduler": "AmusedScheduler", "variant": "", "status": "not applicable",
                                     "reason": NOT_APPLICABLE["AmusedScheduler"]}
    gap = by["HeliosScheduler"]
    assert gap["status"] == "not covered" and gap["reason"] == "a planted gap", gap
    table = format_coverage_table(rows, (20, 40))
    assert "| AmusedScheduler | default | not applicable |" in table and "3 classes:" in table


def test_config_variants_are_the_math_changing_keys():
    labels = [label for label, _ in config_variants(diffusers.EulerDiscreteScheduler)]
    for want in ("timestep_spacing=leading", "timestep_spacing=trailing", "use_karras_sigmas=True",
                 "use_exponential_sigmas=True", "use_beta_sigmas=True", "final_sigmas_type=sigma_min",
                 "prediction_type=v_prediction", "prediction_type=sample"):
        assert want in labels, want
    assert "timestep_spacing=linspace" not in labels  # Euler's default
    assert config_variants(diffusers.EDMEulerScheduler) == [
        ("final_sigmas_type=sigma_min", {"final_sigmas_type": "sigma_min"}),
        ("prediction_type=v_prediction", {"prediction_type": "v_prediction"}),
        ("prediction_type=sample", {"prediction_type": "sample"}),
    ]


@pytest.mark.slow
def test_every_applicable_class_runs_or_is_a_known_gap():
    """The whole coverage (default configs): no applicable class fails to run without a recorded reason."""
    for row in coverage_rows():
        if row["status"] == "not covered":
            assert row["scheduler"] in KNOWN_GAPS, row
        elif row["status"] == "validated":
            assert row["errors"], row


def test_cosine_dpmsolver_error_stops_at_its_final_denoise():
    """Finding: CosineDPMSolverMultistepScheduler (Stable Audio; SDE-DPM-Solver++, sigma_min = 0.3) does not converge:
    its exact own error stops at the error of the final step x <- D(x, sigma_min) from sigma_min = 0.3 to 0 alone,
    ||c0^2 / (c0 + s^2) - c0|| / ||c0|| (the law at sigma_min being exact): 0.028 / 0.030 at 50 / 100 steps
    against 0.031 on the critical d = 1, L = 16 field (docs/coverage.md)."""
    f = GaussianField(8, 1, 0.0)
    sched = diffusers.CosineDPMSolverMultistepScheduler()
    c0, s2 = f.c0()[f.mode_mask()], float(sched.config.sigma_min) ** 2
    jump = float(((c0 * c0 / (c0 + s2) - c0) ** 2).sum().sqrt() / (c0 * c0).sum().sqrt())
    from critdiff_ref.validate import validate

    rep = validate(diffusers.CosineDPMSolverMultistepScheduler, "diffusers", fields=[f], steps=(25, 50),
                   targets=("gaussian",))
    errors = [rep[f"gauss[d=1,L=8,r=0]/covariance@{n}"].measured for n in (25, 50)]
    # a converging solver would at least halve its error per doubling; here both sit within 15% of the jump
    assert all(abs(e - jump) < 0.15 * jump for e in errors), (errors, jump)
    assert rep["gauss[d=1,L=8,r=0]/order"].passed is False


def _validate_config(cls_name, overrides, steps, prediction_type=None, field=None):
    from critdiff_ref.validate import validate

    cls = getattr(diffusers, cls_name)
    base = cls()
    off = {k: False for k in ("clip_sample", "thresholding") if base.config.get(k)}
    sched = cls.from_config({k: v for k, v in base.config.items() if k != "_use_default_values"}, **off, **overrides)
    return validate(sched, "diffusers", prediction_type=prediction_type, fields=[field or GaussianField(8, 1, 0.0)],
                    steps=steps, targets=("gaussian",))


def test_pndm_v_prediction_is_first_order():
    """Finding: PNDM (PLMS, documented order 4) with prediction_type="v_prediction" is a first-order sampler, although
    the exact v-model is the exact eps-model re-parametrised (DDIM, Euler, DPM-Solver++ give the same errors for
    both): own error 0.070, 0.036, 0.018 at 50, 100, 200 steps against 6.0e-4, 1.4e-4, 4.0e-5 with epsilon."""
    eps = _validate_config("PNDMScheduler", {}, (50, 100))
    v = _validate_config("PNDMScheduler", {}, (50, 100), prediction_type="v_prediction")
    e_eps, e_v = (r["gauss[d=1,L=8,r=0]/covariance@100"].measured for r in (eps, v))
    # observed ratio 450; a re-parametrisation of one model cannot change the error by more than rounding
    assert e_v > 50 * e_eps, (e_v, e_eps)
    assert v["gauss[d=1,L=8,r=0]/order"].measured < 1.5 and v["gauss[d=1,L=8,r=0]/order"].passed is False


@pytest.mark.parametrize("name", ["HeunDiscreteScheduler", "KDPM2DiscreteScheduler"])
def test_trailing_spacing_final_euler_step_makes_second_order_schedulers_first_order(name):
    """Finding: with timestep_spacing="trailing" the last timestep is 1000/N - 1, so the final first-order step
    from sigma_last ~ N^-1/2 to 0 costs O(1/N): Heun's and KDPM2's own error is that step's exact error alone
    (0.0175 vs 0.0191, 0.0087 vs 0.0092, 0.0044 vs 0.0045 at 50, 100, 200 steps) and their order is 1."""
    rep = _validate_config(name, {"timestep_spacing": "trailing"}, (100, 200))
    last = rep["gauss[d=1,L=8,r=0]/covariance@200"]
    # the O(h^2) remainder of the solver at 200 steps is ~1e-5, under 10% of the jump (4.5e-3)
    assert abs(last.measured - last.data["endpoint_jump_error"]) < 0.1 * last.data["endpoint_jump_error"]
    assert rep["gauss[d=1,L=8,r=0]/order"].passed is False


# (scheduler, config, the check that fails): the variant findings of the README coverage section, as measured
# by `critdiff coverage --variants` on the critical d = 1, L = 16 field at 50 and 100 steps
VARIANT_FINDINGS = [
    ("DPMSolverMultistepScheduler", {"use_exponential_sigmas": True}, "order"),  # error stalls: 0.0097, 0.0064
    ("DEISMultistepScheduler", {"use_exponential_sigmas": True}, "order"),  # 0.0029, 0.0032
    ("UniPCMultistepScheduler", {"use_exponential_sigmas": True}, "order"),  # 0.0061, 0.0053
    ("DPMSolverMultistepScheduler", {"use_beta_sigmas": True}, "covariance@100"),  # 0.75, 0.21
    ("UniPCMultistepScheduler", {"use_beta_sigmas": True}, "covariance@100"),  # 0.77, 0.18
    ("EulerDiscreteScheduler", {"use_beta_sigmas": True}, "covariance@100"),  # 0.30, 0.16
    ("SASolverScheduler", {"use_beta_sigmas": True}, "covariance@100"),  # 170, 5.9
    ("UniPCMultistepScheduler", {"timestep_spacing": "leading"}, "order"),  # 1.0 (documented 3)
    ("PNDMScheduler", {"timestep_spacing": "linspace"}, "order"),  # 1.0 (documented 4)
    ("DPMSolverSDEScheduler", {"timestep_spacing": "trailing"}, "weak_order"),  # weak order 1.0
    ("SASolverScheduler", {"use_exponential_sigmas": True}, "weak_order"),  # weak order 1.4
]


@pytest.mark.slow
@pytest.mark.parametrize("name, overrides, check", VARIANT_FINDINGS)
def test_config_variant_findings(name, overrides, check):
    rep = _validate_config(name, overrides, (50, 100), field=GaussianField(16, 1, 0.0))
    assert rep[f"gauss[d=1,L=16,r=0]/{check}"].passed is False, rep.diff()


def test_cosine_dpmsolver_sigma_min_final_crashes_in_its_brownian_tree():
    """Finding: CosineDPMSolverMultistepScheduler(final_sigmas_type="sigma_min") ends on sigma_min twice (to float32
    rounding: 0.29999998, 0.30000001) and its sampling loop crashes with RecursionError inside torchsde's
    BrownianInterval (the default final_sigmas_type="zero" runs: README coverage table)."""
    import torch

    pytest.importorskip("torchsde")
    sched = diffusers.CosineDPMSolverMultistepScheduler(final_sigmas_type="sigma_min")
    sched.set_timesteps(10)
    # the last two sigmas are sigma_min to float32 rounding (0.29999998 and 0.30000001)
    assert abs(float(sched.sigmas[-1]) - float(sched.sigmas[-2])) < 1e-6 * sched.config.sigma_min
    x = torch.zeros((1, 4))
    with pytest.raises(RecursionError):
        for t in sched.timesteps:
            x = sched.step(torch.zeros_like(x), t, x).prev_sample


def test_coverage_json_is_strict_atomic_and_its_path_checked_first(tmp_path, capsys):
    """`critdiff coverage --json F`: a row's NaN (DDIM is deterministic: no weak order) is null with its place
    listed, the file is valid strict JSON written without a leftover temporary, and a --json into a missing
    folder is a usage error (exit 2) before any class is run."""
    import json

    from critdiff_ref.cli import main

    out = tmp_path / "rows.json"
    assert main(["coverage", "--names", "DDIMScheduler", "AmusedScheduler", "--steps", "10", "20",
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    ddim, amused = doc["data"]
    assert ddim["scheduler"] == "DDIMScheduler" and ddim["weak_order"] is None and doc["nulls"]
    assert amused == {"scheduler": "AmusedScheduler", "variant": "", "status": "not applicable",
                      "reason": NOT_APPLICABLE["AmusedScheduler"]}
    assert [p.name for p in tmp_path.iterdir()] == ["rows.json"]  # no temporary left behind
    capsys.readouterr()
    assert main(["coverage", "--names", "DDIMScheduler", "--json", str(tmp_path / "missing" / "rows.json")]) == 2
    captured = capsys.readouterr()
    assert "--json" in captured.err and "DDIMScheduler" not in captured.out  # refused before running
