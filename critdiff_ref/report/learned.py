"""The learned-cumulants table (THEORY 6): ours beside the cumulants paper's Table 1, its plot, the
``critdiff cumulants`` command and the report section.

The computation is :func:`critdiff_ref.trainers.cumulants.learned_cumulants`; here it is presented:
rows exact / data / exact-score sampler / trained (k-statistics with bootstrap errors) and the paper's
rows, the decomposition of each trained deviation (Euler–Maruyama bias fitted over 250..2000 steps,
training effect on common noise, sampling noise) and the deviation-vs-steps figure.

``critdiff cumulants --process {ve,vp} [--paper] [--checkpoint F] [--json F] [--plot F]``; exit code 1
when a trained cumulant misses its exact value by more than 4 bootstrap errors plus the measured EM bias.

The lattice phi^4 counterpart ("Table 2": cumulants of the magnetisation from HMC, the phi^4 diffusion model
and DM-MCMC, :mod:`critdiff_ref.phi4.cumulants`) is presented by :func:`add_phi4_cumulants`, which the
report's phi4 section calls on its own diffusion-model run (no second training: no extra cost).
"""

from __future__ import annotations

import math
import os
from dataclasses import replace

import numpy as np

from .. import _io
from ..phi4.cumulants import K_SIGMA, QUANTITIES, phi4_cumulants
from .._args import flag_errors
from ..trainers.cumulants import (
    ORDERS,
    PAPER,
    QUICK,
    SWEEP_STEPS,
    TRAINING_FIELDS,
    CumulantsConfig,
    checks,
    learned_cumulants,
    passes,
    train_model,
)
from ..trainers.cumulants_checkpoint import load_checkpoint, save_checkpoint, saved_config
from .sections import Check, Context, Section, md_table

__all__ = [
    "PUBLISHED",
    "TABLE_HEADER",
    "DECOMPOSITION_HEADER",
    "table_rows",
    "decomposition_rows",
    "format_result",
    "plot_sweep",
    "draw_sweep",
    "add_cumulants_parser",
    "CUMULANTS_FLAGS",
    "cumulants_config",
    "run_cumulants",
    "section_learned_cumulants",
    "add_phi4_cumulants",
]

# The cumulants paper's Table 1 (mu = 1, s = 0.25): value and bootstrap error per order.
PUBLISHED = {
    "exact": {2: (1.0625, 0.0), 4: (-2.0, 0.0), 6: (16.0, 0.0), 8: (-272.0, 0.0)},
    "data": {2: (1.0624, 0.0005), 4: (-1.9997, 0.0022), 6: (15.9965, 0.0261), 8: (-271.92, 0.59)},
    "ve": {2: (1.0700, 0.0006), 4: (-2.0034, 0.0023), 6: (16.052, 0.028), 8: (-273.15, 0.63)},
    "vp": {2: (1.0612, 0.0005), 4: (-1.9757, 0.0019), 6: (15.715, 0.023), 8: (-265.54, 0.52)},
}



# -- table, plot, command ----------------------------------------------------------------------------------
def _fmt(value: float, err: float | None) -> str:
    """``value(err)`` with two significant digits of the error, in units of the last digit shown."""
    if err is None or not err > 0.0:
        return f"{value:.6g}"
    digits = max(0, -int(math.floor(math.log10(err))) + 1)
    return f"{value:.{digits}f}({round(err * 10**digits):d})"


def table_rows(result: dict) -> list[list[str]]:
    """``[row name, kappa_2, .., kappa_8]`` strings (value(SE)): ours, then the paper's rows beside them."""
    rows = []
    for name, key in (("exact", "exact"), ("data", "data"), ("exact-score sampler", "exact_score"),
                      ("trained", "trained")):
        r = result[key]
        rows.append([name] + [_fmt(r[f"kappa_{n}"], r.get(f"kappa_{n}_err")) for n in ORDERS])
    pub = PUBLISHED[result["process"]]
    rows.append(["trained (paper)"] + [_fmt(*pub[n]) for n in ORDERS])
    rows.append(["data (paper)"] + [_fmt(*PUBLISHED["data"][n]) for n in ORDERS])
    return rows


