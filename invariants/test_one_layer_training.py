"""THEORY 3: training a one-layer linear score shows critical slowing down (z = 2).

Claims checked: torch training of a real-space full-size circular convolution follows the per-mode
gradient-descent closed form step by step (and the Fourier-diagonal module likewise); GD on the
population loss diverges above ``2/max C`` and converges below; steps to accuracy grow as ``L^2`` at
``r = 0`` and stay bounded in ``L`` at ``r > 0``; optimally tuned heavy-ball momentum gives ``~L``;
and Monte-Carlo denoising score matching has the population gradient as its mean.  (Generation
with a score trained for a fixed time: ``test_generation_error.py``.)
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from critdiff_ref import theory
from critdiff_ref.processes import OU
from critdiff_ref.strategies import diffusion_times, masses, processes, seeds
from critdiff_ref.targets import GaussianField
from critdiff_ref.trainers import (
    OneLayerConv,
    OneLayerFourier,
    dsm_loss,
    population_loss,
    steps_to_accuracy,
    train,
)

EPS64 = torch.finfo(torch.float64).eps


@st.composite
def training_setups(draw, max_d: int = 3):
    d = draw(st.integers(1, max_d))
    L = draw(st.integers(3, {1: 16, 2: 8, 3: 4}[d]))
    field = GaussianField(L, d, draw(masses()))
    process = draw(processes())
    t = draw(diffusion_times(process, 0.02, 1.0))
    return field, process, t


@given(training_setups(), st.floats(0.05, 1.9), st.sampled_from(["conv", "fourier"]))
def test_torch_training_follows_per_mode_closed_form(setup, eta_fraction, kind):
    """Torch GD on the exact population loss moves every mode as w_n - K = (1 - eta C)^n (w_0 - K), for eta below 2/max C."""
    field, process, t = setup
    C = field.mode_variance(process, t)
    mask = field.mode_mask()
    eta = eta_fraction / float(C.max())
    model = OneLayerConv(field.L, field.d) if kind == "conv" else OneLayerFourier(field.L, field.d)
    steps = 6
    report = train(model, field, process, t, steps=steps, lr=eta, record_multipliers=True)
    Cm = C[mask].numpy()
    K = -1.0 / Cm
    for n, w in enumerate(report.multipliers):
        expected = theory.one_layer_gd(Cm, eta, n)
        # each step costs a few FFT-sized sums (V terms); rounding grows ~ n * V * eps relative to |K|
        tol = 64 * (n + 1) * field.V * EPS64 * np.abs(K).max()
        wm = w[mask].to(torch.complex128)
        assert np.abs(wm.real.numpy() - expected).max() <= tol, n
        assert float(wm.imag.abs().max()) <= tol  # a symmetric loss keeps the kernel symmetric


@given(training_setups(max_d=2), st.floats(1.05, 1.6))
def test_gd_diverges_above_the_stability_bound(setup, factor):
    """GD with eta = factor * 2/max C (factor > 1) makes the stiffest mode's error grow as |1 - eta C_max|^n > 1."""
    field, process, t = setup
    C = field.mode_variance(process, t)
    eta = factor * theory.one_layer_stability_bound(C[field.mode_mask()].numpy())
    model = OneLayerFourier(field.L, field.d)
    report = train(model, field, process, t, steps=30, lr=eta)
    C_max = float(C.max())
    growth = abs(1.0 - eta * C_max)
    assert growth > 1.0
    # the loss is a sum of non-negative per-mode terms; the stiffest, from w = 0, is exactly
    # (1/(2 C_max)) growth^(2n) (rounding: relative 1e-9 is ~1e5 ulps of slack)
    assert report.losses[-1] >= growth ** (2 * 30) / (2 * C_max) * (1 - 1e-9)
    assert report.losses[-1] > report.losses[0]


@given(training_setups(max_d=2), st.floats(0.1, 0.95))
def test_gd_converges_below_the_stability_bound(setup, fraction):
    """Below 2/max C the loss decreases monotonically and the slowest mode decays as |1 - eta C_min|^n."""
    field, process, t = setup
    Cm = field.mode_variance(process, t)[field.mode_mask()]
    eta = fraction * theory.one_layer_stability_bound(Cm.numpy())
    report = train(OneLayerFourier(field.L, field.d), field, process, t, steps=40, lr=eta)
    assert np.all(np.diff(report.losses) <= 1e-12 * report.losses[0])
    q = np.abs(1 - eta * Cm.numpy()).max()
    # the worst relative error after n steps is exactly max_k |1 - eta C_k|^n (start w = 0); rounding ~1e-14
    assert float(report.mode_errors.max()) == pytest.approx(q**40, rel=1e-9, abs=1e-14)


def _fit(Ls, ns):
    return float(np.polyfit(np.log(Ls), np.log(ns), 1)[0])


