"""`Store.read_ray` starts Ray the project's way (embedded, 127.0.0.1, auth off, no dashboard),
never with Ray's defaults (token auth, a dashboard, a minute to start), unless Ray is already up
or RAY_ADDRESS names a cluster; and starting Ray starts Ray Data's autoscaling coordinator."""
import json
import os
import subprocess
import sys

import pytest

from helpers import corpus, run_demo
from schemas.store import Store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fake_ray(monkeypatch):
    """ray.init and read_iceberg recorded, nothing started."""
    import ray
    import ray.data

    from schemas.engine import raysession
    calls = {"init": [], "read": []}

    def init(**kw):
        calls["init"].append({**kw, "auth": os.environ.get("RAY_AUTH_MODE")})
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(raysession, "_quiet_ray_data", lambda: None)
    monkeypatch.setattr(raysession, "_start_data_coordinator", lambda: calls["init"].append("coordinator"))
    monkeypatch.setattr(ray.data, "read_iceberg", lambda **kw: calls["read"].append(kw) or "dataset")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    return calls


def test_read_ray_starts_the_embedded_ray(tmp_path, warehouse, fake_ray):
    r = run_demo(warehouse, corpus(tmp_path, n_files=1, limit=30))
    assert Store(warehouse).read_ray("docs", columns=["id"]) == "dataset"
    init, coordinator = fake_ray["init"]
    assert coordinator == "coordinator"                  # Ray Data's coordinator, started with Ray
    assert init["address"] == "local" and init["include_dashboard"] is False
    assert init["_node_ip_address"] == "127.0.0.1" and init["auth"] == "disabled"
    assert init["_system_config"] == {"kill_idle_workers_interval_ms": 0}  # no idle-worker exits (issue 30)
    [read] = fake_ray["read"]
    assert read["snapshot_id"] == r.snapshot_id and read["selected_fields"] == ("id",)


def test_read_ray_joins_ray_address_and_a_running_ray(tmp_path, warehouse, fake_ray, monkeypatch):
    import ray
    run_demo(warehouse, corpus(tmp_path, n_files=1, limit=30))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6390")
    Store(warehouse).read_ray("docs")
    assert [c["address"] for c in fake_ray["init"][:1]] == ["127.0.0.1:6390"]
    assert "include_dashboard" not in fake_ray["init"][0] and fake_ray["init"][1] == "coordinator"
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    Store(warehouse).read_ray("docs")
    assert len(fake_ray["init"]) == 2                    # already up: used as it is
    with pytest.raises(Exception, match="nope"):
        Store(warehouse).read_ray("docs@nope")           # a wrong tag fails before Ray starts
    assert len(fake_ray["init"]) == 2


@pytest.mark.slow
@pytest.mark.ray
def test_read_ray_in_a_fresh_process_reads_the_version_on_an_embedded_ray(tmp_path, warehouse):
    r = run_demo(warehouse, corpus(tmp_path, n_files=1, limit=30))
    code = (
        "import json, os, ray\n"
        "from schemas.store import Store\n"
        "store = Store(%r)\n"
        "store.snapshot('docs')\n"
        "from schemas.engine.raysession import init_ray\n"
        "init_ray()\n"
        # Ray Data's coordinator is up before any dataset: an execution's limits are not zero
        # for the minute its worker took to start beside the stages' pools (the false warning)
        "ray.get_actor('AutoscalingCoordinator', namespace='AutoscalingCoordinator')\n"
        "n = store.read_ray('docs@%s').count()\n"
        "node = ray._private.worker._global_node\n"
        "out = json.dumps({'n': n, 'gcs': ray.get_runtime_context().gcs_address,\n"
        "                  'dashboard': node.address_info.get('webui_url'),\n"
        "                  'auth': os.environ.get('RAY_AUTH_MODE')})\n"
        "ray.shutdown()\n"   # Ray's driver prints forwarded worker logs on stdout until it shuts down
        "print(out)\n") % (warehouse, r.snapshot_id)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env["RAY_DATA_STARVATION_WARNING_DELAY_S"] = "10"    # Ray Data's 60 s, shortened
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["n"] == r.accounting["kept"]
    assert out["gcs"].startswith("127.0.0.1:") and not out["dashboard"] and out["auth"] == "disabled"
    assert "not enough to run any task" not in p.stderr


# ---- a Ray start that times out under load (issue 27) ---------------------------------
TIMED_OUT = ("The current node timed out during startup. This could happen because some of the raylet "
             "failed to startup or the GCS has become overloaded.")


@pytest.fixture
def flaky_ray(monkeypatch):
    """ray.init failing like Ray's on a loaded machine (each failed try leaves a process behind,
    as a half-started GCS does) `fails` times, then starting; sleeps and shutdowns recorded."""
    import ray

    from schemas.engine import raysession
    calls = {"init": 0, "fails": 2, "shutdown": 0, "sleep": [], "left": []}

    def init(**kw):
        calls["init"] += 1
        if calls["init"] <= calls["fails"]:
            calls["left"].append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]))
            raise Exception(TIMED_OUT)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1))
    monkeypatch.setattr(raysession, "_quiet_ray_data", lambda: None)
    monkeypatch.setattr(raysession, "_start_data_coordinator", lambda: True)
    monkeypatch.setattr(raysession, "_sleep", calls["sleep"].append, raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield calls
    for p in calls["left"]:
        p.kill()
        p.wait()


def test_a_ray_start_that_times_out_is_retried_after_the_half_started_one_is_shut_down(flaky_ray):
    from schemas.engine.raysession import init_ray
    assert init_ray(num_cpus=1) == "local"
    assert flaky_ray["init"] == 3 and flaky_ray["shutdown"] == 2
    assert flaky_ray["sleep"] == [5.0, 10.0]                   # backoff between the tries
    assert all(p.poll() is not None for p in flaky_ray["left"])  # what each failed try started is gone


def test_a_ray_start_that_keeps_failing_is_one_line(flaky_ray, tmp_path, capsys):
    from helpers import demo_pipeline
    from pipelines import script
    from schemas.engine.raysession import RayStartFailed, init_ray
    from schemas.engine.runner import RunOptions
    flaky_ray["fails"] = 10**6
    with pytest.raises(RayStartFailed) as e:
        init_ray(num_cpus=1)
    msg = str(e.value)
    assert "\n" not in msg and "could not start the embedded Ray in 3 tries" in msg
    assert "timed out during startup" in msg
    assert "--executor local" in msg
    assert flaky_ray["init"] == 3 and all(p.poll() is not None for p in flaky_ray["left"])
    capsys.readouterr()
    # a pipeline script: `error: …`, exit 2, no traceback
    opts = RunOptions([corpus(tmp_path, n_files=1, limit=20)], "docs", str(tmp_path / "wh"), executor="ray",
                      progress=False)
    assert script.run_and_report(demo_pipeline(), opts, quiet=True) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: could not start the embedded Ray in 3 tries") and "Traceback" not in err
    # the flagship starts Ray itself, first
    from pipelines import flagship
    assert flagship.run_main(["--warehouse", str(tmp_path / "wh2"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: could not start the embedded Ray")
    assert not any("Traceback" in line for line in err)


def test_a_usage_error_from_ray_init_is_not_retried(flaky_ray, monkeypatch):
    import ray

    from schemas.engine.raysession import init_ray

    def init(**kw):
        flaky_ray["init"] += 1
        raise ValueError("When connecting to an existing cluster, num_cpus and num_gpus must not be provided.")
    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(ValueError, match="num_cpus"):
        init_ray(num_cpus=1)
    assert flaky_ray["init"] == 1 and flaky_ray["sleep"] == []
