"""Unit tests of critdiff_ref.thermo and critdiff_ref.thermo.condensation: input validation, dtypes,
fixed-point bookkeeping, the F = U - T(S - ln N) identity, the REM scalings and the CLI functions."""

import argparse
import json
import math

import numpy as np
import pytest
import torch

from critdiff_ref.thermo import condensation as cond
from critdiff_ref import thermo
from critdiff_ref.processes import OU, VE, VP, Brownian
from critdiff_ref.targets import EmpiricalDataset, GaussianField, GaussianMixture1D, TwoDeltas, TwoGaussianMixture
from critdiff_ref.testing import assert_close, eps

P = Brownian(1.0, T=2.0)
DATA = EmpiricalDataset(torch.tensor([[0.0, 1.0], [1.0, -1.0], [2.0, 0.5]], dtype=torch.float64))
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# -- thermo: bad input ------------------------------------------------------------------------
def test_posterior_functions_reject_bad_targets_and_states():
    x = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(TypeError, match="target must be one of"):
        thermo.magnetisation(GaussianField(4, 1, 0.5), x[:, 0], P, 0.5)
    mix = GaussianMixture1D((0.5, 0.5), (-1.0, 1.0), (0.1, 0.1))
    with pytest.raises(TypeError, match="target must be one of EmpiricalDataset, TwoDeltas"):
        thermo.participation_ratio(mix, x[:, 0], P, 0.5)
    with pytest.raises(TypeError, match="target must be one of GaussianMixture1D"):
        thermo.mixture_posterior(DATA, x, P, 0.5)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        thermo.posterior_sample(mix, x[:, 0], P, 0.5, 0)
    with pytest.raises(TypeError, match="x must be a floating-point"):
        thermo.free_energy(DATA, [[0.0, 0.0]], P, 0.5)
    with pytest.raises(TypeError, match="x must be a floating-point"):
        thermo.participation_ratio(DATA, torch.zeros(2, 2, dtype=torch.int64), P, 0.5)
    with pytest.raises(TypeError, match="EmpiricalDataset"):
        thermo.internal_energy(TwoDeltas(), x[:, 0], P, 0.5)
    with pytest.raises(TypeError, match="EmpiricalDataset"):
        thermo.posterior_entropy(TwoDeltas(), x[:, 0], P, 0.5)
    with pytest.raises(ValueError, match="t must be > 0"):
        thermo.log_partition_function(DATA, x, P, 0.0)
    with pytest.raises(ValueError, match=r"\[0, T\]"):
        thermo.inverse_temperature(P, 3.0)
    with pytest.raises(ValueError, match="shape"):
        thermo.magnetisation(DATA, torch.zeros(4, 3, dtype=torch.float64), P, 0.5)


def test_curie_weiss_functions_reject_bad_parameters():
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="beta"):
            thermo.curie_weiss_fixed_points(bad)
        with pytest.raises(ValueError, match="beta"):
            thermo.landau_free_energy(0.1, bad)
        with pytest.raises(ValueError, match="mu"):
            thermo.coupling(P, 0.5, mu=bad)
    with pytest.raises(TypeError, match="beta"):
        thermo.curie_weiss_magnetisation(True)
    with pytest.raises(TypeError, match="h"):
        thermo.curie_weiss_fixed_points(2.0, h="0")
    with pytest.raises(ValueError, match="h"):
        thermo.curie_weiss_susceptibility(2.0, h=math.nan)
    with pytest.raises(ValueError, match="mu"):
        thermo.critical_time(P, mu=0.0)


