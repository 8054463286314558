"""The engine: every pipeline runs through these modules, and nothing here imports a stage.

    stage.py       the stage contract (Arrow batch in, same rows out, scores and `drop_reason`),
                   declared resources, the error budget
    inputs.py      the planner's half: inputs (files, globs, tables, s3://) → deterministic shards,
                   verified reads
    execute.py     the executor: a Ray Data operator per stage, or per run of stages with
                   the same resources (or the same operators in-process)
    runner.py      the run: run key, resume from markers, accounting, the paired publish
    lineage.py     config hash, code fingerprint, git commit
    failpoints.py  kill points for the integrity tests
    raysession.py  start or join Ray the same way everywhere

The store it publishes to is `schemas/store.py`. Filters, synth and model stages import
`schemas.engine.stage` only; pipeline scripts compose stages and call `runner.run`.
"""
