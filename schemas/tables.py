"""Arrow schemas of every table the pipelines write (ARCHITECTURE.md, "How a row travels").

Each schema carries two kinds of metadata the rest of the code reads:
- schema metadata `curate.id_fields`: the fields whose content defines the row id;
- field metadata `curate.stats`: which content statistic to keep for the column at write
  time (`text`: char/word-length histograms, `hist:LO:HI:BINS`: a fixed-bin histogram whose
  bins hold their lower edge, `hist:LO:HI:BINS:right` their upper edge (for a `<=` threshold),
  `category`: value counts, `sum`: a running total such as audio seconds).
"""
from __future__ import annotations

import json

import pyarrow as pa

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)
# Hugging Face `datasets` casts this struct to its Audio feature.
AUDIO = pa.struct([("bytes", pa.binary()), ("path", pa.string()), ("sampling_rate", pa.int32())])


def field(name: str, type_: pa.DataType, *, required: bool = False, stats: str | None = None,
          doc: str | None = None, numbers_as_text: bool = False) -> pa.Field:
    meta = {}
    if stats:
        meta["curate.stats"] = stats
    if numbers_as_text:  # a JSON number read into this text column becomes its text (answers: 42 → "42")
        meta["curate.numbers_as_text"] = "1"
    if doc:
        meta["doc"] = doc
    return pa.field(name, type_, nullable=not required, metadata=meta or None)


def schema(fields: list[pa.Field], id_fields: list[str]) -> pa.Schema:
    return pa.schema(fields, metadata={"curate.id_fields": json.dumps(id_fields)})


def id_fields(s: pa.Schema) -> list[str]:
    meta = s.metadata or {}
    raw = meta.get(b"curate.id_fields")
    return json.loads(raw) if raw else []


def numbers_as_text(f: pa.Field) -> bool:
    return (f.metadata or {}).get(b"curate.numbers_as_text") == b"1"


def stats_kind(f: pa.Field) -> str | None:
    meta = f.metadata or {}
    raw = meta.get(b"curate.stats")
    return raw.decode() if raw else None


ID = field("id", pa.string(), required=True, doc="sha256 of the row's defining content")
SOURCE = field("source", pa.string(), stats="category", doc="dataset or generator the row came from")
SOURCE_IDS = field("source_ids", pa.list_(pa.string()), doc="ids of the rows this row was made from")

DOCUMENTS = schema([
    ID,
    field("text", pa.string(), required=True, stats="text"),
    SOURCE,
    SOURCE_IDS,
    field("meta", pa.string(), doc="free-form JSON object carried through from the input"),
], id_fields=["text"])

SFT = schema([
    ID,
    field("messages", MESSAGES, required=True, stats="text"),
    SOURCE,
    SOURCE_IDS,
], id_fields=["messages"])

SPEECH_SFT = schema([
    ID,
    field("prompt", pa.string(), doc="task prompt read with the audio; empty for spoken-query QA"),
    field("answer", pa.string(), required=True, stats="text"),
    field("text", pa.string(), required=True, stats="text", doc="the query as spoken (normalised)"),
    field("audio", AUDIO, required=True),
    field("duration_s", pa.float32(), stats="sum"),
    field("voice", pa.string(), stats="category"),
    field("engine", pa.string(), stats="category"),
    field("asr_text", pa.string()),
    field("wer", pa.float32(), stats="hist:0:1:20:right"),  # kept: wer <= --max-wer
    field("sample", pa.string(), stats="text",
          doc="<|user|><audio>{prompt}<|end|><|assistant|>{answer}<|end|>"),
    SOURCE,
    SOURCE_IDS,
], id_fields=["text", "voice", "engine", "answer"])

PROBLEMS = schema([
    ID,
    field("problem", pa.string(), required=True, stats="text"),
    field("answer", pa.string(), required=True, numbers_as_text=True),
    field("level", pa.int32(), stats="category"),
    field("reference_cot", pa.string(), stats="text"),
    SOURCE,
    SOURCE_IDS,
], id_fields=["problem", "answer"])

COT_SAMPLES = schema([
    ID,
    field("problem_id", pa.string(), required=True),
    field("problem", pa.string(), required=True),
    field("reference_answer", pa.string()),
    field("completion", pa.string(), required=True, stats="text"),
    field("extracted_answer", pa.string()),
    field("verdict", pa.string(), stats="category", doc="correct | incorrect | undecided"),
    field("verifier", pa.string(), stats="category"),
    field("generator", pa.string(), stats="category"),
    field("attempt", pa.int32(), stats="category"),
    field("seed", pa.int64()),
    SOURCE,
    SOURCE_IDS,
], id_fields=["problem_id", "completion", "generator", "seed"])

PREFERENCES = schema([
    ID,
    field("prompt_id", pa.string(), required=True),
    field("prompt", pa.string(), required=True, stats="text"),
    field("chosen", pa.string(), required=True, stats="text"),
    field("rejected", pa.string(), required=True, stats="text"),
    field("chosen_score", pa.float32()),
    field("rejected_score", pa.float32()),
    field("strategy", pa.string(), stats="category"),
    SOURCE,
    SOURCE_IDS,
], id_fields=["prompt", "chosen", "rejected"])

EDU_GRADES = schema([
    ID,
    field("doc_id", pa.string(), required=True, doc="id of the graded document (its `documents` id)"),
    field("text", pa.string(), required=True, stats="text"),
    field("prompt", pa.string(), required=True, doc="the full request the grader saw (rubric + document)"),
    field("grade_output", pa.string(), doc="the grader's raw reply"),
    field("edu_score", pa.int32(), stats="category", doc="parsed 0-5 educational-value points; null in rejects"),
    field("grader", pa.string(), stats="category", doc="generator model id"),
    field("rubric", pa.string(), stats="category", doc="rubric name:sha256 of the prompt template"),
    field("finish_reason", pa.string(), stats="category"),
    SOURCE,
    SOURCE_IDS,
    field("meta", pa.string()),
], id_fields=["prompt", "grader"])

# Columns every rejects table adds to its output table's (all-nullable) columns.
REJECT_FIELDS = [
    field("drop_reason", pa.string(), required=True, stats="category"),
    field("reject_stage", pa.string(), stats="category"),
    field("reject_detail", pa.string()),
    field("raw", pa.string(), doc="the input as read, where it could not be parsed into columns"),
]

TABLES: dict[str, pa.Schema] = {
    "documents": DOCUMENTS,
    "sft": SFT,
    "speech_sft": SPEECH_SFT,
    "problems": PROBLEMS,
    "cot_samples": COT_SAMPLES,
    "preferences": PREFERENCES,
    "edu_grades": EDU_GRADES,
}


def with_columns(base: pa.Schema, extra: list[pa.Field]) -> pa.Schema:
    """`base` plus `extra` fields (a stage's score columns); a name already present is replaced."""
    names = {f.name for f in extra}
    fields = [f for f in base if f.name not in names] + list(extra)
    return pa.schema(fields, metadata=base.metadata)


def rejects_schema(output: pa.Schema) -> pa.Schema:
    """The rejects table of `output`: its columns, all nullable, plus the reject columns.

    A row that never parsed has only `raw`, so nothing of the output may be required here.
    """
    fields = [f.with_nullable(True) for f in output if f.name not in {r.name for r in REJECT_FIELDS}]
    return pa.schema(fields + REJECT_FIELDS, metadata=output.metadata)
