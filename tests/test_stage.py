import os

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from filters.text_basic import length_filter, normalize_text
from schemas.engine.stage import ModelStage, StageSpec, annotate, as_spec, reject_where, run_chain, stage
from schemas.tables import field


def test_function_stage_runs_on_a_table_and_marks_reasons():
    t = pa.table({"text": ["  hello  world this is fine  ", "", "two words"]})
    out = length_filter.configure(min_words=3)(normalize_text(t))
    assert out.column("text")[0].as_py() == "hello  world this is fine"
    assert out.column("drop_reason").to_pylist() == [None, "empty_text", "too_short"]  # first reason wins
    assert out.column("n_words").to_pylist() == [5, 0, 2]


def test_reject_where_keeps_first_reason_and_detail():
    t = pa.table({"x": [1, 2, 3]})
    t = reject_where(t, [True, False, False], "a", "first")
    t = reject_where(t, [True, True, False], "b", "second")
    assert t.column("drop_reason").to_pylist() == ["a", "b", None]
    assert t.column("reject_detail").to_pylist() == ["first", "second", None]


class Doubler(ModelStage):
    """Stands in for a model-loading stage: loads in __init__, counts loads."""
    name = "doubler"
    adds = [field("double", pa.int64())]
    loads = 0

    def __init__(self, factor: int = 2):
        Doubler.loads += 1
        self.factor = factor

    def __call__(self, batch):
        return annotate(batch, double=pc.multiply(batch.column("x"), self.factor))


@stage(adds=[field("inv", pa.float64())])
def invert(batch):
    vals = batch.column("x").to_pylist()
    return annotate(batch, inv=[1 / v for v in vals])  # raises on 0


def test_failing_rows_become_rejects_and_others_survive():
    t = pa.table({"x": [1, 0, 4]})
    kept, rejects, counts = run_chain([("invert", invert)], t)
    assert kept.column("x").to_pylist() == [1, 4]
    assert kept.column("inv").to_pylist() == [1.0, 0.25]
    rej = rejects[0]
    assert rej.column("drop_reason").to_pylist() == ["error:invert:ZeroDivisionError"]
    assert "division by zero" in rej.column("reject_detail")[0].as_py()
    c = counts[0]
    assert (c.rows_in, c.rows_out, c.rejected) == (3, 2, 1)


def test_chain_accounting_adds_up_per_stage():
    t = pa.table({"text": ["a b c d e f", "", "short one", "x " * 50]})
    kept, rejects, counts = run_chain([("normalize_text", normalize_text),
                                       ("length_filter", length_filter.configure(max_words=20))], t)
    for c in counts:
        assert c.rows_in == c.rows_out + c.rejected == c.rows_in
        assert sum(c.reasons.values()) == c.rejected
    assert counts[0].rows_out == counts[1].rows_in
    assert kept.num_rows + sum(r.num_rows for r in rejects) == 4
    assert counts[1].reasons == {"too_short": 1, "too_long": 1}


def test_stage_that_drops_rows_is_a_loud_bug():
    @stage()
    def dropper(batch):
        return batch.slice(0, 1)
    with pytest.raises(RuntimeError, match="never drop"):
        run_chain([("dropper", dropper)], pa.table({"x": [1, 2]}))


def test_specs_build_classes_once_and_describe_lineage():
    spec = as_spec(StageSpec(Doubler, {"factor": 3}))
    assert spec.kind == "actor" and spec.adds[0].name == "double"
    before = Doubler.loads
    s = spec.build()
    assert Doubler.loads == before + 1
    assert s(pa.table({"x": [2]})).column("double").to_pylist() == [6]
    fspec = as_spec(length_filter.configure(min_words=2))
    assert fspec.kind == "task" and fspec.name == "length_filter"
    assert fspec.describe()["params"] == {"min_words": 2}
    assert fspec.describe()["code"] == "filters.text_basic.length_filter"


@stage()
def always_fails(batch):
    raise KeyError("the stage itself is broken")


def test_a_stage_failing_on_most_of_a_batch_fails_loudly_not_as_rejects():
    from schemas.engine.stage import StageFailed
    with pytest.raises(StageFailed, match="failed on 10 of 10 rows"):
        run_chain([("always_fails", always_fails)], pa.table({"x": list(range(10))}))
    kept, rejects, _ = run_chain([("always_fails", always_fails)], pa.table({"x": list(range(10))}), budget=1.0)
    assert rejects[0].num_rows == 10  # an explicit budget of 100% keeps the old behaviour


def test_out_of_memory_fails_loudly_even_on_one_row():
    from schemas.engine.stage import StageFailed

    @stage()
    def oom_on_zero(batch):
        if 0 in batch.column("x").to_pylist():
            raise RuntimeError("CUDA error: out of memory")
        return batch
    with pytest.raises(StageFailed, match="out of memory"):
        run_chain([("oom", oom_on_zero)], pa.table({"x": [3, 0, 5, 7, 9]}))


