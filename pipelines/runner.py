"""Run a pipeline: plan shards, process each (read → stages → split → write), publish once.

Each input shard is processed end to end by one worker (a Ray task, or an actor when a stage
loads a model), which writes the kept rows and the rejects as Parquet under deterministic
names and then a completion marker holding the shard's accounting and content statistics.
Only the driver publishes, and only after every shard has its marker: one snapshot per
table, carrying lineage and accounting. A rerun of the same pipeline, config and inputs
after a crash finds the markers and processes only what is missing.
"""
from __future__ import annotations

import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from pipelines.inputs import InputError, InputShard, concat_rejects, plan_inputs, read_shard
from pipelines.lineage import config_hash, git_commit
from pipelines.stage import StageCount, StageSpec, as_spec, run_chain
from schemas import stats as st
from schemas.ids import row_id, table_ids
from schemas.store import Store, rejects_name
from schemas.tables import id_fields, rejects_schema, with_columns
from schemas.validate import conform


class AccountingError(RuntimeError):
    """Counts that do not add up: a bug, never bad input."""


class NothingKept(RuntimeError):
    """Every input row was rejected: the output table is left as it was."""


@dataclass
class Pipeline:
    name: str
    input_schema: pa.Schema
    output_schema: pa.Schema
    stages: list[Any]

    def specs(self) -> list[StageSpec]:
        return [as_spec(s) for s in self.stages]

    def schema(self) -> pa.Schema:
        """Output schema: the base table plus every column a stage declares it adds."""
        adds = [f for s in self.specs() for f in s.adds]
        return with_columns(self.output_schema, adds)


@dataclass
class RunOptions:
    inputs: list[str]
    output: str
    warehouse: str | None = None
    catalog: dict[str, str] | None = None
    executor: str = "ray"            # ray | local (in-process, for debugging)
    num_cpus: int | None = None
    mode: str = "overwrite"          # overwrite | append
    tag: str | None = None
    shard_bytes: int = 64 << 20
    shard_rows: int = 100_000
    progress: bool = True
    allow_empty: bool = False        # publish an empty version when every row was rejected
    extra_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    run_id: str
    output: str
    snapshot_id: int
    rejects_snapshot_id: int
    accounting: dict[str, Any]
    stats: dict[str, Any]
    resumed_shards: int
    processed_shards: int


# ---- inside a worker ------------------------------------------------------------------
@dataclass
class ShardJob:
    """Everything a worker needs to process shards (pickled to it)."""
    input_schema: pa.Schema
    output_schema: pa.Schema
    rejects_schema: pa.Schema
    specs: list[StageSpec]
    out_dir: str
    rejects_dir: str
    run_id: str


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), uri


def _write_json(uri: str, obj: Any) -> None:
    fs, path = _fs(uri)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    fs.create_dir(os.path.dirname(path), recursive=True)
    with fs.open_output_stream(tmp) as f:
        f.write(json.dumps(obj, default=str).encode())
    fs.move(tmp, path)  # a marker is either whole or absent


def _read_json(uri: str) -> Any:
    fs, path = _fs(uri)
    with fs.open_input_stream(path) as f:
        return json.loads(f.read())


def _write_parquet(table: pa.Table, uri: str, stats: dict[str, Any]) -> None:
    fs, path = _fs(uri)
    fs.create_dir(os.path.dirname(path), recursive=True)
    meta = dict(table.schema.metadata or {})
    meta[b"curate.stats"] = json.dumps(stats).encode()
    pq.write_table(table.replace_schema_metadata(meta), path, filesystem=fs, compression="zstd")


def _reject_ids(rejects: pa.Table, fields: list[str]) -> pa.Array:
    cols = {f: rejects.column(f).to_pylist() for f in fields if f in rejects.column_names}
    raws = rejects.column("raw").to_pylist() if "raw" in rejects.column_names else [None] * rejects.num_rows
    out = []
    for i in range(rejects.num_rows):
        vals = [cols[f][i] for f in fields] if len(cols) == len(fields) else [None]
        out.append(row_id(*vals) if all(v is not None for v in vals) else row_id("raw", raws[i]))
    return pa.array(out, pa.string())


