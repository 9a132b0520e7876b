"""``critdiff phi4`` / ``phi4-figures`` / ``phi4-exact-dm`` / ``cumulants`` as a user meets them: the power line of
every DM-MCMC comparison, and every bad input (damaged checkpoint, unwritable output, mismatched checkpoint,
odd L, too short a run) as ONE line naming the file or the flag, before any HMC run or training."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from critdiff_ref import _io
from critdiff_ref.cli import main
from critdiff_ref.phi4 import dm as pdm
from critdiff_ref.phi4 import experiment, figures
from critdiff_ref.phi4.power import power_against_bias

torch.set_num_threads(1)

TINY = ["--L", "4", "--chains", "4", "--traj", "16", "--burn-in", "4", "--quiet"]
TINY_DM = ["--train-dm", "--dm-steps", "5", "--dm-batch", "8", "--dm-channels", "4", "8", "--dm-chains", "2",
           "--dm-iter", "8", "--ode-steps", "2"]


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.fixture
def no_work(monkeypatch):
    """Any HMC run or DSM training fails the test: the error must come before the work."""
    def fail(*a, **k):
        pytest.fail("the command started working before it checked its inputs")

    monkeypatch.setattr(experiment, "generate_ensemble", fail)
    monkeypatch.setattr(figures, "generate_ensemble", fail)
    monkeypatch.setattr(pdm, "train_dm", fail)


def _damaged(tmp_path, kind: str) -> str:
    path = tmp_path / f"{kind}.pt"
    if kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        good = tmp_path / "good.pt"
        _io.save_weights(good, {"format": pdm.DM_CHECKPOINT_FORMAT, "config": {}, "state_dict": {}})
        path.write_bytes(good.read_bytes()[:200])
    elif kind == "garbage":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "folder":
        path.mkdir()
    return str(path)


DAMAGE = ("text", "empty", "truncated", "garbage", "folder")


# -- the power line ---------------------------------------------------------------------------------------
def test_phi4_train_dm_prints_the_power_it_has_and_the_flags_that_buy_more(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["phi4", *TINY, *TINY_DM, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    result = json.loads(out.read_text())
    dm, plan = result["dm"], result["dm"]["power"]
    # the JSON's power is the closed form at the printed errors (the same function, no rounding)
    se = math.hypot(dm["dm_mcmc"]["chi2_err"], result["chi2_err"])
    if dm["dm_mcmc"]["chi2_err"] > 0:
        assert plan["power"] == power_against_bias(0.1 * result["chi2"], se)
    assert "power against a 10 % chi_2 bias" in text
    assert plan["enough"] is False  # 12 kept proposals cannot see a 10 % bias
    assert "too short" in text or "cannot see a bias" in text
    if plan["n_dm_needed"]:  # the flag it names keeps enough proposals
        line = next(s for s in text.splitlines() if "--dm-iter" in s)
        n_iter = int(line.split("--dm-iter ")[1].split()[0])
        assert 2 * (n_iter - min(8, n_iter // 4)) >= plan["n_dm_needed"] and "more DM-MCMC" in line


def test_phi4_figures_states_the_power_of_its_chi2_comparisons(tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["phi4-figures", "--quick", "--parts", "acceptance", "--no-plots", "--quiet", "--out", str(out),
                 "--kappas", "0.21", "--sizes", "4", "--kappa-critical", "0.21", "--dm-steps", "5"]) == 0
    stdout = capsys.readouterr().out
    assert "Power (10 % chi_2)" in stdout and "Power (10 % chi_2)" in (out / "acceptance.md").read_text()
    (row,) = json.loads((out / "acceptance.json").read_text())["rows"]
    assert "power" in row and "power (10 % chi_2)" in (out / "acceptance.md").read_text()


# -- damaged checkpoints: one line naming the file, before any work ------------------------------------------
@pytest.mark.parametrize("kind", DAMAGE)
def test_read_checkpoint_names_the_file_for_every_kind_of_damage(tmp_path, kind):
    path = _damaged(tmp_path, kind)
    with pytest.raises(ValueError) as err:
        _io.read_checkpoint(path, what="phi^4 DM checkpoint")
    assert path in str(err.value) and len(str(err.value).splitlines()) == 1


@pytest.mark.parametrize("kind", DAMAGE)
def test_phi4_with_a_damaged_checkpoint_is_one_line(tmp_path, capsys, no_work, kind):
    path = _damaged(tmp_path, kind)
    assert main(["phi4", *TINY, *TINY_DM, "--checkpoint", path]) == 2
    _one_line_error(capsys, path)


@pytest.mark.parametrize("kind", DAMAGE)
def test_cumulants_with_a_damaged_checkpoint_is_one_line(tmp_path, capsys, monkeypatch, kind):
    from critdiff_ref.report import learned

    monkeypatch.setattr(learned, "learned_cumulants", lambda *a, **k: pytest.fail("ran"))
    path = _damaged(tmp_path, kind)
    assert main(["cumulants", "--checkpoint", path]) == 2
    _one_line_error(capsys, path)


@pytest.mark.parametrize("kind", ("text", "truncated", "folder"))
def test_phi4_figures_with_a_damaged_checkpoint_is_one_line(tmp_path, capsys, no_work, kind):
    cfg = figures.QUICK
    folder = tmp_path / "ck"
    folder.mkdir()
    bad = _damaged(tmp_path, kind)
    target = figures.checkpoint_path(str(folder), cfg, cfg.L, cfg.kappa_broken)
    os.rename(bad, target)
    assert main(["phi4-figures", "--quick", "--parts", "broken", "--no-plots", "--quiet", "--out",
                 str(tmp_path / "figs"), "--checkpoints", str(folder)]) == 2
    _one_line_error(capsys, target)


# -- outputs that cannot be written, checked first ------------------------------------------------------------
def _unwritable_folder(tmp_path) -> str:
    """A folder this process cannot create files in (root ignores permission bits: /proc then)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        open(ro / "probe", "w").close()
    except OSError:
        return str(ro)
    if os.path.isdir("/proc"):
        return "/proc"
    pytest.skip("no folder this process cannot write")