@pytest.mark.parametrize("d", [1, 2])
def test_steps_grow_as_L_squared_at_criticality(d):
    """At r = 0 and eta = 1/max C the steps to 1% accuracy grow as L^z with z = 2 (fit over L = 8..64)."""
    Ls = [8, 16, 32, 64]
    ns = [steps_to_accuracy("one-layer", L, d=d) for L in Ls]
    assert all(b > a for a, b in zip(ns, ns[1:]))
    # condition number (4d + Xi-shifted)/(4 sin^2(pi/L)) ~ L^2 exactly; finite-L corrections to the
    # fitted slope are O(1/L^2) and the discreteness of step counts is < 2%: band +- 0.1
    assert 1.9 <= _fit(Ls, ns) <= 2.1
    # and the count matches the closed form max_k ceil(ln eps / ln|1 - eta C_k|)
    for L, n in zip(Ls, ns):
        f = GaussianField(L, d)
        C = f.mode_variance(OU(), 0.01)[f.mode_mask()].numpy()
        assert n == int(theory.one_layer_steps(C, 1 / C.max(), 1e-2).max())


@given(st.floats(0.05, 4.0))
def test_steps_bounded_in_L_off_criticality(r):
    """At fixed r > 0 the steps to accuracy converge as L grows (the condition number tends to (4d + r)/r)."""
    Ls = [8, 16, 32, 64]
    ns = [steps_to_accuracy("one-layer", L, d=2, r=r) for L in Ls]
    # bound: ln(eps) / ln(1 - C_min/C_max) with the L -> inf condition number, +1 for the ceiling
    a2, Xi = OU().a(0.01) ** 2, OU().Xi(0.01)
    c_max, c_min = a2 / r + Xi, a2 / (8 + r) + Xi
    bound = math.log(1e-2) / math.log(1 - c_min / c_max) + 1
    assert max(ns) <= bound
    assert ns[-1] - ns[-2] <= max(1, 0.05 * ns[-1])  # converged: the last doubling changes < 5%


def test_momentum_reduces_the_exponent_to_one():
    """Optimally tuned heavy-ball momentum needs ~ sqrt(condition number) ~ L steps at r = 0 (z = 1)."""
    Ls = [8, 16, 32, 64]
    ns = [steps_to_accuracy("one-layer-momentum", L) for L in Ls]
    plain = [steps_to_accuracy("one-layer", L) for L in Ls]
    # heavy ball converges like n beta^(n/2), beta^(1/2) = 1 - 2/sqrt(kappa): the n prefactor adds
    # a slowly varying log to the exponent, observed 1.1-1.2 at these L: band [0.8, 1.35]
    assert 0.8 <= _fit(Ls, ns) <= 1.35
    assert all(m < p for m, p in zip(ns, plain))


@given(training_setups(max_d=2), seeds())
def test_dsm_gradient_is_unbiased(setup, seed):
    """The minibatch DSM gradient averages to the exact population gradient (per-kernel-entry 5-sigma band)."""
    field, process, t = setup
    gen = torch.Generator().manual_seed(seed)
    model = OneLayerConv(field.L, field.d, torch.randn(field.shape, generator=gen, dtype=torch.float64) * 0.1)
    loss = population_loss(model, field, process, t)
    (g_pop,) = torch.autograd.grad(loss, model.kernel)
    reps, batch = 100, 8
    grads = []
    for _ in range(reps):
        (g,) = torch.autograd.grad(dsm_loss(model, field, process, t, batch, gen), model.kernel)
        grads.append(g)
    G = torch.stack(grads)
    mean, se = G.mean(0), G.std(0) / math.sqrt(reps)
    # 5 estimated sigmas per entry (mean of 100 minibatch gradients, 800 samples): Student t with 99 dof gives a
    # false-failure rate ~3e-6 per entry, < 3e-3 over <= 64 entries x 12 examples (seeds fixed in CI)
    assert bool(((mean - g_pop).abs() <= 5 * se + 1e-12).all())


def test_dsm_training_approaches_the_exact_kernel():
    """Minibatch DSM training with Adam ends with a relative score error far below the zero-kernel start."""
    field, process, t = GaussianField(8, 2, 0.5), OU(), 0.3
    gen = torch.Generator().manual_seed(1)
    report = train(OneLayerConv(8, 2), field, process, t, steps=300, lr=0.05, optimizer="adam",
                   objective="dsm", batch_size=32, generator=gen)
    # start: relative error 1 exactly (w = 0); the stationary SGD noise of 64 parameters fit on
    # 32-sample batches at lr 0.05 leaves O(0.1) error; 0.3 leaves a 3x margin
    assert report.score_errors[0] == pytest.approx(1.0, abs=1e-12)
    assert report.score_errors[-1] < 0.3


def test_adam_and_momentum_optimisers_train():
    """Adam and heavy-ball momentum on the population loss both reduce the loss by orders of magnitude."""
    field, process, t = GaussianField(8, 2), OU(), 0.2
    for opt, lr in (("adam", 0.05), ("momentum", 0.5 / float(field.mode_variance(process, t).max()))):
        rep = train(OneLayerConv(8, 2), field, process, t, steps=300, lr=lr, optimizer=opt, momentum=0.9)
        assert rep.losses[-1] < 1e-3 * rep.losses[0]
