"""Hamiltonian Monte Carlo for lattice phi^4 and any target with an action and a force (THEORY 8).

Every sampler runs a batch of independent chains at once: ``phi`` has shape
``(n_chains, *lattice)``; dtype and device follow the start configuration. Randomness only
through the ``generator`` argument. A target is anything with ``action(phi) -> (*batch,)`` and
``force(phi) = -dS/dphi`` (:class:`~critdiff_ref.targets.Phi4Lattice`).

HMC: momenta ``pi ~ N(0, 1)``, ``H = S(phi) + sum pi^2 / 2``, leapfrog with step ``eps`` and
``n_steps`` steps, accept with ``min(1, exp(-dH))``.  A trajectory is one body,
:func:`_trajectory`, with its random numbers passed in (uniforms that Box-Muller turns into the
momenta, in one site-major order, then one uniform per chain: :func:`_draws`); the eager chain runs it
op by op, ``fused=True`` runs it recorded and compiled whole (:mod:`._compiled`; with 4 or more chains
on a CPU on chains-last fields, :class:`_ChainsLast`, which vectorises every neighbour read), and the default ``fused="auto"`` switches to the compiled program when the run
is long enough to pay for the compile: the same chain to rounding on every path.  During burn-in
the step is tuned by dual averaging to a target acceptance and then frozen (never a
frozen chain, an exact one after burn-in).  An HMC chain cannot accept a non-finite state (its
``dH`` is NaN or infinite), so no per-trajectory finiteness check is needed; a run whose acceptance
collapses is caught by the caller's acceptance floor (:mod:`critdiff_ref.phi4.ensemble`).
:func:`leapfrog` with ``fused=True`` compiles each drift-kick step (:func:`..fused.kernel`).

Metropolis lives in :mod:`._metropolis`, Langevin in :mod:`._langevin`, the shared chain loop in
:mod:`._chains`; the package :mod:`critdiff_ref.samplers.mcmc` is their public face.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Callable

import torch

from . import _compiled
from ._chains import Action, Callback, ChainResult, _check_state, _count, _positive, _run, _site_sum
from ..fused import Identity, kernel, require_compiler
from ...targets import Phi4Lattice

__all__ = [
    "hamiltonian",
    "leapfrog",
    "hmc_step",
    "hmc",
]


# -- HMC ------------------------------------------------------------------------------------------
def hamiltonian(target: Action, phi: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
    """``H = S(phi) + 1/2 sum_x pi_x^2`` per chain (THEORY 8), shape ``(n_chains,)``."""
    return target.action(phi) + 0.5 * _site_sum(pi * pi)


def _kick(target: Action, phi: torch.Tensor, pi: torch.Tensor, amount: float) -> torch.Tensor:
    return pi + amount * target.force(phi)


def _drift_kick(
    target: Action, phi: torch.Tensor, pi: torch.Tensor, eps: float, amount: float
) -> tuple[torch.Tensor, torch.Tensor]:
    phi = phi + eps * pi
    return phi, pi + amount * target.force(phi)


def leapfrog(
    target: Action, phi: torch.Tensor, pi: torch.Tensor, eps: float, n_steps: int, *, fused: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Leapfrog: ``pi += eps/2 F``; ``n_steps`` x (``phi += eps pi``; ``pi += eps F``) with the last
    momentum kick halved. Time-reversible and volume-preserving; ``dH = O(eps^2)`` at fixed length.
    ``fused``: each drift-kick step is one compiled kernel (:mod:`.fused`)."""
    kick, drift_kick = kernel(_kick, fused), kernel(_drift_kick, fused)
    pi = kick(target, phi, pi, 0.5 * eps)
    for i in range(n_steps):
        phi, pi = drift_kick(target, phi, pi, eps, eps if i < n_steps - 1 else 0.5 * eps)
    return phi, pi


class _ChainsLast:
    """A :class:`~critdiff_ref.targets.Phi4Lattice` on chains-last fields ``(*lattice, n_chains)``: the
    layout of the compiled multi-chain trajectory.  With the chains innermost, every
    neighbour read -- along every lattice axis -- is a whole contiguous row of chains, so inductor
    vectorises the leapfrog; with ``(n_chains, *lattice)`` the periodic shift along the last axis is an
    indexed gather per element (measured at L = 64, 16 chains, float64: 0.95 against 0.58 of the copy
    roofline for the program alone).  The same action and force, summed over the first ``d`` axes."""

    def __init__(self, target: Phi4Lattice) -> None:
        self.target, self.dims = target, tuple(range(target.d))

    def action(self, phi: torch.Tensor) -> torch.Tensor:
        return self.target.action(phi, dims=self.dims)

    def force(self, phi: torch.Tensor) -> torch.Tensor:
        return self.target.force(phi, dims=self.dims)


