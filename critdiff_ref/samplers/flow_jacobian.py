"""The EXACT log-density of the discretised probability-flow map ``x_T -> x_0`` (THEORY 8, "Diffusion-model MCMC",
"Exactness"): ``log q(x_0) = log p_T(x_T) - log|det dx_0/dx_T|`` for any step count, method and score.

- :func:`flow_jacobian_log_density`: the whole sampler's Jacobian by
  :func:`~critdiff_ref.samplers.likelihood.jacobian_rows` (one forward pass, ``V / chunk`` vmapped backward
  passes, any device).
- :func:`stepwise_flow_log_density`: the same by the chain rule, step by step,
  ``log q(x_N) = log p_T(x_0) - sum_k log|det dPhi_k/dx_k|``, for a score that provides its Jacobian cheaply
  (``score_jacobian`` / ``score_jacobian_operator``, e.g.
  :class:`~critdiff_ref.trainers.fourier_local.FourierLocalScore`); :func:`step_jacobian` is one step's
  ``dPhi_k/dx_k``, kept as a :class:`~critdiff_ref.samplers.circulant_band.CirculantBand` where it can be.
- :func:`slogdet_per_matrix`: ``slogdet`` one matrix at a time on a multi-threaded CPU.

The priors and the checks of the inputs are those of :mod:`critdiff_ref.samplers.likelihood`; the DM-MCMC
sampler that uses these densities is :mod:`critdiff_ref.samplers.dmmc`.  Shapes: ``(batch, *lattice)``.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..processes import Process
from .circulant_band import CirculantBand
from .grids import resolve_grid
from .likelihood import ModePrior, Score, check_flow_inputs, jacobian_rows
from .reverse import METHODS

__all__ = ["flow_jacobian_log_density", "step_jacobian", "stepwise_flow_log_density", "slogdet_per_matrix",
           "JACOBIANS"]


def slogdet_per_matrix(D: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.slogdet`` of a batch ``(batch, n, n)``, one LU per matrix on a multi-threaded CPU.

    With more than one intra-op thread, batched CPU ``slogdet`` in torch 2.13 + oneMKL returned wrong log-dets
    (errors ~1e-3 at n = 256..1024, with "DLASWP parameter 6" messages; tests/test_circulant_band.py checks this
    function against numpy); one call per matrix is exact and costs the same flops.
    """
    if D.device.type != "cpu" or torch.get_num_threads() == 1 or D.ndim < 3 or D.shape[0] == 1:
        return torch.linalg.slogdet(D)
    signs, logdets = zip(*(torch.linalg.slogdet(M) for M in D))
    return torch.stack(signs), torch.stack(logdets)


