"""Unit tests for critdiff_ref.trainers: models, losses, descent counters, the experiment table and CLI parser."""

import argparse
import inspect
import math

import numpy as np
import pytest
import torch

from critdiff_ref import lattice, theory
from critdiff_ref.processes import OU
from critdiff_ref.targets import GaussianField
from critdiff_ref.trainers import (
    LocalScoreNet,
    OneLayerConv,
    OneLayerFourier,
    TwoLayerConv,
    TwoLayerFourier,
    add_train_parser,
    circular_conv,
    default_ell,
    dsm_loss,
    effective_kernel,
    fit_exponent,
    format_scaling_table,
    fourier_descent,
    heavy_ball_parameters,
    kaiming_kernels,
    kernel_error,
    local_descent,
    mismatch_descent,
    population_loss,
    run_train,
    scaling_table,
    score_multiplier,
    steps_to_accuracy,
    train,
    train_per_time,
)


# ---------------------------------------------------------------- models
@pytest.mark.parametrize("d,L", [(1, 7), (2, 5), (3, 4)])
def test_circular_conv_is_the_fourier_product(d, L):
    gen = torch.Generator().manual_seed(d)
    x = torch.randn((3,) + (L,) * d, generator=gen, dtype=torch.float64)
    K = torch.randn((L,) * d, generator=gen, dtype=torch.float64)
    dims = lattice.lattice_dims(d)
    expected = torch.fft.ifftn(torch.fft.fftn(x, dim=dims) * torch.fft.fftn(K), dim=dims).real
    torch.testing.assert_close(circular_conv(x, K), expected, rtol=0, atol=1e-12)


def test_conv_and_fourier_one_layer_agree():
    gen = torch.Generator().manual_seed(0)
    K = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    K = 0.5 * (K + torch.roll(K.flip((0, 1)), (1, 1), (0, 1)))  # K(-z) = K(z): real multiplier
    conv = OneLayerConv(6, 2, K)
    four = OneLayerFourier(6, 2, torch.fft.fftn(K).real)
    x = torch.randn(2, 6, 6, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(conv(x), four(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(effective_kernel(conv), K, rtol=0, atol=1e-13)
    torch.testing.assert_close(score_multiplier(conv).real, four.w, rtol=0, atol=1e-12)


def test_two_layer_defaults_are_balanced_product():
    x = torch.randn(1, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(TwoLayerConv(5, 2)(x), -0.01 * x, rtol=0, atol=1e-15)
    torch.testing.assert_close(TwoLayerFourier(5, 2)(x), -0.01 * x, rtol=0, atol=1e-15)


@pytest.mark.parametrize("d,L,ell", [(1, 9, 4), (2, 8, 2), (2, 7, 3), (3, 5, 1)])
def test_local_net_kernel_is_its_delta_response(d, L, ell):
    net = LocalScoreNet(L, d, ell, generator=torch.Generator().manual_seed(1))
    delta = torch.zeros((1,) + (L,) * d, dtype=torch.float64)
    delta[(0,) * (d + 1)] = 1.0
    with torch.no_grad():
        K = effective_kernel(net)
        torch.testing.assert_close(net(delta)[0], K, rtol=0, atol=1e-14)
    outside = ~lattice.box_mask(L, d, ell)
    assert bool((K[outside] == 0).all())  # receptive field: radius ell


def test_kaiming_kernels_are_seeded():
    a1, b1 = kaiming_kernels(8, 2, torch.Generator().manual_seed(3))
    a2, _ = kaiming_kernels(8, 2, torch.Generator().manual_seed(3))
    assert torch.equal(a1, a2) and a1.shape == (8, 8) and not torch.equal(a1, b1)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: OneLayerConv(4, 2, torch.zeros(4, 5)), ValueError, "kernel must have shape"),
        (lambda: OneLayerConv(4, 4), ValueError, "d in 1..3"),
        (lambda: OneLayerConv(1, 2), ValueError, "L must be"),
        (lambda: TwoLayerConv(4, 2, a=torch.zeros(3, 3)), ValueError, "a must have shape"),
        (lambda: LocalScoreNet(6, 2, 3), ValueError, "ell"),
        (lambda: LocalScoreNet(6, 2, 1, channels=0), ValueError, "channels"),
        (lambda: OneLayerConv(4.0, 2), TypeError, "L must be an int"),
    ],
)
def test_model_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------- losses
def test_population_loss_zero_at_the_exact_kernel_and_per_site_scaling():
    f, p, t = GaussianField(6, 2), OU(), 0.4
    exact = OneLayerConv(6, 2, f.real_space_score_kernel(p, t))
    assert float(population_loss(exact, f, p, t).detach()) < 1e-24
    assert kernel_error(exact, f, p, t) < 1e-14
    zero_conv, zero_four = OneLayerConv(6, 2), OneLayerFourier(6, 2)
    C = f.mode_variance(p, t)
    full = 0.5 * float((C * f.score_kernel(p, t) ** 2).sum())  # w = 0: 1/2 sum_k C K^2
    assert float(population_loss(zero_four, f, p, t).detach()) == pytest.approx(full, rel=1e-14)
    assert float(population_loss(zero_conv, f, p, t).detach()) == pytest.approx(full / f.V, rel=1e-14)


def test_loss_validation():
    f = GaussianField(6, 2)
    with pytest.raises(ValueError, match="differs from field"):
        population_loss(OneLayerConv(5, 2), f, OU(), 0.3)
    with pytest.raises(TypeError, match="GaussianField"):
        population_loss(OneLayerConv(6, 2), "field", OU(), 0.3)
    with pytest.raises(ValueError, match="t must be > 0"):
        dsm_loss(OneLayerConv(6, 2), f, OU(), 0.0, 4, torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"steps": -1, "lr": 0.1}, "steps"),
        ({"steps": 2, "lr": 0.0}, "lr"),
        ({"steps": 2, "lr": 0.1, "objective": "mle"}, "objective"),
        ({"steps": 2, "lr": 0.1, "optimizer": "lbfgs"}, "optimizer"),
        ({"steps": 2, "lr": 0.1, "optimizer": "momentum", "momentum": 1.0}, "momentum"),
    ],
)
def test_train_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train(OneLayerFourier(4, 2), GaussianField(4, 2), OU(), 0.3, **kwargs)


