"""Educational-value grading by an LLM (the Phi-3 / FineWeb-Edu recipe's labeling step).

A generator (any backend of `synth.generator_backends`) reads a document under an additive rubric
(0-5 points, one per criterion met) and ends its reply with `Educational score: N`. The
stage keeps the prompt, the raw reply, the parsed score and the grader's model id on every
row; a reply with no readable score is a `grade_failed` reject carrying the reply and the
reason, a request that failed after its retries is `generation_failed`: a score is never
guessed. Grading is greedy by default and goes through the generators' SQLite cache, so a
rerun over the same documents with the same grader and rubric costs no generation.
`few_shot` puts worked examples before the document as earlier chat turns (for small local
graders that otherwise never state a score).
A sample of graded documents then trains the fast classifier (`filters.quality.train`).
"""
from __future__ import annotations

import hashlib
import re
from typing import Any

import pyarrow as pa

from schemas.engine.stage import ModelStage, Resources, annotate, reject_where
from schemas.ids import table_ids
from schemas.tables import DOCUMENTS, EDU_GRADES, id_fields
from synth.generator_backends import Request, Sampling, describe_generator, local_model_resources, make_generator

RUBRIC_NAME = "edu-additive-v1"
# Our own wording of the additive idea: points accumulate, so a grader cannot skip to 5
# without the lower criteria, and "N points" stays comparable across graders.
RUBRIC = (
    "You are rating how useful a web page extract would be for teaching, from primary school up to introductory "
    "university level.\n"
    "\n"
    "Start from 0 and add one point for each statement that holds. Stop adding once a statement fails.\n"
    "1. The extract carries some information about an academic or practical subject that could be taught, even if "
    "mixed with advertising, navigation text, chatter or unrelated material.\n"
    "2. The extract stays on one subject and its sentences connect into a coherent explanation or description, even"
    " if incomplete, loosely organised or written for experts.\n"
    "3. A learner could study from it: it explains the central ideas of its subject clearly at a level a course "
    "could use, like a section of a textbook, a tutorial or a reference manual, though it may leave gaps.\n"
    "4. It would be a good teaching text: focused, substantial and clearly written, with examples, definitions or "
    "steps that build understanding, and almost nothing off-topic.\n"
    "5. It is outstanding teaching material: it develops its subject in depth with careful reasoning or worked "
    "examples, and could be handed to students as it is.\n"
    "\n"
    "Grade the extract below. Ignore its formatting; judge its content.")

TEMPLATE = """{rubric}

<extract>
{document}
</extract>

Justify your points in at most 60 words, then end with one line of exactly this form:
Educational score: N
where N is the total number of points, from 0 to 5."""

# Few-shot form, for small local graders that do not follow the instruction alone (SmolLM2-135M
# justified at length and never stated a score): the rubric once, then worked examples as
# earlier turns of the chat, each answered with the score line only. Examples written for this
# project, spread over the scale so no single answer is the obvious copy.
FOLLOW_UP = """<extract>
{document}
</extract>

Reply with one line: Educational score: N (0 to 5 points)."""
FEW_SHOT_TEMPLATE = "{rubric}\n\n" + FOLLOW_UP
FEW_SHOT = [
    ("Big sale this weekend only! Sofas, lamps and rugs at half price. Free delivery on orders over $50. "
     "Sign up for our newsletter and follow us for more deals.", 0),
    ("Photosynthesis is how plants make their food. In the chloroplasts, light energy splits water into oxygen "
     "and hydrogen; the plant then uses carbon dioxide from the air to build sugars. A leaf kept in the dark "
     "stops releasing oxygen, which shows that light drives the process.", 4),
    ("lol same here, my cat did that yesterday too. anyway gotta go, see you all at the game tonight!!", 0),
    ("A prime number has exactly two divisors, 1 and itself. Seven is prime, while nine is not, because "
     "three divides it.", 3),
    ("Our company was founded in 1998 and has offices in four cities. We offer accounting, payroll and tax "
     "services to small businesses. Contact us today for a quote.", 1),
]

MAX_SCORE = 5
# The last "score: N" statement wins (a grader may revise itself); "N/5" and markdown allowed.
_SCORE = re.compile(r"score\W{0,6}?(?:is\W{0,3})?(-?\d+(?:\.\d+)?)(?:\s*(?:/|out of)\s*5)?", re.IGNORECASE)
_BARE = re.compile(r"^\W*(-?\d+(?:\.\d+)?)\W*$")


def parse_score(output: str | None, finish_reason: str | None = None) -> tuple[int | None, str | None]:
    """(score, None) or (None, reason): `no_output`, `no_score`, `no_score_truncated`,
    `not_integer:<v>`, `out_of_range:<v>`. A reply that is only a number counts as a score."""
    if output is None or not output.strip():
        return None, "no_output"
    found = _SCORE.findall(output)
    value = found[-1] if found else None
    if value is None:
        bare = _BARE.match(output)
        value = bare.group(1) if bare else None
    if value is None:
        return None, "no_score_truncated" if finish_reason == "length" else "no_score"
    if "." in value and float(value) != int(float(value)):
        return None, f"not_integer:{value}"
    score = int(float(value))
    if not 0 <= score <= MAX_SCORE:
        return None, f"out_of_range:{value}"
    return score, None


