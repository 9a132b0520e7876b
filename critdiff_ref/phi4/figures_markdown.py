"""Markdown tables and plots of the phi^4 DM-MCMC figures (:mod:`critdiff_ref.phi4.figures`): one function per
part, reading the part's result dict (run lengths, wall times and the power of each chi_2 comparison included).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _io
from .power import format_seconds
from .sampling import iterations_for

__all__ = ["acceptance_markdown", "power_note", "autocorrelation_markdown", "tunnelling_statement", "broken_markdown", "plot_part",
           "MARKDOWN"]


def _pm(v: float, e: float, nd: int = 3) -> str:
    return f"{v:.{nd}f} ± {e:.{nd}f}"


def acceptance_markdown(result: dict) -> str:
    """The acceptance table as markdown (run lengths and wall times included)."""
    c = result["config"]
    net = (f"U-Net channels {c['channels']}" if c.get("net", "unet") == "unet" else
           f"fourier-local (local CNN width {c['channels'][-1]}, radius {c['radius']}; log-det step by step)")
    lines = [f"DM-MCMC acceptance, exact log q (Jacobian log-det of the discretised PF-ODE, {c['ode_method']}, "
             f"{c['ode_steps']} steps), lam = {c['lam']}, d = {c['d']}. DM: {net}, "
             f"{c['dm_steps']} DSM steps on {c['hmc_chains']} x {c['hmc_traj']} HMC trajectories; "
             f"{c['dm_chains']} chains x {c['dm_iter']} proposals per row. Acceptance error: standard error over "
             "the independent chains. Stationary acceptance: E[min(w(x), w(y))] / E[w] over all proposal pairs.",
             "",
             "| L | kappa | acceptance | stationary acceptance | chi_2 HMC | chi_2 DM-MCMC | power (10 % chi_2) | "
             "HMC s | train s | DM-MCMC s (s / proposal) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        train = "loaded" if r["checkpoint_loaded"] else f"{r['train_seconds']:.0f}"
        lines.append(f"| {r['L']} | {r['kappa']:g} | {_pm(r['acceptance'], r['acceptance_err'], 2)} | "
                     f"{r['stationary_acceptance']:.2f} | {_pm(r['chi2_hmc'], r['chi2_hmc_err'], 2)} | "
                     f"{_pm(r['chi2_dm_mcmc'], r['chi2_dm_mcmc_err'], 2)} | {r.get('power_10pct_chi2', math.nan):.2f} | "
                     f"{r['hmc_seconds']:.1f} | {train} | {r['mcmc_seconds']:.0f} ({r['seconds_per_proposal']:.3f}) |")
    return "\n".join(lines) + "\n\n" + power_note(result) + "\n"


def power_note(result: dict) -> str:
    """What the acceptance table's chi_2 comparisons can see: the power of each against a 10 % bias
    (:func:`critdiff_ref.phi4.power.power_plan`) and, for rows below the goal, the ``--dm-iter`` that buys it."""
    rows = [r for r in result["rows"] if "power" in r]
    if not rows:
        return "Power of the chi_2 comparisons: not recorded in this result."
    plan0 = rows[0]["power"]
    head = (f"Power (10 % chi_2): the probability that a {100 * plan0['bias']:g} % chi_2 bias of DM-MCMC fails a "
            f"{plan0['z_check']:g}-SE comparison with HMC, from the measured errors.")
    short = [r for r in rows if not r["power"]["enough"]]
    if not short:
        return head + f" Every row reaches {plan0['goal']:g}."
    c = result["config"]
    per_row = []
    for r in short:
        p = r["power"]
        if p["n_dm_needed"] is None:
            per_row.append(f"L = {r['L']}, kappa = {r['kappa']:g}: undefined (DM-MCMC chi_2 error 0: the chains did "
                           "not move)")
            continue
        per_chain = math.ceil(p["n_dm_needed"] / c["dm_chains"])
        extra = "" if p["extra_seconds"] is None else f", about {format_seconds(p['extra_seconds'])} more"
        hmc = f"; HMC too: --hmc-traj {math.ceil(c['hmc_traj'] * p['hmc_factor'])}" if p["hmc_limited"] else ""
        per_row.append(f"L = {r['L']}, kappa = {r['kappa']:g}: power {p['power']:.2f}, needs {p['dm_factor']:.1f}x "
                       f"the proposals (--dm-iter {iterations_for(per_chain)}{extra}{hmc})")
    return (head + f" Too short to see a {100 * plan0['bias']:g} % bias with power >= {plan0['goal']:g}: "
            + "; ".join(per_row) + ".")


_NAMES = {"metropolis": "local Metropolis", "hmc": "HMC", "dm_mcmc": "DM-MCMC", "dm_samples": "DM samples"}


def autocorrelation_markdown(result: dict) -> str:
    """The autocorrelation table as markdown."""
    c = result["config"]
    lines = [f"|M| autocorrelation at L = {result['L']}, kappa = {result['kappa']:g}, lam = {c['lam']}: "
             f"{c['ac_chains']} independent chains per sampler; tau_int by the Gamma method (S = 1.5). "
             "Seconds per update are per chain on one CPU thread with the chains batched; an independent "
             f"measurement costs 2 tau_int updates. HMC: {c['n_steps']} leapfrog steps per trajectory (eps "
             "tuned in burn-in); Metropolis: one sweep = V single-site updates; DM-MCMC: one PF-ODE proposal "
             "with its exact log q (DM training time not included).",
             "",
             "| sampler | acceptance | <\\|M\\|> | tau_int(\\|M\\|) | unit | N per chain | s / update | s / independent |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in result["rows"].items():
        lines.append(f"| {_NAMES[name]} | {r['acceptance']:.2f} | {_pm(r['absM'], r['absM_err'], 4)} | "
                     f"{_pm(r['tau_int'], r['tau_int_err'], 2)} | {r['unit']} | {r['n_per_chain']} | "
                     f"{r['seconds_per_update']:.2e} | {r['seconds_per_independent']:.2e} |")
    return "\n".join(lines) + "\n"


def tunnelling_statement(result: dict) -> str:
    """One sentence on tunnelling between the two wells, from the measured sign changes of ``M``."""
    h, d = result["rows"]["hmc"], result["rows"]["dm_mcmc"]
    return (f"Tunnelling (moves between M > {result['threshold']:.2f} and M < -{result['threshold']:.2f}, i.e. "
            f"<|M|>_HMC / 2, with hysteresis): HMC {h['well_changes']} in {h['n_chains']} chains x {h['n_per_chain']} "
            f"trajectories ({h['chains_in_both_wells']} chains visit both wells); DM-MCMC {d['well_changes']} in "
            f"{d['n_chains']} chains x {d['n_per_chain']} proposals ({d['chains_in_both_wells']} chains visit both "
            f"wells). Plain sign changes of M (two-domain states with M near 0 included): HMC {h['sign_changes']}, "
            f"DM-MCMC {d['sign_changes']}.")


def broken_markdown(result: dict) -> str:
    """The broken-phase summary as markdown."""
    c = result["config"]
    lines = [f"Broken phase L = {result['L']}, kappa = {result['kappa']:g}, lam = {c['lam']}: magnetisation of the HMC "
             f"training ensemble ({c['hmc_chains']} x {c['hmc_traj']} trajectories, hot starts), the DM's own samples and "
             f"DM-MCMC ({c['dm_chains']} x {c['ac_proposals']} proposals, acceptance {result['acceptance']:.2f}). "
             f"Wall times: HMC {result['hmc_seconds']:.1f} s, DM training "
             + ("loaded from checkpoint" if result["checkpoint_loaded"] else f"{result['train_seconds']:.0f} s")
             + f", DM-MCMC {result['mcmc_seconds']:.0f} s.",
             "",
             "| sampler | N | <\\|M\\|> | fraction M > 0 | tunnelling events (well changes) |",
             "|---|---|---|---|---|"]
    for name, r in result["rows"].items():
        flips = f"{r['well_changes']} ({r['n_chains']} chains)" if "well_changes" in r else "– (iid)"
        lines.append(f"| {_NAMES[name]} | {r['n']} | {r['absM']:.4f} | {r['fraction_positive']:.2f} | {flips} |")
    return "\n".join(lines) + "\n\n" + tunnelling_statement(result) + "\n"


def _save_plot(fig, path: str) -> None:
    with _io.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)


def plot_part(part: str, result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if part == "acceptance":
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        c = result["config"]
        for ax, key, fixed, label in ((axes[0], "kappa", ("L", c["L"]), "kappa"),
                                      (axes[1], "L", ("kappa", c["kappa_critical"]), "L")):
            rows = sorted((r for r in result["rows"] if r[fixed[0]] == fixed[1]), key=lambda r: r[key])
            x = [r[key] for r in rows]
            ax.errorbar(x, [r["acceptance"] for r in rows], [r["acceptance_err"] for r in rows], fmt="o-", label="chain")
            ax.plot(x, [r["stationary_acceptance"] for r in rows], "s--", label="stationary (all pairs)")
            ax.axhspan(0.4, 0.6, color="0.9", label="published range (L >= 16)")
            ax.set_xlabel(label)
            ax.set_ylabel("DM-MCMC acceptance")
            ax.set_ylim(0, 1)
            ax.set_title(f"{fixed[0]} = {fixed[1]}")
        axes[0].legend(fontsize=7)
    elif part == "autocorrelation":
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for name, r in result["rows"].items():
            rho = np.asarray(r["rho"])
            t = np.arange(rho.size)
            axes[0].plot(t, rho, "o-", ms=3, label=f"{_NAMES[name]} (t in {r['unit']})")
            axes[1].plot(t[1:] * r["seconds_per_update"], rho[1:], "o-", ms=3, label=_NAMES[name])
        axes[0].set_xlabel("t (updates: sweeps / trajectories / proposals)")
        axes[1].set_xlabel("t x (CPU seconds per update of one chain)")
        axes[1].set_xscale("log")
        for ax in axes:
            ax.axhline(0, color="k", lw=0.5)
            ax.set_ylabel("rho_|M|(t)")
        axes[0].legend(fontsize=7)
        fig.suptitle(f"L = {result['L']}, kappa = {result['kappa']:g}")
    elif part == "broken":
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        edges = np.asarray(result["edges"])
        for name, r in result["rows"].items():
            ax.stairs(r["histogram"], edges, label=_NAMES[name])
        ax.set_xlabel("M")
        ax.set_ylabel("density")
        ax.set_title(f"L = {result['L']}, kappa = {result['kappa']:g}")
        ax.legend(fontsize=7)
    else:  # pragma: no cover - guarded by write_figures
        raise ValueError(part)
    fig.tight_layout()
    _save_plot(fig, path)
    plt.close(fig)



MARKDOWN = {"acceptance": acceptance_markdown, "autocorrelation": autocorrelation_markdown, "broken": broken_markdown}
