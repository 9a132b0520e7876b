"""Sweeps under faults: a killed worker loses only its job, no process outlives a killed driver, Ctrl-C keeps
finished work and says how to resume in one line, a corrupt result file costs one line and a rerun, timeouts
and retries are recorded with real attempt counts. Subprocess tests run the real ``critdiff`` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from critdiff_ref.sweep import load_spec, read_result, run_spec, sweep_status

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

JOBS_MODULE = '''
import os, signal, time

def _mark(folder, tag):
    open(os.path.join(folder, "started-" + tag), "w").close()

def _wait_for(folder, tag, seconds=120):
    deadline = time.time() + seconds
    while not os.path.exists(os.path.join(folder, "started-" + tag)) and time.time() < deadline:
        time.sleep(0.02)

def sleeper(folder, tag, seconds):
    """Mark this job started, then sleep."""
    _mark(folder, tag)
    time.sleep(seconds)
    return {"tag": tag}

def partner(folder, tag):
    """Start, wait until the killer has started too, then outlive its death by a moment."""
    _mark(folder, tag)
    _wait_for(folder, "killer")
    time.sleep(1.5)
    return {"tag": tag}

def killer(folder, tag):
    """Start, wait until the partner runs, then die as if killed by the OOM killer."""
    _mark(folder, tag)
    _wait_for(folder, "partner")
    os.kill(os.getpid(), signal.SIGKILL)

def fail_once(folder, tag):
    """Raise the first time, succeed the second."""
    if not os.path.exists(os.path.join(folder, "started-" + tag)):
        _mark(folder, tag)
        raise RuntimeError("first attempt fails")
    return {"tag": tag}

def not_finite():
    return {"x": float("nan"), "y": float("inf"), "z": 1.5}
'''


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A folder holding ``sweepjobs.py`` that is the current folder (and on no import path): jobs must find it."""
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "sweepjobs.py").write_text(JOBS_MODULE)
    monkeypatch.chdir(folder)
    yield folder
    sys.modules.pop("sweepjobs", None)


def _call(function: str, folder, tag: str, **params) -> dict:
    return {"kind": "call", "params": {"function": f"sweepjobs:{function}", "folder": str(folder), "tag": tag,
                                       **params}}


def _log(out) -> dict[str, dict]:
    return {line["id"]: line for line in map(json.loads, (out / "log.jsonl").read_text().splitlines())}


