"""A small, real demo corpus that needs no download: the Python standard library's docstrings.

Docstrings are real English technical prose of varied length; the corpus also carries the
bad input every pipeline must survive (a malformed JSON line, non-UTF-8 bytes, an empty
text, a wrong-typed field, one-word fragments), so a demo run shows rejects with reasons.
"""
from __future__ import annotations

import importlib
import inspect
import json
import os

MODULES = ["argparse", "asyncio", "collections", "contextlib", "csv", "dataclasses", "datetime",
           "decimal", "email", "fractions", "functools", "gzip", "heapq", "http.client", "inspect",
           "io", "itertools", "json", "logging", "math", "os", "pathlib", "pickle", "random", "re",
           "shutil", "socket", "sqlite3", "statistics", "string", "subprocess", "tarfile", "textwrap",
           "threading", "typing", "unittest", "urllib.parse", "uuid", "zipfile", "zlib"]


def docstrings(limit: int | None = None) -> list[dict[str, str]]:
    """(name, docstring) of modules, classes and functions, in a fixed order."""
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for modname in MODULES:
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        objs = [(modname, mod)] + sorted(
            (f"{modname}.{n}", o) for n, o in vars(mod).items()
            if not n.startswith("_") and (inspect.isclass(o) or inspect.isfunction(o))
            and getattr(o, "__module__", "") == mod.__name__)
        for name, obj in objs:
            doc = inspect.getdoc(obj)
            if doc and doc not in seen:
                seen.add(doc)
                out.append({"id": name, "text": doc, "source": "python-stdlib-docstrings"})
                if limit and len(out) >= limit:
                    return out
    return out


BAD_LINES = [
    b'{"id": "bad-json", "text": "an unterminated object"\n',
    b'{"id": "bad-utf8", "text": "caf\xe9 cr\xe8me"}\n',
    b'{"id": "empty", "text": "   "}\n',
    b'{"id": "wrong-type", "text": 12345}\n',
    b'["not", "an", "object"]\n',
    b'{"id": "no-text", "title": "a row without its text column"}\n',
]


def write_demo_corpus(directory: str, n_files: int = 4, limit: int | None = None) -> list[str]:
    """Write the corpus as `n_files` JSONL files (bad lines in the first); return their paths."""
    os.makedirs(directory, exist_ok=True)
    docs = docstrings(limit)
    paths = []
    for i in range(n_files):
        path = os.path.join(directory, f"stdlib-docs-{i:02d}.jsonl")
        with open(path, "wb") as f:
            for doc in docs[i::n_files]:
                f.write(json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n")
            if i == 0:
                f.writelines(BAD_LINES)
        paths.append(path)
    return paths


if __name__ == "__main__":
    import sys
    print("\n".join(write_demo_corpus(sys.argv[1] if len(sys.argv) > 1 else "demo_corpus")))
