"""Exact-match accuracy on held-out problems (greedy decoding, the rule verifier), by level."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from model.generate import generate
from model.tokenizer import ChatTokenizer
from model.transformer import Transformer
from synth.verify import CORRECT, RuleVerifier


def evaluate(model: Transformer, tok: ChatTokenizer, problems: list[dict], max_new_tokens: int = 96,
             batch_size: int = 64, system: str | None = None) -> dict[str, Any]:
    verifier = RuleVerifier(use_math_verify=False)  # held-out answers are numbers: exact and fast
    by_level: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    correct = 0
    for i in range(0, len(problems), batch_size):
        chunk = problems[i:i + batch_size]
        prompts = [tok.encode_chat(([{"role": "system", "content": system}] if system else []) +
                                   [{"role": "user", "content": p["problem"]}], add_generation_prompt=True)[0]
                   for p in chunk]
        outs = generate(model, prompts, max_new_tokens=max_new_tokens, stop_id=tok.end, pad_id=tok.pad)
        for p, (ids, reason) in zip(chunk, outs):
            ok = verifier(tok.decode(ids), p["answer"], truncated=reason == "length").verdict == CORRECT
            correct += ok
            by_level[p.get("level")][0] += ok
            by_level[p.get("level")][1] += 1
    return {"accuracy": correct / max(1, len(problems)), "n": len(problems),
            "by_level": {str(k): round(c / n, 4) for k, (c, n) in sorted(by_level.items(), key=lambda kv: str(kv[0]))}}