def _env(tag: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    if tag is not None:
        env["CRITDIFF_SWEEP_TEST_TAG"] = tag
    return env


def _tagged(tag: str) -> list[int]:
    """Living processes whose environment holds ``CRITDIFF_SWEEP_TEST_TAG=tag`` (a /proc scan)."""
    needle = f"CRITDIFF_SWEEP_TEST_TAG={tag}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
            with open(f"/proc/{name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env and state != b"Z":
            found.append(int(name))
    return found


def _wait(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _spec_file(folder, jobs: list[dict], name: str = "faults") -> str:
    path = folder / "spec.json"
    path.write_text(json.dumps({"name": name, "jobs": jobs}))
    return str(path)


# -- a killed worker ---------------------------------------------------------------------------------------------
def test_a_killed_pool_worker_loses_only_its_own_job(here, tmp_path):
    """Two jobs run at once; one worker is SIGKILLed: only its job is an error (no retries asked), the other
    finishes normally with one attempt."""
    spec = {"jobs": [{**_call("killer", here, "killer"), "resources": {"max_retries": 0}},
                     _call("partner", here, "partner")]}
    out = tmp_path / "out"
    summary = run_spec(spec, out, engine="local", workers=2, progress=False, plots=False)
    killer, partner = load_spec(spec).jobs
    assert [name for name, _ in summary["failed"]] == [killer.filename]
    assert "killed by signal 9" in summary["failed"][0][1]
    assert read_result(out, partner)["result"] == {"tag": "partner"}
    log = _log(out)
    assert (log[killer.id]["attempts"], log[partner.id]["attempts"]) == (1, 1)


def test_a_job_that_raises_is_retried_and_its_attempts_recorded(here, tmp_path):
    spec = {"resources": {"retries": 1}, "jobs": [_call("fail_once", here, "once")]}
    out = tmp_path / "out"
    for engine in ("serial", "local"):
        for f in here.glob("started-*"):
            f.unlink()
        summary = run_spec(spec, out / engine, engine=engine, workers=1, progress=False, plots=False)
        (job,) = load_spec(spec).jobs
        assert summary["failed"] == [] and _log(out / engine)[job.id]["attempts"] == 2, engine
        assert "first attempt fails" in (out / engine / "logs" / f"{job.filename[:-5]}.log").read_text()


@pytest.mark.parametrize("engine", ["serial", "local"])
def test_a_job_past_its_timeout_is_stopped_and_recorded(here, tmp_path, engine):
    spec = {"jobs": [{**_call("sleeper", here, "slow", seconds=60), "resources": {"timeout": 0.5}},
                     _call("sleeper", here, "fast", seconds=0)]}
    summary = run_spec(spec, tmp_path / "out", engine=engine, workers=2, progress=False, plots=False)
    assert len(summary["failed"]) == 1 and "timed out after 0.5 s" in summary["failed"][0][1]


# -- no process outlives its command --------------------------------------------------------------------------
def test_no_process_outlives_a_killed_pool_sweep(here):
    """SIGKILL the driver of a process-pool sweep while two jobs run: its forkserver, resource tracker and
    workers are all gone within seconds (they would otherwise sleep 120 s)."""
    spec = _spec_file(here, [_call("sleeper", here, f"s{i}", seconds=120) for i in range(2)])
    tag = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-m", "critdiff_ref.cli", "sweep", spec, "--engine", "local",
                             "--workers", "2", "--out", str(here / "out"), "--quiet"], env=_env(tag),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        started = _wait(lambda: all((here / f"started-s{i}").exists() for i in range(2)), 120)
        assert started, proc.stderr.read().decode() if proc.poll() is not None else "jobs did not start"
        assert len(_tagged(tag)) >= 3  # the driver, the forkserver, two workers (a resource tracker too)
        proc.kill()
        proc.wait()
        assert _wait(lambda: not _tagged(tag), 10), f"left running: {_tagged(tag)}"
    finally:
        for pid in _tagged(tag):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("engine,sig", [("local", "SIGINT"), ("local", "SIGTERM"),
                                        pytest.param("ray", "SIGINT", marks=pytest.mark.slow)])
def test_ctrl_c_keeps_finished_results_and_says_how_to_resume_in_one_line(here, engine, sig):
    """Ctrl-C (SIGINT to the terminal's process group) or SIGTERM to the driver alone (``kill PID``, a
    scheduler's time limit) during a sweep: exit 130, one line on stderr naming what was kept and how to
    resume, no traceback, the finished jobs stored, no process left."""
    if engine == "ray":
        pytest.importorskip("ray")
    jobs = [_call("sleeper", here, "fast0", seconds=0), _call("sleeper", here, "fast1", seconds=0),
            _call("sleeper", here, "slow", seconds=120)]
    spec = _spec_file(here, jobs)
    out = here / "out"
    tag = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-m", "critdiff_ref.cli", "sweep", spec, "--engine", engine,
                             "--workers", "3", "--out", str(out), "--quiet"], env=_env(tag),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        ok = _wait(lambda: (here / "started-slow").exists() and out.is_dir()
                   and len([n for n in os.listdir(out / "results") if n.endswith(".json")]) == 2, 240)
        assert ok, proc.stderr.read().decode() if proc.poll() is not None else "jobs did not finish"
        if sig == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        for pid in _tagged(tag):
            os.kill(pid, signal.SIGKILL)
    lines = stderr.decode().strip().splitlines()
    assert proc.returncode == 130 and len(lines) == 1, stderr.decode()
    assert lines[0].startswith("critdiff sweep: interrupted: kept 2 result(s)") and "resume the 1 left" in lines[0]
    assert _wait(lambda: not _tagged(tag), 20), f"left running: {_tagged(tag)}"
    status = sweep_status(out)
    assert (status["done"], status["failed"], status["pending"]) == (2, 0, 1)


# -- files that used to break every later run ----------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["a list", "no status", "ok without result", "a folder", "cut"])
def test_a_corrupt_result_file_costs_one_line_and_a_rerun(here, tmp_path, damage, capsys):
    spec = {"jobs": [_call("sleeper", here, "a", seconds=0)]}
    out = tmp_path / "out"
    run_spec(spec, out, engine="serial", progress=False, plots=False)
    (job,) = load_spec(spec).jobs
    path = out / "results" / job.filename
    text = path.read_text()
    path.unlink()
    if damage == "a folder":
        path.mkdir()
    else:
        path.write_text({"a list": "[1, 2]", "no status": json.dumps({"id": job.id}), "cut": text[:20],
                         "ok without result": json.dumps({"id": job.id, "status": "ok"})}[damage])
    capsys.readouterr()
    summary = run_spec(spec, out, engine="serial", progress=False, plots=False)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and job.filename in warnings[0] and "runs again" in warnings[0]
    assert (summary["ran"], summary["failed"]) == (1, [])
    assert read_result(out, job)["result"] == {"tag": "a"}


def test_results_and_tables_are_strict_json_with_nulls(here, tmp_path):
    spec = {"jobs": [{"kind": "call", "params": {"function": "sweepjobs:not_finite"}}]}
    out = tmp_path / "out"
    run_spec(spec, out, engine="serial", progress=False, plots=False)

    def strict(text):
        return json.loads(text, parse_constant=lambda token: pytest.fail(f"non-strict JSON token {token}"))

    (job,) = load_spec(spec).jobs
    record = strict((out / "results" / job.filename).read_text())
    assert record["result"] == {"x": None, "y": None, "z": 1.5}
    assert set(record["nulls"]) == {"result.x", "result.y"}
    for name in ("table.json", "index.json", "spec.json"):
        strict((out / name).read_text())
    for line in (out / "log.jsonl").read_text().splitlines():
        strict(line)


# -- user code ---------------------------------------------------------------------------------------------------
def test_a_call_job_id_follows_the_users_own_source(here):
    spec = {"jobs": [{"kind": "call", "params": {"function": "sweepjobs:not_finite"}}]}
    before = load_spec(spec).jobs[0].id
    assert load_spec(spec).jobs[0].id == before
    (here / "sweepjobs.py").write_text(JOBS_MODULE + "\n# edited\n")
    assert load_spec(spec).jobs[0].id != before


@pytest.mark.parametrize("body, message", [
    ("raise RuntimeError('no licence server')", r"importing 'brokenmod' raised RuntimeError: no licence server"),
    ("def f(:\n    pass", r"brokenmod\.py, line 1: syntax error"),
    ("", r"'brokenmod' has no attribute 'f'"),
])
def test_a_user_module_that_does_not_import_is_one_line_before_anything_runs(here, tmp_path, body, message):
    (here / "brokenmod.py").write_text(body + "\n")
    sys.modules.pop("brokenmod", None)
    for kind, key in (("call", "function"), ("validate", "sampler")):
        with pytest.raises(ValueError, match=message) as err:
            run_spec({"jobs": [{"kind": kind, "params": {key: "brokenmod:f"}}]}, tmp_path / "out", engine="serial")
        assert "\n" not in str(err.value) and f"{key}='brokenmod:f'" in str(err.value)
    assert not (tmp_path / "out").exists()
    sys.modules.pop("brokenmod", None)


def test_pool_jobs_import_modules_from_the_current_folder(here, tmp_path):
    assert str(here) not in os.environ.get("PYTHONPATH", "")
    summary = run_spec({"jobs": [_call("sleeper", here, "cwd", seconds=0)]}, tmp_path / "out", engine="local",
                       workers=1, progress=False, plots=False)
    assert summary["failed"] == []


# -- the spec is checked before anything runs ------------------------------------------------------------------------
PHI4 = {"L": 4, "kappa": 0.2, "lam": 0.022}


@pytest.mark.parametrize("params, message", [
    ({"device": "gpu"}, r"'device': must be a torch device"),
    ({"dm_net": "resnet"}, r"'dm_net': must be one of \('auto', "),
    ({"divergence": "stepwise", "dm_net": "unet"}, r"'stepwise' needs dm_net='fourier-local'"),
])
def test_bad_device_and_network_are_refused_by_the_spec_check(params, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        run_spec({"jobs": [{"kind": "phi4", "params": {**PHI4, **params}}]}, tmp_path / "out", engine="serial")
    assert not (tmp_path / "out").exists()


def test_a_stepwise_divergence_is_accepted_as_phi4_accepts_it():
    from critdiff_ref.phi4.dm import DM_NETS

    if "fourier-local" not in DM_NETS:
        pytest.skip("no fourier-local network in this build")
    job = load_spec({"jobs": [{"kind": "phi4", "params": {**PHI4, "divergence": "stepwise",
                                                          "dm_net": "fourier-local"}}]}).jobs[0]
    assert job.params["divergence"] == "stepwise"


def test_a_cuda_job_is_refused_before_running_on_a_machine_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match=r"device='cuda' is not available on this machine"):
        run_spec({"jobs": [{"kind": "phi4", "params": {**PHI4, "device": "cuda"}}]}, tmp_path / "out",
                 engine="serial")
    assert not (tmp_path / "out").exists()


# -- Ray by address -------------------------------------------------------------------------------------------------
def test_an_address_where_nothing_listens_fails_fast_in_one_line_creating_nothing(tmp_path):
    """A closed port is refused by the probe (at most 3 s) before ray.init and before the output folder exists;
    the subprocess timeout guards against the old behaviour (Ray retrying for minutes)."""
    pytest.importorskip("ray")
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"jobs": [{"kind": "phi4", "params": PHI4}]}))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "critdiff_ref.cli", "sweep", str(spec), "--address", "127.0.0.1:1",
                        "--out", str(out)], env=_env(), capture_output=True, text=True, timeout=120)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1, r.stderr
    assert err[0].startswith("critdiff sweep: error: address '127.0.0.1:1': nothing answers at 127.0.0.1:1")
    assert not out.exists()


