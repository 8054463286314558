"""What the read, stage and signature operators do to one shard, the same in-process and
under Ray: read it into a `ShardState`, run stages over its live rows (redacting the rejects
so far where a stage `redacts`), or write a global stage's signatures of it.
"""
from __future__ import annotations

import time
from typing import Any

import pyarrow as pa

from schemas.engine.accounting import StageCount, reason_counts
from schemas.engine.files import write_parquet
from schemas.engine.inputs import InputShard, UnreadableInput, read_shard
from schemas.engine.job import ShardJob, ShardState, node
from schemas.engine.stage import Stage, StageFailed, StageSpec, run_stage, with_overrides
from schemas.validate import empty_rejects


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
    count.reasons = reason_counts(read_rejects)
    return ShardState(shard.to_dict(), rows, [read_rejects] if read_rejects.num_rows else [], [count], n_in,
                      lost_files, placement={"read": node()}, timeline={"read": [started, time.time()]})



class StageOp:
    """Builds its stages once (once per actor under Ray) and runs them over shard states."""

    def __init__(self, job: ShardJob, indices: list[int], decisions: dict[int, str] | None = None):
        self.job = job
        self.stages = []
        for i in indices:
            spec = job.spec(i)
            if spec.global_pass:
                spec = StageSpec(spec.target, {**spec.params, "decisions": (decisions or {})[i]})
            res = with_overrides(spec.resources, job.resources.get(spec.name, {}))
            built = spec.build()
            redactor = built if spec.redacts and isinstance(built, Stage) else None
            self.stages.append((spec.name, built, res.batch_rows, redactor))

    def process(self, state: ShardState) -> ShardState:
        if state.failure:
            return state
        for name, fn, batch_rows, redactor in self.stages:
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
            if redactor is not None and not self.job.raw_rejects:
                # Rejects are persisted too: everything rejected so far is redacted here; rows
                # rejected later passed this stage, so their text already is.
                state.rejects = [redact(r, redactor) for r in state.rejects]
        return state


def redact(rejects: pa.Table, redactor: Stage) -> pa.Table:
    """Every text column of `rejects` (text, raw line, details) through a privacy stage."""
    for name in rejects.column_names:
        col = rejects.column(name)
        if name in ("id", "drop_reason", "reject_stage", "_rowkey") or not pa.types.is_string(col.type):
            continue
        rejects = rejects.set_column(rejects.column_names.index(name), name,
                                     pa.array(redactor.redact_strings(col.to_pylist()), pa.string()))
    return rejects



def sign_state(state: ShardState, job: ShardJob, index: int) -> dict[str, Any]:
    """The global stage's signatures of one shard's live rows, as a file under the run."""
    shard = InputShard.from_dict(state.shard)
    if state.failure:
        return {"shard": shard.key, **state.failure}
    uri = signature_uri(job, index, shard.key)
    write_parquet(job.spec(index).signatures(state.live), uri)
    return {"shard": shard.key, "signatures": uri}


def signature_uri(job: ShardJob, index: int, shard_key: str) -> str:
    return f"{job.out_dir}/_global/{index}-{job.spec(index).name}/signatures/{shard_key}.parquet"


def decisions_uri(job: ShardJob, index: int) -> str:
    return f"{job.out_dir}/_global/{index}-{job.spec(index).name}/decisions.parquet"

