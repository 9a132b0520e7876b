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
