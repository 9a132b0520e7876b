"""Issue 18: how failures reach a new user, what is left on disk, and CPU threads on a busy machine.

Every `critdiff` usage error is one line on stderr naming the flag typed, exit code 2, checked before
the run starts; every output file is written atomically with the umask's mode and strict JSON.
"""

from __future__ import annotations

import json
import math
import os
import stat
import sys

import pytest
import torch

from critdiff_ref import _io, _threads
from critdiff_ref.cli import _build_parser, main

pytest_plugins = ["pytester"]

GOOD = '''
from critdiff_ref.samplers import probability_flow


def good(score, process, x_T, steps, t_min=0.0):
    return probability_flow(score, process, x_T, steps, method="heun", t_min=t_min)


def threads_seen(score, process, x_T, steps, t_min=0.0):
    import torch
    with open("threads.txt", "a") as fh:
        fh.write(f"{torch.get_num_threads()}\\n")
    return probability_flow(score, process, x_T, steps, method="heun", t_min=t_min)
'''
QUICK = ["--targets", "gaussian", "--steps", "20", "40"]


def _strict_load(text: str):
    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=no_constants)


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """A fresh folder holding a sampler package (a unique name per test: no stale sys.modules entry)."""
    name = f"mysamp_{os.getpid()}_{len(list(tmp_path.parent.iterdir()))}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text(GOOD)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # undo any insertion of the current folder
    yield name
    sys.modules.pop(name, None)


# -- 1. the sampler spec ---------------------------------------------------------------------------------
def test_validate_imports_a_sampler_from_the_current_folder(user_folder, capsys):
    assert main(["validate", f"{user_folder}:good", *QUICK]) == 0
    assert "PASS" in capsys.readouterr().out