def test_phi4_checkpoint_into_an_unwritable_folder_fails_before_training(tmp_path, capsys, no_work):
    folder = _unwritable_folder(tmp_path)
    assert main(["phi4", *TINY, *TINY_DM, "--checkpoint", os.path.join(folder, "dm.pt")]) == 2
    _one_line_error(capsys, "--checkpoint")


@pytest.mark.parametrize("flag", ["--plot", "--checkpoint", "--json"])
def test_cumulants_outputs_are_checked_before_training(tmp_path, capsys, monkeypatch, flag):
    from critdiff_ref.report import learned

    monkeypatch.setattr(learned, "train_model", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(learned, "learned_cumulants", lambda *a, **k: pytest.fail("ran"))
    for path in (str(tmp_path / "missing" / "x.png"), os.path.join(_unwritable_folder(tmp_path), "x.png")):
        assert main(["cumulants", flag, path]) == 2
        _one_line_error(capsys, flag)


# -- phi4: what would fail after the HMC run is checked before it ------------------------------------------------
def test_phi4_mismatched_checkpoint_fails_before_hmc(tmp_path, capsys, monkeypatch):
    path = str(tmp_path / "dm.pt")
    assert main(["phi4", *TINY, *TINY_DM, "--checkpoint", path]) == 0
    capsys.readouterr()
    monkeypatch.setattr(experiment, "generate_ensemble", lambda *a, **k: pytest.fail("HMC ran"))
    assert main(["phi4", *TINY, *TINY_DM, "--kappa", "0.25", "--checkpoint", path]) == 2
    _one_line_error(capsys, path, "kappa: saved 0.2, requested 0.25")


def test_phi4_odd_L_for_metropolis_fails_before_hmc(capsys, no_work):
    args = ["phi4", "--L", "5", "--chains", "2", "--traj", "8", "--quiet", "--train-dm", "--dm-net", "fourier-local"]
    assert main(args) == 2
    _one_line_error(capsys, "--L 5", "even")


def test_phi4_cumulants_of_too_short_a_run_fail_before_hmc(capsys, no_work):
    args = ["phi4", *TINY, *TINY_DM[:-4], "--dm-iter", "4", "--ode-steps", "2", "--cumulants"]
    assert main(args) == 2
    _one_line_error(capsys, "--cumulants", "--dm-iter 5")  # 2 chains x (5 - 1 burn-in) = 8 kept


@pytest.mark.parametrize("extra, flag", [(["--dm-channels", "0", "8"], "--dm-channels 0 8"),
                                         (["--dm-iter", "0"], "--dm-iter 0"),
                                         (["--dm-chains", "1"], "--dm-chains 1"),
                                         (["--L", "6", "--dm-net", "unet", "--dm-channels", "4", "4", "4"], "--L 6")])
def test_phi4_messages_name_the_flag(capsys, no_work, extra, flag):
    assert main(["phi4", "--L", "4", "--quiet", "--train-dm", *extra]) == 2
    _one_line_error(capsys, flag)


def test_cumulants_and_figures_messages_name_the_flag(tmp_path, capsys, no_work):
    assert main(["cumulants", "--steps", "0"]) == 2
    _one_line_error(capsys, "--steps 0")
    assert main(["phi4-figures", "--quick", "--out", str(tmp_path / "f"), "--channels", "0"]) == 2
    _one_line_error(capsys, "--channels 0")


def test_phi4_figures_checkpoint_folder_that_cannot_be_written_fails_before_work(tmp_path, capsys, no_work):
    folder = os.path.join(_unwritable_folder(tmp_path), "ck")
    assert main(["phi4-figures", "--quick", "--parts", "broken", "--no-plots", "--quiet", "--out",
                 str(tmp_path / "figs"), "--checkpoints", folder]) == 2
    _one_line_error(capsys, "--checkpoints")


@pytest.mark.parametrize("argv", [["--help"], ["phi4-exact-dm", "--help"], ["phi4", "--help"], ["phi4-figures", "--help"]])
def test_help_pages_print(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out


def test_every_phi4_exact_dm_flag_has_its_own_help():
    """Each keyword of run_exact_dm reaches --help with a sentence, not its Python name."""
    from critdiff_ref.phi4.commands.exact_dm import HELP, _parameters

    assert set(HELP) == set(_parameters())
