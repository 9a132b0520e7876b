"""Unit tests of the lattice conventions (THEORY 0)."""

import math

import pytest
import torch
from hypothesis import given

from critdiff_ref import lattice
from critdiff_ref.strategies import lattices, seeds
from critdiff_ref.testing import assert_close


@pytest.mark.parametrize("L,d", [(2, 1), (5, 1), (4, 2), (5, 2), (3, 3), (4, 3)])
def test_khat2_equals_laplacian_eigenvalues(L, d):
    """khat^2(k) are exactly the eigenvalues of the explicit periodic lattice Laplacian."""
    eig = torch.linalg.eigvalsh(lattice.laplacian_matrix(L, d))
    k2 = torch.sort(lattice.khat2(L, d).flatten()).values
    # eigvalsh of a symmetric V x V matrix with entries O(d): backward error ~ V eps ||A||.
    assert_close(k2, eig, atol=64 * L**d * 4 * d * 2.2e-16, rtol=0.0)


def test_khat2_range():
    k2 = lattice.khat2(6, 2)
    assert k2[0, 0] == 0.0
    assert math.isclose(float(k2.max()), 8.0, rel_tol=1e-15)  # 4d at the zone corner (L even)


@given(lattices(), seeds())
def test_parseval_and_real_round_trip(Ld, seed):
    """The unitary FFT preserves the norm, and ifft(fft(x)) returns a real field unchanged."""
    L, d = Ld
    x = torch.randn((3,) + (L,) * d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    xk = lattice.fft(x, d)
    # ~log2(V) butterfly stages each add O(eps) relative error.
    assert_close(xk.abs().pow(2).sum(), x.pow(2).sum())
    back = lattice.ifft(xk, d)
    assert_close(back.real, x)
    assert float(back.imag.abs().max()) < 64 * 2.2e-16 * float(x.abs().max())


@given(lattices(), seeds())
def test_white_noise_is_white_in_fourier_space(Ld, seed):
    """Unitary convention: E|z_k|^2 = 1 for every mode (checked as an exact identity of the mean over modes)."""
    L, d = Ld
    z = torch.randn((L,) * d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert_close(lattice.fft(z, d).abs().pow(2).mean(), z.pow(2).mean())


@given(lattices(), seeds())
def test_remove_zero_mode(Ld, seed):
    L, d = Ld
    x = torch.randn((2,) + (L,) * d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    y = lattice.remove_zero_mode(x, d)
    assert float(lattice.fft(y, d)[(slice(None),) + (0,) * d].abs().max()) < 1e-12 * L**d
    assert_close(lattice.remove_zero_mode(y, d), y)


def test_torus_distance_and_box_mask():
    dist = lattice.torus_distance(7, 2)
    assert int(dist[0, 0]) == 0 and int(dist[3, 1]) == 3 and int(dist[4, 6]) == 3 and int(dist[6, 6]) == 1
    for ell in range(4):
        assert int(lattice.box_mask(7, 2, ell).sum()) == (2 * ell + 1) ** 2
    assert int(lattice.box_mask(8, 3, 1).sum()) == 27
    with pytest.raises(ValueError, match="ell"):
        lattice.box_mask(8, 2, -1)


@pytest.mark.parametrize("L,d,exc", [(1, 2, ValueError), (4, 0, ValueError), (4.0, 2, TypeError), (4, 2.5, TypeError)])
def test_bad_lattice(L, d, exc):
    with pytest.raises(exc, match="L|d"):
        lattice.khat2(L, d)


@pytest.mark.parametrize("d,L", [(1, 7), (1, 8), (2, 5), (2, 6), (3, 4), (3, 5)])
def test_real_filter_equals_the_complex_fft_filter(d, L):
    """real_filter (rfftn/irfftn) is ifft(fft(x) m).real for multipliers even in k, odd and even L."""
    from critdiff_ref.lattice import fft, ifft, khat2, real_filter

    g = torch.Generator().manual_seed(d * 10 + L)
    x = torch.randn((3, *(L,) * d), generator=g, dtype=torch.float64)
    m = 1.0 / (khat2(L, d, dtype=torch.float64) + 0.3)  # any function of khat^2 is even in k
    expected = ifft(fft(x, d) * m, d).real
    # both are exact FFT identities: agreement to rounding, a few ulps times log V
    torch.testing.assert_close(real_filter(x, m, d), expected, rtol=1e-12, atol=1e-13)
    batched = m * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).reshape(3, *(1,) * d)
    torch.testing.assert_close(real_filter(x, batched, d), ifft(fft(x, d) * batched, d).real, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("L,d", [(2, 1), (5, 1), (4, 1), (4, 2), (5, 2), (6, 2), (3, 3), (4, 3)])
def test_filtered_noise_has_the_law_of_the_filtered_white_field(L, d):
    """Fourier-space noise through one irfftn has exactly the covariance of F^-1[m F[z]]: both maps are
    linear in their normals, so the covariances M M^T follow from the images of the basis vectors.
    The multiplier is a random even one with a zero at k = 0 (as at criticality); float64 rounding of
    two FFTs of size V <= 64 and a V x V product: 1e-13."""
    k2 = lattice.khat2(L, d)
    m = torch.sqrt(1.0 / (k2 + 0.3)) * (1.0 + 0.5 * torch.cos(k2))  # even in k: a function of khat^2
    m[(0,) * d] = 0.0
    m_half = lattice.half_spectrum(m)
    n_normals = 2 * m_half.numel()
    basis = torch.eye(n_normals, dtype=torch.float64).reshape(n_normals, *m_half.shape, 2)
    W = lattice.white_spectrum(basis, L, d)
    X = torch.fft.irfftn(W * m_half / math.sqrt(2.0), s=(L,) * d, dim=lattice.lattice_dims(d), norm="ortho")
    V = L**d
    Z = lattice.real_filter(torch.eye(V, dtype=torch.float64).reshape(V, *(L,) * d), m, d)
    X, Z = X.reshape(n_normals, V), Z.reshape(V, V)
    assert_close(X.T @ X, Z.T @ Z, rtol=0.0, atol=1e-13)


def test_filtered_noise_follows_generator_dtype_and_batch():
    m = lattice.half_spectrum(torch.ones(6, 6))
    a = lattice.filtered_noise(m, (2, 3), 6, 2, torch.Generator().manual_seed(1), dtype=torch.float32)
    b = lattice.filtered_noise(m, (2, 3), 6, 2, torch.Generator().manual_seed(1), dtype=torch.float32)
    assert a.shape == (2, 3, 6, 6) and a.dtype == torch.float32 and torch.equal(a, b)
