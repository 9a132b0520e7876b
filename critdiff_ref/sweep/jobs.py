"""The job kinds of a sweep: each a pure function of its JSON parameters (and their seed) returning a JSON dict.

- ``phi4`` (THEORY 8): :func:`critdiff_ref.phi4.run_phi4_experiment` (HMC observables with Gamma-method
  errors, optionally ``train_dm`` for the diffusion model and DM-MCMC);
- ``validate`` (THEORY 2, 6, 8): :func:`critdiff_ref.validate.validate` of one sampler ``"pkg.module:attr"``
  through one adapter with one configuration (``prediction_type``, ``sampler_kwargs``, ``order``, ...);
- ``phi4-exact-dm`` (THEORY 8, "Exactness"): :func:`critdiff_ref.phi4.exact_dm.run_exact_dm`, exact DM-MCMC
  chains of one trained network against HMC; jobs that differ only in ``proposal_seed`` (and ``dm_chains``)
  are independent chains of one study, pooled at the end (:mod:`.pooled`);
- ``report`` (THEORY 3-8): one section of :func:`critdiff_ref.report.write_report`;
- ``call``: any importable function ``function = "pkg.module:attr"`` called with the other parameters.

User code (a ``call`` function, a ``validate`` sampler) is imported from the current folder or the import
path when the spec is checked (:mod:`.user_code`), and the file defining it is part of the job id.

:func:`check_params` fills the defaults and refuses bad values before anything runs (``ValueError`` naming
the parameter and its allowed values); :func:`execute` runs one job in the calling process with
``torch`` limited to the CPUs the job requested, and never raises for an error of the job itself: it
returns ``{"status": "error", "error": ..., "traceback": ...}`` instead.
"""

from __future__ import annotations

import base64
import inspect
import math
import os
import sys
import tempfile
import time
import traceback
import warnings
from typing import Any, Callable

import numpy as np
import torch

from .. import _args
from .capture import JobTimeout, alarm, captured_output
from .._user_code import import_object
from .pooled import EXACT_DM_KIND as _EXACT_DM
from .user_code import object_digest

__all__ = ["KINDS", "parameter_names", "check_params", "code_digest", "check_device", "execute", "summarize", "jsonable"]

KINDS = ("phi4", "phi4-exact-dm", "validate", "report", "call")

_PHI4_SKIP = ("out", "progress", "keep_arrays")
_PHI4_REQUIRED = ("L", "kappa", "lam")
_VALIDATE_DEFAULTS: dict[str, Any] = {
    "adapter": "score", "fields": None, "steps": [10, 20, 50, 100], "targets": ["gaussian", "mixture", "phi4"],
    "rtol": 0.1, "order": None, "deterministic": None, "start": "noise", "sigma_min": 0.002, "sigma_max": 80.0,
    "rho": 7.0, "prediction_type": None, "sampler_kwargs": None, "n_samples": 4000, "seed": 0,
    "dtype": "float64", "device": "cpu", "name": None,
}
_REPORT_DEFAULTS: dict[str, Any] = {"full": False, "device": "cpu"}


def _phi4_defaults() -> dict[str, Any]:
    from ..phi4 import run_phi4_experiment

    sig = inspect.signature(run_phi4_experiment)
    return {k: (list(p.default) if isinstance(p.default, tuple) else p.default)
            for k, p in sig.parameters.items() if k not in _PHI4_SKIP and p.default is not inspect.Parameter.empty}


def _exact_dm_defaults() -> dict[str, Any]:
    from ..phi4.exact_dm import run_exact_dm

    sig = inspect.signature(run_exact_dm)
    return {k: p.default for k, p in sig.parameters.items() if k != "progress" and p.default is not inspect.Parameter.empty}


def _fail(kind: str, name: str, msg: str) -> ValueError:
    return ValueError(f"{kind} parameter {name!r}: {msg}")


