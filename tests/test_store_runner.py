"""The store and the runner end to end, in-process (executor=local); Ray paths are in test_ray.py."""
import json
import os
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from helpers import corpus, demo_pipeline, jsonl, kill_and_resume, run_demo
from pipelines.cli import main as cli
from schemas.engine.runner import NothingKept, RunOptions, run
from schemas.store import Store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_run_publishes_one_version_with_lineage_and_accounting(tmp_path, warehouse):
    src = corpus(tmp_path)
    r = run_demo(warehouse, src)
    store = Store(warehouse)
    acc = r.accounting
    assert acc["rows_in"] == acc["kept"] + acc["rejected"] > 0
    assert acc["rejects_by_reason"]["malformed_json"] == 2
    for s in acc["stages"]:
        assert s["rows_in"] == s["rows_out"] + s["rejected"]
    # the kept rows and the rejects are both there, and nothing else
    kept = store.read_arrow("docs")
    rejects = store.read_arrow("docs_rejects")
    assert kept.num_rows == acc["kept"] and rejects.num_rows == acc["rejected"]
    assert len(set(kept.column("id").to_pylist())) == kept.num_rows
    assert rejects.column("drop_reason").null_count == 0
    assert [v["snapshot_id"] for v in store.versions("docs")] == [r.snapshot_id]
    props = store.properties("docs")
    for key in ("run_id", "pipeline", "config_hash", "config", "git_commit", "inputs", "accounting", "stats"):
        assert key in props, key
    assert props["inputs"]["n_files"] == 4 and props["config"]["stages"][1]["params"] == {"min_words": 5}
    assert store.properties("docs_rejects")["output_snapshot"] == r.snapshot_id


def test_two_runs_make_two_versions_and_old_ones_stay_readable(tmp_path, warehouse):
    src = corpus(tmp_path)
    r1 = run_demo(warehouse, src, tag="v1")
    r2 = run_demo(warehouse, src, min_words=12)
    store = Store(warehouse)
    vs = store.versions("docs")
    assert [v["snapshot_id"] for v in vs] == [r1.snapshot_id, r2.snapshot_id]
    assert vs[0]["tags"] == ["v1"] and vs[1]["current"] and vs[1]["parent_id"] == r1.snapshot_id
    assert store.read_arrow("docs@v1").num_rows == r1.accounting["kept"]
    assert store.read_arrow(f"docs@{r1.snapshot_id}").num_rows == r1.accounting["kept"]
    assert store.read_arrow("docs").num_rows == r2.accounting["kept"] < r1.accounting["kept"]
    # same config again: a new version with a new run id and identical rows
    r3 = run_demo(warehouse, src, min_words=12)
    assert r3.run_id != r2.run_id and r3.run_id.split("-")[0] == r2.run_id.split("-")[0]
    a = sorted(store.read_arrow(f"docs@{r2.snapshot_id}", ["id"]).column("id").to_pylist())
    b = sorted(store.read_arrow(f"docs@{r3.snapshot_id}", ["id"]).column("id").to_pylist())
    assert a == b


def test_publish_is_idempotent_per_run(tmp_path, warehouse):
    src = corpus(tmp_path, limit=40)
    r = run_demo(warehouse, src)
    store = Store(warehouse)
    again = store.publish("docs", demo_pipeline().schema(), [], {"run_id": r.run_id})
    assert again == r.snapshot_id and len(store.versions("docs")) == 1


