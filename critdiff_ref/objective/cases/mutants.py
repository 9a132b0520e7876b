"""Proof of power: planted-bug objectives that must fail and correct ones that must pass (THEORY 9).

Each planted bug is one line away from a correct parent built from the same diffusers pieces:
the model told ``t / N`` instead of the index (``t`` vs ``t * 1000``), noise added one index off,
an eps objective read as a score, v with alpha and sigma swapped, the flow-matching target with the
wrong sign, EDM preconditioning with the wrong ``sigma_data``, the SD3 timestep density replaced by a
uniform one, and min-SNR with the v-prediction denominator on an eps objective.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F_nn

from ..validate import validate_objective
from .diffusers_objectives import Case, ddpm_case, ddpm_spec, edm_case, edm_spec, flow_match_case

__all__ = ["Mutant", "correct_cases", "planted_bugs", "power_matrix"]


@dataclass(frozen=True)
class Mutant:
    """A case with the verdict it must get and the bug (one line from ``parent``)."""

    case: Case
    parent: str
    bug: str
    must_pass: bool


def _ddpm(n_train: int, prediction: str = "epsilon"):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=n_train, prediction_type=prediction)


def _ddpm_objective(n_train: int, *, told=None, noise_index=None, target=None):
    """The ``train_text_to_image.py`` loss with one line replaceable (what the model is told, where the
    noise is added, the target)."""
    sch = _ddpm(n_train)
    ab = sch.alphas_cumprod.to(torch.float64)

    def objective(model, x0, generator):
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        t = torch.randint(0, n_train, (x0.shape[0],), generator=generator)
        noisy = sch.add_noise(x0, noise, t if noise_index is None else noise_index(t))
        y = noise if target is None else target(x0, noise, ab[t].reshape(-1, *([1] * (x0.ndim - 1))))
        pred = model(noisy, t if told is None else told(t))
        return F_nn.mse_loss(pred.float(), y.float())

    return sch, objective


def correct_cases(n_train: int = 1000) -> list[Case]:
    """eps, v, x0, score, min-SNR eps (diffusers DDPM), flow matching (SD3) and EDM: all must pass."""
    sch = _ddpm(n_train)
    _, x0_obj = _ddpm_objective(n_train, target=lambda x0, z, ab: x0)
    _, score_obj = _ddpm_objective(n_train, target=lambda x0, z, ab: -z / (1 - ab).sqrt())
    return [
        ddpm_case("eps", scheduler=sch),
        ddpm_case("v", scheduler=_ddpm(n_train, "v_prediction")),
        Case("ddpm-x0", x0_obj, ddpm_spec(sch, "x0")),
        Case("ddpm-score", score_obj, ddpm_spec(sch, "score")),
        ddpm_case("eps", snr_gamma=5.0, scheduler=sch),
        flow_match_case("logit_normal", scheduler=_flow(n_train)),
        edm_case(scheduler=_edm(n_train)),
    ]


def _flow(n_train: int):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=n_train)


def _edm(n_train: int, sigma_data: float = 0.5):
    from diffusers import EDMEulerScheduler

    return EDMEulerScheduler(num_train_timesteps=n_train, sigma_data=sigma_data)


def planted_bugs(n_train: int = 1000) -> list[Mutant]:
    """The catalogue of planted bugs; every one must fail."""
    sch = _ddpm(n_train)
    eps_spec = ddpm_spec(sch, "eps")
    out = []

    def add(name: str, parent: str, bug: str, objective: Callable, spec, **documented) -> None:
        out.append(Mutant(Case(name, objective, spec, **documented), parent, bug, must_pass=False))

    add("eps-told-t-over-N", "ddpm-eps", "model(noisy, t / N): told a time in [0, 1) instead of the index",
        _ddpm_objective(n_train, told=lambda t: t.double() / n_train)[1], eps_spec)
    add("eps-noise-index-plus-one", "ddpm-eps", "add_noise(x0, noise, t + 1): noise one index later than the model is told",
        _ddpm_objective(n_train, noise_index=lambda t: (t + 1).clamp(max=n_train - 1))[1], eps_spec)
    add("eps-read-as-score", "ddpm-eps", "the eps objective declared as a score model (output='score')",
        _ddpm_objective(n_train)[1], ddpm_spec(sch, "score"))
    add("v-alpha-sigma-swapped", "ddpm-v", "target = sqrt(1-ab) noise - sqrt(ab) x0 (alpha and sigma swapped)",
        _ddpm_objective(n_train, target=lambda x0, z, ab: (1 - ab).sqrt() * z - ab.sqrt() * x0)[1], ddpm_spec(sch, "v"))
    fm = flow_match_case("logit_normal", scheduler=_flow(n_train))
    add("flow-target-sign", "flow-match-logit-normal", "target = x0 - noise (sign flipped)",
        _negated_target(fm.objective), fm.spec)
    edm_wrong = edm_case(scheduler=_edm(n_train, sigma_data=1.0))
    add("edm-sigma-data-1", "edm-euler", "EDMEulerScheduler(sigma_data=1.0) in training, 0.5 documented",
        edm_wrong.objective, edm_spec(_edm(n_train)))
    uniform = flow_match_case("uniform", scheduler=_flow(n_train))
    add("sd3-density-uniform", "flow-match-logit-normal", "u = torch.rand(...) instead of logit-normal sampling",
        uniform.objective, fm.spec, documented_weighting=fm.documented_weighting, documented_density=fm.documented_density)
    add("min-snr-eps-with-v-denominator", "ddpm-eps-min-snr-5", "weights = min(snr, gamma) / (snr + 1) on an eps objective",
        _eps_with_v_weights(n_train), eps_spec, documented_weighting=ddpm_case("eps", snr_gamma=5.0, scheduler=sch).documented_weighting)
    return out


def _negated_target(objective: Callable) -> Callable:
    """The same objective with the model output negated: equivalent to training on ``x0 - noise``."""

    class Negated(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x, c):
            return -self.model(x, c)

    return lambda model, x0, generator: objective(Negated(model), x0, generator)


def _eps_with_v_weights(n_train: int) -> Callable:
    from diffusers.training_utils import compute_snr

    sch = _ddpm(n_train)

    def objective(model, x0, generator):
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        t = torch.randint(0, n_train, (x0.shape[0],), generator=generator)
        pred = model(sch.add_noise(x0, noise, t), t)
        snr = compute_snr(sch, t)
        w = torch.stack([snr, 5.0 * torch.ones_like(t)], dim=1).min(dim=1)[0] / (snr + 1)
        per = F_nn.mse_loss(pred.float(), noise.float(), reduction="none").mean(dim=list(range(1, x0.ndim)))
        return (per * w).mean()

    return objective


def power_matrix(n_train: int = 1000, **validate_kwargs) -> list[dict]:
    """Validate every correct case and planted bug; rows ``{name, parent, bug, must_pass, passed, ok, failures}``."""
    rows = []
    mutants = [Mutant(c, c.name, "", True) for c in correct_cases(n_train)] + planted_bugs(n_train)
    for m in mutants:
        c = m.case
        report = validate_objective(c.objective, c.spec, name=c.name, documented_weighting=c.documented_weighting,
                                    documented_density=c.documented_density, **validate_kwargs)
        rows.append({"name": c.name, "parent": m.parent, "bug": m.bug, "must_pass": m.must_pass,
                     "passed": report.passed, "ok": report.passed == m.must_pass, "failures": list(report.failures)})
    return rows


def format_power_matrix(rows: list[dict]) -> str:
    """:func:`power_matrix` rows, one line each: ``ok``/``BAD``, the objective, what it must do and what it did."""
    return "\n".join(
        f"{'ok ' if r['ok'] else 'BAD'} {r['name']:<34} must {'pass' if r['must_pass'] else 'fail'}: "
        f"{'PASS' if r['passed'] else 'FAIL'}" + (f"  [{r['bug']}]" if r["bug"] else "") for r in rows)