class ShardProcessor:
    """Builds the stages once (once per actor under Ray) and processes shards."""

    def __init__(self, job: ShardJob):
        self.job = job
        self.stages = [(s.name, s.build()) for s in job.specs]

    def __call__(self, batch: pa.Table) -> pa.Table:
        summaries = [self.process(InputShard.from_dict(json.loads(d))) for d in batch.column("shard").to_pylist()]
        return pa.table({"summary": [json.dumps(s) for s in summaries]})

    def process(self, shard: InputShard) -> dict[str, Any]:
        job, t0 = self.job, time.perf_counter()
        rows, read_rejects, n_in = read_shard(shard, job.input_schema)
        # A stable key per row for stages that join cross-shard decisions (dedup); never written.
        rows = rows.append_column("_rowkey", pa.array([f"{shard.key}:{i}" for i in range(rows.num_rows)], pa.string()))
        read_count = StageCount("read", rows_in=n_in, rows_out=rows.num_rows, rejected=read_rejects.num_rows)
        _count_reasons(read_count, read_rejects)
        kept, stage_rejects, counts = run_chain(self.stages, rows)
        kept = _drop_internal(kept)
        stage_rejects = [_drop_internal(r) for r in stage_rejects]

        # Write: ids from content, cast to the declared schema; rows that do not fit are rejects.
        kept = kept.drop_columns([c for c in ("id",) if c in kept.column_names])
        kept = kept.add_column(0, "id", table_ids(kept, id_fields(job.output_schema)))
        fitted = conform(kept, job.output_schema, stage="write", where=shard.path)
        write_count = StageCount("write", rows_in=kept.num_rows, rows_out=fitted.table.num_rows,
                                 rejected=fitted.rejects.num_rows)
        _count_reasons(write_count, fitted.rejects)
        write_rejects = fitted.rejects
        if write_rejects.num_rows:
            failed = kept.take(pa.array(fitted.reject_rows, pa.int64())).drop_columns(["id"])
            write_rejects = _merge_columns(failed, write_rejects)

        rejects = concat_rejects([read_rejects, *stage_rejects, write_rejects])
        if rejects.num_rows:
            rejects = rejects.drop_columns([c for c in ("id",) if c in rejects.column_names])
            rejects = rejects.add_column(0, "id", _reject_ids(rejects, id_fields(job.output_schema)))
            rejects = fit_rejects(rejects, job.rejects_schema)

        summary: dict[str, Any] = {"shard": shard.key, "input": shard.to_dict(), "rows_in": n_in,
                                   "kept": fitted.table.num_rows, "rejected": rejects.num_rows,
                                   "stages": [c.to_dict() for c in (read_count, *counts, write_count)],
                                   "files": {}}
        summary["stats"] = st.table_stats(fitted.table, job.output_schema)
        summary["rejects_stats"] = st.table_stats(rejects, job.rejects_schema)
        if fitted.table.num_rows:
            uri = f"{job.out_dir}/{shard.key}.parquet"
            _write_parquet(fitted.table, uri, summary["stats"])
            summary["files"]["kept"] = uri
        if rejects.num_rows:
            uri = f"{job.rejects_dir}/{shard.key}.parquet"
            _write_parquet(rejects, uri, summary["rejects_stats"])
            summary["files"]["rejects"] = uri
        summary["seconds"] = round(time.perf_counter() - t0, 4)
        _check_shard(summary)
        _write_json(f"{job.out_dir}/_markers/{shard.key}.json", summary)
        return summary


def _drop_internal(table: pa.Table) -> pa.Table:
    return table.drop_columns([c for c in table.column_names if c.startswith("_")])


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


def _count_reasons(count: StageCount, rejects: pa.Table) -> None:
    if rejects.num_rows:
        vc = pc.value_counts(rejects.column("drop_reason"))
        count.reasons = dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))


def _check_shard(summary: dict[str, Any]) -> None:
    for s in summary["stages"]:
        if s["rows_in"] != s["rows_out"] + s["rejected"] or sum(s["reasons"].values()) != s["rejected"]:
            raise AccountingError(f"shard {summary['shard']}: stage {s['stage']} counts do not add up: {s}")
    if summary["rows_in"] != summary["kept"] + summary["rejected"]:
        raise AccountingError(f"shard {summary['shard']}: {summary['rows_in']} in != "
                              f"{summary['kept']} kept + {summary['rejected']} rejected")


