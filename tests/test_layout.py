"""The packages import one way: schemas (with the engine) ← model ← synth ← filters ← pipelines.

Read from the source with `ast` (imports inside functions count too: a lazy import is still a
dependency), so a cycle cannot come back unnoticed."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["schemas", "model", "synth", "filters", "pipelines"]  # each may import only those before it


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_packages_import_one_way():
    bad = []
    for rank, package in enumerate(LAYERS):
        allowed = set(LAYERS[:rank + 1])
        for path in sorted((ROOT / package).rglob("*.py")):
            for target in _imports(path) & set(LAYERS):
                if target not in allowed:
                    bad.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_engine_imports_no_stage():
    engine = ROOT / "schemas" / "engine"
    bad = [f"{p.relative_to(ROOT)} imports {t}" for p in sorted(engine.rglob("*.py"))
           for t in _imports(p) & {"model", "synth", "filters", "pipelines"}]
    assert not bad, bad