def decomposition_rows(result: dict) -> list[list[str]]:
    """Per order: trained - exact, = EM bias (fit at ``em_steps``, incl. ``t_min``) + training effect
    (trained - exact-score, common noise) + remainder, with the trained row's bootstrap SE and the paper's
    deviation."""
    rows = []
    pub = PUBLISHED[result["process"]]
    for n in ORDERS:
        key = f"kappa_{n}"
        ex = result["exact"][key]
        dev = result["trained"][key] - ex
        fit, eff = result["em_fit"][key], result["training_effect"]
        remainder = dev - fit["bias"] - eff[key]
        rows.append([f"kappa_{n}", f"{100 * dev / abs(ex):+.3f}%", f"{100 * fit['bias'] / abs(ex):+.3f}%",
                     f"{100 * eff[key] / abs(ex):+.3f}% (SE {100 * eff[f'{key}_err'] / abs(ex):.3f}%)",
                     f"{100 * remainder / abs(ex):+.3f}%", f"{100 * result['trained'][f'{key}_err'] / abs(ex):.3f}%",
                     f"{100 * (pub[n][0] - ex) / abs(ex):+.2f}%"])
    return rows


DECOMPOSITION_HEADER = ["order", "trained - exact", "EM bias (fit)", "training effect (paired)",
                        "remainder (exact-score noise)", "trained SE", "paper: trained - exact"]
TABLE_HEADER = ["row"] + [f"kappa_{n}" for n in ORDERS]


def format_result(result: dict) -> str:
    """The table, the decomposition and the checks as text (markdown tables)."""
    lines = [f"process {result['process'].upper()}: score error E_t Xi E|s_theta - s|^2 = "
             f"{result['score_error']['weighted_l2']:.3g} (relative {result['score_error']['relative']:.3g})"]
    if result.get("training"):
        tr = result["training"]
        where = f" (loaded from {tr['loaded_from']}, not retrained)" if tr.get("loaded_from") else ""
        lines.append(f"training: {int(tr['steps'])} steps in {tr['seconds']:.0f} s{where}, "
                     f"loss {tr['loss_first']:.4f} -> {tr['loss_last']:.4f}")
    lines += ["", md_table(TABLE_HEADER, table_rows(result)), "",
              md_table(DECOMPOSITION_HEADER, decomposition_rows(result)), ""]
    for name, m, e, tol in checks(result):
        lines.append(f"{'pass' if abs(m - e) <= tol else 'FAIL'}  {name}: {m:.6g} vs {e:.6g} +- {tol:.3g}")
    return "\n".join(lines)


