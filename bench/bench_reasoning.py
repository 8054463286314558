"""Reasoning data: verifier precision/recall on a labeled set, stage-chain throughput without
generation, generation throughput per backend, and what the cache saves on a rerun.

    python bench/bench_reasoning.py                      # all parts
    python bench/bench_reasoning.py --parts verifier chain

The labeled set is built from the problem sources (word problems and DeepMind's generators):
for each reference answer, equivalent forms (decimal vs fraction, LaTeX, units, currency,
thousands separators, `x = …`, unsimplified fractions, Python vs caret powers) labeled correct,
and near misses (off by one, sign, reciprocal, rounded, a right number mid-text but a wrong final
answer, no answer, prose) labeled incorrect.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from fractions import Fraction

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))


def _frac(a: str) -> Fraction | None:
    try:
        return Fraction(a)
    except (ValueError, ZeroDivisionError):
        return None


def labeled_set(n_word: int = 150, n_math: int = 150, seed: int = 0) -> list[dict]:
    from synth.problems import mathematics_dataset_problems, word_problems
    rng = random.Random(seed)
    items = []
    for p in word_problems(n_word, seed=seed) + mathematics_dataset_problems(n_math, seed=seed):
        a, item = p["answer"], p["problem"].split()[3] if p["source"] == "word_problems" else ""
        f = _frac(a)
        good, bad = [], []
        if f is not None:
            if f.denominator == 1:
                v = f.numerator
                good += [f"The answer is {v}.", f"\\boxed{{{v}}}", f"The answer is {v}.0", f"#### {v}"]
                good += [f"The answer is {v:,}."] if abs(v) >= 1000 else []
                good += [f"The answer is {v} {item}."] if item else [f"The answer is x = {v}."]
                good += [f"The answer is ${v}."] if v > 0 else []
                bad += [f"The answer is {v + 1}.", f"First {v}, so the answer is {v - 1}."]
                bad += [f"The answer is {v * 10}."] if v else []
                bad += [f"The answer is {-v}."] if v else []
            else:
                p_, q = f.numerator, f.denominator
                good += [f"The answer is {p_}/{q}.", f"\\boxed{{\\frac{{{p_}}}{{{q}}}}}",
                         f"The answer is {2 * p_}/{2 * q}."]
                d = float(f)
                if len(repr(d)) < 12:  # terminating decimal
                    good.append(f"The answer is {d}.")
                if Fraction(str(round(d, 2))) != f:  # a rounded value that is not the exact answer
                    bad.append(f"The answer is {round(d, 2)}.")
                bad += [f"The answer is {q}/{p_}.", f"The answer is {p_}/{q + 1}."]
            bad += ["I am not sure how to solve this.", "The answer is"]
        else:  # symbolic (polynomials, derivatives): Python-style powers in the reference
            caret = a.replace("**", "^").replace("*", "")
            good += [f"\\boxed{{{caret}}}", f"The answer is {a}."]
            bad += [f"\\boxed{{{caret} + 1}}", "The answer is 0."]
        items += [{"completion": c, "reference": a, "label": True, "source": p["source"]} for c in good]
        items += [{"completion": c, "reference": a, "label": False, "source": p["source"]} for c in bad]
    rng.shuffle(items)
    return items


def bench_verifier(args) -> dict:
    from synth.verify import RuleVerifier
    items = labeled_set(args.word, args.math)
    v = RuleVerifier(timeout_s=5)
    t0 = time.perf_counter()
    verdicts = [v(x["completion"], x["reference"]).verdict for x in items]
    dt = time.perf_counter() - t0
    v.close()
    tp = sum(1 for x, d in zip(items, verdicts) if d == "correct" and x["label"])
    fp = sum(1 for x, d in zip(items, verdicts) if d == "correct" and not x["label"])
    fn = sum(1 for x, d in zip(items, verdicts) if d != "correct" and x["label"])
    und = sum(d == "undecided" for d in verdicts)
    errors = [{"completion": x["completion"], "reference": x["reference"], "label": x["label"], "verdict": d}
              for x, d in zip(items, verdicts) if (d == "correct") != x["label"]][:15]
    return {"items": len(items), "positives": sum(x["label"] for x in items),
            "precision": round(tp / max(1, tp + fp), 4), "recall": round(tp / max(1, tp + fn), 4),
            "false_correct": fp, "missed_correct": fn, "undecided": und,
            "items_per_s": round(len(items) / dt, 1), "examples_of_errors": errors}


def bench_chain(args) -> dict:
    """verify + unnest + SFT + pairs over synthetic sampled problems: the chain minus generation."""
    import pyarrow as pa

    from synth.cot_sampling import SAMPLE
    from synth.reasoning_tables import cot_samples, preference_pairs, sft_rows
    from synth.verify import RuleVerifier
    items = labeled_set(args.word, args.math)
    rng = random.Random(1)
    by_ref: dict[str, list[dict]] = {}
    for x in items:
        by_ref.setdefault(x["reference"], []).append(x)
    refs = list(by_ref)
    n_problems = args.chain_problems
    v = RuleVerifier(timeout_s=5)
    t0 = time.perf_counter()
    rows = []
    for i in range(n_problems):
        ref = refs[i % len(refs)]
        samples = []
        for j in range(args.k):
            c = rng.choice(by_ref[ref])["completion"]
            verdict = v(c, ref)
            samples.append({"completion": c, "extracted_answer": verdict.extracted, "verdict": verdict.verdict,
                            "verifier": verdict.verifier, "attempt": 1, "seed": j, "finish_reason": "stop",
                            "error": None, "judge_prompt": None, "judge_output": None, "seconds": 0.0})
        rows.append({"id": f"p{i}", "problem": f"problem {i}", "answer": ref, "level": 1, "source": "bench",
                     "generator": "bench", "pass_rate": 0.5, "samples": samples})
    t_verify = time.perf_counter() - t0
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("id", pa.string()), ("problem", pa.string()), ("answer", pa.string()), ("level", pa.int32()),
        ("source", pa.string()), ("generator", pa.string()), ("pass_rate", pa.float32()),
        ("samples", pa.list_(SAMPLE))]))
    t1 = time.perf_counter()
    s, _ = cot_samples(table)
    sft, _ = sft_rows(s)
    pairs, _ = preference_pairs(s)
    t_tables = time.perf_counter() - t1
    v.close()
    n = n_problems * args.k
    return {"samples": n, "verify_s": round(t_verify, 2), "tables_s": round(t_tables, 2),
            "samples_per_s_per_core": round(n / (t_verify + t_tables), 1),
            "sft_rows": sft.num_rows, "pairs": pairs.num_rows}


def _gen_once(gen, prompts, max_tokens):
    from synth.generator_backends import Request, Sampling
    reqs = [Request([{"role": "user", "content": p}], Sampling(max_tokens=max_tokens, seed=i, temperature=0.8))
            for i, p in enumerate(prompts)]
    t0 = time.perf_counter()
    out = gen.generate(reqs)
    dt = time.perf_counter() - t0
    return {"seconds": round(dt, 3), "tokens": sum(c.tokens or 0 for c in out),
            "tokens_per_s": round(sum(c.tokens or 0 for c in out) / dt, 1) if dt else None,
            "errors": sum(c.error is not None for c in out)}


def bench_generation(args) -> dict:
    """Per backend: cold run, then the same requests again from a new generator on the same cache."""
    import threading

    import torch

    from model import checkpoint
    from model.config import ModelConfig
    from model.serve import make_server
    from model.tokenizer import ChatTokenizer
    from model.transformer import Transformer
    from synth.generator_backends import make_generator
    from synth.problems import word_problems

    torch.set_num_threads(args.threads)
    probs = word_problems(args.gen_prompts, seed=3)
    prompts = [p["problem"] for p in probs]
    tmp = tempfile.mkdtemp(prefix="bench-gen-")
    ck = args.checkpoint
    if not ck:  # an untrained built-in model of the loop's size: generation cost does not depend on training
        convs = [[{"role": "user", "content": p["problem"]}, {"role": "assistant", "content": p["reference_cot"]}]
                 for p in word_problems(500, seed=4)]
        tok = ChatTokenizer.train((m["content"] for c in convs for m in c), 512)
        ck = checkpoint.save(os.path.join(tmp, "ck"), Transformer(ModelConfig(vocab_size=tok.vocab_size)), tok,
                             step=0, train_config={}, trained_on=[])
    out = {}
    backends = {"builtin": f"builtin:{ck}"}
    srv = make_server(ck, port=0, threads=args.threads)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    backends["openai(curate serve)"] = f"openai:http://127.0.0.1:{srv.server_address[1]}/v1#builtin"
    if args.smollm2:
        backends["smollm2(transformers)"] = "smollm2"
    for name, spec in backends.items():
        cache = os.path.join(tmp, f"{name}.sqlite")
        n = args.gen_prompts if name != "smollm2(transformers)" else min(args.gen_prompts, 16)
        g = make_generator(spec, cache, threads=args.threads, batch_size=16, concurrency=4)
        cold = _gen_once(g, prompts[:n], args.max_tokens)
        g2 = make_generator(spec, cache, threads=args.threads, batch_size=16, concurrency=4)
        warm = _gen_once(g2, prompts[:n], args.max_tokens)
        out[name] = {"requests": n, "cold": cold, "rerun_seconds": warm["seconds"],
                     "rerun_cache_hits": g2.stats["cache_hits"],
                     "rerun_speedup": round(cold["seconds"] / max(1e-9, warm["seconds"]), 1)}
        print(f"{name}: {json.dumps(out[name])}", file=sys.stderr)
    srv.shutdown()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=["verifier", "chain", "generation"])
    p.add_argument("--word", type=int, default=150)
    p.add_argument("--math", type=int, default=150)
    p.add_argument("--chain-problems", type=int, default=2000)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--gen-prompts", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--checkpoint", default=None, help="a built-in checkpoint (default: an untrained one)")
    p.add_argument("--no-smollm2", dest="smollm2", action="store_false")
    p.add_argument("--repeats", type=int, default=3, help="chain part: median of repeats")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    res = {}
    if "verifier" in a.parts:
        res["verifier"] = bench_verifier(a)
        print(json.dumps({k: v for k, v in res["verifier"].items() if k != "examples_of_errors"}))
    if "chain" in a.parts:
        runs = [bench_chain(a) for _ in range(a.repeats)]
        res["chain"] = {**runs[0],
                        "samples_per_s_per_core": statistics.median(r["samples_per_s_per_core"] for r in runs)}
        print(json.dumps(res["chain"]))
    if "generation" in a.parts:
        res["generation"] = bench_generation(a)
        print(json.dumps(res["generation"], indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
