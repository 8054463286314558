"""CoT rejection sampling as a stage over problem rows.

For each problem: k chain-of-thought samples with distinct seeds → rule-based verifier →
LLM judge only where the rules say "undecided" → problems with no correct sample are
resampled, up to `max_attempts` rounds (the attempt is recorded per sample). The stage keeps
one row per problem (the stage contract) and nests its samples in a `samples` list column
with their verdicts; `synth.reasoning_tables` unnests them into the CoT, SFT and preference
tables. A problem whose every request failed (timeouts, HTTP errors after retries) is a
`generation_failed` reject; an unsolved problem is kept (pass_rate 0): it is a DPO-free,
SFT-free row, and a difficulty signal.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from typing import Any

import pyarrow as pa

from schemas.engine.stage import ModelStage, Resources, annotate, reject_where
from schemas.ids import table_ids
from schemas.tables import field
from synth.generator_backends import Request, Sampling, describe_generator, local_model_resources, make_generator
from synth.judge import LLMJudge
from synth.verify import CORRECT, UNDECIDED, RuleVerifier

SYSTEM = "Solve the problem step by step. End with a line of the form 'The answer is N.'"

SAMPLE = pa.struct([
    ("completion", pa.string()), ("extracted_answer", pa.string()), ("verdict", pa.string()),
    ("verifier", pa.string()), ("attempt", pa.int32()), ("seed", pa.int64()), ("finish_reason", pa.string()),
    ("error", pa.string()), ("judge_prompt", pa.string()), ("judge_output", pa.string()), ("seconds", pa.float32()),
])
ADDS = [
    field("prompt", pa.string(), doc="the user turn the generator saw"),
    field("samples", pa.list_(SAMPLE), doc="every sample with its verdict"),
    field("n_samples", pa.int32(), stats="sum"),
    field("n_correct", pa.int32(), stats="sum"),
    field("pass_rate", pa.float32(), stats="hist:0:1:10", doc="correct / verified samples, all attempts"),
    field("attempts", pa.int32(), stats="category"),
    field("generator", pa.string(), stats="category"),
]


def sample_seed(base: int, problem_id: str, attempt: int, j: int) -> int:
    return int(hashlib.sha256(f"{base}:{problem_id}:{attempt}:{j}".encode()).hexdigest()[:12], 16) & (2**62 - 1)


def format_prompt(problem: str) -> str:
    return problem.strip()


class CoTSampler(ModelStage):
    name = "cot_sampler"
    adds = ADDS

    @classmethod
    def resources_for(cls, generator: str = "", **params: Any) -> Resources:
        return local_model_resources(generator)

    def __init__(self, generator: str, k: int = 4, max_attempts: int = 2, temperature: float = 0.8,
                 top_p: float = 0.95, max_tokens: int = 256, seed: int = 0, system: str = SYSTEM,
                 judge: str | None = None, judge_max_tokens: int = 16, verify_timeout_s: float = 5.0,
                 cache: str | None = None, threads: int | None = None, batch_size: int = 8,
                 request_timeout_s: float = 120.0, retries: int = 2, concurrency: int = 8):
        kw = dict(threads=threads or _default_threads(), batch_size=batch_size,
                  timeout_s=request_timeout_s, retries=retries, concurrency=concurrency)
        self.gen = make_generator(generator, cache, **kw)
        self.judge: LLMJudge | None = None
        if judge:
            self.judge = LLMJudge(self.gen if judge == "same" else make_generator(judge, cache, **kw), judge_max_tokens)
        self.verify = RuleVerifier(verify_timeout_s)
        self.k, self.max_attempts, self.seed, self.system = k, max_attempts, seed, system
        self.sampling: dict[str, Any] = dict(temperature=temperature, top_p=top_p, max_tokens=max_tokens)
        self.spec = generator

    @classmethod
    def model_info(cls, generator: str, judge: str | None = None, **params: Any) -> dict[str, Any]:  # type: ignore[override]  # its own parameters, bound by StageSpec
        info = {"generator": describe_generator(generator), "verifier": "rule:numeric+exact+math_verify"}
        if judge:
            info["judge"] = describe_generator(judge) if judge != "same" else "same as generator"
        return info

    def _messages(self, problem: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        return msgs + [{"role": "user", "content": format_prompt(problem)}]

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = table_ids(batch, ["problem", "answer"]).to_pylist()  # the id the row gets when written
        problems = batch.column("problem").to_pylist()
        answers = batch.column("answer").to_pylist()
        samples: list[list[dict]] = [[] for _ in problems]
        attempts = [0] * len(problems)
        for attempt in range(1, self.max_attempts + 1):
            todo = [i for i in range(len(problems))
                    if attempt == 1 or not any(s["verdict"] == CORRECT for s in samples[i])]
            if not todo:
                break
            reqs, owners = [], []
            for i in todo:
                attempts[i] = attempt
                for j in range(self.k):
                    seed = sample_seed(self.seed, ids[i], attempt, j)
                    reqs.append(Request(self._messages(problems[i]), Sampling(seed=seed, **self.sampling)))
                    owners.append((i, attempt, seed))
            completions = self.gen.generate(reqs)
            undecided = []
            for (i, att, seed), c in zip(owners, completions):
                s: dict[str, Any] = {"completion": c.text, "extracted_answer": None, "verdict": None, "verifier": None,
                     "attempt": att, "seed": seed, "finish_reason": c.finish_reason, "error": c.error,
                     "judge_prompt": None, "judge_output": None, "seconds": c.seconds}
                if c.error is None:
                    v = self.verify(c.text, answers[i], truncated=c.finish_reason == "length")
                    s.update(verdict=v.verdict, verifier=v.verifier, extracted_answer=v.extracted)
                    if v.verdict == UNDECIDED and self.judge is not None:
                        undecided.append((i, s))
                samples[i].append(s)
            if undecided and self.judge is not None:  # undecided only gets rows when there is a judge
                judged = self.judge([(problems[i], answers[i], s["extracted_answer"], s["completion"])
                                     for i, s in undecided])
                for (_, s), jd in zip(undecided, judged):
                    s.update(verdict=jd.verdict, verifier=jd.verifier, judge_prompt=jd.prompt, judge_output=jd.output)
        n_ok = [sum(s["verdict"] == CORRECT for s in ss) for ss in samples]
        n_verified = [sum(s["verdict"] is not None for s in ss) for ss in samples]
        failed = [n == 0 for n in n_verified]
        out = annotate(
            batch,
            prompt=pa.array([format_prompt(p) for p in problems], pa.string()),
            samples=pa.array(samples, pa.list_(SAMPLE)),
            n_samples=pa.array([len(ss) for ss in samples], pa.int32()),
            n_correct=pa.array(n_ok, pa.int32()),
            pass_rate=pa.array([ok / n if n else None for ok, n in zip(n_ok, n_verified)], pa.float32()),
            attempts=pa.array(attempts, pa.int32()),
            generator=pa.array([self.gen.model_id] * len(problems), pa.string()),
        )
        details = [", ".join(f"{k}={v}" for k, v in Counter(s["error"] for s in ss).items()) for ss in samples]
        return reject_where(out, pa.array(failed, pa.bool_()), "generation_failed", pa.array(details, pa.string()))


def _default_threads() -> int:
    """One thread per worker under Ray (workers share the cores); all cores when run alone."""
    if _in_ray_worker():
        return 1
    return max(1, (os.cpu_count() or 1))


def _in_ray_worker() -> bool:
    try:
        import ray
        return ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE
    except Exception:  # noqa: BLE001
        return False

