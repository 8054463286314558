"""The closed loop at toy size, in process: tables and checkpoints tagged by round, lineage both ways."""
import json

from click.testing import CliRunner

from model import checkpoint
from pipelines.cli import main as curate
from pipelines.reasoning_loop import run_main
from schemas.store import Store
from test_ray import TOY_LOOP


def test_toy_loop_versions_and_lineage(tmp_path):
    wh = str(tmp_path / "wh")
    assert run_main(["--warehouse", wh, "--executor", "local", *TOY_LOOP]) == 0
    record = json.load(open(f"{wh}/_loop/loop-s0/record.json"))
    assert [r["round"] for r in record["rounds"]] == [0, 1]
    assert record["rounds"][1]["after_sft"]["n"] == record["heldout"]["n"] > 0
    assert record["ablation"]["unfiltered_rows"] > record["ablation"]["filtered_rows"]   # the filter removed slips
    store = Store(wh)
    # held-out problems never trained on
    pool = set(store.read_arrow("loop_problems@pool", columns=["id"]).column("id").to_pylist())
    held = set(store.read_arrow("loop_heldout@heldout", columns=["id"]).column("id").to_pylist())
    assert not pool & held
    for table, tags in (("loop_sft", {"sft-round-0", "sft-round-1"}), ("loop_preferences", {"dpo-round-1"}),
                        ("models", {"model-round-0", "model-round-1", "model-unfiltered"})):
        assert tags <= set(store.table(table).metadata.refs), table
    # lineage both ways: the checkpoint names the table versions; the models table names the checkpoint
    models = store.read_arrow("models").to_pylist()
    final = [m for m in models if m["round"] == 1 and m["stage"] == "dpo"][0]
    meta = checkpoint.meta(final["path"])
    assert meta["id"] == final["id"] and any(t.startswith("loop_preferences@") for t in meta["trained_on"])
    assert store.properties("loop_sft@sft-round-1")["inputs"]["tables"][0].startswith("loop_reasoning@")
    res = CliRunner().invoke(curate, ["--warehouse", wh, "versions", "models"])
    assert res.exit_code == 0 and "model-round-1" in res.output