def _choice(kind: str, name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise _fail(kind, name, f"must be one of {allowed}, got {value!r}")


def _typed_like(kind: str, name: str, value: Any, default: Any) -> None:
    """``value`` must have the type of ``default`` (ints for int defaults, reals for float ones, ...)."""
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be true or false, got {value!r}")
        elif isinstance(default, int):
            _args.integer(name, value, -(2**63))  # the type here; ranges where the value is used
        elif isinstance(default, float):
            _args.real(name, value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {value!r}")
        elif isinstance(default, list) and not isinstance(value, list):
            raise TypeError(f"{name} must be a list, got {value!r}")
    except (TypeError, ValueError) as err:
        raise _fail(kind, name, str(err)) from None


def check_device(kind: str, value: Any) -> None:
    """``value`` must name a torch device type critdiff runs on (``cpu``, ``cuda``, ``cuda:N``, ``mps``);
    whether this machine has it is checked by the engines that run here (:func:`critdiff_ref.sweep.run_spec`)."""
    try:
        dev = torch.device(value) if isinstance(value, str) else None
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise _fail(kind, "device", f"must be a torch device (cpu, cuda, cuda:N, mps), got {value!r}")


def _check_phi4(p: dict) -> None:
    from ..phi4 import EnsembleParams
    from ..phi4.dm import DM_NETS, default_dm_net

    defaults = _phi4_defaults()
    for name, value in p.items():
        _typed_like("phi4", name, value, defaults.get(name))
    try:
        EnsembleParams(L=p["L"], d=p["d"], kappa=p["kappa"], lam=p["lam"], sampler="hmc", n_chains=p["n_chains"],
                       n_updates=p["n_traj"], burn_in=p["burn_in"], step=p["eps"], n_steps=p["n_steps"],
                       seed=p["seed"], dtype=p["dtype"], device=p["device"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"phi4 parameters: {err}") from None
    check_device("phi4", p["device"])
    _choice("phi4", "divergence", p["divergence"], ("auto", "jacobian", "stepwise", "exact", "hutchinson"))
    _choice("phi4", "dm_net", p["dm_net"], ("auto", *DM_NETS))
    net = default_dm_net(p["L"], p["d"]) if p["dm_net"] == "auto" else p["dm_net"]
    if p["divergence"] == "stepwise" and net != "fourier-local":
        raise _fail("phi4", "divergence", f"'stepwise' needs dm_net='fourier-local' (the network with cheap exact "
                                          f"step Jacobians), got dm_net={p['dm_net']!r} (-> {net!r} at L={p['L']})")
    _choice("phi4", "dm_dtype", p["dm_dtype"], ("float32", "float64"))
    _choice("phi4", "ode_method", p["ode_method"], ("euler", "heun", "rk4"))
    for name in ("dm_steps", "dm_batch", "ode_steps", "probes", "dm_chains", "dm_iter"):
        if p[name] < 1:
            raise _fail("phi4", name, f"must be >= 1, got {p[name]}")
    if not p["dm_channels"] or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in p["dm_channels"]):
        raise _fail("phi4", "dm_channels", f"must be a non-empty list of ints >= 1, got {p['dm_channels']!r}")


def _check_exact_dm(p: dict) -> None:
    from ..phi4.exact_dm import check_exact_dm

    defaults = _exact_dm_defaults()
    _typed_like(_EXACT_DM, "L", p["L"], 1)
    for name, value in p.items():
        _typed_like(_EXACT_DM, name, value, defaults.get(name))
    check_device(_EXACT_DM, p["device"])
    try:
        check_exact_dm(**p)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{_EXACT_DM} parameters: {err}") from None


# sweep wording of validate()'s argument rules (the rules themselves: validate.check_validate_args)
_VALIDATE_RULES = {"steps": "must be a strictly increasing list of ints >= 1", "rtol": "must be a number in (0, 1)",
                   "n_samples": "must be an int >= 100"}


def _check_validate(p: dict) -> None:
    from ..targets import GaussianField
    from ..validate import TARGETS, ArgumentError, adapter_names, check_validate_args

    if not isinstance(p["sampler"], str) or p["sampler"].count(":") != 1:
        raise _fail("validate", "sampler", f"must be 'pkg.module:attr', got {p['sampler']!r}")
    _choice("validate", "adapter", p["adapter"], adapter_names())
    check_device("validate", p["device"])
    _choice("validate", "start", p["start"], ("noise", "exact"))
    _choice("validate", "dtype", p["dtype"], ("float64", "float32"))
    _choice("validate", "prediction_type", p["prediction_type"], (None, "epsilon", "v_prediction", "sample"))
    rules = {**_VALIDATE_RULES, "targets": f"must be a non-empty list from {TARGETS}"}
    for name in ("steps", "targets"):
        if not isinstance(p[name], list):
            raise _fail("validate", name, f"{rules[name]}, got {p[name]!r}")
    try:
        check_validate_args(p["steps"], p["targets"], p["rtol"], p["n_samples"])
    except ArgumentError as err:
        raise _fail("validate", err.parameter, f"{rules[err.parameter]}, got {p[err.parameter]!r}") from None
    try:
        _args.integer("seed", p["seed"], 0)
    except (TypeError, ValueError) as err:
        raise _fail("validate", "seed", str(err)) from None
    for name in ("sigma_min", "sigma_max", "rho"):
        _typed_like("validate", name, p[name], 1.0)
    if p["order"] is not None:
        _typed_like("validate", "order", p["order"], 1.0)
    if p["sampler_kwargs"] is not None and not isinstance(p["sampler_kwargs"], dict):
        raise _fail("validate", "sampler_kwargs", f"must be a table, got {p['sampler_kwargs']!r}")
    if p["fields"] is not None:
        if not isinstance(p["fields"], list) or not p["fields"]:
            raise _fail("validate", "fields", f"must be a non-empty list of {{L, d, r}} tables, got {p['fields']!r}")
        for i, f in enumerate(p["fields"]):
            if not isinstance(f, dict) or set(f) - {"L", "d", "r"}:
                raise _fail("validate", f"fields[{i}]", f"must be a table with keys L, d, r, got {f!r}")
            try:
                GaussianField(**f)
            except (TypeError, ValueError) as err:
                raise _fail("validate", f"fields[{i}]", str(err)) from None
    try:  # last: the cheap checks above name a typo before a slow import
        import_object(p["sampler"], "sampler")
    except ValueError as err:
        raise ValueError(f"validate parameter {err}") from None


def _check_report(p: dict) -> None:
    from ..report import SECTIONS

    _choice("report", "section", p["section"], tuple(SECTIONS))
    _typed_like("report", "full", p["full"], False)
    _typed_like("report", "device", p["device"], "cpu")
    check_device("report", p["device"])


def _check_call(p: dict) -> None:
    try:
        fn = import_object(p["function"], "function")
    except ValueError as err:
        raise ValueError(f"call parameter {err}") from None
    if not callable(fn):
        raise _fail("call", "function", f"{p['function']!r} is not callable")


def code_digest(kind: str, params: dict) -> str | None:
    """The digest of the user's file a job runs (``call`` function, ``validate`` sampler), None for none."""
    ref = {"call": "function", "validate": "sampler"}.get(kind)
    if ref is None:
        return None
    return object_digest(import_object(params[ref], ref))


def parameter_names(kind: str) -> frozenset[str] | None:
    """The parameters a job kind accepts (None for ``call``: whatever its function takes)."""
    if kind == "phi4":
        return frozenset({*_PHI4_REQUIRED, *_phi4_defaults()})
    if kind == _EXACT_DM:
        return frozenset({"L", *_exact_dm_defaults()})
    if kind == "validate":
        return frozenset({"sampler", *_VALIDATE_DEFAULTS})
    if kind == "report":
        return frozenset({"section", *_REPORT_DEFAULTS})
    return None


def check_params(kind: str, params: dict) -> dict:
    """``params`` with the kind's defaults filled in, validated; ``ValueError`` names the bad parameter."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got kind={kind!r}")
    if kind == "call":
        required, defaults = ("function",), {}
    elif kind == "phi4":
        required, defaults = _PHI4_REQUIRED, _phi4_defaults()
    elif kind == _EXACT_DM:
        required, defaults = ("L",), _exact_dm_defaults()
    elif kind == "validate":
        required, defaults = ("sampler",), _VALIDATE_DEFAULTS
    else:
        required, defaults = ("section",), _REPORT_DEFAULTS
    missing = [k for k in required if k not in params]
    if missing:
        raise ValueError(f"{kind} job is missing parameter {missing[0]!r} (required: {', '.join(required)})")
    if kind != "call":
        allowed = sorted({*required, *defaults})
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(f"{kind} job has unknown parameter {unknown[0]!r}; allowed: {', '.join(allowed)}")
    full = {**defaults, **params}
    {"phi4": _check_phi4, _EXACT_DM: _check_exact_dm, "validate": _check_validate, "report": _check_report, "call": _check_call}[kind](full)
    return full


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (tuples -> lists, numpy/torch scalars and arrays -> numbers and lists)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return jsonable(value.tolist())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _run_phi4(p: dict) -> dict:
    from ..phi4 import run_phi4_experiment

    kw = dict(p)
    kw["dm_channels"] = tuple(kw["dm_channels"])
    return run_phi4_experiment(**kw)


def _run_exact_dm(p: dict) -> dict:
    from ..phi4.exact_dm import run_exact_dm

    return run_exact_dm(**p)


def _run_validate(p: dict) -> dict:
    from ..targets import GaussianField
    from ..validate import validate

    kw = dict(p)
    sampler = import_object(kw.pop("sampler"), "sampler")
    fields = None if kw["fields"] is None else [GaussianField(**f) for f in kw["fields"]]
    kw.update(fields=fields, steps=tuple(kw["steps"]), targets=tuple(kw["targets"]), dtype=getattr(torch, kw["dtype"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return validate(sampler, **kw).to_dict()


def _run_report(p: dict) -> dict:
    from ..report import write_report

    with tempfile.TemporaryDirectory(prefix="critdiff-sweep-report-") as tmp:
        doc = write_report(tmp, full=p["full"], device=p["device"], only=[p["section"]], progress=False)
        files = {}
        for name in sorted(os.listdir(tmp)):
            if name.endswith(".png"):
                with open(os.path.join(tmp, name), "rb") as fh:
                    files[name] = base64.b64encode(fh.read()).decode("ascii")
    doc.pop("seconds", None)  # wall time: kept in the sweep log, not in the (deterministic) result
    return {**doc, "_files": files}


def _run_call(p: dict) -> dict:
    kw = dict(p)
    out = import_object(kw.pop("function"), "function")(**kw)
    return out if isinstance(out, dict) else {"value": out}


_RUN: dict[str, Callable[[dict], dict]] = {"phi4": _run_phi4, _EXACT_DM: _run_exact_dm, "validate": _run_validate,
                                           "report": _run_report, "call": _run_call}


def execute(kind: str, params: dict, num_cpus: float = 1, *, retries: int = 0, log: str | None = None,
            timeout: float | None = None) -> dict:
    """Run one job here: ``{"status": "ok", "result": ...}`` or ``{"status": "error", "error", "traceback"}``,
    plus ``seconds``, ``host``, ``pid`` and ``attempts``. A job that raises is run again up to ``retries`` times.
    ``torch`` uses ``max(1, int(num_cpus))`` threads while it runs; its output goes to the file ``log``;
    ``timeout`` (seconds, all attempts together) is enforced here only on the main thread (the engines
    that run jobs in workers kill them instead)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(num_cpus)))
    t0 = time.perf_counter()
    attempts = 0
    try:
        with captured_output(log), alarm(timeout):
            for attempts in range(1, retries + 2):
                try:
                    out = {"status": "ok", "result": jsonable(_RUN[kind](params))}
                    break
                except Exception as err:  # noqa: BLE001 - a failed job is recorded and the sweep goes on
                    out = {"status": "error", "error": f"{type(err).__name__}: {err}",
                           "traceback": traceback.format_exc()}
                    if log is not None:
                        print(f"[critdiff sweep] attempt {attempts} failed:\n{out['traceback']}", file=sys.stderr,
                              flush=True)
    except JobTimeout as err:
        out = {"status": "error", "error": f"timed out after {timeout:g} s", "traceback": str(err)}
    finally:
        torch.set_num_threads(threads)
    out.update(seconds=time.perf_counter() - t0, host=os.uname().nodename, pid=os.getpid(), attempts=max(attempts, 1))
    return out