# ---- on the driver --------------------------------------------------------------------
def _list_markers(out_dir: str) -> dict[str, dict[str, Any]]:
    fs, path = _fs(out_dir + "/_markers")
    info = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    out = {}
    for f in info:
        if f.type == pafs.FileType.File and f.path.endswith(".json"):
            name = os.path.basename(f.path)
            out[name[:-len(".json")]] = _read_json(f"{out_dir}/_markers/{name}")
    return out


def _attempts(data_dir: str, run_key: str) -> list[int]:
    fs, path = _fs(data_dir)
    info = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    prefix = f"run-{run_key}-"
    return sorted(int(os.path.basename(f.path)[len(prefix):]) for f in info
                  if f.type == pafs.FileType.Directory and os.path.basename(f.path).startswith(prefix)
                  and os.path.basename(f.path)[len(prefix):].isdigit())


def merge_counts(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    stages: dict[str, StageCount] = {}
    for s in summaries:
        for c in s["stages"]:
            stages.setdefault(c["stage"], StageCount(c["stage"])).add(
                StageCount(c["stage"], c["rows_in"], c["rows_out"], c["rejected"], c["reasons"]))
    by_reason: dict[str, int] = {}
    for c in stages.values():
        for k, v in c.reasons.items():
            by_reason[k] = by_reason.get(k, 0) + v
    acc = {"rows_in": sum(s["rows_in"] for s in summaries), "kept": sum(s["kept"] for s in summaries),
           "rejected": sum(s["rejected"] for s in summaries), "shards": len(summaries),
           "stages": [c.to_dict() for c in stages.values()],
           "rejects_by_reason": dict(sorted(by_reason.items(), key=lambda kv: -kv[1]))}
    if acc["rows_in"] != acc["kept"] + acc["rejected"]:
        raise AccountingError(f"{acc['rows_in']} rows in != {acc['kept']} kept + {acc['rejected']} rejected")
    return acc


def _execute(pending: list[InputShard], job: ShardJob, opts: RunOptions,
             on_done: Callable[[dict[str, Any]], None]) -> None:
    if opts.executor == "local":
        proc = ShardProcessor(job)
        for shard in pending:
            on_done(proc.process(shard))
        return
    import ray.data
    from pipelines.raysession import init_ray

    init_ray(opts.num_cpus)
    items = [{"shard": json.dumps(s.to_dict())} for s in pending]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    if any(s.kind == "actor" for s in job.specs):
        # min 1: on a 2-CPU machine a fixed pool of 2 deadlocks against the tasks feeding it
        ds = ds.map_batches(ShardProcessor, fn_constructor_kwargs={"job": job}, batch_size=1,
                            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, cpus)))
    else:
        ds = ds.map_batches(_process_in_task, fn_kwargs={"job": job}, batch_size=1, batch_format="pyarrow")
    for row in ds.iter_rows():
        on_done(json.loads(row["summary"]))


def _process_in_task(batch: pa.Table, job: ShardJob) -> pa.Table:
    return ShardProcessor(job)(batch)


