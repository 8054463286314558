"""Basic text hygiene every text pipeline starts with: normalise, then bound the length.

Empty, too-short and oversized documents are the commonest bad input; catching them first
keeps every later (costlier) stage from seeing them.
"""
from __future__ import annotations

import unicodedata
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from schemas.engine import annotate, reject_where, stage
from schemas.tables import field

NormalForm = Literal["NFC", "NFD", "NFKC", "NFKD"]  # unicodedata.normalize's forms


@stage(adds=[])
def normalize_text(batch: pa.Table, form: NormalForm = "NFC", column: str = "text") -> pa.Table:
    """Unicode-normalise, unify line endings, trim; empty text becomes `empty_text`."""
    texts = batch.column(column).to_pylist()
    out = [None if t is None else unicodedata.normalize(form, t.replace("\r\n", "\n").replace("\r", "\n")).strip()
           for t in texts]
    arr = pa.array(out, pa.string())
    batch = annotate(batch, **{column: arr})
    empty = pc.or_(pc.is_null(arr), pc.equal(pc.utf8_length(arr), 0))
    return reject_where(batch, empty, "empty_text")


@stage(adds=[field("n_chars", pa.int32()), field("n_words", pa.int32(), stats="hist:0:2000:40")])
def length_filter(batch: pa.Table, min_words: int = 5, max_words: int = 100_000,
                  max_chars: int = 1_000_000, column: str = "text") -> pa.Table:
    """Count characters and words; reject outside [min_words, max_words] or over max_chars."""
    text = batch.column(column)
    n_chars = pc.utf8_length(text).cast(pa.int32())
    n_words = pc.count_substring_regex(text, r"\S+").cast(pa.int32())
    batch = annotate(batch, n_chars=n_chars, n_words=n_words)
    batch = reject_where(batch, pc.greater(n_chars, max_chars), "too_long_chars",
                         pc.cast(n_chars, pa.string()))
    batch = reject_where(batch, pc.less(n_words, min_words), "too_short")
    return reject_where(batch, pc.greater(n_words, max_words), "too_long")
