"""Run a pipeline: plan shards, process each (read → stages → split → write), publish once.

Each input shard is processed end to end by one worker (a Ray task, or an actor when a stage
loads a model), which writes the kept rows and the rejects as Parquet under deterministic
names and then a completion marker holding the shard's accounting and content statistics.
Only the driver publishes, and only after every shard has its marker: the rejects first, then
the output naming the rejects snapshot (readers pair them through it, so neither is visible
without the other), then the tag. The run key hashes the config, the inputs and the code that
makes the rows: a rerun of the same after a crash at any point finds the markers, processes
only what is missing and completes the same publish; changed code never reuses a shard.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from schemas.engine.failpoints import failpoint
from schemas.engine.inputs import (InputError, InputShard, UnreadableInput, concat_rejects, location, plan_inputs,
                                   read_shard)
from schemas.engine.lineage import code_fingerprint, config_hash, git_commit
from schemas.engine.stage import ERROR_BUDGET, StageCount, StageFailed, StageSpec, as_spec, run_chain
from schemas import filesystem as fsys
from schemas import stats as st
from schemas.ids import row_id, table_ids
from schemas.store import Store, check_table_name, check_tag, rejects_name
from schemas.tables import id_fields, rejects_schema, with_columns
from schemas.validate import conform, empty_rejects, make_rejects


class AccountingError(RuntimeError):
    """Counts that do not add up: a bug, never bad input."""


class NothingKept(RuntimeError):
    """Every input row was rejected: the output table is left as it was."""


class RunInProgress(RuntimeError):
    """The same run (config, inputs, code) is already running against this warehouse."""


class StorageFull(RuntimeError):
    """The disk or bucket is full: an infrastructure failure, never bad data."""


@dataclass
class Pipeline:
    name: str
    input_schema: pa.Schema
    output_schema: pa.Schema
    stages: list[Any]
    # Extra progress-bar fields from the shard summaries finished in this run and the seconds
    # since it started (the reasoning pipeline shows samples/s and the pass rate so far).
    progress: Callable[[list[dict[str, Any]], float], dict[str, Any]] | None = None

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
    on_unreadable: str = "fail"      # fail | record (an unreadable input file's rows count as lost)
    raw_rejects: bool = False        # keep rejects verbatim even where a privacy stage would redact them
    error_budget: float = ERROR_BUDGET  # a stage failing on a larger share of a batch fails the run
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
    on_unreadable: str = "fail"
    raw_rejects: bool = False
    error_budget: float = ERROR_BUDGET


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    return fsys.filesystem(uri)


def _write_json(uri: str, obj: Any) -> None:
    fsys.write_json(uri, obj)  # a marker is either whole or absent (rename locally, one PUT on S3)


def _read_json(uri: str) -> Any:
    return fsys.read_json(uri)


def _write_parquet(table: pa.Table, uri: str, stats: dict[str, Any]) -> None:
    fs, path = _fs(uri)
    fsys.makedirs(os.path.dirname(uri))  # object stores have no directories to create
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
        lost_files: dict[str, Any] = {}
        try:
            rows, read_rejects, n_in = read_shard(shard, job.input_schema)
        except UnreadableInput as e:
            if job.on_unreadable != "record":
                # Returned, not raised: Ray would wrap it (and drop its cause) in its own traceback.
                return {"shard": shard.key, "unreadable": [e.path, e.problem, e.expected_rows]}
            rows, read_rejects, n_in = job.input_schema.empty_table(), empty_rejects(), e.expected_rows or 0
            lost_files[e.path] = {"rows": e.expected_rows, "problem": e.problem}
        # A stable key per row for stages that join cross-shard decisions (dedup); never written.
        rows = rows.append_column("_rowkey", pa.array([f"{shard.key}:{i}" for i in range(rows.num_rows)], pa.string()))
        read_count = StageCount("read", rows_in=n_in, rows_out=rows.num_rows, rejected=read_rejects.num_rows,
                                lost=n_in - rows.num_rows - read_rejects.num_rows)
        _count_reasons(read_count, read_rejects)
        try:
            kept, stage_rejects, counts = run_chain(self.stages, rows, job.error_budget)
        except StageFailed as e:  # returned like an unreadable input: the run fails with this cause
            return {"shard": shard.key, "stage_failed": str(e)}
        kept = _drop_internal(kept)
        stage_rejects = [_drop_internal(r) for r in stage_rejects]

        # Write: ids from content, cast to the declared schema; rows that do not fit are rejects.
        if kept.num_rows == 0:  # later stages never ran, so their columns are missing: nothing to fit
            kept = job.output_schema.empty_table()
        kept = kept.drop_columns([c for c in ("id",) if c in kept.column_names])
        kept = kept.add_column(0, "id", table_ids(kept, id_fields(job.output_schema)))
        kept, dup_rejects = _split_duplicate_ids(kept, id_fields(job.output_schema))
        fitted = conform(kept, job.output_schema, stage="write", where=shard.path)
        write_count = StageCount("write", rows_in=kept.num_rows + dup_rejects.num_rows,
                                 rows_out=fitted.table.num_rows, rejected=fitted.rejects.num_rows + dup_rejects.num_rows)
        _count_reasons(write_count, concat_rejects([dup_rejects, fitted.rejects]))
        write_rejects = fitted.rejects
        if write_rejects.num_rows:
            failed = kept.take(pa.array(fitted.reject_rows, pa.int64())).drop_columns(["id"])
            write_rejects = _merge_columns(failed, write_rejects)

        rejects = concat_rejects([read_rejects, *stage_rejects, dup_rejects, write_rejects])
        if rejects.num_rows:
            rejects = fit_rejects(rejects.drop_columns([c for c in ("id",) if c in rejects.column_names]),
                                  job.rejects_schema)
            if not job.raw_rejects:
                rejects = self.redact(rejects)
            # ids after redaction: a hash of a short removed value (a card number) could be reversed
            rejects = rejects.set_column(rejects.schema.get_field_index("id"), job.rejects_schema.field("id"),
                                         _reject_ids(rejects, id_fields(job.output_schema)))

        summary: dict[str, Any] = {"shard": shard.key, "input": shard.to_dict(), "rows_in": n_in,
                                   "kept": fitted.table.num_rows, "rejected": rejects.num_rows,
                                   "lost": read_count.lost, "lost_files": lost_files,
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
        failpoint("shard-written")
        return summary

    def redact(self, rejects: pa.Table) -> pa.Table:
        """Rejects are persisted too: a privacy stage (one with `redact_strings`) redacts every
        text they carry (text, raw line, details), whichever stage rejected the row."""
        redactors = [fn for _, fn in self.stages if hasattr(fn, "redact_strings")]
        if not redactors:
            return rejects
        for name in rejects.column_names:
            col = rejects.column(name)
            if name in ("id", "drop_reason", "reject_stage") or not pa.types.is_string(col.type):
                continue
            values = col.to_pylist()
            for r in redactors:
                values = r.redact_strings(values)
            rejects = rejects.set_column(rejects.column_names.index(name), name, pa.array(values, pa.string()))
        return rejects


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


def _count_reasons(count: StageCount, rejects: pa.Table) -> None:
    if rejects.num_rows:
        vc = pc.value_counts(rejects.column("drop_reason"))
        count.reasons = dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))


def _check_shard(summary: dict[str, Any]) -> None:
    for s in summary["stages"]:
        if (s["rows_in"] != s["rows_out"] + s["rejected"] + s.get("lost", 0)
                or sum(s["reasons"].values()) != s["rejected"]):
            raise AccountingError(f"shard {summary['shard']}: stage {s['stage']} counts do not add up: {s}")
    if summary["rows_in"] != summary["kept"] + summary["rejected"] + summary["lost"]:
        raise AccountingError(f"shard {summary['shard']}: {summary['rows_in']} in != {summary['kept']} kept + "
                              f"{summary['rejected']} rejected + {summary['lost']} lost")
    # With plan_inputs' check that a table version's files add up to its record count, this makes
    # rows in equal the input version's own count.
    promised = summary["input"].get("rows", -1)
    if promised >= 0 and summary["rows_in"] != promised:
        raise AccountingError(f"shard {summary['shard']}: {summary['rows_in']} rows in, its metadata says {promised}")


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
    lost = sum(s.get("lost", 0) for s in summaries)
    lost_files = {k: v for s in summaries for k, v in (s.get("lost_files") or {}).items()}
    if lost or lost_files:
        acc["lost"], acc["lost_files"] = lost, lost_files
    if acc["rows_in"] != acc["kept"] + acc["rejected"] + lost:
        raise AccountingError(f"{acc['rows_in']} rows in != {acc['kept']} kept + {acc['rejected']} rejected"
                              f" + {lost} lost")
    return acc


def _execute(pending: list[InputShard], job: ShardJob, opts: RunOptions,
             on_done: Callable[[dict[str, Any]], None]) -> None:
    if opts.executor == "local":
        proc = ShardProcessor(job)
        for shard in pending:
            on_done(proc.process(shard))
        return
    import ray.data
    from schemas.engine.raysession import init_ray

    init_ray(opts.num_cpus)
    items = [{"shard": json.dumps(s.to_dict())} for s in pending]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    if any(s.kind == "actor" for s in job.specs):
        # min 1: on a 2-CPU machine a fixed pool of 2 deadlocks against the tasks feeding it
        # max_restarts=0: a dead actor fails the run (the rerun resumes from the markers) instead of
        # Ray Data's default of restarting it and retrying its shard forever, which also logs a
        # core_worker.cc error on every run (its constructor arguments live in the object store).
        # Ray 2.60 takes it only through the deprecated **ray_remote_args (no named parameter yet).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            ds = ds.map_batches(ShardProcessor, fn_constructor_kwargs={"job": job}, batch_size=1, max_restarts=0,
                                batch_format="pyarrow",
                                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, cpus)))
    else:
        ds = ds.map_batches(_process_in_task, fn_kwargs={"job": job}, batch_size=1, batch_format="pyarrow")
    for row in ds.iter_rows():
        on_done(json.loads(row["summary"]))


def _process_in_task(batch: pa.Table, job: ShardJob) -> pa.Table:
    return ShardProcessor(job)(batch)


def run(pipeline: Pipeline, opts: RunOptions) -> RunResult:
    """Plan, process the shards not done yet, publish once; see the module docstring."""
    rname = rejects_name(opts.output)
    check_table_name(rname)  # refused before anything is created
    if opts.tag:
        check_tag(opts.tag)
    if opts.on_unreadable not in ("fail", "record"):
        raise ValueError(f"on_unreadable must be fail or record, not {opts.on_unreadable!r}")
    try:
        return _run(pipeline, opts, rname)
    except Exception as e:
        if (full := _cause(e, lambda c: isinstance(c, OSError) and (c.errno == errno.ENOSPC
                                                                   or "No space left" in str(c)))) is not None:
            raise StorageFull(f"no space left on the device holding the warehouse ({full}); free space and "
                              "rerun: finished shards are kept and the rerun resumes") from e
        raise


def _run(pipeline: Pipeline, opts: RunOptions, rname: str) -> RunResult:
    store = Store(opts.warehouse, opts.catalog)
    shards = plan_inputs(opts.inputs, store, opts.shard_bytes, opts.shard_rows)
    if not shards:
        raise InputError(f"inputs {opts.inputs} contain no files")
    schema = pipeline.schema()
    rschema = rejects_schema(schema)
    specs = pipeline.specs()
    described = [s.describe() for s in specs]  # model_info may hash model files: once per run
    code = code_fingerprint(s.module for s in specs)
    config = {"pipeline": pipeline.name, "output": opts.output, "mode": opts.mode,
              "stages": described, "schema": schema.to_string(show_schema_metadata=False),
              "shard_bytes": opts.shard_bytes, "shard_rows": opts.shard_rows, "code": code,
              "on_unreadable": opts.on_unreadable, "raw_rejects": opts.raw_rejects,
              "error_budget": opts.error_budget, **opts.extra_config}
    run_key = config_hash({**config, "shards": sorted(s.key for s in shards)})
    store.ensure_table(opts.output, schema)
    store.ensure_table(rname, rschema)
    out_data, rej_data = store.data_location(opts.output), store.data_location(rname)
    failpoint("planned")

    with _run_lock(out_data, run_key, opts.output):
        attempts = _attempts(out_data, run_key)
        attempt = attempts[-1] if attempts else 0
        run_id = f"{run_key}-{attempt}"
        published = _published(store, opts.output, rname, run_id)
        if published is not None and published["complete"]:
            attempt += 1  # that run was published whole: this is a new run of the same config
            run_id = f"{run_key}-{attempt}"
        elif published is not None and published["output"] is not None:
            return _finish_tags(store, opts, rname, run_id, published)  # killed before its tags
        job = ShardJob(pipeline.input_schema, schema, rschema, specs,
                       f"{out_data}/run-{run_id}", f"{rej_data}/run-{run_id}", run_id,
                       opts.on_unreadable, opts.raw_rejects, opts.error_budget)
        done = {k: v for k, v in _list_markers(job.out_dir).items() if k in {s.key for s in shards}}
        pending = [s for s in shards if s.key not in done]
        resumed = len(done)
        if done:
            _log(opts, f"resuming run {run_id}: {len(done)} of {len(shards)} shards already done")
        bar = _progress(opts, len(shards), resumed, pipeline.name)
        fresh: list[dict[str, Any]] = []
        started = time.perf_counter()

        def on_done(summary: dict[str, Any]) -> None:
            if "unreadable" in summary:  # fail the run naming the file; nothing is published
                raise UnreadableInput(*summary["unreadable"])
            if "stage_failed" in summary:
                raise StageFailed(summary["stage_failed"])
            done[summary["shard"]] = summary
            fresh.append(summary)
            if bar is not None:
                bar.update(1)
                extra = pipeline.progress(fresh, time.perf_counter() - started) if pipeline.progress else {}
                bar.set_postfix(kept=sum(s["kept"] for s in done.values()),
                                rejected=sum(s["rejected"] for s in done.values()), **extra)

        if pending:
            _execute(pending, job, opts, on_done)
        if bar is not None:
            bar.close()
        missing = [s.key for s in shards if s.key not in done]
        if missing:
            raise RuntimeError(f"{len(missing)} shards finished without a marker; nothing was published")
        summaries = [done[s.key] for s in shards]
        accounting = merge_counts(summaries)
        if accounting["rows_in"] == 0:
            raise InputError(f"inputs {opts.inputs} hold no rows ({len(shards)} shards, all empty); nothing published")
        lineage = {"run_id": run_id, "pipeline": pipeline.name, "config_hash": run_key.split("-")[0],
                   "config": config, "code": code, "git_commit": git_commit(), "inputs": _input_lineage(shards),
                   "models": {d["name"]: d["model"] for d in described if "model" in d},
                   "accounting": accounting, "python": sys.version.split()[0]}
        return _publish(store, opts, rname, schema, rschema, summaries, lineage, resumed, len(pending))


def _publish(store: Store, opts: RunOptions, rname: str, schema: pa.Schema, rschema: pa.Schema,
             summaries: list[dict[str, Any]], lineage: dict[str, Any], resumed: int, processed: int) -> RunResult:
    """Rejects first, output last (naming its rejects snapshot), then the tag: a kill anywhere
    leaves either the old pair visible or the new one, and the rerun completes what is missing."""
    accounting = lineage["accounting"]
    stats = st.compact(st.merge_all([s["stats"] for s in summaries]))
    rstats = st.compact(st.merge_all([s["rejects_stats"] for s in summaries]))
    kept_files = [s["files"]["kept"] for s in summaries if "kept" in s["files"]]
    rej_files = [s["files"]["rejects"] for s in summaries if "rejects" in s["files"]]
    standalone = not kept_files and not opts.allow_empty
    rsnap = store.publish(rname, rschema, rej_files, {**lineage, "role": "rejects", "stats": rstats,
                                                      "output_table": opts.output, "tag": opts.tag,
                                                      "standalone": standalone}, mode=opts.mode)
    failpoint("rejects-committed")
    if standalone:
        # The reasons can be inspected, but good data is never replaced by nothing.
        if opts.tag:
            store.tag(f"{rname}@{rsnap}", opts.tag, replace=True)
        raise NothingKept(f"all {accounting['rows_in']:,} input rows were rejected "
                          f"({', '.join(f'{k}={v}' for k, v in accounting['rejects_by_reason'].items()) or 'no rows'}); "
                          f"'{opts.output}' is unchanged; see `curate show {rname}`")
    # Score distributions over every scored row (kept and rejected): what a filter removed shows.
    scored = st.compact(st.merge_all([s["stats"] for s in summaries] + [s["rejects_stats"] for s in summaries]))
    snap = store.publish(opts.output, schema, kept_files, {**lineage, "role": "output", "stats": stats,
                                                           "stats_scored": scored, "rejects_table": rname,
                                                           "rejects_snapshot": rsnap, "tag": opts.tag},
                         mode=opts.mode)
    failpoint("output-committed")
    _tag_pair(store, opts.output, rname, snap, rsnap, opts.tag)
    for name in (opts.output, rname):
        try:
            store.sweep(name)  # files of commits that lost a race or were killed, over an hour old
        except OSError as e:  # the version is published; leftovers are only disk space
            _log(opts, f"warning: could not sweep unreferenced files of {name}: {e}")
    return RunResult(lineage["run_id"], opts.output, snap, rsnap, accounting, stats, resumed, processed)


def _tag_pair(store: Store, output: str, rname: str, snap: int, rsnap: int, tag: str | None) -> None:
    if tag:
        store.tag(f"{rname}@{rsnap}", tag, replace=True)
        store.tag(f"{output}@{snap}", tag, replace=True)


def _published(store: Store, output: str, rname: str, run_id: str) -> dict[str, Any] | None:
    """What of run `run_id` is already published, and whether all of it is (tags included)."""
    rsnap = store.find_run(rname, run_id)
    if rsnap is None:
        return None
    rprops = store.properties(f"{rname}@{rsnap}")
    snap = store.find_run(output, run_id)
    tag = rprops.get("tag")

    def has_tag(name: str, sid: int) -> bool:
        ref = store.table(name).metadata.refs.get(tag)
        return ref is not None and ref.snapshot_id == sid
    tagged = not tag or all(has_tag(n, sid) for n, sid in ((rname, rsnap), (output, snap)) if sid is not None)
    complete = (snap is not None or rprops.get("standalone") is True) and tagged
    return {"output": snap, "rejects": rsnap, "tag": tag, "complete": complete}


def _finish_tags(store: Store, opts: RunOptions, rname: str, run_id: str, published: dict[str, Any]) -> RunResult:
    snap, rsnap = published["output"], published["rejects"]
    _log(opts, f"completing run {run_id}: published as {opts.output}@{snap}, tagging")
    for tag in {published["tag"], opts.tag} - {None}:
        _tag_pair(store, opts.output, rname, snap, rsnap, tag)
    props = store.properties(f"{opts.output}@{snap}")
    return RunResult(run_id, opts.output, snap, rsnap, props["accounting"], props.get("stats", {}),
                     props["accounting"]["shards"], 0)


@contextlib.contextmanager
def _run_lock(data_dir: str, run_key: str, output: str):
    """One process at a time per run key on a local warehouse (flock: released when the
    process dies, so a killed run never blocks its rerun)."""
    if fsys.is_remote(data_dir):
        yield  # object stores have no flock; identical concurrent runs still publish once (run id)
        return
    import fcntl
    path = f"{data_dir.removeprefix('file://')}/.lock-{run_key}"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunInProgress(f"the same run of '{output}' (run key {run_key}) is in progress in another "
                            "process; wait for it (its result will be the current version) or stop it") from None
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _cause(exc: BaseException, match: Callable[[BaseException], bool]) -> BaseException | None:
    """The first exception in `exc`'s chain (causes, contexts, Ray's wrapped cause) that matches."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if match(e):
            return e
        todo += [c for c in (e.__cause__, e.__context__, getattr(e, "cause", None)) if isinstance(c, BaseException)]
    return None


def _input_lineage(shards: list[InputShard]) -> dict[str, Any]:
    tables = sorted({s.fingerprint for s in shards if s.kind == "table"})
    files: dict[str, str] = {}
    for s in shards:
        if s.kind != "table":
            files[location(s.path)] = s.fingerprint
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
