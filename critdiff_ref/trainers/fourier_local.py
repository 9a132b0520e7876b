"""Fourier + local score network with an exact, cheap Jacobian (THEORY 1, 2, 5, 8).

``s_theta(x, t) = F^-1[K_t(k) F[x]] + s_loc(x, t)``:

- Gaussian part (THEORY 2): a translation-invariant linear map, ``K_t(k) = -1 / (a(t)^2 c_theta(t, k) + Xi(t))``
  with learned mode variances ``c_theta(t, k) = data_std^2 exp(MLP(emb(t), khat^2 / 4d))`` (the exact score of
  a Gaussian field has this form with ``c_theta = c0(k)``); it carries the long-range correlations.
- Local part (THEORY 5): ``s_loc = c_out(t) eps(c_in(t) x, t)``, ``c_in = 1/sqrt(a^2 data_std^2 + Xi)``,
  ``c_out = a / (a^2 data_std^2 + Xi)``, ``eps`` a time-conditioned periodic CNN of receptive radius ``r``
  (``radius`` stacked 3^d convolutions, then site-wise 1x1 layers; ``radius = 0``: a site-wise MLP of
  ``(phi_x, t)``); odd-symmetrised when ``odd`` (phi^4's Z2: ``s(-x) = -s(x)``).  No normalisation
  layers: the output at ``x`` depends on ``phi`` within lattice distance ``r`` (per axis) only.

Jacobian (:meth:`FourierLocalScore.score_jacobian`), exact to rounding:
``J = circ(k_t) + J_loc`` with the circulant's kernel ``k_t(r) = V^-1 sum_k K_t(k) e^{ikr}`` and
``J_loc[i, j] = 0`` unless ``|i - j|_mu <= r`` on every axis (periodic).  ``J_loc`` is read off ``m^d``
forward-mode products ``J_loc v_c`` with the colourings ``v_c = 1[x mod m = c]``, ``m`` the smallest divisor
of ``L`` with ``m >= min(2r + 1, L)``: two sites of one colour are ``>= m > 2r`` apart on some axis, so each
product holds exactly one nonzero of each row's ``(2r+1)^d`` window (no aliasing).  The products are the
chain rule through the layers written out (:meth:`FourierLocalScore._eps_tangents`: one primal pass shared
by all colours; checked against ``torch.func.jacrev``).  Cost ``m^d`` JVPs (``r = 1``: 16 for L = 4, 8, 16, 32
in d = 2) instead of ``V`` backward passes.

Trained by :func:`critdiff_ref.trainers.dsm.train_dsm` like :class:`~critdiff_ref.trainers.dsm.ScoreUNet`
(``model(x, t)`` with ``t`` a float or ``(batch,)``).  Shapes: ``x`` ``(batch, *lattice)``; ``J`` ``(batch, V, V)``.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn import functional as F

from .. import lattice
from ..processes import Process
from ..samplers.circulant_band import CirculantBand, band_geometry
from .dsm import GaussianFourierFeatures, _positive_float, _positive_int, batch_times, seeded_init

__all__ = ["FourierLocalScore", "colouring_modulus"]



def colouring_modulus(L: int, radius: int) -> int:
    """The smallest divisor ``m`` of ``L`` with ``m >= min(2 radius + 1, L)``: colours ``x mod m`` per axis
    never put two sites of one ``(2 radius + 1)``-window in one colour (module docstring)."""
    L, radius = _positive_int("L", L), _positive_int("radius", radius, 0)
    need = min(2 * radius + 1, L)
    return next(m for m in range(need, L + 1) if L % m == 0)


class FourierLocalScore(nn.Module):
    """``s_theta(x, t) = F^-1[K_t F[x]] + c_out eps(c_in x, t)`` (module docstring) on ``(Z_L)^d``, d = 1, 2, 3.

    ``radius``: receptive radius of the local CNN (0, 1, 2, ...); ``channels`` its width; ``depth`` its
    site-wise layers after the convolutions; ``kernel_hidden`` the width of the mode-variance MLP.
    """

    def __init__(
        self,
        L: int,
        d: int,
        process: Process,
        *,
        radius: int = 1,
        channels: int = 16,
        depth: int = 2,
        embed_dim: int = 16,
        kernel_hidden: int = 32,
        fourier_scale: float = 4.0,
        data_std: float = 1.0,
        odd: bool = True,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        lattice.check_lattice(L, d)
        if d not in (1, 2, 3):
            raise ValueError(f"d must be 1, 2 or 3 for the convolutional local part, got d={d}")
        if not isinstance(odd, bool):
            raise TypeError(f"odd must be a bool, got {odd!r}")
        self.L, self.d, self.process, self.odd = L, d, process, odd
        self.radius = _positive_int("radius", radius, 0)
        channels, depth = _positive_int("channels", channels), _positive_int("depth", depth)
        embed_dim, kernel_hidden = _positive_int("embed_dim", embed_dim, 2), _positive_int("kernel_hidden", kernel_hidden)
        self.data_std = _positive_float("data_std", data_std)
        with seeded_init(generator):
            self.time = GaussianFourierFeatures(embed_dim, fourier_scale, float(process.T), generator=generator)
            self.time_mlp = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
            self.kernel_mlp = nn.Sequential(nn.Linear(embed_dim + 1, kernel_hidden), nn.SiLU(),
                                            nn.Linear(kernel_hidden, kernel_hidden), nn.SiLU(), nn.Linear(kernel_hidden, 1))
            nn.init.zeros_(self.kernel_mlp[-1].weight)  # start at c_theta = data_std^2 (white)
            nn.init.zeros_(self.kernel_mlp[-1].bias)
            # radius periodic 3^d convolutions (radius 0: one site-wise layer), then depth - 1 hidden site-wise
            # layers and a site-wise output; channels last, a convolution = Linear over the 3^d rolled copies
            n_conv = max(self.radius, 1)
            taps = 3**d if self.radius else 1
            self.convs = nn.ModuleList([nn.Linear(taps * (1 if i == 0 else channels), channels) for i in range(n_conv)])
            self.pointwise = nn.ModuleList([nn.Linear(channels, channels) for _ in range(depth - 1)])
            self.emb = nn.ModuleList([nn.Linear(embed_dim, channels) for _ in range(n_conv + depth - 1)])
            self.out = nn.Linear(channels, 1)
        self._offsets = list(itertools.product((-1, 0, 1), repeat=d)) if self.radius else [(0,) * d]
        khat2 = lattice.khat2(L, d) / (4.0 * d)
        self.register_buffer("khat2", khat2)
        self.to(dtype)
        self._index_cache: dict = {}

    @property
    def dtype(self) -> torch.dtype:
        return self.out.weight.dtype

    # -- the pieces -------------------------------------------------------------------------------
    def _times(self, x: torch.Tensor, t) -> torch.Tensor:
        tt = batch_times(x, t)
        if bool((self.process.Xi(tt) <= 0).any()):
            raise ValueError("t must be > 0 (Xi(t) > 0) for a noise-conditional score")
        return tt

    def _check_x(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("x must be a floating torch.Tensor of shape (batch, *lattice)")
        if tuple(x.shape[1:]) != (self.L,) * self.d:
            raise ValueError(f"x must have shape (batch, {', '.join([str(self.L)] * self.d)}), got {tuple(x.shape)}")

    def score_kernel(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``K_t(k) = -1 / (a^2 c_theta(t, k) + Xi)`` for times ``t`` ``(batch,)``: ``(batch, *lattice)`` in ``dtype``."""
        emb = self.time_mlp(self.time(t.to(self.dtype)))  # (B, E)
        B, V = emb.shape[0], self.khat2.numel()
        feats = torch.cat([emb.unsqueeze(1).expand(B, V, emb.shape[1]),
                           self.khat2.reshape(1, V, 1).expand(B, V, 1).to(emb.dtype)], dim=-1)
        log_c = self.kernel_mlp(feats).squeeze(-1).to(dtype)  # (B, V)
        a, Xi = self.process.a(t).to(dtype).reshape(B, 1), self.process.Xi(t).to(dtype).reshape(B, 1)
        K = -1.0 / (a * a * self.data_std**2 * torch.exp(log_c) + Xi)
        return K.reshape(B, *self.khat2.shape)

    def _neighbours(self, h: torch.Tensor, first: int = 1) -> torch.Tensor:
        """``(..., *lattice, C) -> (..., *lattice, taps C)``: the periodic 3^d neighbourhood of every site
        (lattice axes ``first .. first + d - 1``)."""
        dims = tuple(range(first, first + self.d))
        return torch.cat([torch.roll(h, shifts=tuple(-o for o in off), dims=dims) for off in self._offsets], dim=-1)

    def _layers(self):
        """``(layer, embedding, takes_neighbours)`` in order: the convolutions, then the site-wise layers."""
        n = len(self.convs)
        return [(c, self.emb[i], True) for i, c in enumerate(self.convs)] + \
               [(p, self.emb[n + i], False) for i, p in enumerate(self.pointwise)]

    def _eps(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        shape = (emb.shape[0],) + (1,) * self.d + (-1,)
        h = h.unsqueeze(-1)
        for i, (layer, embed, conv) in enumerate(self._layers()):
            a = h if i == 0 else F.silu(h)
            h = layer(self._neighbours(a) if conv else a) + embed(emb).reshape(shape)
        return self.out(F.silu(h)).squeeze(-1)

    def _eps_tangents(self, h: torch.Tensor, emb: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Forward-mode products ``J_eps(h) v_c`` for tangents ``v`` ``(n_col, *lattice)`` shared by the batch
        ``h`` ``(N, *lattice)``: ``(n_col, N, *lattice)`` (the chain rule of :meth:`_eps`, layer by layer)."""
        shape = (emb.shape[0],) + (1,) * self.d + (-1,)
        h, dh = h.unsqueeze(-1), v.unsqueeze(-1).unsqueeze(1)  # (N, *lat, 1), (n_col, 1, *lat, 1)
        for i, (layer, embed, conv) in enumerate(self._layers()):
            if i == 0:
                a, da = h, dh
            else:
                sig = torch.sigmoid(h)
                a, da = h * sig, dh * (sig * (1.0 + h * (1.0 - sig)))  # silu and silu'
            h = layer(self._neighbours(a) if conv else a) + embed(emb).reshape(shape)
            dh = F.linear(self._neighbours(da, 2) if conv else da, layer.weight)
        sig = torch.sigmoid(h)
        return F.linear(dh * (sig * (1.0 + h * (1.0 - sig))), self.out.weight).squeeze(-1)

    def _eps_window_jacobian(self, h: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(eps(h), d eps_i / d h_{i + o_t})`` for the taps ``o_t`` of the single convolution (radius <= 1):
        ``((N, *lattice), (N, *lattice, taps))``; ``eps`` by the same operations as :meth:`_eps`.

        With one convolution followed by site-wise layers, ``eps_i`` depends on the window of ``i`` through one
        chain of site-wise maps: reverse mode per site, ``g = w_out silu'(z_n)``, ``g <- (g W_k) silu'(z_{k-1})``,
        then ``g W_0`` (the chain rule of :meth:`_eps`; the cost of one forward pass instead of ``m^d`` products).
        """
        shape = (emb.shape[0],) + (1,) * self.d + (-1,)
        layers = self._layers()
        z, pre = h.unsqueeze(-1), []
        for i, (layer, embed, conv) in enumerate(layers):
            a = z if i == 0 else F.silu(z)
            z = layer(self._neighbours(a) if conv else a) + embed(emb).reshape(shape)
            pre.append(z)

        def silu_prime(u: torch.Tensor) -> torch.Tensor:
            sig = torch.sigmoid(u)
            return sig * (1.0 + u * (1.0 - sig))

        g = silu_prime(pre[-1]) * self.out.weight[0]
        for i in range(len(layers) - 1, 0, -1):
            g = (g @ layers[i][0].weight) * silu_prime(pre[i - 1])
        return self.out(F.silu(pre[-1])).squeeze(-1), g @ layers[0][0].weight

    def local_score(self, x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        """``s_loc(x, t) = c_out eps(c_in x, t)`` (odd-symmetrised if ``odd``), times ``tt`` ``(batch,)``."""
        a, Xi = self.process.a(tt), self.process.Xi(tt)
        shape = (-1,) + (1,) * self.d
        var = a * a * self.data_std**2 + Xi
        c_in, c_out = (1.0 / torch.sqrt(var)).reshape(shape), (a / var).reshape(shape)
        xin = (c_in.to(x.dtype) * x).to(self.dtype)
        emb = self.time_mlp(self.time(tt.to(self.dtype)))
        if self.odd:
            both = self._eps(torch.cat([xin, -xin]), torch.cat([emb, emb]))
            eps = 0.5 * (both[: x.shape[0]] - both[x.shape[0]:])
        else:
            eps = self._eps(xin, emb)
        return c_out.to(x.dtype) * eps.to(x.dtype)

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        """``s_theta(x, t)``, shape/dtype of ``x``; ``t`` a float or ``(batch,)``."""
        self._check_x(x)
        tt = self._times(x, t)
        K = self.score_kernel(tt, x.dtype)
        gauss = lattice.ifft(lattice.fft(x, self.d) * K, self.d).real
        return gauss + self.local_score(x, tt)

    # -- the exact Jacobian --------------------------------------------------------------------------
    def _indices(self, m: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(diff (V, V), colours (m^d, *lattice), window_j (W, V), window_colour (W, V))`` for modulus ``m``."""
        key = (m, str(device))
        if key not in self._index_cache:
            L, d, r = self.L, self.d, self.radius
            coords = torch.stack(torch.meshgrid(*[torch.arange(L, device=device)] * d, indexing="ij"), -1).reshape(-1, d)
            weights = torch.tensor([L ** (d - 1 - mu) for mu in range(d)], device=device)
            diff = (((coords[:, None, :] - coords[None, :, :]) % L) * weights).sum(-1)  # flat index of (i - j) mod L
            colour_of = ((coords % m) * torch.tensor([m ** (d - 1 - mu) for mu in range(d)], device=device)).sum(-1)
            colours = (colour_of[None, :] == torch.arange(m**d, device=device)[:, None]).reshape(m**d, *(L,) * d)
            offsets = sorted({tuple(o % L for o in off) for off in itertools.product(range(-r, r + 1), repeat=d)})
            js, cs = [], []
            for off in offsets:
                j = (coords + torch.tensor(off, device=device)) % L
                js.append((j * weights).sum(-1))
                cs.append(colour_of[js[-1]])
            self._index_cache[key] = (diff, colours, torch.stack(js), torch.stack(cs))
        return self._index_cache[key]

    def _jacobian_parts(self, x: torch.Tensor, t, modulus: int | None):
        """``(s, circulant kernel (B, *lattice), Jv (n_col, B, V), tt, m)`` with ``Jv[c, b, i]`` =
        ``sum_{j of colour c} J_loc[b, i, j]`` (the coloured forward-mode products, module docstring)."""
        self._check_x(x)
        m = colouring_modulus(self.L, self.radius) if modulus is None else _positive_int("modulus", modulus)
        if self.L % m:
            raise ValueError(f"modulus must divide L = {self.L}, got modulus={m}")
        tt = self._times(x, t)
        B, V, n_col = x.shape[0], self.khat2.numel(), m**self.d
        _, colours, _, _ = self._indices(m, x.device)
        x = x.detach()
        with torch.no_grad():
            s = self(x, tt)
            kernel = torch.fft.ifftn(self.score_kernel(tt, x.dtype), dim=lattice.lattice_dims(self.d)).real
        # J_loc v_c = c_out c_in J_eps v_c (odd: 0.5 (J_eps(c_in x) + J_eps(-c_in x)) v_c)
        a, Xi = self.process.a(tt), self.process.Xi(tt)
        var = a * a * self.data_std**2 + Xi
        scale = (a / var / torch.sqrt(var)).to(x.dtype).reshape(1, B, 1)
        with torch.no_grad():
            xin = ((1.0 / torch.sqrt(var)).to(x.dtype).reshape((-1,) + (1,) * self.d) * x).to(self.dtype)
            emb = self.time_mlp(self.time(tt.to(self.dtype)))
            v = colours.to(self.dtype)
            if self.odd:
                both = self._eps_tangents(torch.cat([xin, -xin]), torch.cat([emb, emb]), v)
                Jv = 0.5 * (both[:, :B] + both[:, B:])
            else:
                Jv = self._eps_tangents(xin, emb, v)
        Jv = scale * Jv.to(x.dtype).reshape(n_col, B, V)  # Jv[c, b, i] = sum_{j of colour c} J_loc[b, i, j]
        return s.detach(), kernel, Jv, m

    def score_jacobian(self, x: torch.Tensor, t, *, modulus: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s_theta(x, t), J)`` with ``J[b, i, j] = d s_i / d x_j`` ``(batch, V, V)``, exact to rounding.

        ``J = circ(k_t) + J_loc`` (module docstring): the circulant from ``K_t``'s inverse FFT, ``J_loc``
        from ``m^d`` coloured forward-mode products (the chain rule through the layers, :meth:`_eps_tangents`).  ``modulus``: the colouring ``m`` (default
        :func:`colouring_modulus`; a divisor of ``L``; one below ``min(2r+1, L)`` aliases, i.e. is wrong).
        """
        s, kernel, Jv, m = self._jacobian_parts(x, t, modulus)
        B, V = x.shape[0], self.khat2.numel()
        diff, _, window_j, window_c = self._indices(m, x.device)
        J = kernel.reshape(B, V)[:, diff]  # circulant: J[i, j] = k_t(i - j)
        rows = torch.arange(V, device=x.device)
        for j, c in zip(window_j, window_c):  # one window offset at a time: J_loc[b, i, i + off]
            J[:, rows, j] += Jv[c, :, rows].transpose(0, 1)
        return s, J

    def score_jacobian_operator(self, x: torch.Tensor, t, *, modulus: int | None = None) -> tuple[torch.Tensor, CirculantBand]:
        """``(s_theta(x, t), J)`` with the same Jacobian as :meth:`score_jacobian` kept as a
        :class:`~critdiff_ref.samplers.circulant_band.CirculantBand` (kernel ``k_t``, band ``J_loc[b, i, i + o_w]``):
        ``O(V)`` numbers instead of ``V^2``, and products of two step Jacobians in ``O(W V^2)``.  For
        ``radius <= 1`` (one convolution) and no ``modulus`` the band comes from the per-site reverse mode
        (:meth:`_eps_window_jacobian`), else from the coloured forward-mode products."""
        B, V = x.shape[0], self.khat2.numel()
        if self.radius > 1 or modulus is not None:
            s, kernel, Jv, m = self._jacobian_parts(x, t, modulus)
            geometry = band_geometry(self.L, self.d, self.radius, x.device)
            colour_of = self._indices(m, x.device)[1].reshape(-1, V).to(torch.long).argmax(0)  # colour of each site
            window_c = colour_of[geometry.window]  # (W, V): colour of site i + o_w
            band = Jv.gather(0, window_c.unsqueeze(1).expand(-1, B, -1)).transpose(0, 1)  # (B, W, V): J_loc[b, i, i + o_w]
            return s, CirculantBand(kernel.reshape(B, V), band.contiguous(), geometry)
        self._check_x(x)
        tt = self._times(x, t)
        x = x.detach()
        geometry = band_geometry(self.L, self.d, self.radius, x.device)
        with torch.no_grad():  # s by the operations of forward(), sharing the local pass with the Jacobian
            K = self.score_kernel(tt, x.dtype)
            gauss = lattice.ifft(lattice.fft(x, self.d) * K, self.d).real
            kernel = torch.fft.ifftn(K, dim=lattice.lattice_dims(self.d)).real
            a, Xi = self.process.a(tt), self.process.Xi(tt)
            var = a * a * self.data_std**2 + Xi
            shape = (-1,) + (1,) * self.d
            c_in, c_out = (1.0 / torch.sqrt(var)).reshape(shape), (a / var).reshape(shape)
            xin = (c_in.to(x.dtype) * x).to(self.dtype)
            emb = self.time_mlp(self.time(tt.to(self.dtype)))
            if self.odd:  # J of 0.5 (eps(u) - eps(-u)) is 0.5 (J_eps(u) + J_eps(-u))
                both, both_taps = self._eps_window_jacobian(torch.cat([xin, -xin]), torch.cat([emb, emb]))
                eps, taps = 0.5 * (both[:B] - both[B:]), 0.5 * (both_taps[:B] + both_taps[B:])
            else:
                eps, taps = self._eps_window_jacobian(xin, emb)
            s = gauss + c_out.to(x.dtype) * eps.to(x.dtype)
        scale = (a / var / torch.sqrt(var)).to(x.dtype).reshape(B, 1, 1)  # c_out c_in
        taps = scale * taps.to(x.dtype).reshape(B, V, -1).transpose(1, 2)  # (B, taps, V)
        band = x.new_zeros((B, geometry.offsets.shape[0], V))
        band.index_add_(1, self._tap_slots(geometry), taps)  # taps equal mod L (L <= 2r) share a slot
        return s, CirculantBand(kernel.reshape(B, V), band, geometry)

    def _tap_slots(self, geometry) -> torch.Tensor:
        """For each convolution tap offset, its row in ``geometry.offsets`` (offsets reduced mod L)."""
        rows = {tuple(int(o) for o in off): w for w, off in enumerate(geometry.offsets.tolist())}
        return torch.tensor([rows[tuple(o % self.L for o in off)] for off in self._offsets], device=geometry.offsets.device)
