"""The Ray paths: stages inside Dataset.map_batches, the runner on Ray, a killed Ray run,
and `ray job submit` against a local head. Ray starts once per session (~15 s)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from chat_server import ChatServer
from filters.text_basic import length_filter, normalize_text
from helpers import corpus, counts, free_port, kill_and_resume, kill_session, run_demo
from schemas.engine.stage import ModelStage, Resources, StageSpec
from schemas.store import Store
from synth.problems import word_problems
from test_stage import Doubler

pytestmark = pytest.mark.ray
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_same_stage_objects_run_in_map_batches(ray_session):
    import ray.data
    t = pa.table({"text": ["  one two three four five ", "", "a b", "x " * 30], "x": [1, 2, 3, 4]})
    direct = length_filter(normalize_text(t))
    ds = ray.data.from_arrow(t).map_batches(normalize_text, batch_format="pyarrow") \
        .map_batches(length_filter, batch_format="pyarrow")
    via_ray = pa.Table.from_pylist(ds.take_all())
    assert via_ray.column("drop_reason").to_pylist() == direct.column("drop_reason").to_pylist()
    assert via_ray.column("n_words").to_pylist() == direct.column("n_words").to_pylist()
    # a model-loading stage runs as actors, built once each from its spec
    spec = StageSpec(Doubler, {"factor": 5})
    out = ray.data.from_arrow(t).map_batches(spec.target, fn_constructor_kwargs=spec.params,
                                             batch_format="pyarrow", concurrency=(1, 2)).take_all()
    assert sorted(r["double"] for r in out) == [5, 10, 15, 20]


def test_ray_executor_matches_local_and_reads_back_as_a_ray_dataset(ray_session, tmp_path):
    src = corpus(tmp_path, limit=150)
    on_ray = run_demo(str(tmp_path / "ray"), src, executor="ray")
    local = run_demo(str(tmp_path / "local"), src, executor="local")
    assert counts(on_ray.accounting) == counts(local.accounting)
    a = Store(str(tmp_path / "ray"))
    b = Store(str(tmp_path / "local"))
    assert sorted(a.read_arrow("docs", ["id"]).column("id").to_pylist()) == \
        sorted(b.read_arrow("docs", ["id"]).column("id").to_pylist())
    ds = a.read_ray(f"docs@{on_ray.snapshot_id}", columns=["id", "n_words"])
    assert ds.count() == on_ray.accounting["kept"]
    assert min(r["n_words"] for r in ds.take_all()) >= 5


def test_a_damaged_input_file_on_ray_fails_naming_it_not_with_a_ray_traceback(ray_session, tmp_path):
    from schemas.engine.inputs import UnreadableInput
    wh = str(tmp_path / "wh")
    run_demo(wh, corpus(tmp_path, limit=100), executor="ray")
    victim = Store(wh).files("docs").column("file_path")[0].as_py().removeprefix("file://")
    data = open(victim, "rb").read()
    open(victim, "wb").write(data[: len(data) // 2])
    with pytest.raises(UnreadableInput) as e:
        run_demo(wh, "docs", output="copy", executor="ray")
    assert type(e.value) is UnreadableInput and os.path.basename(victim) in str(e.value)
    assert "Traceback" not in str(e.value) and Store(wh).versions("copy") == []


class Crasher(ModelStage):
    """A model stage whose worker dies mid-shard, as on a segfault or an OOM kill."""
    name = "crasher"

    def __call__(self, batch):
        os._exit(3)


@pytest.mark.slow  # minutes: `make test-slow` (run by .ci/run)
def test_a_dying_actor_fails_the_run_instead_of_retrying_forever(ray_session, tmp_path):
    """Ray Data's default restarts a dead actor and retries its shard without end (the run never
    returned); ours retries a bounded number of times (a node that dies is survived, see
    test_cluster.py), then fails with ActorDiedError and publishes nothing."""
    import ray.exceptions

    from schemas.engine.runner import Pipeline, RunOptions, run
    from schemas.tables import DOCUMENTS
    wh = str(tmp_path / "wh")
    with pytest.raises(ray.exceptions.ActorDiedError):  # it returns (retrying forever never would)
        run(Pipeline("crash", DOCUMENTS, DOCUMENTS, [normalize_text, StageSpec(Crasher, {})]),
            RunOptions(inputs=[corpus(tmp_path, n_files=2, limit=50)], output="docs", warehouse=wh,
                       executor="ray", progress=False))
    assert Store(wh).versions("docs") == []


def test_a_broken_stage_on_ray_fails_the_run_with_its_cause(ray_session, tmp_path):
    from schemas.engine.runner import Pipeline, RunOptions, run
    from schemas.engine.stage import StageFailed
    from schemas.tables import DOCUMENTS
    from slow_pipeline import pause
    pipeline = Pipeline("broken", DOCUMENTS, DOCUMENTS, [normalize_text, pause.configure(seconds=-1)])
    opts = RunOptions([corpus(tmp_path, limit=60)], "docs", str(tmp_path / "wh"), executor="ray", progress=False)
    with pytest.raises(StageFailed, match="stage 'pause' failed on") as e:
        run(pipeline, opts)
    assert type(e.value) is StageFailed and Store(str(tmp_path / "wh")).versions("docs") == []


@pytest.mark.slow  # minutes: `make test-slow` (run by .ci/run)
def test_killed_ray_run_resumes_and_matches(tmp_path):
    kill_and_resume(tmp_path, executor="ray", pause=0.8)


# Level-1 problems and 60 SFT steps: enough for the toy model to state some right answers, so round 1
# has real preference pairs (at 20 steps on all levels its only "correct" sample was word salad that
# the old last-number fallback accepted).
# 80 steps and 480 samples: about 14 correct and 50 pairs, so round 1 has data to train on
# whatever the sampler's draws (at 40 steps and 80 samples, 0 to 2 were correct)
TOY_LOOP = ["--rounds", "1", "--sft-steps", "80", "--eval-every", "20", "--round-tokens", "8000",
            "--teacher-problems", "300", "--eval-problems", "40", "--dev-problems", "20", "--sample-problems", "60",
            "--k", "8", "--dpo", "--dpo-steps", "3", "--min-pairs", "1", "--quiet", "--threads", "1", "--levels", "1",
            "--eval-k", "2"]


def readme_ray_start() -> list[str]:
    """The README's `ray start --head` command (Running on Ray), as argv."""
    import re
    import shlex
    text = open(os.path.join(REPO, "README.md")).read()
    section = text[text.index("## Running on Ray"):]
    cmd = re.search(r"^ray start --head(?:.*\\\n)*.*$", section, re.M).group(0)
    return shlex.split(cmd.replace("\\\n", " "))


