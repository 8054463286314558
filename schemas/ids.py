"""Stable row ids: sha256 over the fields that define a row's content.

Ids depend on content only (never on file names, run ids or row order), so the same
document gets the same id in every run and every version; lineage is kept separately
in `source_ids`.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Sequence

import pyarrow as pa


def _canonical(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


def row_id(*parts: Any) -> str:
    """sha256 hex of the parts, each length-prefixed so ("ab","c") != ("a","bc")."""
    h = hashlib.sha256()
    for part in parts:
        b = _canonical(part)
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def table_ids(table: pa.Table, fields: Sequence[str]) -> pa.Array:
    """Ids for every row of `table` from the named defining fields."""
    columns: list[Iterable[Any]] = [table.column(f).to_pylist() for f in fields]
    return pa.array([row_id(*vals) for vals in zip(*columns)] if columns else [], type=pa.string())
