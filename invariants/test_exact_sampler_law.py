"""Invariant: the exact Gaussian-field sampler has exactly the law N(0, C), C the circulant of c0 (THEORY 0, 2).

``GaussianField.sample`` draws its white noise on the half spectrum (``lattice.white_spectrum``) and
needs one inverse real FFT.  Its output is a linear map ``x = M g`` of the standard normals ``g`` it
draws, so its covariance ``M M^T`` is computed exactly from the images of the basis vectors and
compared with the real-space covariance ``C = F^-1 diag(c0) F`` -- no sampling error, the tolerance
is float64 rounding.  The sampler itself is tied to that map by replaying its draws.
"""

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from critdiff_ref import lattice
from critdiff_ref.strategies import masses, seeds
from critdiff_ref.targets import GaussianField
from critdiff_ref.testing import assert_close

# V <= 512 keeps the V x V products instant (M has 2 V (L//2 + 1) / L rows)
_MAX_L = {1: 64, 2: 16, 3: 8}


@st.composite
def small_fields(draw) -> GaussianField:
    d = draw(st.integers(1, 3))
    L = draw(st.integers(2, _MAX_L[d]))
    return GaussianField(L, d, draw(masses()))


def _half_shape(field: GaussianField) -> tuple[int, ...]:
    return (*field.shape[:-1], field.L // 2 + 1)


def _map(field: GaussianField, g: torch.Tensor) -> torch.Tensor:
    """The sampler's map from its normals ``g`` (``(*batch, *half, 2)``) to fields, float64."""
    W = lattice.white_spectrum(g.clone(), field.L, field.d)
    gain = field.c0_half(dtype=torch.float64, device="cpu", sqrt=True) / math.sqrt(2.0)
    return torch.fft.irfftn(W * gain, s=field.shape, dim=lattice.lattice_dims(field.d), norm="ortho")


@given(small_fields(), seeds())
def test_exact_sampler_covariance_is_c0(field, seed):
    # the sampler is this map applied to its draws (same generator, same normals): equal to rounding
    g = torch.randn((3, *_half_shape(field), 2), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = field.sample(3, torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert_close(x, _map(field, g), rtol=0.0, atol=1e-14 * max(1.0, float(x.abs().max())))
    # exact covariance of the map from its basis images
    n = 2 * math.prod(_half_shape(field))
    M = _map(field, torch.eye(n, dtype=torch.float64).reshape(n, *_half_shape(field), 2)).reshape(n, field.V)
    eye = torch.eye(field.V, dtype=torch.float64).reshape(field.V, *field.shape)
    C = lattice.ifft(lattice.fft(eye, field.d) * field.c0(), field.d).real.reshape(field.V, field.V)
    # float64 rounding of two size-V FFTs and a V-term sum per entry, relative to the largest variance
    assert_close(M.T @ M, C, rtol=0.0, atol=1e-12 * float(field.c0().max()))
