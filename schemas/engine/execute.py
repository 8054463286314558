"""The executor: a pipeline becomes a streaming Ray Data DAG, an operator per stage or per run
of adjacent stages with the same needs.

    read (task) → stage operators (tasks, or actor pools for model stages, each with its
    declared CPUs, GPUs, pool size and rows per call; adjacent stages with the same needs
    share one) → write (task) → small summaries

The input shard stays the unit of identity: each item flowing through the operators is one
shard's live rows plus its rejects and per-stage counts so far, so the write operator names
files after the shard, writes its completion marker and the accounting adds up per stage.
Rows never pass through the driver, which only sees each shard's summary; Ray Data streams
items between operators with backpressure, so a slow stage does not hold everything read.

A stage that needs every shard before it can decide (dedup: `global_pass`) gets a pass of
its own first: the stages before it and its `signatures` over every shard (files under the
run directory, so a rerun resumes), then its `decide` once (a shuffle); the main pass builds
it with the decisions. `executor="local"` runs the same operators in-process, shard by
shard; `fuse="all"` puts the whole chain in one operator (the shard-chain executor the DAG
replaced, kept for comparison in bench/).
"""
from __future__ import annotations

import json
import math
import pickle
import time
import warnings
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Callable

import pyarrow as pa

from schemas import stats as st
from schemas.engine.failpoints import failpoint
from schemas.engine.files import exists, write_json, write_parquet
from schemas.engine.inputs import InputShard, UnreadableInput, concat_rejects, read_shard
from schemas.engine.stage import ERROR_BUDGET, Resources, StageCount, StageFailed, StageSpec, run_stage, with_overrides
from schemas.ids import row_id, table_ids
from schemas.tables import id_fields
from schemas.validate import conform, empty_rejects, make_rejects


class AccountingError(RuntimeError):
    """Counts that do not add up: a bug, never bad input."""


@dataclass
class ShardJob:
    """Everything a worker needs (pickled to it)."""
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
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-stage overrides
    fuse: str = "resources"  # resources (adjacent stages with the same needs share an operator) | none | all

    def only(self, indices: list[int]) -> "ShardJob":
        """This job with the specs of other stages left out: a worker unpickling it imports only
        the modules of the stages it runs (presidio alone costs a read task 3.5 CPU s)."""
        keep = set(indices)
        return replace(self, specs=[s if i in keep else None for i, s in enumerate(self.specs)])


@dataclass
class ShardState:
    """One shard on its way through the operators."""
    shard: dict[str, Any]
    live: pa.Table
    rejects: list[pa.Table]
    counts: list[StageCount]
    n_in: int
    lost_files: dict[str, Any] = field(default_factory=dict)
    failure: dict[str, Any] | None = None   # {"unreadable": [...]} or {"stage_failed": "..."}
    started: float = field(default_factory=time.time)
    placement: dict[str, str] = field(default_factory=dict)  # stage → the Ray node it ran on
    timeline: dict[str, list[float]] = field(default_factory=dict)  # stage → [start, end], epoch seconds


@dataclass
class Operator:
    name: str
    stages: list[int]          # indices into job.specs
    kind: str                  # task | actor
    resources: Resources
    max_actors: int | None = None  # the pool's size cap on this cluster (≤ what was asked for)

    def describe(self) -> dict[str, Any]:
        out = {"operator": self.name, "kind": self.kind, **self.resources.to_dict()}
        if self.kind == "actor":
            out["max_actors"] = self.max_actors
        return out