# -- thermo: values ---------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_follow_input(device, dtype):
    x = torch.linspace(-2, 2, 5, dtype=dtype, device=device)
    for f in (thermo.magnetisation, thermo.free_energy, thermo.posterior_covariance, thermo.susceptibility, thermo.participation_ratio):
        out = f(TwoDeltas(1.5), x, P, 0.3)
        assert out.dtype == dtype and out.device.type == device and out.shape == x.shape
    for target in (GaussianMixture1D((0.2, 0.8), (-1.0, 0.5), (0.3, 1.0)), TwoGaussianMixture(1.0, 0.4)):
        for f in (thermo.magnetisation, thermo.log_partition_function, thermo.posterior_covariance):
            out = f(target, x, P, 0.3)
            assert out.dtype == dtype and out.device.type == device and out.shape == x.shape
        y = thermo.posterior_sample(target, x, P, 0.3, 7, torch.Generator(device=device).manual_seed(0))
        assert y.dtype == dtype and y.device.type == device and y.shape == (7, 5)
    xe = torch.zeros(3, 2, dtype=dtype, device=device)
    assert thermo.posterior_sample(DATA, xe, P, 0.3, 4).shape == (4, 3, 2)
    assert thermo.posterior_covariance(DATA, xe, P, 0.3).shape == (3, 2, 2)
    out = thermo.internal_energy(DATA, xe, P, 0.3)
    assert out.dtype == dtype and out.device.type == device and out.shape == (3,)


@pytest.mark.parametrize("process", [Brownian(1.3, T=2.0), VE(), VP(), OU(T=2.0)], ids=["Brownian", "VE", "VP", "OU"])
def test_free_energy_is_energy_minus_temperature_times_entropy(process):
    """F = U - beta^{-1} (S - ln N) with S the Shannon entropy of the posterior weights (thermo docstring)."""
    x = torch.tensor([[0.3, -0.2], [1.5, 0.5], [-2.0, 3.0]], dtype=torch.float64)
    t = 0.4 * process.T
    Xi = float(process.Xi(t))
    F = thermo.free_energy(DATA, x, process, t)
    U = thermo.internal_energy(DATA, x, process, t)
    S = thermo.posterior_entropy(DATA, x, process, t)
    # sums of a few terms of size <= max|beta H| + ln N, each with a few eps rounding: 64 eps that scale
    scale = Xi * (1 + float(U.abs().max()) / Xi + math.log(DATA.N))
    assert_close(F, U - Xi * (S - math.log(DATA.N)), rtol=0.0, atol=64 * eps() * scale)
    assert bool((S >= 0).all()) and bool((S <= math.log(DATA.N) + 64 * eps()).all())


def test_fixed_point_counts_and_stability():
    """One root for beta <= 1 or a strong field; three (stable, unstable, stable) for beta > 1 at h = 0."""
    assert [fp.m for fp in thermo.curie_weiss_fixed_points(0.5)] == [0.0]
    assert len(thermo.curie_weiss_fixed_points(1.0)) == 1
    fps = thermo.curie_weiss_fixed_points(3.0)
    assert [fp.stable for fp in fps] == [True, False, True] and fps[1].m == 0.0
    assert len(thermo.curie_weiss_fixed_points(3.0, h=2.0)) == 1
    # at a field below the spinodal the metastable branch survives; the equilibrium one follows h
    fps = thermo.curie_weiss_fixed_points(3.0, h=0.1)
    assert len(fps) == 3 and thermo.curie_weiss_magnetisation(3.0, 0.1) == fps[-1].m
    assert thermo.curie_weiss_magnetisation(3.0, -0.1) == -fps[-1].m
    for fp in fps:  # each is a root of m = tanh(beta (m + h)) to rounding
        assert abs(fp.m - math.tanh(3.0 * (fp.m + 0.1))) < 16 * eps()


@pytest.mark.parametrize("process", [Brownian(0.7, T=5.0), VE(), VP(), OU(T=3.0)], ids=["Brownian", "VE", "VP", "OU"])
def test_critical_time_solves_unit_coupling(process):
    t_c = thermo.critical_time(process)
    assert 0 < t_c < process.T
    # brentq on ln K to 4 eps relative in t; d ln K/d ln t is O(1) here, so K - 1 = O(eps)
    assert abs(thermo.coupling(process, t_c) - 1.0) < 1e-12
    assert len(thermo.two_delta_fixed_points(process, 0.5 * t_c)) == 3
    assert len(thermo.two_delta_fixed_points(process, min(2 * t_c, process.T))) == 1


