"""Sweeps (issue 21, ``critdiff_ref.sweep``): a spec is checked before anything runs; each job is a pure
function of its parameters, stored once under a hash of them; a rerun skips finished jobs; a failed or
killed job does not stop the sweep; the serial run, the process pool and Ray give identical result files."""

from __future__ import annotations

import json
import math
import os
import textwrap

import pytest
import torch

from critdiff_ref import __version__
from critdiff_ref.cli import main
from critdiff_ref.phi4 import run_phi4_experiment
from critdiff_ref.sweep import (
    binder_crossings,
    crossing,
    example_path,
    execute,
    job_id,
    load_spec,
    read_result,
    run_spec,
    write_atomic,
)
from critdiff_ref.sweep.jobs import jsonable

# tiny HMC runs: a few ms each, enough to exercise the whole path
PHI4 = {"d": 2, "lam": 0.022, "n_chains": 2, "n_traj": 8, "burn_in": 2, "n_steps": 3}


def _spec(**extra_jobs) -> dict:
    spec = {"name": "t", "jobs": [{"kind": "phi4", "params": dict(PHI4), "grid": {"L": [4, 6], "kappa": [0.2]}}]}
    spec["jobs"].extend(extra_jobs.values())
    return spec


CRASHY = '''
import os

def crash_once(marker, value):
    """Kill the worker process the first time (a lost node), return on the retry."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return {"value": value}

def boom(value):
    raise RuntimeError(f"boom {value}")

def shout(text):
    """Print through Python, through file descriptor 1, and to stderr."""
    import sys
    print(text)
    sys.stdout.flush()
    os.write(1, b"fd:" + text.encode() + b"\\n")
    print("err:" + text, file=sys.stderr)
    return {"value": text}
'''


@pytest.fixture
def crashy(tmp_path, monkeypatch):
    """An importable module ``crashy_mod`` (for ``call`` jobs) visible to pool and Ray workers."""
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "crashy_mod.py").write_text(CRASHY)
    monkeypatch.syspath_prepend(str(mods))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(mods), os.environ.get("PYTHONPATH")])))
    return str(tmp_path / "marker")


def _fault_spec(marker: str) -> dict:
    return _spec(crash={"kind": "call", "params": {"function": "crashy_mod:crash_once", "marker": marker},
                        "grid": {"value": [1]}, "resources": {"max_retries": 1}},
                 boom={"kind": "call", "params": {"function": "crashy_mod:boom", "value": 7}})


def _files(out) -> dict[str, bytes]:
    folder = os.path.join(out, "results")
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


# -- the spec ------------------------------------------------------------------------------------------------
def _mutate(path: tuple, value):
    spec = _spec()
    node = spec
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return spec


