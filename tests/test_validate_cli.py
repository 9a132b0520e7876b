"""``critdiff validate`` / ``coverage`` / ``mutants`` as a user meets them: a broken sampler module, a sampler that
tries to exit, bad arguments and unwritable outputs are one line (exit 2) or a failed check, never a traceback;
JSON is strict; ``--libraries`` wires in the solver-library samplers (THEORY 2)."""

from __future__ import annotations

import json
import math

import pytest

from critdiff_ref import GaussianField
from critdiff_ref._user_code import import_object
from critdiff_ref.cli import main
from critdiff_ref.validate import CheckResult, Report, validate
from critdiff_ref.validate.libraries import library_adaptive_reports, library_available, library_notes
from critdiff_ref.validate.mutants import (
    LIBRARY_CORRECT,
    LIBRARY_MUTANTS,
    LIBRARY_NEEDS,
    LIBRARY_PARENTS,
    all_correct,
    all_mutants,
    power_matrix,
)
from critdiff_ref.validate.registry import LIBRARIES
from critdiff_ref.validate.runners import load_object

QUICK = dict(fields=[GaussianField(6, 1, 0.0)], targets=("gaussian",), steps=(4, 8), n_samples=100)


def _one_error_line(capsys, prog: str, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"critdiff {prog}: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """A folder holding the user's modules, made the current folder (as when running `critdiff validate mod:f`)."""
    (tmp_path / "raises_on_import.py").write_text("raise KeyError('no config')\n")
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "broken_syntax.py").write_text("x = 1\ndef f(:\n    pass\n")
    (tmp_path / "exiting_sampler.py").write_text(
        "import sys\n\ndef sampler(score, process, x_T, steps, **kw):\n    sys.exit(0)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("module, needles", [
    ("raises_on_import", ("sampler=", "raised KeyError", "no config")),
    ("exits_on_import", ("sampler=", "raised SystemExit",)),
    ("broken_syntax", ("sampler=", "broken_syntax.py, line 2", "syntax error")),
    ("no_such_module", ("sampler=", "no module named 'no_such_module'")),
])
def test_a_sampler_module_that_cannot_import_is_one_line(user_folder, capsys, module, needles):
    assert main(["validate", f"{module}:f", "--no-diffusers"]) == 2
    _one_error_line(capsys, "validate", *needles)


def test_a_scheduler_is_named_as_a_scheduler(user_folder, capsys):
    assert main(["validate", "raises_on_import:Scheduler", "--adapter", "diffusers"]) == 2
    _one_error_line(capsys, "validate", "scheduler=")


def test_the_validator_and_sweeps_share_one_importer(user_folder):
    """load_object is import_object: same message, same current-folder rule."""
    with pytest.raises(ValueError) as a:
        load_object("raises_on_import:f")
    with pytest.raises(ValueError) as b:
        import_object("raises_on_import:f", "sampler")
    assert str(a.value) == str(b.value)


