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


def test_every_architecture_reference_names_a_section_that_exists():
    """Docstrings cite ARCHITECTURE.md by heading; a renamed heading must not leave them dangling,
    and the design document outside the repository is never cited."""
    import re

    headings = {line.lstrip("#").strip() for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines()
                if line.startswith("#")}
    cited, outside = [], []
    for package in [*LAYERS, "tests", "bench"]:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            cited += [(path.name, h) for h in re.findall(r'ARCHITECTURE\.md,\s+"([^"]+)"', text)]
            if re.search(r"DESIGN(\.md)? §", text):
                outside.append(path.name)
    assert cited, "no docstring cites ARCHITECTURE.md"
    assert not [c for c in cited if c[1] not in headings], [c for c in cited if c[1] not in headings]
    assert not outside, f"cite ARCHITECTURE.md instead of the design notes outside the repo: {outside}"


def test_every_engine_module_is_on_the_maps():
    """ARCHITECTURE.md's engine table and the engine package's docstring list every module of
    schemas/engine/, so a reader finds where each part lives (and a new module is placed)."""
    import schemas.engine as engine

    arch = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    modules = sorted(p.name for p in (ROOT / "schemas" / "engine").glob("*.py"))
    assert not [m for m in modules if f"`{m}`" not in arch], "add to ARCHITECTURE.md's engine table"
    assert not [m for m in modules if m != "__init__.py" and m not in (engine.__doc__ or "")], \
        "add to schemas/engine/__init__.py's docstring"
