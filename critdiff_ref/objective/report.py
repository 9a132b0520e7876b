"""The validation report of a training objective: per noise level, per mode, pass/fail (THEORY 9).

Structured rows (:class:`LevelRow`, :class:`ModeRow`) carry every number; :meth:`ObjectiveReport.table`
renders them and :meth:`ObjectiveReport.to_json` writes them as strict JSON.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .._io import strict_json

__all__ = ["LevelRow", "ModeRow", "ObjectiveReport", "NULL_REASONS"]

# why a number is missing (JSON null), by field name
NULL_REASONS = {
    "documented_weight": "no documented weighting given",
    "weight": "level not measured (fewer samples than MIN_SAMPLES)",
    "weight_stderr": "level not measured (fewer samples than MIN_SAMPLES)",
    "p_value": "not measured (fewer samples than MIN_SAMPLES)",
    "worst_implied": "level not measured", "worst_exact": "level not measured", "worst_stderr": "level not measured",
    "variance": "no mode variance for this target",
}


@dataclass(frozen=True)
class LevelRow:
    """One conditioning value: its noise level, samples, chi-square over modes and the worst mode."""

    index: int
    conditioning: float
    alpha: float
    sigma: float
    samples: int
    measured: bool
    chi2: float
    dof: int
    p_value: float
    off: bool
    worst_mode: str
    worst_implied: float
    worst_exact: float
    worst_stderr: float
    weight: float = math.nan
    weight_stderr: float = math.nan
    documented_weight: float = math.nan


@dataclass(frozen=True)
class ModeRow:
    """One Fourier mode (pair ``{k, -k}``) or feature: chi-square over levels and the worst level."""

    mode: str
    variance: float
    chi2: float
    dof: int
    p_value: float
    off: bool
    worst_level: int


@dataclass(frozen=True)
class ObjectiveReport:
    """Result of :func:`~critdiff_ref.objective.validate_objective`; ``passed`` is the verdict."""

    name: str
    target: str
    output: str
    conditioning_name: str
    passed: bool
    failures: tuple[str, ...]
    alpha: float
    n_samples: int
    n_batches: int
    levels: tuple[LevelRow, ...]
    modes: tuple[ModeRow, ...]
    global_chi2: float
    global_dof: int
    global_p: float
    quadratic_defect: float
    off_grid: int
    off_grid_values: tuple[float, ...]
    levels_measured: int
    weighting: dict = field(default_factory=dict)
    density: dict = field(default_factory=dict)

    @property
    def off_levels(self) -> tuple[LevelRow, ...]:
        """Levels whose implied denoiser differs from the exact one."""
        return tuple(r for r in self.levels if r.off)

    @property
    def off_modes(self) -> tuple[ModeRow, ...]:
        """Modes whose implied denoiser differs from the exact one."""
        return tuple(r for r in self.modes if r.off)

    def message(self) -> str:
        """One paragraph: the verdict and, on failure, what is off where."""
        head = f"objective {self.name!r} on {self.target}: {'PASS' if self.passed else 'FAIL'}"
        return head if self.passed else head + "\n  " + "\n  ".join(self.failures)

    def table(self, max_rows: int = 12) -> str:
        """Text table: the verdict, the worst levels and modes (by chi-square / dof)."""
        lines = [self.message(),
                 f"  {self.n_samples} samples in {self.n_batches} batches; {self.levels_measured} of {len(self.levels)} "
                 f"{self.conditioning_name} values measured; global chi2 {self.global_chi2:.1f} / {self.global_dof} dof "
                 f"(p = {self.global_p:.3g}); quadratic defect {self.quadratic_defect:.1e}"]
        rows = sorted((r for r in self.levels if r.measured), key=lambda r: -r.chi2 / max(r.dof, 1))[:max_rows]
        lines.append(f"  {'level':>6} {self.conditioning_name:>10} {'alpha':>8} {'sigma':>8} {'n':>6} "
                     f"{'chi2/dof':>9} {'p':>9}  worst mode: implied vs exact (se)")
        for r in rows:
            lines.append(f"  {r.index:>6} {r.conditioning:>10.4g} {r.alpha:>8.4f} {r.sigma:>8.4f} {r.samples:>6} "
                         f"{r.chi2 / max(r.dof, 1):>9.3g} {r.p_value:>9.2g}  {r.worst_mode} {r.worst_implied:.4g} vs "
                         f"{r.worst_exact:.4g} ({r.worst_stderr:.2g}){'  OFF' if r.off else ''}")
        modes = sorted(self.modes, key=lambda r: -r.chi2 / max(r.dof, 1))[:max_rows]
        lines.append(f"  {'mode':>10} {'c0':>9} {'chi2/dof':>9} {'p':>9}")
        for r in modes:
            lines.append(f"  {r.mode:>10} {r.variance:>9.4g} {r.chi2 / max(r.dof, 1):>9.3g} {r.p_value:>9.2g}"
                         f"{'  OFF' if r.off else ''}")
        if self.weighting:
            lines.append(f"  weighting: {self.weighting.get('summary', '')}")
        if self.density:
            lines.append(f"  density: {self.density.get('summary', '')}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Strict JSON (non-finite numbers become null)."""
        return strict_json(self.to_dict(), reasons=NULL_REASONS)
