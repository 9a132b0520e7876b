"""SDE solvers driven by a Brownian path (Brownian trees): exact noise probing (THEORY 1, 2).

k-diffusion's ``dpmpp_sde`` / ``dpmpp_2m_sde`` / ``dpmpp_3m_sde`` and diffusers' ``DPMSolverSDEScheduler``
draw their noise as ``noise_sampler(sigma, sigma_next) = (W(sigma_next) - W(sigma)) / sqrt|sigma_next - sigma|``
from one Brownian path ``W`` in sigma (torchsde's ``BrownianTree`` / ``BrownianInterval``).  Two queries
over nested intervals (``dpmpp_sde`` asks for ``[sigma_i, sigma_mid]`` and then ``[sigma_i, sigma_{i+1}]``)
are correlated, so replacing the tree by independent draws changes the sampler's law.

:class:`BrownianProbe` reproduces that law exactly and linearly: a recording run
(:class:`NoiseRecorder`) collects every queried endpoint; the sorted endpoints cut the sigma axis into
elementary intervals ``[p_j, p_{j+1}]``, each given an independent increment ``sqrt(p_{j+1} - p_j) xi_j``
with ``xi_j`` one standard-normal draw; a query is answered by the sum of the increments it covers,
divided by ``sqrt|b - a|``.  With the exact (linear) model the output is linear in the start and in every
``xi_j``, so basis-state probing (:mod:`critdiff_ref.validate.checks.probes`) gives the exact generated covariance.  For samplers that
query disjoint intervals (every ancestral sampler) this is the law of independent draws.

The weak-order row that uses this probing for stochastic denoiser / k-diffusion and diffusers runners is
:func:`critdiff_ref.validate.checks.order.probed_weak_order_row`.
"""

from __future__ import annotations

import bisect
import math
from typing import Callable

import torch

__all__ = ["NoiseRecorder", "BrownianProbe", "BrownianPathNoiseSampler", "brownian_noise_run"]

# relative distance below which two queried endpoints are one point (float32 schedules recompute a sigma
# as exp(-(-log sigma)), equal to ~1e-7); merging changes an increment's variance by that relative amount
_MERGE_RTOL = 1e-6


def _float(v) -> float:
    return float(v.reshape(-1)[0]) if isinstance(v, torch.Tensor) else float(v)


class NoiseRecorder:
    """``noise_sampler(sigma, sigma_next)`` that records the queried endpoints and returns zeros shaped ``shape``."""

    def __init__(self, shape, dtype=torch.float64, device=None):
        self.shape, self.dtype, self.device = tuple(shape), dtype, device
        self.points: list[float] = []

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        self.points.extend((_float(sigma), _float(sigma_next)))
        return torch.zeros(self.shape, dtype=self.dtype, device=self.device)


def _merge(points) -> list[float]:
    out: list[float] = []
    for p in sorted(set(points)):
        if out and abs(p - out[-1]) <= _MERGE_RTOL * max(abs(p), abs(out[-1])):
            continue
        out.append(p)
    return out


class BrownianProbe:
    """``noise_sampler(sigma, sigma_next)``: normalised increments of one Brownian path in sigma built from
    ``draw`` (module docstring).  ``points``: every endpoint the sampler will query, in query order, two per
    query (a :class:`NoiseRecorder`'s ``points``); ``draw(shape, dtype, device)`` is called once per elementary
    interval, when a query first covers it, and an increment is dropped after the last query covering it (probe
    draws are batch-sized: keeping them all would hold ``M`` of them at once)."""

    def __init__(self, points, draw: Callable, shape, dtype=torch.float64, device=None):
        self.points = _merge(points)
        if len(self.points) < 2:
            raise ValueError(f"a Brownian path needs >= 2 distinct queried points, got {self.points}")
        self.draw, self.shape, self.dtype, self.device = draw, tuple(shape), dtype, device
        self.increments: dict[int, torch.Tensor] = {}
        self.last_use: dict[int, int] = {}
        for q, (a, b) in enumerate(zip(points[0::2], points[1::2])):
            lo, hi = sorted((self._index(_float(a)), self._index(_float(b))))
            for j in range(lo, hi):
                self.last_use[j] = q
        self.query = 0

    def _index(self, p: float) -> int:
        i = bisect.bisect_left(self.points, p)
        for j in (i - 1, i):
            if 0 <= j < len(self.points) and abs(self.points[j] - p) <= _MERGE_RTOL * max(abs(p), 1e-300):
                return j
        raise ValueError(f"noise_sampler queried sigma = {p!r}, not among the recorded points")

    def _increment(self, j: int) -> torch.Tensor:
        if j not in self.increments:
            h = self.points[j + 1] - self.points[j]
            self.increments[j] = math.sqrt(h) * self.draw(self.shape, self.dtype, self.device)
        return self.increments[j]

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        a, b = _float(sigma), _float(sigma_next)
        i, j = self._index(a), self._index(b)
        lo, hi, sign = (i, j, 1.0) if i <= j else (j, i, -1.0)
        q, self.query = self.query, self.query + 1
        if lo == hi:
            return torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        w = sum(self._increment(k) for k in range(lo, hi))
        for k in range(lo, hi):
            if self.last_use.get(k, q) <= q:
                self.increments.pop(k, None)
        return (sign / math.sqrt(abs(self.points[hi] - self.points[lo]))) * w


