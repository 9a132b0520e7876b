"""Finite-size scaling from a phi^4 sweep (THEORY 8): where the Binder cumulants U_L(kappa) of two sizes cross.

Near a continuous transition ``U_L(kappa) = f((kappa - kappa_c) L^{1/nu})`` up to corrections, so the
curves of different ``L`` cross at ``kappa_c`` (the stochastic-quantization paper quotes ~0.27 for
d = 2, lambda = 0.022 at L = 32). Between adjacent grid points the crossing of the two linear
interpolants is taken, with its error propagated linearly from the points' (independent) errors.
"""

from __future__ import annotations

import math
from collections import defaultdict

__all__ = ["crossing", "binder_crossings", "format_crossings"]


def crossing(k1: float, k2: float, a: tuple, b: tuple, a_err: tuple, b_err: tuple) -> dict:
    """Where the segments ``a`` and ``b`` (values at ``k1``, ``k2``) cross, with linearly propagated errors.

    With ``D_i = b_i - a_i`` and ``t = D_1 / (D_1 - D_2)``: ``kappa_c = k1 + (k2 - k1) t`` and
    ``U_c = a_1 + (a_2 - a_1) t``; ``sigma^2 = sum_j (df / dx_j)^2 sigma_j^2`` over ``a_1, a_2, b_1, b_2``.
    """
    d1, d2 = b[0] - a[0], b[1] - a[1]
    den = d1 - d2
    if den == 0:
        raise ValueError("the segments are parallel: no single crossing")
    t = d1 / den
    h, s = k2 - k1, a[1] - a[0]
    # dt/d(a1, a2, b1, b2)
    dt = (d2 / den**2, -d1 / den**2, -d2 / den**2, d1 / den**2)
    du = (1 - t + s * dt[0], t + s * dt[1], s * dt[2], s * dt[3])
    var = (a_err[0] ** 2, a_err[1] ** 2, b_err[0] ** 2, b_err[1] ** 2)
    return {"kappa_c": k1 + h * t, "kappa_c_err": abs(h) * math.sqrt(sum(g * g * v for g, v in zip(dt, var))),
            "U_c": a[0] + s * t, "U_c_err": math.sqrt(sum(g * g * v for g, v in zip(du, var)))}


def _curve(points: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Sorted ``(kappa, U, err)``; repeated kappas (seeds) combined by inverse-variance weighting."""
    by_k: dict[float, list] = defaultdict(list)
    for k, u, e in points:
        by_k[k].append((u, e))
    out = []
    for k in sorted(by_k):
        vals = by_k[k]
        if all(e > 0 for _, e in vals):
            w = [1 / e**2 for _, e in vals]
            out.append((k, sum(wi * u for wi, (u, _) in zip(w, vals)) / sum(w), 1 / math.sqrt(sum(w))))
        else:
            out.append((k, sum(u for u, _ in vals) / len(vals), 0.0))
    return out


def binder_crossings(rows: list[dict]) -> list[dict]:
    """Crossings of ``U_L(kappa)`` for adjacent sizes, per ``(group, d, lam)``, from merged-table rows.

    ``rows``: dicts with ``kind == "phi4"``, ``status == "ok"``, ``L, d, kappa, lam, binder, binder_err``
    (what :func:`critdiff_ref.sweep.run_spec` puts in its table). Returns one dict per adjacent pair
    ``(L1, L2)`` and sign change of ``U_L2 - U_L1`` between neighbouring kappas present for both sizes
    (``kappa_c, kappa_c_err, U_c, U_c_err, kappa_lo, kappa_hi`` and the differences ``diff_lo, diff_hi`` with
    errors there; the errors are statistical: the linear interpolation's bias is not included), or a dict
    with ``kappa_c = None`` and the sign of the difference when the curves do not cross on the grid.
    """
    groups: dict[tuple, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("kind") != "phi4" or r.get("status") != "ok" or r.get("binder") is None:
            continue
        groups[(r.get("group"), r["d"], r["lam"])][r["L"]].append(
            (float(r["kappa"]), float(r["binder"]), float(r.get("binder_err") or 0.0)))
    out = []
    for (group, d, lam), by_L in groups.items():
        sizes = sorted(by_L)
        for L1, L2 in zip(sizes, sizes[1:]):
            c1 = {k: (u, e) for k, u, e in _curve(by_L[L1])}
            c2 = {k: (u, e) for k, u, e in _curve(by_L[L2])}
            ks = sorted(set(c1) & set(c2))
            base = {"group": group, "d": d, "lam": lam, "L1": L1, "L2": L2}
            diffs = [c2[k][0] - c1[k][0] for k in ks]
            found = False
            for i in range(len(ks) - 1):
                if diffs[i] == 0 or diffs[i] * diffs[i + 1] < 0:
                    k1, k2 = ks[i], ks[i + 1]
                    x = crossing(k1, k2, (c1[k1][0], c1[k2][0]), (c2[k1][0], c2[k2][0]),
                                 (c1[k1][1], c1[k2][1]), (c2[k1][1], c2[k2][1]))
                    # U_L2 - U_L1 at the bracketing kappas, with errors: is the sign change significant?
                    brackets = {f"diff_{side}": diffs[i + j] for j, side in enumerate(("lo", "hi"))}
                    brackets.update({f"diff_{side}_err": math.hypot(c1[k][1], c2[k][1])
                                     for side, k in (("lo", k1), ("hi", k2))})
                    out.append({**base, **x, "kappa_lo": k1, "kappa_hi": k2, **brackets})
                    found = True
            if not found:
                sign = "U_L2 > U_L1" if diffs and diffs[0] > 0 else "U_L2 < U_L1" if diffs else "no common kappa"
                out.append({**base, "kappa_c": None, "kappa_lo": ks[0] if ks else None,
                            "kappa_hi": ks[-1] if ks else None, "note": f"no crossing on the grid ({sign})"})
    return out


def format_crossings(crossings: list[dict]) -> str:
    """Markdown lines, one per crossing."""
    lines = []
    for c in crossings:
        head = f"- {c['group']} (d = {c['d']}, lambda = {c['lam']}): L = {c['L1']} vs {c['L2']}: "
        if c["kappa_c"] is None:
            lines.append(head + f"{c['note']} in [{c['kappa_lo']}, {c['kappa_hi']}]")
        else:
            lines.append(head + f"kappa_c = {c['kappa_c']:.4f} ± {c['kappa_c_err']:.4f}, "
                                f"U_c = {c['U_c']:.3f} ± {c['U_c_err']:.3f} "
                                f"(between {c['kappa_lo']} and {c['kappa_hi']}, "
                                f"where U_L2 - U_L1 = {c['diff_lo']:+.3f} ± {c['diff_lo_err']:.3f} and "
                                f"{c['diff_hi']:+.3f} ± {c['diff_hi_err']:.3f})")
    return "\n".join(lines)