def plot_sweep(results: list[dict], path: str | os.PathLike) -> None:
    """Each cumulant's relative deviation from the exact value vs EM steps, exact and trained scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw_sweep(plt, results)
    fig.tight_layout()
    with _io.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def draw_sweep(plt, results: list[dict]):
    """The figure of :func:`plot_sweep` (rows: processes; columns: orders)."""
    fig, axes = plt.subplots(len(results), len(ORDERS), figsize=(14, 3.3 * len(results)), squeeze=False)
    for row, res in enumerate(results):
        steps = np.array(res["sweep"]["steps"])
        for col, n in enumerate(ORDERS):
            key, ax = f"kappa_{n}", axes[row, col]
            ex = res["exact"][key]
            for label, rows, fmt in (("exact score", res["sweep"]["exact_score"], "o-"),
                                     ("trained", res["sweep"]["trained"], "s--")):
                v = np.array([r[key] for r in rows])
                e = np.array([r[f"{key}_err"] for r in rows])
                ax.errorbar(steps, 100 * (v - ex) / abs(ex), yerr=100 * e / abs(ex), fmt=fmt, ms=4, capsize=2,
                            label=label)
            fit = res["em_fit"][key]
            hh = np.geomspace(steps.min(), steps.max(), 50)
            ax.plot(hh, 100 * (fit["b0"] + fit["c"] / hh) / abs(ex), "k:", label="fit b0 + c h")
            pub = PUBLISHED[res["process"]][n][0]
            ax.axhline(100 * (pub - ex) / abs(ex), color="r", lw=0.8, label="paper (1000 steps)")
            ax.axhline(0.0, color="gray", lw=0.5)
            ax.set(xscale="log", xlabel="EM steps", ylabel="deviation (%)", title=f"{res['process'].upper()} kappa_{n}")
            ax.set_xticks(steps, [str(int(N)) for N in steps])
            ax.minorticks_off()
    axes[0, 0].legend(fontsize=7)
    return fig


def _jsonable(result: dict) -> dict:
    """The issue's JSON layout first (exact, data, exact_score, trained, process), then the rest."""
    def clean(v):
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    first = ("exact", "data", "exact_score", "trained", "process")
    return clean({k: result[k] for k in first} | {k: v for k, v in result.items() if k not in first})


