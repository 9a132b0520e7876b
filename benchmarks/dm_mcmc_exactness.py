"""Exact DM-MCMC: cost of the exact log q against V, and the Hutchinson bias on chi_2.

``python -m benchmarks.dm_mcmc_exactness cost``: seconds per proposal of the EXACT log q (log-det of the
discretised flow map, :func:`critdiff_ref.samplers.flow_jacobian.flow_jacobian_log_density`) at
V = 16, 64, 256 (d = 2), with the Jacobian rows in vmapped chunks (default cap) and one row per backward
pass (``chunk=1``, the old sequential path), and a Hutchinson proposal for scale; scores: the exact
Fourier score (float64) and the default CPU U-Net (``channels=(8, 16)``, float32, untrained weights:
the cost does not depend on them); 16 Heun steps, batch 4.

``python -m benchmarks.dm_mcmc_exactness bias``: DM-MCMC chi_2 with the exact log q against the
ODE-integrated Hutchinson log q (1 Rademacher probe; without and with the Gaussian control variate) on
the SAME proposals, phi^4 at kappa = 0.2, lam = 0.022, L = 4 and 8, against a long HMC run. The proposal
score is a cheap nonlinear model (the free-field score plus a smoothed cubic term, :func:`cubic_model_score`)
so that the Hutchinson noise depends on the configuration, as for a trained network (for a linear score
the noise law is the same for every x and the pseudo-marginal chain is unbiased).
"""

from __future__ import annotations

import json
import sys
import time

import torch

from critdiff_ref import lattice
from critdiff_ref.phi4.ensemble import _hmc_ensemble, summarize_chains
from critdiff_ref.processes import VE
from critdiff_ref.samplers import dmmc, flow_jacobian, likelihood
from critdiff_ref.samplers.grids import resolve_grid
from critdiff_ref.scores import exact_score
from critdiff_ref.targets import GaussianField, Phi4Lattice
from critdiff_ref.trainers import dsm

STEPS, T_MIN = 16, 1e-3


def cost(sizes=(4, 8, 16), batch: int = 4) -> list[dict]:
    """Seconds per proposal: exact log q (vmapped chunks / one row per pass) and Hutchinson."""
    rows = []
    for score_name in ("fourier", "unet"):
        for L in sizes:
            process = VE(sigma=25.0, T=1.0)
            if score_name == "fourier":
                score, dtype = exact_score(GaussianField(L, 2, 0.5), process), torch.float64
            else:
                score, dtype = dsm.ScoreUNet(L, 2, process, channels=(8, 16), generator=torch.Generator().manual_seed(0)), torch.float32
                for p in score.parameters():
                    p.requires_grad_(False)
            prior = likelihood.isotropic_prior(process, L, 2)
            xT = prior.sample(batch, torch.Generator().manual_seed(1), dtype=dtype)
            kw = dict(steps=STEPS, method="heun", t_min=T_MIN)
            paths = {
                "exact_vmapped": lambda: flow_jacobian.flow_jacobian_log_density(score, process, xT, prior, **kw),
                "exact_one_row_per_pass": lambda: flow_jacobian.flow_jacobian_log_density(score, process, xT, prior, chunk=1, **kw),
                "hutchinson": lambda: likelihood.pf_sample(score, process, batch, prior, divergence="hutchinson",
                                                           generator=torch.Generator().manual_seed(2), dtype=dtype, **kw),
            }
            row = {"score": score_name, "V": L * L}
            for name, fn in paths.items():
                if name == "exact_one_row_per_pass" and score_name == "unet" and L > 8:
                    continue  # ~V/8 minutes on a loaded 2-core CPU
                fn()  # warm-up
                t0 = time.perf_counter()
                fn()
                row[name] = (time.perf_counter() - t0) / batch
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def cubic_model_score(target: Phi4Lattice, process, strength: float = 0.5):
    """A nonlinear model score: the exact score of the lam = 0 field plus ``-w(t) G[(G x)^3]``, ``G`` the
    Fourier multiplier ``exp(-khat^2 / 2)``, ``w(t) = 4 strength lam / (1 + Xi(t))^2`` (a smoothed
    phi^3 force that fades with the noise). Not the exact score of anything: a cheap stand-in for a
    trained network, whose Jacobian's off-diagonal part depends on x."""
    free = exact_score(Phi4Lattice(target.L, target.d, target.kappa, 0.0), process)
    khat2 = lattice.khat2(target.L, target.d)
    G = torch.exp(-0.5 * khat2)

    def smooth(x):
        return lattice.ifft(lattice.fft(x, target.d) * G.to(x.device), target.d).real

    def score(x, t):
        w = 4.0 * strength * target.lam / (1.0 + float(process.Xi(t))) ** 2
        return free(x, t) - w * smooth(smooth(x) ** 3)

    return score


