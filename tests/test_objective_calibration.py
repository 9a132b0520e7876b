"""False-failure rate of the objective validator (THEORY 9): at significance alpha = 0.05 a correct
objective fails in about 5 % of independent seeds (the Bonferroni split makes it at most alpha up to the
small-sample error of the jackknife standard error)."""

from __future__ import annotations

import pytest

from critdiff_ref.objective import validate_objective
from critdiff_ref.objective.cases.mutants import correct_cases
from critdiff_ref.targets.gaussian_field import GaussianField

SEEDS = range(2000, 2020)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ddpm-eps", "edm-euler"])
def test_a_correct_objective_fails_at_about_the_nominal_rate(name):
    case = {c.name: c for c in correct_cases(50)}[name]
    failures = sum(
        not validate_objective(case.objective, case.spec, target=GaussianField(8), n_batches=8, batch_size=2048,
                               seed=seed, alpha=0.05, documented_weighting=case.documented_weighting,
                               documented_density=case.documented_density).passed
        for seed in SEEDS
    )
    # 20 seeds at a true rate <= 0.075 (measured 3/40 on ddpm-eps): P(X >= 6) < 0.01 (binomial tail)
    assert failures <= 5
