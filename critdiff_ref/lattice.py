"""Lattice conventions (THEORY 0): momenta, unitary FFTs, the zero mode, torus distances.

Every lattice field has shape ``(*batch, *lattice)`` with ``lattice = (L,) * d``; the last
``d`` axes are the lattice.  Fourier transforms are unitary (``norm="ortho"``) so white noise
has unit variance in every mode and Parseval holds with no factors.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "real_filter",
    "half_spectrum",
    "white_spectrum",
    "filtered_noise",
    "check_lattice",
    "lattice_dims",
    "momenta",
    "khat2",
    "fft",
    "ifft",
    "remove_zero_mode",
    "torus_distance",
    "box_mask",
    "laplacian_matrix",
]


def check_lattice(L: int, d: int) -> None:
    """Validate a lattice size ``L >= 2`` and dimension ``d >= 1`` (integers)."""
    if isinstance(L, bool) or not isinstance(L, int):
        raise TypeError(f"L must be an int >= 2, got {L!r} ({type(L).__name__})")
    if L < 2:
        raise ValueError(f"L must be >= 2, got L={L}")
    if isinstance(d, bool) or not isinstance(d, int):
        raise TypeError(f"d must be an int >= 1, got {d!r} ({type(d).__name__})")
    if d < 1:
        raise ValueError(f"d must be >= 1, got d={d}")


def lattice_dims(d: int) -> tuple[int, ...]:
    """The tensor axes of a ``d``-dimensional lattice: the last ``d`` axes."""
    return tuple(range(-d, 0))


def momenta(
    L: int, d: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> list[torch.Tensor]:
    """Lattice momenta ``k_mu = 2 pi n_mu / L`` in ``torch.fft.fftn`` order, broadcast to ``(L,)*d``."""
    check_lattice(L, d)
    n = torch.arange(L, dtype=dtype, device=device)
    k1 = 2.0 * math.pi * n / L
    out = []
    for mu in range(d):
        shape = [1] * d
        shape[mu] = L
        out.append(k1.reshape(shape).expand((L,) * d))
    return out


def khat2(
    L: int, d: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """Lattice Laplacian eigenvalues ``khat^2(k) = sum_mu 4 sin^2(k_mu / 2)`` (THEORY 0), shape ``(L,)*d``."""
    return sum(4.0 * torch.sin(k / 2.0) ** 2 for k in momenta(L, d, dtype=dtype, device=device))


def fft(x: torch.Tensor, d: int) -> torch.Tensor:
    """Unitary FFT over the last ``d`` axes."""
    return torch.fft.fftn(x, dim=lattice_dims(d), norm="ortho")


def ifft(x_k: torch.Tensor, d: int) -> torch.Tensor:
    """Unitary inverse FFT over the last ``d`` axes (complex result; take ``.real`` for real fields)."""
    return torch.fft.ifftn(x_k, dim=lattice_dims(d), norm="ortho")


def half_spectrum(multiplier: torch.Tensor) -> torch.Tensor:
    """The ``rfftn`` half of a multiplier in the full ``fftn`` layout: ``m[..., :L//2 + 1]`` (contiguous)."""
    L = multiplier.shape[-1]
    return multiplier[..., : L // 2 + 1].contiguous()


def real_filter(x: torch.Tensor, multiplier: torch.Tensor, d: int, *, half: bool = False) -> torch.Tensor:
    """``F^-1[m(k) F[x]]`` for a real field ``x`` and a real multiplier even in k (``m(k) = m(-k)``).

    Equals ``ifft(fft(x) * m).real`` (THEORY 0) at half the FFT cost: ``rfftn``/``irfftn`` over the last
    ``d`` axes, with ``m`` given in the full ``fftn`` layout (``(..., L, ..., L)``, broadcastable against
    the batch) and sliced to the half spectrum on the last axis, or with ``half=True`` already in the
    half layout ``(..., L, L//2 + 1)`` (:func:`half_spectrum`).
    """
    dims = lattice_dims(d)
    if not half:
        multiplier = multiplier[..., : x.shape[-1] // 2 + 1]
    x_k = torch.fft.rfftn(x, dim=dims, norm="ortho")
    return torch.fft.irfftn(x_k * multiplier, s=x.shape[-d:], dim=dims, norm="ortho")


def white_spectrum(g: torch.Tensor, L: int, d: int) -> torch.Tensor:
    """``sqrt(2)`` times the ``rfftn`` (ortho) of real white noise, built in Fourier space (THEORY 0).

    ``g``: real standard normals of shape ``(*batch, L, ..., L, L//2 + 1, 2)`` (the half spectrum,
    real and imaginary parts last); returns ``W = g_re + i g_im`` (a view of ``g``, modified in place)
    with the planes ``k_d = 0`` and ``k_d = L/2`` (even L) made Hermitian in the other axes,
    ``W(k') <- (W(k') + conj W(-k')) / sqrt(2)``: every pair ``{k, -k}`` then has ``E|W|^2 = 2``,
    independent real and imaginary parts, and every self-conjugate mode is real with variance 2.
    That is the law of ``sqrt(2) rfftn(z)`` for white ``z``, so ``irfftn(m W / sqrt(2))`` has the law of
    ``F^-1[m F[z]]`` with one FFT instead of two (the covariance is checked exactly in the tests).
    """
    W = torch.view_as_complex(g)
    other = tuple(range(W.ndim - d, W.ndim - 1))  # the lattice axes other than the last
    for plane in sorted({0, L // 2} if L % 2 == 0 else {0}):
        P = W[..., plane]
        # -k' mod L on every other axis: i -> L - 1 - i (flip), then +1 (roll)
        P_minus = torch.roll(torch.flip(P, other), (1,) * len(other), other) if other else P
        W[..., plane] = (P + P_minus.conj()) * (1.0 / math.sqrt(2.0))
    return W


def filtered_noise(
    multiplier_half: torch.Tensor,
    batch: tuple[int, ...],
    L: int,
    d: int,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A sample of ``F^-1[m(k) F[z]]``, ``z`` real white noise of shape ``(*batch, L, ..., L)``, from one
    inverse real FFT of :func:`white_spectrum` (``m`` even in k, on the half spectrum, real)."""
    g = torch.randn((*batch, *(L,) * (d - 1), L // 2 + 1, 2), generator=generator, dtype=dtype, device=device)
    W = white_spectrum(g, L, d)
    return torch.fft.irfftn(W * (multiplier_half * (1.0 / math.sqrt(2.0))), s=(L,) * d, dim=lattice_dims(d), norm="ortho")


def remove_zero_mode(x: torch.Tensor, d: int) -> torch.Tensor:
    """Project out the k = 0 mode: ``x <- x - mean(x)`` over the last ``d`` axes (THEORY 0)."""
    return x - x.mean(dim=lattice_dims(d), keepdim=True)


def torus_distance(L: int, d: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Periodic sup-norm distance from the origin ``max_mu min(x_mu, L - x_mu)``, shape ``(L,)*d``."""
    check_lattice(L, d)
    n = torch.arange(L, device=device)
    n = torch.minimum(n, L - n)
    dist = torch.zeros((L,) * d, dtype=torch.long, device=device)
    for mu in range(d):
        shape = [1] * d
        shape[mu] = L
        dist = torch.maximum(dist, n.reshape(shape))
    return dist


def box_mask(L: int, d: int, ell: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean mask of the radius-``ell`` box ``|x|_inf <= ell`` around the origin (THEORY 0)."""
    if isinstance(ell, bool) or not isinstance(ell, int) or ell < 0:
        raise ValueError(f"ell must be an int >= 0, got ell={ell!r}")
    return torus_distance(L, d, device=device) <= ell


def laplacian_matrix(L: int, d: int) -> torch.Tensor:
    """The explicit ``V x V`` matrix of minus the periodic lattice Laplacian (float64).

    Its eigenvalues are ``khat^2(k)``; used as an independent check of :func:`khat2`.
    Sites are numbered in row-major (C) order of ``(L,)*d``.
    """
    check_lattice(L, d)
    V = L**d
    eye = torch.eye(V, dtype=torch.float64).reshape((V,) + (L,) * d)
    lap = 2.0 * d * eye
    for mu in lattice_dims(d):
        lap = lap - torch.roll(eye, 1, dims=mu) - torch.roll(eye, -1, dims=mu)
    return lap.reshape(V, V)
