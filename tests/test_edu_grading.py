"""Educational-value grading end to end, offline: a real OpenAI-compatible HTTP server scripted
to grade → `curate annotate` → the edu_grades table and its rejects → `curate train-classifier`
(binary and multi-class) → the model scoring documents in the quality stage and the text pipeline."""
import json
import random

import pyarrow as pa
import pytest
from click.testing import CliRunner
from faker import Faker

from chat_server import ChatServer
from filters.quality import QualityClassifier, grade_labels
from pipelines.cli import main as curate
from pipelines.demo_corpus import docstrings
from schemas.ids import row_id
from schemas.store import Store
from synth.edu_grading import EduGrader, parse_score, truncate


@pytest.mark.parametrize("reply,finish,score,reason", [
    ("Clear tutorial with examples.\nEducational score: 4", "stop", 4, None),
    ("**Educational score:** 3/5", "stop", 3, None),
    ("Points: 1, 2. Score: 2.", "stop", 2, None),
    ("3", "stop", 3, None),
    (" **5** ", "stop", 5, None),
    ("Educational score: 1 ... on reflection, Educational score: 2", "stop", 2, None),  # the last statement wins
    ("Educational score: 0", "stop", 0, None),
    ("Educational score: 9", "stop", None, "out_of_range:9"),
    ("Educational score: -1", "stop", None, "out_of_range:-1"),
    ("Educational score: 2.5", "stop", None, "not_integer:2.5"),
    ("Educational score: 3.0", "stop", 3, None),
    ("It reads well and covers 5 topics from 0 to 5.", "stop", None, "no_score"),   # numbers, no score line
    ("5 points would be too many.", "stop", None, "no_score"),
    ("The extract explains recursion and", "length", None, "no_score_truncated"),
    ("", "stop", None, "no_output"),
    (None, "stop", None, "no_output"),
])
def test_parse_score_never_guesses(reply, finish, score, reason):
    assert parse_score(reply, finish) == (score, reason)


def test_truncate_cuts_on_a_word_and_says_so():
    text = "word " * 1000
    cut = truncate(text, 100)
    assert len(cut) <= 106 and cut.endswith(" [...]") and "wor [" not in cut
    assert truncate("short", 100) == "short"


class GradingServer(ChatServer):
    """Grades like a (very opinionated) strong model: real prose 3-5 points, word salad 0-2;
    documents marked UNSURE get a reply with no score, OVERFLOW an out-of-range one, and
    FAILME an HTTP 500 every time. It knows which texts are prose; nothing in a text marks it."""

    def __init__(self, prose):
        super().__init__()
        self.prose = set(prose)

    def respond(self, body):
        user = body["messages"][-1]["content"]
        if "FAILME" in user:
            return 500, {"error": "overloaded"}
        return super().respond(body)

    def complete(self, user, body):
        assert body["temperature"] == 0.0 and user.count("<extract>") == 1
        doc = user.split("<extract>\n", 1)[1].rsplit("\n</extract>", 1)[0]
        if "UNSURE" in doc:
            return "This extract is hard to judge; it depends on the reader."
        if "OVERFLOW" in doc:
            return "Superb.\nEducational score: 9"
        shown = doc.removesuffix(" [...]")        # a long document arrives cut
        grade = (3 if any(p.startswith(shown) for p in self.prose) else 0) + len(doc) % 3
        return f"The extract {'teaches' if grade >= 3 else 'does not teach'} much.\n**Educational score:** {grade}"


def corpus(tmp_path, n=80, seed=1):
    """Real docstrings (graded 3-5) and Faker word salad (graded 0-2), plus hostile rows."""
    rng, fake = random.Random(seed), Faker("en_US")
    fake.seed_instance(seed)
    prose = [d["text"].strip() for d in docstrings() if len(d["text"]) > 300][:n]
    docs = [{"text": t, "source": "stdlib"} for t in prose]
    docs += [{"text": " ".join(fake.paragraph(nb_sentences=rng.randint(4, 9)) for _ in range(2)), "source": "faker"}
             for _ in range(n)]
    docs += [{"text": "UNSURE " + prose[0], "source": "hostile"}, {"text": "UNSURE two", "source": "hostile"},
             {"text": "OVERFLOW " + prose[1], "source": "hostile"}, {"text": "FAILME please", "source": "hostile"},
             {"text": "   ", "source": "hostile"}]
    rng.shuffle(docs)
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return str(path), docs, prose


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edu")
    path, docs, prose = corpus(tmp)
    wh = str(tmp / "wh")
    with GradingServer(prose) as srv:
        args = ["--warehouse", wh, "annotate", "--input", path, "--executor", "local", "--quiet", "--retries", "0",
                "--generator", f"openai:{srv.url}#grader-model", "--shard-mb", "0.05"]
        first = CliRunner().invoke(curate, args)
        assert first.exit_code == 0, first.output
        n_first = srv.requests
        second = CliRunner().invoke(curate, args)
        assert second.exit_code == 0, second.output
        n_second = srv.requests - n_first
    return {"wh": wh, "docs": docs, "prose": set(prose), "n_first": n_first, "n_second": n_second, "url": srv.url}


