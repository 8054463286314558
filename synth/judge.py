"""Model-based verification: an LLM judge, asked only where the rules cannot decide.

The judge sees the problem, the reference answer and the candidate's final answer (and the
tail of its solution) and must answer CORRECT or INCORRECT. Its prompt and raw output are
stored with the sample, so a verdict can be audited; an output with no parseable verdict
leaves the sample `undecided` (it then goes to neither SFT nor DPO).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from synth.generator_backends import Generator, Request, Sampling
from synth.verify import CORRECT, INCORRECT, UNDECIDED

JUDGE_PROMPT = """You are grading the final answer to a math problem.
Problem: {problem}
Reference answer: {reference}
Candidate's final answer: {answer}
End of the candidate's solution: {tail}

Is the candidate's final answer mathematically equivalent to the reference answer?
Reply with one word: CORRECT or INCORRECT."""

_VERDICT = re.compile(r"\b(INCORRECT|CORRECT|NOT\s+CORRECT|WRONG|RIGHT)\b", re.I)


def parse_verdict(text: str | None) -> str | None:
    """The first verdict word in the judge's output, or None when there is none."""
    m = _VERDICT.search(text or "")
    if not m:
        return None
    word = re.sub(r"\s+", " ", m.group(1).upper())
    return CORRECT if word in ("CORRECT", "RIGHT") else INCORRECT


@dataclass
class Judgement:
    verdict: str
    verifier: str
    prompt: str
    output: str | None


class LLMJudge:
    def __init__(self, generator: Generator, max_tokens: int = 16, tail_chars: int = 300):
        self.generator, self.max_tokens, self.tail_chars = generator, max_tokens, tail_chars

    def __call__(self, items: list[tuple[str, str, str | None, str]]) -> list[Judgement]:
        """items: (problem, reference, extracted answer, completion) → one judgement each."""
        prompts = [JUDGE_PROMPT.format(problem=p, reference=r, answer=a if a is not None else "(none)",
                                       tail=(c or "")[-self.tail_chars:]) for p, r, a, c in items]
        reqs = [Request([{"role": "user", "content": pr}], Sampling(temperature=0.0, top_p=1.0,
                                                                   max_tokens=self.max_tokens, seed=0))
                for pr in prompts]
        out = []
        for pr, c in zip(prompts, self.generator.generate(reqs)):
            if c.error:
                out.append(Judgement(UNDECIDED, f"judge:error:{c.error}", pr, None))
                continue
            v = parse_verdict(c.text)
            out.append(Judgement(v or UNDECIDED, "judge" if v else "judge:no_verdict", pr, c.text))
        return out