PORT_FLAGS = {"--port", "--dashboard-port", "--dashboard-agent-listen-port", "--ray-client-server-port",
              "--metrics-export-port"}


@pytest.mark.slow  # minutes: `make test-slow` (run by .ci/run)
def test_ray_job_submit_against_a_local_head(tmp_path):
    """The documented cluster path: the README's `ray start --head`, then `ray job submit --working-dir .`.

    Its port numbers are swapped for free ones (CI may run beside another Ray on the README's);
    its flags are used as written: every default port Ray would otherwise take is named."""
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"], "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    argv = readme_ray_start()
    assert PORT_FLAGS <= set(argv), f"README's ray start lacks {PORT_FLAGS - set(argv)}"
    readme_dash = argv[argv.index("--dashboard-port") + 1]
    readme = open(os.path.join(REPO, "README.md")).read()
    submits = [line for line in readme.splitlines() if line.startswith("ray job submit")]
    assert submits and all(f"--address http://127.0.0.1:{readme_dash} " in line for line in submits), submits
    client = int(argv[argv.index("--ray-client-server-port") + 1])
    assert not 10002 <= client <= 19999  # outside Ray's default worker port range
    temp = f"/tmp/rt{os.getpid()}"
    ports = {flag: str(free_port()) for flag in PORT_FLAGS}
    dash = ports["--dashboard-port"]
    for flag, value in [*ports.items(), ("--temp-dir", temp)]:
        argv[argv.index(flag) + 1] = value
    head = subprocess.Popen([os.path.join(bin_dir, "ray"), *argv[1:], "--block"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wh = str(tmp_path / "warehouse")
        submit = [os.path.join(bin_dir, "ray"), "job", "submit", "--address", f"http://127.0.0.1:{dash}",
                  "--working-dir", ".", "--", "python"]
        deadline = time.time() + 120
        while True:  # the Jobs API answers once the dashboard is up
            res = subprocess.run(submit + ["pipelines/demo.py", "--warehouse", wh, "--quiet"], cwd=REPO, env=env,
                                 capture_output=True, text=True, timeout=300)
            if res.returncode == 0 or time.time() > deadline or "Connection" not in res.stdout + res.stderr:
                break
            time.sleep(2)
        assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
        assert "published documents_demo@" in res.stdout
        vs = Store(wh).versions("documents_demo")
        assert len(vs) == 1 and vs[0]["pipeline"] == "demo"
        assert Store(wh).properties("documents_demo")["accounting"]["kept"] > 400
        # the text-curation pipeline, models and all, through the same Jobs API
        res = subprocess.run(submit + ["pipelines/text_curation.py", "--warehouse", wh, "--quiet"], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=400)
        assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
        props = Store(wh).properties("documents")
        assert props["pipeline"] == "text_curation" and props["accounting"]["rejects_by_reason"]["contaminated"] == 3
        for noise in ("max_restarts > 0", "Progress bars disabled", "Ray\nonly requests", "only requests 0.0B"):
            # Ray's log lines a user cannot act on
            assert noise not in res.stdout + res.stderr
        # and the speech pipeline: TTS engines and Whisper inside Ray actors of a submitted job
        res = subprocess.run(submit + ["pipelines/speech_sft.py", "--warehouse", wh, "--quiet"], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=400)
        assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
        props = Store(wh).properties("speech_sft")
        assert props["pipeline"] == "speech_sft" and props["accounting"]["kept"] >= 30
        # reasoning data: rejection sampling in Ray actors against an OpenAI-compatible server
        probs = word_problems(12, seed=4)
        path = tmp_path / "problems.jsonl"
        path.write_text("".join(json.dumps(p) + "\n" for p in probs))
        with ChatServer({p["problem"]: p["answer"] for p in probs}) as srv:
            res = subprocess.run(submit + ["pipelines/reasoning_data.py", "--warehouse", wh, "--quiet", "--input",
                                           str(path), "--generator", f"openai:{srv.url}#m", "--system", "",
                                           "--k", "3"], cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
        assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
        assert Store(wh).properties("reasoning")["accounting"]["kept"] == 12
        assert Store(wh).read_arrow("preferences").num_rows > 0
        # and the closed loop, at toy size: train, sample with the built-in model in actors, RFT, DPO
        res = subprocess.run(submit + ["pipelines/reasoning_loop.py", "--warehouse", wh, *TOY_LOOP], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=400)
        assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
        assert "held-out exact match" in res.stdout
        assert {"model-round-0", "model-round-1"} <= set(Store(wh).table("models").metadata.refs)
        # the same seed in process on the local executor: the same checkpoints and held-out outcomes
        # (a sample depends on its own request, not on how an executor batched or raced the rows)
        from pipelines.reasoning_loop import run_main
        local = str(tmp_path / "local")
        assert run_main(["--warehouse", local, "--executor", "local", *TOY_LOOP]) == 0

        def numbers(w):
            ids = {m["stage"] + str(m["round"]): m["id"] for m in Store(w).read_arrow("models").to_pylist()}
            rec = json.load(open(f"{w}/_loop/loop-s0/record.json"))
            return ids, [(r["loop"]["outcomes"], r.get("verified_rows")) for r in rec["rounds"]]
        assert numbers(wh) == numbers(local) and numbers(local)[1][1][1] > 0
    finally:
        head.kill()
        kill_session(head.pid)
        head.wait()
        subprocess.run(["rm", "-rf", temp])


@pytest.mark.slow  # minutes: `make test-slow` (run by .ci/run)
def test_text_curation_on_ray_matches_in_process(ray_session, tmp_path):
    """Dedup clusters from the Ray Data shuffle equal the polars ones; actors load each model once."""
    from pipelines.script import options
    from pipelines.text_curation import build, parser
    from schemas.engine.runner import run
    results = {}
    for executor in ("ray", "local"):
        wh = str(tmp_path / executor)
        args = parser().parse_args(["--warehouse", wh, "--executor", executor, "--quiet"])
        pipeline, inputs = build(args)
        r = run(pipeline, options(args, inputs))
        results[executor] = (r, sorted(Store(wh).read_arrow("documents", ["id"]).column("id").to_pylist()))
    (ray_r, ray_ids), (local_r, local_ids) = results["ray"], results["local"]
    assert counts(ray_r.accounting) == counts(local_r.accounting)
    assert ray_ids == local_ids


class SlowModel(ModelStage):
    """An actor stage that takes its time per shard: the stage the reader must not wait for."""
    name = "slow_model"
    resources = Resources(cpus=0.5, actors=(1, 1))

    def __init__(self, seconds: float = 0.6):
        self.seconds = seconds

    def __call__(self, batch):
        time.sleep(self.seconds)
        return batch


def test_stages_are_operators_that_stream_past_a_slow_stage(ray_session, tmp_path):
    """An operator per stage where the needs differ, with its resources in lineage; the reader
    runs ahead of a slow actor stage (one actor, so the stage is the bottleneck) instead of
    waiting for it."""
    from filters.text_basic import length_filter
    from schemas.engine.runner import Pipeline, RunOptions, run
    from schemas.engine.stage import Resources
    from schemas.tables import DOCUMENTS
    SlowModel.resources = Resources(cpus=0.5, actors=(1, 1))
    wh = str(tmp_path / "wh")
    pipeline = Pipeline("stream", DOCUMENTS, DOCUMENTS,
                        [normalize_text, StageSpec(SlowModel, {"seconds": 0.6}), length_filter.configure(min_words=3)])
    r = run(pipeline, RunOptions([corpus(tmp_path, n_files=8, limit=20)], "docs", wh, executor="ray",
                                 progress=False, resources={"slow_model": {"batch_rows": 1000}}))
    lin = Store(wh).properties(f"docs@{r.snapshot_id}")
    ops = {o["operator"]: o for o in lin["execution"]["operators"]}
    assert list(ops) == ["read", "normalize_text", "slow_model", "length_filter", "write"]
    assert ops["slow_model"]["kind"] == "actor" and ops["slow_model"]["actors"] == [1, 1]
    assert ops["slow_model"]["batch_rows"] == 1000 and ops["normalize_text"]["kind"] == "task"
    assert [s["stage"] for s in lin["accounting"]["stages"]] == ["read", "normalize_text", "slow_model",
                                                                "length_filter", "write"]
    slow = next(s for s in lin["accounting"]["stages"] if s["stage"] == "slow_model")
    assert slow["seconds"] >= 0.6 * 8 * 0.9  # where the time went
    # Read from the markers' timelines: by the time the slow stage finished its third shard, the
    # reader had read at least five (it streams ahead, bounded by Ray Data's backpressure; in
    # lockstep it would have read three or four). Reads come ~0.2 s apart (Ray Data's scheduling
    # loop), the slow stage takes 0.6 s a shard: a margin of about a second.
    markers = [json.loads(p.read_text()) for p in (Path(wh).rglob("_markers/*.json"))]
    assert len(markers) == 8
    third_slow_end = sorted(m["timeline"]["slow_model"][1] for m in markers)[2]
    read_before = sum(m["timeline"]["read"][1] <= third_slow_end for m in markers)
    assert read_before >= 5, [m["timeline"] for m in markers]


def test_resources_errors_are_one_line(tmp_path):
    """Unknown stage, bad values: the script exits with one line, before anything runs."""
    for bad, expect in [("nosuch=cpus:1", "no stage named nosuch"), ("normalize_text=gpus:x", "bad value for gpus"),
                        ("normalize_text=actors:3-1", "bad value for actors"), ("length_filter", "expected STAGE=")]:
        proc = subprocess.run([sys.executable, "tests/slow_pipeline.py", "--input", corpus(tmp_path, limit=5),
                               "--warehouse", str(tmp_path / "wh"), "--executor", "local", "--quiet",
                               "--resources", bad], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        assert proc.returncode != 0 and expect in proc.stderr, (bad, proc.stderr[-500:])
        assert "Traceback" not in proc.stderr


def test_a_stage_that_needs_a_gpu_fails_before_any_work_on_a_cpu_cluster(ray_session, tmp_path):
    from schemas.engine.runner import Pipeline, RunOptions, run
    from schemas.engine.stage import StageFailed
    from schemas.tables import DOCUMENTS
    wh = str(tmp_path / "wh")
    with pytest.raises(StageFailed, match="needs 0.5 GPU per worker and the Ray cluster has none"):
        run(Pipeline("gpu", DOCUMENTS, DOCUMENTS, [normalize_text]),
            RunOptions([corpus(tmp_path, limit=5)], "docs", wh, executor="ray", progress=False,
                       resources={"normalize_text": {"gpus": 0.5}}))
    assert Store(wh).versions("docs") == []


@pytest.mark.slow  # minutes: `make test-slow` (run by .ci/run)
def test_dedup_shuffle_on_ray_equals_the_in_process_one(ray_session, tmp_path, monkeypatch):
    """Large corpora cluster through Ray Data's groupby; small ones in-process with polars: the
    same clusters and the same representatives either way."""
    import pyarrow.parquet as pq

    import filters.dedup as dedup
    from pipelines.demo_corpus import docstrings
    texts = [d["text"] for d in docstrings(limit=200) if len(d["text"].split()) > 20][:30]
    texts += texts[:5] + [t.replace(t.split()[7], "changed", 1) for t in texts[5:10]]
    files = []
    for part in range(3):
        keys = [f"s{part}:{i}" for i in range(len(texts))][part::3]
        path = tmp_path / f"sig{part}.parquet"
        pq.write_table(dedup.signature_table(texts[part::3], keys), path)
        files.append(str(path))
    local = dedup.find_duplicates(files, "local")
    monkeypatch.setattr(dedup, "RAY_SHUFFLE_ROWS", 0)
    on_ray = dedup.find_duplicates(files, "ray")
    key = lambda t: sorted(zip(*[t.column(c).to_pylist() for c in ("_rowkey", "cluster", "reason")]),
                           key=lambda r: r[0])
    assert key(on_ray) == key(local) and sum(r is not None for r in local.column("reason").to_pylist()) >= 5