def summarize(kind: str, result: dict) -> dict:
    """The few numbers of a job's result that go into the merged table (flat, JSON types)."""
    if kind == "phi4":
        row = {k: result.get(k) for k in ("M", "M_err", "absM", "absM_err", "chi2", "chi2_err", "binder",
                                          "binder_err", "tau_int_absM", "acceptance")}
        if "dm" in result:
            c = result["dm"]["dm_mcmc"]
            row.update(dm_binder=c.get("binder"), dm_binder_err=c.get("binder_err"),
                       dm_acceptance=c.get("acceptance"), r2_action=result["dm"].get("r2_action"))
        return row
    if kind == _EXACT_DM:
        c, raw, z = result["dm_mcmc"], result["dm_raw"], result["z_dm_mcmc"]
        return {"final_loss": result["final_loss"],
                "acceptance": c["acceptance"], "chi2": c["chi2"], "chi2_err": c["chi2_err"], "z_chi2": z["chi2"],
                "raw_chi2": raw["chi2"], "raw_chi2_err": raw["chi2_err"], "hmc_chi2": result["hmc"]["chi2"],
                "hmc_chi2_err": result["hmc"]["chi2_err"], "seconds_per_proposal": result["seconds_per_proposal"]}
    if kind == "validate":
        res = result.get("results", [])
        cov = [r for r in res if r.get("kind") == "covariance"]
        order = [r for r in res if r.get("kind") == "order"]
        failed = [r["name"] for r in res if r.get("passed") is False]
        return {"passed": result.get("passed"), "checks": len(res), "failed": len(failed),
                "failures": "; ".join(failed[:3]) + (" ..." if len(failed) > 3 else ""),
                "err_at_max_steps": cov[-1]["measured"] if cov else None,
                "observed_order": order[0]["measured"] if order else None}
    if kind == "report":
        checks = [c for s in result.get("sections", {}).values() for c in s["checks"]]
        return {"passed": result.get("passed"), "checks": len(checks), "failed": sum(not c["passed"] for c in checks)}
    return {k: v for k, v in result.items()
            if isinstance(v, (bool, int, float, str)) and not (isinstance(v, float) and math.isnan(v))}
