"""Cost of one EXACT DM-MCMC proposal (THEORY 8): PF-ODE sample plus the exact stepwise log q of the discretised
map, for :class:`critdiff_ref.trainers.fourier_local.FourierLocalScore` (radius 1, 16 channels, float64; the cost
does not depend on the weights), 16 Heun steps to t = 1e-3 (VE sigma = 25), d = 2, one thread.

- ``structured``: ``flow_jacobian.stepwise_flow_log_density(jacobian="structured")``, step Jacobians as
  circulant-plus-band operators (:mod:`critdiff_ref.samplers.circulant_band`), ``O(W V^2)`` per Heun product;
- ``dense``: the reference path (dense ``V x V`` score Jacobians from 16 coloured JVPs and batched ``V^3``
  products), the algorithm before the structured path.

Both give the same log q to rounding (tests/test_circulant_band.py).  Figures: seconds per proposal (``time_``
times one batch; ``track_`` divides by ``batch``), the ratio to one network evaluation ``s_theta(x, t)`` per
configuration, and the fraction of the time spent in the one ``slogdet`` per step that every exact dense
log-det needs (the floor of this method: 1.0 = nothing else costs).
``python -m benchmarks.bench_dmmc [L ...]`` prints the table of docs/results/dm_mcmc.md (wall and CPU time,
machine load).
"""

from __future__ import annotations

import os
import time

import torch

from critdiff_ref.processes import VE
from critdiff_ref.samplers import flow_jacobian, likelihood
from critdiff_ref.trainers.fourier_local import FourierLocalScore

from .common import VERSION, best_seconds

STEPS, METHOD, T_MIN = 16, "heun", 1e-3
SIZES = (8, 16, 32)
BATCHES = (1, 4)


def _problem(L: int, batch: int):
    """``(net, process, prior, xT)`` for one lattice size and batch."""
    process = VE(sigma=25.0, T=1.0)
    net = FourierLocalScore(L, 2, process, radius=1, channels=16, generator=torch.Generator().manual_seed(0),
                            dtype=torch.float64)
    for p in net.parameters():
        p.requires_grad_(False)
    prior = likelihood.isotropic_prior(process, L, 2)
    xT = prior.sample(batch, torch.Generator().manual_seed(1), dtype=torch.float64)
    return net, process, prior, xT


def exact_proposal(net, process, prior, xT, jacobian: str):
    """One batch of exact proposals: ``(x_0, log q)`` of 16 Heun steps."""
    return flow_jacobian.stepwise_flow_log_density(net, process, xT, prior, steps=STEPS, method=METHOD, t_min=T_MIN,
                                                jacobian=jacobian)


