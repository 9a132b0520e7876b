"""`critdiff report --quick` runs end to end: every file is written and every number meets its invariant."""

import json
import math

import pytest

from critdiff_ref.cli import main
from critdiff_ref.report import SECTIONS, Check, write_report


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return out, write_report(out, progress=False)


def test_every_section_and_file_is_written(quick_report):
    out, doc = quick_report
    assert set(doc["sections"]) == set(SECTIONS)
    assert (out / "report.md").read_text().startswith("# critdiff report")
    assert json.loads((out / "report.json").read_text())["sections"].keys() == doc["sections"].keys()
    pytest.importorskip("matplotlib")
    for key, section in doc["sections"].items():
        assert section["figures"], f"section {key} drew no figure"
        for name in section["figures"]:
            assert (out / name).stat().st_size > 1000  # a real PNG, not an empty file


def test_every_check_passes(quick_report):
    _, doc = quick_report
    failed = [(k, c) for k, s in doc["sections"].items() for c in s["checks"] if not c["passed"]]
    assert not failed, failed
    for section in doc["sections"].values():
        assert section["checks"], "each section compares at least one number with THEORY"
        for c in section["checks"]:
            assert all(math.isfinite(c[k]) for k in ("measured", "predicted", "tolerance"))
            assert abs(c["measured"] - c["predicted"]) <= c["tolerance"]


def test_check_semantics():
    assert Check("x", 1.05, 1.0, 0.1, "s").passed and not Check("x", 1.2, 1.0, 0.1, "s").passed


def test_bad_section_and_cli(tmp_path, capsys):
    with pytest.raises(ValueError, match="only must name sections"):
        write_report(tmp_path, only=["nope"], progress=False)
    assert main(["report", "--only", "symmetry", "--out", str(tmp_path / "r")]) == 0
    assert "symmetry" in capsys.readouterr().out
    assert (tmp_path / "r" / "report.md").exists()