def test_annotate_accounts_for_every_row_and_records_failures(graded):
    store, docs = Store(graded["wh"]), graded["docs"]
    kept = store.read_arrow("edu_grades").to_pylist()
    rej = store.read_arrow("edu_grades_rejects").to_pylist()
    acc = store.properties("edu_grades")["accounting"]
    assert acc["rows_in"] == len(docs) == len(kept) + len(rej) == acc["kept"] + acc["rejected"]
    assert acc["rejects_by_reason"] == {"grade_failed": 3, "generation_failed": 1, "empty_text": 1}
    for r in kept:
        assert r["edu_score"] in range(6) and r["grader"].endswith("#grader-model")
        assert r["rubric"].startswith("edu-additive-v1:") and "<extract>" in r["prompt"]
        assert r["doc_id"] == row_id(r["text"]) and r["source_ids"] == [r["doc_id"]]
        assert f"**Educational score:** {r['edu_score']}" in r["grade_output"]
        assert (r["edu_score"] >= 3) == (r["text"] in graded["prose"])
    failed = sorted(r["reject_detail"] for r in rej if r["drop_reason"] == "grade_failed")
    assert failed == ["no_score", "no_score", "out_of_range:9"]
    for r in rej:
        if r["drop_reason"] == "grade_failed":   # the unparseable reply is kept, its score is null
            assert r["edu_score"] is None and r["grade_output"] and r["prompt"] and r["grader"]
        if r["drop_reason"] == "generation_failed":
            assert r["reject_detail"] == "http_500" and r["grade_output"] is None and "FAILME" in r["text"]
    lineage = store.properties("edu_grades")["models"]["edu_grader"]
    assert lineage["generator"]["spec"].startswith("openai:") and lineage["rubric"] == kept[0]["rubric"]


def test_rerun_is_served_from_the_cache(graded):
    # every document was asked once; on the rerun only the failed request (never cached) is retried
    assert graded["n_first"] == len(graded["docs"]) - 1        # the empty row never reaches the grader
    assert graded["n_second"] == 1
    store = Store(graded["wh"])
    v = store.versions("edu_grades")
    assert len(v) == 2
    a = store.read_arrow(f"edu_grades@{v[0]['snapshot_id']}", ["id", "edu_score"]).to_pylist()
    b = store.read_arrow(f"edu_grades@{v[1]['snapshot_id']}", ["id", "edu_score"]).to_pylist()
    assert sorted(map(json.dumps, a)) == sorted(map(json.dumps, b)) and a