def slogdet_floor_seconds(V: int, batch: int, clock=time.perf_counter) -> float:
    """Best time (``clock``: wall or ``time.process_time``) of the ``STEPS`` float64 ``slogdet`` calls of one
    batch (``(batch, V, V)`` each)."""
    D = torch.eye(V, dtype=torch.float64).expand(batch, V, V) + 0.01 * torch.randn(
        (batch, V, V), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    flow_jacobian.slogdet_per_matrix(D)
    best = float("inf")
    for _ in range(5):
        t0 = clock()
        flow_jacobian.slogdet_per_matrix(D)
        best = min(best, clock() - t0)
    return STEPS * best


class ExactDMProposal:
    """Seconds per exact proposal (structured and dense log q) against L and batch."""

    params = (list(SIZES), list(BATCHES))
    param_names = ["L", "batch"]
    version = VERSION
    number, repeat, warmup_time = 1, 3, 0.0
    timeout = 900

    def setup(self, L, batch):
        torch.set_num_threads(1)
        self.problem = _problem(L, batch)
        net, process, prior, xT = self.problem
        flow_jacobian.stepwise_flow_log_density(net, process, xT[:1], prior, steps=1, method=METHOD, t_min=T_MIN)

    def time_structured(self, L, batch):
        exact_proposal(*self.problem, "structured")

    def time_dense(self, L, batch):
        exact_proposal(*self.problem, "dense")


def best_cpu_seconds(fn, repeats: int = 3) -> float:
    """Shortest process CPU time (``time.process_time``: this process's CPU seconds, insensitive to other jobs
    sharing the machine) of ``fn()`` over ``repeats`` calls."""
    best = float("inf")
    for _ in range(repeats):
        c0 = time.process_time()
        fn()
        best = min(best, time.process_time() - c0)
    return best


class ExactDMProposalRatios:
    """Per-proposal seconds (best of 3: wall and this process's CPU time), the ratio to one network evaluation,
    the slogdet-floor fraction, and the machine's load average while they were measured."""

    params = (list(SIZES), list(BATCHES))
    param_names = ["L", "batch"]
    version = VERSION
    timeout = 900

    def setup(self, L, batch):
        torch.set_num_threads(1)
        self.problem = _problem(L, batch)
        net, process, prior, xT = self.problem
        self.load = os.getloadavg()[0]
        self.seconds = best_seconds(lambda: exact_proposal(*self.problem, "structured"), "cpu", repeats=3) / batch
        self.cpu_seconds = best_cpu_seconds(lambda: exact_proposal(*self.problem, "structured")) / batch
        with torch.no_grad():
            self.network = best_seconds(lambda: net(xT, 0.5), "cpu", repeats=15) / batch
        self.floor = slogdet_floor_seconds(L * L, batch) / batch

    def track_seconds_per_proposal(self, L, batch):
        return self.seconds

    track_seconds_per_proposal.unit = "s"

    def track_cpu_seconds_per_proposal(self, L, batch):
        return self.cpu_seconds

    track_cpu_seconds_per_proposal.unit = "CPU s"

    def track_load_average(self, L, batch):
        return self.load

    track_load_average.unit = "1-min load average"

    def track_ratio_to_network_evaluation(self, L, batch):
        return self.seconds / self.network

    track_ratio_to_network_evaluation.unit = "network evaluations"

    def track_slogdet_floor_fraction(self, L, batch):
        return self.floor / self.seconds

    track_slogdet_floor_fraction.unit = "fraction"


def table(sizes=SIZES, batch: int = 2, repeats: int = 2, threads: int = 1,
          paths=("dense", "structured")) -> list[dict]:
    """One row per L: wall and CPU seconds per proposal (best of ``repeats``) for each path, one network
    evaluation, the slogdet floor, ``uptime`` load before and after (``threads`` torch threads)."""
    torch.set_num_threads(threads)
    rows = []
    for L in sizes:
        problem = _problem(L, batch)
        net, process, prior, xT = problem
        flow_jacobian.stepwise_flow_log_density(net, process, xT[:1], prior, steps=1, method=METHOD, t_min=T_MIN)
        row = {"L": L, "V": L * L, "batch": batch, "load_before": os.getloadavg()[0]}
        for jacobian in paths:
            walls, cpus = [], []
            for _ in range(repeats):
                w0, c0 = time.perf_counter(), time.process_time()
                _, lq = exact_proposal(*problem, jacobian)
                walls.append((time.perf_counter() - w0) / batch)
                cpus.append((time.process_time() - c0) / batch)
            row[f"{jacobian}_wall_s"], row[f"{jacobian}_cpu_s"] = min(walls), min(cpus)
            row[f"{jacobian}_log_q"] = lq
        if len(paths) == 2:
            row["max_rel_diff"] = float(((row.pop(f"{paths[0]}_log_q") - row[f"{paths[1]}_log_q"]).abs()
                                         / row.pop(f"{paths[1]}_log_q").abs()).max())
        for key in [k for k in row if k.endswith("_log_q")]:
            row.pop(key)
        with torch.no_grad():
            row["network_s"] = best_seconds(lambda: net(xT, 0.5), "cpu", repeats=15) / batch
        row["slogdet_floor_wall_s"] = slogdet_floor_seconds(L * L, batch) / batch
        row["slogdet_floor_cpu_s"] = slogdet_floor_seconds(L * L, batch, time.process_time) / batch
        row["load_after"] = os.getloadavg()[0]
        rows.append(row)
        print({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="seconds per exact DM-MCMC proposal (docs/results/dm_mcmc.md)")
    parser.add_argument("L", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--paths", nargs="+", default=["dense", "structured"], choices=["dense", "structured"])
    args = parser.parse_args()
    table(tuple(args.L), batch=args.batch, threads=args.threads, paths=tuple(args.paths))