# ---- the operators' work, the same in-process and under Ray ---------------------------------
def read_state(shard: InputShard, job: ShardJob) -> ShardState:
    started = time.time()
    lost_files: dict[str, Any] = {}
    try:
        rows, read_rejects, n_in = read_shard(shard, job.input_schema)
    except UnreadableInput as e:
        if job.on_unreadable != "record":
            # Carried, not raised: Ray would wrap it (and drop its cause) in its own traceback.
            return ShardState(shard.to_dict(), job.input_schema.empty_table(), [], [], 0,
                              failure={"unreadable": [e.path, e.problem, e.expected_rows]})
        rows, read_rejects, n_in = job.input_schema.empty_table(), empty_rejects(), e.expected_rows or 0
        lost_files[e.path] = {"rows": e.expected_rows, "problem": e.problem}
    # A stable key per row for stages that join cross-shard decisions (dedup); never written.
    rows = rows.append_column("_rowkey", pa.array([f"{shard.key}:{i}" for i in range(rows.num_rows)], pa.string()))
    count = StageCount("read", rows_in=n_in, rows_out=rows.num_rows, rejected=read_rejects.num_rows,
                       lost=n_in - rows.num_rows - read_rejects.num_rows)
    _count_reasons(count, read_rejects)
    return ShardState(shard.to_dict(), rows, [read_rejects] if read_rejects.num_rows else [], [count], n_in,
                      lost_files, placement={"read": node()}, timeline={"read": [started, time.time()]})


def node() -> str:
    """The Ray node this worker runs on ("local" outside Ray): lineage shows where stages ran."""
    import sys
    if "ray" not in sys.modules:
        return "local"
    import ray
    return ray.get_runtime_context().get_node_id()[:12] if ray.is_initialized() else "local"


class StageOp:
    """Builds its stages once (once per actor under Ray) and runs them over shard states."""

    def __init__(self, job: ShardJob, indices: list[int], decisions: dict[int, str] | None = None):
        self.job = job
        self.stages = []
        for i in indices:
            spec = job.specs[i]
            if spec.global_pass:
                spec = StageSpec(spec.target, {**spec.params, "decisions": (decisions or {})[i]})
            res = with_overrides(spec.resources, job.resources.get(spec.name, {}))
            self.stages.append((spec.name, spec.build(), res.batch_rows, spec.redacts))

    def process(self, state: ShardState) -> ShardState:
        if state.failure:
            return state
        for name, fn, batch_rows, redacts in self.stages:
            started = time.time()
            try:
                state.live, rej, count = run_stage(name, fn, state.live, self.job.error_budget, batch_rows)
            except StageFailed as e:  # carried like an unreadable input: the run fails with this cause
                state.failure = {"stage_failed": str(e)}
                return state
            if rej is not None:
                state.rejects.append(rej)
            state.counts.append(count)
            state.placement[name] = node()
            state.timeline[name] = [started, time.time()]
            if redacts and not self.job.raw_rejects:
                # Rejects are persisted too: everything rejected so far is redacted here; rows
                # rejected later passed this stage, so their text already is.
                state.rejects = [redact(r, fn) for r in state.rejects]
        return state

    def __call__(self, batch: pa.Table) -> pa.Table:
        return _map_states(batch, self.process)


def redact(rejects: pa.Table, redactor: Any) -> pa.Table:
    """Every text column of `rejects` (text, raw line, details) through a privacy stage."""
    for name in rejects.column_names:
        col = rejects.column(name)
        if name in ("id", "drop_reason", "reject_stage", "_rowkey") or not pa.types.is_string(col.type):
            continue
        rejects = rejects.set_column(rejects.column_names.index(name), name,
                                     pa.array(redactor.redact_strings(col.to_pylist()), pa.string()))
    return rejects


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
    _count_reasons(write_count, concat_rejects([dup_rejects, fitted.rejects]))
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


def sign_state(state: ShardState, job: ShardJob, index: int) -> dict[str, Any]:
    """The global stage's signatures of one shard's live rows, as a file under the run."""
    shard = InputShard.from_dict(state.shard)
    if state.failure:
        return {"shard": shard.key, **state.failure}
    spec = job.specs[index]
    uri = signature_uri(job, index, shard.key)
    write_parquet(spec.target.signatures(state.live, **spec.params), uri)
    return {"shard": shard.key, "signatures": uri}


