"""Unit tests of critdiff_ref.samplers (grids, reverse, exact): grids, starts, the samplers against their
exact per-mode maps, reproducibility, dtype/device, divergence errors and bad input (THEORY 1, 2)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from critdiff_ref import OU, VE, VP, GaussianField, TwoGaussianMixture, lattice
from critdiff_ref.samplers import (
    GRID_KINDS,
    METHODS,
    apply_gain,
    exact_flow,
    exact_start,
    fourier_sample,
    measured_order,
    ode_gain,
    ode_log_gain,
    ode_step_factors,
    probability_flow,
    pure_noise_start,
    reference_ode,
    resolve_grid,
    reverse_sde,
    score_kernel_fn,
    sde_gain,
    sde_variance,
    standard_normal_start,
    stiffness,
    time_grid,
)
from critdiff_ref.scores import exact_score
from critdiff_ref.strategies import processes, seeds

EPS = torch.finfo(torch.float64).eps
CUDA = [pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


# -- grids ------------------------------------------------------------------------------------
@given(process=processes(), steps=st.integers(1, 64), kind=st.sampled_from(GRID_KINDS), frac=st.floats(0.0, 0.5))
def test_time_grid_endpoints_and_monotonicity(process, steps, kind, frac):
    """Every grid has steps + 1 float64 times, t_0 = T, t_N = t_min, strictly decreasing."""
    t_min = frac * process.T if kind != "log" else max(frac, 1e-3) * process.T
    t = time_grid(process, steps, kind, t_min)
    assert t.dtype == torch.float64 and t.shape == (steps + 1,)
    assert float(t[0]) == process.T and float(t[-1]) == t_min
    assert bool((torch.diff(t) < 0).all())


def test_time_grid_shapes_follow_their_formulas():
    """uniform: constant steps; log: constant ratios; karras: (T^(1/rho) + i/N (t_min^(1/rho) - T^(1/rho)))^rho."""
    p = OU(T=2.0)
    u = time_grid(p, 8, "uniform", 0.5)
    # 8 subtractions of numbers <= 2: a few ulps
    torch.testing.assert_close(torch.diff(u), torch.full((8,), -0.1875, dtype=torch.float64), rtol=0, atol=8 * EPS)
    g = time_grid(p, 10, "log", 0.02)
    torch.testing.assert_close(g[1:] / g[:-1], torch.full((10,), 0.01 ** 0.1, dtype=torch.float64), rtol=16 * EPS, atol=0)
    k = time_grid(p, 5, "karras", 0.0, rho=7.0)
    i = torch.arange(6, dtype=torch.float64) / 5
    torch.testing.assert_close(k, (2.0 ** (1 / 7) * (1 - i)) ** 7, rtol=16 * EPS, atol=16 * EPS)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(steps=0), ValueError, "steps"),
        (dict(steps=2.5), TypeError, "steps"),
        (dict(steps=True), TypeError, "steps"),
        (dict(steps=4, t_min=-0.1), ValueError, "t_min"),
        (dict(steps=4, t_min=1.0), ValueError, "t_min"),
        (dict(steps=4, t_min=float("nan")), ValueError, "t_min"),
        (dict(steps=4, t_min="0"), TypeError, "t_min"),
        (dict(steps=4, kind="cosine"), ValueError, "kind"),
        (dict(steps=4, kind="log", t_min=0.0), ValueError, "t_min > 0"),
        (dict(steps=4, kind="karras", rho=0.0), ValueError, "rho"),
    ],
)
def test_time_grid_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        time_grid(VP(), **kwargs)


def test_resolve_grid_explicit_and_bad_input():
    p = VE()
    t = torch.tensor([1.0, 0.5, 0.1, 0.0], dtype=torch.float64)
    assert torch.equal(resolve_grid(p, None, t), t)
    assert torch.equal(resolve_grid(p, 3, [1.0, 0.5, 0.1, 0.0]), t)
    with pytest.raises(ValueError, match="strictly decreasing"):
        resolve_grid(p, None, torch.tensor([1.0, 0.5, 0.5, 0.0]))
    with pytest.raises(ValueError, match=r"\[0, T\]"):
        resolve_grid(p, None, torch.tensor([1.5, 0.5, 0.0]))
    with pytest.raises(ValueError, match="steps=2"):
        resolve_grid(p, 2, t)
    with pytest.raises(ValueError, match="1-D"):
        resolve_grid(p, None, torch.ones(2, 2))
    with pytest.raises(TypeError, match="grid"):
        resolve_grid(p, None, 3.0)


# -- the samplers are exactly their per-mode maps on a Gaussian field --------------------------
@pytest.mark.parametrize("grid", GRID_KINDS)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_probability_flow_is_the_exact_gain(method, grid):
    """F[probability_flow(x_T)] = ode_gain * F[x_T] for each method and grid (the gain is the sampler)."""
    field, process = GaussianField(5, 2, 0.0), VP()
    g = torch.Generator().manual_seed(1)
    x_T = exact_start(field, process, 3, g)
    times = time_grid(process, 12, grid, t_min=1e-3)
    x_0 = probability_flow(exact_score(field, process), process, x_T, None, method, times)
    gain = ode_gain(score_kernel_fn(field, process), process, times, method)
    # 12 steps of FFT round trips: ~ 12 * log2(V) eps relative to max |x|; 1e3 eps is a safe bound
    scale = float(x_T.abs().max())
    torch.testing.assert_close(x_0, apply_gain(x_T, gain, 2), rtol=0, atol=1e3 * EPS * scale)


def test_reverse_sde_is_the_exact_recursion():
    """With recorded noise, reverse_sde equals x <- m_i x + g sqrt(h) z per mode; with zero noise, sde_gain."""
    field, process = GaussianField(4, 3, 0.5), OU(T=2.0)
    g = torch.Generator().manual_seed(2)
    x_T = exact_start(field, process, 2, g)
    times = time_grid(process, 10)
    recorded = []

    def noise(x, gen):
        z = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        recorded.append(z)
        return z

    x_0 = reverse_sde(exact_score(field, process), process, x_T, None, g, times, noise=noise)
    kernel = score_kernel_fn(field, process)
    x_k = lattice.fft(x_T, 3)
    for i in range(10):
        t, h = float(times[i]), float(times[i] - times[i + 1])
        m = 1.0 + h * (float(process.gamma(t)) + float(process.g(t)) ** 2 * kernel(t))
        x_k = m * x_k + float(process.g(t)) * math.sqrt(h) * lattice.fft(recorded[i], 3)
    # 10 steps of FFT round trips, numbers O(1): 1e3 eps
    torch.testing.assert_close(x_0, lattice.ifft(x_k, 3).real, rtol=0, atol=1e3 * EPS)
    x_mean = reverse_sde(exact_score(field, process), process, x_T, None, grid=times, noise=lambda x, _: torch.zeros_like(x))
    torch.testing.assert_close(x_mean, apply_gain(x_T, sde_gain(kernel, process, times), 3), rtol=0, atol=1e3 * EPS)


def test_sde_variance_equals_the_step_by_step_recursion():
    """The unrolled (cumprod) variance equals v <- m_i^2 v + q_i iterated in a Python loop."""
    field, process = GaussianField(6, 1, 0.0), VE(10.0)
    kernel, mask = score_kernel_fn(field, process), field.mode_mask()
    times = time_grid(process, 40, "karras")
    v = torch.full(field.shape, float(process.Xi(process.T)), dtype=torch.float64)
    for t, t_next in zip(times[:-1].tolist(), times[1:].tolist()):
        h = t - t_next
        m = 1.0 + h * (float(process.gamma(t)) + float(process.g(t)) ** 2 * kernel(t))
        v = m * m * v + float(process.g(t)) ** 2 * h * mask.double()
    # 40 multiply-adds: both orders of evaluation agree to ~40 eps relative
    torch.testing.assert_close(sde_variance(kernel, process, times, float(process.Xi(process.T)), mask), v, rtol=1e2 * EPS, atol=0)


def test_vectorised_and_callable_kernels_agree():
    """A plain callable kernel (float -> tensor) gives the same gains as the vectorised score_kernel_fn."""
    field, process = GaussianField(4, 2, 0.2), OU(T=3.0)
    plain = lambda t: field.score_kernel(process, t)  # noqa: E731
    fast = score_kernel_fn(field, process)
    times = time_grid(process, 30)
    for method in METHODS:
        torch.testing.assert_close(ode_gain(plain, process, times, method), ode_gain(fast, process, times, method), rtol=16 * EPS, atol=0)
    torch.testing.assert_close(sde_variance(plain, process, times, 1.0), sde_variance(fast, process, times, 1.0), rtol=16 * EPS, atol=0)
    assert ode_step_factors(fast, process, times, "heun").shape == (30, 4, 4)
    # OU ODE rate -1 + 1/C_t(k) is largest at t = 0 and the highest mode: C_0 = 1 / (8 + 0.2)
    assert math.isclose(stiffness(fast, process), 8.2 - 1.0, rel_tol=1e-12)


def test_exact_flow_composes_and_ends_at_c0():
    """exact_flow(T -> s) then (s -> 0) is exact_flow(T -> 0), and multiplies each mode by sqrt(c0 / C_T)."""
    field, process = GaussianField(6, 2, 0.0), VE()
    x_T = exact_start(field, process, 2, torch.Generator().manual_seed(3))
    direct = exact_flow(field, process, x_T, process.T, 0.0)
    two_step = exact_flow(field, process, exact_flow(field, process, x_T, process.T, 0.4), 0.4, 0.0)
    scale = float(x_T.abs().max())
    torch.testing.assert_close(two_step, direct, rtol=0, atol=1e2 * EPS * scale)  # two FFT round trips
    ratio = (field.c0() / field.mode_variance(process, process.T)).nan_to_num(0.0).sqrt()
    torch.testing.assert_close(lattice.fft(direct, 2), lattice.fft(x_T, 2) * ratio, rtol=0, atol=1e2 * EPS * scale)


def test_reference_ode_agrees_with_exact_flow_and_rk4():
    """scipy's DOP853 on the PF-ODE equals the exact Fourier map (Gaussian) and fine RK4 (two peaks)."""
    field, process = GaussianField(4, 1, 0.3), OU(T=2.0)
    x_T = exact_start(field, process, 2, torch.Generator().manual_seed(4))
    ref = reference_ode(exact_score(field, process), process, x_T)
    # rtol 1e-10 per step of an adaptive 8th-order method: global error ~1e-9 relative to |x| ~ 1
    torch.testing.assert_close(ref, exact_flow(field, process, x_T, process.T, 0.0), rtol=0, atol=1e-8)
    target, vp = TwoGaussianMixture(1.0, 0.5), VP()
    y_T = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64)
    score = exact_score(target, vp)
    # RK4 with 400 steps: h * rate <= 0.05, global error ~ (h rate)^4 ~ 1e-6 at most
    torch.testing.assert_close(probability_flow(score, vp, y_T, 400), reference_ode(score, vp, y_T), rtol=0, atol=1e-6)


