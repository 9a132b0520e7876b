"""The pooled rows of a sweep's ``phi4-exact-dm`` jobs (THEORY 8, "Exactness").

Jobs that differ only in ``proposal_seed`` (and ``dm_chains``) run independent exact DM-MCMC chains of one
trained network against one HMC reference; :func:`exact_dm_pools` groups their finished results and pools
their chains with :func:`critdiff_ref.phi4.exact_dm.pool_chains` (one Gamma-method analysis over all chains),
so a study can be spread over jobs, sittings and machines and still be read as one run. A group that
cannot be pooled (another network, a repeated seed) is reported with the reason instead of a number.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the spec module imports the job kinds, which name this module's kind
    from .spec import Job

__all__ = ["EXACT_DM_KIND", "exact_dm_pools", "format_pools"]

EXACT_DM_KIND = "phi4-exact-dm"


def exact_dm_pools(jobs: list[Job], records: dict[str, dict | None]) -> list[dict]:
    """One pooled dict per group of finished ``phi4-exact-dm`` jobs of one study (same settings but
    ``proposal_seed`` / ``dm_chains``): :func:`~critdiff_ref.phi4.exact_dm.pool_chains`'s result plus ``L``,
    ``kappa``, ``lam``, ``d`` and ``jobs`` (their result file names), or ``error`` when they do not pool."""
    from ..phi4.exact_dm import PER_RUN, pool_chains

    groups: dict[str, list[tuple[Job, dict]]] = defaultdict(list)
    for job in jobs:
        rec = records.get(job.id)
        if job.kind != EXACT_DM_KIND or not rec or rec.get("status") != "ok":
            continue
        study = {k: v for k, v in job.params.items() if k not in PER_RUN}
        groups[json.dumps(study, sort_keys=True)].append((job, rec["result"]))
    pools = []
    for members in groups.values():
        first = members[0][1]
        head = {k: first[k] for k in ("L", "d", "kappa", "lam")}
        head["jobs"] = [job.filename for job, _ in members]
        try:
            pools.append({**head, **pool_chains([r for _, r in members])})
        except ValueError as err:
            pools.append({**head, "error": str(err)})
    return pools


def format_pools(pools: list[dict]) -> str:
    """A markdown table, one row per pooled study: chains, kept states, acceptance, chi_2 of DM-MCMC, of the
    DM's raw samples and of HMC with their errors, z (DM-MCMC vs HMC) and the power against a 10 % bias."""
    lines = ["| L | kappa | lambda | jobs | chains | kept | acceptance | DM-MCMC chi_2 | raw DM chi_2 | HMC chi_2 "
             "| z(chi_2) | power (10 % bias) |", "|" + "---|" * 12]
    notes = []
    for p in pools:
        lead = f"| {p['L']} | {p['kappa']} | {p['lam']} | {len(p['jobs'])} "
        if "error" in p:
            notes.append(f"- L = {p['L']}, kappa = {p['kappa']}: not pooled: {p['error']}")
            continue
        c, raw, ref = p["dm_mcmc"], p["dm_raw"], p["hmc"]
        lines.append(lead + f"| {p['n_chains']} | {c['n_configs']} | {c['acceptance']:.3f} "
                     f"| {c['chi2']:.3f} ± {c['chi2_err']:.3f} | {raw['chi2']:.3f} ± {raw['chi2_err']:.3f} "
                     f"| {ref['chi2']:.3f} ± {ref['chi2_err']:.3f} | {p['z_dm_mcmc']['chi2']:+.2f} "
                     f"| {p['power_10pct_chi2']:.2f} |")
    return "\n".join(lines + ([""] + notes if notes else []))
