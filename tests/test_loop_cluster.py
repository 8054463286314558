"""The closed loop submitted to the local multi-node cluster (issue 26): `ray job submit
--working-dir . -- python pipelines/reasoning_loop.py ...` at toy size (tests/test_ray.py's
TOY_LOOP without DPO, the ablation or the ceiling arm), with `--train-workers 1` so round 1's
SFT (loop and control) runs on a Ray Train worker of the cluster. The job succeeds, the warehouse
has the loop's tables, `models` has the round-0 and round-1 checkpoints (Ray Train's for round 1,
in-process for round 0), and the run's record has round 1 with loop and control accuracies."""
import json
import os
import subprocess
import sys

import pytest

from localcluster import head_cpu_gpu
from schemas.store import Store
from test_ray import TOY_LOOP

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAY = os.path.join(os.path.dirname(sys.executable), "ray")
# The smallest loop that still runs round 0 and one loop round: no DPO, no ablation, no ceiling arm.
def _without(argv, flags, valued):
    out, skip = [], False
    for x in argv:
        if skip:
            skip = False
        elif x in valued:
            skip = True
        elif x not in flags:
            out.append(x)
    return out


LOOP = _without(TOY_LOOP, {"--dpo"}, {"--dpo-steps", "--min-pairs"})


@pytest.fixture(scope="module")
def cluster():
    with head_cpu_gpu(f"/tmp/rlc{os.getpid()}") as c:
        yield c


@pytest.mark.slow
@pytest.mark.ray
def test_the_closed_loop_runs_as_a_submitted_job_with_ray_train_on_the_cluster(cluster, tmp_path):
    assert "--rounds" in LOOP and "--dpo" not in LOOP and "--min-pairs" not in LOOP
    wh = str(tmp_path / "warehouse")
    cmd = [RAY, "job", "submit", "--address", cluster.dashboard, "--working-dir", ".", "--",
           "python", "pipelines/reasoning_loop.py", "--warehouse", wh, *LOOP,
           "--no-ablation", "--no-ceiling", "--workers", "1", "--train-workers", "1"]
    res = subprocess.run(cmd, cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=1500)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "succeeded" in out, out[-2000:]          # `ray job submit` waits and says how the job ended
    assert "held-out exact match" in res.stdout

    store = Store(wh)
    for table, tags in (("loop_problems", {"pool"}), ("loop_heldout", {"heldout"}),
                        ("loop_sft", {"sft-round-0", "sft-round-1"}),
                        ("models", {"model-round-0", "model-round-1", "control-round-1"})):
        assert tags <= set(store.table(table).metadata.refs), (table, store.table(table).metadata.refs)
    pool = set(store.read_arrow("loop_problems@pool", columns=["id"]).column("id").to_pylist())
    held = set(store.read_arrow("loop_heldout@heldout", columns=["id"]).column("id").to_pylist())
    assert pool and held and not pool & held

    from model import checkpoint
    models = store.read_arrow("models").to_pylist()
    by_round = {}
    for m in models:
        by_round.setdefault(m["round"], []).append(m)
    assert {0, 1} <= set(by_round), [(m["round"], m["stage"]) for m in models]
    for m in by_round[0] + by_round[1]:
        assert os.path.exists(m["path"]) and checkpoint.meta(m["path"])["id"] == m["id"], m
    # round 1's SFT ran on Ray Train on this cluster; round 0 stays in process
    r1 = [checkpoint.meta(m["path"]) for m in by_round[1] if m["stage"] != "dpo"]
    assert r1 and all(meta.get("trainer") == "ray-train" and meta.get("train_workers") == 1 for meta in r1), r1
    nodes = {n.short for n in cluster.nodes}
    assert all(set(meta["train_nodes"]) and all(n[:12] in nodes for n in meta["train_nodes"]) for meta in r1), \
        ([meta["train_nodes"] for meta in r1], nodes)
    assert all(checkpoint.meta(m["path"]).get("trainer") != "ray-train" for m in by_round[0])

    record = json.load(open(f"{wh}/_loop/loop-s0/record.json"))
    assert [r["round"] for r in record["rounds"]] == [0, 1]
    round1 = record["rounds"][1]
    for arm in ("loop", "control"):
        acc = round1[arm]["accuracy"]
        assert isinstance(acc, float) and 0.0 <= acc <= 1.0, (arm, round1[arm])
        assert round1[arm]["n"] == record["heldout"]["n"] > 0
    assert round1["tokens"] > 0 and record["heldout"]["twins_in_training"] == 0
