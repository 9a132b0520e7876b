"""Tolerance helper for tests and invariants: tolerances in units of machine epsilon."""

from __future__ import annotations

import torch

__all__ = ["assert_close", "eps"]


def eps(dtype: torch.dtype = torch.float64) -> float:
    """Machine epsilon of ``dtype``."""
    return torch.finfo(dtype).eps


def assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    ulps: float = 64.0,
    msg: str = "",
) -> None:
    """Assert ``|actual - expected| <= atol + rtol |expected|`` elementwise.

    Defaults are ``ulps`` machine epsilons of the (common) dtype, for both rtol and an atol scaled
    by ``max |expected|``: right for results of a few dozen floating-point operations (FFTs,
    softmax sums).  Callers overriding a default say in a comment where their tolerance comes from.
    """
    actual = torch.as_tensor(actual)
    expected = torch.as_tensor(expected, dtype=actual.dtype, device=actual.device)
    e = eps(actual.dtype if actual.is_floating_point() else torch.float64)
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    rtol = ulps * e if rtol is None else rtol
    atol = ulps * e * scale if atol is None else atol
    if actual.shape != expected.shape:
        raise AssertionError(f"shape mismatch: {tuple(actual.shape)} vs {tuple(expected.shape)} {msg}")
    if not bool(torch.isfinite(actual).all()):
        raise AssertionError(f"non-finite values in actual {msg}")
    err = (actual - expected).abs()
    bound = atol + rtol * expected.abs()
    if bool((err > bound).any()):
        i = int(torch.argmax(err - bound))
        raise AssertionError(
            f"not close {msg}: max excess at flat index {i}: actual={actual.flatten()[i].item():.17g} "
            f"expected={expected.flatten()[i].item():.17g} |diff|={err.flatten()[i].item():.3g} "
            f"bound={bound.flatten()[i].item():.3g} (rtol={rtol:.3g}, atol={atol:.3g})"
        )
