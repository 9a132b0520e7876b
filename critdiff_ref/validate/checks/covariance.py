"""Covariance checks of a wrapped sampler on Gaussian fields against exact answers (THEORY 2).

- Gaussian field, deterministic samplers: the sampler is linear in its start noise, so feeding the
  ``V`` (zero-mode-projected) site basis states gives its exact linear map ``A`` and the exact
  generated covariance ``Sigma_gen = (A P)(A P)^T`` with no sampling noise.  Measured: relative
  Frobenius error, W2 and KL against the data covariance (``c0``, total), against the schedule's exact
  floor (the continuous flow from the same start law over the same time range: the sampler's own
  error), and the floor's own error (the schedule's endpoints).
- Gaussian field, stochastic samplers whose noise can be supplied (score samplers with ``noise=``,
  diffusers schedulers drawing through ``randn_tensor``): the output is linear in the start and in
  every draw, so probing both with site basis states gives the exact covariance
  (:mod:`.probes`); a residual above rounding (randomness drawn elsewhere) falls
  back to Monte Carlo per-mode variances with standard errors, as for every other stochastic sampler.

(Convergence order: :mod:`critdiff_ref.validate.checks.order`; non-Gaussian targets:
:mod:`critdiff_ref.validate.checks.nongaussian`.)

Any exception from the sampler, or an output of the wrong shape/dtype/device or with NaN, becomes a
failed result whose ``detail`` says what was wrong: the report never crashes (running the sampler:
:mod:`critdiff_ref.validate.runners.execute`; basis-state probing: :mod:`.probes`).
"""

from __future__ import annotations

import math
import traceback

import torch

from ... import lattice
from ...observables import gaussian_kl, gaussian_w2, relative_frobenius_error
from ...samplers import ode_variance_limit, sde_variance_limit
from ...targets import GaussianField
from ..runners.base import Runner
from ..runners.execute import field_label, run_checked, white_noise
from .probes import probe_covariance, probe_noise_covariance
from .result import CheckResult, check_result

__all__ = [
    "RTOL_SOURCE",
    "floor_variance",
    "fourier_matrix",
    "covariance_metrics",
    "mc_mode_variance",
    "endpoint_jump_error",
    "gaussian_checks",
]


# -- exact floor and metrics ---------------------------------------------------------------------
def floor_variance(runner: Runner, f: GaussianField, steps: int) -> torch.Tensor:
    """Per-mode end variance of the exact continuous flow the run discretises, from the same start law to the
    same END level: ``out_scale^2 v_flow(t_min)`` (THEORY 2, start mismatch; :class:`~..runners.base.Schedule`)."""
    sch = runner.schedule(f, steps)
    if sch.process is None:
        return f.c0()
    limit = sde_variance_limit if sch.sde else ode_variance_limit
    return sch.out_scale**2 * limit(f, sch.process, sch.v_T, sch.t_min)


def endpoint_jump_error(runner: Runner, f: GaussianField, steps: int) -> float | None:
    """Relative covariance error a final one-step jump ``x <- D(x, sigma_last)`` from the last noise level
    to 0 leaves after an otherwise exact flow (diffusers schedules end at ``sigma(t=0) > 0`` then jump):
    ``v = v_flow(sigma_last) (c0 / (c0 + sigma_last^2))^2`` against the exact flow to 0.  None if n/a."""
    sch = runner.schedule(f, steps)
    if sch.process is None or sch.sde or not sch.sigma_last:
        return None
    s2 = min(sch.sigma_last**2, sch.process.T)
    c0 = f.c0()
    v = ode_variance_limit(f, sch.process, sch.v_T, s2) * (c0 / (c0 + s2)) ** 2
    return relative_frobenius_error(v, floor_variance(runner, f, steps))


def _circulant(f: GaussianField, v: torch.Tensor) -> torch.Tensor:
    """Real-space ``V x V`` covariance with per-mode variances ``v`` (unitary basis)."""
    V = f.V
    eye = torch.eye(V, dtype=torch.float64).reshape(V, *f.shape)
    cols = lattice.ifft(lattice.fft(eye, f.d) * v, f.d).real
    return cols.reshape(V, V)


def fourier_matrix(f: GaussianField, S: torch.Tensor) -> torch.Tensor:
    """``F S F^H`` for a real-space ``V x V`` matrix ``S`` (unitary F over the lattice)."""
    V = f.V
    eye = torch.eye(V, dtype=torch.complex128).reshape(V, *f.shape)
    F = lattice.fft(eye, f.d).reshape(V, V).T  # column i = F e_i
    return F @ S.to(torch.complex128) @ F.conj().T