# -- starts ----------------------------------------------------------------------------------
def test_starts_shapes_scales_and_reproducibility():
    field, process = GaussianField(4, 2, 0.0), VE(sigma=9.0)
    a = exact_start(field, process, 5, torch.Generator().manual_seed(7))
    b = exact_start(field, process, 5, torch.Generator().manual_seed(7))
    assert a.shape == (5, 4, 4) and a.dtype == torch.float64 and torch.equal(a, b)
    # zero mode removed at r = 0: the site mean of every sample is 0 (sum of 16 numbers O(1))
    assert float(a.mean(dim=(-2, -1)).abs().max()) < 1e2 * EPS
    z = torch.randn((3, 4), generator=torch.Generator().manual_seed(8), dtype=torch.float32)
    x = pure_noise_start((3, 4), process, torch.Generator().manual_seed(8), dtype=torch.float32)
    torch.testing.assert_close(x, math.sqrt(float(process.Xi(process.T))) * z)
    y = standard_normal_start(6, torch.Generator().manual_seed(9))
    assert torch.equal(y, torch.randn(6, generator=torch.Generator().manual_seed(9), dtype=torch.float64))
    w = pure_noise_start((2, 4, 4), process, torch.Generator().manual_seed(1), noise=field.noise)
    assert float(w.mean(dim=(-2, -1)).abs().max()) < 1e2 * EPS * math.sqrt(float(process.Xi(process.T)))
    assert fourier_sample(field, 3, torch.Generator().manual_seed(1)).shape == (3, 4, 4)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: exact_start(GaussianField(4, 1), OU(), 0), ValueError, "n must"),
        (lambda: exact_start("field", OU(), 2), TypeError, "field"),
        (lambda: fourier_sample(GaussianField(4, 1), 1.5), ValueError, "n must"),
        (lambda: pure_noise_start((2, 0), OU()), ValueError, "shape"),
        (lambda: standard_normal_start((2.5,)), ValueError, "shape"),
        (lambda: exact_flow(GaussianField(4, 1), OU(), torch.zeros(4), 6.0, 0.0), ValueError, "s must"),
    ],
)
def test_start_and_exact_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# -- generic behaviour ----------------------------------------------------------------------
@settings(max_examples=4)
@given(seed=seeds())
def test_reverse_sde_reproducible_and_trajectory(seed):
    """The same generator seed gives the same x_0; the trajectory starts at x_T and ends at x_0."""
    target, process = TwoGaussianMixture(1.0, 0.5), VE()
    score, x_T = exact_score(target, process), torch.zeros(50, dtype=torch.float64)
    a = reverse_sde(score, process, x_T, 20, torch.Generator().manual_seed(seed))
    b, traj = reverse_sde(score, process, x_T, 20, torch.Generator().manual_seed(seed), return_trajectory=True)
    assert torch.equal(a, b) and traj.shape == (21, 50) and torch.equal(traj[0], x_T) and torch.equal(traj[-1], b)
    x, traj = probability_flow(score, process, x_T + 1.0, 5, "heun", return_trajectory=True)
    assert traj.shape == (6, 50) and torch.equal(traj[-1], x)
    _, snaps = probability_flow(score, process, x_T + 1.0, 5, "heun", snapshots=[5, 0, 2])
    assert torch.equal(snaps, traj[[5, 0, 2]])
    _, snaps = reverse_sde(score, process, x_T, 20, torch.Generator().manual_seed(seed), snapshots=range(0, 21, 10))
    assert torch.equal(snaps[-1], b)
    for bad in ([], [21], [1.0], 3):
        with pytest.raises(ValueError, match="snapshots"):
            reverse_sde(score, process, x_T, 20, snapshots=bad)
    with pytest.raises(ValueError, match="not both"):
        probability_flow(score, process, x_T, 5, return_trajectory=True, snapshots=[1])


