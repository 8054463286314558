"""Issue 27: the current rejects are always the snapshot the current output names, whatever the
interleaving of two runs' commits (kills and reruns, or two configurations running at once)."""
import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest
from click.testing import CliRunner

from helpers import corpus, counts, jsonl, run_demo
from pipelines.cli import main as cli
from schemas.engine.runner import NothingKept
from schemas.store import Store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _demo_args(wh, src, min_words, mode):
    return [sys.executable, "pipelines/demo.py", "--input", src, "--executor", "local", "--quiet",
            "--min-words", str(min_words), "--shard-mb", "0.05", "--warehouse", wh, "--mode", mode]


def _demo(wh, src, min_words, failpoint=None, mode="overwrite"):
    env = {**os.environ, "CURATE_FAILPOINT": failpoint or ""}
    return subprocess.run(_demo_args(wh, src, min_words, mode), cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=env)


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


# ---- append mode: the rejects an output names are exactly its runs' rejects ------------------
def _ok(proc):
    assert proc.returncode == 0, proc.stderr[-2000:]


def _killed(proc):
    assert proc.returncode == -9, proc.stderr[-2000:]


def _run_versions(store, table, config_min_words):
    """Snapshots of `table` made by runs of the demo with that --min-words."""
    return [v["snapshot_id"] for v in store.versions(table)
            if store.properties(f"{table}@{v['snapshot_id']}")["config"]["stages"][1]["params"]["min_words"]
            == config_min_words]


