"""Demo: curate a small real corpus (Python docstrings) into a versioned documents table.

    python pipelines/demo.py                       # embedded Ray, ./warehouse
    ray job submit --working-dir . -- python pipelines/demo.py --warehouse /abs/path/warehouse

Each run publishes one new version of `documents_demo` (and `documents_demo_rejects`) and
prints its accounting and statistics; run it twice and `curate diff documents_demo@A B`.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

from filters.text_basic import length_filter, normalize_text
from pipelines.demo_corpus import write_demo_corpus
from pipelines.script import common_parser, main
from schemas.engine.runner import Pipeline
from schemas.filesystem import work_dir
from schemas.tables import DOCUMENTS


def build(args):
    inputs = args.inputs
    if not inputs:
        corpus = os.path.join(work_dir(args.warehouse), "_demo_input")
        write_demo_corpus(corpus, n_files=args.demo_files)
        inputs = [corpus]
    stages = [normalize_text, length_filter.configure(min_words=args.min_words, max_words=args.max_words)]
    return Pipeline("demo", DOCUMENTS, DOCUMENTS, stages), inputs


def parser():
    p = common_parser(__doc__.splitlines()[0], default_output="documents_demo")
    p.add_argument("--min-words", type=int, default=5, help="shorter documents are rejected as too_short")
    p.add_argument("--max-words", type=int, default=5000, help="longer documents are rejected as too_long")
    p.add_argument("--demo-files", type=int, default=4, help="files of the generated demo corpus")
    return p


if __name__ == "__main__":
    sys.exit(main(build, parser()))
