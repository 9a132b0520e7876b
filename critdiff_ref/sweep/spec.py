"""The sweep specification: a TOML (or JSON) file naming job kinds with grids over their parameters.

::

    name = "fss-binder"
    [resources]                 # defaults for every job: CPUs, GPUs (fractions share a GPU), retries
    num_cpus = 1
    max_retries = 2             # reruns after a lost worker (killed, out of memory, node gone)
    retries = 0                 # reruns after the job raised
    timeout = 3600              # seconds a job may run (all its attempts), then it is killed (optional)

    [[jobs]]
    kind = "phi4"               # phi4 | validate | report | call (critdiff_ref.sweep.jobs)
    params = { d = 2, lam = 0.022, n_chains = 16, n_traj = 400 }
    grid = { L = [8, 16, 32], kappa = { start = 0.25, stop = 0.29, num = 5 }, seed = [0] }
    cases = [ { eps = 0.1 }, { eps = 0.05, n_steps = 20 } ]    # optional: a list, crossed with the grid
    resources = { num_cpus = 1, num_gpus = 0 }                  # optional: overrides [resources]

Each ``[[jobs]]`` entry expands to ``cases x product(grid)`` jobs with ``{**params, **case, **point}``;
every job is checked (:func:`critdiff_ref.sweep.jobs.check_params`) before anything runs, and gets an id:
the first 16 hex digits of the SHA-256 of its kind, its full parameters (defaults filled in), the
package version, a digest of the package source (every ``critdiff_ref/**/*.py``) and of the file defining
the user's function or sampler (``call``, ``validate``), so a result file names exactly the computation
that produced it and a code change without a version bump reruns the job.

``KEY=VALUE`` overrides (:func:`apply_overrides`, the command line's ``critdiff sweep SPEC kappa=0.27``)
replace a parameter or grid axis in every ``[[jobs]]`` entry that has it before the jobs are expanded.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import pathlib
import tomllib
from dataclasses import dataclass, field
from typing import Any

from . import jobs as _jobs

__all__ = ["Resources", "Job", "Spec", "load_spec", "job_id", "apply_overrides"]

TOP_KEYS = ("name", "description", "resources", "jobs")
JOB_KEYS = ("kind", "name", "params", "grid", "cases", "resources")
RESOURCE_KEYS = ("num_cpus", "num_gpus", "max_retries", "retries", "timeout")


@dataclass(frozen=True)
class Resources:
    """What one job asks of the engine: CPUs (also its torch threads), GPUs (fractions share one), reruns
    after a lost worker (``max_retries``) and after an exception (``retries``), and its ``timeout`` in seconds
    (None: none)."""

    num_cpus: float = 1
    num_gpus: float = 0
    max_retries: int = 2
    retries: int = 0
    timeout: float | None = None

    def __post_init__(self) -> None:
        for name in ("num_cpus", "num_gpus"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"resources.{name} must be a finite number >= 0, got {name}={v!r}")
        if self.num_cpus <= 0:
            raise ValueError(f"resources.num_cpus must be > 0, got num_cpus={self.num_cpus!r}")
        for name in ("max_retries", "retries"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"resources.{name} must be an int >= 0, got {name}={v!r}")
        t = self.timeout
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0):
            raise ValueError(f"resources.timeout must be a number of seconds > 0, got timeout={t!r}")


@dataclass(frozen=True)
class Job:
    """One computation: ``kind``, its full parameters, its id, what it asks of the engine, and the
    parameters that vary across its ``[[jobs]]`` entry (the merged table's columns)."""

    kind: str
    params: dict
    id: str
    resources: Resources = field(default_factory=Resources)
    varying: dict = field(default_factory=dict)
    group: str = ""

    @property
    def filename(self) -> str:
        return f"{self.kind}-{self.id}.json"


@dataclass(frozen=True)
class Spec:
    """A loaded and checked sweep: its name and the expanded jobs (duplicates removed, order kept)."""

    name: str
    jobs: tuple[Job, ...]
    source: dict
    description: str = ""


def package_version() -> str:
    from .. import __version__

    return __version__


@functools.cache
def _source_digest(root: str | None = None) -> str:
    """SHA-256 over every ``*.py`` below ``root`` (default: the ``critdiff_ref`` package), each as its relative
    path and bytes in path order; computed once per process and root."""
    base = pathlib.Path(root) if root is not None else pathlib.Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for rel, path in sorted((p.relative_to(base).as_posix(), p) for p in base.rglob("*.py")):
        data = path.read_bytes()
        for chunk in (rel.encode(), data):
            digest.update(len(chunk).to_bytes(8, "little") + chunk)
    return digest.hexdigest()


def job_id(kind: str, params: dict, version: str | None = None) -> str:
    """First 16 hex digits of SHA-256 over the canonical JSON of ``(kind, params, version, code)``, ``code`` being
    :func:`_source_digest` (a code change without a version bump must not reuse a stored result), plus
    ``user_code``, the digest of the file defining a ``call`` function or ``validate`` sampler outside this package."""
    payload = {"kind": kind, "params": _jobs.jsonable(params), "version": package_version() if version is None else version,
               "code": _source_digest()}
    user = _jobs.code_digest(kind, params)
    if user is not None:
        payload["user_code"] = user
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _grid_values(where: str, value: Any) -> list:
    """A grid axis: a non-empty list, or ``{start, stop, num}`` (inclusive linspace, rounded to 12 digits)."""
    if isinstance(value, list):
        if not value:
            raise ValueError(f"{where} must be a non-empty list or {{start, stop, num}}, got []")
        return value
    if isinstance(value, dict):
        if set(value) != {"start", "stop", "num"}:
            raise ValueError(f"{where} as a table must have exactly the keys start, stop, num, got {sorted(value)}")
        num = value["num"]
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ValueError(f"{where}.num must be an int >= 1, got {num!r}")
        a, b = value["start"], value["stop"]
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in (a, b)):
            raise ValueError(f"{where}.start and .stop must be numbers, got {a!r}, {b!r}")
        return [round(a + (b - a) * i / (num - 1), 12) if num > 1 else a for i in range(num)]
    raise ValueError(f"{where} must be a non-empty list or {{start, stop, num}}, got {value!r}")


