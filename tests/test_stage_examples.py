"""ARCHITECTURE.md, "How to write a stage": its examples are run here exactly as written there
(read from the section, so the document and the tested code cannot drift apart), and they use
only the engine's public API (`schemas.engine`) and the table schemas."""
import ast
import importlib
import re
import sys
from pathlib import Path

import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTION = "How to write a stage"


def _blocks() -> list[str]:
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    body = text.split(f"## {SECTION}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


@pytest.fixture
def examples(tmp_path, monkeypatch):
    """The function and model stage examples as one importable module (lineage hashes its file)."""
    *stages, _ = _blocks()
    (tmp_path / "doc_stage_examples.py").write_text("\n\n".join(stages), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("doc_stage_examples", None)
    yield importlib.import_module("doc_stage_examples")
    sys.modules.pop("doc_stage_examples", None)


def test_the_section_has_a_function_stage_a_model_stage_and_a_pipeline():
    blocks = _blocks()
    assert len(blocks) == 3
    assert "@stage(" in blocks[0] and "(ModelStage):" in blocks[1] and "run(pipeline" in blocks[2]


def test_the_examples_import_the_engine_from_one_place():
    """Project imports in the examples are `schemas.engine` (the stage-author API) and
    `schemas.tables` (schemas and the column helper), nothing deeper."""
    project = set()
    for block in _blocks():
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "schemas":
                project.add(node.module)
    assert project == {"schemas.engine", "schemas.tables"}


def test_the_public_api_names_exist():
    import schemas.engine as engine
    for name in engine.__all__:
        assert getattr(engine, name) is not None, name
    from schemas.engine.runner import Pipeline
    from schemas.engine.stage import ModelStage, StageSpec, stage
    assert (engine.Pipeline, engine.ModelStage, engine.StageSpec, engine.stage) == (Pipeline, ModelStage, StageSpec,
                                                                                    stage)
    with pytest.raises(AttributeError):
        engine.no_such_name  # noqa: B018 - the attribute access is the test


def test_the_examples_run_on_a_table(examples):
    (Path("blocklist.txt")).write_text("spam\nscam\n", encoding="utf-8")
    t = pa.table({"text": ["one line", "a\nb\nc\nd", "buy spam now"]})
    out = examples.line_count.configure(max_lines=3)(t)
    assert out.column("n_lines").to_pylist() == [1, 4, 1]
    assert out.column("drop_reason").to_pylist() == [None, "too_many_lines", None]
    block = examples.Blocklist(path="blocklist.txt")(t)
    assert block.column("blocked_words").to_pylist() == [0, 0, 1]
    assert block.column("drop_reason").to_pylist() == [None, None, "blocklisted"]
    from schemas.engine import StageConfigError, StageSpec
    with pytest.raises(StageConfigError, match="stage line_count: unknown parameter 'max_line'"):
        examples.line_count.configure(max_line=3)
    with pytest.raises(StageConfigError, match="stage blocklist: unknown parameter 'pth'"):
        StageSpec(examples.Blocklist, {"pth": "blocklist.txt"})


def test_the_pipeline_example_runs_and_accounts_for_every_row(examples):
    """The third block, as written: a local run publishing `docs_mine` from `docs.jsonl`."""
    import json
    Path("blocklist.txt").write_text("spam\n", encoding="utf-8")
    docs = ["a fine short document"] * 3 + ["line\n" * 60, "buy spam today"]
    Path("docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    scope = dict(vars(examples))
    exec(_blocks()[2], scope)  # the documented example is the code under test
    acc = scope["result"].accounting
    assert acc["rows_in"] == 5 and acc["kept"] == 1  # three copies of one text: two are duplicate ids
    assert acc["rejects_by_reason"] == {"too_many_lines": 1, "blocklisted": 1, "duplicate_id": 2}
    from schemas.store import Store
    stages = Store().properties("docs_mine")["config"]["stages"]
    assert stages[1]["name"] == "blocklist" and stages[1]["model"]["kind"] == "word-list"