def test_train_report_steps_to_accuracy_matches_the_counter():
    """train() on the Fourier model with eta = 1/max C reports the same step count as steps_to_accuracy."""
    f, p, t = GaussianField(8, 2), OU(), 0.01
    C = f.mode_variance(p, t)
    n = steps_to_accuracy("one-layer", 8)
    rep = train(OneLayerFourier(8, 2), f, p, t, steps=n, lr=1.0 / float(C.max()))
    assert rep.steps_to_accuracy == n
    assert len(rep.losses) == n + 1 and rep.score_errors[0] == pytest.approx(1.0, abs=1e-15)


# ---------------------------------------------------------------- descent counters
def test_public_entry_point_signature_is_stable():
    params = list(inspect.signature(steps_to_accuracy).parameters.values())
    assert [q.name for q in params[:7]] == ["arch", "L", "d", "r", "t", "eps", "process"]
    assert [q.default for q in params[2:7]] == [2, 0.0, 0.01, 1e-2, None]
    assert all(q.kind is inspect.Parameter.KEYWORD_ONLY for q in params[7:])


def test_one_layer_counter_matches_closed_form():
    f = GaussianField(16, 1, 0.2)
    C = f.mode_variance(OU(), 0.05)[f.mode_mask()]
    eta = 1.0 / float(C.max())
    assert fourier_descent("one-layer", C, eta, 1e-3) == int(theory.one_layer_steps(C.numpy(), eta, 1e-3).max())


def test_mismatch_descent_at_zero_is_the_balanced_counter():
    f = GaussianField(16, 2)
    C = f.mode_variance(OU(), 0.01)[f.mode_mask()]
    assert mismatch_descent(C, 0.0) == steps_to_accuracy("two-layer", 16)


def test_local_descent_matches_the_eigen_closed_form():
    """GD from 0 with eta = 1/lambda_max: ||e_n||_A^2 = sum_i lambda_i (1 - lambda_i/lambda_max)^(2n) c_i^2."""
    f, p, t, eps = GaussianField(16, 2), OU(), 0.05, 1e-3
    A, h, _ = theory.local_normal_equations(f, p, t, 2)
    lam, Q = torch.linalg.eigh(A)
    c = Q.T @ torch.linalg.solve(A, h)
    q = 1 - lam / lam[-1]
    total = float((lam * c**2).sum())
    n = 0
    while float((lam * q ** (2 * n) * c**2).sum()) >= eps**2 * total:
        n += 1
    assert local_descent(f, p, t, 2, eps) == n
    assert steps_to_accuracy("local", 16, t=0.05, eps=eps, ell=2) == n