def _kinetic(target: Action, pi: torch.Tensor) -> torch.Tensor:
    """``sum_x pi_x^2 / 2`` per chain, in the target's layout."""
    return 0.5 * ((pi * pi).sum(dim=target.dims) if isinstance(target, _ChainsLast) else _site_sum(pi * pi))


def _trajectory(target: Action, n_steps: int, phi: torch.Tensor, pi: torch.Tensor, u: torch.Tensor, eps):
    """One HMC trajectory per chain with its random numbers given (momenta ``pi``, uniforms ``u``):
    ``(phi_new, accepted, dH)``.  ``eps`` a float (eager) or a 0-d tensor (the compiled program's input).
    The body every path runs: eager, and recorded and compiled whole (:mod:`._compiled`); a
    :class:`_ChainsLast` target takes chains-last ``phi`` and ``pi``."""
    H0 = target.action(phi) + _kinetic(target, pi)
    q, p = phi, pi + (0.5 * eps) * target.force(phi)
    for i in range(n_steps):
        q = q + eps * p
        p = p + (eps if i < n_steps - 1 else 0.5 * eps) * target.force(q)
    dH = target.action(q) + _kinetic(target, p) - H0
    accept = torch.log(u) < -dH  # NaN dH (a diverged trajectory) is rejected
    mask = accept if isinstance(target, _ChainsLast) else accept.reshape((-1,) + (1,) * (phi.ndim - 1))
    return torch.where(mask, q, phi), accept, dH