def _w2_full(f: GaussianField, S_gen_k: torch.Tensor, c0: torch.Tensor) -> float:
    """Gaussian W2 between ``N(0, S_gen)`` (Fourier basis, full) and ``N(0, diag c0)``:
    ``W2^2 = tr S_gen + tr c0 - 2 tr (c0^1/2 S_gen c0^1/2)^1/2`` on the fluctuating modes (where the
    matrix square root is well conditioned), plus any generated variance on a removed zero mode."""
    mask = f.mode_mask().reshape(-1)
    c = c0.reshape(-1)[mask].to(torch.complex128).sqrt()
    S = S_gen_k[mask][:, mask]
    M = c[:, None] * S * c[None, :]
    root = torch.linalg.eigvalsh(0.5 * (M + M.conj().T)).clamp_min(0).sqrt().sum()
    leak = float(S_gen_k.diagonal().real[~mask].sum())
    w2sq = float(S.diagonal().real.sum()) + float(c0.sum()) - 2.0 * float(root) + leak
    return max(w2sq, 0.0) ** 0.5


def _kl_full(f: GaussianField, S_gen_k: torch.Tensor, c0: torch.Tensor) -> float:
    """``KL(N(0, S_gen) || N(0, diag c0))`` on the fluctuating modes (inf if S_gen leaks into a removed mode)."""
    mask = f.mode_mask().reshape(-1)
    c = c0.reshape(-1)
    leak = S_gen_k.diagonal().real[~mask]
    if leak.numel() and float(leak.abs().max()) > 1e-12 * float(c[mask].max()):
        return math.inf
    S = S_gen_k[mask][:, mask]
    d = c[mask].to(torch.complex128).rsqrt()
    M = d[:, None] * S * d[None, :]
    lam = torch.linalg.eigvalsh(0.5 * (M + M.conj().T))
    if float(lam.min()) <= 0:
        return math.inf
    return float(0.5 * (lam - 1 - torch.log(lam)).sum())


def covariance_metrics(f: GaussianField, Sigma: torch.Tensor, floor: torch.Tensor) -> dict:
    """Errors of a real-space covariance against the data (``c0``) and against the schedule floor."""
    c0 = f.c0()
    S_ref = _circulant(f, c0)
    S_floor = _circulant(f, floor)
    Sk = fourier_matrix(f, Sigma)
    v = Sk.diagonal().real.reshape(f.shape).clamp_min(0)
    offdiag = float((Sk - torch.diag(Sk.diagonal())).abs().norm() / max(float(Sk.abs().norm()), 1e-300))
    return {
        "own_error": float((Sigma - S_floor).norm() / S_floor.norm()),
        "total_error": float((Sigma - S_ref).norm() / S_ref.norm()),
        "floor_error": relative_frobenius_error(floor, c0),
        "w2": _w2_full(f, Sk, c0),
        "kl": _kl_full(f, Sk, c0),
        "floor_w2": gaussian_w2(floor, c0),
        "floor_kl": gaussian_kl(floor, c0),
        "offdiag": offdiag,
        "mode_variance": v,
    }


