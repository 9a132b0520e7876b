"""``critdiff objective``: a user objective by MODULE:ATTR, strict JSON, exit codes, figures."""

from __future__ import annotations

import json
import textwrap

import pytest

from critdiff_ref import cli

USER_MODULE = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from critdiff_ref.objective import Case, ddpm_spec

    sch = DDPMScheduler(num_train_timesteps=50)

    def make(told):
        def objective(model, x0, generator):
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
            t = torch.randint(0, 50, (x0.shape[0],), generator=generator)
            return F.mse_loss(model(sch.add_noise(x0, noise, t), told(t)), noise)
        return objective

    GOOD = Case("user-eps", make(lambda t: t), ddpm_spec(sch, "eps"))
    def bad():
        return Case("user-eps-t-over-N", make(lambda t: t / 50.0), ddpm_spec(sch, "eps"))
''')
SMALL = ["--L", "8", "--batches", "8", "--batch-size", "2048"]


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "objective_user_case.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "objective_user_case"


def test_user_objective_passes_with_strict_json_and_a_figure(user_module, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = cli.main(["objective", "--objective", f"{user_module}:GOOD", *SMALL, "--json", str(out),
                     "--plot", str(tmp_path / "fig")])
    assert code == 0, capsys.readouterr().out
    def no_constants(token):
        raise AssertionError(f"non-strict JSON constant {token}")

    data = json.loads(out.read_text(), parse_constant=no_constants)
    assert data["reports"][0]["passed"] is True and data["reports"][0]["name"] == "user-eps"
    assert (tmp_path / "fig" / "user-eps.png").stat().st_size > 0


def test_a_buggy_user_objective_exits_1_and_names_the_problem(user_module, capsys):
    code = cli.main(["objective", "--objective", f"{user_module}:bad", *SMALL])
    assert code == 1
    assert "not on the declared grid" in capsys.readouterr().out


def test_bad_objective_paths_exit_2(user_module, capsys):
    assert cli.main(["objective", "--objective", "no_colon_here", *SMALL]) == 2
    assert "MODULE:ATTR" in capsys.readouterr().err
    assert cli.main(["objective", "--objective", f"{user_module}:sch", *SMALL]) == 2
