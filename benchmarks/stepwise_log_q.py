"""Cost per proposal of the stepwise exact DM-MCMC log q against V (BENCHMARKS.md).

``python -m benchmarks.stepwise_log_q [L ...]``: for a randomly initialised
:class:`critdiff_ref.trainers.fourier_local.FourierLocalScore` (radius 1, 16 channels; the cost does not
depend on the weights), seconds per proposal of ``flow_jacobian.stepwise_flow_log_density`` (chain rule,
circulant-plus-band step Jacobians, the default ``jacobian="structured"``) and, for ``V <= VMAPPED_MAX_V``, of ``flow_jacobian.flow_jacobian_log_density``
(V vmapped backward passes through the sampler) for the same network; 16 Heun steps, d = 2, one thread,
float64 (``--float32``: the network in float32, the determinants still float64).
"""

from __future__ import annotations

import sys
import time

import torch

from critdiff_ref.processes import VE
from critdiff_ref.samplers import flow_jacobian, likelihood
from critdiff_ref.trainers.fourier_local import FourierLocalScore

STEPS, T_MIN = 16, 1e-3
VMAPPED_MAX_V = 256


def cost(sizes=(4, 8, 16, 32), batch: int = 2, dtype: torch.dtype = torch.float64) -> list[dict]:
    """One row per L: ``{"L", "V", "stepwise_s", "vmapped_s" (or None), "agree"}`` (seconds per proposal)."""
    torch.set_num_threads(1)
    process = VE(sigma=25.0, T=1.0)
    rows = []
    for L in sizes:
        net = FourierLocalScore(L, 2, process, radius=1, channels=16, generator=torch.Generator().manual_seed(0),
                                dtype=dtype)
        for p in net.parameters():
            p.requires_grad_(False)
        prior = likelihood.isotropic_prior(process, L, 2)
        xT = prior.sample(batch, torch.Generator().manual_seed(1), dtype=dtype)
        kw = dict(steps=STEPS, method="heun", t_min=T_MIN)
        flow_jacobian.stepwise_flow_log_density(net, process, xT[:1], prior, steps=1, method="heun", t_min=T_MIN)  # warm-up
        t0 = time.perf_counter()
        _, lq = flow_jacobian.stepwise_flow_log_density(net, process, xT, prior, **kw)
        row = {"L": L, "V": L * L, "stepwise_s": (time.perf_counter() - t0) / batch, "vmapped_s": None, "agree": None}
        if L * L <= VMAPPED_MAX_V:
            flow_jacobian.flow_jacobian_log_density(net, process, xT[:1], prior, steps=1, method="heun", t_min=T_MIN)
            t0 = time.perf_counter()
            _, lq_ref = flow_jacobian.flow_jacobian_log_density(net, process, xT, prior, **kw)
            row["vmapped_s"] = (time.perf_counter() - t0) / batch
            row["agree"] = float(((lq - lq_ref).abs() / lq_ref.abs()).max())
        rows.append(row)
        print(row, flush=True)
    return rows


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--float32"]
    cost(tuple(int(a) for a in args) or (4, 8, 16, 32), dtype=torch.float32 if "--float32" in sys.argv else torch.float64)