def truncate(text: str, max_chars: int) -> str:
    """The first `max_chars` characters, cut at a word boundary, marked as cut."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ", max_chars // 2)
    return (cut[:space] if space > 0 else cut) + " [...]"


def rubric_id(template: str, rubric: str, name: str = RUBRIC_NAME, few_shot: bool = False) -> str:
    """`name:<hash>` of everything the grader is told besides the document."""
    parts = [template, rubric] if not few_shot else [FEW_SHOT_TEMPLATE, FOLLOW_UP, rubric, repr(FEW_SHOT)]
    return f"{name}{'-fewshot' if few_shot else ''}:{hashlib.sha256(chr(0).join(parts).encode()).hexdigest()[:12]}"


def render(messages: list[dict[str, str]]) -> str:
    """The prompt column: the user turn itself, or every turn of a few-shot chat, role-tagged."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


class EduGrader(ModelStage):
    """Stage: grade each document; writes EDU_GRADES' grading columns; rejects
    `generation_failed` (backend error after retries) and `grade_failed` (no readable score)."""
    name = "edu_grader"

    @classmethod
    def resources_for(cls, generator: str = "", **params: Any) -> Resources:
        return local_model_resources(generator)
    adds = [f for f in EDU_GRADES if f.name in ("doc_id", "prompt", "grade_output", "edu_score", "grader", "rubric",
                                                 "finish_reason", "source_ids")]

    def __init__(self, generator: str, max_chars: int = 3000, temperature: float = 0.0, max_tokens: int = 256,
                 seed: int = 0, template: str = TEMPLATE, rubric: str = RUBRIC, rubric_name: str = RUBRIC_NAME,
                 few_shot: bool = False, cache: str | None = None, threads: int | None = None, batch_size: int = 8,
                 request_timeout_s: float = 120.0, retries: int = 2, concurrency: int = 8):
        from synth.cot_sampling import _default_threads
        if "{document}" not in template:
            raise ValueError("the prompt template needs a {document} placeholder")
        self.gen = make_generator(generator, cache, threads=threads or _default_threads(), batch_size=batch_size,
                                  timeout_s=request_timeout_s, retries=retries, concurrency=concurrency)
        self.template, self.rubric, self.max_chars, self.few_shot = template, rubric, max_chars, few_shot
        self.rubric_id = rubric_id(template, rubric, rubric_name, few_shot)
        self.sampling = Sampling(temperature=temperature, top_p=1.0, max_tokens=max_tokens, seed=seed)

    @classmethod
    def model_info(cls, generator: str, template: str = TEMPLATE, rubric: str = RUBRIC,  # type: ignore[override]  # its own parameters, bound by StageSpec
                   rubric_name: str = RUBRIC_NAME, few_shot: bool = False, **params: Any) -> dict[str, Any]:
        return {"generator": describe_generator(generator),
                "rubric": rubric_id(template, rubric, rubric_name, few_shot)}

    def messages(self, text: str) -> list[dict[str, str]]:
        doc = truncate(text, self.max_chars)
        if not self.few_shot:
            return [{"role": "user", "content": self.template.format(rubric=self.rubric, document=doc)}]
        msgs = []
        for i, (example, score) in enumerate(FEW_SHOT):
            turn = (FEW_SHOT_TEMPLATE if i == 0 else FOLLOW_UP).format(rubric=self.rubric, document=example)
            msgs += [{"role": "user", "content": turn}, {"role": "assistant", "content": f"Educational score: {score}"}]
        return msgs + [{"role": "user", "content": FOLLOW_UP.format(document=doc)}]

    def __call__(self, batch: pa.Table) -> pa.Table:
        doc_ids = table_ids(batch, id_fields(DOCUMENTS))  # the id the document has in a documents table
        chats = [self.messages(t or "") for t in batch.column("text").to_pylist()]
        prompts = [render(m) for m in chats]
        done = self.gen.generate([Request(m, self.sampling) for m in chats])
        parsed = [parse_score(c.text, c.finish_reason) if c.error is None else (None, None) for c in done]
        n = batch.num_rows
        out = annotate(
            batch,
            doc_id=doc_ids,
            source_ids=pa.array([[d] for d in doc_ids.to_pylist()], pa.list_(pa.string())),
            prompt=pa.array(prompts, pa.string()),
            grade_output=pa.array([c.text for c in done], pa.string()),
            edu_score=pa.array([s for s, _ in parsed], pa.int32()),
            grader=pa.array([self.gen.model_id] * n, pa.string()),
            rubric=pa.array([self.rubric_id] * n, pa.string()),
            finish_reason=pa.array([c.finish_reason for c in done], pa.string()),
        )
        out = reject_where(out, pa.array([c.error is not None for c in done], pa.bool_()), "generation_failed",
                           pa.array([c.error for c in done], pa.string()))
        return reject_where(out, pa.array([r is not None for _, r in parsed], pa.bool_()), "grade_failed",
                            pa.array([r for _, r in parsed], pa.string()))
