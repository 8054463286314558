"""The Ray Data DAG over shards, and its retries.

    read (task) → stage operators (tasks, or actor pools for stages built once per actor) →
    write (task) → small summaries

Each item is one shard, its state pickled (Arrow tables pickle as IPC); Ray Data streams items
between operators with backpressure, so a slow stage does not hold everything read. A shard
whose worker or node is lost is run again, a bounded number of times.
"""
from __future__ import annotations

import json
import pickle
import warnings
from typing import TYPE_CHECKING, Any, Callable

import pyarrow as pa

from schemas.engine.inputs import InputShard
from schemas.engine.job import ShardJob, ShardState
from schemas.engine.operators import StageOp, read_state
from schemas.engine.plan import Operator

if TYPE_CHECKING:
    import ray.data

# A worker or node that dies is replaced and its shard retried (outputs have deterministic names,
# so a retry rewrites the same files), a bounded number of times: a stage that kills its process
# on some input (a segfault) fails the run instead of being retried forever, Ray Data's default.
# Tasks are retried by Ray; actors are not restarted by Ray (a restartable actor whose arguments
# live in the object store, as Ray Data's do, logs a warning on every run) but by `run_dag`, which
# runs the unfinished shards again in a fresh DAG.
RETRIES = 3


def run_dag(shards: list[InputShard], job: ShardJob, ops: list[Operator], decisions: dict[int, str],
            on_done: Callable[[dict[str, Any]], None], final: Callable[[ShardState], dict[str, Any]],
            log: Callable[[str], None] = print) -> None:
    """Shards through the operators on Ray; a shard whose worker or node is lost is run again
    (the shard's files have deterministic names, so a rerun rewrites the same ones), in a fresh
    DAG over the unfinished shards, up to RETRIES times."""
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
         final: Callable[[ShardState], dict[str, Any]]) -> ray.data.Dataset:
    import ray
    import ray.data

    # Ray Data's high-memory warning fires on every run for the ~400 MB a Python worker holds
    # after importing pyarrow and the stages (not data a `memory=` request would bound): off.
    ray.data.DataContext.get_current().issue_detectors_config.high_memory_detector_config \
        .detection_time_interval_s = -1
    items = [{"shard": json.dumps(s.to_dict())} for s in shards]
    ds: ray.data.Dataset = ray.data.from_items(items, override_num_blocks=len(shards))
    read, *stages, write = ops
    ds = ds.map_batches(_named("read", _read_batch, job=job.only([])), batch_size=1, batch_format="pyarrow",
                        num_cpus=read.resources.cpus, max_retries=RETRIES)
    for op in stages:
        res = op.resources
        if op.kind == "actor":
            cls = type(f"Stage_{op.name.replace('+', '_')}", (StageActor,), {})  # Ray Data names the pool after it
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


class StageActor(StageOp):
    """A stage operator as a Ray Data actor: builds its stages once, then maps shard states."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        return _map_states(batch, self.process)


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
