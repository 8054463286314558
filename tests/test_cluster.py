"""Pipelines on a multi-node Ray cluster on this machine (issue 12, "multi-node, tested").

A head (1 CPU), a CPU worker node (1 CPU) and a GPU worker node (2 CPUs, one logical GPU: Ray
schedules it without hardware), each its own `ray start --block` with every port named. GPU
stages must run on the GPU node only, CPU stages spread, a worker node killed mid-run must be
survived with the same published result, and `ray job submit` must publish to a warehouse
path given to it. The GPU-on-a-CPU-only-cluster and `--resources` error tests need no cluster."""
import json
import os
import subprocess
import sys
import time

import pytest

from helpers import counts
from localcluster import head_cpu_gpu
from schemas.store import Store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAY = os.path.join(os.path.dirname(sys.executable), "ray")


@pytest.fixture(scope="module")
def cluster():
    with head_cpu_gpu(f"/tmp/rcl{os.getpid()}") as c:
        yield c


def speech_input(directory, n_files=6):
    """A small speech set (speakable and unspeakable queries), dealt into `n_files` shards."""
    from pipelines.demo_corpus import speech_queries
    os.makedirs(directory, exist_ok=True)
    rows = speech_queries(n=8)
    for i in range(n_files):
        with open(os.path.join(directory, f"queries-{i:02d}.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows[i::n_files])
    return str(directory)


@pytest.mark.slow
@pytest.mark.ray
def test_job_submit_runs_gpu_stages_on_the_gpu_node_only(cluster, tmp_path):
    """`ray job submit` of the speech pipeline with `--resources asr=gpus:0.5,actors:1-2`: it
    publishes into the warehouse path given; ASR actors ran on the GPU node and nowhere else,
    with the resources asked for, recorded in lineage; CPU stages used more than one node."""
    from ray.util.state import list_actors
    gpu = cluster.nodes[2]
    src, wh = speech_input(tmp_path / "queries"), str(tmp_path / "warehouse")
    cmd = [RAY, "job", "submit", "--address", cluster.dashboard, "--working-dir", ".", "--",
           "python", "pipelines/speech_sft.py", "--input", src, "--warehouse", wh, "--quiet",
           "--resources", "asr=gpus:0.5,actors:1-2"]
    res = subprocess.run(cmd, cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert "published speech_sft@" in res.stdout

    props = Store(wh).properties("speech_sft")
    ex = props["execution"]
    assert {k: ex["cluster"][k] for k in ("CPU", "GPU")} == {"CPU": 4.0, "GPU": 1.0} and ex["cluster"]["nodes"] == 3
    ops = {o["operator"]: o for o in ex["operators"]}
    assert ops["asr"]["kind"] == "actor" and ops["asr"]["gpus"] == 0.5 and ops["asr"]["actors"] == [1, 2]
    assert ops["asr"]["needs_gpu"] is True                 # asked for: never silently on CPU
    assert ops["asr"]["batch_rows"] == 32                  # the stage's own default, kept
    assert all(o["gpus"] == 0 for name, o in ops.items() if name != "asr")
    placement = ex["placement"]
    n_shards = props["inputs"]["n_shards"]
    assert n_shards == 6
    assert placement["asr"] == {gpu.short: n_shards}, placement  # every shard, on the GPU node only
    spread = {stage: nodes for stage, nodes in placement.items() if stage != "asr" and len(nodes) >= 2}
    assert spread, f"no CPU stage ran on two nodes: {placement}"
    known = {n.short for n in cluster.nodes}
    assert all(set(nodes) <= known for nodes in placement.values()), placement
    # Ray's own record of the actors: the ASR pool's actors sat on the GPU node, 0.5 GPU each
    actors = [a for a in list_actors(address=cluster.dashboard, limit=1000, detail=True,
                                     raise_on_missing_output=False)
              if "Stage_asr" in (a.repr_name or "") or "Stage_asr" in (a.class_name or "")]
    assert 1 <= len(actors) <= 2, actors
    assert {a.node_id for a in actors} == {gpu.node_id}
    assert all(a.required_resources.get("GPU") == 0.5 for a in actors), [a.required_resources for a in actors]
    acc = props["accounting"]
    assert acc["rows_in"] == acc["kept"] + acc["rejected"] and acc["kept"] >= 8


@pytest.mark.slow
@pytest.mark.ray
def test_text_and_reasoning_pipelines_run_as_dags_on_the_cluster(cluster, tmp_path):
    """The text pipeline (dedup's global pass and shuffle on the cluster too) and the reasoning
    pipeline with a local model generator (SmolLM2: its sampler is a GPU stage) through `ray
    job submit`: the sampler's actors sit on the GPU node only, every stage has its operator."""
    from synth.problems import word_problems
    gpu = cluster.nodes[2]
    wh = str(tmp_path / "warehouse")
    submit = [RAY, "job", "submit", "--address", cluster.dashboard, "--working-dir", ".", "--", "python"]
    res = subprocess.run(submit + ["pipelines/text_curation.py", "--warehouse", wh, "--quiet"], cwd=REPO,
                         env=cluster.env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    props = Store(wh).properties("documents")
    ops = [o["operator"] for o in props["execution"]["operators"]]
    assert ops[0] == "read" and ops[-1] == "write"
    assert {"dedup", "quality", "pii"} <= {s for o in ops for s in o.split("+")}  # CPU stages: one pool
    assert props["execution"]["global_passes"][0]["stage"] == "dedup"
    assert props["accounting"]["rejects_by_reason"]["exact_duplicate"] > 0
    assert len({n for nodes in props["execution"]["placement"].values() for n in nodes}) >= 2

    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in word_problems(4, seed=7)))
    res = subprocess.run(submit + ["pipelines/reasoning_data.py", "--warehouse", wh, "--quiet", "--input", str(path),
                                   "--generator", "smollm2", "--k", "2", "--max-tokens", "32"],
                         cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    props = Store(wh).properties("reasoning")
    ex = props["execution"]
    sampler = next(o for o in ex["operators"] if o["operator"] == "cot_sampler")
    assert sampler["kind"] == "actor" and sampler["gpus"] == 1
    assert set(ex["placement"]["cot_sampler"]) == {gpu.short}, ex["placement"]
    assert props["accounting"]["rows_in"] == 4


def _markers(warehouse):
    return [f for d, _, fs in os.walk(warehouse) for f in fs if f.endswith(".json") and "_markers" in d]


@pytest.mark.slow
@pytest.mark.ray
def test_a_worker_node_killed_mid_run_is_survived(cluster, tmp_path):
    """A node joins, takes shards, and is SIGKILLed (raylet, agents, workers) while one of its
    tasks is in flight: Ray retries the lost work on the other nodes, the run completes once,
    and the published tables equal an uninterrupted run's, id for id and count for count."""
    from helpers import corpus
    victim = cluster.add_node("victim", num_cpus=1)
    src = corpus(tmp_path, n_files=12, limit=120)
    cmd = [sys.executable, "tests/slow_pipeline.py", "--input", src, "--quiet", "--pause", "1.0"]
    wh, clean_wh = str(tmp_path / "cluster"), str(tmp_path / "clean")
    env = {**cluster.env, "RAY_ADDRESS": cluster.address}
    proc = subprocess.Popen(cmd + ["--warehouse", wh], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        busy, deadline = [], time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            busy = victim.running_tasks()
            if any("stage_" in t for t in busy):  # the victim is in the middle of a shard's stages
                break
            time.sleep(0.05)
        done_before = len(_markers(wh))
        victim.kill()
        killed_at = time.time()
        assert any("stage_" in t for t in busy), f"no task reached the victim node: {busy}; {proc.poll()}"
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-4000:]
    assert "12 processed, 0 resumed" in out, out  # one run, no rerun needed
    assert done_before < 12
    print(f"node killed with {done_before} of 12 shards done; the run finished {time.time() - killed_at:.1f}s later")

    clean = subprocess.run(cmd + ["--executor", "local", "--warehouse", clean_wh], cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr[-3000:]
    got, want = Store(wh), Store(clean_wh)
    assert len(got.versions("slow_docs")) == 1
    for table in ("slow_docs", "slow_docs_rejects"):
        g = got.read_arrow(table, ["id"]).column("id").to_pylist()
        w = want.read_arrow(table, ["id"]).column("id").to_pylist()
        assert sorted(g) == sorted(w) and len(g) == len(set(g)) > 0
    assert counts(got.properties("slow_docs")["accounting"]) == counts(want.properties("slow_docs")["accounting"])
    assert len(_markers(wh)) == 12  # a shard retried rewrote its own marker, no stray one


# ---- no cluster needed: resources that cannot be met, and bad `--resources` -----------------------
def _walk(warehouse):
    return [os.path.join(d, f) for d, _, fs in os.walk(warehouse) for f in fs]


@pytest.mark.ray
def test_a_gpu_stage_on_a_cpu_only_cluster_fails_before_any_work(ray_session, tmp_path, capsys, monkeypatch):
    """Asked for a GPU (`--resources asr=gpus:1`) where Ray has none: the script fails at once
    with one line naming the stage and the way out; no shard was sent through any operator (so
    no TTS ran), no shard was written."""
    from pipelines.script import main
    from pipelines.speech_sft import build, parser
    from schemas.engine import execute as ex
    streamed, real_stream = [], ex._stream

    def stream(shards, *args, **kwargs):  # every shard an operator (read, TTS, ...) sees passes here first
        streamed.append([s.key for s in shards])
        return real_stream(shards, *args, **kwargs)
    monkeypatch.setattr(ex, "_stream", stream)
    wh = str(tmp_path / "wh")
    code = main(build, parser(), ["--input", speech_input(tmp_path / "q"), "--warehouse", wh, "--quiet",
                                  "--resources", "asr=gpus:1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == ("error: stage 'asr' needs 1 GPU per worker and the Ray cluster has none; run it on a cluster "
                   "with GPUs or set --resources asr=gpus:0 to run it on CPU"), err
    assert streamed == []  # failed while planning, before any shard was read
    assert not [f for f in _walk(wh) if f.endswith(".parquet") or "_markers" in f]
    assert Store(wh).versions("speech_sft") == []


@pytest.mark.ray
def test_a_gpu_stage_after_a_global_pass_fails_before_the_pass(ray_session, tmp_path):
    """The check covers every stage, not only those before dedup: dedup's signature pass over
    every shard must not run when a later stage can never be scheduled."""
    from filters.dedup import Dedup
    from filters.text_basic import length_filter, normalize_text
    from helpers import corpus
    from schemas.engine.runner import Pipeline, RunOptions, run
    from schemas.engine.stage import StageFailed, StageSpec
    from schemas.tables import DOCUMENTS
    wh = str(tmp_path / "wh")
    pipeline = Pipeline("gpu_after_dedup", DOCUMENTS, DOCUMENTS, [normalize_text, StageSpec(Dedup, {}), length_filter])
    opts = RunOptions([corpus(tmp_path, n_files=2, limit=40)], "docs", wh, executor="ray", progress=False,
                      resources={"length_filter": {"gpus": 1}})
    with pytest.raises(StageFailed, match="stage 'length_filter' needs 1 GPU per worker"):
        run(pipeline, opts)
    assert not [f for f in _walk(wh) if "_global" in f or f.endswith(".parquet") and "/data/" in f]


def _script(*args, timeout=120, ray_tmpdir=None):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    if ray_tmpdir:  # where an embedded Ray would put its session directory
        env["RAY_TMPDIR"] = ray_tmpdir
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("spec,message", [
    ("nope=gpus:1", "error: --resources: no stage named nope; this pipeline's stages: extract_turns, "
                    "select_speakable, language, mark_duplicate_ids, tts, check_audio, asr, wer_filter, "
                    "format_speech_sample"),
    ("asr=gpus:lots", "error: --resources 'asr=gpus:lots': bad value for gpus: 'lots'"),
    ("asr=gpus:-1", "error: --resources 'asr=gpus:-1': bad value for gpus: '-1'"),
    ("asr=gpus:nan", "error: --resources 'asr=gpus:nan': bad value for gpus: 'nan'"),
    ("asr=gpus:1.5", "error: --resources 'asr=gpus:1.5': bad value for gpus: '1.5' (a share below 1 or a whole "
                     "number of GPUs)"),
    ("asr=batch:0", "error: --resources 'asr=batch:0': bad value for batch: '0'"),
    ("asr=actors:3-1", "error: --resources 'asr=actors:3-1': bad value for actors: '3-1'"),
    ("asr=memory:4", "error: --resources 'asr=memory:4': unknown key 'memory' (cpus, gpus, actors, batch)"),
    ("gpus:1", "error: --resources 'gpus:1': expected STAGE=key:value,... (e.g. asr=gpus:0.5,actors:1-4)"),
    ("json-bad", "error: --resources {path}: asr: bad value for gpus: 'lots'"),
    ("json-missing", "error: --resources {path}: no such file"),
])
def test_resources_errors_are_one_line(tmp_path, spec, message):
    """Each mistake in `--resources` ends the script with one line saying what is wrong, before
    Ray starts or any shard is read."""
    path = str(tmp_path / "res.json")
    if spec == "json-bad":
        with open(path, "w") as f:
            json.dump({"asr": {"gpus": "lots"}}, f)
    if spec.startswith("json"):
        spec, message = path, message.format(path=path)
    wh, ray_tmp = str(tmp_path / "wh"), tmp_path / "raytmp"
    ray_tmp.mkdir()
    res = _script("pipelines/speech_sft.py", "--input", speech_input(tmp_path / "q", n_files=1), "--warehouse", wh,
                  "--quiet", "--resources", spec, ray_tmpdir=str(ray_tmp))
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip() == message, res.stderr[-2000:]
    # No Ray started: an embedded Ray creates its session directory under RAY_TMPDIR first thing.
    assert list(ray_tmp.iterdir()) == []
    assert not [f for f in _walk(wh) if f.endswith(".parquet") or "_markers" in f]


def test_resources_from_a_json_file_and_the_cli_merge(tmp_path):
    from schemas.engine.stage import parse_resources
    path = tmp_path / "res.json"
    path.write_text(json.dumps({"asr": {"gpus": 0.5, "actors": [1, 4], "batch": 16}, "tts": {"cpus": 2}}))
    got = parse_resources([str(path), "asr=actors:2", "tts=actors:3-5"])
    assert got == {"asr": {"gpus": 0.5, "actors": [2, 2], "batch_rows": 16}, "tts": {"cpus": 2.0, "actors": [3, 5]}}
    path.write_text(json.dumps({"asr": {"actors": "1-2"}}))
    assert parse_resources([str(path)]) == {"asr": {"actors": [1, 2]}}