def signature_uri(job: ShardJob, index: int, shard_key: str) -> str:
    return f"{job.out_dir}/_global/{index}-{job.specs[index].name}/signatures/{shard_key}.parquet"


def decisions_uri(job: ShardJob, index: int) -> str:
    return f"{job.out_dir}/_global/{index}-{job.specs[index].name}/decisions.parquet"


# ---- planning operators ------------------------------------------------------------------------
def plan_operators(job: ShardJob, indices: list[int], cluster: dict[str, float] | None = None) -> list[Operator]:
    """One operator per run of adjacent stages with the same needs (fuse="resources": CPUs,
    GPUs, pool bounds; a stage apart from its neighbours only where it needs something they do
    not, since a separate operator on the same resources buys no parallelism and costs a process
    hop, a pickled shard and a model load per pool); strictly one per stage under fuse="none",
    all in one under fuse="all". Resources are resolved against the cluster first: a GPU a
    stage would use is dropped on a CPU-only cluster unless the stage needs one, which fails
    here, before any work. The first and last operators are the read and the write."""
    names = {s.name for s in job.specs}
    unknown = sorted(set(job.resources) - names)
    if unknown:
        raise ValueError(f"--resources: no stage named {', '.join(unknown)}; this pipeline's stages: "
                         f"{', '.join(s.name for s in job.specs)}")
    cpus = max(1.0, (cluster or {}).get("CPU", 1.0))
    gpus = (cluster or {}).get("GPU", 0.0)
    ops: list[Operator] = []
    for i in indices:
        spec = job.specs[i]
        res = with_overrides(spec.resources, job.resources.get(spec.name, {}))
        if res.gpus and not gpus:
            if res.needs_gpu and cluster is not None:
                raise StageFailed(f"stage '{spec.name}' needs {res.gpus:g} GPU per worker and the Ray cluster has "
                                  "none; run it on a cluster with GPUs or set --resources "
                                  f"{spec.name}=gpus:0 to run it on CPU")
            if not res.needs_gpu:
                res = replace(res, gpus=0.0)
        kind = "actor" if spec.kind == "actor" or res.gpus else "task"
        prev = ops[-1] if ops else None
        if prev is not None and (job.fuse == "all" or (job.fuse == "resources" and _same_needs(res, prev.resources))):
            prev.stages.append(i)
            prev.name += f"+{spec.name}"
            # the most any of them needs (equal under "resources"; rows per call stay per stage)
            prev.resources = replace(prev.resources, cpus=max(res.cpus, prev.resources.cpus),
                                     gpus=max(res.gpus, prev.resources.gpus),
                                     needs_gpu=res.needs_gpu or prev.resources.needs_gpu)
            prev.kind = "actor" if "actor" in (kind, prev.kind) else "task"
            continue
        ops.append(Operator(spec.name, [i], kind, res))
    io = Resources(cpus=1.0)
    pools = [o for o in ops if o.kind == "actor"]
    # Pools first, as large as their bounds and the cluster allow: a model stage is where the
    # time goes. Every pool at its largest plus a task must still fit at once, on some node, or
    # the tasks wait for CPUs the actors hold and the run never ends. Where they do not, tasks
    # get a sliver of a (logical) CPU and share the cores, and the actors are scaled down
    # (rounded down) to leave a sliver free on every node.
    _size_pools(pools, cpus, gpus)
    held = sum(o.resources.cpus * o.max_actors for o in pools)
    if held + max([io.cpus] + [o.resources.cpus for o in ops if o.kind == "task"]) > cpus:
        nodes = max(1, int((cluster or {}).get("nodes", 1)))
        for o in ops:
            if o.kind == "task":
                o.resources = replace(o.resources, cpus=min(o.resources.cpus, TASK_SLIVER))
        io = replace(io, cpus=TASK_SLIVER)
        if held > cpus - 2 * TASK_SLIVER * nodes:
            scale = (cpus - 2 * TASK_SLIVER * nodes) / held
            for o in pools:
                o.resources = replace(o.resources, cpus=math.floor(o.resources.cpus * scale * 1000) / 1000)
    return [Operator("read", [], "task", io), *ops, Operator("write", [], "task", io)]


