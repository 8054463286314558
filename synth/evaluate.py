"""Held-out scoring with the rule verifier: greedy exact match (pass@1), and from k samples at a
temperature pass@k and majority-vote@k; each with its standard error and the per-problem
outcomes, so two models scored on the same problems can be compared by a paired test."""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from model.sampling import generate
from model.tokenizer import ChatTokenizer
from model.transformer import Transformer
from synth.verify import CORRECT, RuleVerifier


def se(p: float, n: int) -> float:
    """Standard error of a proportion p over n independent problems."""
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n else float("nan")


def paired(a: list[int], b: list[int]) -> dict[str, float]:
    """Mean difference a - b over the same problems and its standard error (paired by problem)."""
    n = len(a)
    assert n == len(b) and n > 1, "paired outcomes need the same problems"
    d = [x - y for x, y in zip(a, b)]
    m = sum(d) / n
    var = sum((x - m) ** 2 for x in d) / (n - 1)
    return {"diff": m, "se": math.sqrt(var / n), "n": n}


def _prompts(tok: ChatTokenizer, problems: list[dict], system: str | None) -> list[list[int]]:
    return [tok.encode_chat(([{"role": "system", "content": system}] if system else []) +
                            [{"role": "user", "content": p["problem"]}], add_generation_prompt=True)[0]
            for p in problems]


def _by_level(problems: list[dict], ok: list[int]) -> dict[str, float]:
    acc: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    for p, o in zip(problems, ok):
        acc[p.get("level")][0] += o
        acc[p.get("level")][1] += 1
    return {str(k): round(c / n, 4) for k, (c, n) in sorted(acc.items(), key=lambda kv: str(kv[0]))}


def evaluate(model: Transformer, tok: ChatTokenizer, problems: list[dict], max_new_tokens: int = 96,
             batch_size: int = 64, system: str | None = None) -> dict[str, Any]:
    """Greedy pass@1: accuracy, its standard error, by level, and the 0/1 outcome per problem."""
    verifier = RuleVerifier(use_math_verify=False)  # held-out answers are numbers: exact and fast
    ok: list[int] = []
    for i in range(0, len(problems), batch_size):
        chunk = problems[i:i + batch_size]
        outs = generate(model, _prompts(tok, chunk, system), max_new_tokens=max_new_tokens, stop_id=tok.end,
                        pad_id=tok.pad)
        ok += [int(verifier(tok.decode(ids), p["answer"], truncated=reason == "length").verdict == CORRECT)
               for p, (ids, reason) in zip(chunk, outs)]
    acc = sum(ok) / max(1, len(problems))
    return {"accuracy": acc, "se": se(acc, len(problems)), "n": len(problems), "by_level": _by_level(problems, ok),
            "outcomes": ok}


def evaluate_sampled(model: Transformer, tok: ChatTokenizer, problems: list[dict], k: int, temperature: float = 0.8,
                     seed: int = 0, max_new_tokens: int = 96, batch_size: int = 64) -> dict[str, Any]:
    """k samples per problem: pass@k (any correct) and maj@k (the most frequent extracted answer,
    ties to the first seen, is correct), with standard errors and levels."""
    verifier = RuleVerifier(use_math_verify=False)
    any_ok, maj_ok = [], []
    for i in range(0, len(problems), batch_size):
        chunk = problems[i:i + batch_size]
        prompts = _prompts(tok, chunk, None)
        votes: list[Counter] = [Counter() for _ in chunk]
        hits = [0] * len(chunk)
        for j in range(k):
            # a sample's seed names its problem and draw, so pass@k does not depend on batch_size
            outs = generate(model, prompts, max_new_tokens=max_new_tokens, stop_id=tok.end, pad_id=tok.pad,
                            temperature=temperature, seed=[(seed << 32) + (i + r) * k + j for r in range(len(chunk))])
            for r, (p, (ids, reason)) in enumerate(zip(chunk, outs)):
                v = verifier(tok.decode(ids), p["answer"], truncated=reason == "length")
                hits[r] += v.verdict == CORRECT
                if v.extracted is not None and reason != "length":
                    votes[r][v.extracted.strip()] += 1
        for p, h, c in zip(chunk, hits, votes):
            any_ok.append(int(h > 0))
            top = c.most_common(1)
            maj_ok.append(int(bool(top) and verifier.compare(top[0][0], p["answer"]).verdict == CORRECT))
    n = len(problems)
    pk, mk = sum(any_ok) / max(1, n), sum(maj_ok) / max(1, n)
    return {"k": k, "temperature": temperature, "n": n,
            "pass_at_k": pk, "pass_at_k_se": se(pk, n), "pass_at_k_by_level": _by_level(problems, any_ok),
            "maj_at_k": mk, "maj_at_k_se": se(mk, n), "maj_at_k_by_level": _by_level(problems, maj_ok)}