def _resources(where: str, table: Any, base: dict) -> dict:
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table with keys in {RESOURCE_KEYS}, got {table!r}")
    unknown = sorted(set(table) - set(RESOURCE_KEYS))
    if unknown:
        raise ValueError(f"{where} has unknown key {unknown[0]!r}; allowed: {', '.join(RESOURCE_KEYS)}")
    return {**base, **table}


def _expand(i: int, entry: Any, base_resources: dict) -> list[Job]:
    where = f"jobs[{i}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be a table, got {entry!r}")
    unknown = sorted(set(entry) - set(JOB_KEYS))
    if unknown:
        raise ValueError(f"{where} has unknown key {unknown[0]!r}; allowed: {', '.join(JOB_KEYS)}")
    kind = entry.get("kind")
    if kind not in _jobs.KINDS:
        raise ValueError(f"{where}.kind must be one of {_jobs.KINDS}, got kind={kind!r}")
    params, grid, cases = entry.get("params", {}), entry.get("grid", {}), entry.get("cases", [{}])
    for key, value, typ in (("params", params, dict), ("grid", grid, dict), ("cases", cases, list)):
        if not isinstance(value, typ):
            raise ValueError(f"{where}.{key} must be a {'table' if typ is dict else 'list of tables'}, got {value!r}")
    if not cases or any(not isinstance(c, dict) for c in cases):
        raise ValueError(f"{where}.cases must be a non-empty list of tables, got {cases!r}")
    axes = {k: _grid_values(f"{where}.grid.{k}", v) for k, v in grid.items()}
    clash = sorted(set(axes) & (set(params) | {k for c in cases for k in c}))
    if clash:
        raise ValueError(f"{where}: parameter {clash[0]!r} is both in grid and in params/cases; give it once")
    res_table = _resources(f"{where}.resources", entry.get("resources", {}), base_resources)
    group = str(entry.get("name", f"{kind}#{i}"))
    out = []
    for j, case in enumerate(cases):
        for point in itertools.product(*axes.values()):
            varying = {**case, **dict(zip(axes, point))}
            given = {**params, **varying}
            try:
                full = _jobs.check_params(kind, given)
            except (TypeError, ValueError) as err:
                at = ", ".join(f"{k}={v!r}" for k, v in varying.items())
                raise ValueError(f"{where} ({kind}{', case ' + str(j) if len(cases) > 1 else ''}"
                                 f"{', ' + at if at else ''}): {err}") from None
            res = dict(res_table)
            if "num_gpus" not in res and str(full.get("device", "cpu")).startswith("cuda"):
                res["num_gpus"] = 1
            try:
                resources = Resources(**res)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
            out.append(Job(kind, full, job_id(kind, full), resources, varying, group))
    return out