def test_ray_client_addresses_without_grpc_are_one_line(tmp_path, monkeypatch):
    import importlib.util

    from critdiff_ref.sweep.engines import ray_engine

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "grpc" else real(name, *a))
    with pytest.raises(ValueError, match=r"the Ray client \(ray://\) needs grpcio"):
        ray_engine.connect(None, "ray://127.0.0.1:1")
    assert ray_engine.parse_address("ray://head") == ("head", 10001)
    assert ray_engine.parse_address("10.0.0.1:6380") == ("10.0.0.1", 6380)
    with pytest.raises(ValueError, match=r"expected HOST:PORT"):
        ray_engine.parse_address("head:port")


def test_a_failed_ray_init_is_one_line_and_rays_own_messages_are_held_back(monkeypatch, capfd):
    """Joining a cluster that refuses us (an auth token missing, say) is one line, not Ray's 20."""
    ray = pytest.importorskip("ray")
    from critdiff_ref.sweep.engines import ray_engine

    def refusing_init(**kw):
        for i in range(20):
            print(f"ray says {i}", file=sys.stderr)
        os.write(2, b"ray says from C++\n")
        raise ConnectionError("the cluster requires an auth token\nset RAY_AUTH_TOKEN\n...")

    monkeypatch.setattr(ray, "init", refusing_init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(ValueError) as err:
        ray_engine.connect(None, "auto")
    assert str(err.value) == ("address 'auto': could not join the Ray cluster: ConnectionError: the cluster "
                              "requires an auth token")
    assert "ray says" not in capfd.readouterr().err


# -- the command line ---------------------------------------------------------------------------------------------
def test_ordinary_mistakes_are_one_line_and_help_stays_full(tmp_path, capsys):
    from critdiff_ref.cli import main

    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"jobs": [{"kind": "phi4", "params": PHI4}]}))
    (tmp_path / "afile").write_text("")
    cases = [
        (["sweep", str(tmp_path / "nonexist.toml")], "no such file"),
        (["sweep", str(spec), "--out", str(tmp_path / "afile")], "--out"),
        (["sweep", str(spec), "--out", "/proc/critdiff-out"], "/proc is not writable"),
        (["sweep", str(spec), "kapa=0.3"], "override 'kapa=0.3': no [[jobs]] entry has"),
        (["sweep", "status", str(tmp_path / "nothing")], "no such folder"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("critdiff sweep: error: ") and needle in err[0], (argv, err)
    for argv in (["sweep"], ["sweep", str(spec), "--workers", "0"], ["sweep", str(spec), "--bogus"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith("critdiff sweep: error: "), err
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = capsys.readouterr().out
    assert text.startswith("usage: critdiff sweep") and "--address" in text and "KEY=VALUE" in text


def test_a_broken_pipe_ends_quietly(tmp_path):
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"jobs": [{"kind": "phi4", "params": {"lam": 0.022, "n_traj": 8},
                                          "grid": {"L": list(range(4, 24)), "kappa": {"start": 0.1, "stop": 0.4,
                                                                                     "num": 60}}}]}))
    cmd = (f"{sys.executable} -m critdiff_ref.cli sweep {spec} --dry-run --out {tmp_path / 'o'} | head -1; "
           "echo rc=${PIPESTATUS[0]} >&2")
    r = subprocess.run(["bash", "-c", cmd], env=_env(), capture_output=True, text=True, timeout=300)
    assert r.stdout.startswith("sweep: 1200 jobs") and r.stderr.strip() == "rc=141", r.stderr


def test_status_overrides_and_the_index(here, tmp_path, capsys):
    from critdiff_ref.cli import main

    spec = here / "s.toml"
    spec.write_text(textwrap.dedent(f"""
        name = "st"
        [[jobs]]
        kind = "call"
        params = {{ function = "sweepjobs:sleeper", folder = "{here}", seconds = 0 }}
        grid = {{ tag = ["a", "b", "c"] }}
    """))
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "tag=['a','b']", "--out", str(out), "--engine", "serial", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["sweep", "status", str(out)]) == 0  # the last run: 2 jobs, both done
    assert "st in " in capsys.readouterr().out
    assert main(["sweep", str(spec), "--out", str(out), "--dry-run"]) == 0
    assert "3 jobs, 1 to run" in capsys.readouterr().out  # the full grid reuses the sub-grid's results
    index = json.loads((out / "index.json").read_text())["jobs"]
    assert [(e["varying"], e["state"]) for e in index] == [({"tag": "a"}, "done"), ({"tag": "b"}, "done")]
    assert all(os.path.exists(out / e["file"]) for e in index)
    assert main(["sweep", str(spec), "tag=c", "--out", str(out), "--engine", "serial", "--quiet",
                 "--timeout", "30", "--retries", "1"]) == 0
    job = load_spec(str(spec), ["tag=c"]).jobs[0]
    assert (job.resources.timeout, job.resources.retries) == (None, 0)
    assert load_spec(str(spec), ["resources.timeout=30", "resources.retries=1"]).jobs[0].resources.timeout == 30