def flow_jacobian_log_density(
    score: Score,
    process: Process,
    xT: torch.Tensor,
    prior: ModePrior,
    *,
    steps: int = 50,
    method: str = "rk4",
    grid="uniform",
    t_min: float = 0.0,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact density of the discretised PF-ODE map ``Phi: x_T -> x_0``: ``(x_0, log p_T(x_T) - log|det dPhi|)``.

    THEORY 8 ("the exact log-determinant of the discretised map"): the full ``V x V`` Jacobian per
    configuration by :func:`jacobian_rows` through every step (one forward pass of the sampler, then
    ``V / chunk`` vmapped backward passes), ``slogdet`` in float64. Exact to rounding for any step
    count and any score that acts on each batch entry separately: the density of the proposal as
    generated, which is what an exact DM-MCMC needs. Cost per proposal ``~ V`` backward passes through
    the sampler plus ``O(V^3)`` for the determinant.
    """
    check_flow_inputs(xT, prior, method, "exact")
    times = [float(t) for t in resolve_grid(process, steps, grid, t_min)]
    step = METHODS[method]

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        return -float(process.gamma(t)) * x - 0.5 * float(process.g(t)) ** 2 * score(x, t)

    def flow(x: torch.Tensor) -> torch.Tensor:
        for i in range(len(times) - 1):
            x = step(velocity, x, times[i], times[i + 1] - times[i])
        return x

    x0, J = jacobian_rows(flow, xT, chunk=chunk)  # J[b, i, j] = d x0_i / d xT_j
    if not bool(torch.isfinite(x0).all()) or not bool(torch.isfinite(J).all()):
        raise FloatingPointError("flow_jacobian_log_density: non-finite x_0 or Jacobian (unstable steps or score)")
    logdet = slogdet_per_matrix(J.to(torch.float64))[1].to(xT.dtype)
    return x0, prior.log_prob(xT) - logdet


def step_jacobian(
    method: str, drift_jacobian: Callable[[torch.Tensor, float], tuple[torch.Tensor, "torch.Tensor | CirculantBand"]],
    x: torch.Tensor, t: float, dt: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ODE step and its exact Jacobian: ``(x', D)``, ``D[b] = dx'/dx`` ``(batch, V, V)`` (THEORY 8).

    ``drift_jacobian(x, t) -> (f, J_f)`` (``f`` shaped like ``x``, ``J_f`` ``(batch, V, V)`` dense or a
    :class:`~critdiff_ref.samplers.circulant_band.CirculantBand`).  With the stage Jacobians
    ``A_i = J_f(y_i) dy_i/dx`` (chain rule through the stages ``y_i`` of the step):
    Euler ``D = I + dt A_1``; Heun ``D = I + dt/2 (A_1 + A_2)``, ``A_2 = J_f(y)(I + dt A_1)`` at the
    predictor ``y = x + dt f(x)``; RK4 ``D = I + dt/6 (A_1 + 2 A_2 + 2 A_3 + A_4)`` with
    ``A_2 = J_f(y_2)(I + dt/2 A_1)``, ``A_3 = J_f(y_3)(I + dt/2 A_2)``, ``A_4 = J_f(y_4)(I + dt A_3)``.
    ``x'`` is computed with the same operations as :data:`~critdiff_ref.samplers.reverse.METHODS`.
    Circulant-plus-band ``J_f`` never meet a dense ``V x V`` product: Heun's
    ``D = I + dt/2 (J_1 + J_2) + dt^2/2 J_2 J_1`` is one :meth:`CirculantBand.compose` (``O(W V^2)``), RK4's later
    stages are circulant FFTs and band gathers (``O(V^2 log V)``); dense ``J_f`` use batched matrix products.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got method={method!r}")
    def stage(y: torch.Tensor, s: float, A_prev, c: float):
        """``(f(y), J_f(y) (I + c A_prev))`` = ``J_f + c J_f A_prev`` (no identity is formed)."""
        f, Jf = drift_jacobian(y, s)
        if isinstance(Jf, CirculantBand):
            Jf = Jf.to(torch.float64)
            if A_prev is None:
                return f, Jf
            if isinstance(A_prev, CirculantBand):
                return f, Jf.compose(A_prev, scale=c, plus=Jf)
            return f, Jf.add_to(Jf.apply(A_prev).mul_(c))
        Jf = Jf.to(torch.float64)
        return f, (Jf if A_prev is None else torch.baddbmm(Jf, Jf, A_prev, alpha=c))

    def plus_identity(A) -> torch.Tensor:
        if isinstance(A, CirculantBand):
            return A.plus_identity(1.0).dense()
        A.diagonal(dim1=-2, dim2=-1).add_(1.0)
        return A

    k1, A1 = stage(x, t, None, 0.0)
    if method == "euler":
        return x + dt * k1, plus_identity(dt * A1)
    if method == "heun":
        k2, J2 = drift_jacobian(x + dt * k1, t + dt)
        x_next = x + 0.5 * dt * (k1 + k2)
        if isinstance(A1, CirculantBand) and isinstance(J2, CirculantBand):
            J2 = J2.to(torch.float64)  # D = I + dt/2 (J_1 + J_2) + dt^2/2 J_2 J_1, one structured product
            return x_next, J2.compose(A1, scale=0.5 * dt * dt, plus=(0.5 * dt) * (A1 + J2), identity=1.0)
        J2 = J2.dense() if isinstance(J2, CirculantBand) else J2
        A1 = A1.dense() if isinstance(A1, CirculantBand) else A1
        J2 = J2.to(torch.float64)
        return x_next, plus_identity((0.5 * dt) * (A1 + torch.baddbmm(J2, J2, A1, alpha=dt)))
    k2, A2 = stage(x + 0.5 * dt * k1, t + 0.5 * dt, A1, 0.5 * dt)
    k3, A3 = stage(x + 0.5 * dt * k2, t + 0.5 * dt, A2, 0.5 * dt)
    k4, A4 = stage(x + dt * k3, t + dt, A3, dt)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4), plus_identity((dt / 6.0) * (A1 + 2.0 * A2 + 2.0 * A3 + A4))


JACOBIANS = ("structured", "dense")


def stepwise_flow_log_density(
    score,
    process: Process,
    xT: torch.Tensor,
    prior: ModePrior,
    *,
    steps: int = 50,
    method: str = "rk4",
    grid="uniform",
    t_min: float = 0.0,
    jacobian: str = "structured",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact density of the discretised PF-ODE map by the chain rule: ``(x_0, log p_T(x_T) - sum_k log|det D_k|)``.

    THEORY 8 ("the exact log-determinant of the discretised map"): ``x_{k+1} = Phi_k(x_k)`` on the sampler
    grid, ``D_k = dPhi_k/dx_k`` from :func:`step_jacobian` with the drift Jacobian
    ``J_f = -gamma I - (g^2/2) J_s`` (THEORY 1), ``J_s`` from ``score.score_jacobian(x, t) -> (s, J_s)``
    (e.g. :class:`~critdiff_ref.trainers.fourier_local.FourierLocalScore`: circulant + coloured JVPs).
    Equal to :func:`flow_jacobian_log_density` to rounding (``det`` of a product is the product of
    ``det``), with no backward pass through the sampler: per proposal ``steps x stages`` score Jacobians and
    one ``slogdet`` (float64) per step.  ``jacobian="structured"`` (default, when the score has
    ``score_jacobian_operator``): ``J_s`` stays a :class:`~critdiff_ref.samplers.circulant_band.CirculantBand`
    and the products inside a step cost ``O(W V^2)`` (Heun) instead of ``O(V^3)``; ``"dense"``: dense ``J_s``
    and batched matrix products (the reference).  ``(batch, *lattice)`` in, ``((batch, *lattice), (batch,))``
    out; dtype/device follow ``xT``.
    """
    if not callable(getattr(score, "score_jacobian", None)):
        raise TypeError(f"score must provide score_jacobian(x, t) -> (s, J) for the stepwise log q, got "
                        f"{type(score).__name__} (use flow_jacobian_log_density for any score)")
    if jacobian not in JACOBIANS:
        raise ValueError(f"jacobian must be one of {JACOBIANS}, got jacobian={jacobian!r}")
    check_flow_inputs(xT, prior, method, "exact")
    times = [float(t) for t in resolve_grid(process, steps, grid, t_min)]
    B = xT.shape[0]
    operator = jacobian == "structured" and callable(getattr(score, "score_jacobian_operator", None))

    def drift_jacobian(x: torch.Tensor, t: float):
        gam, g2 = float(process.gamma(t)), float(process.g(t)) ** 2
        if operator:
            s, Js = score.score_jacobian_operator(x, t)
            return -gam * x - 0.5 * g2 * s, ((-0.5 * g2) * Js.to(torch.float64)).plus_identity(-gam)
        s, Js = score.score_jacobian(x, t)
        Jf = Js.to(torch.float64).mul(-0.5 * g2)  # -gam I - (g^2/2) J_s, one V x V temporary
        Jf.diagonal(dim1=-2, dim2=-1).sub_(gam)
        return -gam * x - 0.5 * g2 * s, Jf

    x = xT.detach()
    logdet = torch.zeros(B, dtype=torch.float64, device=xT.device)
    for i in range(len(times) - 1):
        x, D = step_jacobian(method, drift_jacobian, x, times[i], times[i + 1] - times[i])
        sign, ld = slogdet_per_matrix(D)
        if not bool(torch.isfinite(x).all()) or not bool(torch.isfinite(ld).all()) or bool((sign == 0).any()):
            raise FloatingPointError(f"stepwise_flow_log_density: non-finite state or singular step Jacobian at step {i} "
                                     f"(t = {times[i]:.6g} -> {times[i + 1]:.6g})")
        logdet = logdet + ld
    return x, prior.log_prob(xT) - logdet.to(xT.dtype)


# -- diagnostics -----------------------------------------------------------------------------------
