"""Shared test helpers: a small real corpus and a demo-pipeline run."""
import json
import os

from filters.text_basic import length_filter, normalize_text
from pipelines.demo_corpus import write_demo_corpus
from pipelines.runner import Pipeline, RunOptions, run
from schemas.tables import DOCUMENTS


def corpus(tmp_path, n_files=4, limit=200):
    d = os.path.join(str(tmp_path), "corpus")
    write_demo_corpus(d, n_files=n_files, limit=limit)
    return d


def demo_pipeline(min_words=5, stages=None):
    stages = stages if stages is not None else [normalize_text, length_filter.configure(min_words=min_words)]
    return Pipeline("demo", DOCUMENTS, DOCUMENTS, stages)


def run_demo(warehouse, inputs, executor="local", min_words=5, **kw):
    opts = RunOptions(inputs=[inputs] if isinstance(inputs, str) else inputs, output=kw.pop("output", "docs"),
                      warehouse=warehouse, executor=executor, progress=False, **kw)
    return run(demo_pipeline(min_words), opts)


def jsonl(path, docs, extra=b""):
    with open(path, "wb") as f:
        for d in docs:
            f.write(json.dumps(d).encode() + b"\n")
        f.write(extra)
    return str(path)
