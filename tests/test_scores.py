"""Unit tests of exact_score's interface: dtypes, devices, per-batch times and errors."""

import pytest
import torch

from critdiff_ref.processes import OU, VE, VP
from critdiff_ref.scores import exact_score
from critdiff_ref.targets import GaussianField, Phi4Lattice, Phi4ZeroD, TwoGaussianMixture
from critdiff_ref.testing import assert_close

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_follow_input(device, dtype):
    f = GaussianField(8, 2, 0.0)
    x = f.sample(3, dtype=dtype, device=device)
    s = exact_score(f, VE())(x, 0.5)
    assert s.dtype == dtype and s.device.type == device
    ref = exact_score(f, VE())(x.double().cpu(), 0.5)
    assert_close(s.double().cpu(), ref, ulps=64 * (torch.finfo(dtype).eps / 2.2e-16))


def test_per_batch_times():
    """A (batch,) tensor of times gives each row its own score."""
    f = GaussianField(6, 1, 0.2)
    p = VP()
    x = f.sample(4, torch.Generator().manual_seed(0), dtype=torch.float64)
    ts = torch.tensor([0.1, 0.3, 0.5, 0.9], dtype=torch.float64)
    s = exact_score(f, p)(x, ts)
    for i, t in enumerate(ts.tolist()):
        assert_close(s[i], exact_score(f, p)(x[i], t))
    m = TwoGaussianMixture(1.0, 0.5)
    y = torch.linspace(-2, 2, 4, dtype=torch.float64)
    sm = exact_score(m, p)(y, ts)
    for i, t in enumerate(ts.tolist()):
        assert_close(sm[i], exact_score(m, p)(y[i : i + 1], t)[0])
    mix = m.as_mixture()
    assert_close(exact_score(mix, p)(y, ts), sm, ulps=256)


def test_bad_inputs():
    f = GaussianField(4, 2)
    s = exact_score(f, OU())
    with pytest.raises(ValueError, match="shape"):
        s(torch.zeros(2, 5, 5), 0.1)
    with pytest.raises(TypeError, match="floating"):
        s(torch.zeros(2, 4, 4, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match=r"\[0, T\]"):
        s(torch.zeros(2, 4, 4), 10.0)
    with pytest.raises(ValueError, match="batch"):
        s(torch.zeros(2, 4, 4), torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(TypeError, match="process"):
        exact_score(f, "VE")
    with pytest.raises(TypeError, match="no exact score"):
        exact_score(object(), OU())
    with pytest.raises(ValueError, match="lam > 0"):
        exact_score(Phi4Lattice(4, 2, 0.2, 0.02), OU())
    with pytest.raises(ValueError, match="scalar time"):
        exact_score(Phi4ZeroD(), OU())(torch.zeros(2, dtype=torch.float64), torch.tensor([0.1, 0.2]))


def test_critical_score_has_no_zero_mode():
    f = GaussianField(6, 2, 0.0)
    x = torch.ones(1, 6, 6, dtype=torch.float64)  # pure zero mode
    assert float(exact_score(f, VE())(x, 0.3).abs().max()) == 0.0


@pytest.mark.parametrize("r", [0.0, 0.4])
def test_fourier_score_kernel_cache_is_invisible(monkeypatch, r):
    """The cached half-spectrum kernel gives the uncached complex-FFT filter F^-1[K_t F[x]] with
    K_t = field.score_kernel (rounding of the two FFT routes: 1e-12 relative in float64), the same
    tensor on a repeated time, the per-entry value for a tensor of times, and the cache stays within
    its byte budget (least recently used out)."""
    from critdiff_ref import lattice, scores

    field, process = GaussianField(6, 2, r), VP()
    x = field.sample(4, torch.Generator().manual_seed(0), dtype=torch.float64)
    score = exact_score(field, process)
    for t in (0.3, 0.7, 0.3):
        direct = lattice.ifft(field.score_kernel(process, t) * lattice.fft(x, 2), 2).real
        assert_close(score(x, t), direct, rtol=1e-12, atol=1e-12)
    assert torch.equal(score(x, 0.3), score(x, torch.tensor(0.3, dtype=torch.float64)))
    times = torch.tensor([0.3, 0.7, 0.3, 0.9], dtype=torch.float64)
    assert_close(score(x, times), torch.stack([score(x[i : i + 1], float(t))[0] for i, t in enumerate(times)]),
                 rtol=1e-14, atol=1e-14)  # same arithmetic, broadcast vs one at a time

    one_kernel = 6 * 4 * 8  # half spectrum (6, 6 // 2 + 1) in float64
    monkeypatch.setattr(scores, "KERNEL_CACHE_BYTES", 2 * one_kernel)
    small = exact_score(field, process)
    for t in (0.1, 0.2, 0.3, 0.2, 0.4):
        small(x, t)
    cells = [c.cell_contents for c in small.__closure__ if isinstance(c.cell_contents, dict)]
    assert [key[0] for key in cells[0]] == [0.2, 0.4]  # two fit; 0.1 and then 0.3 were the least recent