def _train(wh, *extra):
    res = CliRunner().invoke(curate, ["--warehouse", wh, "train-classifier", "--input", "edu_grades",
                                      "--valid-frac", "0.3", "--json", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def _held_out_docs():
    fake = Faker("en_US")
    fake.seed_instance(99)
    docs = [d["text"].strip() for d in docstrings() if len(d["text"]) > 300]
    # not graded (past the graded slice), and prose rather than code examples the heuristics reject
    prose = [t for t in docs[150:] if ">>>" not in t and "::" not in t][:10]
    assert len(prose) == 10
    salad = [" ".join(fake.paragraph(nb_sentences=8) for _ in range(2)) for _ in range(10)]
    return prose, salad


def test_binary_classifier_agrees_with_held_out_grades_and_scores_in_the_quality_stage(graded):
    card = _train(graded["wh"], "--threshold", "3")
    m = card["metrics"]
    assert card["mode"] == "binary" and card["positive_labels"] == ["hq"] and card["labels"] == ["hq", "lq"]
    assert m["n"] >= 20 and m["n"] + card["train_rows"] == 160
    assert m["accuracy"] >= 0.9 and m["precision"] >= 0.9 and m["recall"] >= 0.9 and m["macro_f1"] >= 0.9
    assert m["accuracy_ci95"][0] <= m["accuracy"] <= m["accuracy_ci95"][1]
    prose, salad = _held_out_docs()
    stage = QualityClassifier(card["path"])
    out = stage(pa.table({"text": prose + salad}))
    s = out.column("quality_score").to_pylist()
    assert sum(x >= 0.5 for x in s[:10]) >= 9 and sum(x < 0.5 for x in s[10:]) >= 9
    assert out.column("drop_reason").to_pylist()[10:].count("low_quality") >= 9


def test_multiclass_classifier_scores_p_grade_at_least_threshold(graded):
    card = _train(graded["wh"], "--multiclass", "--threshold", "3", "--epoch", "50")  # 112 rows: more passes
    m = card["metrics"]
    assert card["mode"] == "multiclass" and card["positive_labels"] == ["3", "4", "5"]
    assert set(card["labels"]) <= {"0", "1", "2", "3", "4", "5"} and len(card["labels"]) >= 5
    assert {"accuracy", "macro_f1", "mae", "binary_accuracy", "precision", "recall", "per_grade"} <= set(m)
    # the exact grade is the server's length-mod-3 noise: only the binary view is learnable
    assert m["binary_accuracy"] >= 0.9 and 0 <= m["macro_f1"] <= 1
    prose, salad = _held_out_docs()
    s = QualityClassifier(card["path"])(pa.table({"text": prose + salad})).column("quality_score").to_pylist()
    assert all(0.0 <= x <= 1.0001 for x in s)
    assert sum(s[:10]) / 10 > 0.7 > 0.3 > sum(s[10:]) / 10


def test_grade_labels_reject_non_integer_grades():
    assert grade_labels([("a", "4"), ("b", "2")], threshold=3) == [("a", "hq"), ("b", "lq")]
    assert grade_labels([("a", "4")], multiclass=True) == [("a", "4")]
    with pytest.raises(ValueError):
        grade_labels([("a", "2.5")], threshold=3)
    with pytest.raises(ValueError):
        grade_labels([("a", "good")], threshold=3)


def test_trained_model_runs_in_the_text_pipeline(graded, tmp_path):
    from pipelines.text_curation import build, parser

    card = _train(graded["wh"], "--threshold", "3")
    prose, salad = _held_out_docs()
    src = tmp_path / "web.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in prose + salad))
    from pipelines.script import main
    wh = str(tmp_path / "wh2")
    rc = main(build, parser(), ["--input", str(src), "--warehouse", wh, "--executor", "local", "--quiet",
                                "--no-dedup", "--no-pii", "--benchmarks", "--min-words", "20",
                                "--quality-model", card["path"]])
    assert rc == 0
    store = Store(wh)
    assert store.properties("documents")["models"]["quality"]["sha256"] == card["sha256"]
    kept = store.read_arrow("documents", ["text"]).column("text").to_pylist()
    assert sum(t in prose for t in kept) >= 9 and sum(t in salad for t in kept) <= 1


def test_grader_rejects_a_template_without_the_document():
    with pytest.raises(ValueError):
        EduGrader("openai:http://127.0.0.1:9/v1", template="Rate this: {rubric}")


def test_few_shot_chat_has_its_own_rubric_id_and_prompt(tmp_path):
    docs = [d["text"].strip() for d in docstrings() if len(d["text"]) > 300][:3]
    with GradingServer(docs) as srv:
        kw = dict(generator=f"openai:{srv.url}#g", cache=str(tmp_path / "c.sqlite"), retries=0)
        plain, few = EduGrader(**kw), EduGrader(few_shot=True, **kw)
        a, b = plain(pa.table({"text": docs})), few(pa.table({"text": docs}))
        assert srv.requests == 6                              # a different chat is a different cache entry
    assert a.column("rubric")[0].as_py() != b.column("rubric")[0].as_py()
    assert b.column("rubric")[0].as_py().startswith("edu-additive-v1-fewshot:")
    prompt = b.column("prompt")[0].as_py()
    assert prompt.startswith("[user]\n") and "[assistant]\nEducational score: 4" in prompt
    assert prompt.count("<extract>") == 6 and prompt.rstrip().endswith("(0 to 5 points).")
    assert b.column("edu_score").to_pylist() == a.column("edu_score").to_pylist()  # the server grades by content
    assert all(s >= 3 for s in b.column("edu_score").to_pylist())


def test_sample_is_fixed_by_seed_not_by_file_order(tmp_path):
    from pipelines.annotate_edu import sample_inputs
    texts = [f"document number {i} about topic {i % 7}" for i in range(50)]
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    (b / "y.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in reversed(texts[25:])))
    (b / "z.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:25] + [""]))
    read = lambda p: sorted(json.loads(line)["text"] for line in open(p[0]))
    s1 = read(sample_inputs([str(a)], 10, 0, str(tmp_path / "wh")))
    s2 = read(sample_inputs([str(b)], 10, 0, str(tmp_path / "wh")))
    s3 = read(sample_inputs([str(a)], 10, 1, str(tmp_path / "wh")))
    assert s1 == s2 and len(s1) == 10 and len(set(s1)) == 10 and s1 != s3
    assert len(read(sample_inputs([str(b)], 100, 0, str(tmp_path / "wh")))) == 50   # the empty text is not sampled


def test_builtin_model_grades_through_the_stage_and_the_cache(tmp_path):
    """The built-in backend: an untrained tiny checkpoint replies with noise, which must come
    back as grade_failed rows with the reply kept (never a default score); a rerun is all cache."""
    import torch

    from model import checkpoint
    from model.config import ModelConfig
    from model.tokenizer import ChatTokenizer
    from model.transformer import Transformer
    from synth.edu_grading import RUBRIC

    docs = [d["text"].strip() for d in docstrings()[:4]]
    tok = ChatTokenizer.train(docs + [RUBRIC, "Educational score: 3"], vocab_size=300)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=tok.vocab_size, dim=32, n_layers=1, n_heads=2, n_kv_heads=1,
                                    ffn_dim=64, max_seq_len=2048))
    ck = checkpoint.save(str(tmp_path / "ck"), model, tok, step=0, train_config={}, trained_on=[])
    kw = dict(generator=f"builtin:{ck}", cache=str(tmp_path / "c.sqlite"), max_tokens=6, max_chars=300, threads=1)
    first = EduGrader(**kw)
    out = first(pa.table({"text": docs}))
    assert first.gen.stats["requests"] == 4 and first.gen.stats["cache_hits"] == 0
    assert out.column("grader")[0].as_py() == f"builtin:{checkpoint.meta(ck)['id']}"
    for row in out.to_pylist():
        assert row["grade_output"] is not None and row["finish_reason"] in ("stop", "length")
        if row["edu_score"] is None:   # noise: rejected with its reason, reply kept
            assert row["drop_reason"] == "grade_failed" and row["reject_detail"].startswith(("no_", "out_of", "not_"))
        else:
            assert row["drop_reason"] is None and row["edu_score"] in range(6)
    again = EduGrader(**kw)
    assert again(pa.table({"text": docs})).to_pylist() == out.to_pylist()
    assert again.gen.stats["cache_hits"] == 4


def test_annotate_a_sample_of_a_documents_table_keeps_its_ids(tmp_path):
    from helpers import corpus as demo_corpus, run_demo

    wh = str(tmp_path / "wh")
    run_demo(wh, demo_corpus(tmp_path, n_files=2, limit=40))
    docs = Store(wh).read_arrow("docs", ["id", "text"]).to_pylist()
    with GradingServer([d["text"] for d in docs]) as srv:
        res = CliRunner().invoke(curate, ["--warehouse", wh, "annotate", "--input", "docs", "--sample", "7",
                                          "--executor", "local", "--quiet", "--generator", f"openai:{srv.url}#g"])
        assert res.exit_code == 0, res.output
    graded = Store(wh).read_arrow("edu_grades").to_pylist()
    ids = {d["id"] for d in docs}
    assert len(graded) == 7 and all(g["doc_id"] in ids and g["edu_score"] >= 3 for g in graded)
    props = Store(wh).properties("edu_grades")
    assert props["inputs"]["n_files"] == 1                                  # the sample file ...
    sample = props["config"]["sample"]                                      # ... and what it was drawn from
    assert sample["n"] == 7 and sample["of"] == len(docs) and sample["drawn_from"][0].startswith("docs@")