def test_an_identical_run_committing_between_the_check_and_the_commit_is_found_not_duplicated(
        tmp_path, warehouse, monkeypatch):
    """The race of two identical runs on S3 (no flock there), made deterministic: run A publishes
    while run B loads the table it is about to commit on. B must return A's snapshot."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from schemas.tables import DOCUMENTS
    f = str(tmp_path / "part.parquet")
    pq.write_table(pa.Table.from_pylist([{"id": "a", "text": "some text"}], schema=DOCUMENTS), f)
    a, b = Store(warehouse), Store(warehouse)
    a.ensure_table("docs", DOCUMENTS)
    real, loads = Store.ensure_table, []

    def ensure_table(self, name, schema):
        loads.append(self)
        if self is b and len([x for x in loads if x is b]) == 2:  # B's load right before its commit
            a.publish("docs", DOCUMENTS, [f], {"run_id": "same-run"})
        return real(self, name, schema)

    monkeypatch.setattr(Store, "ensure_table", ensure_table)
    snap_b = b.publish("docs", DOCUMENTS, [f], {"run_id": "same-run"})
    assert [v["snapshot_id"] for v in Store(warehouse).versions("docs")] == [snap_b]


def test_crash_between_the_two_publishes_resumes_without_a_second_output_version(tmp_path, warehouse, monkeypatch):
    src = corpus(tmp_path, limit=60)
    real = Store.publish

    def flaky(self, name, *a, **k):
        if name.endswith("_rejects"):
            raise OSError("disk went away")
        return real(self, name, *a, **k)

    monkeypatch.setattr(Store, "publish", flaky)
    with pytest.raises(OSError):
        run_demo(warehouse, src)
    monkeypatch.setattr(Store, "publish", real)
    r = run_demo(warehouse, src)
    store = Store(warehouse)
    assert r.processed_shards == 0 and r.resumed_shards == 4
    assert len(store.versions("docs")) == 1 and len(store.versions("docs_rejects")) == 1
    assert store.properties("docs")["run_id"] == store.properties("docs_rejects")["run_id"] == r.run_id


def test_new_columns_evolve_the_schema_and_old_versions_keep_theirs(tmp_path, warehouse):
    from filters.text_basic import normalize_text
    src = corpus(tmp_path, limit=40)
    run(demo_pipeline(stages=[normalize_text]), RunOptions([src], "docs", warehouse, executor="local", progress=False))
    run_demo(warehouse, src)
    store = Store(warehouse)
    first, second = store.versions("docs")
    assert "n_words" not in store.read_arrow(f"docs@{first['snapshot_id']}").column_names
    assert store.read_arrow("docs").column("n_words").null_count == 0


def test_all_rows_rejected_leaves_the_output_untouched(tmp_path, warehouse):
    src = corpus(tmp_path, limit=40)
    r = run_demo(warehouse, src)
    bad = jsonl(tmp_path / "bad.jsonl", [], extra=b'{"text": 1}\nnot json\n\xff\xfe\n')
    with pytest.raises(NothingKept, match="all 3 input rows were rejected"):
        run_demo(warehouse, bad)
    store = Store(warehouse)
    assert [v["snapshot_id"] for v in store.versions("docs")] == [r.snapshot_id]
    assert store.read_arrow("docs_rejects").num_rows == 3  # the reasons are inspectable


def test_empty_input_is_a_clear_error(tmp_path, warehouse):
    from schemas.engine.inputs import InputError
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="hold no rows"):
        run_demo(warehouse, str(empty))
    assert Store(warehouse).versions("docs") == []


def test_missing_input_is_a_clear_error_and_touches_nothing(tmp_path, warehouse):
    src = corpus(tmp_path, limit=40)
    run_demo(warehouse, src)
    before = Store(warehouse).versions("docs")
    proc = subprocess.run([sys.executable, "pipelines/demo.py", "--warehouse", warehouse, "--executor", "local",
                           "--output", "docs", "--input", str(tmp_path / "missing.jsonl")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "matches no file" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert Store(warehouse).versions("docs") == before


def test_killed_run_resumes_and_matches_an_uninterrupted_run(tmp_path):
    kill_and_resume(tmp_path, executor="local")


# ---- the CLI ---------------------------------------------------------------------------
@pytest.fixture
def two_versions(tmp_path, warehouse):
    src = corpus(tmp_path, limit=120)
    r1 = run_demo(warehouse, src, tag="first")
    r2 = run_demo(warehouse, src, min_words=15)
    return warehouse, r1, r2


def _cli(*args):
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return res


def test_cli_versions_stats_diff_show_tag_lineage(two_versions, tmp_path):
    wh, r1, r2 = two_versions
    res = _cli("--warehouse", wh, "versions", "docs", "--json")
    vs = json.loads(res.output)
    assert [v["snapshot_id"] for v in vs] == [r1.snapshot_id, r2.snapshot_id] and vs[0]["tags"] == ["first"]
    res = _cli("--warehouse", wh, "versions", "docs")
    assert "first" in res.output and str(r2.snapshot_id) in res.output

    data = json.loads(_cli("--warehouse", wh, "stats", "docs@first", "--json").output)
    assert data["rows"] == r1.accounting["kept"] and data["files"] == len(data["shards"]) == 4
    assert sum(s["rows"] for s in data["shards"]) == data["rows"]
    assert data["content"]["columns"]["text"]["chars"]["count"] == data["rows"]
    assert all(s["content"]["rows"] == s["rows"] for s in data["shards"])  # per-shard stats from footers
    assert data["accounting"]["rejects_by_reason"]["too_short"] > 0
    text = _cli("--warehouse", wh, "stats", "docs", "--html", str(tmp_path / "r.html"),
                "--png", str(tmp_path / "r.png")).output
    assert "rejects" in text or "accounting" in text
    assert "p50" in text and (tmp_path / "r.png").stat().st_size > 10_000
    assert "<img" in (tmp_path / "r.html").read_text()

    d = json.loads(_cli("--warehouse", wh, "diff", "docs@first", f"docs@{r2.snapshot_id}", "--json").output)
    removed = r1.accounting["kept"] - r2.accounting["kept"]
    assert d["rows"] == [r1.accounting["kept"], r2.accounting["kept"]]
    assert d["ids"]["removed"] == removed > 0 and d["ids"]["added"] == 0
    assert d["schema"] == {"added": [], "removed": [], "changed": []}
    assert d["rejects"]["too_short"][1] - d["rejects"]["too_short"][0] == removed
    assert "ids only in A" in _cli("--warehouse", wh, "diff", "docs@first", str(r2.snapshot_id)).output

    shown = _cli("--warehouse", wh, "show", "docs_rejects", "-n", "3", "--where", "drop_reason == 'too_short'",
                 "--json").output.strip().splitlines()
    assert len(shown) == 3 and all(json.loads(s)["drop_reason"] == "too_short" for s in shown)

    assert "tagged" in _cli("--warehouse", wh, "tag", "docs", "best").output
    assert Store(wh).snapshot("docs@best")[1].snapshot_id == r2.snapshot_id
    res = CliRunner().invoke(cli, ["--warehouse", wh, "tag", "docs", "best"])
    assert res.exit_code == 2 and "already exists" in res.output
    lin = json.loads(_cli("--warehouse", wh, "lineage", "--json", "docs@first").output)
    assert lin["run_id"] == r1.run_id and lin["pipeline"] == "demo"


def test_cli_errors_are_one_clear_line(two_versions):
    wh, *_ = two_versions
    res = CliRunner().invoke(cli, ["--warehouse", wh, "stats", "docs@nope"])
    assert res.exit_code == 2 and "no tag or snapshot 'nope'" in res.output
    res = CliRunner().invoke(cli, ["--warehouse", wh, "versions", "missing"])
    assert res.exit_code == 2 and "no table 'missing'" in res.output


def test_cli_show_filters_on_a_column_it_does_not_show(two_versions):
    """`--where` on drop_reason with `-c` naming other columns: filter first, then project."""
    wh, *_ = two_versions
    res = _cli("--warehouse", wh, "show", "docs_rejects", "--where", "drop_reason == 'too_short'", "-c", "raw",
               "-c", "reject_stage", "-n", "3", "--json")
    assert res.exit_code == 0, res.output
    rows = [json.loads(s) for s in res.output.strip().splitlines()]
    assert len(rows) == 3 and all(set(r) == {"raw", "reject_stage"} for r in rows)
    assert {r["reject_stage"] for r in rows} == {"length_filter"}  # too_short rows, not any 3
    table = Store(wh).read_arrow("docs_rejects", ["id"], where="drop_reason == 'too_short'")
    assert table.column_names == ["id"] and table.num_rows == Store(wh).properties(
        "docs_rejects")["accounting"]["rejects_by_reason"]["too_short"]
    res = _cli("--warehouse", wh, "show", "docs_rejects", "--where", "drop_reason == 'too_short'",
               "-c", "raw", "-n", "2")
    assert res.exit_code == 0 and "2 rows of docs_rejects" in res.output and "drop_reason" not in res.output


def test_cli_lineage_is_tables_or_one_json_document(two_versions):
    wh, r1, _ = two_versions
    out = _cli("--warehouse", wh, "lineage", "docs@first", "--json").output
    lin = json.loads(out)  # the whole output parses: nothing else on stdout
    assert lin["run_id"] == r1.run_id and lin["accounting"]["kept"] == r1.accounting["kept"]
    text = _cli("--warehouse", wh, "lineage", "docs@first").output
    assert not text.lstrip().startswith(("{", "[")) and '"run_id":' not in text  # no JSON for people
    for needle in (r1.run_id, "length_filter", "min_words", "operators", "accounting", "too_short"):
        assert needle in text, needle


@pytest.mark.parametrize("name", ["demo", "text_curation", "speech_sft", "reasoning_data", "reasoning_loop",
                                  "annotate_edu", "flagship", "loop_base"])
def test_pipeline_help_states_each_default_once(name):
    """`(default: X)` is added once, not after help that says its default in words, nor as None/False."""
    import importlib
    p = importlib.import_module(f"pipelines.{name}").parser()
    fmt = p._get_formatter()
    texts = {a.option_strings[0]: " ".join(fmt._expand_help(a).split()) for a in p._actions
             if a.help and a.option_strings}
    twice = {k: t for k, t in texts.items() if t.lower().count("default") > 1}
    empty = {k: t for k, t in texts.items() if re.search(r"\(default: (None|False|)\)", t)}
    assert not twice and not empty, (twice, empty)
    if "--allow-empty" in texts:
        assert texts["--allow-empty"].endswith("(default: leave the table as it was)")
    if "--shard-rows" in texts:
        assert texts["--shard-rows"].endswith("(default: 100000)")  # a plain default is still stated
    if "--seed" in texts:  # and a 0, which `0 in (None, False)` once hid
        assert texts["--seed"].endswith("(default: 0)")


def test_cli_validate_names_row_and_column(tmp_path):
    path = jsonl(tmp_path / "v.jsonl", [{"text": "fine text"}], extra=b'{"text": 3}\n{"nope": 1}\n')
    res = CliRunner().invoke(cli, ["validate", path, "--schema", "documents"])
    assert res.exit_code == 1
    assert "wrong_type:text: v.jsonl row 2 (byte 22)" in res.output
    assert "missing_value:text: v.jsonl row 3" in res.output
    assert "1 of 3 rows fit" in res.output


def test_any_pyiceberg_catalog_by_config(tmp_path, monkeypatch):
    """CURATE_CATALOG selects another catalog (here a second SQL catalog; REST/S3 take the same path)."""
    wh = tmp_path / "elsewhere"
    wh.mkdir()
    monkeypatch.setenv("CURATE_CATALOG", json.dumps({"type": "sql", "uri": f"sqlite:///{wh}/cat.db",
                                                     "warehouse": f"file://{wh}"}))
    src = corpus(tmp_path, limit=40)
    r = run_demo(None, src)
    store = Store()
    assert store.catalog_props["uri"].endswith("cat.db")
    assert store.read_arrow(f"docs@{r.snapshot_id}").num_rows == r.accounting["kept"]
    assert (wh / "cat.db").exists() and any(wh.glob("curate/docs/data/run-*/*.parquet"))