class BrownianPathNoiseSampler:
    """``noise_sampler(sigma, sigma_next)`` from one exact Brownian path in sigma, sampled where it is queried.

    A torchsde-free equivalent in law of k-diffusion's ``BrownianTreeNoiseSampler``: the first queried point
    has ``W = 0``; a new point outside the known ones extends the path by an independent increment
    ``sqrt(dt) z``, a point between known neighbours ``(t0, w0) < (t1, w1)`` is drawn from the Brownian bridge
    ``N(w0 + (p - t0)/(t1 - t0) (w1 - w0), (p - t0)(t1 - p)/(t1 - t0))``; a point within a relative 1e-6 of a
    known one is that point (as in :class:`BrownianProbe`).  ``x`` gives shape, dtype, device; randomness
    only from ``generator``.
    """

    def __init__(self, x: torch.Tensor, generator: torch.Generator | None = None):
        self.shape, self.dtype, self.device, self.generator = tuple(x.shape), x.dtype, x.device, generator
        self.t: list[float] = []
        self.w: list[torch.Tensor] = []

    def _z(self) -> torch.Tensor:
        return torch.randn(self.shape, generator=self.generator, dtype=self.dtype, device=self.device)

    def _value(self, p: float) -> torch.Tensor:
        i = bisect.bisect_left(self.t, p)
        for j in (i - 1, i):  # a point recomputed with rounding (exp(-(-log sigma))) is the known one
            if 0 <= j < len(self.t) and abs(self.t[j] - p) <= _MERGE_RTOL * max(abs(p), abs(self.t[j])):
                return self.w[j]
        if not self.t:
            w = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        elif i == 0:
            w = self.w[0] - math.sqrt(self.t[0] - p) * self._z()
        elif i == len(self.t):
            w = self.w[-1] + math.sqrt(p - self.t[-1]) * self._z()
        else:
            t0, t1, w0, w1 = self.t[i - 1], self.t[i], self.w[i - 1], self.w[i]
            mean = w0 + (p - t0) / (t1 - t0) * (w1 - w0)
            w = mean + math.sqrt((p - t0) * (t1 - p) / (t1 - t0)) * self._z()
        self.t.insert(i, p)
        self.w.insert(i, w)
        return w

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        a, b = _float(sigma), _float(sigma_next)
        if a == b:
            return torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        wa = self._value(a)
        return (self._value(b) - wa) / math.sqrt(abs(b - a))


def brownian_noise_run(run_with: Callable, draw: Callable, z: torch.Tensor):
    """``run_with(z, noise_sampler) -> x`` with Brownian-path noise made of ``draw`` calls (exact probing).

    Two runs: one of the first batch row with a :class:`NoiseRecorder` (the queried endpoints; the
    schedule does not depend on the batch), one of ``z`` with a :class:`BrownianProbe` over them.
    """
    shape, dtype, device = tuple(z.shape), z.dtype, z.device
    recorder = NoiseRecorder((1, *shape[1:]), dtype, device)
    run_with(z[:1], recorder)
    if not recorder.points:
        return run_with(z, NoiseRecorder(shape, dtype, device))
    return run_with(z, BrownianProbe(recorder.points, draw, shape, dtype, device))
