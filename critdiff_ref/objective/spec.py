"""How a user's model is conditioned and what it outputs (THEORY 1, 9).

A :class:`ModelSpec` is the declaration the validator holds the objective to: the grid of
conditioning values the model may be told (timestep indices, times ``t`` or noise levels ``sigma``),
the forward process at each of them (``x_t = alpha x_0 + sigma z``), how the model input is scaled
(``x_in = input_scale x_t``), and what the model outputs.  Every output kind is an affine map of the
denoiser ``D(x_t) = E[x_0 | x_t]``: ``D = A x_t + B out`` (:func:`denoiser_affine`), which is how a
fitted model is turned into the denoiser it implies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["OUTPUTS", "CONDITIONINGS", "ModelSpec", "denoiser_affine"]

# output kind -> what the model predicts (x_t = alpha x0 + sigma z)
OUTPUTS: dict[str, str] = {
    "eps": "the noise z",
    "x0": "the clean sample x0 (the denoiser)",
    "v": "v = alpha z - sigma x0",
    "score": "the score grad log p_t(x_t) = -(x_t - alpha x0) / sigma^2",
    "velocity": "the flow-matching velocity z - x0",
    "edm": "EDM's raw F with D = c_skip x_t + c_out F(c_in x_t, c_noise)",
}
CONDITIONINGS = ("timestep", "t", "sigma", "c_noise")


def _vector(name: str, value, n: int | None) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a 1-D sequence of reals, got {type(value).__name__}") from err
    value = value.detach().to(device="cpu", dtype=torch.float64).reshape(-1)
    if value.numel() == 0 or not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must be a non-empty 1-D sequence of finite reals, got {value.tolist()[:8]}")
    if n is not None and value.numel() != n:
        raise ValueError(f"{name} must have one entry per conditioning value ({n}), got {value.numel()}")
    return value


@dataclass(frozen=True)
class ModelSpec:
    """Conditioning grid, forward process and output kind of the model an objective trains.

    Parameters
    ----------
    conditioning : the ``n`` values the model may be called with (distinct), 1-D.
    alpha, sigma : ``x_t = alpha x0 + sigma z`` at each conditioning value (``sigma > 0``).
    output : one of :data:`OUTPUTS`.
    conditioning_name : ``"timestep"``, ``"t"``, ``"sigma"`` or ``"c_noise"`` (EDM's ``ln(sigma) / 4``); used in messages.
    input_scale : the model sees ``input_scale x_t`` (EDM ``c_in``; default 1).
    c_skip, c_out : EDM preconditioning (``output="edm"`` only).
    """

    conditioning: torch.Tensor
    alpha: torch.Tensor
    sigma: torch.Tensor
    output: str
    conditioning_name: str = "timestep"
    input_scale: torch.Tensor | None = None
    c_skip: torch.Tensor | None = None
    c_out: torch.Tensor | None = None
    _sorted: tuple = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {sorted(OUTPUTS)}, got output={self.output!r}")
        if self.conditioning_name not in CONDITIONINGS:
            raise ValueError(f"conditioning_name must be one of {CONDITIONINGS}, got {self.conditioning_name!r}")
        cond = _vector("conditioning", self.conditioning, None)
        n = cond.numel()
        if torch.unique(cond).numel() != n:
            raise ValueError("conditioning values must be distinct (one table entry per value)")
        object.__setattr__(self, "conditioning", cond)
        for name in ("alpha", "sigma"):
            object.__setattr__(self, name, _vector(name, getattr(self, name), n))
        if not bool((self.sigma > 0).all()) or not bool((self.alpha >= 0).all()):
            raise ValueError("need sigma > 0 and alpha >= 0 at every conditioning value")
        scale = torch.ones(n, dtype=torch.float64) if self.input_scale is None else self.input_scale
        object.__setattr__(self, "input_scale", _vector("input_scale", scale, n))
        if self.output == "edm":
            if self.c_skip is None or self.c_out is None:
                raise ValueError("output='edm' needs c_skip and c_out (EDM preconditioning) per conditioning value")
            object.__setattr__(self, "c_skip", _vector("c_skip", self.c_skip, n))
            object.__setattr__(self, "c_out", _vector("c_out", self.c_out, n))
            if bool((self.c_out == 0).any()):
                raise ValueError("c_out must be nonzero at every conditioning value")
        elif self.c_skip is not None or self.c_out is not None:
            raise ValueError(f"c_skip / c_out are for output='edm' only, got output={self.output!r}")
        order = torch.argsort(cond)
        object.__setattr__(self, "_sorted", (cond[order], order))

    @property
    def n_levels(self) -> int:
        """Number of conditioning values (noise levels)."""
        return self.conditioning.numel()

    def level_index(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest grid index of each conditioning value and whether it lies on the grid.

        On the grid means within ``1e-6`` of the local grid spacing (float32 round-off of the values).
        """
        values, order = self._sorted
        c = c.detach().to(device="cpu", dtype=torch.float64).reshape(-1)
        pos = torch.searchsorted(values, c).clamp(1, max(values.numel() - 1, 1))
        lo, hi = values[pos - 1], values[pos.clamp(max=values.numel() - 1)]
        pick_hi = (hi - c).abs() < (c - lo).abs()
        pos = torch.where(pick_hi, pos, pos - 1) if values.numel() > 1 else torch.zeros_like(pos)
        nearest = values[pos]
        spacing = (values[1:] - values[:-1]).min() if values.numel() > 1 else torch.tensor(1.0, dtype=torch.float64)
        on_grid = (nearest - c).abs() <= 1e-6 * spacing + 1e-7 * nearest.abs()
        return order[pos], on_grid


def denoiser_affine(spec: ModelSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` per conditioning value with ``D = A x_t + B out`` (THEORY 9), each shape ``(n_levels,)``.

    eps: ``(1, -sigma) / alpha``; x0: ``(0, 1)``; v: ``(alpha, -sigma) / (alpha^2 + sigma^2)``;
    score: ``(1, sigma^2) / alpha``; velocity (``z - x0``): ``(1, -sigma) / (alpha + sigma)``;
    edm: ``(c_skip, c_out)``.  eps and score need ``alpha > 0``.
    """
    al, si = spec.alpha, spec.sigma
    kind = spec.output
    if kind in ("eps", "score") and bool((al <= 0).any()):
        raise ValueError(f"output={kind!r} cannot give the denoiser where alpha = 0 (pure noise)")
    if kind == "eps":
        return 1.0 / al, -si / al
    if kind == "x0":
        return torch.zeros_like(al), torch.ones_like(al)
    if kind == "v":
        n2 = al * al + si * si
        return al / n2, -si / n2
    if kind == "score":
        return 1.0 / al, si * si / al
    if kind == "velocity":
        return 1.0 / (al + si), -si / (al + si)
    return spec.c_skip, spec.c_out
