"""The operator plan: every pipeline shape fits the cluster it runs on (or fails before work)."""
import itertools

import pyarrow as pa
import pytest

from schemas.engine.job import ShardJob
from schemas.engine.plan import plan_operators
from schemas.engine.stage import ModelStage, Resources, StageFailed, StageSpec, stage
from schemas.tables import DOCUMENTS, rejects_schema


@stage()
def cheap(batch: pa.Table, k: int = 0) -> pa.Table:
    """`k` only tells specs apart (stage parameters are checked against the signature)."""
    return batch


def _model(name: str, res: Resources):
    return type(f"M_{name}", (ModelStage,), {"name": name, "resources": res, "__call__": lambda self, b: b})


def _job(specs, resources=None, fuse="resources"):
    return ShardJob(DOCUMENTS, DOCUMENTS, rejects_schema(DOCUMENTS), specs, "/x", "/y", "r",
                    resources=resources or {}, fuse=fuse)


@pytest.mark.parametrize("n_actors,cpus,gpus_decl,cluster_cpus,fuse", itertools.product(
    [0, 1, 2, 3, 5], [0.5, 1.0, 2.0], [0.0, 1.0], [1.0, 2.0, 3.0, 16.0], ["resources", "none"]))
def test_actor_pools_and_a_task_always_fit_the_cluster(n_actors, cpus, gpus_decl, cluster_cpus, fuse):
    """Rounding or greedy pools must never leave the tasks between them without a CPU: that
    hangs the run forever (it did, with 2 × 0.667 + 0.667 > 2)."""
    specs = [cheap.spec()]
    for i in range(n_actors):
        specs += [StageSpec(_model(f"m{i}", Resources(cpus=cpus, gpus=gpus_decl))), cheap.configure(k=i).spec()]
    ops = plan_operators(_job(specs, fuse=fuse), list(range(len(specs))), {"CPU": cluster_cpus, "GPU": 0.0})
    assert ops[0].name == "read" and ops[-1].name == "write"
    actors = [o for o in ops if o.kind == "actor"]
    tasks = [o for o in ops if o.kind == "task"]
    assert sorted(i for o in ops for i in o.stages) == list(range(len(specs)))  # every stage, once
    # cheap stages declare one CPU: with models of one CPU (and no GPU here) everything is one pool
    expect = n_actors if fuse == "none" or cpus != 1.0 else min(n_actors, 1)
    assert len(actors) == expect and all(o.resources.gpus == 0 for o in ops)  # no GPU here: CPU
    held = sum(o.resources.cpus * o.max_actors for o in actors)  # pools at their largest
    assert held + max(o.resources.cpus for o in tasks) <= cluster_cpus + 1e-9
    assert all(o.max_actors >= o.resources.actors[0] >= 1 for o in actors)


def test_gpu_pools_never_hold_more_gpus_than_the_cluster_has():
    specs = [cheap.spec(), StageSpec(_model("asr", Resources(cpus=1, gpus=0.5))),
             StageSpec(_model("gen", Resources(cpus=1, gpus=1)))]
    ops = {o.name: o for o in plan_operators(_job(specs), [0, 1, 2], {"CPU": 16.0, "GPU": 2.0})}
    assert ops["asr"].resources.gpus == 0.5 and ops["gen"].resources.gpus == 1
    assert ops["asr"].max_actors * 0.5 + ops["gen"].max_actors * 1 <= 2


def test_overrides_and_their_errors():
    specs = [cheap.spec(), StageSpec(_model("asr", Resources(cpus=1, gpus=1)))]
    ops = {o.name: o for o in plan_operators(_job(specs, {"asr": {"gpus": 0.5, "actors": [1, 2]}}), [0, 1],
                                             {"CPU": 8.0, "GPU": 1.0})}
    assert ops["asr"].resources.gpus == 0.5 and ops["asr"].resources.actors == (1, 2)
    assert ops["asr"].max_actors == 2  # asked for and fits (8 CPUs, 1 GPU at 0.5 each)
    with pytest.raises(StageFailed, match="needs 0.5 GPU"):
        plan_operators(_job(specs, {"asr": {"gpus": 0.5}}), [0, 1], {"CPU": 8.0})
    with pytest.raises(ValueError, match="no stage named asrr"):
        plan_operators(_job(specs, {"asrr": {"cpus": 1}}), [0, 1], {"CPU": 8.0})
    # a GPU the stage would only use where there is one: CPU on a CPU-only cluster
    ops = {o.name: o for o in plan_operators(_job(specs), [0, 1], {"CPU": 2.0})}
    assert ops["cheap+asr"].resources.gpus == 0  # and then the same needs as its neighbour


def test_fuse_all_is_one_operator_with_the_most_any_stage_needs():
    specs = [cheap.spec(), StageSpec(_model("asr", Resources(cpus=1, gpus=1))), cheap.configure(k=1).spec()]
    ops = plan_operators(_job(specs, fuse="all"), [0, 1, 2], {"CPU": 4.0, "GPU": 1.0})
    assert [o.name for o in ops] == ["read", "cheap+asr+cheap", "write"]
    assert ops[1].kind == "actor" and ops[1].resources.gpus == 1