@pytest.mark.parametrize("device", ["cpu", *CUDA])
def test_dtype_and_device_follow_x_T(device):
    """float32 in -> float32 out on the same device, and close to the float64 reference."""
    field, process = GaussianField(8, 2, 0.0), OU(T=3.0)
    x64 = exact_start(field, process, 4, torch.Generator().manual_seed(5)).to(device)
    x32 = x64.float()
    score = exact_score(field, process)
    out32 = probability_flow(score, process, x32, 20, "rk4")
    out64 = probability_flow(score, process, x64, 20, "rk4")
    assert out32.dtype == torch.float32 and out32.device == x32.device
    # 20 RK4 steps in float32: rounding ~ 80 evaluations * eps32 relative; 1e3 eps32 is generous
    torch.testing.assert_close(out32.double(), out64, rtol=0, atol=1e3 * torch.finfo(torch.float32).eps * float(x64.abs().max()))
    sde = reverse_sde(score, process, x32, 10, torch.Generator(device=device).manual_seed(1), noise=field.noise)
    assert sde.dtype == torch.float32 and sde.device == x32.device


def test_diverging_integration_raises_naming_step_and_time():
    """A NaN score or an unstable explicit step raises FloatingPointError naming the step and its times."""
    process = VP()
    nan_score = lambda x, t: x * float("nan") if t < 0.5 else -x  # noqa: E731
    with pytest.raises(FloatingPointError, match=r"step \d+ \(t = 0\.4\d*"):
        probability_flow(nan_score, process, torch.ones(3), 10, "euler")
    with pytest.raises(FloatingPointError, match=r"reverse_sde: non-finite state after step \d+ \(t = "):
        reverse_sde(nan_score, process, torch.ones(3), 10)
    # Euler with h * rate ~ 1e38: |1 + h lambda| ~ 1e38 per step overflows float32 within 2 steps
    explosive = lambda x, t: -1e40 * x  # noqa: E731
    with pytest.raises(FloatingPointError, match=r"step [01] \(t = "):
        probability_flow(explosive, OU(T=1.0), torch.ones(2, dtype=torch.float32), 4, "euler")


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda s: probability_flow(s, OU(), torch.ones(2), 4, "rk5"), ValueError, "method"),
        (lambda s: probability_flow(s, OU(), [1.0, 2.0], 4), TypeError, "x_T"),
        (lambda s: probability_flow(s, OU(), torch.ones(2, dtype=torch.int64), 4), TypeError, "floating"),
        (lambda s: probability_flow(s, OU(), torch.tensor([1.0, float("inf")]), 4), ValueError, "finite"),
        (lambda s: reverse_sde(s, OU(), torch.ones(2), 0), ValueError, "steps"),
        (lambda s: reverse_sde(s, OU(), torch.ones(2), 4, noise=3), TypeError, "noise"),
        (lambda s: reference_ode(s, OU(), torch.ones(2), rtol=1.0), ValueError, "rtol"),
        (lambda s: reference_ode(s, OU(), torch.ones(2), t_min=-1.0), ValueError, "t_min"),
    ],
)
def test_sampler_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call(lambda x, t: -x)


# -- exact-gain helpers --------------------------------------------------------------------
def test_measured_order_and_gain_bad_input():
    """measured_order recovers p from C N^-p exactly; the gain helpers reject bad methods and arguments."""
    steps = [8, 16, 32, 64]
    # exact power laws: the least-squares slope is p up to rounding of four logs
    assert math.isclose(measured_order([3.0 * n**-2.5 for n in steps], steps), 2.5, rel_tol=1e-12)
    for errors, n, match in [([1.0], [2], "same length"), ([1.0, 0.0], [2, 4], "errors"), ([1.0, 0.5], [2, 2], "steps")]:
        with pytest.raises(ValueError, match=match):
            measured_order(errors, n)
    field, process = GaussianField(4, 1), OU()
    kernel = score_kernel_fn(field, process)
    with pytest.raises(ValueError, match="method"):
        ode_gain(kernel, process, time_grid(process, 4), "midpoint")
    with pytest.raises(ValueError, match="method"):
        ode_log_gain(kernel, process, time_grid(process, 4), "midpoint")
    with pytest.raises(ValueError, match="n_probe"):
        stiffness(kernel, process, n_probe=1)
    with pytest.raises(TypeError, match="field"):
        score_kernel_fn(None, process)
