"""Every third-party module the repository imports comes from a pinned requirement.

A package installed by hand into one machine's .venv makes its tests pass there and fail on a
fresh clone (openai, used by the interop tests, was such a package). This maps each top-level
import in the project, its tests and its benchmarks to the distribution that provides it here,
and fails when that distribution is pinned in none of the requirement files.
"""

import ast
import importlib.metadata as md
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
REQS = ["requirements.lock", "requirements-nodeps.txt", "requirements-interop.txt", "bench/requirements.txt"]
OWN = {"schemas", "model", "synth", "filters", "pipelines", "tests", "bench"}
# Modules a test writes into a temporary directory and imports from there.
WRITTEN_BY_TESTS = {"picky_stage"}
OPTIONAL = ("ImportError", "ModuleNotFoundError", "Exception")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned() -> set[str]:
    names = set()
    for req in REQS:
        path = ROOT / req
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            m = re.match(r"([A-Za-z0-9_.\-]+)", line)
            if m and not line.startswith("-"):
                names.add(norm(m.group(1)))
    return names


def imports(path: pathlib.Path) -> set[str]:
    try:
        tree = ast.parse(path.read_text(), str(path))
    except SyntaxError:
        return set()
    optional = set()  # imports guarded by `except ImportError` are optional engines, skipped when absent
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            optional |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    tops = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            tops |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return tops


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return handler.type is None or any(isinstance(k, ast.Name) and k.id in OPTIONAL for k in kinds)


def main() -> int:
    files = [p for d in sorted(OWN) for p in (ROOT / d).rglob("*.py")] + list((ROOT / ".ci").glob("*.py"))
    local = {p.stem for p in files} | OWN | WRITTEN_BY_TESTS
    dists = md.packages_distributions()
    have = pinned()
    missing: dict[str, set[str]] = {}
    for path in files:
        for top in imports(path):
            if top in sys.stdlib_module_names or top in local or top == "__future__":
                continue
            owners = {norm(d) for d in dists.get(top, [])} or ({norm(top)} & have)
            if not owners:
                missing.setdefault(f"{top} (not installed here)", set()).add(str(path.relative_to(ROOT)))
            elif not owners & have:
                missing.setdefault(f"{top} (from {', '.join(sorted(owners))})", set()).add(str(path.relative_to(ROOT)))
    for what, where in sorted(missing.items()):
        print(f"check-imports: {what} is pinned in none of {', '.join(REQS)}; imported by {', '.join(sorted(where))}")
    if missing:
        return 1
    print(f"check-imports: every third-party import in {len(files)} files comes from a pinned requirement")
    return 0


if __name__ == "__main__":
    sys.exit(main())
