"""Who made a table version: run ids, config hashes, the code commit."""
from __future__ import annotations

import dis
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Iterable, Iterator

from schemas.ids import row_id

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("pipelines", "filters", "synth", "schemas", "model")
# The engine code every run's rows pass through, whatever its stages.
ENGINE_MODULES = ("schemas.engine.runner", "schemas.engine.inputs", "schemas.engine.stage", "schemas.tables",
                  "schemas.validate", "schemas.ids", "schemas.stats")


def config_hash(config: dict[str, Any]) -> str:
    return row_id(json.dumps(config, sort_keys=True, default=str))[:16]


def git_commit() -> str:
    """HEAD of the code's checkout (`+dirty` when it has changes); env CURATE_GIT_COMMIT wins.

    Under `ray job submit` the uploaded working dir has no .git: set CURATE_GIT_COMMIT there.
    """
    if os.environ.get("CURATE_GIT_COMMIT"):
        return os.environ["CURATE_GIT_COMMIT"]
    try:
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def code_fingerprint(modules: Iterable[str]) -> str:
    """sha256 over the source of `modules`, the engine, and every project module they import,
    transitively: a run key that includes it never reuses shards written by other code."""
    h = hashlib.sha256()
    for name, source in sorted(_sources(tuple(sorted({*modules, *ENGINE_MODULES}))).items()):
        h.update(name.encode() + b"\0" + source + b"\0")
    return h.hexdigest()[:16]


def _sources(roots: tuple[str, ...]) -> dict[str, bytes]:
    """Read afresh each run (a few dozen files): a cache would miss an edit made in-process."""
    out: dict[str, bytes] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        path = _module_file(name)
        if path is None:
            continue
        source = Path(path).read_bytes()
        out[name] = source
        todo.extend(_project_imports(name, path, source))
    return out


def _module_file(name: str) -> str | None:
    mod = sys.modules.get(name)
    if mod is not None and getattr(mod, "__file__", None):
        return mod.__file__  # also `__main__` (a pipeline script's own stages)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def _project_imports(name: str, path: str, source: bytes) -> list[str]:
    """Modules named by the import statements of `source`, function-level (lazy) ones included.

    Read from the compiled bytecode, not from `ast.parse`: on CPython 3.11 `ast.parse` races
    with any other thread building an AST at the same time (a traceback printed by a server
    thread does) and fails with "AST constructor recursion depth mismatch" (CPython gh-106905).
    """
    found = []
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    for code in _code_objects(compile(source, path, "exec", dont_inherit=True)):
        consts: list[Any] = [None, None]  # the level and the from-list, loaded just before IMPORT_NAME
        for ins in dis.get_instructions(code):
            if ins.opname == "IMPORT_NAME":
                level, fromlist = consts[-2:]
                base = ins.argval
                if level:
                    parent = package.rsplit(".", level - 1)[0] if level > 1 else package
                    base = f"{parent}.{base}" if base else parent
                found.append(base)
                found += [f"{base}.{a}" for a in fromlist or () if a != "*"]  # `from pkg import module`
            consts.append(ins.argval if ins.opname in ("LOAD_CONST", "LOAD_SMALL_INT") else None)
    return [m for m in found if m.split(".")[0] in PROJECT_PACKAGES]


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)
