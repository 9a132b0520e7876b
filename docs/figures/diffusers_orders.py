"""Figure of the diffusers guide: own covariance error against steps for five diffusers schedulers.

Run from the repository root: ``python docs/figures/diffusers_orders.py`` (about a minute of CPU).
Every point is exact (basis-state probing on the critical 16x16 Gaussian field, diffusers' defaults,
exact model), as in the guide's table; the dashed lines are slopes -1 and -2.
"""

from __future__ import annotations

from pathlib import Path

import diffusers
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from critdiff_ref import GaussianField  # noqa: E402
from critdiff_ref.validate import validate  # noqa: E402

STEPS = (10, 20, 50, 100, 200, 400)
SCHEDULERS = ("EulerDiscreteScheduler", "HeunDiscreteScheduler", "DPMSolverMultistepScheduler",
              "UniPCMultistepScheduler", "LMSDiscreteScheduler")


def main(out: Path = Path(__file__).with_suffix(".png")) -> None:
    field = GaussianField(16, 2, 0.0)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name in SCHEDULERS:
        report = validate(getattr(diffusers, name), "diffusers", fields=[field], steps=STEPS, targets=("gaussian",))
        series = next(iter(report.series.values()))
        ax.loglog(series["steps"], series["own_error"], "o-", label=name.removesuffix("Scheduler"))
    n = [10, 400]
    for p, c in ((1, 0.3), (2, 0.08)):
        ax.loglog(n, [c * (k / 10) ** -p for k in n], "k--", lw=0.7)
        ax.text(400, c * 40.0 ** -p, f" slope -{p}", fontsize=7, va="center")
    ax.set_xlabel("steps N")
    ax.set_ylabel("own relative covariance error")
    ax.set_title("diffusers on the critical 16x16 Gaussian field (exact model)", fontsize=9)
    ax.legend(fontsize=7)
    fig.savefig(out, dpi=130, bbox_inches="tight")
    print(out)


if __name__ == "__main__":
    main()
