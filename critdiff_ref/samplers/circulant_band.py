"""Circulant-plus-band linear operators on a periodic lattice: the step Jacobians of the exact stepwise log q
(THEORY 8, "the exact log-determinant of the discretised map"; THEORY 2 for the circulant, THEORY 5 for the band).

A score that is a translation-invariant linear map plus a local network of radius ``r``
(:class:`~critdiff_ref.trainers.fourier_local.FourierLocalScore`) has the Jacobian

``J[i, j] = c(i - j) + sum_w 1[j = i + o_w] b_w(i)``,

a circulant with kernel ``c`` (``(batch, V)``, flat lattice index of the displacement ``i - j mod L``) plus a
band with one coefficient ``b_w(i)`` (``(batch, W, V)``) per window offset ``o_w`` in ``{-r..r}^d`` (distinct
mod ``L``).  :class:`CirculantBand` keeps the ``O(V)`` description and forms dense ``(batch, V, V)`` matrices
only where the step Jacobian needs them:

- ``dense()``: one gather of the kernel plus ``W V`` band entries;
- ``J2 @ J1`` of two such operators (Heun's ``J_f(y) J_f(x)``): in displacement coordinates
  ``(C_2 B_1)[i, j] = sum_w c_2(i - j + o_w) b_{1,w}(j - o_w)`` and ``(B_2 C_1)[i, j] = sum_w b_{2,w}(i) c_1(i - j + o_w)``
  are products with inner dimension ``W`` (``O(W V^2)``, not ``O(V^3)``), ``C_2 C_1`` is the circulant of the
  convolution ``c_2 * c_1`` and ``B_2 B_1`` a band of radius ``2r``;
- ``J @ A`` with a dense ``A`` (RK4's later stages): the circulant by FFT along ``A``'s rows, the band by
  ``W`` row gathers, ``O(V^2 log V)``.

Sums with other operators or dense tensors and products with scalars follow ordinary matrix algebra, so
code written for dense Jacobians (``I + h/2 (J1 + J2)``) runs unchanged.  Exact to rounding: only the order
of the floating-point sums differs from dense matrix products.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from .. import lattice

__all__ = ["BandGeometry", "CirculantBand", "band_geometry"]


@dataclass(frozen=True, eq=False)
class BandGeometry:
    """Index tables of the lattice ``(Z_L)^d`` for window radius ``radius`` (flat row-major site indices).

    ``offsets`` ``(W, d)`` the window offsets, distinct mod ``L``; ``diff[i, j]`` = flat ``(i - j) mod L``
    ``(V, V)`` and ``diff_t`` its transpose; ``window[w, i]`` = flat ``(i + o_w)``, ``back[w, i]`` = flat
    ``(i - o_w)`` ``(W, V)``; ``shift[delta, w]`` = flat ``(delta + o_w)`` ``(V, W)``.
    """

    L: int
    d: int
    radius: int
    offsets: torch.Tensor
    diff: torch.Tensor
    diff_t: torch.Tensor
    window: torch.Tensor
    back: torch.Tensor
    shift: torch.Tensor

    @property
    def V(self) -> int:
        return self.L**self.d

    def flat(self, coords: torch.Tensor) -> torch.Tensor:
        """Flat index of lattice coordinates ``(..., d)`` (reduced mod ``L``)."""
        weights = torch.tensor([self.L ** (self.d - 1 - mu) for mu in range(self.d)], device=coords.device)
        return ((coords % self.L) * weights).sum(-1)


_GEOMETRIES: dict = {}


def band_geometry(L: int, d: int, radius: int, device: torch.device | str | None = None) -> BandGeometry:
    """The (cached) :class:`BandGeometry` of ``(Z_L)^d`` with window radius ``radius`` on ``device``."""
    lattice.check_lattice(L, d)
    if not isinstance(radius, int) or isinstance(radius, bool) or radius < 0:
        raise ValueError(f"radius must be an int >= 0, got radius={radius!r}")
    device = torch.device("cpu") if device is None else torch.device(device)
    key = (L, d, radius, str(device))
    if key not in _GEOMETRIES:
        coords = torch.stack(torch.meshgrid(*[torch.arange(L, device=device)] * d, indexing="ij"), -1).reshape(-1, d)
        offsets = torch.tensor(sorted({tuple(o % L for o in off) for off in
                                       itertools.product(range(-radius, radius + 1), repeat=d)}), device=device)
        geo = BandGeometry(L, d, radius, offsets, *(torch.empty(0, dtype=torch.long),) * 5)
        diff = geo.flat(coords[:, None, :] - coords[None, :, :])
        window = geo.flat(coords[None, :, :] + offsets[:, None, :])
        back = geo.flat(coords[None, :, :] - offsets[:, None, :])
        shift = geo.flat(coords[:, None, :] + offsets[None, :, :])
        _GEOMETRIES[key] = BandGeometry(L, d, radius, offsets, diff, diff.t().contiguous(), window, back, shift)
    return _GEOMETRIES[key]


@dataclass(frozen=True, eq=False)
class CirculantBand:
    """``J[b, i, j] = kernel[b, flat(i - j)] + sum_w 1[j = i + o_w] band[b, w, i]`` (module docstring).

    ``kernel`` ``(batch, V)``, ``band`` ``(batch, W, V)`` in one dtype; ``geometry`` the index tables.
    """

    kernel: torch.Tensor
    band: torch.Tensor
    geometry: BandGeometry

    def __post_init__(self) -> None:
        B, V = self.kernel.shape
        if V != self.geometry.V or tuple(self.band.shape) != (B, self.geometry.offsets.shape[0], V):
            raise ValueError(f"kernel must be (batch, V={self.geometry.V}) and band (batch, W, V), got "
                             f"{tuple(self.kernel.shape)} and {tuple(self.band.shape)}")

    @property
    def shape(self) -> tuple[int, int, int]:
        B, V = self.kernel.shape
        return (B, V, V)

    @property
    def dtype(self) -> torch.dtype:
        return self.kernel.dtype

    def to(self, dtype: torch.dtype) -> "CirculantBand":
        return CirculantBand(self.kernel.to(dtype), self.band.to(dtype), self.geometry)

    def plus_identity(self, alpha: float) -> "CirculantBand":
        """``J + alpha I`` (the identity is the circulant with kernel ``delta_0``)."""
        kernel = self.kernel.clone()
        kernel[:, 0] += alpha
        return CirculantBand(kernel, self.band, self.geometry)

    # -- algebra ----------------------------------------------------------------------------------
    def __mul__(self, alpha: float) -> "CirculantBand":
        if not isinstance(alpha, (int, float)):
            return NotImplemented
        return CirculantBand(alpha * self.kernel, alpha * self.band, self.geometry)

    __rmul__ = __mul__

    def __add__(self, other):
        if isinstance(other, CirculantBand):
            if other.geometry is not self.geometry:
                raise ValueError("cannot add CirculantBand operators of different lattices or radii")
            return CirculantBand(self.kernel + other.kernel, self.band + other.band, self.geometry)
        if isinstance(other, torch.Tensor):
            dtype = torch.promote_types(other.dtype, self.dtype)
            return self.add_to(other.to(dtype).expand(self.shape).clone(memory_format=torch.contiguous_format))
        return NotImplemented

    __radd__ = __add__

    def __matmul__(self, other):
        if isinstance(other, CirculantBand):
            return self.compose(other)
        if isinstance(other, torch.Tensor):
            return self.apply(other)
        return NotImplemented

    # -- dense forms ------------------------------------------------------------------------------
    def _add_band(self, out: torch.Tensor, band: torch.Tensor, offsets_index: torch.Tensor) -> torch.Tensor:
        """``out[b, i, idx[w, i]] += band[b, w, i]`` (``out`` ``(B, V, V)`` contiguous, duplicates accumulate)."""
        B, V = out.shape[0], out.shape[1]
        rows = torch.arange(V, device=out.device)
        flat_index = (rows * V + offsets_index).reshape(-1)
        out.view(B, V * V).index_add_(1, flat_index, band.reshape(B, -1).to(out.dtype))
        return out

    def add_to(self, out: torch.Tensor) -> torch.Tensor:
        """``out += J`` in place for a dense contiguous ``out`` ``(batch, V, V)``; returns ``out``."""
        if tuple(out.shape) != self.shape or not out.is_contiguous():
            raise ValueError(f"out must be a contiguous tensor of shape {self.shape}, got {tuple(out.shape)}")
        out += self._circulant(self.kernel.to(out.dtype))
        return self._add_band(out, self.band, self.geometry.window)

    def dense(self) -> torch.Tensor:
        """The dense matrix ``(batch, V, V)``."""
        return self._add_band(self._circulant(self.kernel), self.band, self.geometry.window)

    def _circulant(self, kernel: torch.Tensor) -> torch.Tensor:
        """Dense circulant ``C[b, i, j] = kernel[b, flat(i - j)]`` (a gather along ``j`` of the broadcast kernel)."""
        B, V = kernel.shape
        return kernel.unsqueeze(1).expand(B, V, V).gather(2, self.geometry.diff.expand(B, V, V))

    def apply(self, A: torch.Tensor) -> torch.Tensor:
        """``J @ A`` for a dense ``A`` ``(batch, V, V)``: the circulant by FFT over ``A``'s row index, the band by
        row gathers (``(J A)[i] = sum_k c(i - k) A[k] + sum_w b_w(i) A[i + o_w]``)."""
        geo = self.geometry
        B, V = self.kernel.shape
        lat = (geo.L,) * geo.d
        dims = tuple(range(1, 1 + geo.d))
        c_hat = torch.fft.rfftn(self.kernel.reshape(B, *lat), dim=dims).unsqueeze(-1)  # real data: half spectra
        out = torch.fft.irfftn(torch.fft.rfftn(A.reshape(B, *lat, V), dim=dims) * c_hat, s=lat, dim=dims)
        out = out.reshape(B, V, V).contiguous()
        for w in range(geo.offsets.shape[0]):
            out.addcmul_(self.band[:, w, :, None], A.index_select(1, geo.window[w]))
        return out

    def compose(self, first: "CirculantBand", *, scale: float = 1.0, plus: "CirculantBand | None" = None,
                identity: float = 0.0) -> torch.Tensor:
        """Dense ``identity I + plus + scale J @ first`` ``(batch, V, V)`` in ``O(W V^2)`` (module docstring).

        With ``J = C_2 + B_2`` (self) and ``first = C_1 + B_1``: ``C_2 C_1 + plus``'s circulant and
        ``B_2 C_1`` are functions of ``(i, i - j)`` (one gather along ``j``), ``C_2 B_1`` of ``(j, i - j)``
        (a gather, then transposed), ``B_2 B_1`` and ``plus``'s band are scattered.
        """
        if not isinstance(first, CirculantBand) or first.geometry is not self.geometry:
            raise ValueError("compose needs a CirculantBand of the same lattice and radius")
        geo = self.geometry
        B, V = self.kernel.shape
        lat = (geo.L,) * geo.d
        dims = tuple(range(1, 1 + geo.d))
        c2, c1 = self.kernel, first.kernel.to(self.dtype)
        b2, b1 = self.band, first.band.to(self.dtype)
        # circulant of C_2 C_1: the periodic convolution c_2 * c_1
        conv = torch.fft.ifftn(torch.fft.fftn(c2.reshape(B, *lat), dim=dims) * torch.fft.fftn(c1.reshape(B, *lat), dim=dims),
                               dim=dims).real.reshape(B, V)
        circ = scale * conv
        if plus is not None:
            circ = circ + plus.kernel.to(self.dtype)
        circ[:, 0] += identity
        # (B_2 C_1)[i, delta] = sum_w b_2w(i) c_1(delta + o_w); the circulant rides along as a row broadcast
        row_form = torch.baddbmm(circ.unsqueeze(1), (scale * b2).transpose(1, 2), c1[:, geo.shift].transpose(1, 2))
        out = row_form.gather(2, geo.diff.expand(B, V, V))
        # (C_2 B_1)[i, j] = X[j, i - j], X[j, delta] = sum_w b_1w(j - o_w) c_2(delta + o_w)
        beta = scale * b1.gather(2, geo.back.expand(B, *geo.back.shape))
        col_form = torch.bmm(beta.transpose(1, 2), c2[:, geo.shift].transpose(1, 2))
        out += col_form.gather(2, geo.diff_t.expand(B, V, V)).transpose(1, 2)
        # B_2 B_1: [i, i + o_w + o_v] += b_2w(i) b_1v(i + o_w); plus the band of ``plus``
        W = geo.offsets.shape[0]
        b1_at = b1[:, :, geo.window]  # (B, V_band1 offsets, W, V): b_1v(i + o_w)
        prod = scale * b2.unsqueeze(1) * b1_at  # (B, v, w, V)
        two_step = geo.window[:, geo.window]  # [v, w, i] = flat(i + o_w + o_v)
        self._add_band(out, prod.reshape(B, W * W, V), two_step.reshape(W * W, V))
        if plus is not None:
            self._add_band(out, plus.band, geo.window)
        return out
