"""Input and divergence checks shared by every sampler loop (reverse samplers, SDE schemes, MCMC).

A diverged run must raise :class:`FloatingPointError` naming the step, never return NaN. Checking
``bool(torch.isfinite(x).all())`` after every step costs a host-device synchronisation per step,
which on a GPU stalls the launch queue (the small-L samplers become launch-bound).
:class:`FiniteGuard` records the per-step flag on the device and synchronises only every
``every`` steps (and at the end): on a GPU the loop runs ahead, on the CPU (``every = 1``,
:func:`check_interval`) it stops at the first bad step, before a NaN reaches the next score call.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["check_start", "grid_floats", "check_interval", "FiniteGuard", "FlagRecorder", "grid_guard"]


def check_start(x: torch.Tensor, name: str = "x_T") -> None:
    """``x`` must be a finite floating tensor (the start of a sampler loop)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor (float32 or float64), got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite (it contains NaN or inf)")


def grid_floats(times: torch.Tensor) -> list[float]:
    """A 1-D time grid as Python floats (one host copy before the loop, none inside it)."""
    return [float(t) for t in times.detach().cpu()]


def check_interval(device: torch.device) -> int:
    """Steps between host synchronisations: 1 on the CPU (a sync is free there), 64 on an accelerator."""
    return 1 if torch.device(device).type == "cpu" else 64


class FiniteGuard:
    """Deferred ``isfinite`` check of a loop of ``n_steps`` steps.

    ``record(i, x)`` writes ``isfinite(x).all()`` into a device-side flag vector (no sync) and every
    ``every`` steps calls :meth:`check`, which synchronises once and raises
    ``FloatingPointError(describe(i_bad))`` for the first non-finite step ``i_bad``. Call
    :meth:`check` after the loop so the last steps are covered.
    """

    def __init__(
        self, n_steps: int, device: torch.device | str, describe: Callable[[int], str], every: int | None = None
    ) -> None:
        every = check_interval(torch.device(device)) if every is None else every
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an int >= 1, got every={every!r}")
        self.ok = torch.ones(max(n_steps, 0), dtype=torch.bool, device=device)
        self.describe = describe
        self.every = every
        self._checked = 0  # steps [0, _checked) are known finite

    def record(self, i: int, x: torch.Tensor) -> None:
        """Flag step ``i`` with ``isfinite(x).all()``; check every ``every`` steps."""
        self.ok[i] = torch.isfinite(x).all()
        if (i + 1) % self.every == 0:
            self.check(i + 1)

    def check(self, upto: int | None = None) -> None:
        """Raise for the first non-finite step among ``[0, upto)`` (default: all recorded steps)."""
        upto = self.ok.numel() if upto is None else upto
        if upto <= self._checked:
            return
        flags = self.ok[self._checked : upto]
        if not bool(flags.all()):
            first = self._checked + int(torch.nonzero(~flags)[0, 0])
            raise FloatingPointError(self.describe(first))
        self._checked = upto

    def check_flags(self, flags: torch.Tensor) -> None:
        """Check a whole loop's flags at once (recorded by a :class:`FlagRecorder` inside a captured loop)."""
        if tuple(flags.shape) != tuple(self.ok.shape):
            raise ValueError(f"flags must have shape {tuple(self.ok.shape)}, got {tuple(flags.shape)}")
        self.ok, self._checked = flags, 0
        self.check()


class FlagRecorder:
    """The guard of a captured loop: ``record`` keeps each step's ``isfinite(x).all()`` as a tensor
    (no synchronisation, nothing read on the host), :meth:`stacked` returns them for
    :meth:`FiniteGuard.check_flags` after the run."""

    def __init__(self) -> None:
        self.flags: list[torch.Tensor] = []

    def record(self, i: int, x: torch.Tensor) -> None:
        self.flags.append(torch.isfinite(x).all())

    def check(self, upto: int | None = None) -> None:
        """Nothing to do inside the loop: the flags are checked from the loop's output."""

    def stacked(self, device: torch.device | str) -> torch.Tensor:
        return torch.stack(self.flags) if self.flags else torch.ones(0, dtype=torch.bool, device=device)


SCORE_HINT = "the score returned NaN/inf or the step is unstable (use more steps or another grid)"


def grid_guard(times: list[float], device: torch.device | str, name: str, hint: str = SCORE_HINT) -> FiniteGuard:
    """A :class:`FiniteGuard` for a loop over the grid ``times`` whose message names the step and its times."""

    def describe(i: int) -> str:
        return f"{name}: non-finite state after step {i} (t = {times[i]:.6g} -> {times[i + 1]:.6g}); {hint}"

    return FiniteGuard(len(times) - 1, device, describe)
