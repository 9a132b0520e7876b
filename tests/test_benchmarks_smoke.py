"""Smoke tests of the asv benchmarks (issue 8): every benchmark class runs its ``setup`` and each
``time_`` / ``track_`` method once at its smallest parameters, CUDA parameters skip cleanly without a
GPU, and the benchmark plumbing (local and full-size convolution scores, fits, timers, size caps)
computes what it claims.  No wall time is asserted anywhere.
"""

from __future__ import annotations

import importlib
import inspect
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from critdiff_ref import VP, GaussianField, exact_score
from critdiff_ref.testing import assert_close, eps
from critdiff_ref.theory import truncated_kernel
from critdiff_ref.trainers import circular_conv

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402

# torch.compile's import of inductor triggers torch's own deprecation warning for torch.jit.script_method
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

BENCH_MODULES = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))
PREFIXES = ("time_", "track_", "peakmem_", "mem_", "timeraw_")


def _benchmark_classes():
    out = []
    for name in BENCH_MODULES:
        module = importlib.import_module(f"benchmarks.{name}")
        for cls_name, cls in vars(module).items():
            if inspect.isclass(cls) and not cls_name.startswith("_") and cls.__module__ == module.__name__:
                if any(m.startswith(PREFIXES) for m in dir(cls)):
                    out.append(pytest.param(cls, id=f"{name}.{cls_name}"))
    return out


CLASSES = _benchmark_classes()


def _smallest(cls) -> tuple:
    """The first value of every parameter list (lists are ordered smallest / cpu / float32 first)."""
    return tuple(values[0] for values in cls.params)


def test_every_module_has_benchmarks():
    """Discovery found the four benchmark areas of issue 8 and at least one class in each."""
    assert {"bench_scores", "bench_samplers", "bench_trainers", "bench_mcmc"} <= set(BENCH_MODULES)
    found = {p.id.split(".")[0] for p in CLASSES}
    assert found == set(BENCH_MODULES)


@pytest.mark.parametrize("cls", CLASSES)
def test_benchmark_runs_at_smallest_params(cls):
    """setup + one call of every benchmark method at the smallest parameters; tracks are finite numbers with a unit."""
    assert isinstance(cls.params, tuple) and len(cls.params) == len(cls.param_names)
    # explicit version (edits keep the history): the suite's, or the suite's with a ".N" bump where a
    # benchmark's meaning changed
    version = getattr(cls, "version", None)
    assert isinstance(version, str) and (version == common.VERSION or version.startswith(common.VERSION + "."))
    args = _smallest(cls)
    bench = cls()
    if hasattr(cls, "setup_cache"):  # asv passes the cache first; here it is measured at these params only
        args = (cls.measure([args], work=2**12), *args)  # a little work: the code path, not the figure
    if "cuda" in args:  # a CUDA-only benchmark: runs on a GPU, skips cleanly without one
        if not torch.cuda.is_available():
            with pytest.raises(NotImplementedError, match="cuda"):
                bench.setup(*args)
            return
    try:
        bench.setup(*args)
    except NotImplementedError as exc:  # only an optional module or toolchain may be absent
        if any(word in str(exc) for word in ("dmmc", "C++ compiler", "triton", "is not installed")):
            pytest.skip(str(exc))
        raise
    methods = [m for m in dir(cls) if m.startswith(PREFIXES)]
    assert methods
    for name in methods:
        value = getattr(bench, name)(*args)
        if name.startswith("track_"):
            assert isinstance(value, (int, float)) and math.isfinite(value), (name, value)
            assert isinstance(getattr(cls, name).unit, str)
        else:
            assert value is None


CUDA_CASES = [p for p in CLASSES if any("cuda" in values for values in p.values[0].params)]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU skip path")
@pytest.mark.parametrize("cls", CUDA_CASES)
def test_cuda_params_skip_without_gpu(cls):
    """asv skips a benchmark whose setup raises NotImplementedError: every CUDA parameter does so here."""
    args = tuple("cuda" if "cuda" in values else values[0] for values in cls.params)
    with pytest.raises(NotImplementedError, match="cuda|dmmc"):
        cls().setup(*args)


# -- the score forms the benchmarks time compute the same score ---------------------------------
@pytest.mark.parametrize("d", [1, 2, 3])
def test_local_conv_score_full_box_is_exact_score(d):
    """With 2 ell + 1 = L the truncation box is the whole torus, so the local conv score is the exact score."""
    field, process = GaussianField(7, d, 0.0), VP()
    x = torch.randn((3, *field.shape), generator=torch.Generator().manual_seed(d), dtype=torch.float64)
    local = common.local_conv_score(field, process, 3)(x, 0.5)
    # each output is a sum of V products; summation rounding is bounded by V eps times the scale
    assert_close(local, exact_score(field, process)(x, 0.5), ulps=float(field.V))


