"""Shared test helpers: a small real corpus and a demo-pipeline run."""
import json
import os

from filters.text_basic import length_filter, normalize_text
from pipelines.demo_corpus import write_demo_corpus
from schemas.engine.runner import Pipeline, RunOptions, run
from schemas.tables import DOCUMENTS


def corpus(tmp_path, n_files=4, limit=200):
    d = os.path.join(str(tmp_path), "corpus")
    write_demo_corpus(d, n_files=n_files, limit=limit)
    return d


def demo_pipeline(min_words=5, stages=None):
    stages = stages if stages is not None else [normalize_text, length_filter.configure(min_words=min_words)]
    return Pipeline("demo", DOCUMENTS, DOCUMENTS, stages)


def run_demo(warehouse, inputs, executor="local", min_words=5, **kw):
    opts = RunOptions(inputs=[inputs] if isinstance(inputs, str) else inputs, output=kw.pop("output", "docs"),
                      warehouse=warehouse, executor=executor, progress=False, **kw)
    return run(demo_pipeline(min_words), opts)


def jsonl(path, docs, extra=b""):
    with open(path, "wb") as f:
        for d in docs:
            f.write(json.dumps(d).encode() + b"\n")
        f.write(extra)
    return str(path)


def kill_session(sid):
    """SIGKILL every process of session `sid` (a Ray we started, never anyone else's)."""
    import signal
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # field 6 of stat: session id
                os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _markers(warehouse):
    return [f for d, _, fs in os.walk(warehouse) for f in fs if f.endswith(".json") and "_markers" in d]


def kill_and_resume(tmp_path, executor, pause=0.3, n_files=10):
    """SIGKILL a run mid-way: no version is visible; the rerun skips the done shards and
    publishes once; the result equals an uninterrupted run's, row for row."""
    import signal
    import subprocess
    import sys
    import time

    from schemas.store import Store

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = corpus(tmp_path, n_files=n_files, limit=300)
    killed_wh, clean_wh = str(tmp_path / "killed"), str(tmp_path / "clean")
    cmd = [sys.executable, "tests/slow_pipeline.py", "--input", src, "--quiet", "--pause", str(pause),
           "--num-cpus", "2"]
    proc = subprocess.Popen(cmd + ["--executor", executor, "--warehouse", killed_wh], cwd=repo,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = 0
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        seen = len(_markers(killed_wh))
        if seen >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    kill_session(proc.pid)
    proc.wait()
    assert seen >= 3, f"the run ended before the kill: {proc.stderr.read().decode()[-2000:]}"
    assert Store(killed_wh).versions("slow_docs") == []  # nothing partial is visible
    n_done = len(_markers(killed_wh))
    assert 3 <= n_done < n_files
    rerun = subprocess.run(cmd + ["--executor", executor, "--warehouse", killed_wh], cwd=repo,
                           capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming run" in rerun.stderr
    assert f"{n_files - n_done} processed, {n_done} resumed" in rerun.stdout
    clean = subprocess.run(cmd + ["--executor", "local", "--warehouse", clean_wh], cwd=repo,
                           capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr[-3000:]
    got, want = Store(killed_wh), Store(clean_wh)
    assert len(got.versions("slow_docs")) == 1 and len(got.versions("slow_docs_rejects")) == 1
    for table in ("slow_docs", "slow_docs_rejects"):
        g = got.read_arrow(table, ["id"]).column("id").to_pylist()
        w = want.read_arrow(table, ["id"]).column("id").to_pylist()
        assert sorted(g) == sorted(w) and len(g) > 0
    ids = got.read_arrow("slow_docs", ["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids))  # no row written twice
    assert counts(got.properties("slow_docs")["accounting"]) == counts(want.properties("slow_docs")["accounting"])


def counts(accounting: dict) -> dict:
    """Accounting without the worker seconds (which differ between any two runs)."""
    return {**accounting, "stages": [{k: v for k, v in s.items() if k != "seconds"} for s in accounting["stages"]]}
