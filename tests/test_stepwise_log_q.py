"""The cheap exact log q of DM-MCMC (THEORY 8, issue 17): :class:`FourierLocalScore`'s coloured Jacobian
equals autograd's, and :func:`flow_jacobian.stepwise_flow_log_density` (chain rule, step by step) equals
:func:`flow_jacobian.flow_jacobian_log_density` (one Jacobian of the whole sampler); planted bugs fail."""

import pytest
import torch

from critdiff_ref.processes import VE, VP
from critdiff_ref.samplers import dmmc, flow_jacobian, likelihood
from critdiff_ref.scores import exact_score
from critdiff_ref.targets import Phi4Lattice
from critdiff_ref.testing import assert_close
from critdiff_ref.trainers import dsm
from critdiff_ref.trainers.fourier_local import FourierLocalScore, colouring_modulus

from fourier_local_nets import autograd_jacobian, random_net

EPS64 = torch.finfo(torch.float64).eps
T_MIN = 1e-3


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("L, d, radius", [(4, 2, 1), (6, 2, 1), (4, 2, 0), (4, 2, 2), (8, 1, 2), (6, 1, 1), (3, 1, 1)])
@pytest.mark.parametrize("odd", [True, False])
def test_coloured_jacobian_equals_jacrev(L, d, radius, odd):
    """circulant + coloured-JVP Jacobian = reverse-mode autograd Jacobian, entry by entry (float64)."""
    net = random_net(L, d, VE(), radius, seed=L + 10 * radius)
    net.odd = odd
    x = torch.randn((3, *(L,) * d), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for t in (T_MIN, 0.3, 1.0):
        s, J = net.score_jacobian(x, t)
        ref = autograd_jacobian(net, x, t)
        # the same derivative terms summed in another order (FFT vs its transpose, forward vs reverse
        # mode): a few eps of max |J|; 64 eps leaves room for the V-term FFT sums
        assert_close(J, ref, rtol=0.0, atol=64 * EPS64 * float(ref.abs().max()))
        assert torch.equal(s, net(x, t))


def test_aliased_colouring_is_wrong():
    """Planted bug: colours x mod 2 with radius 1 put i - 1 and i + 1 in one colour: the Jacobian is wrong."""
    net = random_net(4, 2, VE(), 1, seed=3)
    x = torch.randn((2, 4, 4), generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    ref = autograd_jacobian(net, x, 0.3)
    _, J = net.score_jacobian(x, 0.3, modulus=2)
    # the aliased entries are sums of two O(0.01..0.1) local derivatives: far above the 64-eps agreement
    assert float((J - ref).abs().max()) > 1e6 * 64 * EPS64 * float(ref.abs().max())


@pytest.mark.parametrize("L, radius, expected", [(4, 1, 4), (6, 1, 3), (8, 2, 8), (16, 2, 8), (32, 1, 4), (3, 1, 3),
                                                 (2, 1, 2), (5, 0, 1), (9, 1, 3)])
def test_colouring_modulus_is_the_smallest_safe_divisor(L, radius, expected):
    assert colouring_modulus(L, radius) == expected


@pytest.mark.parametrize("shape", [(4, 2), (6, 2), (8, 1)])
@pytest.mark.parametrize("method", ["euler", "heun", "rk4"])
@pytest.mark.parametrize("process", [VE(sigma=25.0, T=1.0), VP(beta_min=0.1, beta_max=20.0, T=1.0)], ids=["VE", "VP"])
def test_stepwise_log_q_equals_the_full_flow_jacobian(shape, method, process):
    """Chain rule step by step = slogdet of the whole sampler's Jacobian (both exact, float64)."""
    L, d = shape
    net = random_net(L, d, process, 1, seed=L + d)
    prior = likelihood.isotropic_prior(process, L, d)
    xT = prior.sample(3, torch.Generator().manual_seed(7))
    x0_ref, lq_ref = flow_jacobian.flow_jacobian_log_density(net, process, xT, prior, steps=4, method=method, t_min=T_MIN)
    x0, lq = flow_jacobian.stepwise_flow_log_density(net, process, xT, prior, steps=4, method=method, t_min=T_MIN)
    # both are exact: the difference is rounding of a V x V slogdet (sum of V log|pivots|) and of the
    # products through 4 steps, ~1e2..1e3 eps relative; 1e-10 relative of |log q| (~1e2) is 5e5 eps
    assert_close(lq, lq_ref, rtol=1e-10, atol=0.0)
    # the same operations in the same order on the forward path (a few ulps from fused vs unfused adds)
    assert_close(x0, x0_ref, ulps=16)


def test_missing_heun_predictor_term_fails(monkeypatch):
    """Planted bug: Heun's Jacobian without the predictor factor (A_2 = J_f(y) instead of J_f(y)(I + dt A_1))."""
    process = VE(sigma=25.0, T=1.0)
    net = random_net(4, 2, process, 1, seed=2)
    prior = likelihood.isotropic_prior(process, 4, 2)
    xT = prior.sample(2, torch.Generator().manual_seed(8))
    _, lq_ref = flow_jacobian.flow_jacobian_log_density(net, process, xT, prior, steps=4, method="heun", t_min=T_MIN)

    def buggy(method, drift_jacobian, x, t, dt):
        k1, J1 = drift_jacobian(x, t)
        k2, J2 = drift_jacobian(x + dt * k1, t + dt)
        eye = torch.eye(J1.shape[-1], dtype=torch.float64)
        return x + 0.5 * dt * (k1 + k2), eye + 0.5 * dt * (J1 + J2)

    monkeypatch.setattr(flow_jacobian, "step_jacobian", buggy)
    _, lq = flow_jacobian.stepwise_flow_log_density(net, process, xT, prior, steps=4, method="heun", t_min=T_MIN)
    # the dropped term dt^2/2 J_f(y) J_f(x) is O(1) per step at T (g^2 h / 2 ~ 40 for VE sigma = 25):
    # far outside the 1e-10 relative agreement of the correct chain rule
    assert float((lq - lq_ref).abs().max()) > 1e-3 * float(lq_ref.abs().max())


def test_dm_mcmc_stepwise_equals_jacobian_mode_and_trains_with_train_dsm():
    """log_q='stepwise' in dm_mcmc gives the same proposals and log q as log_q='jacobian' (same generator);
    the network trains with dsm.train_dsm and stays odd."""
    process = VE(sigma=25.0, T=1.0)
    target = Phi4Lattice(4, 2, 0.2, 0.022)
    net = FourierLocalScore(4, 2, process, radius=1, channels=6, embed_dim=8, generator=torch.Generator().manual_seed(1),
                            dtype=torch.float64)
    data = torch.randn((64, 4, 4), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    report = dsm.train_dsm(net, data, process, steps=5, batch_size=16, generator=torch.Generator().manual_seed(3))
    assert report.losses.shape == (5,) and bool(torch.isfinite(torch.as_tensor(report.losses)).all())
    x = data[:4]
    with torch.no_grad():
        assert_close(net(-x, 0.2), -net(x, 0.2), ulps=4)  # odd: one symmetrised pass, exact up to rounding
    prior = likelihood.isotropic_prior(process, 4, 2)
    kw = dict(n_chains=2, n_iter=3, steps=3, method="heun", t_min=T_MIN, batch_size=4)
    a = dmmc.dm_mcmc(target, net, process, prior, log_q="stepwise", generator=torch.Generator().manual_seed(4), **kw)
    b = dmmc.dm_mcmc(target, net, process, prior, log_q="jacobian", generator=torch.Generator().manual_seed(4), **kw)
    assert_close(a.log_q, b.log_q, rtol=1e-10, atol=0.0)  # as in the equality test above
    assert_close(a.proposals, b.proposals, ulps=16)


def test_bad_input():
    process = VE()
    plain = exact_score(Phi4Lattice(4, 2, 0.2, 0.0).free_field(), process)
    prior = likelihood.isotropic_prior(process, 4, 2)
    xT = prior.sample(1, torch.Generator().manual_seed(0))
    with pytest.raises(TypeError, match="score_jacobian"):
        flow_jacobian.stepwise_flow_log_density(plain, process, xT, prior, steps=2)
    with pytest.raises(TypeError, match="score_jacobian"):
        dmmc.dm_mcmc(Phi4Lattice(4, 2, 0.2, 0.0), plain, process, prior, n_chains=1, n_iter=2, log_q="stepwise")
    net = random_net(4, 2, process, 1, seed=0)
    with pytest.raises(ValueError, match="method"):
        flow_jacobian.stepwise_flow_log_density(net, process, xT, prior, steps=2, method="midpoint")
    with pytest.raises(ValueError, match="modulus"):
        net.score_jacobian(xT, 0.5, modulus=3)
    with pytest.raises(ValueError, match="modulus"):
        net.score_jacobian(xT, 0.5, modulus=0)
    with pytest.raises(ValueError, match="x must have shape"):
        net.score_jacobian(torch.zeros(1, 5, 5, dtype=torch.float64), 0.5)
    with pytest.raises(ValueError, match="t must be > 0"):
        net.score_jacobian(xT, 0.0)
    for kw, name in (({"radius": -1}, "radius"), ({"channels": 0}, "channels"), ({"depth": 0}, "depth"),
                     ({"data_std": 0.0}, "data_std")):
        with pytest.raises(ValueError, match=name):
            FourierLocalScore(4, 2, process, **kw)
    with pytest.raises(ValueError, match="d must be 1, 2 or 3"):
        FourierLocalScore(4, 4, process)
    with pytest.raises(ValueError, match="radius"):
        colouring_modulus(4, -1)
