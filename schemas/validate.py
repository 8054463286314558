"""Check incoming data against a table schema.

Two entry points: `validate` raises on the first problem, naming the column and the row
(for users checking a file); `conform` never raises on bad data: it returns the rows that
fit, cast to the schema, and a rejects table that says why each other row did not.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from schemas.tables import REJECT_FIELDS


class SchemaError(ValueError):
    def __init__(self, message: str, column: str | None = None, row: int | None = None):
        super().__init__(message)
        self.column, self.row = column, row


@dataclass
class Conformed:
    table: pa.Table          # rows that fit, with exactly the schema's columns
    rejects: pa.Table        # drop_reason, reject_stage, reject_detail, raw
    reject_rows: list[int]   # original row index of each reject
    whole_table: bool = False  # a column problem rejected every row


def _type_name(t: pa.DataType) -> str:
    return "string" if t in (pa.string(), pa.large_string()) else str(t)


def _family(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return "binary"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "number"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return "list"
    return str(t)


def _compatible(src: pa.DataType, dst: pa.DataType) -> bool:
    """Casts that keep meaning (widths, string/large_string, int to float); never number to text."""
    if src == dst or pa.types.is_null(src):
        return True
    fs, fd = _family(src), _family(dst)
    if fs != fd:
        return False
    if fs == "number":
        return not (pa.types.is_floating(src) and pa.types.is_integer(dst))
    if fs == "list":
        return _compatible(src.value_type, dst.value_type)
    if pa.types.is_struct(src) and pa.types.is_struct(dst):
        names = {src.field(i).name: src.field(i).type for i in range(src.num_fields)}
        return all(_compatible(names[dst.field(i).name], dst.field(i).type)
                   for i in range(dst.num_fields) if dst.field(i).name in names)
    return True


def _cast(col: pa.ChunkedArray, type_: pa.DataType) -> pa.ChunkedArray:
    if col.type == type_:
        return col
    if pa.types.is_null(col.type):
        return pa.nulls(len(col), type_)
    if not _compatible(col.type, type_):
        raise pa.ArrowTypeError(f"no meaning-preserving cast from {col.type} to {type_}")
    return col.cast(type_, safe=True)


def empty_rejects(n: int = 0) -> pa.Table:
    return pa.table({f.name: pa.nulls(n, f.type) for f in REJECT_FIELDS},
                    schema=pa.schema([f.with_nullable(True) for f in REJECT_FIELDS]))


def make_rejects(reasons: Sequence[str], stage: str, details: Sequence[str | None],
                 raws: Sequence[str | None]) -> pa.Table:
    n = len(reasons)
    return pa.table({
        "drop_reason": pa.array(list(reasons), pa.string()),
        "reject_stage": pa.array([stage] * n, pa.string()),
        "reject_detail": pa.array(list(details), pa.string()),
        "raw": pa.array(list(raws), pa.string()),
    }, schema=pa.schema([f.with_nullable(True) for f in REJECT_FIELDS]))


def _raw_rows(table: pa.Table, idx: Sequence[int]) -> list[str]:
    if not idx:
        return []
    rows = table.take(pa.array(idx, pa.int64())).to_pylist()
    return [json.dumps(r, ensure_ascii=False, default=_json_default) for r in rows]


def _json_default(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"__bytes__": len(v)}
    return str(v)


def conform(table: pa.Table, schema: pa.Schema, *, stage: str = "read", where: str = "",
            row_names: list[str] | None = None) -> Conformed:
    """Cast `table` to `schema`; rows that cannot be made to fit become rejects.

    Columns the schema lacks are folded into a `meta` JSON column where the schema has
    one (so nothing the user gave is silently lost), and dropped otherwise.
    """
    n = table.num_rows
    at = f" in {where}" if where else ""
    bad: dict[int, tuple[str, str]] = {}
    whole_table_problem: tuple[str, str] | None = None
    columns: dict[str, pa.ChunkedArray] = {}
    for f in schema:
        if f.name not in table.column_names:
            if not f.nullable and f.name != "id":
                whole_table_problem = (f"missing_column:{f.name}",
                                       f"required column '{f.name}' is missing{at}")
                break
            columns[f.name] = pa.chunked_array([pa.nulls(n, f.type)])
            continue
        col = table.column(f.name)
        try:
            columns[f.name] = _cast(col, f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
            whole_table_problem = (f"wrong_type:{f.name}",
                                   f"column '{f.name}' has type {_type_name(col.type)}, "
                                   f"expected {_type_name(f.type)}{at}: {str(e).splitlines()[0]}")
            break
        if not f.nullable and f.name != "id":
            nulls = pc.is_null(columns[f.name])
            for i in pc.indices_nonzero(nulls).to_pylist():
                row = row_names[i] if row_names else f"row {i}{at}"
                bad.setdefault(i, (f"missing_value:{f.name}", f"{row}: '{f.name}' is null"))
    if whole_table_problem is not None:
        reason, detail = whole_table_problem
        rejects = make_rejects([reason] * n, stage, [detail] * n, _raw_rows(table, list(range(n))))
        return Conformed(pa.Table.from_batches([], schema=schema), rejects, list(range(n)), whole_table=True)

    extra = [c for c in table.column_names if c not in schema.names]
    if extra and "meta" in schema.names:
        extras = table.select(extra).to_pylist()
        metas = columns["meta"].to_pylist()
        merged = []
        for m, extra_values in zip(metas, extras):
            try:
                obj = json.loads(m) if m else {}
            except (ValueError, RecursionError):  # a meta that is not JSON (or too deep) stays as given
                obj = {"meta": m}
            if not isinstance(obj, dict):
                obj = {"meta": obj}
            obj.update({k: v for k, v in extra_values.items() if v is not None})
            merged.append(json.dumps(obj, ensure_ascii=False, default=_json_default) if obj else None)
        columns["meta"] = pa.chunked_array([pa.array(merged, pa.string())])

    out = pa.table(columns, schema=schema.remove_metadata()).replace_schema_metadata(schema.metadata)
    keep_idx = [i for i in range(n) if i not in bad]
    order = sorted(bad)
    if bad:
        rejects = make_rejects([bad[i][0] for i in order], stage, [bad[i][1] for i in order],
                               _raw_rows(table, order))
        out = out.take(pa.array(keep_idx, pa.int64()))
    else:
        rejects = empty_rejects()
    return Conformed(out, rejects, order)


def validate(table: pa.Table, schema: pa.Schema, *, where: str = "") -> pa.Table:
    """Return `table` cast to `schema`, or raise SchemaError naming the column and row."""
    c = conform(table, schema, where=where)
    if c.rejects.num_rows:
        reason = c.rejects.column("drop_reason")[0].as_py()
        detail = c.rejects.column("reject_detail")[0].as_py()
        column = reason.split(":", 1)[1] if ":" in reason else None
        raise SchemaError(detail, column=column, row=None if c.whole_table else c.reject_rows[0])
    return c.table
