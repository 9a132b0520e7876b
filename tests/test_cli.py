"""The `critdiff` command runs and prints exact facts; bad input exits 2 with a message."""

import json
import math
import subprocess
import sys

from critdiff_ref.cli import main


def test_facts_runs(capsys):
    assert main(["facts"]) == 0
    out = capsys.readouterr().out
    assert "gaussian-field" in out and "condition_number" in out


def test_default_command_is_validate(monkeypatch):
    """Plain `critdiff` (and `critdiff --flag ...`) is the main job, `critdiff validate`."""
    import critdiff_ref.validate.cli as vcli

    seen = []
    monkeypatch.setattr(vcli, "run_validate", lambda args: seen.append(args.command) or 0)
    assert main([]) == 0 and seen == ["validate"]


def test_json_output(tmp_path, capsys):
    path = tmp_path / "facts.json"
    assert main(["facts", "--target", "two-peak", "--process", "VE", "--json", str(path)]) == 0
    facts = json.loads(path.read_text())
    # VE conserves kappa_4 = -2 mu^4 (mu = 1) at every time (THEORY 6)
    assert all(math.isclose(row["kappa_4"], -2.0, rel_tol=1e-14) for row in facts["times"])


def test_bad_input_exit_code(capsys):
    assert main(["facts", "--L", "1"]) == 2
    assert "L must be >= 2" in capsys.readouterr().err
    assert main(["facts", "--times", "5"]) == 2


def test_console_script_entry_point():
    r = subprocess.run([sys.executable, "-m", "critdiff_ref.cli", "facts", "--target", "phi4-0d-double"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "moment_2" in r.stdout


def test_python_dash_m_critdiff_ref_is_the_command_without_warnings():
    # -W error: a module imported twice by runpy (a package's submodule run as __main__) would fail here
    r = subprocess.run([sys.executable, "-W", "error", "-m", "critdiff_ref", "phi4-exact-dm", "--help"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--proposal-seed" in r.stdout and r.stderr == ""


def test_usage_errors_are_one_line_naming_the_command_and_help_is_full(capsys):
    import pytest

    for argv in (["facts", "--L", "x"], ["facts", "--bogus"], ["facts", "--target", "nope"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith("critdiff facts: error: "), err
    with pytest.raises(SystemExit) as exit_:
        main(["facts", "--help"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("usage: critdiff facts")


def test_ctrl_c_broken_pipe_and_os_errors_end_a_command_without_a_traceback(monkeypatch, capsys):
    import critdiff_ref.cli as cli

    def raising(exc):
        def run(args):
            raise exc
        return run

    monkeypatch.setattr(cli, "run_facts", raising(KeyboardInterrupt()))
    assert main(["facts"]) == 130
    assert capsys.readouterr().err == "critdiff facts: interrupted\n"
    monkeypatch.setattr(cli, "run_facts", raising(PermissionError(13, "Permission denied", "/x/y.json")))
    assert main(["facts"]) == 1
    assert capsys.readouterr().err == "critdiff facts: error: /x/y.json: Permission denied\n"
    monkeypatch.setattr(cli, "_quiet_stdout", lambda: None)  # keep pytest's stdout
    monkeypatch.setattr(cli, "run_facts", raising(BrokenPipeError(32, "Broken pipe")))
    assert main(["facts"]) == 141
    assert capsys.readouterr().err == ""
