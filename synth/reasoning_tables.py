"""From sampled problems to training tables: CoT samples, SFT rows, DPO preference pairs.

Pure functions over Arrow tables (one row per problem, samples nested, as `CoTSampler`
writes them). Each returns its table and the counts that say where every sample went, so
the published snapshot can account for it.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any

import pyarrow as pa

from schemas.ids import row_id
from schemas.tables import COT_SAMPLES, PREFERENCES, SFT, field, id_fields, with_columns
from synth.verify import CORRECT, INCORRECT

COT_TABLE = with_columns(COT_SAMPLES, [
    field("level", pa.int32(), stats="category"),
    field("finish_reason", pa.string(), stats="category"),
    field("judge_prompt", pa.string()),
    field("judge_output", pa.string()),
    field("problem_pass_rate", pa.float32(), stats="hist:0:1:10"),
    field("round", pa.int32(), stats="category"),
])
PREFERENCE_TABLE = with_columns(PREFERENCES, [
    field("level", pa.int32(), stats="category"),
    field("system", pa.string(), doc="the system prompt the samples were generated under (null: none)"),
])


def cot_samples(problems: pa.Table, round_: int = 0) -> tuple[pa.Table, dict[str, int]]:
    """One row per sample that came back (errored requests are counted, not rowed)."""
    rows: list[dict[str, Any]] = []
    errors: Counter[str] = Counter()
    level = problems.column("level").to_pylist() if "level" in problems.column_names else [None] * problems.num_rows
    for p, lv in zip(problems.to_pylist(), level):
        for s in p["samples"] or []:
            if s["error"] is not None:
                errors[s["error"]] += 1
                continue
            rows.append({
                "problem_id": p["id"], "problem": p["problem"], "reference_answer": p["answer"],
                "completion": s["completion"], "extracted_answer": s["extracted_answer"], "verdict": s["verdict"],
                "verifier": s["verifier"], "generator": p["generator"], "attempt": s["attempt"], "seed": s["seed"],
                "source": p.get("source"), "source_ids": [p["id"]], "level": lv, "finish_reason": s["finish_reason"],
                "judge_prompt": s["judge_prompt"], "judge_output": s["judge_output"],
                "problem_pass_rate": p["pass_rate"], "round": round_,
            })
    table = _table(rows, COT_TABLE)
    counts = {"problems": problems.num_rows, "samples": len(rows) + sum(errors.values()), "rows": len(rows),
              "generation_errors": sum(errors.values()), **{f"verdict:{k}": v for k, v in
                                                            Counter(r["verdict"] for r in rows).items()}}
    return table, counts


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text or "").strip().lower()


def sft_rows(samples: pa.Table, system: str | None = None) -> tuple[pa.Table, dict[str, int]]:
    """Correct samples as `messages` conversations; identical answers to one problem kept once."""
    seen, rows = set(), []
    counts: Counter[str] = Counter()
    for s in samples.to_pylist():
        counts["samples"] += 1
        if s["verdict"] != CORRECT:
            counts[f"not_used:{s['verdict']}"] += 1
            continue
        key = (s["problem_id"], _norm(s["completion"]))
        if key in seen:
            counts["duplicate_answer"] += 1
            continue
        seen.add(key)
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": s["problem"]}, {"role": "assistant", "content": s["completion"].strip()}]
        rows.append({"messages": msgs, "source": s["source"], "source_ids": [s["id"]]})
    counts["rows"] = len(rows)
    return _table(rows, SFT), dict(counts)


def preference_pairs(samples: pa.Table, max_pairs_per_prompt: int | None = 4, seed: int = 0,
                     system: str | None = None) -> tuple[pa.Table, dict[str, int]]:
    """Pairs (correct = chosen, incorrect = rejected) for prompts with at least one of each.

    `prompt` is the problem as the user turn; `system` records the system prompt it was
    sampled under, so a trainer can rebuild the generation context (`conversational`).

    Undecided samples are never used; texts are deduplicated per side first, so chosen and
    rejected are never equal; with a cap, pairs are drawn without replacement, spread so
    that every distinct correct and incorrect answer is used before any is reused.
    """
    by_prompt: dict[str, dict[str, Any]] = {}
    for s in samples.to_pylist():
        d = by_prompt.setdefault(s["problem_id"], {"problem": s["problem"], "level": s.get("level"),
                                                   "source": s["source"], CORRECT: {}, INCORRECT: {}})
        if s["verdict"] in (CORRECT, INCORRECT):
            d[s["verdict"]].setdefault(_norm(s["completion"]), s)
    strategy = f"capped:{max_pairs_per_prompt}" if max_pairs_per_prompt else "all_pairs"
    rows: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    for pid, d in by_prompt.items():
        good, bad = list(d[CORRECT].values()), list(d[INCORRECT].values())
        counts["prompts"] += 1
        if not good or not bad:
            counts["prompts_without_pair:" + ("no_correct" if not good else "no_incorrect")] += 1
            continue
        pairs = [(g, b) for g in good for b in bad if _norm(g["completion"]) != _norm(b["completion"])]
        if max_pairs_per_prompt and len(pairs) > max_pairs_per_prompt:
            random.Random(f"{seed}:{pid}").shuffle(pairs)
            pairs = _spread(pairs, max_pairs_per_prompt)
        counts["prompts_with_pairs"] += 1
        for g, b in pairs:
            rows.append({"prompt_id": pid, "prompt": d["problem"], "chosen": g["completion"].strip(),
                         "rejected": b["completion"].strip(), "chosen_score": 1.0, "rejected_score": 0.0,
                         "strategy": strategy, "source": d["source"], "source_ids": [g["id"], b["id"]],
                         "level": d["level"], "system": system or None})
    counts["pairs"] = len(rows)
    return _table(rows, PREFERENCE_TABLE), dict(counts)


def conversational(pairs: pa.Table) -> pa.Table:
    """TRL's conversational preference format: `prompt` as the messages the generator saw
    (system, when recorded, then user), `chosen`/`rejected` as one assistant message each.

    A trainer then applies its tokenizer's chat template, so the pair is scored in the
    context it was sampled in; the other columns are kept as they are.
    """
    system = pairs.column("system").to_pylist() if "system" in pairs.column_names else [None] * pairs.num_rows
    prompt = [([{"role": "system", "content": s}] if s else []) + [{"role": "user", "content": p}]
              for s, p in zip(system, pairs.column("prompt").to_pylist())]
    turn = lambda col: [[{"role": "assistant", "content": t}] for t in pairs.column(col).to_pylist()]
    msg = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    out = pairs
    for name, values in (("prompt", prompt), ("chosen", turn("chosen")), ("rejected", turn("rejected"))):
        out = out.set_column(out.schema.get_field_index(name), name, pa.array(values, msg))
    return out


def _spread(pairs: list[tuple[dict, dict]], n: int) -> list[tuple[dict, dict]]:
    """n pairs, each time the one whose answers were used least so far (ties: given order)."""
    used: Counter = Counter()
    out: list[tuple[Any, Any]] = []
    rest = list(pairs)
    while rest and len(out) < n:
        best = min(range(len(rest)), key=lambda i: used[id(rest[i][0])] + used[id(rest[i][1])])
        g, b = rest.pop(best)
        used[id(g)] += 1
        used[id(b)] += 1
        out.append((g, b))
    return out


def _table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows → table of `schema` with content ids (sample ids come from their defining fields)."""
    fields = id_fields(schema)
    for r in rows:
        r["id"] = row_id(*[r.get(f) for f in fields])
    return pa.Table.from_pylist(rows, schema=schema)