def _assert_append_paired(wh, n_runs):
    """The invariant (ARCHITECTURE.md, "What the store guarantees"): the current rejects are the
    ones the current output names; every input row of each of the output's runs is in the
    output or in those rejects exactly once per run (no pending run's rejects, none missing);
    the cumulative accounting adds up against both, and `curate tables`/`stats` show the same."""
    store = Store(wh)
    props = store.properties("documents_demo")
    rows_per_run = props["accounting"]["rows_in"]  # every run reads the same corpus
    named = props["rejects_snapshot"]
    assert store.snapshot("documents_demo_rejects")[1].snapshot_id == named
    kept = store.read_arrow("documents_demo", ["id"]).column("id").to_pylist()
    rejected = store.read_arrow(f"documents_demo_rejects@{named}", ["id"]).column("id").to_pylist()
    per_id = Counter(kept) + Counter(rejected)
    assert len(per_id) == rows_per_run and set(per_id.values()) == {n_runs}, Counter(per_id.values())
    assert props["cumulative"] == {"runs": n_runs, "rows_in": n_runs * rows_per_run, "kept": len(kept),
                                   "rejected": len(rejected), "lost": 0}
    assert props["accounting"]["kept"] + props["accounting"]["rejected"] == rows_per_run
    assert _table_rows(wh) == {"documents_demo": len(kept), "documents_demo_rejects": len(rejected)}
    for table, n in (("documents_demo", len(kept)), ("documents_demo_rejects", len(rejected))):
        res = CliRunner().invoke(cli, ["--warehouse", wh, "stats", table, "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)["rows"] == n
    return store, props


def test_append_two_live_runs_interleaved_r_a_r_b_o_b_o_a_stay_paired(tmp_path):
    """Two processes at once: A commits its rejects and pauses, B publishes both, then A's output
    commit finds B's output current (the compare-and-swap fails), rebuilds its rejects on B's and
    commits. Was: the current output held A's and B's rows and named A's rejects alone."""
    src = corpus(tmp_path, limit=100)
    wh, gate = str(tmp_path / "wh"), str(tmp_path / "go")
    env = {**os.environ, "CURATE_FAILPOINT": f"rejects-committed:wait={gate}"}
    a = subprocess.Popen(_demo_args(wh, src, 5, "append"), cwd=REPO, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(6000):                                         # R_A committed, A paused
            if os.path.exists(gate + ".reached") or a.poll() is not None:
                break
            time.sleep(0.1)
        assert os.path.exists(gate + ".reached"), a.communicate()[1][-2000:]
        _ok(_demo(wh, src, 12, mode="append"))                        # R_B, O_B
        store, props = _assert_append_paired(wh, 1)
        assert props["config"]["stages"][1]["params"]["min_words"] == 12
    finally:
        open(gate, "w").close()
        _, err = a.communicate(timeout=600)                           # O_A: stale, rebuilt, committed
    assert a.returncode == 0, err[-2000:]
    assert "rebuilding this run's rejects" in err
    store, props = _assert_append_paired(wh, 2)
    assert props["config"]["stages"][1]["params"]["min_words"] == 5
    r_a = _run_versions(store, "documents_demo_rejects", 5)
    assert len(r_a) == 2 and props["rejects_snapshot"] == r_a[-1]  # the first, built on no output, is never named


def test_append_run_killed_after_its_rejects_then_another_run_then_its_rerun(tmp_path):
    """A killed after R_A, B publishes both, A's rerun: its rejects are rebuilt on B's output once,
    the killed version stays unnamed, and A's rows and rejects are in the output once."""
    src = corpus(tmp_path, limit=100)
    wh = str(tmp_path / "wh")
    _killed(_demo(wh, src, 5, failpoint="rejects-committed", mode="append"))
    [r_a] = [v["snapshot_id"] for v in Store(wh).versions("documents_demo_rejects")]
    _ok(_demo(wh, src, 12, mode="append"))
    _assert_append_paired(wh, 1)                                 # A's pending rejects not in B's
    _ok(_demo(wh, src, 5, mode="append"))
    store, props = _assert_append_paired(wh, 2)
    assert props["rejects_snapshot"] != r_a
    assert next(v for v in store.versions("documents_demo_rejects") if v["snapshot_id"] == r_a)["pending"]


def test_append_run_killed_after_its_rejects_and_never_rerun_is_in_no_output(tmp_path):
    """B killed after R_B and never rerun, then A: A's rejects are built on the rejects the output
    names (none), not on B's pending version (was: A's output named A's + B's rejects)."""
    src = corpus(tmp_path, limit=100)
    wh = str(tmp_path / "wh")
    _killed(_demo(wh, src, 12, failpoint="rejects-committed", mode="append"))
    _ok(_demo(wh, src, 5, mode="append"))
    store, props = _assert_append_paired(wh, 1)
    [r_b] = _run_versions(store, "documents_demo_rejects", 12)
    assert next(v for v in store.versions("documents_demo_rejects") if v["snapshot_id"] == r_b)["pending"]
    _ok(_demo(wh, src, 7, mode="append"))                             # and the next append does not pick it up
    _assert_append_paired(wh, 2)


def test_append_rerun_killed_again_after_its_rebuilt_rejects_completes_once(tmp_path):
    """A killed after R_A, B publishes, A's rerun killed right after rebuilding its rejects on B's
    output, A's second rerun: it reuses that rebuilt version (no third), no row twice."""
    src = corpus(tmp_path, limit=100)
    wh = str(tmp_path / "wh")
    _killed(_demo(wh, src, 5, failpoint="rejects-committed", mode="append"))
    _ok(_demo(wh, src, 12, mode="append"))
    _killed(_demo(wh, src, 5, failpoint="rejects-committed", mode="append"))
    rebuilt = _run_versions(Store(wh), "documents_demo_rejects", 5)
    second = _demo(wh, src, 5, mode="append")
    _ok(second)
    assert "resuming run" in second.stderr  # its shards were done: only the publish was left
    store, props = _assert_append_paired(wh, 2)
    assert len(rebuilt) == 2 and _run_versions(store, "documents_demo_rejects", 5) == rebuilt
    assert props["rejects_snapshot"] == rebuilt[-1]
    assert len(_run_versions(store, "documents_demo", 5)) == 1


def test_append_run_that_kept_nothing_is_current_alone_and_not_carried_into_the_next_output(tmp_path, warehouse):
    """All rows rejected in append mode: its rejects are shown with the output's (current until an
    output follows), and the next append pairs only its own runs' rejects (its rows are in no output)."""
    src = corpus(tmp_path, limit=40)
    first = run_demo(warehouse, src, mode="append")
    bad = jsonl(tmp_path / "bad.jsonl", [], extra=b'{"text": 1}\nnot json\n')
    with pytest.raises(NothingKept):
        run_demo(warehouse, bad, mode="append")
    store = Store(warehouse)
    assert store.snapshot("docs")[1].snapshot_id == first.snapshot_id
    first_rejects = first.accounting["rejected"]
    assert store.read_arrow("docs_rejects").num_rows == first_rejects + 2
    again = run_demo(warehouse, src, min_words=12, mode="append")
    store = Store(warehouse)
    assert store.snapshot("docs_rejects")[1].snapshot_id == again.rejects_snapshot_id
    props = store.properties("docs")
    kept, rejected = store.read_arrow("docs").num_rows, store.read_arrow("docs_rejects").num_rows
    assert rejected == first_rejects + again.accounting["rejected"]
    assert props["cumulative"] == {"runs": 2, "rows_in": 2 * again.accounting["rows_in"], "kept": kept,
                                   "rejected": rejected, "lost": 0}


def test_append_output_commit_is_a_compare_and_swap_even_between_its_check_and_its_commit(
        tmp_path, warehouse, monkeypatch):
    """Two processes at the same instant: B checked that the output is still the version its rejects
    were built on, then A commits before B's commit lands. B's commit must fail on Iceberg's own
    assertion and surface as StaleBase (so B rebuilds its rejects), not append on top of A."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from schemas.store import StaleBase
    from schemas.tables import DOCUMENTS
    files = []
    for name in ("a", "b"):
        files.append(str(tmp_path / f"{name}.parquet"))
        pq.write_table(pa.Table.from_pylist([{"id": name, "text": f"text {name}"}], schema=DOCUMENTS), files[-1])
    a, b = Store(warehouse), Store(warehouse)
    a.ensure_table("docs", DOCUMENTS)
    real, commits = Store._commit, []

    def commit(self, *args):
        commits.append(self)
        if self is b and commits.count(b) == 1:  # after B's check, before its commit
            a.publish("docs", DOCUMENTS, [files[0]], {"run_id": "run-a"}, mode="append",
                      expect_current=None, check_current=True)
        return real(self, *args)

    monkeypatch.setattr(Store, "_commit", commit)
    with pytest.raises(StaleBase) as stale:
        b.publish("docs", DOCUMENTS, [files[1]], {"run_id": "run-b"}, mode="append", expect_current=None,
                  check_current=True)
    assert stale.value.expected is None and stale.value.current == a.snapshot("docs")[1].snapshot_id
    assert commits.count(b) == 1 and Store(warehouse).read_arrow("docs").column("id").to_pylist() == ["a"]