def test_a_broken_stage_fails_the_run_with_its_cause_in_one_line(tmp_path):
    import subprocess
    import sys

    from helpers import corpus
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = corpus(tmp_path, n_files=2, limit=40)
    proc = subprocess.run([sys.executable, "tests/slow_pipeline.py", "--input", src, "--executor", "local", "--quiet",
                           "--pause", "-1", "--warehouse", str(tmp_path / "wh")],
                          cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "stage 'pause' failed on" in proc.stderr and "error budget" in proc.stderr


def test_a_misspelt_stage_parameter_fails_when_the_pipeline_is_built_naming_stage_and_parameter():
    """Before: StageSpec(GopherFilter, {"min_wrds": 3}) was accepted and failed inside a Ray worker
    after planning. Now the spec is checked against the stage's signature (or its `validate`) on
    the driver, in one line, with the likely intended name."""
    import pytest

    from filters.heuristics import GopherFilter
    from schemas.engine.stage import StageConfigError, StageSpec
    from synth.speech_text import select_speakable

    with pytest.raises(StageConfigError) as e:
        StageSpec(GopherFilter, {"min_wrds": 3})
    msg = str(e.value)
    assert msg.startswith("stage heuristics: unknown parameter 'min_wrds'") and "did you mean 'min_words'" in msg
    assert "\n" not in msg
    with pytest.raises(StageConfigError, match="stage select_speakable: unknown parameter 'min_word'"):
        select_speakable.configure(min_word=3)
    with pytest.raises(StageConfigError, match="stage select_speakable"):
        StageSpec(select_speakable, {"max_words": 3, "extra": 1})
    StageSpec(GopherFilter, {"min_words": 3})           # right names pass
    select_speakable.configure(min_words=2).spec()


def test_a_pipeline_with_a_misspelt_parameter_stops_before_ray_starts(tmp_path):
    """A user's pipeline script (the demo's, with one parameter misspelt) exits 2 with one line
    naming the stage and the parameter, and Ray is never started."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    script = tmp_path / "my_pipeline.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(repo)!r})\n"
        "import schemas.engine.raysession as rs\n"
        "def no_ray(*a, **k):\n"
        "    raise SystemExit('ray was started')\n"
        "rs.init_ray = no_ray\n"
        "from filters.text_basic import length_filter, normalize_text\n"
        "from pipelines.script import common_parser, main\n"
        "from schemas.engine.runner import Pipeline\n"
        "from schemas.tables import DOCUMENTS\n"
        "def build(args):\n"
        "    stages = [normalize_text, length_filter.configure(min_word=5)]\n"
        "    return Pipeline('mine', DOCUMENTS, DOCUMENTS, stages), args.inputs\n"
        "sys.exit(main(build, common_parser('mine', 'documents_mine')))\n")
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "hello there"}\n')
    r = subprocess.run([sys.executable, str(script), "--input", str(src), "--warehouse", str(tmp_path / "wh")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: stage length_filter: unknown parameter 'min_word' (it takes: min_words, max_words, max_chars, column); "
        "did you mean 'min_words'?"], r.stderr
    assert not (tmp_path / "wh").exists()  # nothing planned, nothing written


def test_the_contract_is_read_the_same_way_for_a_function_and_a_class():
    """StageSpec reads one declaration (StageContract) whichever form the stage is written in;
    the hooks a stage does not use are the base's defaults."""
    from filters.dedup import Dedup
    from filters.heuristics import GopherFilter
    from filters.pii import PiiScrubber
    from schemas.engine.stage import Resources, Stage, TaskStage

    fspec, gspec, dspec = length_filter.spec(), StageSpec(GopherFilter), StageSpec(Dedup)
    assert (fspec.kind, gspec.kind, dspec.kind) == ("task", "task", "actor")
    assert issubclass(GopherFilter, TaskStage) and issubclass(Dedup, Stage) and not issubclass(Dedup, ModelStage)
    assert [s.global_pass for s in (fspec, gspec, dspec)] == [False, False, True]
    assert [s.redacts for s in (fspec, gspec, dspec, StageSpec(PiiScrubber))] == [False, False, False, True]
    assert fspec.resources == gspec.resources == Resources()
    assert gspec.describe()["model"] == {} and dspec.describe()["model"]["kind"] == "minhash-lsh"


def test_a_class_outside_the_contract_is_refused_in_one_line():
    from schemas.engine.stage import StageConfigError

    class Plain:
        name, kind = "plain", "task"

        def __call__(self, batch):
            return batch
    with pytest.raises(StageConfigError) as e:
        StageSpec(Plain)
    assert "not a stage" in str(e.value) and "TaskStage" in str(e.value) and "\n" not in str(e.value)


def test_a_hook_switched_on_without_its_methods_fails_where_the_class_is_defined():
    from schemas.engine.stage import Stage, TaskStage

    with pytest.raises(TypeError, match="global_pass needs signatures"):
        type("NoPass", (Stage,), {"name": "nopass", "global_pass": True})
    with pytest.raises(TypeError, match="redacts needs redact_strings"):
        type("NoRedact", (TaskStage,), {"name": "noredact", "redacts": True})
