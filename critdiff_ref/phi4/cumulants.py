"""Cumulants of the lattice phi^4 magnetisation (THEORY 6 estimators, THEORY 8 observables): HMC vs the
diffusion model of :mod:`critdiff_ref.phi4.experiment` (its raw PF-ODE samples) vs DM-MCMC ("Table 2").

``M = (1/V) sum_x phi_x`` per configuration; with ``k_n`` the unbiased k-statistics of M
(:func:`critdiff_ref.observables.kstat`, THEORY 6) the table reports the V-scaled, intensive combinations

- ``chi_2 = V k_2``                 (THEORY 8's susceptibility ``V <M^2>_c``),
- ``g_4   = V k_4 / k_2^2``          (``= -3 V U_L`` when ``<M> = 0``, U_L the Binder cumulant of THEORY 8),
- ``g_6   = V^2 k_6 / k_2^3``.

Why these powers of V: ``kappa_n(M) = V^{-n} sum_{x_1..x_n} <phi_{x_1} .. phi_{x_n}>_c = V^{1-n} chi_n`` with
``chi_n`` the zero-momentum connected n-point function per site, finite as ``V -> inf`` at fixed correlation
length (symmetric phase); so ``chi_2``, ``g_4 = chi_4 / chi_2^2`` and ``g_6 = chi_6 / chi_2^3`` have an
infinite-volume limit, while the unscaled ratios ``k_4/k_2^2 ~ 1/V`` and ``k_6/k_2^3 ~ 1/V^2`` vanish
(derivation and the exact values below: THEORY 6.5, "Magnetisation cumulants of lattice phi^4").

Exact values (:func:`exact_cumulants`) exist in two limits: the free field ``lam = 0`` (Gaussian: ``chi_2 =
c0(k=0) = 1/(2 - 4 d kappa)``, ``g_4 = g_6 = 0``; THEORY 8) and decoupled sites ``kappa = 0`` (M is a mean
of V iid sites, so ``chi_2, g_4, g_6 = kappa_2, kappa_4/kappa_2^2, kappa_6/kappa_2^3`` of one site, by
quadrature of ``exp(-(1 - 2 lam) phi^2 - lam phi^4)``).

Errors: independent configurations (the raw DM samples) by bootstrap over configurations; Markov chains
(HMC, DM-MCMC; ``(n_measurements, n_chains)``) by the delete-one-chain jackknife over independent chains,
which needs no autocorrelation model.  Checks compare rows within :data:`K_SIGMA` combined standard errors.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

from .._args import float_tensor, integer
from ..observables import kstat
from ..targets import Phi4Lattice, Phi4ZeroD

__all__ = ["QUANTITIES", "K_SIGMA", "normalised_cumulants", "magnetisation_cumulants", "exact_cumulants",
           "cumulant_table", "phi4_cumulants", "format_cumulants"]

QUANTITIES = ("chi2", "g4", "g6")
# Tolerance of every check, in combined standard errors.  The chain errors are delete-one-chain jackknife
# errors with R - 1 degrees of freedom; for R = 8 (the DM-MCMC chains of ``critdiff phi4``'s defaults) a
# Student-t tail gives P(|t_7| > 5) = 1.6e-3 per check (Gaussian: 5.7e-7), i.e. <= 1 % for the <= 6 required
# checks of one table; k = 4 would give 5.2e-3 per check (3 % per table).  With more chains (R = 16: 1.6e-4)
# the false-failure rate only falls.
K_SIGMA = 5.0
_ROWS = ("HMC", "DM", "DM-MCMC")
_APPROXIMATE = ("DM",)  # the raw diffusion-model samples: their deviation is a measurement, not a failure


def normalised_cumulants(M: torch.Tensor, V: int, *, axis: int = -1) -> torch.Tensor:
    """``(chi_2, g_4, g_6) = (V k_2, V k_4 / k_2^2, V^2 k_6 / k_2^3)`` of the magnetisations ``M`` along ``axis``.

    ``k_n`` the unbiased k-statistics (THEORY 6); the V-scaling makes all three intensive (module docstring,
    THEORY 8).  Shapes: ``(*batch, N)`` (``axis = -1``) -> ``(*batch, 3)``.
    """
    k2, k4, k6 = (kstat(M, n, axis=axis) for n in (2, 4, 6))
    return torch.stack([V * k2, V * k4 / k2**2, V**2 * k6 / k2**3], dim=-1)


def magnetisation_cumulants(M, V: int, *, n_boot: int = 200, seed: int = 0) -> dict:
    """``chi_2, g_4, g_6`` (:func:`normalised_cumulants`) of magnetisations ``M`` with standard errors.

    ``M`` ``(N,)``: independent configurations, bootstrap over configurations (``n_boot`` resamples drawn with
    a generator seeded by ``seed``).  ``M`` ``(N, R)``: ``N`` measurements of ``R >= 2`` independent Markov
    chains, delete-one-chain jackknife ``err^2 = (R - 1)/R sum_r (theta_{-r} - mean)^2`` (THEORY 8).
    Returns ``{"chi2": .., "chi2_err": .., "g4": .., .., "n_configs": N R, "errors": "bootstrap"|"jackknife"}``.
    """
    Mt, _ = float_tensor(M, "M")
    V = integer("V", V, 1)
    n_boot = integer("n_boot", n_boot, 2)
    seed = integer("seed", seed, 0)
    Mt = Mt.detach().to(device="cpu", dtype=torch.float64)
    if Mt.ndim not in (1, 2):
        raise ValueError(f"M must have shape (N,) (independent) or (N, R) (R chains), got M.shape={tuple(Mt.shape)}")
    if not bool(torch.isfinite(Mt).all()):
        raise ValueError("M must be finite (a non-finite magnetisation: a diverged sampler?)")
    flat = Mt.reshape(-1)
    if flat.numel() < 8:
        raise ValueError(f"M needs at least 8 configurations for k_6 and its error, got {flat.numel()}")
    value = normalised_cumulants(flat, V)
    if Mt.ndim == 1:
        gen = torch.Generator().manual_seed(seed)
        N, chunk = flat.numel(), max(1, 2**22 // flat.numel())  # resamples per batch: ~4M indices in memory
        reps = [normalised_cumulants(flat[torch.randint(0, N, (min(chunk, n_boot - b), N), generator=gen)], V)
                for b in range(0, n_boot, chunk)]
        err = torch.cat(reps).std(dim=0, correction=1)
        how = "bootstrap"
    else:
        R = Mt.shape[1]
        if R < 2:
            raise ValueError(f"M with shape (N, R) needs R >= 2 independent chains for the jackknife, got R={R}")
        reps = torch.stack([normalised_cumulants(torch.cat([Mt[:, :r], Mt[:, r + 1:]], dim=1).reshape(-1), V)
                            for r in range(R)])
        err = ((R - 1) / R * ((reps - reps.mean(dim=0)) ** 2).sum(dim=0)).sqrt()
        how = "jackknife"
    out = {}
    for j, q in enumerate(QUANTITIES):
        out[q], out[f"{q}_err"] = float(value[j]), float(err[j])
    return {**out, "n_configs": int(flat.numel()), "errors": how}


def exact_cumulants(target: Phi4Lattice) -> dict | None:
    """Exact ``chi_2, g_4, g_6`` where known (THEORY 8), else ``None``.

    ``lam = 0`` (Gaussian field, ``kappa < 1/(2d)``): ``chi_2 = c0(0) = 1/(2 kappa m^2) = 1/(2 - 4 d kappa)``,
    ``g_4 = g_6 = 0``.  ``kappa = 0``: independent sites with weight ``exp(-(1 - 2 lam) phi^2 - lam phi^4)``,
    the 0-D model :class:`~critdiff_ref.targets.Phi4ZeroD` with ``mu2 = 2 (1 - 2 lam)``, ``g = 24 lam``; its
    moments by quadrature give ``kappa_2 = m_2``, ``kappa_4 = m_4 - 3 m_2^2``, ``kappa_6 = m_6 - 15 m_4 m_2 +
    30 m_2^3`` (odd moments vanish) and ``chi_2, g_4, g_6 = kappa_2, kappa_4/kappa_2^2, kappa_6/kappa_2^3``.
    """
    if not isinstance(target, Phi4Lattice):
        raise TypeError(f"target must be a Phi4Lattice, got {type(target).__name__}")
    if target.lam == 0.0:
        return {"chi2": 1.0 / (2.0 - 4.0 * target.d * target.kappa), "g4": 0.0, "g6": 0.0}
    if target.kappa == 0.0:
        site = Phi4ZeroD(mu2=2.0 * (1.0 - 2.0 * target.lam), g=24.0 * target.lam)
        m2, m4, m6 = (site.moment(n) for n in (2, 4, 6))
        k2, k4, k6 = m2, m4 - 3 * m2**2, m6 - 15 * m4 * m2 + 30 * m2**3
        return {"chi2": k2, "g4": k4 / k2**2, "g6": k6 / k2**3}
    return None


def _check(name: str, q: str, row: dict, ref: dict, ref_err: float, k: float, required: bool) -> dict:
    se = math.hypot(row[f"{q}_err"], ref_err)
    tol = k * se
    dev = row[q] - ref[q]
    return {"name": name, "quantity": q, "measured": row[q], "reference": ref[q], "tolerance": tol,
            "z": dev / se if se > 0 else math.copysign(math.inf, dev) if dev else 0.0,
            "passed": bool(abs(dev) <= tol), "required": required}


def cumulant_table(
    samples: Mapping[str, torch.Tensor],
    target: Phi4Lattice,
    *,
    reference: str = "HMC",
    approximate: tuple[str, ...] = _APPROXIMATE,
    k: float = K_SIGMA,
    n_boot: int = 200,
    seed: int = 0,
) -> dict:
    """Rows ``exact`` (or ``None``) and one per entry of ``samples`` (``name -> M``, ``(N,)`` independent or
    ``(N, R)`` chains; :func:`magnetisation_cumulants`), and checks within ``k`` combined standard errors:
    every row against ``exact`` (when known; exact's error is 0) and every other row against ``reference``.

    A check is ``required`` unless its row is in ``approximate`` (the raw DM samples: their deviation from HMC
    measures the model's error; HMC and DM-MCMC are exact samplers, THEORY 8).  Returns
    ``{"rows": {"exact": .., name: ..}, "checks": [..], "passed": all required checks pass, "k": k, "V": V}``.
    """
    if not isinstance(target, Phi4Lattice):
        raise TypeError(f"target must be a Phi4Lattice, got {type(target).__name__}")
    if not isinstance(samples, Mapping) or not samples:
        raise ValueError(f"samples must be a non-empty mapping name -> magnetisations, got samples={samples!r}")
    if reference not in samples:
        raise ValueError(f"reference must name a row of samples {tuple(samples)}, got reference={reference!r}")
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not (0 < k < math.inf):
        raise ValueError(f"k must be a positive finite number of standard errors, got k={k!r}")
    rows = {"exact": exact_cumulants(target)}
    for j, (name, M) in enumerate(samples.items()):
        rows[name] = magnetisation_cumulants(M, target.V, n_boot=n_boot, seed=seed + j)
    checks = []
    for name in samples:
        required = name not in approximate
        for q in QUANTITIES:
            if rows["exact"] is not None:
                checks.append(_check(f"{name} vs exact", q, rows[name], rows["exact"], 0.0, k, required))
            if name != reference:
                ref = rows[reference]
                checks.append(_check(f"{name} vs {reference}", q, rows[name], ref, ref[f"{q}_err"], k, required))
    return {"rows": rows, "checks": checks, "passed": all(c["passed"] for c in checks if c["required"]),
            "k": float(k), "V": target.V}


def phi4_cumulants(result: dict, target: Phi4Lattice, *, k: float = K_SIGMA, n_boot: int = 200, seed: int = 0) -> dict:
    """The table of :func:`cumulant_table` for a run of ``run_phi4_experiment(..., train_dm=True,
    keep_arrays=True)`` at ``target``'s parameters: rows exact / HMC (``M_hmc``, chains) / DM (``M_generated``,
    the raw PF-ODE samples, independent) / DM-MCMC (``M_chain``, chains).  DM-MCMC's checks are required
    unless its ``log q`` was the Hutchinson estimate (``result["dm"]["divergence"]``): that chain is only
    approximate (THEORY 8), and its checks are then reported as informative like the raw DM samples'."""
    arrays = result.get("dm", {}).get("arrays") if isinstance(result, dict) else None
    if not isinstance(arrays, dict) or not all(key in arrays for key in ("M_hmc", "M_generated", "M_chain")):
        raise ValueError("result must come from run_phi4_experiment(..., train_dm=True, keep_arrays=True) "
                         "(result['dm']['arrays'] with M_hmc, M_generated, M_chain)")
    samples = {"HMC": arrays["M_hmc"], "DM": arrays["M_generated"], "DM-MCMC": arrays["M_chain"]}
    approximate = _APPROXIMATE + (("DM-MCMC",) if result["dm"].get("divergence") == "hutchinson" else ())
    table = cumulant_table(samples, target, approximate=approximate, k=k, n_boot=n_boot, seed=seed)
    return {**table, "divergence": result["dm"].get("divergence")}


def format_cumulants(table: dict) -> str:
    """The table as plain text: value +- error per quantity, then one line per check."""
    head = f"{'':<10}{'N':>7}  {'errors':<10}" + "".join(f"{h:>24}" for h in ("chi_2 = V k2", "g_4 = V k4/k2^2",
                                                                              "g_6 = V^2 k6/k2^3"))
    lines = [f"magnetisation cumulants (V = {table['V']}; THEORY 6, 8)", head]
    for name, r in table["rows"].items():
        if r is None:
            continue
        errs = [r.get(f"{q}_err") for q in QUANTITIES]
        cells = [f"{r[q]: .5g}" + (f" +- {e:.3g}" if e is not None else "") for q, e in zip(QUANTITIES, errs)]
        lines.append(f"{name:<10}{r.get('n_configs', ''):>7}  {r.get('errors', 'exact'):<10}"
                     + "".join(f"{c:>24}" for c in cells))
    for c in table["checks"]:
        status = ("pass" if c["passed"] else "FAIL") if c["required"] else ("ok  " if c["passed"] else "off ")
        lines.append(f"{status}  {c['name']} {c['quantity']}: {c['measured']:.5g} vs {c['reference']:.5g}"
                     f" +- {c['tolerance']:.3g} ({table['k']:g} SE; z = {c['z']:+.2f})"
                     + ("" if c["required"] else "  [approximate sampler: informative]"))
    return "\n".join(lines)