def _same_needs(a: Resources, b: Resources) -> bool:
    return (a.cpus, a.gpus, a.needs_gpu, a.actors) == (b.cpus, b.gpus, b.needs_gpu, b.actors)


def _size_pools(pools: list[Operator], cpus: float, gpus: float) -> None:
    """Each pool's maximum size, so that together the pools never ask for more CPUs (or GPUs)
    than the cluster has (Ray Data would otherwise grow a busy pool until nothing else can be
    scheduled). The room left after every pool's minimum goes one actor at a time to the pool
    with the fewest actors for its declared minimum, up to the declared maximum."""
    size = {id(o): o.resources.actors[0] for o in pools}
    used_c = sum(o.resources.cpus * size[id(o)] for o in pools)
    used_g = sum(o.resources.gpus * size[id(o)] for o in pools)
    while True:
        grow = [o for o in pools if (o.resources.actors[1] is None or size[id(o)] < o.resources.actors[1])
                and used_c + o.resources.cpus <= cpus + 1e-9 and used_g + o.resources.gpus <= gpus + 1e-9
                and size[id(o)] < 64]
        if not grow:
            break
        o = min(grow, key=lambda o: size[id(o)] / o.resources.actors[0])
        size[id(o)] += 1
        used_c += o.resources.cpus
        used_g += o.resources.gpus
    for o in pools:
        o.max_actors = size[id(o)]


TASK_SLIVER = 0.05  # logical CPUs of a task on a cluster too small for every pool and a whole-CPU task