def test_critical_time_is_inf_when_symmetry_never_restored():
    assert thermo.critical_time(Brownian(0.5, T=1.0)) == math.inf  # K(T) = 1/(T sigma^2) = 4 > 1


def test_landau_free_energy_is_finite_for_huge_arguments():
    """ln cosh is evaluated without overflow: f(m) ~ m^2/2 - |m + h| + ln 2/beta for large beta |m + h|."""
    m = np.array([-0.9, 0.5, 1.0])
    f = thermo.landau_free_energy(m, 1e6)
    assert np.all(np.isfinite(f))
    assert np.allclose(f, 0.5 * m * m - np.abs(m) + math.log(2.0) / 1e6, rtol=0, atol=1e-12)
    ft = thermo.landau_free_energy(torch.tensor(m), 1e6)
    assert torch.allclose(ft, torch.tensor(f), rtol=0, atol=1e-12)


# -- condensation -----------------------------------------------------------------------------
def test_condensation_rejects_bad_parameters():
    with pytest.raises(ValueError, match="M must be an integer >= 1"):
        cond.rem_radius(0, 1.0, 10)
    with pytest.raises(TypeError, match="M must be an integer"):
        cond.rem_radius(2.0, 1.0, 10)
    with pytest.raises(ValueError, match="d_amb"):
        cond.rem_radius(3, 1.0, 0)
    with pytest.raises(ValueError, match="nu"):
        cond.rem_radius(3, -1.0, 10)
    with pytest.raises(ValueError, match=r"M must be an integer in \[1, 24\]"):
        cond.sphere_dataset(25, 1.0, 4)
    with pytest.raises(ValueError, match="beta_tilde"):
        cond.rem_participation_ratio(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="beta_tilde"):
        cond.rem_participation_ratio(torch.tensor([0.0]))
    with pytest.raises(ValueError, match="beta_tilde"):
        cond.rem_participation_ratio_exact(0.0, 4)
    with pytest.raises(ValueError, match="d_amb"):
        cond.rem_participation_ratio_exact(1.0, 4, d_amb=1)
    with pytest.raises(ValueError, match="h must be in"):
        cond.rem_participation_ratio_exact(1.0, 4, h=1.0)
    with pytest.raises(ValueError, match="M must be an integer"):
        cond.rem_participation_ratio_exact(1.0, 30)
    with pytest.raises(ValueError, match="x_norm"):
        cond.rescaled_beta(1.0, 0.0, P, 0.5)
    with pytest.raises(ValueError, match="sigma"):
        cond.condensation_time(1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="N must be an integer >= 2"):
        cond.memorisation_time(1.0, 1, 1.0)
    with pytest.raises(ValueError, match="M must be an integer >= 1"):
        cond.rem_beta_c_finite(0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sphere_dataset_shape_radius_and_reproducibility(dtype):
    M, nu, d = 5, 0.8, 12
    a = cond.sphere_dataset(M, nu, d, torch.Generator().manual_seed(3), dtype=dtype)
    b = cond.sphere_dataset(M, nu, d, torch.Generator().manual_seed(3), dtype=dtype)
    assert a.points.shape == (32, 12) and a.points.dtype == dtype
    assert torch.equal(a.points, b.points)
    R = nu * math.sqrt(M * d / 2)
    assert torch.allclose(a.points.norm(dim=-1), torch.full((32,), R, dtype=dtype), rtol=8 * eps(dtype), atol=0)


def test_rem_participation_ratio_limit_values():
    bc = cond.REM_BETA_C
    assert math.isclose(bc, 2 * math.sqrt(math.log(2)), rel_tol=1e-15)
    assert cond.rem_participation_ratio(0.5 * bc) == 0.0 and cond.rem_participation_ratio(bc) == 0.0
    assert math.isclose(cond.rem_participation_ratio(2 * bc), 0.5, rel_tol=1e-15)
    out = cond.rem_participation_ratio(torch.tensor([0.5 * bc, 4 * bc], dtype=torch.float64))
    assert torch.allclose(out, torch.tensor([0.0, 0.75], dtype=torch.float64), rtol=1e-15, atol=0)


@pytest.mark.parametrize("bt", [1.0, 2.5])
def test_exact_participation_ratio_two_levels(bt):
    """Two Gaussian levels: E[Y] = E[(1 + tanh^2(D/2))/2] with D the level difference; the quadrature's
    error is second order in the bin width h (midpoint rule)."""
    ref = _two_level(bt)
    err = cond.rem_participation_ratio_exact(bt, 1) - ref
    err_fine = cond.rem_participation_ratio_exact(bt, 1, h=0.01) - ref
    assert abs(err) < 1e-4  # the H_ERR budget of invariants/test_condensation.py
    # O(h^2): shrinking h five-fold divides the error by 25 up to O(h^4) terms (<= 20% here)
    assert 20 < err / err_fine < 30, (err, err_fine)


def _two_level(bt: float) -> float:
    """E[Y] for N = 2 Gaussian levels of variance bt^2/2 by Gauss–Hermite quadrature (independent of the 1/Z^2 trick)."""
    s2 = bt**2 / 2  # M = 1: variance beta_tilde^2 M / 2
    v, w = np.polynomial.hermite_e.hermegauss(200)  # D = sqrt(2 s2) v, v ~ N(0, 1)
    y = 0.5 * (1 + np.tanh(math.sqrt(2 * s2) * v / 2) ** 2)
    return float((w * y).sum() / w.sum())


def test_condensation_and_memorisation_times_agree_on_the_reverse_path():
    """THEORY 7's t_cond at |x|^2 = sigma^2 t d_amb equals t_mem = R^2/(2 sigma^2 ln N) (condensation docstring)."""
    for M, d, nu, sigma in [(4, 50, 0.7, 1.0), (10, 200, 1.3, 0.6)]:
        R = cond.rem_radius(M, nu, d)
        t_mem = cond.memorisation_time(R, 2**M, sigma)
        t_cond = cond.condensation_time(nu, math.sqrt(sigma**2 * t_mem * d), sigma)
        assert math.isclose(t_cond, t_mem, rel_tol=1e-14)
        p = Brownian(sigma, T=2 * t_mem)
        assert math.isclose(cond.rescaled_beta(nu, math.sqrt(sigma**2 * t_mem * d), p, t_cond), cond.REM_BETA_C, rel_tol=1e-14)


# -- CLI functions ----------------------------------------------------------------------------
def test_thermo_cli_functions(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    thermo.add_thermo_parser(parser.add_subparsers())
    path = tmp_path / "thermo.json"
    args = parser.parse_args(["thermo", "--sigma", "2", "--M", "4", "--ratios", "2", "--json", str(path)])
    assert thermo.run_thermo(args) == 0
    out = capsys.readouterr().out
    assert "t_c = 1/sigma^2 = 0.25" in out and "REM participation ratio" in out
    report = json.loads(path.read_text())
    assert math.isclose(report["t_c"], 0.25, rel_tol=1e-14)
    counts = [len(row["fixed_points"]) for row in report["curie_weiss"]]
    ts = [row["t"] for row in report["curie_weiss"]]
    assert counts == [3 if t < 0.25 else 1 for t in ts]
    (rem,) = report["rem"]
    assert rem["M"] == 4 and math.isclose(rem["limit"], 0.5, rel_tol=1e-14) and rem["E_Y"] > rem["limit"]
    with pytest.raises(ValueError, match="sigma"):
        thermo.thermo_report(sigma=-1.0)
