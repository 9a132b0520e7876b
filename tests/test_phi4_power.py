"""critdiff_ref.phi4.power: the power of a DM-MCMC vs HMC chi_2 comparison against a relative bias (THEORY 8),
checked against an independent closed-form normal power calculation (scipy's normal distribution), and the
run-length plan that buys a power goal checked by re-evaluating the power at the planned errors."""

from __future__ import annotations

import math

import pytest
from scipy.stats import norm

from critdiff_ref.phi4.power import POWER_GOAL, Z_CHECK, power_against_bias, power_line, power_plan, se_for_power


def _closed_form(bias: float, se: float, z: float) -> float:
    """P(|Z + bias/se| > z) = P(Z > z - s) + P(Z < -z - s), s = bias / se, via scipy's normal sf / cdf."""
    s = bias / se
    return float(norm.sf(z - s) + norm.cdf(-z - s))


@pytest.mark.parametrize("bias", [0.0, 0.05, 0.1, 0.257, 0.5, -0.3, 2.0])
@pytest.mark.parametrize("se", [0.02, 0.08, 0.5])
@pytest.mark.parametrize("z", [1.0, 2.0, 3.0])
def test_power_is_the_two_sided_normal_tail(bias, se, z):
    # two float64 evaluations of the same normal tails (erfc vs scipy's ndtr): agree to ~1e-15 absolute;
    # 1e-12 leaves three decades for rounding in s = bias / se
    assert power_against_bias(bias, se, z) == pytest.approx(_closed_form(bias, se, z), rel=1e-12, abs=1e-15)


def test_power_at_zero_bias_is_the_false_failure_rate_and_grows_with_the_bias():
    assert power_against_bias(0.0, 1.0) == pytest.approx(2 * norm.sf(Z_CHECK), rel=1e-12)
    values = [power_against_bias(b, 1.0) for b in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)]
    assert values == sorted(values) and values[-1] > 1 - 1e-9
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="se"):
            power_against_bias(0.1, bad)


def test_the_readme_l16_single_run_statement():
    """The README's L = 16 run: combined SE 0.080 of chi_2 = 2.567, 'a 10 % chi_2 bias (3.2 SE) fails the 2-SE
    check with probability 0.89 only' -- the same function reproduces the quoted (rounded) number."""
    assert power_against_bias(0.1 * 2.567, 0.080) == pytest.approx(0.89, abs=0.005)  # rounding of 0.89


@pytest.mark.parametrize("power", [0.5, 0.9, 0.95, 0.999])
def test_se_for_power_inverts_the_power(power):
    se = se_for_power(0.25, power)
    # the bisection stops at 1e-12 relative in the shift; the power's slope in the shift is < 1
    assert power_against_bias(0.25, se) == pytest.approx(power, abs=1e-10)
    with pytest.raises(ValueError, match="power"):
        se_for_power(0.25, 0.01)  # below the false-failure rate 0.0455: no standard error gives it


def test_power_plan_buys_the_goal_by_more_dm_mcmc():
    """Short DM-MCMC against a long HMC run: only DM-MCMC needs more proposals."""
    plan = power_plan(2.61, 0.47, 0.05, n_dm=448, seconds_per_dm=0.5)
    assert not plan["enough"] and plan["power"] < 0.2 and not plan["hmc_limited"]
    # errors ~ 1/sqrt(n): at dm_factor times the proposals the DM-MCMC error is 0.47 / sqrt(dm_factor)
    se_new = math.hypot(0.47 / math.sqrt(plan["dm_factor"]), 0.05)
    assert power_against_bias(0.261, se_new) == pytest.approx(POWER_GOAL, abs=1e-9)
    assert plan["n_dm_needed"] == math.ceil(448 * plan["dm_factor"])
    assert plan["extra_seconds"] == pytest.approx((plan["n_dm_needed"] - 448) * 0.5)
    text = power_line(plan, more_dm="--dm-iter 9999", more_hmc="--traj 1")
    assert "too short" in text and "--dm-iter 9999" in text and "more DM-MCMC" in text and "--traj" not in text


def test_power_plan_when_hmc_limits_the_comparison():
    """The defaults of ``critdiff phi4 --L 16 --kappa 0.21 --train-dm`` (DM-MCMC chi_2 2.26 +- 0.47, HMC 2.61 +- 0.10):
    a 10 % bias needs a combined SE <= 0.080, below HMC's own 0.10, so both runs must grow."""
    brief = power_plan(2.61, 0.47, 0.10, n_dm=448)
    assert brief["hmc_limited"] and brief["se_goal"] < 0.10 and brief["power"] < 0.2
    plan = power_plan(2.6, 0.05, 0.2, n_dm=100)
    assert plan["hmc_limited"] and plan["hmc_factor"] == plan["dm_factor"]
    f = plan["dm_factor"]
    assert power_against_bias(0.26, math.hypot(0.05, 0.2) / math.sqrt(f)) == pytest.approx(POWER_GOAL, abs=1e-9)
    assert "--traj 7" in power_line(plan, more_dm="--dm-iter 5", more_hmc="--traj 7")


def test_power_plan_enough_and_undefined():
    plan = power_plan(2.6, 0.02, 0.02, n_dm=10_000)
    assert plan["enough"] and plan["dm_factor"] is None
    assert "(>= 0.9)" in power_line(plan, more_dm="", more_hmc="")
    frozen = power_plan(2.6, 0.0, 0.1, n_dm=100)  # a DM-MCMC chain that never moved: its error is 0
    assert math.isnan(frozen["power"]) and not frozen["enough"]
    assert "cannot see a bias" in power_line(frozen, more_dm="--dm-iter", more_hmc="")
