"""What limits the acceptance of exact DM-MCMC with the Fourier-plus-local network (THEORY 8): a short study.

``python -m benchmarks.dm_acceptance [--dm-steps N] [--json FILE]``: lattice phi^4 at kappa = 0.21, lam = 0.022,
d = 2.  One HMC training ensemble per L (16 chains x 1500 trajectories after 300 burn-in, every 5th kept),
DSM-trained :class:`~critdiff_ref.trainers.fourier_local.FourierLocalScore` networks (VE sigma = 25, float32,
``--dm-steps`` steps, batch 64), and the acceptance of independence Metropolis with the EXACT stepwise log q
(``dmmc.dm_mcmc(log_q="stepwise")``, float64).  Rows:

- ``arch``: radius 0 / 1 / 2 and width 8 / 16 / 32 at L = 8, 16 Heun steps;
- ``long``: radius 0 and 1 (width 16) with ``--long-steps`` DSM steps;
- ``grid``: the radius-1 width-16 network with Heun 4 / 8 / 16 / 32 steps, RK4 8 steps, and the log and
  Karras time grids (16 Heun steps);
- ``transfer``: that network's weights in an L = 16 network (the kernel MLP reads khat^2, the CNN is local:
  both are defined for any L) against a network trained at L = 16 with the same settings.

Acceptance errors: the standard error over chains (chains are independent).  Short runs, not a thorough scan.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from critdiff_ref.processes import VE
from critdiff_ref.samplers import dmmc, likelihood
from critdiff_ref.samplers.mcmc import hmc
from critdiff_ref.targets import Phi4Lattice
from critdiff_ref.trainers import dsm
from critdiff_ref.trainers.fourier_local import FourierLocalScore

KAPPA, LAM, D, T_MIN = 0.21, 0.022, 2, 1e-3
PROCESS = VE(sigma=25.0, T=1.0)


def training_set(L: int, seed: int = 1) -> torch.Tensor:
    """HMC ensemble of phi^4 at (KAPPA, LAM): 16 chains x 1500 trajectories after 300 burn-in, every 5th kept."""
    target = Phi4Lattice(L, D, KAPPA, LAM)
    g = torch.Generator().manual_seed(seed)
    phi0 = torch.randn((16, L, L), generator=g, dtype=torch.float64) * 0.5**0.5
    res = hmc(target, phi0, n_traj=1800, eps=0.1, n_steps=10, burn_in=300, thin=5, generator=g)
    return res.samples.reshape(-1, L, L)


def train(L: int, data: torch.Tensor, *, radius: int = 1, channels: int = 16, dm_steps: int = 1000,
          seed: int = 2) -> FourierLocalScore:
    """A DSM-trained network (float32 training), returned in float64 with frozen weights."""
    data_std = float(data.std())
    net = FourierLocalScore(L, D, PROCESS, radius=radius, channels=channels, data_std=data_std,
                            generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    dsm.train_dsm(net, data.to(torch.float32), PROCESS, steps=dm_steps, batch_size=64, lr=3e-3, t_min=T_MIN,
                  generator=torch.Generator().manual_seed(seed + 1))
    return freeze(net.to(torch.float64))


def freeze(net: FourierLocalScore) -> FourierLocalScore:
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def transplant(net: FourierLocalScore, L: int) -> FourierLocalScore:
    """The same weights in a network on an L lattice (every parameter is L-independent; khat^2 is rebuilt)."""
    new = FourierLocalScore(L, D, PROCESS, radius=net.radius, channels=net.out.weight.shape[1],
                            data_std=net.data_std, dtype=torch.float64)
    state = {k: v for k, v in net.state_dict().items() if k != "khat2"}
    new.load_state_dict(state, strict=False)
    return freeze(new)


def acceptance(net: FourierLocalScore, L: int, *, steps: int = 16, method: str = "heun", grid: str = "uniform",
               chains: int = 16, n_iter: int = 60, seed: int = 4) -> dict:
    """Acceptance of exact DM-MCMC (stepwise log q), mean and standard error over chains, and s per proposal."""
    target = Phi4Lattice(L, D, KAPPA, LAM)
    prior = likelihood.isotropic_prior(PROCESS, L, D, data_variance=net.data_std**2)
    t0 = time.process_time()
    res = dmmc.dm_mcmc(target, net, PROCESS, prior, n_chains=chains, n_iter=n_iter, steps=steps, method=method,
                       grid=grid, t_min=T_MIN, log_q="stepwise", burn_in=5, batch_size=64,
                       generator=torch.Generator().manual_seed(seed))
    acc = res.acceptance
    return {"acceptance": float(acc.mean()), "se": float(acc.std() / chains**0.5),
            "cpu_s_per_proposal": (time.process_time() - t0) / (chains * n_iter)}


PARTS = ("arch", "long", "grid", "transfer")
ARCHS = ((0, 16), (1, 8), (1, 16), (1, 32), (2, 16))


def study(dm_steps: int = 1000, parts=PARTS, long_steps: int = 3000) -> dict:
    """The rows of the module docstring for the chosen ``parts``."""
    torch.set_num_threads(1)
    out: dict = {"dm_steps": dm_steps, "load_start": os.getloadavg()[0]}
    data8 = training_set(8)
    base = train(8, data8, radius=1, channels=16, dm_steps=dm_steps)
    if "arch" in parts:
        out["arch"] = {}
        for radius, channels in ARCHS:
            net = base if (radius, channels) == (1, 16) else train(8, data8, radius=radius, channels=channels,
                                                                    dm_steps=dm_steps)
            out["arch"][f"r{radius}_c{channels}"] = row = acceptance(net, 8)
            print("arch", radius, channels, row, flush=True)
    if "long" in parts:
        out["long"] = {}
        for radius in (0, 1):
            net = train(8, data8, radius=radius, channels=16, dm_steps=long_steps)
            out["long"][f"r{radius}_c16_{long_steps}"] = row = acceptance(net, 8)
            print("long", radius, row, flush=True)
    if "grid" not in parts:
        return _transfer(out, base, dm_steps) if "transfer" in parts else out
    out["grid"] = {}
    for method, steps, grid in (("heun", 4, "uniform"), ("heun", 8, "uniform"), ("heun", 32, "uniform"),
                                ("rk4", 8, "uniform"), ("heun", 16, "log"), ("heun", 16, "karras")):
        out["grid"][f"{method}{steps}_{grid}"] = row = acceptance(base, 8, steps=steps, method=method, grid=grid)
        print("grid", method, steps, grid, row, flush=True)
    return _transfer(out, base, dm_steps) if "transfer" in parts else out


def _transfer(out: dict, base: FourierLocalScore, dm_steps: int) -> dict:
    data16 = training_set(16)
    out["transfer"] = {
        "L8_net_at_L16": acceptance(transplant(base, 16), 16, chains=8, n_iter=40),
        "L16_net_at_L16": acceptance(train(16, data16, dm_steps=dm_steps), 16, chains=8, n_iter=40),
    }
    print("transfer", out["transfer"], flush=True)
    out["load_end"] = os.getloadavg()[0]
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dm-steps", type=int, default=1000)
    parser.add_argument("--json", default=None)
    parser.add_argument("--long-steps", type=int, default=3000)
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    args = parser.parse_args()
    result = study(args.dm_steps, tuple(args.parts), args.long_steps)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
