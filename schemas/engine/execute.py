"""The executor: a pipeline becomes a streaming DAG of operators, one per stage or per run of
adjacent stages with the same needs (`plan.py`), run on Ray Data (`ray_dag.py`) or, with
`executor="local"`, the same operators in-process, shard by shard (`operators.py`, `write.py`).

A stage that needs every shard before it can decide (dedup: `global_pass`) gets a pass of
its own first: the stages before it and its `signatures` over every shard (files under the
run directory, so a rerun resumes), then its `decide` once (a shuffle); the main pass builds
it with the decisions. `fuse="all"` puts the whole chain in one operator (the shard-chain
executor the DAG replaced, kept for comparison in bench/).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

from schemas.engine.failpoints import failpoint
from schemas.engine.files import exists
from schemas.engine.inputs import InputShard, UnreadableInput
from schemas.engine.job import ShardJob, ShardState
from schemas.engine.operators import StageOp, decisions_uri, read_state, sign_state, signature_uri
from schemas.engine.plan import Operator, plan_operators
from schemas.engine.ray_dag import run_dag
from schemas.engine.stage import StageFailed
from schemas.engine.write import write_state


def execute(shards: list[InputShard], pending: list[InputShard], job: ShardJob, executor: str,
            on_done: Callable[[dict[str, Any]], None], num_cpus: int | None = None,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Process the `pending` ones of the run's `shards`: a pass per global stage first, then
    the main pass. Returns what lineage records (operators with their resources, passes)."""
    plan_operators(job, [])  # a --resources name no stage has: a usage error, before Ray starts
    cluster: dict[str, float] | None = None
    if executor == "ray":
        import ray

        from schemas.engine.raysession import init_ray
        init_ray(num_cpus)
        cluster = {k: float(v) for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        cluster["nodes"] = float(sum(1 for n in ray.nodes() if n.get("Alive")))
    # Planned before any pass: a stage the cluster can never run (a GPU on a CPU-only
    # cluster, an unknown --resources name) fails here, not after a global pass's work.
    specs = job.stages()
    ops = plan_operators(job, list(range(len(specs))), cluster)
    decisions: dict[int, str] = {}
    passes = []
    for g in [i for i, s in enumerate(specs) if s.global_pass]:
        decisions[g], info = _global_pass(shards, pending, job, g, decisions, executor, cluster, log)
        passes.append(info)
    if pending:
        _stream(pending, job, ops, decisions, executor, on_done, final=partial(write_state, job=job.only([])),
                log=log)
    where: dict[str, Any] = dict(cluster) if cluster else {"executor": executor}
    return {"operators": [o.describe() for o in ops], "global_passes": passes, "cluster": where}


def _global_pass(shards: list[InputShard], pending: list[InputShard], job: ShardJob, g: int,
                 decisions: dict[int, str], executor: str, cluster: dict[str, float] | None,
                 log: Callable[[str], None]) -> tuple[str, dict[str, Any]]:
    """Signatures of every shard (those of finished shards too: their rows take part in the
    decisions), then the decisions; both are files under the run, so a rerun skips them."""
    spec = job.spec(g)
    out = decisions_uri(job, g)
    info: dict[str, Any] = {"stage": spec.name, "decisions": out}
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
    summary = spec.decide([signature_uri(job, g, s.key) for s in shards], out, executor)
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
    """Shards through the operators: on Ray, or in this process shard by shard."""
    if executor != "local":
        run_dag(shards, job, ops, decisions, on_done, final, log)
        return
    built = [StageOp(job, o.stages, decisions) for o in ops if o.stages]
    for shard in shards:
        state = read_state(shard, job)
        for op in built:
            state = op.process(state)
        on_done(final(state))
