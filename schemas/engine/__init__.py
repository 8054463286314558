"""The engine's public API: a stage author and a pipeline script import from here alone.

    from schemas.engine import ModelStage, Resources, annotate, reject_where, stage

Every pipeline runs through these modules, and nothing here imports a stage:

    stage.py       the stage contract (`StageContract`, `Stage`, `@stage`, `StageSpec`), declared
                   resources, running a stage over a batch within the error budget
    inputs.py      the planner's half: inputs (files, globs, tables, s3://) → deterministic shards,
                   verified reads
    execute.py     the executor: a Ray Data operator per stage, or per run of stages with
                   the same resources (or the same operators in-process)
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