@pytest.mark.parametrize("L,d,ell", [(16, 1, 3), (12, 2, 2), (8, 3, 1)])
def test_local_conv_score_matches_truncated_kernel_convolution(L, d, ell):
    """The (2 ell + 1)^d window convolution equals the full-size circular convolution with K_ell (THEORY 5)."""
    field, process = GaussianField(L, d, 0.0), VP()
    x = torch.randn((2, *field.shape), generator=torch.Generator().manual_seed(L), dtype=torch.float64)
    local = common.local_conv_score(field, process, ell)(x, 0.3)
    full = circular_conv(x, truncated_kernel(field, process, 0.3, ell))
    # both are sums of V products with the same non-zero terms; bound V eps of the scale
    assert_close(local, full, ulps=float(field.V))


def test_local_conv_score_float32_and_cache():
    """The window follows the input dtype and is cached per time."""
    field, process = GaussianField(16, 2, 0.0), VP()
    score = common.local_conv_score(field, process, 2)
    x64 = torch.randn((2, 16, 16), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out32 = score(x64.float(), 0.4)
    assert out32.dtype == torch.float32
    # float32 inputs and window: relative rounding of a 25-term sum, 25 float32 ulps of the scale
    assert_close(out32.double(), score(x64, 0.4), rtol=25 * eps(torch.float32), atol=25 * eps(torch.float32) * float(score(x64, 0.4).abs().max()))


def test_local_conv_score_rejects_bad_ell_and_d():
    field, process = GaussianField(8, 2, 0.0), VP()
    with pytest.raises(ValueError, match="ell"):
        common.local_conv_score(field, process, 4)  # 2 ell + 1 = 9 > L
    with pytest.raises(ValueError, match="ell"):
        common.local_conv_score(field, process, -1)
    with pytest.raises(ValueError, match="field.d"):
        common.local_conv_score(GaussianField(4, 4, 0.0), process, 1)


def test_full_size_convolution_is_exact_score():
    """The full-size conv benchmark's kernel reproduces the FFT score (THEORY 2: a circular convolution)."""
    field, process = GaussianField(8, 2, 0.0), VP()
    x = torch.randn((3, 8, 8), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    K = field.real_space_score_kernel(process, 0.5)
    # V-term sums plus two FFTs of length V: V eps of the scale
    assert_close(circular_conv(x, K), exact_score(field, process)(x, 0.5), ulps=float(field.V))


# -- plumbing ---------------------------------------------------------------------------------------
@given(z=st.floats(-3.0, 3.0), c=st.floats(1e-3, 1e3))
def test_fit_exponent_recovers_power_law(z, c):
    """An exact power law y = c x^z is fitted with its exponent (up to float64 rounding of logs)."""
    xs = np.array([8.0, 16.0, 32.0, 64.0])
    # log-log least squares on exact data: error of order eps * |log y| / spread of log x, far below 1e-9
    assert abs(common.fit_exponent(xs, c * xs**z) - z) < 1e-9


def test_fit_exponent_rejects_bad_input():
    with pytest.raises(ValueError, match="xs and ys"):
        common.fit_exponent([1.0], [2.0])
    with pytest.raises(ValueError, match="> 0"):
        common.fit_exponent([1.0, 2.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="distinct"):
        common.fit_exponent([2.0, 2.0], [1.0, 3.0])


@given(L=st.integers(3, 10**6))
def test_ell_for_fits_the_box_and_follows_log(L):
    """ell = round(ln L) clipped to [1, (L - 1) // 2]: the box fits the lattice, and it is ln L to 1/2 where unclipped."""
    ell = common.ell_for(L)
    assert 1 <= ell and 2 * ell + 1 <= L
    if 1 < round(math.log(L)) <= (L - 1) // 2:
        assert abs(ell - math.log(L)) <= 0.5


def test_resolve_and_size_cap():
    assert common.resolve("cpu", "float64") == (torch.device("cpu"), torch.float64)
    with pytest.raises(ValueError, match="device"):
        common.resolve("tpu", "float32")
    with pytest.raises(ValueError, match="dtype"):
        common.resolve("cpu", "float16")
    with pytest.raises(ValueError, match="L must be"):
        common.require_sites(0, 2, 1, "cpu")
    assert common.require_sites(8, 2, 4, "cpu") == 256
    with pytest.raises(NotImplementedError, match="cap"):
        common.require_sites(2, 21, 1, "cpu")  # 2^21 sites > 2^20


def test_median_seconds_counts_calls_and_validates():
    calls = []
    seconds = common.median_seconds(lambda: calls.append(1), "cpu", repeats=5, warmup=2)
    assert len(calls) == 7 and seconds >= 0.0
    calls.clear()
    best = common.best_seconds(lambda: calls.append(1), "cpu", repeats=4, warmup=0)
    assert len(calls) == 4 and best >= 0.0
    with pytest.raises(ValueError, match="repeats"):
        common.best_seconds(lambda: None, "cpu", repeats=0)
    with pytest.raises(ValueError, match="repeats"):
        common.median_seconds(lambda: None, "cpu", repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        common.median_seconds(lambda: None, "cpu", warmup=-1)
    with pytest.raises(ValueError, match="nbytes"):
        common.copy_bandwidth("cpu", nbytes=16)
    with pytest.raises(ValueError, match="L must be"):
        common.ell_for(2)
    with pytest.raises(NotImplementedError, match="cuda only"):  # kernel time is a GPU measurement
        common.kernel_seconds(lambda: None, "cpu")


# -- tracked figures carry the known answers -------------------------------------------------------
def test_sampler_error_tracks_order_the_methods():
    """At equal steps the exact generated-variance errors fall with the method's order (RK4 < Heun < Euler),
    and every method's error falls when the step count grows (THEORY 2: orders 4, 2, 1; EM order 1)."""
    from benchmarks.bench_samplers import SamplerErrors

    bench = SamplerErrors()
    errors = {}
    for method in ("euler", "heun", "rk4", "euler-maruyama"):
        for steps in (8, 32):
            bench.setup(method, steps)
            errors[method, steps] = bench.track_covariance_error(method, steps)
    for steps in (8, 32):
        assert errors["rk4", steps] < errors["heun", steps] < errors["euler", steps]
    for method in ("euler", "heun", "rk4", "euler-maruyama"):
        assert errors[method, 32] < errors[method, 8]
    # 4x the steps: RK4 gains at least 4^3 (order 4 minus a pre-asymptotic order), Heun 4^1.5
    assert errors["rk4", 8] / errors["rk4", 32] > 4**3
    assert errors["heun", 8] / errors["heun", 32] > 4**1.5


def test_steps_to_accuracy_tracks_match_theory():
    """THEORY 3/4: one-layer z = 2 (53..3292 steps for L = 8..64 give 1.99), two-layer z = 0 (22 steps at every L)."""
    from benchmarks.bench_trainers import StepsToAccuracy

    bench = StepsToAccuracy()
    bench.setup("one-layer")
    # deterministic counts; the band [1.8, 2.2] allows the log corrections of a 3-octave fit
    assert 1.8 < bench.track_exponent("one-layer") < 2.2
    bench.setup("two-layer")
    # THEORY 4: the same step count at every L, so the fitted slope is 0 up to rounding
    assert abs(bench.track_exponent("two-layer")) < 0.2
    rows = bench.table.rows
    assert rows[0]["two-layer"] == rows[-1]["two-layer"] == bench.track_steps_at_largest_L("two-layer")


@pytest.mark.parametrize("module", ["common", *BENCH_MODULES])
def test_no_module_level_name_looks_like_a_benchmark(module):
    """asv collects every module-level name with a benchmark prefix: helpers and imports (e.g. a bare
    ``time_grid``) must not carry one; benchmarks live in classes."""
    names = [n for n in vars(importlib.import_module(f"benchmarks.{module}")) if n.startswith(PREFIXES)]
    assert names == []


# -- the BENCHMARKS.md table reader ------------------------------------------------------------------
def test_summary_unflattens_asv_results(tmp_path):
    """asv stores one value per point of the cartesian product of the parameter lists, NaN for a skip."""
    from benchmarks import summary

    name = "bench_scores.ScoreRatios.track_fft_score_over_fft_pair"
    columns = ["result", "params", "version"]
    result = {
        "commit_hash": "0123456789abcdef",
        "date": 1,
        "result_columns": columns,
        "results": {name: [[1.5, float("nan"), 2.5, None], [["8", "16"], ["'cpu'", "'cuda'"]], "1"]},
    }
    assert summary.points(result, name) == [((8, "cpu"), 1.5), ((16, "cpu"), 2.5)]
    assert summary.points(result, "bench_x.Missing.track_y") == []
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "0123456789-existing.json").write_text(__import__("json").dumps(result))
    loaded = summary.latest_result("m", "01234567", results_dir=tmp_path)
    table = summary.markdown(loaded, "m")
    assert "| FFT score / real FFT pair (d=2, f32, batch 8) | <= 1.2 | 8: 1.5; 16: 2.5 |" in table
    with pytest.raises(ValueError, match="no asv results"):
        summary.latest_result("m", "ffffffff", results_dir=tmp_path)


def test_record_script_names_existing_benchmark_classes():
    """benchmarks/record.sh is valid bash and its target regex names only classes that exist (a rename
    would otherwise silently drop a target from the GPU record)."""
    import re
    import shutil
    import subprocess

    script = (ROOT / "benchmarks" / "record.sh").read_text()
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "record.sh")], check=True)
    names = re.search(r'^targets="([^"]+)"', script, re.M).group(1).split("|")
    classes = {n for m in BENCH_MODULES for n, obj in vars(importlib.import_module(f"benchmarks.{m}")).items() if inspect.isclass(obj)}
    assert names and set(names) <= classes, set(names) - classes


@pytest.mark.parametrize("L", [5, 8])
def test_real_fft_pair_is_the_identity(L):
    """The ratio reference rfftn -> irfftn returns its input (unitary pair; odd and even L), so it does
    the transforms a real filter does and nothing else (float64 rounding: 1e-13)."""
    x = torch.randn((3, L, L), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert_close(common.real_fft_pair(x, 2), x, rtol=1e-13, atol=1e-13)
