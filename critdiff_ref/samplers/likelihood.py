"""Probability-flow likelihood ``log q`` of a configuration under a diffusion model (THEORY 8, "Diffusion-model MCMC").

- Priors at ``T``: :class:`ModePrior`, a Gaussian diagonal in Fourier space with an exact normalised
  ``log_prob``; :func:`isotropic_prior` (the usual noise start) and :func:`exact_prior` (a Gaussian
  field's exact forward marginal).
- Divergence of a score ``div_x s_t(x)``: exact (the Jacobian diagonal by :func:`jacobian_rows`,
  ``V`` vector-Jacobian products in vmapped chunks) or Hutchinson ``E_eps[eps^T J eps]`` with Rademacher
  probes (APPROXIMATE as a log q for MCMC: unbiased for log q, but exp of a noisy log q biases the chain).
- PF-ODE log-density: along ``dx/dt = f(x, t) = -gamma x - (g^2/2) s_t(x)``,
  ``d/dt log p_t(x_t) = -div f``, so ``log q(x_0) = log p_T(x_T) + int_0^T div f(x_t, t) dt``.
  :func:`pf_log_likelihood` integrates the augmented state ``(x, ell)``, ``d ell/dt = div f``, from
  ``x_0`` up to ``T``; :func:`pf_sample` draws ``x_T`` from a prior and integrates down to ``t_min``,
  returning the sample and its ``log q``.  Both use the Euler / Heun / RK4 steps of
  :mod:`critdiff_ref.samplers.reverse`, so ``log q`` has the order of the ODE method.
- :func:`~critdiff_ref.samplers.flow_jacobian.flow_jacobian_log_density`: the EXACT log-density of the *discretised* flow map
  ``x_T -> x_0`` (``log p_T(x_T) - log|det dx_0/dx_T|``; the full Jacobian by :func:`jacobian_rows`:
  one forward pass of the sampler and ``V / chunk`` vmapped backward passes, any device), exact for
  any step count and any score: the log q an exact DM-MCMC needs.
- :func:`~critdiff_ref.samplers.flow_jacobian.stepwise_flow_log_density`: the same exact log-density by the chain rule, step by step,
  ``log q(x_N) = log p_T(x_0) - sum_k log|det dPhi_k/dx_k|``, for a score that provides its Jacobian
  cheaply (``score_jacobian(x, t)``, e.g. :class:`~critdiff_ref.trainers.fourier_local.FourierLocalScore`):
  no backward pass through the sampler, ``O(steps V^3)`` per proposal.
- A Gaussian ``control_variate`` (mode variances ``c_ref``) makes Hutchinson estimate only the divergence
  of ``s - s_ref`` and adds the exact ``sum_k K_ref(k)``: unbiased, with far less noise when the score is
  close to Gaussian.
- :func:`action_r2`: ``R^2`` of the effective action ``S_eff = -log q`` against the true action ``S``.

The DM-MCMC sampler that uses these densities is :mod:`critdiff_ref.samplers.dmmc`.

Shapes: configurations ``(batch, *lattice)``; dtype/device follow the input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .. import lattice
from ..processes import Process, Time
from .grids import resolve_grid
from .mcmc._chains import _count
from .reverse import METHODS

__all__ = [
    "ModePrior",
    "isotropic_prior",
    "exact_prior",
    "jacobian_rows",
    "divergence_exact",
    "divergence_hutchinson",
    "rademacher_probes",
    "reference_score",
    "pf_log_likelihood",
    "pf_sample",
    "check_flow_inputs",
    "action_r2",
]

Score = Callable[[torch.Tensor, Time], torch.Tensor]
DIVERGENCES = ("exact", "hutchinson")


# -- priors ----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ModePrior:
    """Gaussian ``N(0, Sigma)`` diagonal in the unitary Fourier basis: ``<|x_k|^2> = mode_variance(k)``.

    ``mode_variance`` ``(L,)*d``, > 0 and symmetric under ``k -> -k`` (true for functions of khat^2);
    a constant is white noise of that variance.  ``log_prob`` is exact and normalised (THEORY 2).
    """

    mode_variance: torch.Tensor
    d: int

    def __post_init__(self) -> None:
        v = torch.as_tensor(self.mode_variance, dtype=torch.float64)
        lattice.check_lattice(v.shape[0] if v.ndim else 0, self.d)
        if v.ndim != self.d or len(set(v.shape)) != 1:
            raise ValueError(f"mode_variance must have shape (L,)*d with d={self.d}, got {tuple(v.shape)}")
        if not bool(torch.isfinite(v).all()) or bool((v <= 0).any()):
            raise ValueError("mode_variance must be finite and > 0 for every mode")
        object.__setattr__(self, "mode_variance", v)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mode_variance.shape)

    def sample(
        self, n: int, generator: torch.Generator | None = None, *, dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``n`` draws, shape ``(n, *lattice)``: white noise coloured by ``sqrt(mode_variance)``."""
        n = _count("n", n, 1)
        if generator is not None and device is None:
            device = generator.device
        z = torch.randn((n, *self.shape), generator=generator, dtype=dtype, device=device)
        v = self.mode_variance.to(dtype=dtype, device=z.device)
        return lattice.ifft(lattice.fft(z, self.d) * v.sqrt(), self.d).real

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``-1/2 sum_k |x_k|^2 / v(k) - 1/2 sum_k log(2 pi v(k))``, shape ``(batch,)``."""
        v = self.mode_variance.to(dtype=x.dtype, device=x.device)
        quad = (lattice.fft(x, self.d).abs() ** 2 / v).sum(dim=lattice.lattice_dims(self.d))
        return -0.5 * quad - 0.5 * torch.log(2.0 * math.pi * v).sum()


def isotropic_prior(process: Process, L: int, d: int, data_variance: float = 0.0) -> ModePrior:
    """The usual start ``N(0, a(T)^2 data_variance + Xi(T))`` per site (``data_variance = 0``: pure noise)."""
    if not (isinstance(data_variance, (int, float)) and math.isfinite(data_variance) and data_variance >= 0):
        raise ValueError(f"data_variance must be finite and >= 0, got data_variance={data_variance!r}")
    T = float(process.T)
    var = float(process.a(T)) ** 2 * float(data_variance) + float(process.Xi(T))
    lattice.check_lattice(L, d)
    return ModePrior(torch.full((L,) * d, var, dtype=torch.float64), d)


def exact_prior(field, process: Process) -> ModePrior:
    """The exact forward marginal at ``T`` of a Gaussian field, ``C_T(k) = a^2 c0(k) + Xi(T)`` (THEORY 2).

    ``field`` a :class:`~critdiff_ref.targets.GaussianField` with ``r > 0`` (every mode fluctuates).
    """
    if getattr(field, "zero_mode_removed", True):
        raise ValueError("exact_prior needs a GaussianField with r > 0 (a removed zero mode has no density)")
    return ModePrior(field.mode_variance(process, float(process.T)), field.d)


# -- divergences -----------------------------------------------------------------------------------
# Default cap on the cotangent block of one vmapped backward pass: chunk * batch * V elements
# (2^22 float64 = 32 MiB; the pass also holds about chunk * batch * (the score's largest activation)).
MAX_CHUNK_ELEMENTS = 2**22


def _chunk_size(chunk: int | None, B: int, n: int) -> int:
    """Basis vectors per vmapped backward pass: ``chunk`` if given, else the largest ``<= n`` with
    ``chunk * B * n <= MAX_CHUNK_ELEMENTS`` (at least 1)."""
    if chunk is None:
        return max(1, min(n, MAX_CHUNK_ELEMENTS // max(1, B * n)))
    return min(n, _count("chunk", chunk, 1))


def jacobian_rows(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, chunk: int | None = None, diagonal: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fn(x), J)`` with ``J[b, i, j] = d fn(x)_{b,i} / d x_{b,j}`` of a map acting on each batch entry
    separately, ``(batch, V, V)`` (``diagonal=True``: only ``J[b, i, i]``, ``(batch, V)``).

    One forward pass, then the rows by vector-Jacobian products: cotangent ``e_i`` on every batch entry
    at once (entries are independent, so one product gives row ``i`` of every configuration), ``chunk``
    rows per ``torch.func.vmap``-ed backward pass (default: :data:`MAX_CHUNK_ELEMENTS` caps
    ``chunk * batch * V``). ``V / chunk`` backward passes in all, on any device; exact to rounding.
    ``fn`` must be ``torch.func``-transformable (torch ops, no in-place updates of captured tensors).
    """
    from torch.func import vjp, vmap

    B, n = x.shape[0], x[0].numel()
    c = _chunk_size(chunk, B, n)
    with torch.enable_grad():
        y, pullback = vjp(fn, x.detach())
    if y.shape != x.shape:
        raise ValueError(f"fn must map (batch, *lattice) to the same shape, got {tuple(x.shape)} -> {tuple(y.shape)}")
    pull = vmap(pullback)
    out = []
    for s in range(0, n, c):
        m = min(c, n - s)
        cot = torch.zeros((m, B, n), dtype=y.dtype, device=y.device)
        rows = torch.arange(m, device=y.device)
        cot[rows, :, s + rows] = 1.0
        (g,) = pull(cot.reshape(m, *y.shape))  # (m, B, *lattice): rows s..s+m-1 of every J_b
        g = g.reshape(m, B, n)
        out.append(g[rows, :, s + rows] if diagonal else g)
    J = torch.cat(out, dim=0).transpose(0, 1)  # (B, V) or (B, V, V)
    return y.detach(), J.detach()


