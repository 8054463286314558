"""Teacher data: problems with a worked solution (`reference_cot`) as SFT conversations, with
the rule verifier deciding whether the worked solution reaches the known answer.

`filter=True` rejects wrong worked solutions (`teacher_answer_wrong`): the verifier-filtered
data of the loop; `filter=False` keeps them, annotated: the unfiltered ablation.
"""
from __future__ import annotations

import pyarrow as pa

from schemas.engine.stage import annotate, reject_where, stage
from schemas.tables import MESSAGES, field
from synth.verify import CORRECT, RuleVerifier

_VERIFIER: RuleVerifier | None = None


@stage(adds=[field("teacher_verdict", pa.string(), stats="category"),
             field("messages", MESSAGES, stats="text")])
def teacher_sft(batch: pa.Table, filter: bool = True, system: str = "") -> pa.Table:
    global _VERIFIER
    _VERIFIER = _VERIFIER or RuleVerifier(use_math_verify=False)  # word-problem answers are numbers
    cots, answers = batch.column("reference_cot").to_pylist(), batch.column("answer").to_pylist()
    verdicts = [_VERIFIER(c, a).verdict if c else "missing" for c, a in zip(cots, answers)]
    head = [{"role": "system", "content": system}] if system else []
    msgs = [head + [{"role": "user", "content": p}, {"role": "assistant", "content": c or ""}]
            for p, c in zip(batch.column("problem").to_pylist(), cots)]
    batch = annotate(batch, teacher_verdict=pa.array(verdicts, pa.string()), messages=pa.array(msgs, MESSAGES))
    batch = reject_where(batch, [v == "missing" for v in verdicts], "no_reference_cot")
    if filter:
        batch = reject_where(batch, [v != CORRECT for v in verdicts], "teacher_answer_wrong")
    return batch
