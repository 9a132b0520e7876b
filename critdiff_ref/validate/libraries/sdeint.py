"""torchsde ``sdeint`` as a reverse-time SDE sampler, with an exactly probed Brownian motion (THEORY 1, 2).

The reverse SDE ``dx = [-gamma x - g^2 s_t(x)] dt + g dW_bar`` from ``T`` to ``t_min`` is integrated forward in
the reverse time ``u = T - t`` (torchsde needs increasing times): drift ``+gamma(t) y + g(t)^2 s_t(y)``,
diffusion ``g(t)``, on the flattened field ``(batch, V)``, uniform steps ``du = (T - t_min) / steps``.  The noise
does not depend on the state, so Ito and Stratonovich coincide and every torchsde method applies:

- noise type ``"diagonal"`` (``g`` times ones) for ``euler``, ``milstein``, ``reversible_heun``, ``heun``,
  ``midpoint``, ``euler_heun``; ``"additive"`` (only ``g_prod`` given, so no ``V x V`` matrix is formed) for
  ``srk``, whose diagonal tableau (SRID2) multiplies ``(dW^2 - du)/2`` by ``g(t) - 4/3 g(t + du/4) + 1/3 g(t + du)``,
  not zero when ``g`` depends on time, which is not linear in the noise; the additive tableau (SRA1) is.
- Brownian motion: ``bm=`` if given; else, with ``noise=`` (the score adapter's noise probe, ``noise(x, generator)``),
  a :class:`ProbedBrownian` whose increment over each queried interval is ``sqrt(du) noise(x)`` (and, for ``srk``,
  the space-time Levy area ``sqrt(du / 12) noise(x)``, independent): the output is linear in ``x_T`` and every
  draw, so validate() gets the exact covariance and weak order; else a ``torchsde.BrownianInterval`` seeded
  from ``generator``.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch

from ...processes import Process

__all__ = ["SDE_METHODS", "ProbedBrownian", "ReverseSDE", "DiagonalReverseSDE", "sdeint_reverse_sde"]

# method -> (sde_type, noise_type, expected weak order for additive noise).  Euler-Maruyama and Milstein (which is
# Euler-Maruyama when g does not depend on x) and Euler-Heun: weak order 1; SRA1 (Roessler 2010): 2; Stratonovich
# Heun, midpoint and reversible Heun (Kidger et al. 2021; torchsde documents strong order 1 for additive noise) are
# trapezoidal / midpoint schemes whose drift part is second order: 2.  Reversible Heun reaches it only once the
# step is small enough to be stable (docs/results/libraries.md).
SDE_METHODS = {
    "euler": ("ito", "diagonal", 1.0),
    "milstein": ("ito", "diagonal", 1.0),
    "srk": ("ito", "additive", 2.0),
    "reversible_heun": ("stratonovich", "diagonal", 2.0),
    "heun": ("stratonovich", "diagonal", 2.0),
    "midpoint": ("stratonovich", "diagonal", 2.0),
    "euler_heun": ("stratonovich", "diagonal", 1.0),
}


@functools.lru_cache(maxsize=None)
def _with_brownian_base(cls: type) -> type:
    """``cls`` made a subclass of torchsde's ``BaseBrownian`` (imported only when a probe is built), once per class."""
    from torchsde import BaseBrownian

    return cls if BaseBrownian in cls.__mro__ else type(cls.__name__, (cls, BaseBrownian), {})


class ProbedBrownian:
    """Brownian motion for torchsde answered from ``noise(x, generator)`` draws (module docstring).

    ``x``: the sampler's start, any shape ``(batch, *event)``; the motion is over its flattened ``(batch, V)``
    state, and ``noise`` is called with ``x`` itself (so that validate()'s probe sees draws shaped like the
    field) and flattened.  Each new interval ``[ta, tb]`` gets ``W = sqrt(tb - ta) noise(x)`` (and ``H = sqrt((tb - ta) / 12) noise(x)``
    when ``levy_area_approximation="space-time"``; ``U = (tb - ta)(W / 2 + H)``, torchsde's convention); a
    repeated query returns the same answer; a query overlapping an earlier one without equalling it raises
    ValueError (the probe covers fixed-step solvers, which query each step's interval once).
    """

    def __new__(cls, *args, **kwargs):
        return object.__new__(_with_brownian_base(cls))

    def __init__(self, x: torch.Tensor, noise: Callable, levy_area_approximation: str = "none"):
        self._x, self._noise = x, noise
        self._like = x.reshape(x.shape[0], -1)
        self._lev = levy_area_approximation
        self._seen: dict = {}

    def __call__(self, ta, tb=None, return_U=False, return_A=False):
        if tb is None:
            raise ValueError("ProbedBrownian answers increments only: call it as bm(ta, tb)")
        a, b = float(ta), float(tb)
        key = (a, b)
        if key not in self._seen:
            for (a0, b0) in self._seen:
                if a < b0 and a0 < b:
                    raise ValueError(f"interval [{a}, {b}] overlaps the earlier query [{a0}, {b0}]: "
                                     "ProbedBrownian answers disjoint intervals only")
            h = b - a
            W = math.sqrt(h) * self._draw()
            H = math.sqrt(h / 12.0) * self._draw() if self._lev == "space-time" else None
            self._seen[key] = (W, H)
        W, H = self._seen[key]
        if return_U:
            if H is None:
                raise ValueError("return_U needs levy_area_approximation='space-time'")
            return W, (b - a) * (0.5 * W + H)
        return W

    def _draw(self) -> torch.Tensor:
        return self._noise(self._x, None).reshape(self._like.shape)

    def __repr__(self) -> str:
        return f"ProbedBrownian(levy_area_approximation={self._lev!r})"

    @property
    def dtype(self):
        return self._like.dtype

    @property
    def device(self):
        return self._like.device

    @property
    def shape(self):
        return self._like.shape

    @property
    def levy_area_approximation(self):
        return self._lev