def test_stages_with_the_same_needs_share_an_operator_and_its_pool_fills_the_cluster():
    """The text pipeline's shape: CPU stages, model or not, become one pool that reaches every
    core (2 actors on 2 CPUs, not 1 beside a reserved CPU for light read/write tasks); a
    stage with other needs (a GPU, a pool bound) keeps an operator of its own."""
    specs = [cheap.spec(), StageSpec(_model("dedup", Resources())), cheap.configure(k=1).spec(),
             StageSpec(_model("pii", Resources()))]
    ops = plan_operators(_job(specs), [0, 1, 2, 3], {"CPU": 2.0})
    assert [o.name for o in ops] == ["read", "cheap+dedup+cheap+pii", "write"]
    pool = ops[1]
    assert pool.kind == "actor" and pool.max_actors == 2
    assert pool.resources.cpus * 2 + ops[0].resources.cpus <= 2.0
    assert [o.name for o in plan_operators(_job(specs, fuse="none"), [0, 1, 2, 3], {"CPU": 2.0})] == \
        ["read", "cheap", "dedup", "cheap", "pii", "write"]

    speech = [cheap.spec(), StageSpec(_model("tts", Resources())), StageSpec(_model("asr", Resources(gpus=1))),
              cheap.configure(k=2).spec()]
    on_gpus = plan_operators(_job(speech), [0, 1, 2, 3], {"CPU": 8.0, "GPU": 1.0})
    assert [o.name for o in on_gpus] == ["read", "cheap+tts", "asr", "cheap", "write"]
    assert [o.name for o in plan_operators(_job(speech), [0, 1, 2, 3], {"CPU": 2.0})] == \
        ["read", "cheap+tts+asr+cheap", "write"]  # no GPU: the same needs, one pool
    bounded = plan_operators(_job(speech, {"tts": {"actors": [1, 2]}}), [0, 1, 2, 3], {"CPU": 2.0})
    assert [o.name for o in bounded] == ["read", "cheap", "tts", "asr+cheap", "write"]


def test_a_redacting_stage_redacts_the_rejects_of_the_stages_before_it():
    """The privacy hook is read from the contract (`redacts`), not probed on the built object:
    rows rejected before the privacy stage are persisted too, so their text goes through it."""
    from schemas.engine.job import ShardState
    from schemas.engine.operators import StageOp
    from schemas.engine.stage import StageCount, TaskStage, reject_where

    @stage()
    def reject_short(batch: pa.Table) -> pa.Table:
        return reject_where(batch, [len(t) < 20 for t in batch.column("text").to_pylist()], "short")

    class Redact(TaskStage):
        name = "redact"
        redacts = True

        def __call__(self, batch: pa.Table) -> pa.Table:
            return batch

        def redact_strings(self, values):
            return [None if v is None else v.replace("hunter2", "<PW>") for v in values]

    live = pa.table({"text": ["pw hunter2", "a long enough row with hunter2 in it"]})
    specs = [reject_short.spec(), StageSpec(Redact)]
    for raw, expect in ((False, "pw <PW>"), (True, "pw hunter2")):
        job = ShardJob(DOCUMENTS, DOCUMENTS, rejects_schema(DOCUMENTS), specs, "/x", "/y", "r", raw_rejects=raw)
        state = StageOp(job, [0, 1]).process(ShardState({}, live, [], [StageCount("read")], 2))
        assert [r.column("text").to_pylist() for r in state.rejects] == [[expect]]
        assert state.live.column("text").to_pylist() == ["a long enough row with hunter2 in it"]  # the stage's job


def test_exists_means_a_file_is_there_not_a_directory_of_that_name(tmp_path):
    """There were two `exists()`: schemas.filesystem's said yes to a directory, the engine's
    (files.py) only to a file. The engine asks it of a marker, a shard's signatures and a global
    pass's decisions, which must be the file itself: a directory of that name (on object storage,
    any key under the prefix) read as "decisions done" would skip the pass and then fail reading
    them. One function is left, with the file meaning; inputs still walk a directory."""
    from schemas import filesystem as fsys
    from schemas.engine import files
    from schemas.engine.inputs import plan_inputs

    assert files.exists is fsys.exists
    d = tmp_path / "decisions.parquet"
    d.mkdir()
    (d / "part-0.jsonl").write_text('{"text": "a b c"}\n')
    assert fsys.isdir(str(d)) and not fsys.exists(str(d)) and not fsys.exists(f"file://{d}")
    fsys.write_json(str(tmp_path / "m.json"), {"shard": "x"})
    assert fsys.exists(str(tmp_path / "m.json")) and fsys.exists(f"file://{tmp_path}/m.json")
    assert not fsys.exists(str(tmp_path / "nope.json"))
    assert [s.path for s in plan_inputs([str(d)])] == [str(d / "part-0.jsonl")]
