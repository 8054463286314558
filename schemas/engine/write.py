"""The write side of a shard: ids, exact duplicates within the shard, the declared schema;
kept rows and rejects as Parquet under the shard's name, then its completion marker holding
the summary (ARCHITECTURE.md, "How a row travels"). Rejects never lose a row: a value that
does not fit its column is kept as JSON in `raw`.
"""
from __future__ import annotations

import json
import time
from typing import Any

import pyarrow as pa

from schemas import stats as st
from schemas.engine.accounting import StageCount, check_shard, reason_counts
from schemas.engine.failpoints import failpoint
from schemas.engine.files import write_json, write_parquet
from schemas.engine.inputs import InputShard, concat_rejects
from schemas.engine.job import ShardJob, ShardState, node
from schemas.ids import row_id, table_ids
from schemas.tables import id_fields
from schemas.validate import conform, empty_rejects, make_rejects


def write_state(state: ShardState, job: ShardJob) -> dict[str, Any]:
    """Ids, exact duplicates within the shard, the declared schema; kept rows and rejects as
    Parquet under the shard's name, then its marker holding the summary."""
    shard = InputShard.from_dict(state.shard)
    if state.failure:
        return {"shard": shard.key, **state.failure}
    t0 = time.perf_counter()
    kept = _drop_internal(state.live)
    stage_rejects = [_drop_internal(r) for r in state.rejects]
    if kept.num_rows == 0:  # later stages never ran, so their columns are missing: nothing to fit
        kept = job.output_schema.empty_table()
    kept = kept.drop_columns([c for c in ("id",) if c in kept.column_names])
    kept = kept.add_column(0, "id", table_ids(kept, id_fields(job.output_schema)))
    kept, dup_rejects = _split_duplicate_ids(kept, id_fields(job.output_schema))
    fitted = conform(kept, job.output_schema, stage="write", where=shard.path)
    write_count = StageCount("write", rows_in=kept.num_rows + dup_rejects.num_rows,
                             rows_out=fitted.table.num_rows, rejected=fitted.rejects.num_rows + dup_rejects.num_rows)
    write_count.reasons = reason_counts(concat_rejects([dup_rejects, fitted.rejects]))
    write_rejects = fitted.rejects
    if write_rejects.num_rows:
        failed = kept.take(pa.array(fitted.reject_rows, pa.int64())).drop_columns(["id"])
        write_rejects = _merge_columns(failed, write_rejects)

    rejects = concat_rejects([*stage_rejects, dup_rejects, write_rejects])
    if rejects.num_rows:
        rejects = fit_rejects(rejects.drop_columns([c for c in ("id",) if c in rejects.column_names]),
                              job.rejects_schema)
        # ids after redaction: a hash of a short removed value (a card number) could be reversed
        rejects = rejects.set_column(rejects.schema.get_field_index("id"), job.rejects_schema.field("id"),
                                     _reject_ids(rejects, id_fields(job.output_schema)))
    read = state.counts[0]
    summary: dict[str, Any] = {"shard": shard.key, "input": state.shard, "rows_in": state.n_in,
                               "kept": fitted.table.num_rows, "rejected": rejects.num_rows,
                               "lost": read.lost, "lost_files": state.lost_files, "files": {}, "file_bytes": {}}
    summary["stats"] = st.table_stats(fitted.table, job.output_schema)
    summary["rejects_stats"] = st.table_stats(rejects, job.rejects_schema)
    if fitted.table.num_rows:
        uri = f"{job.out_dir}/{shard.key}.parquet"
        summary["file_bytes"]["kept"] = write_parquet(fitted.table, uri, summary["stats"])
        summary["files"]["kept"] = uri
    if rejects.num_rows:
        uri = f"{job.rejects_dir}/{shard.key}.parquet"
        summary["file_bytes"]["rejects"] = write_parquet(rejects, uri, summary["rejects_stats"])
        summary["files"]["rejects"] = uri
    write_count.seconds = time.perf_counter() - t0
    summary["stages"] = [c.to_dict() for c in (*state.counts, write_count)]
    summary["placement"] = {**state.placement, "write": node()}
    summary["timeline"] = {**state.timeline, "write": [time.time() - write_count.seconds, time.time()]}
    summary["seconds"] = round(time.time() - state.started, 4)
    check_shard(summary)
    write_json(f"{job.out_dir}/_markers/{shard.key}.json", summary)
    failpoint("shard-written")
    return summary



def _drop_internal(table: pa.Table) -> pa.Table:
    return table.drop_columns([c for c in table.column_names if c.startswith("_")])


def _reject_ids(rejects: pa.Table, fields: list[str]) -> pa.Array:
    cols = {f: rejects.column(f).to_pylist() for f in fields if f in rejects.column_names}
    raws = rejects.column("raw").to_pylist() if "raw" in rejects.column_names else [None] * rejects.num_rows
    out = []
    for i in range(rejects.num_rows):
        vals = [cols[f][i] for f in fields] if len(cols) == len(fields) else [None]
        out.append(row_id(*vals) if all(v is not None for v in vals) else row_id("raw", raws[i]))
    return pa.array(out, pa.string())


def fit_rejects(rejects: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast rejects to their table's schema without losing a row: a value that does not fit
    its column is nulled there and the whole row is kept as JSON in `raw`."""
    n = rejects.num_rows
    columns, lossy = {}, False
    for f in schema:
        if f.name not in rejects.column_names:
            columns[f.name] = pa.nulls(n, f.type)
            continue
        try:
            columns[f.name] = rejects.column(f.name).cast(f.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            columns[f.name], lossy = pa.nulls(n, f.type), True
    if lossy:
        rows = [json.dumps(r, default=str, ensure_ascii=False) for r in rejects.drop_columns(
            [c for c in ("raw",) if c in rejects.column_names]).to_pylist()]
        raw = columns["raw"].to_pylist()
        columns["raw"] = pa.array([r if r is not None else j for r, j in zip(raw, rows)], pa.string())
    return pa.table(columns, schema=schema)


def _merge_columns(rows: pa.Table, rejects: pa.Table) -> pa.Table:
    """The failed rows' own columns beside their reject columns."""
    for name in rejects.column_names:
        if name in rows.column_names:
            rows = rows.drop_columns([name])
        rows = rows.append_column(name, rejects.column(name))
    return rows


def _split_duplicate_ids(kept: pa.Table, fields: list[str]) -> tuple[pa.Table, pa.Table]:
    """Rows whose id (the hash of their id fields) already occurred in this shard are exact
    duplicates: the first is kept, the others become `duplicate_id` rejects. Only within a
    shard; duplicates across shards (and near-duplicates) are the dedup stage's job."""
    ids = kept.column("id").to_pylist()
    first: dict[str, int] = {}
    dups = [i for i, rid in enumerate(ids) if first.setdefault(rid, i) != i]
    if not dups:
        return kept, empty_rejects()
    what = ", ".join(fields) or "content"
    details = [f"exact duplicate ({what}) of an earlier row of this shard, id {ids[i][:16]}" for i in dups]
    rejects = _merge_columns(kept.take(pa.array(dups, pa.int64())).drop_columns(["id"]),
                             make_rejects(["duplicate_id"] * len(dups), "write", details, [None] * len(dups)))
    keep = sorted(first.values())
    return kept.take(pa.array(keep, pa.int64())), rejects