# ---- running ------------------------------------------------------------------------------------
def execute(shards: list[InputShard], pending: list[InputShard], job: ShardJob, executor: str,
            on_done: Callable[[dict[str, Any]], None], num_cpus: int | None = None,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Process the `pending` ones of the run's `shards`: a pass per global stage first, then
    the main pass. Returns what lineage records (operators with their resources, passes)."""
    plan_operators(job, [])  # a --resources name no stage has: a usage error, before Ray starts
    cluster = None
    if executor == "ray":
        import ray

        from schemas.engine.raysession import init_ray
        init_ray(num_cpus)
        cluster = {k: float(v) for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        cluster["nodes"] = sum(1 for n in ray.nodes() if n.get("Alive"))
    # Planned before any pass: a stage the cluster can never run (a GPU on a CPU-only
    # cluster, an unknown --resources name) fails here, not after a global pass's work.
    ops = plan_operators(job, list(range(len(job.specs))), cluster)
    decisions: dict[int, str] = {}
    passes = []
    for g in [i for i, s in enumerate(job.specs) if s.global_pass]:
        decisions[g], info = _global_pass(shards, pending, job, g, decisions, executor, cluster, log)
        passes.append(info)
    if pending:
        _stream(pending, job, ops, decisions, executor, on_done, final=partial(write_state, job=job.only([])),
                log=log)
    return {"operators": [o.describe() for o in ops], "global_passes": passes,
            "cluster": cluster or {"executor": executor}}


def _global_pass(shards: list[InputShard], pending: list[InputShard], job: ShardJob, g: int,
                 decisions: dict[int, str], executor: str, cluster: dict[str, float] | None,
                 log: Callable[[str], None]) -> tuple[str, dict[str, Any]]:
    """Signatures of every shard (those of finished shards too: their rows take part in the
    decisions), then the decisions; both are files under the run, so a rerun skips them."""
    spec = job.specs[g]
    out = decisions_uri(job, g)
    info = {"stage": spec.name, "decisions": out}
    if exists(out) or not pending:
        return out, {**info, "resumed": True}
    todo = [s for s in shards if not exists(signature_uri(job, g, s.key))]
    log(f"{spec.name}: signatures of {len(todo)} shards ({len(shards) - len(todo)} done before)")
    if todo:
        ops = plan_operators(job, list(range(g)), cluster)

        def check(summary: dict[str, Any]) -> None:
            if "signatures" not in summary:
                _raise_failure(summary)
        _stream(todo, job, ops, decisions, executor, check, final=partial(sign_state, job=job.only([g]), index=g),
                log=log)
    failpoint("dedup")
    summary = spec.target.decide([signature_uri(job, g, s.key) for s in shards], out, executor, **spec.params)
    log(f"{spec.name}: " + ", ".join(f"{k} {v}" for k, v in summary.items() if isinstance(v, int)))
    return out, {**info, **summary}


def _raise_failure(summary: dict[str, Any]) -> None:
    if "unreadable" in summary:
        raise UnreadableInput(*summary["unreadable"])
    if "stage_failed" in summary:
        raise StageFailed(summary["stage_failed"])
    raise RuntimeError(f"shard {summary.get('shard')}: no result")


def _stream(shards: list[InputShard], job: ShardJob, ops: list[Operator], decisions: dict[int, str], executor: str,
            on_done: Callable[[dict[str, Any]], None], final: Callable[[ShardState], dict[str, Any]],
            log: Callable[[str], None] = print) -> None:
    """Shards through the operators; a shard whose worker or node is lost is run again (the
    shard's files have deterministic names, so a rerun rewrites the same ones), in a fresh DAG
    over the unfinished shards, up to RETRIES times."""
    if executor == "local":
        built = [StageOp(job, o.stages, decisions) for o in ops if o.stages]
        for shard in shards:
            state = read_state(shard, job)
            for op in built:
                state = op.process(state)
            on_done(final(state))
        return
    remaining = list(shards)
    for attempt in range(1, RETRIES + 2):
        finished: set[str] = set()
        try:
            with warnings.catch_warnings():  # Ray 2.60 takes max_restarts only through **ray_remote_args
                warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
                for row in _dag(remaining, job, ops, decisions, final).iter_rows():
                    summary = json.loads(row["summary"])
                    on_done(summary)
                    finished.add(summary["shard"])
            return
        except Exception as e:  # only a lost worker or node is retried (re-raised otherwise)
            lost = _lost_worker(e)
            if lost is None or attempt > RETRIES:
                raise
            remaining = [s for s in remaining if s.key not in finished]
            log(f"a Ray worker or node was lost ({type(lost).__name__}); retrying the {len(remaining)} unfinished "
                f"shards (retry {attempt} of {RETRIES})")


def find_cause(exc: BaseException, match: Callable[[BaseException], bool]) -> BaseException | None:
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


def _lost_worker(exc: BaseException) -> BaseException | None:
    """The Ray system failure (a dead actor, worker or node, lost objects) in `exc`'s chain."""
    import ray.exceptions as rex
    kinds = tuple(k for k in (getattr(rex, n, None) for n in (
        "RayActorError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OwnerDiedError",
        "ActorUnavailableError", "LocalRayletDiedError")) if isinstance(k, type))
    return find_cause(exc, lambda e: isinstance(e, kinds))


def _dag(shards: list[InputShard], job: ShardJob, ops: list[Operator], decisions: dict[int, str],
         final: Callable[[ShardState], dict[str, Any]]):
    import ray
    import ray.data

    # Ray Data's high-memory warning fires on every run for the ~400 MB a Python worker holds
    # after importing pyarrow and the stages (not data a `memory=` request would bound): off.
    ray.data.DataContext.get_current().issue_detectors_config.high_memory_detector_config \
        .detection_time_interval_s = -1
    ds = ray.data.from_items([{"shard": json.dumps(s.to_dict())} for s in shards], override_num_blocks=len(shards))
    read, *stages, write = ops
    ds = ds.map_batches(_named("read", _read_batch, job=job.only([])), batch_size=1, batch_format="pyarrow",
                        num_cpus=read.resources.cpus, max_retries=RETRIES)
    for op in stages:
        res = op.resources
        if op.kind == "actor":
            cls = type(f"Stage_{op.name.replace('+', '_')}", (StageOp,), {})
            max_actors = max(res.actors[0], min(op.max_actors or res.actors[0], len(shards)))
            # A pool without a declared maximum starts at the size planned for it: Ray Data's
            # autoscaler grows a pool on queued work, which backpressure keeps short, and held a
            # CPU pool of 2 planned actors at 1 for most of a 15,000-document run. A declared
            # range (actors:1-4) is left to the autoscaler, as asked.
            min_actors = max_actors if res.actors[1] is None else res.actors[0]
            ds = ds.map_batches(cls, fn_constructor_kwargs={"job": job.only(op.stages), "indices": op.stages,
                                                            "decisions": decisions},
                                batch_size=1, batch_format="pyarrow", num_cpus=res.cpus, num_gpus=res.gpus or None,
                                compute=ray.data.ActorPoolStrategy(min_size=min_actors, max_size=max_actors),
                                max_restarts=0)
        else:
            ds = ds.map_batches(_named(f"stage_{op.name.replace('+', '_')}", _stage_batch, job=job.only(op.stages),
                                       indices=op.stages, decisions=decisions),
                                batch_size=1, batch_format="pyarrow", num_cpus=res.cpus, max_retries=RETRIES)
    return ds.map_batches(_named("write", _final_batch, final=final), batch_size=1, batch_format="pyarrow",
                          num_cpus=write.resources.cpus, max_retries=RETRIES)


# A worker or node that dies is replaced and its shard retried (outputs have deterministic names,
# so a retry rewrites the same files), a bounded number of times: a stage that kills its process
# on some input (a segfault) fails the run instead of being retried forever, Ray Data's default.
# Tasks are retried by Ray; actors are not restarted by Ray (a restartable actor whose arguments
# live in the object store, as Ray Data's do, logs a warning on every run) but by `_stream`, which
# runs the unfinished shards again in a fresh DAG.
RETRIES = 3


# ---- Ray batch functions: one row per shard, its state pickled (Arrow tables pickle as IPC) ----
def _named(name: str, fn: Callable[..., pa.Table], **kw: Any) -> Callable[[pa.Table], pa.Table]:
    """A closure named after its operator: Ray Data names operators after their function."""
    def call(batch: pa.Table) -> pa.Table:
        return fn(batch, **kw)
    call.__name__ = call.__qualname__ = name
    return call


def _map_states(batch: pa.Table, fn: Callable[[ShardState], ShardState]) -> pa.Table:
    states = [fn(pickle.loads(b)) for b in batch.column("state").to_pylist()]
    return pa.table({"state": pa.array([pickle.dumps(s, protocol=5) for s in states], pa.binary())})


def _read_batch(batch: pa.Table, job: ShardJob) -> pa.Table:
    states = [read_state(InputShard.from_dict(json.loads(d)), job) for d in batch.column("shard").to_pylist()]
    return pa.table({"state": pa.array([pickle.dumps(s, protocol=5) for s in states], pa.binary())})


def _stage_batch(batch: pa.Table, job: ShardJob, indices: list[int], decisions: dict[int, str]) -> pa.Table:
    return _map_states(batch, StageOp(job, indices, decisions).process)


def _final_batch(batch: pa.Table, final: Callable[[ShardState], dict[str, Any]]) -> pa.Table:
    return pa.table({"summary": [json.dumps(final(pickle.loads(b)), default=str)
                                 for b in batch.column("state").to_pylist()]})


# ---- rows and accounting ------------------------------------------------------------------------
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


def _count_reasons(count: StageCount, rejects: pa.Table) -> None:
    if rejects.num_rows:
        import pyarrow.compute as pc
        vc = pc.value_counts(rejects.column("drop_reason"))
        count.reasons = dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))


def check_shard(summary: dict[str, Any]) -> None:
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