def _draws(phi: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A trajectory's random numbers, in the order every path draws them: ``2 ceil(n/2)`` uniforms for the
    ``n = phi.numel()`` momenta (:func:`_momenta`), then one uniform per chain for the accept step.
    Uniforms, not ``torch.randn``: float64 ``randn`` on a CPU is scalar (measured 1.0 ms for 65536
    numbers, a third of a 16-chain L = 64 trajectory) and uniforms cost a quarter of that."""
    n = phi.numel()
    w = torch.rand(n + n % 2, generator=generator, dtype=phi.dtype, device=phi.device)
    u = torch.rand(phi.shape[0], generator=generator, dtype=phi.dtype, device=phi.device)
    return w, u


def _normals(w: torch.Tensor, n: int) -> torch.Tensor:
    """Box-Muller: ``m = len(w) / 2`` pairs ``(w1, w2)`` give ``r cos(2 pi w2)`` and ``r sin(2 pi w2)`` with
    ``r = sqrt(-2 log(1 - w1))`` (``1 - w1`` in ``(0, 1]``: finite), independent N(0, 1); the first ``n``."""
    m = w.shape[0] // 2
    r = torch.sqrt(-2.0 * torch.log1p(-w[:m]))
    theta = (2.0 * math.pi) * w[m:]
    return torch.cat([r * torch.cos(theta), r * torch.sin(theta)])[:n]


def _momenta(w: torch.Tensor, phi: torch.Tensor, chains_last: bool) -> torch.Tensor:
    """The momenta of :func:`_draws`'s uniforms ``w`` in ``phi``'s layout.  One canonical order on every
    path -- site-major, chain-minor, i.e. the chains-last layout -- so the eager ``(n_chains, *lattice)``
    chain and the compiled chains-last one use the same momentum at every site (one chain: one order)."""
    z = _normals(w, phi.numel())
    if chains_last:
        return z.view(phi.shape)
    # dense in phi's layout: a strided pi would hand its strides to every later p and q (eager: 3-5x slower ops)
    return z.view(*phi.shape[1:], phi.shape[0]).movedim(-1, 0).contiguous()


def _key(target: Action, n_steps: int, chains_last: bool = False) -> tuple:
    """What a compiled trajectory depends on besides its inputs (a Phi4Lattice by value, else by identity)."""
    return ("hmc-trajectory", target if isinstance(target, Phi4Lattice) else Identity(target), n_steps, chains_last)


def _program(target: Action, n_steps: int, inputs: tuple[torch.Tensor, ...], chains_last: bool = False):
    """The compiled trajectory ``(phi, w, u, eps) -> (phi_new, accepted, dH)`` (momenta from ``w`` inside);
    ``chains_last``: ``phi`` and ``phi_new`` are ``(*lattice, n_chains)`` (a :class:`_ChainsLast` body)."""
    body_target = _ChainsLast(target) if chains_last else target

    def body(phi, w, u, eps):
        return _trajectory(body_target, n_steps, phi, _momenta(w, phi, chains_last), u, eps)

    return _compiled.program(_key(target, n_steps, chains_last), body, inputs)


def _eps_tensor(eps: float, phi: torch.Tensor) -> torch.Tensor:
    return torch.tensor(eps, dtype=phi.dtype, device=phi.device)


def hmc_step(
    target: Action,
    phi: torch.Tensor,
    generator: torch.Generator | None,
    *,
    eps: float,
    n_steps: int,
    fused: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One HMC trajectory per chain: ``(phi_new, accepted (n_chains,) bool, dH (n_chains,))``.
    ``fused``: the whole trajectory compiled (:mod:`._compiled`; same result to rounding)."""
    w, u = _draws(phi, generator)
    if fused:
        inputs = (phi.contiguous(), w, u, _eps_tensor(eps, phi))
        return _program(target, n_steps, inputs)(*inputs)
    return _trajectory(target, n_steps, phi, _momenta(w, phi, False), u, eps)


# -- step-size adaptation -----------------------------------------------------------------------
TARGET_ACCEPTANCE = 0.8
# Dual averaging constants of Hoffman & Gelman (2014), Algorithm 5 (as in Stan): shrinkage gamma,
# stabilisation t0, averaging exponent kappa; the shrinkage point is log(eps0) (the user's step).
_GAMMA, _T0, _KAPPA = 0.05, 10.0, 0.75
_LOG_EPS_RANGE = 30.0  # log(eps0 / eps) is clamped to this: far below any useful step


class _DualAveraging:
    """Dual averaging of ``log eps`` so that the mean acceptance probability approaches ``target``
    (Nesterov 2009; Hoffman & Gelman 2014, Algorithm 5).  :meth:`update` after each burn-in trajectory
    gives the next step; :attr:`final` (the weighted average of the iterates) is the frozen step.

    The step only shrinks (``eps <= eps0``): with ``n_steps`` fixed a larger step lengthens the
    trajectory, and on a nearly Gaussian target a trajectory near half a mode's period flips that mode
    every time (measured: L = 4, lam = 0, eps 0.1 -> 0.52 at 10 steps made M alternate in sign,
    rho(1) = -0.67).  ``eps0 * n_steps`` is the longest trajectory the caller asked for."""

    def __init__(self, eps0: float, target: float) -> None:
        self.eps0, self.mu = eps0, math.log(eps0)
        self.log_eps_bar = self.mu
        self.target, self.h_bar, self.m = target, 0.0, 0

    def update(self, alpha: float) -> float:
        self.m += 1
        w = 1.0 / (self.m + _T0)
        self.h_bar = (1.0 - w) * self.h_bar + w * (self.target - alpha)
        log_eps = self.mu - math.sqrt(self.m) / _GAMMA * self.h_bar
        log_eps = min(max(log_eps, self.mu - _LOG_EPS_RANGE), self.mu)
        eta = self.m ** (-_KAPPA)
        self.log_eps_bar = eta * log_eps + (1.0 - eta) * self.log_eps_bar
        return self._step(log_eps)

    def _step(self, log_eps: float) -> float:
        return self.eps0 if log_eps >= self.mu else math.exp(log_eps)  # the cap is eps0 exactly

    @property
    def final(self) -> float:
        return self._step(self.log_eps_bar)


def _mean_acceptance_probability(dH: torch.Tensor) -> float:
    """``mean over chains of min(1, exp(-dH))``, a diverged (NaN) trajectory counting 0."""
    return float(torch.nan_to_num(torch.exp(-dH).clamp(max=1.0), nan=0.0).mean())


def _check_hmc_fused(fused, device: torch.device) -> bool | str:
    if fused == "auto":
        return "auto"
    if not isinstance(fused, bool):
        raise TypeError(f"fused must be a bool or 'auto' (HMC has no Triton kernel), got {fused!r}")
    if fused:
        require_compiler(device)
    return fused


# The compiled multi-chain CPU trajectory runs chains-last (:class:`_ChainsLast`) from this many chains on
# (measured at L = 64: 0.58 of the roofline at 4 chains, 0.85 at 8, 0.92 at 16; GPUs keep their layout).
CHAINS_LAST_MIN = 4
# Eager trajectories timed before the default path decides whether compiling pays (the first is not timed).
_TIMED = 2


def hmc(
    target: Action,
    phi0: torch.Tensor,
    *,
    n_traj: int,
    eps: float,
    n_steps: int,
    burn_in: int = 0,
    thin: int = 1,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    fused: bool | str = "auto",
    adapt: bool = True,
    target_acceptance: float = TARGET_ACCEPTANCE,
    notify: Callable[[str], None] | None = None,
) -> ChainResult:
    """Batched HMC (THEORY 8): ``burn_in`` then ``n_traj`` trajectories, every ``thin``-th kept.

    ``phi0`` ``(n_chains, *lattice)``; ``callback(done, total, phi)`` after each trajectory.
    ``adapt`` (with ``burn_in > 0``): the leapfrog step starts at ``eps`` and is lowered during burn-in
    by dual averaging towards a mean acceptance probability ``target_acceptance`` (never above ``eps``),
    then frozen, so the kept chain is an exact HMC chain; the step used is ``result.eps``.  ``fused``: ``"auto"`` runs the
    eager trajectory and switches to the compiled whole trajectory (:mod:`._compiled`) when the rest
    of the run pays for the compile (a Phi4Lattice target with a compiler present); ``True`` always
    compiles, ``False`` never.  Every path is the same chain to rounding (same draws, same body).
    ``notify(message)`` is told before and after a compile (which can take a minute the first time), so a
    command line can say why the chain pauses.
    """
    phi = _check_state(target, phi0).contiguous()  # the compiled program is built for dense tensors
    eps = _positive("eps", eps)
    n_steps, n_traj = _count("n_steps", n_steps, 1), _count("n_traj", n_traj, 1)
    burn_in, thin = _count("burn_in", burn_in, 0), _count("thin", thin, 1)
    fused = _check_hmc_fused(fused, phi.device)
    if not isinstance(adapt, bool):
        raise TypeError(f"adapt must be a bool, got {adapt!r}")
    target_acceptance = _positive("target_acceptance", target_acceptance)
    if not target_acceptance < 1.0:
        raise ValueError(f"target_acceptance must be in (0, 1), got target_acceptance={target_acceptance}")
    adapter = _DualAveraging(eps, target_acceptance) if adapt and burn_in > 0 else None
    total = burn_in + n_traj
    auto = fused == "auto" and isinstance(target, Phi4Lattice) and _compiled.can_compile(phi.device)
    state = {"it": 0, "eps": eps, "eps_t": None, "run": None, "seconds": []}
    # chains-last compiled trajectories for a Phi4Lattice with enough chains to fill the vector lanes
    chains_last = isinstance(target, Phi4Lattice) and phi.shape[0] >= CHAINS_LAST_MIN and phi.device.type == "cpu"

    def compile_now(inputs) -> None:
        if notify is not None:
            estimate = _compiled.compile_estimate(_key(target, n_steps, chains_last), inputs)
            if estimate > 0:
                notify(f"hmc: compiling the trajectory (about {estimate:.0f} s{' the first time' if estimate >= _compiled.COLD_COMPILE_SECONDS else ''};"
                       f" cached under {_compiled.persistent_cache() or 'a temporary directory'} for later runs)")
        t0 = time.perf_counter()
        try:
            state["run"] = _program(target, n_steps, inputs, chains_last)
            if notify is not None:
                notify(f"hmc: trajectory compiled in {time.perf_counter() - t0:.1f} s")
        except Exception as exc:  # noqa: BLE001 - any compiler failure: the eager chain is the same chain
            if fused is True:
                raise
            warnings.warn(f"hmc: compiling the trajectory failed ({type(exc).__name__}: {exc}); running eagerly",
                          RuntimeWarning, stacklevel=4)
            state["run"] = False

    def update(p: torch.Tensor):
        it = state["it"]
        state["it"] = it + 1
        if adapter is not None and it == burn_in:
            state["eps"], state["eps_t"] = adapter.final, None  # frozen from here on: an exact chain
        w, u = _draws(p, generator)
        if state["run"] is None and (fused is True or (auto and it == _TIMED + 1)):
            q = _layout(p, chains_last)
            eps_t = _eps_tensor(state["eps"], p)
            rate = sorted(state["seconds"])[0] if state["seconds"] else 0.0
            key = _key(target, n_steps, chains_last)
            if fused is True or _compiled.worth_compiling(rate, total - it, key, (q, w, u, eps_t)):
                compile_now((q, w, u, eps_t))
        if state["run"]:
            if state["eps_t"] is None or adapter is not None and it < burn_in:
                state["eps_t"] = _eps_tensor(state["eps"], p)
            new, accepted, dH = state["run"](_layout(p, chains_last), w, u, state["eps_t"])
            out = (new.movedim(-1, 0) if chains_last else new), accepted, dH
        else:
            timed = auto and state["run"] is None and 1 <= it <= _TIMED
            if timed:
                _synchronize(p.device)
                t0 = time.perf_counter()
            out = _trajectory(target, n_steps, p, _momenta(w, p, False), u, state["eps"])
            if timed:
                _synchronize(p.device)
                state["seconds"].append(time.perf_counter() - t0)
        if adapter is not None and it < burn_in:
            state["eps"] = adapter.update(_mean_acceptance_probability(out[2]))
        return out

    res = _run(update, phi, n_traj, burn_in, thin, callback, "hmc", finite_by_construction=True)
    return dataclasses.replace(res, final=res.final.contiguous(), eps=state["eps"])


def _layout(p: torch.Tensor, chains_last: bool) -> torch.Tensor:
    """The compiled program's input: ``p`` itself, or chains-last and dense -- free when ``p`` is the
    chains-first view of the previous program's output (every trajectory but the first)."""
    return p.movedim(0, -1).contiguous() if chains_last else p.contiguous()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
