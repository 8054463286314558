"""Nothing a privacy policy removed is persisted anywhere a run writes
(ARCHITECTURE.md, "What the store guarantees").

The text pipeline runs on documents whose PII sits in rows that every kind of stage rejects
(a malformed line, a duplicate, a too-short note, word salad, a card the policy drops) and in a
kept row; then every file under the warehouse (Parquet data, markers, lineage, Iceberg
metadata and manifests, dedup work files) and the run's own output are searched for it."""
import glob
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from pipelines.demo_corpus import docstrings
from schemas.store import Store
from test_text_filters import PROSE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CARD, SSN, EMAIL, PHONE, NAME = "4111 1111 1111 1111", "078-05-1120", "marta.kowalczyk@example.org", \
    "(415) 555-0134", "Marta Kowalczyk"
AWS_KEY, GH_TOKEN = "AKIAZ7XQ4JH2LMN3OPQR", "ghp_4fK9aZ0qLm3Xv7Bn2Ty8Rw1Ps6Ud5Ce0Hg2J"   # credentials: removed like PII
SECRETS = [CARD, CARD.replace(" ", ""), SSN, EMAIL, "marta.kowalczyk", PHONE, "555-0134", NAME, AWS_KEY, GH_TOKEN]


def _clean_prose(n):
    """Docstrings the heuristics keep, so the rows built on them reach the PII stage."""
    import pyarrow as pa

    from filters.heuristics import GopherFilter
    texts = [t for t in (d["text"] for d in docstrings()) if len(t) > 600][:60]
    out = GopherFilter(min_words=20)(pa.table({"text": texts}))
    return [t for t, r in zip(texts, out.column("drop_reason").to_pylist()) if r is None][:n]


def _docs():
    contact = f"Please write to {NAME} at {EMAIL} or call {PHONE}."
    prose = _clean_prose(2)
    docs = [
        {"text": PROSE + "\n\n" + contact, "author": f"{NAME} <{EMAIL}>",
         "reviewers": [{"phone": PHONE}]},                                    # kept; PII in its meta too
        {"text": prose[0] + "\n\nReviewed by the team. " + contact},          # kept
        {"text": prose[1] + f"\n\nDeploy with AWS_ACCESS_KEY_ID={AWS_KEY} and "
                 f"git clone https://{GH_TOKEN}@github.com/acme/infra.git"},  # credentials in kept prose
        {"text": prose[0] + "\n\nReviewed by the team. " + contact},          # its exact duplicate
        {"text": f"SSN {SSN} belongs to {NAME}."},                            # too few words
        {"text": prose[1] + f"\n\nBilling card {CARD}, holder {NAME}."},     # card: dropped by policy
        {"text": " ".join(["banana purple quickly the"] * 30) + f" {EMAIL} {PHONE}"},  # word salad
    ]
    lines = [json.dumps(d) for d in docs]
    lines.append('{"text": "broken line ' + f"{NAME} {EMAIL} {CARD}" + '"')  # malformed JSON
    lines.append(json.dumps({"text": 12, "note": f"{NAME} {SSN} {AWS_KEY}"}))  # wrong type, extra key
    return "\n".join(lines) + "\n"


def _curate(src, wh, *extra):
    return subprocess.run([sys.executable, "pipelines/text_curation.py", "--input", str(src), "--warehouse", wh,
                           "--executor", "local", "--min-words", "20", *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


def _leaks(wh, run) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}

    def check(where, text):
        for s in SECRETS:
            if s in text:
                found.setdefault(where, []).append(s)

    check("stdout+stderr", run.stdout + run.stderr)
    for path in glob.glob(f"{wh}/**/*", recursive=True):
        if not os.path.isfile(path) or "_demo_input" in path:
            continue
        data = open(path, "rb").read()
        check(path, data.decode("utf-8", "replace"))
        if path.endswith(".parquet"):
            check(path + " (decoded)", json.dumps(pq.read_table(path).to_pylist(), default=str))
    store = Store(wh)
    for table in store.tables():  # Iceberg column bounds, as any reader sees them
        files = store.files(table)
        check(f"{table} bounds", json.dumps(files.column("readable_metrics").to_pylist(), default=str))
    return found


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    d = tmp_path_factory.mktemp("priv")
    src = d / "in.jsonl"
    src.write_text(_docs())
    return d, src


def test_no_removed_pii_is_persisted_in_any_table_file_or_log(source):
    d, src = source
    wh = str(d / "wh")
    run = _curate(src, wh)
    assert run.returncode == 0, run.stderr[-3000:]
    store = Store(wh)
    acc = store.properties("documents")["accounting"]
    reasons = acc["rejects_by_reason"]
    # every kind of reject happened, so the search below covers them all
    for r in ("malformed_json", "wrong_type:text", "exact_duplicate", "gopher_too_few_words", "pii:CREDIT_CARD"):
        assert reasons.get(r), (r, reasons)
    assert acc["kept"] >= 1
    rejects = store.read_arrow("documents_rejects").to_pylist()
    assert all(r["text"] is None or "<" in r["text"] for r in rejects if r["drop_reason"] != "wrong_type:text")
    assert _leaks(wh, run) == {}
    assert store.properties("documents")["config"]["raw_rejects"] is False
    metas = [json.loads(m) for m in store.read_arrow("documents").column("meta").to_pylist() if m]
    assert {"author": "<PERSON> <<EMAIL_ADDRESS>>", "reviewers": '[{"phone": "<PHONE_NUMBER>"}]'} in metas


def test_raw_rejects_is_an_explicit_opt_in_recorded_in_lineage(source):
    d, src = source
    wh = str(d / "raw")
    run = _curate(src, wh, "--raw-rejects")
    assert run.returncode == 0, run.stderr[-3000:]
    leaks = _leaks(wh, run)
    assert any("documents_rejects" in where for where in leaks)  # the search does find PII
    assert not any("curate/documents/" in where for where in leaks)  # kept rows stay redacted
    assert Store(wh).properties("documents")["config"]["raw_rejects"] is True
