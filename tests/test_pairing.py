"""Issue 27: the current rejects are always the snapshot the current output names, whatever the
interleaving of two runs' commits (kills and reruns, or two configurations running at once)."""
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from helpers import corpus, counts, jsonl, run_demo
from pipelines.cli import main as cli
from schemas.engine.runner import NothingKept
from schemas.store import Store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _demo(wh, src, min_words, failpoint=None):
    env = {**os.environ, "CURATE_FAILPOINT": failpoint or ""}
    return subprocess.run([sys.executable, "pipelines/demo.py", "--input", src, "--executor", "local", "--quiet",
                           "--min-words", str(min_words), "--shard-mb", "0.05", "--warehouse", wh],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=env)


def _table_rows(wh):
    res = CliRunner().invoke(cli, ["--warehouse", wh, "tables"])
    assert res.exit_code == 0, res.output
    rows = {}
    for line in res.output.splitlines():
        cells = [c.strip() for c in line.split("│") if c.strip()]
        if len(cells) >= 3 and cells[0].startswith("documents_demo"):
            rows[cells[0]] = int(cells[2].replace(",", ""))
    return rows


def test_rejects_of_a_run_killed_between_its_commits_stay_paired_after_another_run(tmp_path):
    """R_A, R_B, O_B, O_A: run A killed after its rejects commit, run B (another config) publishes
    both, A's rerun publishes its output. Current output is A's; so must the current rejects be
    (was B's: `curate tables` showed A's kept + B's rejects, more rows than went in)."""
    src = corpus(tmp_path, limit=100)
    wh = str(tmp_path / "wh")
    killed = _demo(wh, src, 5, failpoint="rejects-committed")         # R_A, then SIGKILL
    assert killed.returncode == -9, killed.stderr[-2000:]
    [r_a] = [v["snapshot_id"] for v in Store(wh).versions("documents_demo_rejects")]
    b = _demo(wh, src, 12)                                             # R_B, O_B
    assert b.returncode == 0, b.stderr[-2000:]
    a = _demo(wh, src, 5)                                              # O_A (R_A reused)
    assert a.returncode == 0, a.stderr[-2000:]

    store = Store(wh)
    out = store.properties("documents_demo")
    acc = out["accounting"]
    assert out["rejects_snapshot"] == r_a, "A's rerun did not complete the killed run (its code changed meanwhile?)"
    assert out["config"]["stages"][1]["params"]["min_words"] == 5  # run A's output
    _, rejects_snap = store.snapshot("documents_demo_rejects")
    assert rejects_snap.snapshot_id == out["rejects_snapshot"]
    assert store.properties("documents_demo_rejects")["run_id"] == out["run_id"]
    assert store.read_arrow("documents_demo_rejects").num_rows == acc["rejected"]
    assert store.read_arrow("documents_demo").num_rows == acc["kept"]
    # the rejects table's own newest snapshot is B's, and it is not current
    newest = max(store.versions("documents_demo_rejects"), key=lambda v: v["timestamp_ms"])
    assert newest["run_id"] != out["run_id"] and not newest["current"] and not newest["pending"]
    assert [v["current"] for v in store.versions("documents_demo_rejects")].count(True) == 1
    rows = _table_rows(wh)
    assert rows["documents_demo"] + rows["documents_demo_rejects"] == acc["rows_in"], rows
    stats = CliRunner().invoke(cli, ["--warehouse", wh, "stats", "documents_demo_rejects", "--json"])
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.output)["rows"] == acc["rejected"]
    show = CliRunner().invoke(cli, ["--warehouse", wh, "show", "documents_demo_rejects", "-n", "100000", "-c", "id",
                                    "--json"])
    assert show.exit_code == 0 and len(show.output.splitlines()) == acc["rejected"], show.output[-500:]


def test_a_standalone_rejects_version_is_current_until_an_output_is_committed_after_it(tmp_path, warehouse):
    """Every row rejected: the output is unchanged and the rejects published alone are readable as
    current (the reasons); an output committed afterwards takes its own rejects back."""
    src = corpus(tmp_path, limit=40)
    first = run_demo(warehouse, src)
    bad = jsonl(tmp_path / "bad.jsonl", [], extra=b'{"text": 1}\nnot json\n')
    with pytest.raises(NothingKept):
        run_demo(warehouse, bad)
    store = Store(warehouse)
    assert store.snapshot("docs")[1].snapshot_id == first.snapshot_id
    assert store.read_arrow("docs_rejects").num_rows == 2
    again = run_demo(warehouse, src, min_words=12)
    store = Store(warehouse)
    assert store.snapshot("docs_rejects")[1].snapshot_id == again.rejects_snapshot_id
    assert counts(store.properties("docs_rejects")["accounting"]) == counts(again.accounting)
