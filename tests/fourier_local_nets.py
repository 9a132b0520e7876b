"""Shared by the tests of the fourier-local network's exact Jacobians (tests/test_stepwise_log_q.py,
tests/test_circulant_band.py): a small random network and its reference Jacobian by reverse-mode autograd."""

import torch
from torch.func import jacrev

from critdiff_ref.trainers.fourier_local import FourierLocalScore


def random_net(L: int, d: int, process, radius: int, seed: int, odd: bool = True) -> FourierLocalScore:
    """A frozen float64 fourier-local network with seeded weights."""
    net = FourierLocalScore(L, d, process, radius=radius, channels=6, embed_dim=8, kernel_hidden=8, odd=odd,
                            generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    # random (nonzero) mode-variance MLP output layer: the kernel then depends on t and k
    torch.nn.init.normal_(net.kernel_mlp[-1].weight, std=0.5, generator=torch.Generator().manual_seed(seed + 1))
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def autograd_jacobian(net, x: torch.Tensor, t: float) -> torch.Tensor:
    """``(batch, n, n)``: the score's Jacobian per configuration, by ``jacrev``."""
    n = x[0].numel()
    return torch.stack([jacrev(lambda z: net(z.unsqueeze(0), t).reshape(-1))(x[b]).reshape(n, n)
                        for b in range(x.shape[0])])
