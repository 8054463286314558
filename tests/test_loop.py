"""The closed loop at toy size, in process: tables and checkpoints tagged by round, lineage both
ways, a twin-free held-out set, a compute-matched control, and the same numbers on a rerun."""
import json

import pytest
from click.testing import CliRunner

from model import checkpoint
from pipelines.cli import main as curate
from pipelines.reasoning_loop import run_main
from schemas.store import Store
from test_ray import TOY_LOOP


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    wh = str(tmp_path_factory.mktemp("loop") / "wh")
    assert run_main(["--warehouse", wh, "--executor", "local", *TOY_LOOP]) == 0
    return wh, json.load(open(f"{wh}/_loop/loop-s0/record.json"))


def test_toy_loop_versions_and_lineage(toy):
    wh, record = toy
    assert [r["round"] for r in record["rounds"]] == [0, 1]
    r1 = record["rounds"][1]
    assert r1["loop"]["n"] == r1["control"]["n"] == record["heldout"]["n"] > 0
    assert r1["tokens"] > 0 and abs(r1["control_tokens"] - r1["tokens"]) <= 0.25 * r1["tokens"]  # compute-matched
    assert record["heldout"]["twins_in_training"] == 0
    assert record["ablation"]["unfiltered_rows"] > record["ablation"]["filtered_rows"]   # the filter removed slips
    assert set(record["profile"]) >= {"tables", "training", "sampling", "evaluation"}
    store = Store(wh)
    # held-out problems never trained on
    pool = set(store.read_arrow("loop_problems@pool", columns=["id"]).column("id").to_pylist())
    held = set(store.read_arrow("loop_heldout@heldout", columns=["id"]).column("id").to_pylist())
    assert not pool & held
    for table, tags in (("loop_sft", {"sft-round-0", "sft-round-1"}), ("loop_preferences", {"dpo-round-1"}),
                        ("models", {"model-round-0", "model-round-1", "model-unfiltered", "control-round-1"})):
        assert tags <= set(store.table(table).metadata.refs), table
    # lineage both ways: the checkpoint names the table versions; the models table names the checkpoint
    models = store.read_arrow("models").to_pylist()
    final = [m for m in models if m["round"] == 1 and m["stage"] == "dpo"][0]
    meta = checkpoint.meta(final["path"])
    assert meta["id"] == final["id"] and any(t.startswith("loop_preferences@") for t in meta["trained_on"])
    assert store.properties("loop_sft@sft-round-1")["inputs"]["tables"][0].startswith("loop_reasoning@")
    res = CliRunner().invoke(curate, ["--warehouse", wh, "versions", "models"])
    assert res.exit_code == 0 and "model-round-1" in res.output


def test_same_seed_same_threads_same_numbers(toy):
    wh, first = toy
    assert run_main(["--warehouse", wh, "--executor", "local", "--run", "again", *TOY_LOOP]) == 0
    again = json.load(open(f"{wh}/_loop/again/record.json"))
    ids = lambda run: {m["stage"] + str(m["round"]): m["id"] for m in Store(wh).read_arrow("models").to_pylist()  # noqa: E731
                       if m["run"] == run}
    assert ids("loop-s0") == ids("again")                 # bit-identical weights, every checkpoint
    for a, b in zip(first["rounds"], again["rounds"]):
        assert a["loop"]["outcomes"] == b["loop"]["outcomes"] and a["control"]["outcomes"] == b["control"]["outcomes"]
        assert a["loop"].get("sampled") == b["loop"].get("sampled")