def add_cumulants_parser(sub):
    p = sub.add_parser("cumulants", help="learned cumulants: a trained score MLP on the two-peak model (paper Table 1)")
    p.add_argument("--process", choices=("ve", "vp"), default="ve", help="the forward process")
    p.add_argument("--paper", action="store_true",
                   help="the paper's settings (10^6 data and samples, 200 epochs: an hour of CPU); default: reduced")
    p.add_argument("--checkpoint", default=None,
                   help="weights-only checkpoint: loaded if the file exists (its training settings are recorded;"
                        " --epochs / --n-data / --lr that contradict them are an error), else written after training")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the quick or --paper setting)")
    p.add_argument("--n-data", type=int, default=None, help="training data points (default: the quick or --paper setting)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (cosine decay to 0)")
    p.add_argument("--n-gen", type=int, default=None, help="generated samples per table row (default: the quick or --paper setting)")
    p.add_argument("--n-sweep", type=int, default=None, help="samples per step count of the EM sweep (default n-gen)")
    p.add_argument("--steps", type=int, default=None, help="Euler-Maruyama steps of the table rows (default 1000)")
    p.add_argument("--sweep-steps", type=int, nargs="+", default=list(SWEEP_STEPS),
                   help="step counts of the exact-score EM-bias fit (default 250 500 1000 2000)")
    p.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (default 100, --paper 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--json", metavar="FILE", default=None, help="write the result as strict JSON")
    p.add_argument("--plot", metavar="FILE", default=None, help="deviation vs EM steps (PNG; needs matplotlib)")
    return p


# CumulantsConfig field -> the flag of ``critdiff cumulants``
CUMULANTS_FLAGS = {"epochs": "--epochs", "n_data": "--n-data", "lr": "--lr", "n_gen": "--n-gen", "em_steps": "--steps",
                   "n_boot": "--n-boot", "seed": "--seed", "process": "--process"}


def cumulants_config(args) -> tuple[CumulantsConfig, dict]:
    """The run's :class:`CumulantsConfig` from the flags, and the flags given explicitly (``{field: value}``).

    With an existing ``--checkpoint`` the training settings (:data:`TRAINING_FIELDS`) are the checkpoint's: what
    the loaded network was trained with is what the result records. A training flag that contradicts them is an
    error naming both (the network is not retrained)."""
    overrides = {"epochs": args.epochs, "lr": args.lr, "n_data": args.n_data, "n_gen": args.n_gen,
                 "em_steps": args.steps, "n_boot": args.n_boot}
    given = {k: v for k, v in overrides.items() if v is not None}
    with flag_errors(CUMULANTS_FLAGS):
        config = replace(replace(PAPER if args.paper else QUICK, process=args.process, seed=args.seed), **given)
    if args.checkpoint and os.path.exists(args.checkpoint):
        saved = saved_config(args.checkpoint).training()
        conflicts = [f"{CUMULANTS_FLAGS[k]} {given[k]} (trained with {saved[k]})" for k in TRAINING_FIELDS
                     if k in given and given[k] != saved[k]]
        if conflicts:
            raise ValueError(f"--checkpoint {args.checkpoint} exists and is loaded, not retrained: "
                             + ", ".join(conflicts) + "; drop these flags or name a new --checkpoint file")
        config = replace(config, **saved)
    return config, given


def _check_outputs(args) -> None:
    """Every output path, and an existing checkpoint, before any work (the model would otherwise be lost)."""
    if args.checkpoint:
        if os.path.isdir(args.checkpoint):
            raise ValueError(f"--checkpoint {args.checkpoint}: is a folder; give a file name")
        if not os.path.exists(args.checkpoint):
            _io.check_writable_file(args.checkpoint, "--checkpoint")
    _io.check_writable_file(args.json, "--json")
    _io.check_writable_file(args.plot, "--plot")
    if args.plot:
        import matplotlib  # noqa: F401  (the plot needs it: fail now, not after the run)


def run_cumulants(args) -> int:
    """``critdiff cumulants``: train (or load ``--checkpoint``), tabulate, check; exit 1 when a check fails.

    A loaded checkpoint is not retrained: the run records the checkpoint's training settings (epochs, data,
    batch, learning rate) and says so; a flag that contradicts them is an error (:func:`cumulants_config`)."""
    import sys

    _check_outputs(args)
    config, _ = cumulants_config(args)
    say = lambda msg: print(f"[critdiff cumulants] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    model, info = None, {}
    if args.checkpoint and os.path.exists(args.checkpoint):
        model, info = load_checkpoint(args.checkpoint, config)
        info = {**info, "loaded_from": os.fspath(args.checkpoint)}
        say(f"loaded {args.checkpoint}: trained {config.epochs} epochs on {config.n_data} data (batch "
            f"{config.batch_size}, lr {config.lr:g}); these settings are recorded, not retrained")
    elif args.checkpoint:
        say(f"training {config.train_steps} steps")
        model, info = train_model(config)
        save_checkpoint(args.checkpoint, model, config, info)
        say(f"wrote {args.checkpoint} ({info['seconds']:.0f} s of training)")
    result = learned_cumulants(config, model, sweep_steps=tuple(args.sweep_steps), n_sweep=args.n_sweep,
                               progress=say)
    if info:
        result["training"] = info
    print(format_result(result))
    if args.json:
        _io.atomic_write_text(args.json, _io.strict_json(_jsonable(result)))
    if args.plot:
        plot_sweep([result], args.plot)
    return 0 if passes(result) else 1


def section_learned_cumulants(ctx: Context) -> Section:
    """Trained score MLP vs exact cumulants under VE and VP (quick: :data:`QUICK`; ``--full``: :data:`PAPER`)."""
    sec = Section("learned_cumulants", "Learned cumulants: a trained score network on the two-peak model")
    base = PAPER if ctx.full else QUICK
    results = []
    for process in ("ve", "vp"):
        config = replace(base, process=process)
        res = learned_cumulants(config, n_sweep=None if ctx.full else config.n_gen // 4,
                                progress=lambda msg: ctx.progress(f"learned cumulants: {msg}"))
        results.append(res)
        tr = res["training"]
        sec.tables.append(
            f"{process.upper()}: {int(tr['steps'])} DSM steps in {tr['seconds']:.0f} s (batch {config.batch_size}, "
            f"lr {config.lr:g}, {config.n_data} data), {config.em_steps} EM steps, {config.n_gen} samples; "
            f"score error E_t Xi E|s_theta - s|^2 = {res['score_error']['weighted_l2']:.3g} "
            f"(relative {res['score_error']['relative']:.3g}).\n\n"
            + md_table(TABLE_HEADER, table_rows(res)) + "\n\n"
            + md_table(DECOMPOSITION_HEADER, decomposition_rows(res)))
        for name, measured, exact, tol in checks(res):
            # 4 bootstrap SE (two-sided 6e-5 false-failure rate per check for Gaussian errors, seeds fixed)
            # plus the measured Euler-Maruyama bias |b0 + c h| of the exact-score sampler at the same settings
            sec.checks.append(Check(name, measured, exact, tol, "4 bootstrap SE + measured EM bias (THEORY 6)"))
        sec.numbers[process] = res
    ctx.figure(sec, "em_sweep", lambda plt: draw_sweep(plt, results))
    return sec


# -- lattice phi^4: the magnetisation cumulants of the phi4 section's diffusion-model run ("Table 2") ------
_Q_HEADER = {"chi2": "chi_2 = V k_2", "g4": "g_4 = V k_4/k_2^2", "g6": "g_6 = V^2 k_6/k_2^3"}


def add_phi4_cumulants(sec: Section, result: dict, target) -> dict:
    """Add the magnetisation-cumulant table of a ``run_phi4_experiment(..., train_dm=True, keep_arrays=True)``
    ``result`` at ``target`` (:func:`critdiff_ref.phi4.cumulants.phi4_cumulants`: chi_2, g_4, g_6 of THEORY 6, 8)
    to ``sec``: rows exact (when known) / HMC / DM samples / DM-MCMC, the DM rows' deviations in SE, and one
    :class:`Check` per required comparison (exact samplers within ``K_SIGMA`` combined SE).  Returns the table."""
    table = phi4_cumulants(result, target, seed=0)
    rows = []
    for name, r in table["rows"].items():
        if r is None:
            continue
        rows.append([name, str(r.get("n_configs", "")), r.get("errors", "exact")]
                    + [_fmt(r[q], r.get(f"{q}_err")) for q in QUANTITIES])
    z = {(c["name"], c["quantity"]): c["z"] for c in table["checks"]}
    devs = "; ".join(f"{name} vs HMC: " + ", ".join(f"{q} {z[(f'{name} vs HMC', q)]:+.1f}" for q in QUANTITIES)
                     for name in ("DM", "DM-MCMC") if (f"{name} vs HMC", "chi2") in z)
    sec.tables.append(
        f"Magnetisation cumulants (the paper's Table 2) at L = {target.L}, kappa = {target.kappa:g}, lam = {target.lam:g}"
        " of the same run: M = (1/V) sum_x phi_x, k_n its k-statistics (THEORY 6), V-scaled to be intensive"
        " (THEORY 8; g_4 = -3 V U_L at <M> = 0). Errors: bootstrap over the independent DM samples, jackknife over"
        f" independent chains (HMC, DM-MCMC; log q: {table['divergence']}). Deviations in combined SE: {devs}"
        + ("" if table["rows"]["exact"] is not None else "; no exact values at lam > 0, kappa > 0") + ".\n\n"
        + md_table(["sampler", "N", "errors"] + [_Q_HEADER[q] for q in QUANTITIES], rows))
    for c in table["checks"]:  # with a Hutchinson log q DM-MCMC is approximate and its checks informative only
        if c["required"]:
            # exact samplers (HMC; DM-MCMC with the exact log q) must agree: K_SIGMA = 5 combined SE, the
            # chain-jackknife errors having R - 1 dof (module comment of critdiff_ref.phi4.cumulants)
            sec.checks.append(Check(f"{c['name']} {c['quantity']} (L={target.L}, magnetisation cumulants)",
                                    c["measured"], c["reference"], c["tolerance"],
                                    f"THEORY 8: exact samplers agree; {K_SIGMA:g} combined SE (THEORY 6 k-statistics)"))
    sec.numbers["magnetisation_cumulants"] = table
    return table