def divergence_exact(score: Score, x: torch.Tensor, t: float, *, chunk: int | None = None) -> torch.Tensor:
    """``div_x s_t(x) = sum_i d s_i / d x_i`` per configuration by autograd over every site, ``(batch,)``.

    Exact (to rounding): the Jacobian diagonal from :func:`jacobian_rows` (``V`` vector-Jacobian
    products, ``chunk`` of them per vmapped backward pass). The score must act independently on each
    batch entry (no batch statistics).
    """
    _, diag = jacobian_rows(lambda y: score(y, t), x, chunk=chunk, diagonal=True)
    return diag.sum(dim=1)


def rademacher_probes(
    n_probes: int, like: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``(n_probes, *like.shape)`` independent +-1 entries (``E[eps eps^T] = I``)."""
    n_probes = _count("n_probes", n_probes, 1)
    gdev = generator.device if generator is not None else like.device
    bits = torch.randint(0, 2, (n_probes, *like.shape), generator=generator, device=gdev)
    return (2.0 * bits - 1.0).to(dtype=like.dtype, device=like.device)


def divergence_hutchinson(score: Score, x: torch.Tensor, t: float, probes: torch.Tensor) -> torch.Tensor:
    """Hutchinson estimate ``mean_p eps_p . (J eps_p)`` of ``div_x s_t(x)``, ``(batch,)``; unbiased
    for probes with ``E[eps eps^T] = I`` (:func:`rademacher_probes`); ``probes`` ``(P, batch, *lattice)``."""
    if probes.shape[1:] != x.shape:
        raise ValueError(f"probes must have shape (n_probes, {tuple(x.shape)}), got {tuple(probes.shape)}")
    from torch.func import vjp, vmap

    B, P = x.shape[0], probes.shape[0]
    with torch.enable_grad():
        _, pullback = vjp(lambda y: score(y, t), x.detach())
    (g,) = vmap(pullback)(probes.to(x.dtype))  # (P, batch, *lattice): J^T eps_p, all probes in one pass
    return (g * probes).reshape(P, B, -1).sum(-1).mean(0).detach()


def _reference_kernel(reference: ModePrior, process: Process, t: float, like: torch.Tensor) -> torch.Tensor:
    """Score kernel ``-1 / (a(t)^2 c_ref(k) + Xi(t))`` of the Gaussian with mode variances ``c_ref``."""
    a, Xi = float(process.a(t)), float(process.Xi(t))
    return -1.0 / (a * a * reference.mode_variance.to(dtype=like.dtype, device=like.device) + Xi)


def reference_score(reference: ModePrior, process: Process) -> Score:
    """The exact diffusion score of ``N(0, reference)`` (THEORY 2): ``F^-1[K_t(k) F[x]]``,
    ``K_t = -1/(a^2 c_ref + Xi)``; its divergence is ``sum_k K_t(k)`` exactly."""

    def score(x: torch.Tensor, t) -> torch.Tensor:
        K = _reference_kernel(reference, process, float(t), x)
        return lattice.ifft(lattice.fft(x, reference.d) * K, reference.d).real

    return score


def _divergence_fn(score: Score, divergence: str, probes: torch.Tensor | None, process: Process,
                   control_variate: ModePrior | None):
    if divergence == "exact":
        return lambda x, t: divergence_exact(score, x, t)
    if control_variate is None:
        return lambda x, t: divergence_hutchinson(score, x, t, probes)
    ref = reference_score(control_variate, process)

    def div(x: torch.Tensor, t: float) -> torch.Tensor:
        # Hutchinson on the residual s - s_ref only; the Gaussian part's trace is exact
        resid = divergence_hutchinson(lambda y, tt: score(y, tt) - ref(y, tt), x, t, probes)
        return resid + _reference_kernel(control_variate, process, t, x).sum()

    return div


# -- PF-ODE with the log-density ---------------------------------------------------------------------
def _augmented_flow(
    score: Score, process: Process, x: torch.Tensor, times: list[float], method: str, div_fn
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate ``(x, ell)`` with ``dx/dt = f``, ``d ell/dt = div f`` over ``times``; returns ``(x_end, ell)``."""
    B, shape = x.shape[0], x.shape
    n = x[0].numel()
    step = METHODS[method]

    def velocity(state: torch.Tensor, t: float) -> torch.Tensor:
        xs = state[:, :n].reshape(shape)
        gam, g2 = float(process.gamma(t)), float(process.g(t)) ** 2
        with torch.no_grad():
            s = score(xs, t)
        f = -gam * xs - 0.5 * g2 * s
        div_f = -gam * n - 0.5 * g2 * div_fn(xs, t)
        return torch.cat([f.reshape(B, n), div_f.unsqueeze(1)], dim=1)

    state = torch.cat([x.detach().reshape(B, n), x.new_zeros(B, 1)], dim=1)
    for i in range(len(times) - 1):
        state = step(velocity, state, times[i], times[i + 1] - times[i])
        if not bool(torch.isfinite(state).all()):
            raise FloatingPointError(f"pf flow: non-finite state after step {i} (t = {times[i]:.6g} -> {times[i + 1]:.6g})")
    return state[:, :n].reshape(shape), state[:, n]


def check_flow_inputs(
    x: torch.Tensor, prior: ModePrior, method: str, divergence: str, control_variate: ModePrior | None = None
) -> None:
    """TypeError / ValueError naming the argument unless ``x`` is a ``(batch, *prior.shape)`` float tensor,
    ``prior`` (and ``control_variate``) a :class:`ModePrior`, ``method`` an ODE method and ``divergence`` one of
    :data:`DIVERGENCES`."""
    if control_variate is not None and (
        not isinstance(control_variate, ModePrior) or control_variate.shape != prior.shape
    ):
        raise TypeError(f"control_variate must be None or a ModePrior of shape {prior.shape}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError("configurations must be a floating torch.Tensor of shape (batch, *lattice)")
    if not isinstance(prior, ModePrior):
        raise TypeError(f"prior must be a ModePrior, got {type(prior).__name__}")
    if tuple(x.shape[1:]) != prior.shape:
        raise ValueError(f"configurations must have shape (batch, {prior.shape}), got {tuple(x.shape)}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got method={method!r}")
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got divergence={divergence!r}")


def pf_log_likelihood(
    score: Score,
    process: Process,
    x0: torch.Tensor,
    prior: ModePrior,
    *,
    steps: int = 50,
    method: str = "rk4",
    grid="uniform",
    t_min: float = 0.0,
    divergence: str = "exact",
    n_probes: int = 1,
    control_variate: ModePrior | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """PF-ODE log-density ``log q(x_0) = log p_T(x_T) + int_{t_min}^T div f(x_t, t) dt`` (THEORY 8), ``(batch,)``.

    Integrates the augmented ODE from ``x_0`` at ``t_min`` up to ``T`` on the reversed sampler grid
    (``steps``, ``grid`` as in :func:`~critdiff_ref.samplers.reverse.probability_flow`); ``prior`` is
    the model density at ``T``. Hutchinson probes are drawn once per trajectory (``n_probes`` per
    configuration), so ``E[log q]`` over probes equals the exact-divergence value on the same grid.
    ``control_variate`` (a Gaussian ``ModePrior``, e.g. the data's measured ``<|phi_k|^2>``): Hutchinson
    estimates only the divergence of ``s - s_ref`` and adds ``sum_k K_ref(k)`` exactly (still unbiased;
    zero variance when the score is that Gaussian's).
    """
    check_flow_inputs(x0, prior, method, divergence, control_variate)
    times = [float(t) for t in resolve_grid(process, steps, grid, t_min).flip(0)]
    probes = rademacher_probes(n_probes, x0, generator) if divergence == "hutchinson" else None
    xT, ell = _augmented_flow(score, process, x0, times, method, _divergence_fn(score, divergence, probes, process, control_variate))
    return prior.log_prob(xT) + ell


def pf_sample(
    score: Score,
    process: Process,
    n: int,
    prior: ModePrior,
    *,
    steps: int = 50,
    method: str = "rk4",
    grid="uniform",
    t_min: float = 0.0,
    divergence: str = "exact",
    n_probes: int = 1,
    control_variate: ModePrior | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``x_T ~ prior``, integrate the PF-ODE down to ``t_min``: ``(x_0 (n, *lattice), log q(x_0) (n,))``.

    ``log q(x_0) = log p_T(x_T) - int_{t_min}^T div f dt``, accumulated on the way down (same order as
    the ODE method).
    """
    xT = prior.sample(n, generator, dtype=dtype, device=device)
    check_flow_inputs(xT, prior, method, divergence, control_variate)
    times = [float(t) for t in resolve_grid(process, steps, grid, t_min)]
    probes = rademacher_probes(n_probes, xT, generator) if divergence == "hutchinson" else None
    x0, ell = _augmented_flow(score, process, xT, times, method, _divergence_fn(score, divergence, probes, process, control_variate))
    return x0, prior.log_prob(xT) - ell  # ell = int_T^{t_min} div f dt = -int_{t_min}^T div f dt


def action_r2(log_q: torch.Tensor, action: torch.Tensor) -> float:
    """``R^2`` of the linear fit of ``S_eff = -log q`` against the true action ``S``: the squared Pearson
    correlation (1 when the model density is ``exp(-S) / Z`` up to a constant)."""
    a = torch.as_tensor(log_q, dtype=torch.float64).reshape(-1)
    b = torch.as_tensor(action, dtype=torch.float64).reshape(-1)
    if a.shape != b.shape or a.numel() < 3:
        raise ValueError(f"log_q and action need equal sizes >= 3, got {a.numel()} and {b.numel()}")
    a, b = a - a.mean(), b - b.mean()
    den = float((a * a).sum() * (b * b).sum())
    if den == 0.0:
        raise ValueError("log_q or action is constant: R^2 undefined")
    return float((a * b).sum()) ** 2 / den