def bias(L: int, n_chains: int = 32, n_iter: int = 250, batch: int = 500, seed: int = 0) -> dict:
    """chi_2 (and |M|, U_L) of DM-MCMC with the exact log q and with Hutchinson log q on the same proposals."""
    torch.set_num_threads(1)
    kappa, lam = 0.2, 0.022
    target = Phi4Lattice(L, 2, kappa, lam)
    t0 = time.time()
    _, _, hmc = _hmc_ensemble(L, 2, kappa, lam, n_chains=32, n_traj=2000, burn_in=100, eps=0.1, n_steps=10, thin=1,
                              seed=seed, dtype="float64", device="cpu", progress=False)
    process = VE(sigma=25.0, T=1.0)
    score = cubic_model_score(target, process)
    gen = torch.Generator().manual_seed(seed + 1)
    prior = likelihood.isotropic_prior(process, L, 2)
    reference = likelihood.ModePrior(Phi4Lattice(L, 2, kappa, 0.0).free_field().c0(), 2)
    times = [float(t) for t in resolve_grid(process, STEPS, "uniform", T_MIN)]
    xs, lq = [], {"exact": [], "hutchinson": [], "hutchinson_cv": []}
    for _ in range(0, n_chains * n_iter, batch):
        xT = prior.sample(batch, gen)
        x0, lq_exact = flow_jacobian.flow_jacobian_log_density(score, process, xT, prior, steps=STEPS, method="heun", t_min=T_MIN)
        xs.append(x0)
        lq["exact"].append(lq_exact)
        for name, cv in (("hutchinson", None), ("hutchinson_cv", reference)):
            probes = likelihood.rademacher_probes(1, xT, gen)
            div = likelihood._divergence_fn(score, "hutchinson", probes, process, cv)
            x0h, ell = likelihood._augmented_flow(score, process, xT, times, "heun", div)
            if not torch.allclose(x0h, x0, rtol=0.0, atol=1e-10):
                raise RuntimeError("the ODE path and the flow map disagree")
            lq[name].append(prior.log_prob(xT) - ell)
    x = torch.cat(xs).reshape(n_iter, n_chains, L, L)
    S = target.action(x)
    keys = ("absM", "absM_err", "chi2", "chi2_err", "binder", "binder_err")
    out = {"L": L, "proposals": n_chains * n_iter, "hmc": {k: hmc[k] for k in keys},
           "raw": {k: v for k, v in summarize_chains(x, 2).items() if k in keys}}
    exact_lq = torch.cat(lq["exact"]).reshape(n_iter, n_chains)
    for name, parts in lq.items():
        log_q = torch.cat(parts).reshape(n_iter, n_chains)
        samples, acc = dmmc.chain_from_proposals(x, log_q, S, burn_in=10, generator=torch.Generator().manual_seed(seed + 5))
        s = summarize_chains(samples, 2)
        out[name] = {**{k: s[k] for k in keys}, "acceptance": float(acc.mean()),
                     "sd_log_q_error": float((log_q - exact_lq).std())}
    out["seconds"] = time.time() - t0
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":  # pragma: no cover
    what = sys.argv[1] if len(sys.argv) > 1 else "cost"
    if what == "cost":
        torch.set_num_threads(1)
        cost()
    elif what == "bias":
        for L in (int(a) for a in sys.argv[2:] or ("4", "8")):
            bias(L)
    else:
        raise SystemExit("usage: python -m benchmarks.dm_mcmc_exactness [cost | bias [L ...]]")