def test_a_sampler_calling_sys_exit_fails_the_run_check(user_folder, capsys):
    report = validate("exiting_sampler:sampler", **QUICK)
    run = report.select("run")
    assert not report.passed and len(run) == 1 and run[0].passed is False
    assert "SystemExit(0)" in run[0].detail
    assert main(["validate", "exiting_sampler:sampler", "--targets", "gaussian", "--n-samples", "100",
                 "--steps", "4", "8"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "SystemExit(0)" in out


def test_keyboard_interrupt_in_a_sampler_still_reaches_the_command(user_folder, capsys):
    (user_folder / "interrupted.py").write_text(
        "def sampler(score, process, x_T, steps, **kw):\n    raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        validate("interrupted:sampler", **QUICK)
    assert main(["validate", "interrupted:sampler", "--targets", "gaussian", "--n-samples", "100"]) == 130


@pytest.mark.parametrize("argv, needles", [
    (["coverage", "--names", "Bogus"], ("--names Bogus", "--list")),
    (["coverage", "--steps", "100", "50"], ("--steps 100 50",)),
    (["coverage", "--steps", "0", "50"], ("--steps 0 50",)),
    (["coverage", "--json", "/no/such/folder/rows.json"], ("--json",)),
    (["mutants", "--names", "no_such_mutant"], ("--names no_such_mutant", "--list")),
    (["mutants", "--json", "/no/such/folder/rows.json"], ("--json",)),
    (["validate", "--steps", "100", "50"], ("--steps 100 50",)),
    (["validate", "--n-samples", "5"], ("--n-samples 5",)),
    (["validate", "--rtol", "2"], ("--rtol 2",)),
    (["validate", "--order", "-1", "critdiff_ref.samplers:probability_flow"], ("--order -1",)),
    (["validate", "--json", "/no/such/folder/r.json"], ("--json",)),
    (["validate", "--libraries", "critdiff_ref.samplers:probability_flow"], ("--libraries",)),
])
def test_bad_arguments_are_one_line_naming_the_flag_before_any_work(argv, needles, capsys, tmp_path):
    if argv[0] == "coverage" and "--names" in argv:
        pytest.importorskip("diffusers")
    assert main(argv) == 2
    _one_error_line(capsys, argv[0], *needles)


def test_plots_must_be_a_folder(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    assert main(["validate", "--plots", str(tmp_path / "a_file")]) == 2
    _one_error_line(capsys, "validate", "--plots")


def _strict_load(text: str):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def test_report_json_is_strict_with_nulls_listed():
    report = Report("s", "score", results=[CheckResult("order", math.nan, 2.0, math.inf, "why", False)])
    doc = _strict_load(report.to_json())
    row = doc["results"][0]
    assert row["measured"] is None and row["tolerance"] is None and row["reference"] == 2.0
    assert {"results[0].measured", "results[0].tolerance"} <= set(doc["nulls"])


def test_validate_json_of_a_failed_run_is_strict(user_folder, capsys):
    out = user_folder / "reports.json"
    assert main(["validate", "exiting_sampler:sampler", "--targets", "gaussian", "--n-samples", "100",
                 "--json", str(out)]) == 1
    doc = _strict_load(out.read_text())
    assert doc["data"][0]["results"][0]["measured"] is None and doc["nulls"]


def test_coverage_list_names_the_libraries_of_the_registry(capsys):
    pytest.importorskip("diffusers")
    assert main(["coverage", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(lib in out for lib in LIBRARIES)


# -- the solver libraries on the command line ----------------------------------------------------------------
def test_missing_libraries_are_one_line_each():
    notes = library_notes()
    assert len(notes) == sum(not library_available(lib) for lib in LIBRARIES)
    assert all("not installed: pip install 'critdiff-ref[libraries]'" in n for n in notes)


def test_mutants_catalogue_has_the_library_bugs_exactly_when_installed():
    installed = {n for n, libs in LIBRARY_NEEDS.items() if all(library_available(lib) for lib in libs)}
    assert set(LIBRARY_NEEDS) == set(LIBRARY_MUTANTS) | set(LIBRARY_CORRECT)
    assert set(all_mutants()) & set(LIBRARY_MUTANTS) == installed & set(LIBRARY_MUTANTS)
    assert set(all_correct()) & set(LIBRARY_CORRECT) == installed & set(LIBRARY_CORRECT)
    assert set(LIBRARY_PARENTS) == set(LIBRARY_MUTANTS) and set(LIBRARY_PARENTS.values()) == set(LIBRARY_CORRECT)
    for name, entry in LIBRARY_MUTANTS.items():
        assert entry.description and entry.caught_by, name
        parent = LIBRARY_CORRECT[LIBRARY_PARENTS[name]]  # same adapter and options: only the planted line differs
        assert (parent.adapter, parent.options.get("order"), parent.options.get("targets")) == (
            entry.adapter, entry.options.get("order"), entry.options.get("targets")), name


def test_adaptive_reports_group_the_rows_by_library_and_method():
    rows = [CheckResult(f"{lib}[dopri5]/adaptive/{k}", 1.0, 1.0, 1.0, "", True, target=f"{lib}[dopri5]/adaptive",
                        kind=k) for lib in ("torchdiffeq", "flow_matching") for k in ("tolerance", "nfe_vs_tol")]
    reports = library_adaptive_reports(rows)
    assert [r.sampler for r in reports] == ["torchdiffeq[dopri5]/adaptive", "flow_matching[dopri5]/adaptive"]
    assert all(len(r.results) == 2 and r.passed for r in reports)


def test_power_matrix_catches_a_library_bug_under_quick_settings():
    """The entry's own options win over the quick settings: the time swap needs the mixture to be seen."""
    pytest.importorskip("flow_matching")
    pytest.importorskip("torchdiffeq")
    rows = power_matrix(["flow_matching_time_swapped", "flow_matching.ODESolver[condot,midpoint]"],
                        targets=("gaussian",), fields=(GaussianField(8, 1, 0.0),), n_samples=1000)
    (_, caught, check, margin), (_, parent_caught, _, parent_margin) = rows
    assert caught and "/kappa_" in check and margin > 1.0, rows  # the worst two-peak cumulant decides
    assert not parent_caught and parent_margin <= 1.0, rows


def test_adaptive_rows_carry_structured_fields():
    pytest.importorskip("torchdiffeq")
    from critdiff_ref.validate.libraries import adaptive_checks

    rows = adaptive_checks("bosh3", tolerances=(1e-3, 1e-4), sizes=(4, 8))
    assert [(r.target, r.kind) for r in rows] == [("torchdiffeq[bosh3]/adaptive", k)
                                                  for k in ("tolerance", "nfe_vs_tol", "nfe_vs_L")]
    assert all(r.name == f"{r.target}/{r.kind}" for r in rows)


def test_power_matrix_runs_the_adaptive_bug_through_the_adaptive_checks():
    pytest.importorskip("torchdiffeq")
    rows = power_matrix(["odeint_fixed_atol", "torchdiffeq.odeint[dopri5]"])
    (_, caught, check, margin), (_, parent_caught, _, _) = rows
    assert caught and check.endswith("/tolerance"), rows
    assert not parent_caught, rows


def test_validate_libraries_adds_the_library_samplers_and_the_adaptive_reports(monkeypatch, capsys):
    """`critdiff validate --libraries`: the library runners follow ours, each adaptive method is a report, a
    failure is a finding that counts only with --strict, and a library that is not installed is one line (here
    torchsde, made to look absent)."""
    pytest.importorskip("torchdiffeq")
    import critdiff_ref.validate.cli as vcli
    import critdiff_ref.validate.libraries.registry as libreg

    real_available = libreg.library_available
    monkeypatch.setattr(libreg, "library_available", lambda lib: lib != "torchsde" and real_available(lib))
    monkeypatch.setattr(vcli, "reference_samplers", lambda: [])
    runners = [(n, r) for n, r in libreg.library_runners() if n == "torchdiffeq.odeint[rk4]"]
    monkeypatch.setattr(vcli, "library_runners", lambda: runners)
    bad = CheckResult("torchdiffeq[dopri5]/adaptive/tolerance", 50.0, 1.0, 26.0, "bound", False,
                      target="torchdiffeq[dopri5]/adaptive", kind="tolerance")
    monkeypatch.setattr(vcli, "library_adaptive_reports", lambda: libreg.library_adaptive_reports([bad]))
    argv = ["validate", "--libraries", "--no-diffusers", "--targets", "gaussian", "--steps", "10", "20"]
    assert main(argv) == 0  # a documented finding about a third-party sampler
    out = capsys.readouterr().out
    assert "PASS  torchdiffeq.odeint[rk4]" in out
    assert "FAIL  torchdiffeq[dopri5]/adaptive" in out
    assert "torchsde: not installed: pip install 'critdiff-ref[libraries]'" in out
    assert "1/2 samplers passed" in out and "third-party sampler(s) failed (torchdiffeq[dopri5]/adaptive)" in out
    assert main([*argv, "--strict"]) == 1


def test_coverage_libraries_prints_the_table_and_writes_strict_json(monkeypatch, capsys, tmp_path):
    """`critdiff coverage --libraries`: the library table and the adaptive reports; NaN (no weak order of an ODE
    sampler's observed order here) is null in the JSON; a failed check is a finding in the table (exit code 0, as
    for the diffusers table)."""
    import critdiff_ref.validate.coverage as cov
    import critdiff_ref.validate.libraries.registry as libreg

    rows = [{"sampler": "torchdiffeq.odeint[euler]", "documented": 1.0, "errors": [0.1, 0.05, 0.02, 0.01],
             "order": math.nan, "weak_order": None, "failed": []}]
    monkeypatch.setattr(cov, "library_table", lambda: rows)
    ok = CheckResult("torchdiffeq[bosh3]/adaptive/nfe_vs_L", 0.1, 0.0, 0.25, "", True,
                     target="torchdiffeq[bosh3]/adaptive", kind="nfe_vs_L")
    monkeypatch.setattr(cov, "library_adaptive_reports", lambda: libreg.library_adaptive_reports([ok]))
    out = tmp_path / "libraries.json"
    assert main(["coverage", "--libraries", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| torchdiffeq.odeint[euler] |" in text and "torchdiffeq[bosh3]/adaptive" in text
    doc = _strict_load(out.read_text())
    assert doc["libraries"][0]["order"] is None and "libraries[0].order" in doc["nulls"]
    assert doc["adaptive"][0]["results"][0]["kind"] == "nfe_vs_L"
    bad = ok.__class__(**{**ok.__dict__, "passed": False})
    monkeypatch.setattr(cov, "library_adaptive_reports", lambda: libreg.library_adaptive_reports([bad]))
    assert main(["coverage", "--libraries"]) == 0
    assert "FAIL" in capsys.readouterr().out


def test_coverage_without_diffusers_is_one_line_and_list_says_so(monkeypatch, capsys):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else
                        real_find_spec(name, *a))
    assert main(["coverage"]) == 2
    _one_error_line(capsys, "coverage", "pip install 'critdiff-ref[diffusers]'", "--libraries")
    assert main(["coverage", "--list"]) == 0
    out = capsys.readouterr().out
    assert "diffusers is not installed" in out and "solver libraries" in out


@pytest.mark.parametrize("exit_exc, shown", [(SystemExit("bye"), "SystemExit('bye')"), (GeneratorExit(), "GeneratorExit()")])
def test_any_program_ending_exception_from_the_sampler_is_a_failed_run(exit_exc, shown):
    def sampler(score, process, x_T, steps, **kw):
        raise exit_exc

    report = validate(sampler, deterministic=True, **QUICK)  # past the determinism probe: inside the checks
    run = report.select("run")
    assert len(run) == 1 and run[0].passed is False and shown in run[0].detail
