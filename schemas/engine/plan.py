"""The operator plan: a pipeline's stages become Ray Data operators whose resources fit the cluster.

Adjacent stages with the same needs share an operator (one pool, one process hop); a stage
the cluster can never run (a GPU it needs on a CPU-only cluster, a --resources name no stage
has) fails here, before any work. The first and last operators are the read and the write.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from schemas.engine.job import ShardJob
from schemas.engine.stage import Resources, StageFailed, with_overrides


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


def plan_operators(job: ShardJob, indices: list[int], cluster: dict[str, float] | None = None) -> list[Operator]:
    """One operator per run of adjacent stages with the same needs (fuse="resources": CPUs,
    GPUs, pool bounds; a stage apart from its neighbours only where it needs something they do
    not, since a separate operator on the same resources buys no parallelism and costs a process
    hop, a pickled shard and a model load per pool); strictly one per stage under fuse="none",
    all in one under fuse="all". Resources are resolved against the cluster first: a GPU a
    stage would use is dropped on a CPU-only cluster unless the stage needs one, which fails
    here, before any work. The first and last operators are the read and the write."""
    specs = job.stages()
    names = {s.name for s in specs}
    unknown = sorted(set(job.resources) - names)
    if unknown:
        raise ValueError(f"--resources: no stage named {', '.join(unknown)}; this pipeline's stages: "
                         f"{', '.join(s.name for s in specs)}")
    cpus = max(1.0, (cluster or {}).get("CPU", 1.0))
    gpus = (cluster or {}).get("GPU", 0.0)
    ops: list[Operator] = []
    for i in indices:
        spec = specs[i]
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
    held = sum(o.resources.cpus * (o.max_actors or 0) for o in pools)  # every pool has its size now
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