@pytest.mark.parametrize("spec, named", [("{m}:nosuchattr", "nosuchattr"), ("nosuchmodule_xyz:good", "nosuchmodule_xyz")])
def test_a_bad_sampler_spec_is_one_line_naming_it(user_folder, capsys, spec, named):
    assert main(["validate", spec.format(m=user_folder), *QUICK]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and "Traceback" not in err


def test_plugin_imports_from_the_invocation_folder_and_rejects_bad_specs_in_one_line(pytester):
    pytester.mkpydir("mysamp_plugin")
    (pytester.path / "mysamp_plugin" / "__init__.py").write_text(GOOD)
    args = ("--critdiff-targets", "gaussian", "--critdiff-steps", "20,40", "-p", "no:cacheprovider")
    result = pytester.runpytest_inprocess(*args, "--critdiff-sampler", "mysamp_plugin:good")
    result.assert_outcomes(passed=1)
    bad = pytester.runpytest_inprocess(*args, "--critdiff-sampler", "mysamp_plugin:nosuchattr")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    text = "\n".join(bad.errlines + bad.outlines)
    assert "nosuchattr" in text and len(text.strip().splitlines()) < 10


# -- 2. the summary line says why -----------------------------------------------------------------------
def test_summary_line_shows_the_first_failure_reason():
    from critdiff_ref.validate import CheckResult, Report
    from critdiff_ref.validate.cli import _summary_line

    rep = Report("mysamp:bad", "score", [CheckResult("run", math.nan, math.nan, math.nan, "sampler must run", False,
                                                     "SamplerOutputError: output has 32 NaN/inf entries of 64")])
    line = _summary_line(rep)
    assert line.startswith("FAIL") and "output has 32 NaN/inf entries" in line


# -- 3. output paths are checked before the run ------------------------------------------------------------
@pytest.mark.parametrize("command", [["validate", "mysamp:good"], ["phi4"], ["facts"], ["thermo"], ["mutants", "--quick"]])
@pytest.mark.parametrize("where", ["missing", "folder"])
def test_json_output_path_is_checked_before_running(tmp_path, monkeypatch, capsys, command, where):
    import critdiff_ref.cli as cli

    def never(*a, **k):
        raise AssertionError("the run started before the output path was checked")

    real = cli._build_parser

    def build(only=None):
        parser = real(only)
        parser._subparsers._group_actions[0].choices[command[0]].set_defaults(run=never)
        return parser

    monkeypatch.setattr(cli, "_build_parser", build)
    target = tmp_path / "no" / "such" / "out.json" if where == "missing" else tmp_path
    assert main([*command, "--json", str(target)]) == 2
    err = capsys.readouterr().err
    assert "--json" in err and "Traceback" not in err


def test_phi4_out_path_is_checked_before_running(tmp_path, monkeypatch, capsys):
    import critdiff_ref.phi4.commands.phi4 as phi4_cli

    monkeypatch.setattr(phi4_cli, "run_experiment", lambda *a, **k: pytest.fail("ran"))
    assert main(["phi4", "--out", str(tmp_path / "missing" / "c.npz")]) == 2
    assert main(["phi4", "--out", str(tmp_path / "c.txt")]) == 2
    assert "--out" in capsys.readouterr().err


# -- 4. devices --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["phi4"], ["report", "--only", "training"]])
def test_a_bad_device_is_a_usage_error_that_creates_nothing(tmp_path, capsys, command):
    out = tmp_path / "rep"
    extra = ["--out", str(out)] if command[0] == "report" else []
    with pytest.raises(SystemExit) as exc:
        main([*command, "--device", "nonsense", *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--device" in err and "nonsense" in err and "Traceback" not in err
    assert not out.exists()


# -- 5. strict JSON ----------------------------------------------------------------------------------------
def test_json_is_strict_with_nan_as_null_and_a_reason(tmp_path, monkeypatch):
    import critdiff_ref.phi4.commands.phi4 as phi4_cli
    import critdiff_ref.phi4.experiment as exp

    fake = {k: 0.5 for k in exp.JSON_KEYS} | {"binder": math.nan, "binder_err": math.inf, "n_configs": 64}
    monkeypatch.setattr(phi4_cli, "run_experiment", lambda *a, **k: dict(fake))
    path = tmp_path / "r.json"
    assert main(["phi4", "--quiet", "--json", str(path)]) == 0
    doc = _strict_load(path.read_text())
    assert doc["binder"] is None and doc["binder_err"] is None
    assert "binder" in doc["nulls"] and doc["nulls"]["binder"]


def test_report_to_json_is_strict():
    from critdiff_ref.validate import CheckResult, Report

    rep = Report("s", "score", [CheckResult("order", 1.0, 1.0, 0.5, "x", None)], series={"g": {"noise": [math.nan]}})
    doc = _strict_load(rep.to_json())
    assert doc["series"]["g"]["noise"] == [None] and doc["nulls"]


# -- 6. --table --json ------------------------------------------------------------------------------------
def test_table_with_json_writes_the_table(tmp_path, monkeypatch):
    import critdiff_ref.validate.cli as vcli

    rows = [{"sampler": "x", "deterministic": True, "errors": {10: 0.1, 20: 0.05}, "noise": {}, "observed_order": 1.0,
             "documented_order": 1.0, "floor_error": math.nan, "endpoint_jump_error": None, "passed": True}]
    monkeypatch.setattr(vcli, "convergence_table", lambda *a, **k: rows)
    path = tmp_path / "t.json"
    assert main(["validate", "--no-diffusers", "--table", "--steps", "10", "20", "--json", str(path)]) == 0
    doc = _strict_load(path.read_text())
    assert doc["rows"][0]["sampler"] == "x" and doc["rows"][0]["errors"]["20"] == 0.05


# -- 7. the score's output is checked ----------------------------------------------------------------------
@pytest.mark.parametrize("sampler", ["probability_flow", "reverse_sde"])
@pytest.mark.parametrize("bad, error", [
    (lambda s: s[:1], ValueError), (lambda s: s.sum(), ValueError), (lambda s: None, TypeError),
    (lambda s: s.reshape(-1), ValueError), (lambda s: s.float(), TypeError)])
def test_a_score_with_the_wrong_output_is_named(sampler, bad, error):
    from critdiff_ref import samplers
    from critdiff_ref.processes import VE

    def my_score(x, t):
        return bad(-x)

    x_T = torch.randn(4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(error, match="my_score"):
        getattr(samplers, sampler)(my_score, VE(), x_T, 5)


# -- 8. atomic outputs, fault injection --------------------------------------------------------------------
def _no_temp_files(folder) -> list[str]:
    return [str(p) for p in folder.rglob("*") if ".tmp" in p.name or "staging" in p.name]


def _fake_sections(monkeypatch, interrupt_at: str | None):
    import critdiff_ref.report.document as doc
    from critdiff_ref.report.sections import Check, Section

    def make(key):
        def run(ctx):
            if key == interrupt_at:
                raise KeyboardInterrupt
            sec = Section(key, key.title(), numbers={"x": 1.0}, checks=[Check(f"{key} ok", 1.0, 1.0, 0.1, "t")])
            ctx.figure(sec, "fig", lambda plt: plt.figure(figsize=(1, 1)))
            return sec

        return run

    monkeypatch.setattr(doc, "SECTIONS", {k: make(k) for k in ("training", "generation", "local")})


def test_interrupted_report_leaves_previous_outputs_intact(tmp_path, monkeypatch):
    out = tmp_path / "rep"
    _fake_sections(monkeypatch, None)
    assert main(["report", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"report.md", "report.json", "training_fig.png", "generation_fig.png"} <= set(before)
    _fake_sections(monkeypatch, "generation")
    # Ctrl-C: exit 130 with one line, the previous outputs untouched and the partial run kept aside
    assert main(["report", "--out", str(out)]) == 130
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before
    assert not _no_temp_files(out)
    partial = [p for p in out.iterdir() if p.is_dir()]
    assert len(partial) == 1 and "partial" in (partial[0] / "report.md").read_text().lower()
    assert "generation" in (partial[0] / "report.md").read_text()


def test_only_run_says_it_is_partial_and_report_out_file_is_usage_error(tmp_path, monkeypatch, capsys):
    out = tmp_path / "rep"
    _fake_sections(monkeypatch, None)
    assert main(["report", "--out", str(out)]) == 0
    assert main(["report", "--out", str(out), "--only", "training"]) == 0
    md = (out / "report.md").read_text()
    assert "partial" in md.lower() and "generation_fig.png" in md
    assert _strict_load((out / "report.json").read_text())["partial"]
    afile = tmp_path / "afile"
    afile.write_text("keep")
    assert main(["report", "--out", str(afile)]) == 2
    assert "--out" in capsys.readouterr().err and afile.read_text() == "keep"


def test_interrupted_phi4_json_leaves_previous_outputs_intact(tmp_path, monkeypatch):
    import critdiff_ref.phi4.commands.phi4 as phi4_cli
    from critdiff_ref.samplers import mcmc

    js, npz = tmp_path / "r.json", tmp_path / "c.npz"
    args = ["phi4", "--quiet", "--L", "4", "--chains", "2", "--traj", "8", "--burn-in", "2", "--json", str(js),
            "--out", str(npz)]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_hmc = mcmc.hmc

    def interrupted(*a, callback=None, **k):  # Ctrl-C after the second trajectory
        def cb(done, total, phi):
            if done >= 2:
                raise KeyboardInterrupt

        return real_hmc(*a, callback=cb, **k)

    monkeypatch.setattr(mcmc, "hmc", interrupted)
    assert main(args) == 130  # Ctrl-C: exit 130 with one line
    monkeypatch.setattr(mcmc, "hmc", real_hmc)

    class Interrupting(dict):  # Ctrl-C while the JSON is being written
        def items(self):
            raise KeyboardInterrupt

    real = phi4_cli.run_experiment
    monkeypatch.setattr(phi4_cli, "run_experiment", lambda *a, **k: {**real(*a, **k), "extra": Interrupting(a=1)})
    with pytest.raises(KeyboardInterrupt):
        phi4_cli.run_phi4(_build_parser("phi4").parse_args(args))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert not _no_temp_files(tmp_path)


# -- 9. umask ----------------------------------------------------------------------------------------------
def test_atomic_files_honour_the_umask(tmp_path):
    from critdiff_ref.phi4.ensemble import EnsembleParams, save_ensemble

    old = os.umask(0o022)
    try:
        p = save_ensemble(tmp_path / "c.npz", torch.zeros(4, 2, 4, 4), EnsembleParams(L=4), {"M": 0.0})
        q = _io.atomic_write_text(tmp_path / "t.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(q).st_mode) == 0o644


# -- 10. flags in errors and help --------------------------------------------------------------------------
@pytest.mark.parametrize("argv, flag", [(["--chains", "1"], "--chains"), (["--traj", "3"], "--traj"),
                                        (["--eps", "0"], "--eps"), (["--burn-in", "-1"], "--burn-in")])
def test_phi4_errors_name_the_flag_typed(capsys, argv, flag):
    with pytest.raises(SystemExit) as exc:
        main(["phi4", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "n_chains" not in err and "n_updates" not in err and "step must" not in err


def test_every_option_has_a_help_line_and_shows_its_default():
    parser = _build_parser()
    sub = parser._subparsers._group_actions[0]
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"critdiff {name} {action.option_strings[0]} has no help line"
        text = p.format_help()
        assert "(default:" in text, name
    assert ">= 2" in sub.choices["phi4"].format_help()


# -- 11. threads ---------------------------------------------------------------------------------------------
def test_thread_policy(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert _threads.choose_threads(1000) == 1
    assert _threads.choose_threads(1 << 40) == _threads.usable_cores()
    assert _threads.choose_threads(1000, requested=3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert _threads.choose_threads(1000) is None


def test_the_test_suite_runs_with_the_thread_policy():
    expected = int(os.environ["OMP_NUM_THREADS"]) if os.environ.get("OMP_NUM_THREADS") else _threads.choose_threads(0)
    assert torch.get_num_threads() == expected


def test_critdiff_small_runs_use_one_thread_unless_told(monkeypatch):
    import critdiff_ref.theory.facts as facts

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    seen = []
    real = facts.target_facts
    monkeypatch.setattr(facts, "target_facts", lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(["facts"]) == 0
        assert main(["facts", "--threads", "2"]) == 0
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 2]


# -- 12. smaller -------------------------------------------------------------------------------------------
def test_cli_and_library_share_the_default_sample_count():
    import inspect

    from critdiff_ref.validate import validate, validate_runner

    cli_default = _build_parser("validate").parse_args(["validate"]).n_samples
    assert cli_default == inspect.signature(validate).parameters["n_samples"].default
    assert cli_default == inspect.signature(validate_runner).parameters["n_samples"].default


def test_validate_with_no_targets_is_an_error():
    from critdiff_ref.samplers import probability_flow
    from critdiff_ref.validate import validate

    with pytest.raises(ValueError, match="targets"):
        validate(probability_flow, targets=())


def test_plugin_bad_steps_is_a_usage_error(pytester):
    result = pytester.runpytest_inprocess("--critdiff-sampler", "x:y", "--critdiff-steps", "10,x",
                                           "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--critdiff-steps" in "\n".join(result.errlines + result.outlines)


@pytest.mark.parametrize("t", [-0.5, math.nan])
def test_Xi_rejects_negative_and_nan_times(t):
    from critdiff_ref.processes import OU, VE, VP, Brownian, RectifiedFlow

    for process in (VE(), OU(), VP(), Brownian(), RectifiedFlow()):
        with pytest.raises(ValueError, match="t"):
            process.Xi(t)
        with pytest.raises(ValueError):
            process.Xi(torch.tensor([0.1, t], dtype=torch.float64))


def test_default_run_says_diffusers_findings_do_not_count(monkeypatch, capsys):
    import logging

    import critdiff_ref.validate.cli as v  # the orchestrator as the command calls it
    import critdiff_ref.validate.cli as vcli
    from critdiff_ref.validate import CheckResult, Report

    refs = [type("R", (), {"name": f"ref{i}", "adapter": "score"})() for i in range(6)]
    diff = [type("R", (), {"name": "DPMSolverMultistepScheduler", "adapter": "diffusers"})()]
    monkeypatch.setattr(vcli, "default_runners", lambda include_diffusers=True: (refs + diff, "diffusers 0"))

    def fake(r, **kw):
        logging.getLogger("diffusers.schedulers.x").warning("lower_order_final is ignored")
        ok = r.adapter != "diffusers"
        return Report(r.name, r.adapter, [CheckResult("c", 1.0, 1.0, 0.1, "t", ok, "" if ok else "order too low")])

    monkeypatch.setattr(v, "validate_runner", fake)
    assert main(["validate"]) == 0
    out = capsys.readouterr()
    assert "do not count" in out.out and "--strict" in out.out
    assert out.err.count("lower_order_final") <= 1
    assert main(["validate", "--strict"]) == 1


# -- 13. progress ------------------------------------------------------------------------------------------
class _TTY:
    def __init__(self, tty: bool):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass


@pytest.mark.parametrize("tty", [True, False])
def test_hmc_progress_is_a_bar_on_a_terminal_and_lines_in_a_log(monkeypatch, tty):
    from critdiff_ref.phi4.ensemble import EnsembleParams, generate_ensemble

    stream = _TTY(tty)
    monkeypatch.setattr(sys, "stderr", stream)
    generate_ensemble(EnsembleParams(L=4, n_chains=2, n_updates=20, burn_in=0), progress=True)
    if tty:
        assert "it/s" in stream.text or "update/s" in stream.text or "s/update" in stream.text
    else:
        assert "20/20" in stream.text and "\r" not in stream.text


def test_quiet_prints_no_progress(capsys):
    assert main(["phi4", "--quiet", "--L", "4", "--chains", "2", "--traj", "8", "--burn-in", "2"]) == 0
    assert capsys.readouterr().err == ""


def test_report_progress_respects_quiet(tmp_path, monkeypatch, capsys):
    _fake_sections(monkeypatch, None)
    assert main(["report", "--quiet", "--out", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().err == ""


# -- 14. pyerrors is a test dependency ---------------------------------------------------------------------
def test_pyerrors_is_in_the_test_extra():
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    test_extra = meta["project"]["optional-dependencies"]["test"]
    assert any(dep.startswith("pyerrors") for dep in test_extra)
    assert any(dep.startswith("tqdm") for dep in meta["project"]["dependencies"])