BAD_SPECS = {  # case: (spec, the message naming the field and its allowed values)
    "unknown kind": (_mutate(("jobs", 0, "kind"), "mcmc"),
                     r"jobs\[0\]\.kind must be one of \('phi4', 'phi4-exact-dm', 'validate', 'report', 'call'\)"),
    "missing parameter": (_mutate(("jobs", 0, "grid", "kappa"), KeyError),
                          r"missing parameter 'kappa' \(required: L, kappa, lam\)"),
    "negative L": (_mutate(("jobs", 0, "grid", "L"), [8, -8]),
                   r"jobs\[0\] \(phi4, L=-8, kappa=0.2\).*L must be >= 2, got L=-8"),
    "unknown parameter": (_mutate(("jobs", 0, "params", "kapa"), 0.1), r"unknown parameter 'kapa'; allowed: .*kappa"),
    "empty grid axis": (_mutate(("jobs", 0, "grid", "kappa"), []), r"jobs\[0\]\.grid\.kappa must be a non-empty list"),
    "bad linspace": (_mutate(("jobs", 0, "grid", "kappa"), {"start": 0.2, "stop": 0.3}),
                     r"grid\.kappa as a table must have exactly the keys start, stop, num"),
    "grid and params clash": (_mutate(("jobs", 0, "params", "L"), 8), r"parameter 'L' is both in grid and in params"),
    "zero cpus": (_mutate(("jobs", 0, "resources"), {"num_cpus": 0}), r"resources\.num_cpus must be > 0"),
    "unknown resource": (_mutate(("jobs", 0, "resources"), {"cpus": 1}),
                         r"unknown key 'cpus'; allowed: num_cpus, num_gpus, max_retries, retries, timeout"),
    "unknown top key": (_mutate(("job",), []),
                        r"spec has unknown key 'job'; allowed: name, description, resources, jobs"),
    "bad phi4 choice": (_mutate(("jobs", 0, "params", "divergence"), "hutch"),
                        r"'divergence': must be one of \('auto', 'jacobian', 'stepwise', 'exact', 'hutchinson'\)"),
    "bad adapter": ({"jobs": [{"kind": "validate", "params": {"sampler": "m:f", "adapter": "scores"}}]},
                    r"'adapter': must be one of \('score', 'denoiser', .*\), got 'scores'"),
    "bad steps": ({"jobs": [{"kind": "validate", "params": {"sampler": "m:f"}, "grid": {"steps": [[20, 10]]}}]},
                  r"'steps': must be a strictly increasing list"),
    "bad field": ({"jobs": [{"kind": "validate", "params": {"sampler": "m:f", "fields": [{"L": 1, "d": 2}]}}]},
                  r"'fields\[0\]'"),
    "bad section": ({"jobs": [{"kind": "report", "params": {"section": "nope"}}]},
                    r"'section': must be one of \('training'"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_a_bad_spec_is_refused_before_anything_runs_naming_the_field(case, tmp_path):
    spec, message = BAD_SPECS[case]
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        run_spec(spec, out, engine="serial", progress=False)
    assert not out.exists()  # nothing ran, nothing written


def test_grids_cases_and_linspace_expand_to_the_cartesian_product():
    spec = load_spec({"jobs": [{"kind": "phi4", "params": dict(PHI4),
                                "cases": [{"L": 4, "eps": 0.1}, {"L": 6, "eps": 0.05}],
                                "grid": {"kappa": {"start": 0.25, "stop": 0.29, "num": 5}, "seed": [0, 1]}}]})
    assert len(spec.jobs) == 2 * 5 * 2
    assert sorted({j.params["kappa"] for j in spec.jobs}) == [0.25, 0.26, 0.27, 0.28, 0.29]
    assert {(j.params["L"], j.params["eps"]) for j in spec.jobs} == {(4, 0.1), (6, 0.05)}
    assert spec.jobs[0].varying == {"L": 4, "eps": 0.1, "kappa": 0.25, "seed": 0}
    assert len({j.id for j in spec.jobs}) == len(spec.jobs)


def test_a_job_id_names_the_computation_defaults_filled_in_and_the_version():
    given = {"kind": "phi4", "params": {"L": 4, "kappa": 0.2, "lam": 0.022}}
    explicit = {"kind": "phi4", "params": {"L": 4, "kappa": 0.2, "lam": 0.022, "d": 2, "seed": 0, "n_chains": 16}}
    a, b = load_spec({"jobs": [given]}).jobs[0], load_spec({"jobs": [explicit]}).jobs[0]
    assert a.id == b.id and a.filename == f"phi4-{a.id}.json"
    assert job_id("phi4", a.params) == a.id == job_id("phi4", a.params, __version__)
    assert job_id("phi4", a.params, __version__ + ".post1") != a.id
    assert job_id("phi4", {**a.params, "kappa": 0.21}) != a.id
    # duplicates are run once
    assert len(load_spec({"jobs": [given, explicit]}).jobs) == 1


def test_a_job_id_changes_with_the_package_source_not_only_its_version(tmp_path, monkeypatch):
    """Editing the code without a version bump gives new ids, so a resumed sweep reruns the jobs instead of
    reusing results of the old code; the digest covers the *.py contents and paths, nothing else."""
    from critdiff_ref.sweep import spec as spec_module

    params = load_spec({"jobs": [{"kind": "phi4", "params": {"L": 4, "kappa": 0.2, "lam": 0.022}}]}).jobs[0].params
    monkeypatch.setattr(spec_module, "_source_digest", lambda: "a" * 64)
    before = job_id("phi4", params)
    assert job_id("phi4", params) == before
    monkeypatch.setattr(spec_module, "_source_digest", lambda: "b" * 64)
    assert job_id("phi4", params) != before
    monkeypatch.undo()

    def tree(name, files):
        root = tmp_path / name
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        return spec_module._source_digest(str(root))

    base = {"__init__.py": "", "sub/mod.py": "x = 1\n"}
    digest = tree("base", base)
    assert tree("same", {**base, "README.md": "not code"}) == digest
    assert tree("edited", {**base, "sub/mod.py": "x = 2\n"}) != digest
    assert tree("moved", {"__init__.py": "", "mod.py": "x = 1\n"}) != digest
    # the package's own digest is computed once per process
    assert spec_module._source_digest() is spec_module._source_digest()


def test_a_cuda_job_asks_for_a_gpu_and_fractions_share_one():
    cuda = {"kind": "phi4", "params": {"L": 4, "kappa": 0.2, "lam": 0.0, "device": "cuda"}}
    job = load_spec({"jobs": [cuda]}).jobs[0]
    assert job.resources.num_gpus == 1
    shared = load_spec({"resources": {"num_gpus": 0.25}, "jobs": [cuda]})
    assert shared.jobs[0].resources.num_gpus == 0.25


# -- running -------------------------------------------------------------------------------------------------
def test_a_job_runs_with_the_torch_threads_it_asked_for_and_restores_them():
    before = torch.get_num_threads()
    out = execute("call", {"function": "torch:get_num_threads"}, num_cpus=1)
    assert out["status"] == "ok" and out["result"] == {"value": 1}
    assert torch.get_num_threads() == before


def test_serial_sweep_stores_each_job_once_resumes_and_keeps_failures(tmp_path, crashy):
    spec = _spec(bad={"kind": "call", "params": {"function": "crashy_mod:boom", "value": "no_such_module_for_sweep"}})
    out = tmp_path / "out"
    old = os.umask(0o027)
    try:
        first = run_spec(spec, out, engine="serial", progress=False, plots=False)
    finally:
        os.umask(old)
    assert (first["ran"], first["skipped"], first["jobs"]) == (3, 0, 3)
    assert len(first["failed"]) == 1 and "no_such_module_for_sweep" in first["failed"][0][1]
    files = _files(out)
    assert len(files) == 3
    for name in files:
        assert os.stat(out / "results" / name).st_mode & 0o777 == 0o640  # 0o666 & ~umask
    # a result is the job's pure function of its parameters
    for job in load_spec(spec).jobs[:2]:
        record = read_result(out, job)
        assert record["status"] == "ok" and record["version"] == __version__
        assert record["result"] == json.loads(json.dumps(jsonable(run_phi4_experiment(**job.params))))
    table = json.loads((out / "table.json").read_text())["rows"]
    assert [r["status"] for r in table] == ["ok", "ok", "error"]
    assert "no_such_module_for_sweep" in (out / "table.md").read_text()
    assert (out / "table.csv").read_text().count("\n") == 4
    # rerun: the finished jobs are skipped and their files untouched; the failed one is retried
    stamps = {n: os.stat(out / "results" / n).st_mtime_ns for n in files}
    second = run_spec(spec, out, engine="serial", progress=False, plots=False)
    assert (second["ran"], second["skipped"]) == (1, 2)
    assert _files(out) == files
    assert all(os.stat(out / "results" / n).st_mtime_ns == stamps[n] for n in files if n.startswith("phi4"))
    third = run_spec(spec, out, engine="serial", progress=False, plots=False, retry_failed=False)
    assert (third["ran"], third["skipped"]) == (0, 3)


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    write_atomic(path, "old")

    def fail(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk gone"):
        write_atomic(path, "new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]


def test_a_job_output_goes_to_its_log_file_with_the_umask_mode(tmp_path, crashy, capfd):
    """What a job prints (Python and file-descriptor level, stdout and stderr) lands in its log file in order,
    not on the terminal; the descriptors are restored afterwards; the file has mode 0o666 & ~umask."""
    log = tmp_path / "logs" / "job.log"
    old = os.umask(0o027)
    try:
        outcome = execute("call", {"function": "crashy_mod:shout", "text": "hello"}, log=str(log))
    finally:
        os.umask(old)
    assert outcome["status"] == "ok" and outcome["result"] == {"value": "hello"}
    assert log.read_text() == "hello\nfd:hello\nerr:hello\n"
    assert os.stat(log).st_mode & 0o777 == 0o640
    print("after")
    assert capfd.readouterr().out == "after\n"


def test_the_process_pool_gives_the_serial_files_and_survives_a_killed_worker(tmp_path, crashy):
    serial = run_spec(_spec(), tmp_path / "serial", engine="serial", progress=False, plots=False)
    pool = run_spec(_fault_spec(crashy), tmp_path / "pool", engine="local", workers=2, progress=False, plots=False)
    assert serial["failed"] == [] and pool["ran"] == 4
    assert [e for _, e in pool["failed"]] == ["RuntimeError: boom 7"]  # its own error, recorded
    files = _files(tmp_path / "pool")
    assert {n: b for n, b in files.items() if n.startswith("phi4")} == _files(tmp_path / "serial")
    crashed = next(j for j in load_spec(_fault_spec(crashy)).jobs if j.params.get("value") == 1)
    assert read_result(tmp_path / "pool", crashed)["result"] == {"value": 1}  # the killed job was rerun
    log = [json.loads(line) for line in (tmp_path / "pool" / "log.jsonl").read_text().splitlines()]
    assert next(line["attempts"] for line in log if line["id"] == crashed.id) == 2


def test_a_ray_cluster_gives_the_serial_files_and_survives_a_killed_worker(tmp_path, crashy, monkeypatch):
    ray = pytest.importorskip("ray")
    serial = run_spec(_spec(), tmp_path / "serial", engine="serial", progress=False, plots=False)
    here = tmp_path / "here"  # a module in the current folder, on no import path: Ray workers find it too
    here.mkdir()
    (here / "cwd_mod.py").write_text("def answer():\n    return {'answer': 42}\n")
    monkeypatch.chdir(here)
    spec = _fault_spec(crashy)
    spec["jobs"].append({"kind": "call", "params": {"function": "cwd_mod:answer"}})
    try:
        res = run_spec(spec, tmp_path / "ray", engine="ray", workers=2, progress=False, plots=False)
    finally:
        assert not ray.is_initialized()  # the embedded cluster is shut down
    assert serial["failed"] == [] and [e for _, e in res["failed"]] == ["RuntimeError: boom 7"]
    assert read_result(tmp_path / "ray", load_spec(spec).jobs[-1])["result"] == {"answer": 42}
    files = _files(tmp_path / "ray")
    assert {n: b for n, b in files.items() if n.startswith("phi4")} == _files(tmp_path / "serial")
    assert sum(b'"value": 1' in b for b in files.values()) == 1
    # the lost worker's job is recorded with its real attempts (Ray's own retries would say 1)
    crashed = next(j for j in load_spec(_fault_spec(crashy)).jobs if j.params.get("value") == 1)
    log = [json.loads(line) for line in (tmp_path / "ray" / "log.jsonl").read_text().splitlines()]
    assert next(line["attempts"] for line in log if line["id"] == crashed.id) == 2
    # what a job printed comes back to the driver's logs/ (here: the traceback of the job that raised)
    boom = next(j for j in load_spec(_fault_spec(crashy)).jobs if j.params.get("value") == 7)
    assert "RuntimeError: boom 7" in (tmp_path / "ray" / "logs" / f"{boom.filename[:-5]}.log").read_text()


def test_ray_is_refused_clearly_when_it_is_not_installed(tmp_path, monkeypatch):
    from critdiff_ref.sweep.engines import choice as engines  # where resolve_engine looks ray_available up

    monkeypatch.setattr(engines, "ray_available", lambda: False)
    with pytest.raises(ValueError, match=r"engine='ray' needs ray: pip install 'critdiff-ref\[distributed\]'"):
        run_spec(_spec(), tmp_path / "out", engine="ray", progress=False)
    assert engines.resolve_engine("auto") == "local"


# -- finite-size scaling ---------------------------------------------------------------------------------------
def test_the_crossing_of_two_segments_and_its_linearly_propagated_error():
    # U_8 = 0.5 + 2 (k - 0.27), U_16 = 0.5 + 5 (k - 0.27): they cross at kappa = 0.27, U = 0.5
    a, b = (0.5 - 0.02, 0.5 + 0.04), (0.5 - 0.05, 0.5 + 0.10)
    errs = ((0.01, 0.02), (0.015, 0.03))
    x = crossing(0.26, 0.29, a, b, *errs)
    assert math.isclose(x["kappa_c"], 0.27, abs_tol=1e-14) and math.isclose(x["U_c"], 0.5, abs_tol=1e-14)
    # the error against a central-difference Jacobian of the same map
    inputs, sig = [a[0], a[1], b[0], b[1]], [errs[0][0], errs[0][1], errs[1][0], errs[1][1]]
    var_k = var_u = 0.0
    for i, s in enumerate(sig):
        h = 1e-7
        up, dn = list(inputs), list(inputs)
        up[i] += h
        dn[i] -= h
        xu, xd = crossing(0.26, 0.29, up[:2], up[2:], *errs), crossing(0.26, 0.29, dn[:2], dn[2:], *errs)
        var_k += ((xu["kappa_c"] - xd["kappa_c"]) / (2 * h) * s) ** 2
        var_u += ((xu["U_c"] - xd["U_c"]) / (2 * h) * s) ** 2
    assert math.isclose(x["kappa_c_err"], math.sqrt(var_k), rel_tol=1e-6)  # finite differences: ~h^2
    assert math.isclose(x["U_c_err"], math.sqrt(var_u), rel_tol=1e-6)


def test_binder_crossings_per_pair_of_sizes_combining_seeds():
    rows = []
    for L, slope in ((8, 2.0), (16, 5.0), (32, 12.0)):
        for k in (0.25, 0.26, 0.27, 0.28):
            for seed, shift in ((0, 0.01), (1, -0.01)):  # equal errors: the seeds average to the line
                rows.append({"kind": "phi4", "status": "ok", "group": "g", "d": 2, "lam": 0.022, "L": L, "kappa": k,
                             "binder": 0.6 + slope * (k - 0.265) + shift, "binder_err": 0.01, "seed": seed})
    rows.append({"kind": "phi4", "status": "ok", "group": "h", "d": 2, "lam": 0.022, "L": 8, "kappa": 0.2,
                 "binder": 0.1, "binder_err": 0.01})
    rows.append({"kind": "phi4", "status": "ok", "group": "h", "d": 2, "lam": 0.022, "L": 16, "kappa": 0.2,
                 "binder": 0.05, "binder_err": 0.01})
    found = binder_crossings(rows)
    g = [c for c in found if c["group"] == "g"]
    assert [(c["L1"], c["L2"]) for c in g] == [(8, 16), (16, 32)]
    for c in g:
        assert math.isclose(c["kappa_c"], 0.265, abs_tol=1e-12) and math.isclose(c["U_c"], 0.6, abs_tol=1e-12)
        assert (c["kappa_lo"], c["kappa_hi"]) == (0.26, 0.27) and c["kappa_c_err"] > 0
        slope_diff = {8: 3.0, 16: 7.0}[c["L1"]]  # U_L2 - U_L1 = slope_diff (k - 0.265), seeds averaged
        assert math.isclose(c["diff_lo"], -0.005 * slope_diff, abs_tol=1e-12)
        assert math.isclose(c["diff_hi"], 0.005 * slope_diff, abs_tol=1e-12)
        assert math.isclose(c["diff_lo_err"], 0.01, rel_tol=1e-12)  # hypot of two seed-averaged 0.01 / sqrt(2)
    (h,) = [c for c in found if c["group"] == "h"]
    assert h["kappa_c"] is None and "U_L2 < U_L1" in h["note"]


# -- the command and the shipped examples ---------------------------------------------------------------------
def test_critdiff_sweep_runs_a_toml_spec_and_refuses_a_bad_one(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(textwrap.dedent("""
        name = "cli"
        [[jobs]]
        kind = "phi4"
        params = { d = 2, lam = 0.022, n_chains = 2, n_traj = 8, burn_in = 2, n_steps = 3, L = 4 }
        grid = { kappa = [0.2, 0.3] }
    """))
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--engine", "serial"]) == 0
    text = capsys.readouterr()
    assert "2 jobs: 0 already done, 2 ran on serial" in text.out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        assert (out / "plots" / "phi4_0_binder.png").stat().st_size > 0
    assert "[critdiff sweep] 2/2 phi4-" in text.err  # plain progress lines off a terminal
    assert main(["sweep", str(spec), "--out", str(out), "--dry-run"]) == 0
    assert "2 jobs, 0 to run" in capsys.readouterr().out
    spec.write_text(spec.read_text().replace("kappa = [0.2, 0.3]", "kappa = [0.2, -0.3]"))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o2"), "--engine", "serial"]) == 2
    assert "kappa must be >= 0, got kappa=-0.3" in capsys.readouterr().err


def test_a_json_spec_is_the_same_sweep_and_other_formats_are_refused(tmp_path):
    spec = _spec()
    (tmp_path / "s.json").write_text(json.dumps(spec))
    assert [j.id for j in load_spec(tmp_path / "s.json").jobs] == [j.id for j in load_spec(spec).jobs]
    with pytest.raises(ValueError, match=r"spec must be a \.toml or \.json file"):
        load_spec(tmp_path / "s.yaml")


def test_the_shipped_examples_load():
    fss = load_spec(example_path("fss_binder"))
    assert {j.params["L"] for j in fss.jobs} == {8, 16, 32} and {j.params["lam"] for j in fss.jobs} == {0.022}
    assert min(j.params["kappa"] for j in fss.jobs) < 0.27 < max(j.params["kappa"] for j in fss.jobs)
    matrix = load_spec(example_path("validation_matrix"))
    assert len(matrix.jobs) == 225 and {j.params["adapter"] for j in matrix.jobs} == {"score", "denoiser", "diffusers"}
    assert len(load_spec(example_path("fss_binder_small")).jobs) == 15
    assert len(load_spec(example_path("validation_matrix_small.toml")).jobs) == 6
    with pytest.raises(ValueError, match="example must be one of"):
        example_path("nope")