def _read(path: str) -> Any:
    if not path.endswith((".toml", ".json")):
        raise ValueError(f"spec must be a .toml or .json file, got {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"spec {path}: is a folder, not a spec file")
    if not os.path.exists(path):
        raise ValueError(f"spec {path}: no such file")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh) if path.endswith(".toml") else json.loads(fh.read())
    except OSError as err:
        raise ValueError(f"spec {path}: cannot be read ({err.strerror})") from None
    except ValueError as err:  # TOMLDecodeError, JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"spec {path}: not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {err}") from None


def _override_value(text: str) -> Any:
    """A TOML value (``8``, ``0.27``, ``[8, 16]``, ``true``, ``"cpu"``), else the text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``data`` with each ``KEY=VALUE`` applied: ``resources.NAME=V`` sets a resource of every job; otherwise
    every ``[[jobs]]`` entry with a grid axis, parameter or case value ``KEY`` gets ``VALUE`` there (a grid
    axis takes a list or one value: a sub-grid; a list for a single-valued parameter makes it an axis), and so does every entry whose kind has a parameter ``KEY``. ``ValueError`` for a malformed item or a key no entry has."""
    data = json.loads(json.dumps(data))  # a deep copy of plain TOML/JSON data
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} must be KEY=VALUE (e.g. kappa=0.27, L=[8,16], resources.timeout=600)")
        value = _override_value(text.strip())
        if key.startswith("resources."):
            name = key.partition(".")[2]
            if name not in RESOURCE_KEYS:
                raise ValueError(f"override {item!r}: resources has keys {', '.join(RESOURCE_KEYS)}, got {name!r}")
            data.setdefault("resources", {})[name] = value
            for entry in data.get("jobs") or []:
                if isinstance(entry, dict) and isinstance(entry.get("resources"), dict):
                    entry["resources"][name] = value
            continue
        used = False
        for entry in data.get("jobs") or []:
            if not isinstance(entry, dict):
                continue
            grid, params, cases = entry.get("grid") or {}, entry.get("params") or {}, entry.get("cases") or []
            if key in grid:
                grid[key] = value if isinstance(value, (list, dict)) else [value]
            elif key in params and isinstance(value, list) and not isinstance(params[key], list):
                del params[key]  # a list for a single value: a grid axis
                entry["grid"] = {**grid, key: value}
            elif key in params:
                params[key] = value
            elif any(isinstance(c, dict) and key in c for c in cases):
                for c in cases:
                    c[key] = value
            elif entry.get("kind") in _jobs.KINDS and key in (_jobs.parameter_names(entry["kind"]) or ()):
                entry["params"] = {**params, key: value}
            else:
                continue
            used = True
        if not used:
            raise ValueError(f"override {item!r}: no [[jobs]] entry has a parameter or grid axis {key!r}")
    return data


def load_spec(spec: str | os.PathLike | dict, overrides: list[str] | None = None) -> Spec:
    """Read a ``.toml`` / ``.json`` sweep file (or take the dict), apply ``overrides`` (``KEY=VALUE``,
    :func:`apply_overrides`), expand and check every job.

    ``ValueError`` names the bad field (``jobs[1].grid.L``, ``jobs[0].kind``, ...) and its allowed values;
    nothing runs before the whole spec is checked.
    """
    data = spec if isinstance(spec, dict) else _read(os.fspath(spec))
    if overrides and isinstance(data, dict):
        data = apply_overrides(data, list(overrides))
    if not isinstance(data, dict):
        raise ValueError(f"spec must be a table, got {type(data).__name__}")
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise ValueError(f"spec has unknown key {unknown[0]!r}; allowed: {', '.join(TOP_KEYS)}")
    entries = data.get("jobs")
    if not isinstance(entries, list) or not entries:
        raise ValueError("spec.jobs must be a non-empty list of [[jobs]] tables")
    base = _resources("resources", data.get("resources", {}), {})
    jobs: dict[str, Job] = {}
    for i, entry in enumerate(entries):
        for job in _expand(i, entry, base):
            jobs.setdefault(job.id, job)
    return Spec(str(data.get("name", "sweep")), tuple(jobs.values()), data, str(data.get("description", "")))
