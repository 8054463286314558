"""The code fingerprint in every run key: which modules it covers, and that it never fails a run.

CI once failed on CPython 3.11's `ast.parse` race (gh-106905): a test server's thread printed a
traceback (3.11's traceback module parses the failing line) while the runner parsed its modules,
and the run died with "AST constructor recursion depth mismatch". The fingerprint now reads the
imports from bytecode; these tests pin that it finds the same imports and survives the race."""
import ast
import gc
import threading
import time
from pathlib import Path

from schemas.engine.lineage import PROJECT_PACKAGES, _project_imports, code_fingerprint

ROOT = Path(__file__).resolve().parents[1]


def _ast_imports(name: str, path: Path) -> set[str]:
    """The reference: the same question answered from the syntax tree."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found |= {base} | {f"{base}.{a.name}" for a in node.names if a.name != "*"}
    return {m for m in found if m.split(".")[0] in PROJECT_PACKAGES}


def test_the_bytecode_scan_finds_what_the_syntax_tree_finds_in_every_project_module():
    checked = 0
    for package in PROJECT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            assert set(_project_imports(name, str(path), path.read_bytes())) == _ast_imports(name, path), path
            checked += 1
    assert checked > 60


def test_lazy_relative_and_from_imports_are_followed(tmp_path):
    source = (b"import os\nfrom . import sibling\nfrom ..engine import stage as s\n"
              b"def f():\n    from model.sft import train\n    import synth.tts\n"
              b"class K:\n    def g(self):\n        from filters import pii\n")
    found = set(_project_imports("schemas.engine.x", "schemas/engine/x.py", source))
    assert {"schemas.engine.sibling", "schemas.engine.stage", "model.sft", "synth.tts", "filters",
            "filters.pii"} <= found
    assert "os" not in found


def test_the_fingerprint_survives_another_thread_parsing_at_the_same_time():
    """A thread that builds syntax trees nonstop, and a GC hook that hands it the GIL during our
    work: with `ast.parse` in the fingerprint, one of the two threads failed within a few calls."""
    stop, other_failures = threading.Event(), []

    def parse_forever():
        while not stop.is_set():
            try:
                ast.parse("x = (a + b) * c if d else [i for i in range(3)]\n" * 20)
            except SystemError as e:  # the race, seen from the other side
                other_failures.append(e)

    def yield_gil(phase, info):
        if phase == "start":
            time.sleep(0)

    first = code_fingerprint(["pipelines.reasoning_data"])  # imports its packages: their imports parse too
    threshold = gc.get_threshold()
    gc.set_threshold(50)
    gc.callbacks.append(yield_gil)
    thread = threading.Thread(target=parse_forever, daemon=True)
    thread.start()
    try:
        prints = {code_fingerprint(["pipelines.reasoning_data"]) for _ in range(15)}
    finally:
        stop.set()
        thread.join()
        gc.callbacks.remove(yield_gil)
        gc.set_threshold(*threshold)
    assert prints == {first}
    assert not other_failures, other_failures[0]
