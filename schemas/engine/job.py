"""What the executor hands its workers and what flows between its operators.

A `ShardJob` is pickled to every worker once per operator; a `ShardState` is one input shard
on its way through the operators: its live rows plus its rejects and per-stage counts so far,
so names, markers and accounting stay per shard and rows never pass through the driver.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import pyarrow as pa

from schemas.engine.accounting import StageCount
from schemas.engine.stage import ERROR_BUDGET, StageSpec


@dataclass
class ShardJob:
    """Everything a worker needs (pickled to it)."""
    input_schema: pa.Schema
    output_schema: pa.Schema
    rejects_schema: pa.Schema
    specs: Sequence[StageSpec | None]  # None: a stage this worker does not run (see `only`)
    out_dir: str
    rejects_dir: str
    run_id: str
    on_unreadable: str = "fail"
    raw_rejects: bool = False
    error_budget: float = ERROR_BUDGET
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-stage overrides
    fuse: str = "resources"  # resources (adjacent stages with the same needs share an operator) | none | all

    def spec(self, index: int) -> StageSpec:
        """The spec of a stage this worker runs (`only` left the others out)."""
        spec = self.specs[index]
        if spec is None:
            raise RuntimeError(f"stage {index} is not in this worker's job")  # a bug in the executor
        return spec

    def stages(self) -> list[StageSpec]:
        """Every stage's spec (the driver's whole job)."""
        return [self.spec(i) for i in range(len(self.specs))]

    def only(self, indices: list[int]) -> ShardJob:
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


def node() -> str:
    """The Ray node this worker runs on ("local" outside Ray): lineage shows where stages ran."""
    import sys
    if "ray" not in sys.modules:
        return "local"
    import ray
    return str(ray.get_runtime_context().get_node_id())[:12] if ray.is_initialized() else "local"