def run(pipeline: Pipeline, opts: RunOptions) -> RunResult:
    store = Store(opts.warehouse, opts.catalog)
    shards = plan_inputs(opts.inputs, store, opts.shard_bytes, opts.shard_rows)
    if not shards:
        raise InputError(f"inputs {opts.inputs} contain no files")
    schema = pipeline.schema()
    rschema = rejects_schema(schema)
    rname = rejects_name(opts.output)
    store.ensure_table(opts.output, schema)
    store.ensure_table(rname, rschema)
    specs = pipeline.specs()
    described = [s.describe() for s in specs]  # model_info may hash model files: once per run
    config = {"pipeline": pipeline.name, "output": opts.output, "mode": opts.mode,
              "stages": described, "schema": schema.to_string(show_schema_metadata=False),
              "shard_bytes": opts.shard_bytes, "shard_rows": opts.shard_rows, **opts.extra_config}
    run_key = config_hash({**config, "shards": sorted(s.key for s in shards)})

    out_data, rej_data = store.data_location(opts.output), store.data_location(rname)
    attempts = _attempts(out_data, run_key)
    attempt = attempts[-1] if attempts else 0
    run_id = f"{run_key}-{attempt}"
    if attempts and store.find_run(opts.output, run_id) is not None and store.find_run(rname, run_id) is not None:
        attempt += 1  # that run was published whole: this is a new run of the same config
        run_id = f"{run_key}-{attempt}"
    job = ShardJob(pipeline.input_schema, schema, rschema, specs,
                   f"{out_data}/run-{run_id}", f"{rej_data}/run-{run_id}", run_id)

    done = {k: v for k, v in _list_markers(job.out_dir).items() if k in {s.key for s in shards}}
    pending = [s for s in shards if s.key not in done]
    resumed = len(done)
    if done:
        _log(opts, f"resuming run {run_id}: {len(done)} of {len(shards)} shards already done")
    bar = _progress(opts, len(shards), resumed, pipeline.name)

    def on_done(summary: dict[str, Any]) -> None:
        done[summary["shard"]] = summary
        if bar is not None:
            bar.update(1)
            bar.set_postfix(kept=sum(s["kept"] for s in done.values()),
                            rejected=sum(s["rejected"] for s in done.values()))

    if pending:
        _execute(pending, job, opts, on_done)
    if bar is not None:
        bar.close()
    missing = [s.key for s in shards if s.key not in done]
    if missing:
        raise RuntimeError(f"{len(missing)} shards finished without a marker; nothing was published")

    summaries = [done[s.key] for s in shards]
    accounting = merge_counts(summaries)
    stats = st.compact(st.merge_all([s["stats"] for s in summaries]))
    rstats = st.compact(st.merge_all([s["rejects_stats"] for s in summaries]))
    inputs = _input_lineage(shards)
    models = {d["name"]: d["model"] for d in described if "model" in d}
    lineage = {"run_id": run_id, "pipeline": pipeline.name, "config_hash": run_key.split("-")[0],
               "config": config, "git_commit": git_commit(), "inputs": inputs, "models": models,
               "accounting": accounting, "python": sys.version.split()[0]}
    kept_files = [s["files"]["kept"] for s in summaries if "kept" in s["files"]]
    rej_files = [s["files"]["rejects"] for s in summaries if "rejects" in s["files"]]
    if accounting["rows_in"] == 0:
        raise InputError(f"inputs {opts.inputs} hold no rows ({len(shards)} shards, all empty); nothing published")
    if not kept_files and not opts.allow_empty:
        # Publish the rejects so the reasons can be inspected, but never replace good data with nothing.
        store.publish(rname, rschema, rej_files, {**lineage, "role": "rejects", "stats": rstats,
                                                  "output_table": opts.output}, mode=opts.mode)
        raise NothingKept(f"all {accounting['rows_in']:,} input rows were rejected "
                          f"({', '.join(f'{k}={v}' for k, v in accounting['rejects_by_reason'].items()) or 'no rows'}); "
                          f"'{opts.output}' is unchanged; see `curate show {rname}`")
    # Score distributions over every scored row (kept and rejected): what a filter removed shows.
    scored = st.compact(st.merge_all([s["stats"] for s in summaries] + [s["rejects_stats"] for s in summaries]))
    snap = store.publish(opts.output, schema, kept_files, {**lineage, "role": "output", "stats": stats,
                                                           "stats_scored": scored,
                                                           "rejects_table": rname}, mode=opts.mode)
    rsnap = store.publish(rname, rschema, rej_files, {**lineage, "role": "rejects", "stats": rstats,
                                                      "output_table": opts.output, "output_snapshot": snap},
                          mode=opts.mode)
    if opts.tag:
        store.tag(f"{opts.output}@{snap}", opts.tag, replace=True)
        store.tag(f"{rname}@{rsnap}", opts.tag, replace=True)
    return RunResult(run_id, opts.output, snap, rsnap, accounting, stats, resumed, len(pending))


def _input_lineage(shards: list[InputShard]) -> dict[str, Any]:
    tables = sorted({s.fingerprint for s in shards if s.kind == "table"})
    files: dict[str, str] = {}
    for s in shards:
        if s.kind != "table":
            files[os.path.abspath(s.path)] = s.fingerprint
    listed = dict(sorted(files.items())[:100])
    return {"tables": tables, "files": listed, "n_files": len(files), "n_shards": len(shards),
            "files_hash": row_id(json.dumps(sorted(files.items())))[:16]}


def _progress(opts: RunOptions, total: int, initial: int, name: str):
    if not opts.progress:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=f"{name}: shards", unit="shard",
                disable=not sys.stderr.isatty() and os.environ.get("CURATE_PROGRESS") != "1")


def _log(opts: RunOptions, msg: str) -> None:
    print(msg, file=sys.stderr)