class ReverseSDE(torch.nn.Module):
    """The reverse SDE in reverse time ``u = T - t`` for torchsde (module docstring); state ``(batch, V)``.

    ``diffusion_power`` is for planted bugs only (2 gives ``g^2`` as the diffusion), as is ``time_sign``
    (-1 evaluates the score at ``t = u`` instead of ``T - u``: the wrong time direction).
    """

    def __init__(self, score: Callable, process: Process, event_shape, sde_type: str, noise_type: str,
                 diffusion_power: float = 1.0, time_sign: float = 1.0):
        super().__init__()
        self.score, self.process, self.event_shape = score, process, tuple(event_shape)
        self.sde_type, self.noise_type = sde_type, noise_type
        self.T = float(process.T)
        self.diffusion_power, self.time_sign = diffusion_power, time_sign

    def _t(self, u) -> float:
        u = float(u)
        return self.T - u if self.time_sign > 0 else u

    def f(self, u, y: torch.Tensor) -> torch.Tensor:
        t = self._t(u)
        gamma, g = float(self.process.gamma(t)), float(self.process.g(t))
        s = self.score(y.reshape(-1, *self.event_shape), t).reshape(y.shape)
        return gamma * y + g * g * s

    def _g(self, u) -> float:
        return float(self.process.g(self._t(u))) ** self.diffusion_power

    def g_prod(self, u, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self._g(u) * v


class DiagonalReverseSDE(ReverseSDE):
    """:class:`ReverseSDE` with the diagonal diffusion ``g(t)`` times ones (torchsde noise type ``"diagonal"``;
    the additive form defines ``g_prod`` only, so that no ``V x V`` matrix is formed)."""

    def g(self, u, y: torch.Tensor) -> torch.Tensor:
        return torch.full_like(y, self._g(u))


def sdeint_reverse_sde(
    score: Callable,
    process: Process,
    x_T: torch.Tensor,
    steps: int,
    method: str = "euler",
    *,
    t_min: float = 0.0,
    generator: torch.Generator | None = None,
    noise: Callable | None = None,
    bm=None,
    sde: ReverseSDE | None = None,
) -> torch.Tensor:
    """``x_0`` from ``x_T`` by ``torchsde.sdeint`` on the reverse SDE (module docstring); shape of ``x_T``.

    ``method``: a key of :data:`SDE_METHODS`; ``steps >= 1`` uniform steps; randomness from ``bm``, else
    ``noise``, else a ``BrownianInterval`` seeded from ``generator``.  ``sde``: a prepared :class:`ReverseSDE`
    (planted bugs); by default the correct one.
    """
    if method not in SDE_METHODS:
        raise ValueError(f"method must be one of {tuple(SDE_METHODS)}, got method={method!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got steps={steps!r}")
    if not isinstance(x_T, torch.Tensor):
        raise TypeError(f"x_T must be a torch.Tensor, got {type(x_T).__name__}")
    T = float(process.T)
    if not (0.0 <= t_min < T):
        raise ValueError(f"t_min must lie in [0, T) = [0, {T}), got t_min={t_min}")
    import torchsde  # optional: the `torchsde` extra

    sde_type, noise_type, _ = SDE_METHODS[method]
    if sde is None:
        cls = DiagonalReverseSDE if noise_type == "diagonal" else ReverseSDE
        sde = cls(score, process, x_T.shape[1:], sde_type, noise_type)
    y0 = x_T.reshape(x_T.shape[0], -1)
    span = T - t_min
    ts = torch.tensor([0.0, span], dtype=x_T.dtype, device=x_T.device)
    levy = "space-time" if method == "srk" else "none"
    if bm is None and noise is not None:
        bm = ProbedBrownian(x_T, noise, levy)
    elif bm is None:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if generator is not None else None
        bm = torchsde.BrownianInterval(0.0, span, size=y0.shape, dtype=y0.dtype, device=y0.device,
                                       entropy=seed, levy_area_approximation=levy)
    # dt a hair above span / steps: the float sum of `steps` increments then reaches span without a
    # spurious extra step of size ~1e-16 (torchsde clips the last step to ts[-1])
    dt = span / steps * (1.0 + 1e-12)
    ys = torchsde.sdeint(sde, y0, ts, bm=bm, method=method, dt=dt, adaptive=False)
    return ys[-1].reshape(x_T.shape)
