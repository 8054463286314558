"""Run a pipeline: plan shards, process them (read → stages → split → write), publish once.

The executor (`execute.py`) streams every input shard through Ray Data operators (one per
stage, or per run of stages with the same resources); its write operator (`write.py`) stores the kept rows
and the rejects as Parquet under deterministic names and then a completion marker holding the
shard's accounting and content statistics.
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
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from schemas import stats as st
from schemas.engine.accounting import AccountingError, StageCount
from schemas.engine.execute import execute
from schemas.engine.failpoints import failpoint
from schemas.engine.files import filesystem, read_json
from schemas.engine.inputs import InputError, InputShard, UnreadableInput, location, plan_inputs
from schemas.engine.job import ShardJob
from schemas.engine.lineage import code_fingerprint, config_hash, git_commit
from schemas.engine.ray_dag import find_cause
from schemas.engine.stage import ERROR_BUDGET, StageFailed, StageSpec, as_spec
from schemas.filesystem import is_remote
from schemas.ids import row_id
from schemas.store import StaleBase, Store, StoreError, check_table_name, check_tag, rejects_name
from schemas.tables import rejects_schema, with_columns

__all__ = ["AccountingError", "NothingKept", "Pipeline", "RunInProgress", "RunOptions", "RunResult",
           "ShardFileGone", "StorageFull", "run"]


class NothingKept(RuntimeError):
    """Every input row was rejected: the output table is left as it was."""


class RunInProgress(RuntimeError):
    """The same run (config, inputs, code) is already running against this warehouse."""


class StorageFull(RuntimeError):
    """The disk or bucket is full: an infrastructure failure, never bad data."""


class ShardFileGone(StoreError, RuntimeError):
    """A finished shard's file vanished between the resume check and the commit (a `curate gc
    --runs` meanwhile): nothing was published, and the rerun redoes that shard."""


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
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-stage overrides (parse_resources)
    fuse: str = "resources"          # resources | none | all (all: the whole chain in one operator)
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


# ---- on the driver --------------------------------------------------------------------
def _list_markers(out_dir: str) -> dict[str, dict[str, Any]]:
    """Shard key → its marker's summary; a marker that is not a JSON object (damaged by hand or
    a tool) is left out, so its shard is redone and its marker rewritten."""
    fs, path = filesystem(out_dir + "/_markers")
    info = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    out = {}
    for f in info:
        if f.type == pafs.FileType.File and f.path.endswith(".json"):
            name = os.path.basename(f.path)
            try:
                summary = read_json(f"{out_dir}/_markers/{name}")
            except ValueError:  # not JSON (json.JSONDecodeError, UnicodeDecodeError)
                continue
            if isinstance(summary, dict):
                out[name[:-len(".json")]] = summary
    return out


def _marker_problem(summary: dict[str, Any]) -> str | None:
    """Why a shard's marker cannot be trusted, or None: a file it names is missing (`curate gc
    --runs` during the run), is not the size the marker recorded, or holds other rows than the
    marker counted (its Parquet footer). Such a shard is redone rather than published from."""
    if any(k not in summary for k in ("rows_in", "kept", "rejected", "files", "stages", "stats", "rejects_stats")):
        return "its marker is incomplete"
    files, sizes = summary["files"], summary.get("file_bytes") or {}
    rows = {"kept": summary["kept"], "rejects": summary["rejected"]}
    for role, n in rows.items():
        if n and role not in files:
            return f"its marker counts {n:,} {role} rows but names no file for them"
    for role, uri in files.items():
        name = os.path.basename(str(uri))
        fs, path = filesystem(uri)
        info = fs.get_file_info(path)
        if info.type != pafs.FileType.File:
            return f"its {role} file {name} is missing"
        if sizes.get(role) is not None and info.size != sizes[role]:
            return f"its {role} file {name} is {info.size:,} bytes, its marker says {sizes[role]:,}"
        try:
            with fs.open_input_file(path) as f:
                held = pq.read_metadata(f).num_rows
        except (pa.ArrowException, OSError) as e:
            return f"its {role} file {name} cannot be read ({str(e).splitlines()[0][:200]})"
        if held != rows.get(role, held):
            return f"its {role} file {name} holds {held:,} rows, its marker says {rows[role]:,}"
    return None


def _trusted(done: dict[str, dict[str, Any]], opts: "RunOptions") -> dict[str, dict[str, Any]]:
    """The markers whose files are there as written; the others' shards are redone (logged)."""
    if not done:
        return done
    from concurrent.futures import ThreadPoolExecutor
    keys = list(done)
    with ThreadPoolExecutor(max_workers=min(16, len(keys))) as pool:  # a footer read each (S3: a request)
        problems = dict(zip(keys, pool.map(lambda k: _marker_problem(done[k]), keys)))
    bad = [k for k in keys if problems[k]]
    for k in bad[:5]:
        _log(opts, f"shard {k}: {problems[k]}; redoing it")
    if len(bad) > 5:
        _log(opts, f"... and {len(bad) - 5} more shards whose files are missing or changed; redoing them")
    return {k: v for k, v in done.items() if not problems[k]}


def _attempts(data_dir: str, run_key: str) -> list[int]:
    fs, path = filesystem(data_dir)
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
                StageCount(c["stage"], c["rows_in"], c["rows_out"], c["rejected"], c["reasons"],
                           seconds=c.get("seconds", 0.0)))
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
        if (full := find_cause(e, lambda c: isinstance(c, OSError) and (c.errno == errno.ENOSPC
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
                       opts.on_unreadable, opts.raw_rejects, opts.error_budget, opts.resources, opts.fuse)
        done = _trusted({k: v for k, v in _list_markers(job.out_dir).items() if k in {s.key for s in shards}},
                        opts)
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
            failpoint("shard-done")
            done[summary["shard"]] = summary
            fresh.append(summary)
            if bar is not None:
                extra = pipeline.progress(fresh, time.perf_counter() - started) if pipeline.progress else {}
                bar.set_postfix(kept=sum(s["kept"] for s in done.values()),
                                rejected=sum(s["rejected"] for s in done.values()), **extra)
                bar.update(1)

        try:
            plan = execute(shards, pending, job, opts.executor, on_done, opts.num_cpus, lambda m: _log(opts, m))
        finally:
            if bar is not None:
                bar.close()  # also on failure: its line printer must not outlive the run
        plan["placement"] = _placement(done.values())
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
                   "execution": plan, "accounting": accounting, "python": sys.version.split()[0]}
        return _publish(store, opts, rname, schema, rschema, summaries, lineage, resumed, len(pending))


def _publish(store: Store, opts: RunOptions, rname: str, schema: pa.Schema, rschema: pa.Schema,
             summaries: list[dict[str, Any]], lineage: dict[str, Any], resumed: int, processed: int) -> RunResult:
    """Rejects first, output last (naming its rejects snapshot), then the tag: a kill anywhere
    leaves either the old pair visible or the new one, and the rerun completes what is missing.

    Append mode (ARCHITECTURE.md, "What the store guarantees"): the rejects version is exactly
    the rejects the output's current version names plus this run's (never the rejects table's
    newest plus this run's: it may be a killed run's or another run's not yet paired), and the
    output commit is a compare-and-swap on that output version. Another run's output landing in
    between (R_A, R_B, O_B, O_A; a killed run's rerun) fails the swap: the rejects are rebuilt on
    the new output version, as a new snapshot of this run, and the output retried. Chosen over a
    lock (none spans processes on object storage) and over appending to whatever the rejects
    table holds (which pairs a pending run's rejects with an output that lacks its rows): a
    killed run's rejects stay in a version no output names until its rerun pairs them (rebuilt
    once if another output came meanwhile)."""
    accounting = lineage["accounting"]
    stats = st.compact(st.merge_all([s["stats"] for s in summaries]))
    rstats = st.compact(st.merge_all([s["rejects_stats"] for s in summaries]))
    kept_files = [s["files"]["kept"] for s in summaries if "kept" in s["files"]]
    rej_files = [s["files"]["rejects"] for s in summaries if "rejects" in s["files"]]
    standalone = not kept_files and not opts.allow_empty
    append = opts.mode == "append"
    # Score distributions over every scored row (kept and rejected): what a filter removed shows.
    scored = st.compact(st.merge_all([s["stats"] for s in summaries] + [s["rejects_stats"] for s in summaries]))
    for rebase in range(REBASES):
        base, base_rejects = store.paired_rejects(opts.output) if append or standalone else (None, None)
        based = {"output_base": str(base) if base is not None else "none"} if append or standalone else {}
        with _files_there(lineage["run_id"]):  # standalone: current until an output follows (Store._current)
            rsnap = store.publish(rname, rschema, rej_files, {**lineage, "role": "rejects", "stats": rstats,
                                                              "output_table": opts.output, "tag": opts.tag,
                                                              "standalone": standalone, **based},
                                  mode="overwrite", with_files_of=base_rejects if append else None)
        failpoint("rejects-committed")
        if standalone:
            # The reasons can be inspected, but good data is never replaced by nothing.
            if opts.tag:
                store.tag(f"{rname}@{rsnap}", opts.tag, replace=True)
            reasons = ", ".join(f"{k}={v}" for k, v in accounting["rejects_by_reason"].items())
            raise NothingKept(f"all {accounting['rows_in']:,} input rows were rejected ({reasons or 'no rows'}); "
                              f"'{opts.output}' is unchanged; see `curate show {rname}`")
        total = {"cumulative": _cumulative(store, opts.output, base, base_rejects, accounting)} if append else {}
        try:
            with _files_there(lineage["run_id"]):
                snap = store.publish(opts.output, schema, kept_files,
                                     {**lineage, "role": "output", "stats": stats, "stats_scored": scored,
                                      "rejects_table": rname, "rejects_snapshot": rsnap, "tag": opts.tag, **total},
                                     mode=opts.mode, expect_current=base, check_current=append)
            break
        except StaleBase as e:
            if rebase == REBASES - 1:
                raise
            _log(opts, f"{opts.output}: another run's output was published meanwhile ({e.current}); "
                       "rebuilding this run's rejects on it")
    rsnap = _named_rejects(store, opts.output, snap, rsnap)  # another process of this run published first
    failpoint("output-committed")
    _tag_pair(store, opts.output, rname, snap, rsnap, opts.tag)
    for name in (opts.output, rname):
        try:
            store.sweep(name)  # files of commits that lost a race or were killed, over an hour old
        except OSError as e:  # the version is published; leftovers are only disk space
            _log(opts, f"warning: could not sweep unreferenced files of {name}: {e}")
    return RunResult(lineage["run_id"], opts.output, snap, rsnap, accounting, stats, resumed, processed)


REBASES = 20  # output commits by other runs one append-mode publish outlasts before it gives up


def _cumulative(store: Store, output: str, base: int | None, base_rejects: int | None,
                accounting: dict[str, Any]) -> dict[str, int]:
    """Rows in, kept, rejected and lost over every run in an append-mode output version: the
    output version it is appended to, plus this run. An older version without this record (an
    overwrite run's: its own accounting; one appended before it existed: its row counts)."""
    own = {"runs": 1, "rows_in": accounting["rows_in"], "kept": accounting["kept"],
           "rejected": accounting["rejected"], "lost": accounting.get("lost", 0)}
    if base is None:
        return own
    props = store.properties(f"{output}@{base}")
    prev = props.get("cumulative")
    if not isinstance(prev, dict):
        acc = props.get("accounting") or {}
        if (props.get("config") or {}).get("mode") == "overwrite" and "rows_in" in acc:
            prev = {"runs": 1, "rows_in": acc["rows_in"], "kept": acc["kept"], "rejected": acc["rejected"],
                    "lost": acc.get("lost", 0)}
        else:
            kept = store.table(output).snapshot_by_id(base).summary.additional_properties or {}
            rej = (store.table(rejects_name(output)).snapshot_by_id(base_rejects).summary.additional_properties
                   or {}) if base_rejects is not None else {}
            n_kept, n_rej = int(kept.get("total-records", 0)), int(rej.get("total-records", 0))
            prev = {"runs": 1, "rows_in": n_kept + n_rej, "kept": n_kept, "rejected": n_rej, "lost": 0}
    return {k: int(prev.get(k, 0)) + v for k, v in own.items()}


@contextlib.contextmanager
def _files_there(run_id: str) -> Iterator[None]:
    """A shard file gone at the commit is one line (ShardFileGone), not pyiceberg's traceback."""
    try:
        yield
    except Exception as e:
        gone = find_cause(e, lambda c: isinstance(c, FileNotFoundError))
        if gone is None:
            raise
        quoted = re.search(r"'([^']+)'", str(gone))
        what = getattr(gone, "filename", None) or (quoted[1] if quoted else str(gone).splitlines()[0])
        raise ShardFileGone(f"a finished shard's file of run {run_id} was deleted before it was published "
                            f"({what}); was `curate gc --runs` run meanwhile? Rerun: that shard is redone") from e


def _tag_pair(store: Store, output: str, rname: str, snap: int, rsnap: int, tag: str | None) -> None:
    if tag:
        store.tag(f"{rname}@{rsnap}", tag, replace=True)
        store.tag(f"{output}@{snap}", tag, replace=True)


def _published(store: Store, output: str, rname: str, run_id: str) -> dict[str, Any] | None:
    """What of run `run_id` is already published, and whether all of it is (tags included)."""
    rsnap = store.find_run(rname, run_id)
    if rsnap is None:
        return None
    snap = store.find_run(output, run_id)
    if snap is not None:  # the rejects it names (append mode: maybe rebuilt after an earlier version of the run)
        rsnap = _named_rejects(store, output, snap, rsnap)
    rprops = store.properties(f"{rname}@{rsnap}")
    tag = rprops.get("tag")

    def has_tag(name: str, sid: int) -> bool:
        ref = store.table(name).metadata.refs.get(tag)
        return ref is not None and ref.snapshot_id == sid
    tagged = not tag or all(has_tag(n, sid) for n, sid in ((rname, rsnap), (output, snap)) if sid is not None)
    complete = (snap is not None or rprops.get("standalone") is True) and tagged
    return {"output": snap, "rejects": rsnap, "tag": tag, "complete": complete}


def _named_rejects(store: Store, output: str, snap: int, default: int) -> int:
    """The rejects snapshot output version `snap` names (`default` where it names none)."""
    named = store.named_rejects(output, snap)
    return named if named is not None else default


def _finish_tags(store: Store, opts: RunOptions, rname: str, run_id: str, published: dict[str, Any]) -> RunResult:
    snap, rsnap = published["output"], published["rejects"]
    _log(opts, f"completing run {run_id}: published as {opts.output}@{snap}, tagging")
    for tag in {published["tag"], opts.tag} - {None}:
        _tag_pair(store, opts.output, rname, snap, rsnap, tag)
    props = store.properties(f"{opts.output}@{snap}")
    return RunResult(run_id, opts.output, snap, rsnap, props["accounting"], props.get("stats", {}),
                     props["accounting"]["shards"], 0)


@contextlib.contextmanager
def _run_lock(data_dir: str, run_key: str, output: str) -> Iterator[None]:
    """One process at a time per run key on a local warehouse (flock: released when the
    process dies, so a killed run never blocks its rerun)."""
    if is_remote(data_dir):
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


def _placement(summaries: Any) -> dict[str, dict[str, int]]:
    """Stage → {Ray node: shards it processed there}."""
    out: dict[str, dict[str, int]] = {}
    for s in summaries:
        for stage, where in (s.get("placement") or {}).items():
            out.setdefault(stage, {})[where] = out.setdefault(stage, {}).get(where, 0) + 1
    return out


def _input_lineage(shards: list[InputShard]) -> dict[str, Any]:
    tables = sorted({s.fingerprint for s in shards if s.kind == "table"})
    files: dict[str, str] = {}
    for s in shards:
        if s.kind != "table":
            files[location(s.path)] = s.fingerprint
    listed = dict(sorted(files.items())[:100])
    return {"tables": tables, "files": listed, "n_files": len(files), "n_shards": len(shards),
            "files_hash": row_id(json.dumps(sorted(files.items())))[:16]}


def _progress(opts: RunOptions, total: int, initial: int, name: str) -> Any:
    """A bar on a terminal; elsewhere (a file, `ray job logs`) a line every CURATE_PROGRESS_EVERY s."""
    if not opts.progress:
        return None
    from schemas.progress import progress
    return progress(total=total, initial=initial, desc=name, unit="shard")


def _log(opts: RunOptions, msg: str) -> None:
    print(msg, file=sys.stderr)
