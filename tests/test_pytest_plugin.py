"""The pytest plugin: ``pytest --critdiff-sampler pkg.module:attr`` (entry point ``pytest11``, or
``-p critdiff_ref.validate.pytest_plugin`` before the package is reinstalled with it)."""

from __future__ import annotations

pytest_plugins = ["pytester"]

SAMPLERS = '''
from critdiff_ref.samplers import probability_flow


def good(score, process, x_T, steps, t_min=0.0):
    return probability_flow(score, process, x_T, steps, method="heun", t_min=t_min)


def bad(score, process, x_T, steps, t_min=0.0):
    return probability_flow(lambda x, t: 0.7 * score(x, t), process, x_T, steps, method="heun")
'''

def _autoloaded() -> bool:
    """True once the package is installed with its pytest11 entry point (then ``-p`` would register it twice)."""
    from importlib.metadata import entry_points

    return any(ep.value.startswith("critdiff_ref.validate.pytest_plugin") for ep in entry_points(group="pytest11"))


ARGS = (*(() if _autoloaded() else ("-p", "critdiff_ref.validate.pytest_plugin")),
        "--critdiff-targets", "gaussian", "--critdiff-steps", "20,40", "-p", "no:cacheprovider")


def test_plugin_passes_a_correct_sampler(pytester):
    pytester.makepyfile(mysamplers=SAMPLERS)
    pytester.syspathinsert()
    result = pytester.runpytest_inprocess(*ARGS, "--critdiff-sampler", "mysamplers:good")
    result.assert_outcomes(passed=1)


def test_plugin_fails_a_wrong_sampler_with_a_diff(pytester):
    pytester.makepyfile(mysamplers=SAMPLERS)
    pytester.syspathinsert()
    result = pytester.runpytest_inprocess(*ARGS, "--critdiff-sampler", "mysamplers:bad")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*critdiff: mysamplers:bad failed*", "*covariance@40: measured*vs reference 0*"])


def test_plugin_fixtures(pytester):
    pytester.makepyfile(mysamplers=SAMPLERS)
    pytester.syspathinsert()
    pytester.makepyfile(test_user='''
import pytest
from mysamplers import good, bad


def test_report_fixture(critdiff_report):
    assert critdiff_report.passed


def test_validate_fixture_passes(critdiff_validate):
    assert critdiff_validate(good, steps=(20, 40), targets=("gaussian",)).passed


def test_validate_fixture_fails(critdiff_validate):
    critdiff_validate(bad, steps=(20, 40), targets=("gaussian",))
''')
    result = pytester.runpytest_inprocess(*ARGS, "--critdiff-sampler", "mysamplers:good", "test_user.py")
    # 3 user tests (one fails by design) + the --critdiff-sampler item
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*critdiff validation failed*"])


def test_plugin_without_sampler_skips_report_fixture(pytester):
    pytester.makepyfile(test_user='''
def test_report_fixture(critdiff_report):
    pass
''')
    result = pytester.runpytest_inprocess(*ARGS, "test_user.py")
    result.assert_outcomes(skipped=1)


def test_a_sampler_module_that_exits_on_import_is_a_one_line_usage_error(pytester):
    """Any failure while importing the user's module (here ``sys.exit()``) is pytest's usage error naming it."""
    pytester.makepyfile(exits_on_import="import sys\nsys.exit(4)\n")
    pytester.syspathinsert()
    result = pytester.runpytest_inprocess(*ARGS, "--critdiff-sampler", "exits_on_import:f")
    assert result.ret == 4  # pytest's ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--critdiff-sampler: sampler='exits_on_import:f': importing 'exits_on_import' "
                                 "raised SystemExit: 4*"])
