"""Unit tests for critdiff_ref.samplers.guard: the deferred (sync-free) non-finite check."""

from __future__ import annotations

import math

import pytest
import torch

from critdiff_ref.samplers.guard import FiniteGuard, check_interval, check_start, grid_guard


def _states(n: int, bad: int | None) -> list[torch.Tensor]:
    return [torch.full((3,), math.nan if i == bad else float(i)) for i in range(n)]


@pytest.mark.parametrize("every", [1, 4, 64])
@pytest.mark.parametrize("bad", [0, 5, 9])
def test_first_bad_step_is_named_for_any_interval(every, bad):
    """Whatever the sync interval, the error names the first non-finite step, never a later one."""
    guard = FiniteGuard(10, "cpu", lambda i: f"bad step {i}", every=every)
    with pytest.raises(FloatingPointError, match=f"bad step {bad}$"):
        for i, x in enumerate(_states(10, bad)):
            guard.record(i, x)
            x = x * 2  # later steps stay NaN: the guard must still report the first one
        guard.check()


def test_deferred_check_only_syncs_at_the_interval():
    """With every = 4 a NaN at step 1 is found at the 4th record (steps 0..3), not earlier."""
    guard = FiniteGuard(10, "cpu", lambda i: f"step {i}", every=4)
    states = _states(10, 1)
    for i in range(3):
        guard.record(i, states[i])  # no raise yet: the flags are only read every 4 steps
    with pytest.raises(FloatingPointError, match="step 1$"):
        guard.record(3, states[3])


def test_finite_loop_passes_and_tail_is_checked():
    guard = FiniteGuard(6, "cpu", lambda i: f"step {i}", every=4)
    for i, x in enumerate(_states(6, None)):
        guard.record(i, x)
    guard.check()  # no error
    tail = FiniteGuard(6, "cpu", lambda i: f"step {i}", every=4)
    for i, x in enumerate(_states(6, 5)):
        tail.record(i, x)  # step 5 lies after the last interval check (steps 0..3)
    with pytest.raises(FloatingPointError, match="step 5$"):
        tail.check()


def test_interval_and_messages():
    assert check_interval(torch.device("cpu")) == 1
    assert check_interval(torch.device("cuda")) == 64  # only a device type: no GPU needed
    with pytest.raises(ValueError, match="every"):
        FiniteGuard(3, "cpu", str, every=0)
    guard = grid_guard([1.0, 0.5, 0.0], "cpu", "demo")
    guard.record(0, torch.zeros(2))
    with pytest.raises(FloatingPointError, match=r"demo: non-finite state after step 1 \(t = 0.5 -> 0\)"):
        guard.record(1, torch.tensor([math.inf, 0.0]))


@pytest.mark.parametrize("bad, err", [([1, 2], TypeError), (torch.tensor([1, 2]), TypeError), (torch.tensor([math.nan]), ValueError)])
def test_check_start(bad, err):
    with pytest.raises(err, match="x0"):
        check_start(bad, "x0")


@pytest.mark.parametrize("sampler", ["probability_flow", "reverse_sde"])
def test_samplers_name_the_step_with_the_accelerator_interval(monkeypatch, sampler):
    """The GPU path (sync every 64 steps) on the CPU: a score that turns NaN for t <= 0.5 on a
    10-step uniform grid over [0, 1] first breaks step 5 (t = 0.5 -> 0.4) of a scheme that only
    evaluates at the left end (Euler, Euler–Maruyama); the error names it."""
    from critdiff_ref import VE, samplers
    from critdiff_ref.samplers import guard as guard_module

    monkeypatch.setattr(guard_module, "check_interval", lambda device: 64)

    def score(x, t):
        return -x if t > 0.5 + 1e-9 else torch.full_like(x, math.nan)

    run = getattr(samplers, sampler)
    args = (score, VE(sigma=2.0), torch.ones(4, dtype=torch.float64), 10)
    with pytest.raises(FloatingPointError, match=r"after step 5 \(t = 0.5 -> 0.4\)"):
        run(*args, method="euler") if sampler == "probability_flow" else run(*args, torch.Generator().manual_seed(0))
