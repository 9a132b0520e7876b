"""The record every check returns (:class:`CheckResult`), with the structured fields that tables read
(THEORY 2): which target, which check, at which step count.  ``name`` is only for display."""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Any

__all__ = ["CheckResult", "display_name", "check_label", "check_result"]


def check_label(kind: str, steps: int | None = None) -> str:
    """The check part of a name: ``covariance@100``, ``order``."""
    return kind if steps is None else f"{kind}@{steps}"


def display_name(target: str, kind: str, steps: int | None = None) -> str:
    """``<target>/<kind>[@<steps>]`` (``<kind>`` alone without a target): ``gauss[d=2,L=8,r=0]/covariance@100``."""
    label = check_label(kind, steps)
    return f"{target}/{label}" if target else label


@dataclass(frozen=True)
class CheckResult:
    """One check: ``passed`` is True/False, or None for an informational row (not counted).

    Structured fields (read these, never parse ``name``): ``target`` (its label, e.g. ``gauss[d=2,L=8,r=0]``;
    ``""`` for a check of the sampler itself), ``kind`` (``covariance``, ``linearity``, ``schedule_floor``,
    ``order``, ``weak_order``, ``consistency``, ``kappa_4``, ``moment_2``, ``binder``, ``run``, ...), ``steps``
    (the step count, None when the check spans several) and ``field`` (the Gaussian field, None otherwise).
    """

    name: str
    measured: float
    reference: float
    tolerance: float
    tolerance_source: str
    passed: bool | None
    detail: str = ""
    data: dict = dc_field(default_factory=dict, compare=False, repr=False)
    target: str = ""
    kind: str = ""
    steps: int | None = None
    field: Any = dc_field(default=None, compare=False, repr=False)

    @property
    def check(self) -> str:
        """The check without its target: ``covariance@100``, ``order`` (what tables print per sampler)."""
        return check_label(self.kind, self.steps) if self.kind else self.name

    def to_dict(self) -> dict:
        """The record as plain values; non-finite numbers stay floats (the JSON writer,
        :func:`critdiff_ref._io.strict_json`, turns them into ``null`` and lists them under ``"nulls"``)."""
        return {
            "name": self.name,
            "target": self.target,
            "kind": self.kind,
            "steps": self.steps,
            "measured": float(self.measured),
            "reference": float(self.reference),
            "tolerance": float(self.tolerance),
            "tolerance_source": self.tolerance_source,
            "passed": self.passed,
            "detail": self.detail,
            "data": self.data,
        }


def check_result(target: str, kind: str, measured: float, reference: float, tolerance: float, tolerance_source: str,
                 passed: bool | None, detail: str = "", data: dict | None = None, *, steps: int | None = None,
                 field: Any = None) -> CheckResult:
    """A :class:`CheckResult` whose display name is built from its structured fields (:func:`display_name`)."""
    return CheckResult(display_name(target, kind, steps), measured, reference, tolerance, tolerance_source, passed,
                       detail, {} if data is None else data, target, kind, steps, field)