@pytest.mark.slow
def test_no_process_outlives_a_killed_embedded_ray_sweep(here):
    """SIGKILL the driver of an embedded Ray cluster while a job runs: the reaper it started kills the
    cluster's processes (GCS, raylet, agents, workers) within seconds. Slow: Ray takes 20-40 s to start here."""
    pytest.importorskip("ray")
    spec = _spec_file(here, [_call("sleeper", here, "r0", seconds=300)])
    tag = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-m", "critdiff_ref.cli", "sweep", spec, "--engine", "ray",
                             "--workers", "1", "--out", str(here / "out"), "--quiet"], env=_env(tag),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        started = _wait(lambda: (here / "started-r0").exists(), 240)
        assert started, proc.stderr.read().decode() if proc.poll() is not None else "the job did not start"
        assert len(_tagged(tag)) >= 4  # driver, reaper, GCS, raylet, worker, ...
        proc.kill()
        proc.wait()
        assert _wait(lambda: not _tagged(tag), 20), f"left running: {_tagged(tag)}"
    finally:
        for pid in _tagged(tag):
            os.kill(pid, signal.SIGKILL)


def test_a_dry_run_makes_the_checks_a_run_makes(tmp_path, capsys):
    from critdiff_ref.cli import main

    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"jobs": [{"kind": "validate", "params": {"sampler": "no_such_module_here:f"}}]}))
    assert main(["sweep", str(spec), "--dry-run"]) == 2
    assert "sampler='no_such_module_here:f': no module named 'no_such_module_here'" in capsys.readouterr().err
    spec.write_text(json.dumps({"jobs": [{"kind": "phi4", "params": PHI4}]}))
    assert main(["sweep", str(spec), "--dry-run", "--address", "127.0.0.1:1", "--out", str(tmp_path / "o")]) == 2
    assert "nothing answers at 127.0.0.1:1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