def mc_mode_variance(runner: Runner, f: GaussianField, steps: int, n: int, seed: int, dtype, device):
    """Monte Carlo per-mode variances ``mean |x_k|^2`` and their standard errors (n samples)."""
    g = torch.Generator(device=device or "cpu").manual_seed(seed)
    z = white_noise(f, n, g, dtype, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x = run_checked(runner, f, steps, z, g).to(torch.float64).cpu()
    p = lattice.fft(x, f.d).abs() ** 2
    return p.mean(0), p.std(0) / math.sqrt(n), x


def _mode_radius(f: GaussianField) -> torch.Tensor:
    k = lattice.momenta(f.L, f.d)
    return torch.sqrt(sum(torch.minimum(kk, 2 * math.pi - kk) ** 2 for kk in k))


# -- Gaussian checks -----------------------------------------------------------------------------
RTOL_SOURCE = "user accuracy target at the largest step count (validate(rtol=...))"


def gaussian_checks(runner: Runner, f: GaussianField, steps: tuple[int, ...], *, rtol: float,
                    deterministic: bool, n_samples: int, seed: int, dtype=torch.float64, device=None):
    """Covariance checks at each step count and the convergence-order check for one field.

    Returns ``(results, series)`` with ``series = {"steps", "own_error", "total_error", "floor_error",
    "noise"}`` for the error-vs-steps plot and ``per_mode`` data for the variance-vs-``|k|`` plot.
    """
    label = field_label(f)
    results: list[CheckResult] = []
    series = {"steps": [], "own_error": [], "total_error": [], "floor_error": [], "noise": []}
    eps = torch.finfo(dtype).eps
    for i, N in enumerate(steps):
        last = i == len(steps) - 1
        try:
            floor = floor_variance(runner, f, N)
            # rounding: ~10 flops/step per entry with a x100 margin, in the working dtype or in
            # float32 (diffusers schedulers upcast/compute steps in float32 internally)
            lin_tol = max(1e3 * N * eps, 1e2 * N * torch.finfo(torch.float32).eps)
            probed, probe_note = None, ""
            if not deterministic:
                try:
                    probed = probe_noise_covariance(runner, f, N, dtype, device)
                except Exception as err:  # noqa: BLE001 - the Monte Carlo path below reports a broken sampler
                    probe_note = f", noise probing failed ({type(err).__name__}: {err}): Monte Carlo"
            if probed is not None and probed[1] > lin_tol:
                # some randomness bypasses run_noise (or the sampler is not linear): Monte Carlo below
                probe_note, probed = f", noise probing not exact (residual {probed[1]:.2g}): Monte Carlo", None
            elif probed is not None:
                probe_note = f", exact by noise probing ({probed[2]} draws)"
            if probed is not None:
                m = covariance_metrics(f, probed[0], floor)
                noise = 0.0
            elif deterministic:
                Sigma, resid = probe_covariance(runner, f, N, dtype, device)
                m = covariance_metrics(f, Sigma, floor)
                noise = 0.0
                if last:
                    results.append(check_result(
                        label, "linearity", resid, 0.0, lin_tol,
                        "rounding, max(1e3 steps eps(dtype), 1e2 steps eps(float32)): the exact score makes every sampler linear",
                        resid <= lin_tol,
                        "sampler is not linear in its start (a bias, clipping, or state kept between calls)"
                        if resid > lin_tol else "", steps=N, field=f))
            else:
                v, se, _ = mc_mode_variance(runner, f, N, n_samples, seed + N, dtype, device)
                noise = float(torch.sqrt((se**2).sum() / (floor**2).sum()))
                # E ||v_hat - v||^2 = ||bias||^2 + sum se^2: subtract the Monte Carlo part (debiased estimate)
                raw = relative_frobenius_error(v, floor)
                m = {
                    "own_error": math.sqrt(max(raw * raw - noise * noise, 0.0)),
                    "total_error": relative_frobenius_error(v, f.c0()),
                    "floor_error": relative_frobenius_error(floor, f.c0()),
                    "w2": gaussian_w2(v, f.c0()),
                    "kl": gaussian_kl(torch.where(f.mode_mask(), v, torch.zeros_like(v)), f.c0()),
                    "offdiag": float("nan"),
                    "mode_variance": v,
                }
        except Exception as err:  # noqa: BLE001 - any sampler failure is a failed check, not a crash
            results.append(check_result(label, "covariance", math.nan, 0.0, rtol, RTOL_SOURCE, False,
                                        f"{type(err).__name__}: {err}", {"traceback": traceback.format_exc(limit=3)},
                                        steps=N, field=f))
            continue
        series["steps"].append(N)
        for key in ("own_error", "total_error", "floor_error"):
            series[key].append(m[key])
        series["noise"].append(noise)
        tol = rtol + 3.0 * noise
        exact = deterministic or probed is not None
        src = RTOL_SOURCE if exact else RTOL_SOURCE + " + 3 Monte Carlo standard errors (false-failure < 1e-3)"
        detail = (f"total {m['total_error']:.3g} (floor {m['floor_error']:.3g}), W2 {m['w2']:.3g}, "
                  f"KL {m['kl']:.3g}" + (f", off-diagonal {m['offdiag']:.2g}" if exact else f", MC noise {noise:.2g}")
                  + probe_note)
        jump = endpoint_jump_error(runner, f, N)
        if jump is not None:
            detail += f", last-step jump from sigma={runner.schedule(f, N).sigma_last:.3g} alone: {jump:.3g}"
        data = {"steps": N, "endpoint_jump_error": jump,
                **{k: m[k] for k in ("own_error", "total_error", "floor_error", "w2", "kl")}}
        if last:
            data["per_mode"] = {"k": _mode_radius(f).reshape(-1).tolist(),
                                "rel_var_error": (((m["mode_variance"] - f.c0()) / torch.where(f.c0() > 0, f.c0(), torch.ones(1, dtype=torch.float64)))
                                                  * f.mode_mask()).reshape(-1).tolist(),
                                "rel_var_error_own": (((m["mode_variance"] - floor) / torch.where(floor > 0, floor, torch.ones(1, dtype=torch.float64)))
                                                      * f.mode_mask()).reshape(-1).tolist()}
        results.append(check_result(label, "covariance", m["own_error"], 0.0, tol if last else math.inf,
                                    src if last else "informational (not the largest step count)",
                                    (m["own_error"] <= tol) if last else None, detail, data, steps=N, field=f))
        if last and runner.schedule(f, N).process is not None:
            sch = runner.schedule(f, N)
            results.append(check_result(
                label, "schedule_floor", m["floor_error"], 0.0, rtol,
                "user accuracy target: the error the schedule's endpoints alone imply must fit in it",
                m["floor_error"] <= rtol,
                f"exact flow from N(0, v_T) at Xi(T) = {float(sch.process.Xi(sch.process.T)):.4g} to the end level t_min = {sch.t_min:.3g}"
                + (f" (output scale {sch.out_scale:.6g})" if sch.out_scale != 1.0 else "") + ": "
                f"relative covariance error {m['floor_error']:.3g}, W2 {m['floor_w2'] if 'floor_w2' in m else float('nan'):.3g}",
                steps=N, field=f))
    return results, series