def test_heavy_ball_parameters_formula():
    eta, beta = heavy_ball_parameters(torch.tensor([1.0, 4.0, 9.0]))
    assert eta == pytest.approx(4 / 16) and beta == pytest.approx((2 / 4) ** 2)


def test_default_ell():
    assert [default_ell(L) for L in (4, 8, 16, 32, 64, 128)] == [1, 2, 3, 3, 4, 5]


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: steps_to_accuracy("three-layer", 8), ValueError, "arch"),
        (lambda: steps_to_accuracy("one-layer", 8, eps=1.0), ValueError, "eps"),
        (lambda: steps_to_accuracy("one-layer", 8, t=0.0), ValueError, "t must be > 0"),
        (lambda: steps_to_accuracy("one-layer", 8, eta=-1.0), ValueError, "eta"),
        (lambda: steps_to_accuracy("two-layer", 8, u0=0.0), ValueError, "u0"),
        (lambda: steps_to_accuracy("one-layer", 8, max_steps=0), ValueError, "max_steps"),
        (lambda: steps_to_accuracy("one-layer", 8, eta=3.0, max_steps=50), RuntimeError, "did not reach"),
        (lambda: fourier_descent("one-layer", torch.tensor([1.0, 0.0]), 0.5, 0.1), ValueError, "C must be > 0"),
        (lambda: fourier_descent("one-layer", torch.tensor([1.0]), 0.5, 0.1, beta=1.0), ValueError, "beta"),
        (lambda: mismatch_descent(torch.tensor([1.0]), -1.0), ValueError, "Delta"),
        (lambda: heavy_ball_parameters(torch.tensor([])), ValueError, "non-empty"),
    ],
)
def test_descent_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------- experiment
def test_fit_exponent_exact_power_law():
    assert fit_exponent([2, 4, 8], [3 * 2**1.5, 3 * 4**1.5, 3 * 8**1.5]) == pytest.approx(1.5, rel=1e-12)
    assert math.isnan(fit_exponent([8], [3]))
    with pytest.raises(ValueError, match="same length"):
        fit_exponent([1, 2], [1])


def test_scaling_table_and_format():
    table = scaling_table((8, 16), d=1, archs=("one-layer", "two-layer"))
    assert [row["L"] for row in table.rows] == [8, 16]
    assert table.rows[1]["one-layer"] == steps_to_accuracy("one-layer", 16, d=1)
    text = format_scaling_table(table)
    assert "one-layer" in text and "z" in text.splitlines()[-1]
    with pytest.raises(ValueError, match="archs"):
        scaling_table((8,), archs=("bogus",))
    with pytest.raises(ValueError, match="at least one"):
        scaling_table(())


def test_train_subcommand_prints_the_table(capsys):
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "--L", "8", "16", "--d", "1", "--arch", "one-layer", "local", "--ell", "1"])
    assert run_train(args) == 0
    out = capsys.readouterr().out
    assert "local ell=1" in out and str(steps_to_accuracy("one-layer", 16, d=1)) in out
    np.testing.assert_equal(args.func, run_train)


def test_train_per_time_gives_one_model_per_time():
    f, p = GaussianField(6, 2, 0.5), OU()
    gen = torch.Generator().manual_seed(0)
    runs = train_per_time(lambda: LocalScoreNet(6, 2, 1, generator=gen), f, p, [0.1, 1.0], steps=100, lr=0.05)
    assert [t for t, _, _ in runs] == [0.1, 1.0]
    assert runs[0][1] is not runs[1][1]
    for t, net, rep in runs:
        # each net is fit to its own time: 100 Adam steps cut the loss well below the start
        assert rep.losses[-1] < 0.5 * rep.losses[0]
        assert float(population_loss(net, f, p, t).detach()) == pytest.approx(rep.losses[-1], rel=1e-12)
    with pytest.raises(ValueError, match="times"):
        train_per_time(lambda: LocalScoreNet(6, 2, 1), f, p, [], steps=1, lr=0.1)
