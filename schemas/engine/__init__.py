"""The engine's public API: a stage author and a pipeline script import from here alone.

    from schemas.engine import ModelStage, Resources, annotate, reject_where, stage

Every pipeline runs through these modules, and nothing here imports a stage:

    stage.py       the stage contract (`StageContract`, `Stage`, `@stage`, `StageSpec`), declared
                   resources, running a stage over a batch within the error budget
    accounting.py  per-stage counts, and the check that a shard's rows add up
    inputs.py      the planner's half: inputs (files, globs, tables, s3://) → deterministic shards,
                   verified reads
    plan.py        the operator plan: stages → operators with resources fitted to the cluster
    job.py         what a worker is given (`ShardJob`) and what flows between operators (`ShardState`)
    operators.py   what the read, stage and signature operators do to one shard (redacting
                   rejects where a stage says so)
    write.py       the write side: ids, in-shard duplicates, the declared schema, files and marker
    ray_dag.py     the Ray Data DAG over shards, and its retries of lost workers and nodes
    execute.py     the executor's entry: global passes, then the main pass (Ray or in-process)
    runner.py      the run: run key, resume from markers, accounting, the paired publish
    files.py       marker and Parquet reads and writes on any filesystem (whole or absent)
    lineage.py     config hash, code fingerprint, git commit
    failpoints.py  kill points for the integrity tests
    raysession.py  start or join Ray the same way everywhere

The store it publishes to is `schemas/store.py` (ARCHITECTURE.md, "Layers").
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from schemas.engine.stage import (
    DETAIL,
    DROP,
    FunctionStage,
    ModelStage,
    Resources,
    Stage,
    StageConfigError,
    StageContract,
    StageFailed,
    StageSpec,
    TaskStage,
    annotate,
    parse_resources,
    reject_where,
    stage,
    unknown_parameter,
)

if TYPE_CHECKING:
    from schemas.engine.runner import NothingKept, Pipeline, RunOptions, RunResult, run

# The run side (`Pipeline`, `run`, …) imports the store (pyiceberg, pandas): loaded when first
# asked for, so a Ray worker importing a stage does not pay for it.
_RUNNER = ("NothingKept", "Pipeline", "RunOptions", "RunResult", "run")

__all__ = ["DETAIL", "DROP", "FunctionStage", "ModelStage", "NothingKept", "Pipeline", "Resources", "RunOptions",
           "RunResult", "Stage", "StageConfigError", "StageContract", "StageFailed", "StageSpec", "TaskStage",
           "annotate", "parse_resources", "reject_where", "run", "stage", "unknown_parameter"]


def __getattr__(name: str) -> Any:
    if name in _RUNNER:
        return getattr(importlib.import_module("schemas.engine.runner"), name)
    raise AttributeError(f"module 'schemas.engine' has no attribute {name!r}")
