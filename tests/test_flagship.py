"""The flagship (`make demo`): the whole recipe at demo size, end to end, as a newcomer runs it."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from schemas.store import Store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES = ["documents", "sft_documents", "speech_sft", "loop_heldout", "loop_problems", "loop_sft",
          "loop_sft_unfiltered", "models", "loop_reasoning", "loop_cot_samples", "loop_preferences"]


@pytest.mark.slow
def test_flagship_writes_every_table_and_summarises_them(tmp_path):
    wh = str(tmp_path / "wh")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "pipelines/flagship.py", "--warehouse", wh, "--quiet"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout
    assert proc.returncode == 0, (out + proc.stderr)[-4000:]
    assert "Traceback" not in proc.stderr
    for n in range(1, 6):  # a line per step with its time
        assert re.search(rf"^\[{n}/5\] .*: done in \d+ s \(total \d+ s\)$", out, re.M), out
    store = Store(wh)
    summary = out[out.index("=== summary"):]
    for name in TABLES:
        versions = store.versions(name)
        assert versions and versions[-1]["rows"] > 0, name
        for v in versions:  # every version is named, with the rows the store holds
            assert re.search(rf"^{name}@{v['snapshot_id']}(?: \[[^\]]*\])?: {v['rows']} rows", summary, re.M), \
                (name, v, summary)
        assert f"stats {name}@{versions[-1]['snapshot_id']}" in summary
    # step 1 starts from the crawl: every stage's count, from the records read to what is kept
    docs_line = re.search(r"^documents@\d+: (\d+) rows \((\d+) in.*\n  stages: (.*)$", summary, re.M)
    assert docs_line, summary
    funnel = docs_line.group(3)
    assert re.match(rf"read {docs_line.group(2)} → \d+, url_filter → \d+, extract → \d+, language → \d+, "
                    r"heuristics → \d+, c4_lines → \d+, fineweb → \d+, ", funnel), funnel  # FineWeb's order
    assert funnel.endswith(f"pii → {docs_line.group(1)}"), funnel
    urls = store.read_arrow("documents", ["url"]).column("url").to_pylist()
    assert urls and all(u.startswith("https://docs.python.org/") for u in urls)  # English pages only
    # lineage is real: conversations come from kept documents, speech rows from those conversations
    docs = set(store.read_arrow("documents", ["id"]).column("id").to_pylist())
    sft = store.read_arrow("sft_documents", ["id", "source_ids", "messages"]).to_pylist()
    assert all(r["source_ids"] and set(r["source_ids"]) <= docs for r in sft)
    assert all(r["messages"][1]["content"] and r["messages"][0]["content"].startswith("Explain") for r in sft)
    speech = store.read_arrow("speech_sft", ["source_ids", "voice", "wer"]).to_pylist()
    assert all(set(r["source_ids"]) <= {r["id"] for r in sft} for r in speech)
    assert len({r["voice"] for r in speech}) >= 3 and all(r["wer"] <= 0.2 + 1e-6 for r in speech)  # float32
    # one training round: the round-1 model exists, trained on what the round-0 model generated
    assert "model-round-1" in store.table("models").metadata.refs
    assert store.read_arrow("loop_preferences@dpo-round-1").num_rows > 0
    assert os.path.exists(os.path.join(wh, "_loop", "flagship", "record.json"))


def test_sft_pairs_from_documents_use_the_documents_own_text_or_reject():
    import pyarrow as pa

    from pipelines.flagship import explain_pair, summary_and_detail
    assert summary_and_detail("Summary line.\n\nFirst one. Second one. Third one.") == \
        ("Summary line.", "First one. Second one.")
    # extracted web text: a paragraph per line, no blank lines
    assert summary_and_detail("Page lead. It goes on.\nFirst one. Second one. Third one.\nMore.") == \
        ("Page lead.", "First one. Second one.")
    # a page's heading and source link (kept by FineWeb's C4 step) are no question
    assert summary_and_detail("glob — Unix style pathname pattern expansion¶\nSource code: Lib/glob.py\n"
                              "The glob module finds paths. It is old.\nFirst one. Second one. Third one.") == \
        ("The glob module finds paths.", "First one. Second one.")
    texts = ["Only one paragraph. With two sentences.", "", "  \n\n  \n\n", "Head.\n\n\n\nBody  text\nwrapped."]
    out = explain_pair(pa.table({"text": texts}))
    assert out.column("drop_reason").to_pylist() == ["single_paragraph"] * 3 + [None]
    kept = out.column("messages").to_pylist()[3]
    assert kept == [{"role": "user", "content": "Explain in a sentence or two: Head."},
                    {"role": "assistant", "content": "Body text wrapped."}]
