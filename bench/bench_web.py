"""Crawl files to kept documents: our web stages vs DataTrove's on the same WARC files.

    python bench/bench_web.py --python 300 --man 30 --split 4 --rounds 3
    python bench/bench_web.py ... --labels bench/labels/web_labels_100.jsonl   # + agreement with hand labels
    python bench/bench_web.py ... --order c4-first --c4-terminal-punct         # the chain before FineWeb's order
    python bench/bench_web.py --results NEW --baseline OLD --labels ...        # what changed between two runs

Builds a crawl with tests/crawl_sample.py (Debian python3.11-doc HTML, mandoc-rendered man pages
in 7 other languages, plus the non-HTML and broken records a crawl holds), then runs each side in
its own subprocess, interleaved (the order alternates per round), and takes CPU seconds from the
kernel's accounting of that subprocess and everything it waited for (DataTrove's Trafilatura
runs in a sandbox child process). Documents = HTML response records in the files.

DataTrove: WarcReader → Trafilatura (favour_precision, its defaults) → language (see below) →
GopherRepetitionFilter → GopherQualityFilter → C4QualityFilter → FineWebQualityFilter.
Ours: read_warc → HtmlExtractor → LanguageId → GopherFilter → C4LineFilter → FineWebFilter, the
order text_curation.py runs them, in process (no Ray, as DataTrove's local executor with one task);
`--order c4-first` is the chain before it took FineWeb's order (C4 → FineWeb → Gopher). C4 keeps lines
without terminal punctuation on both sides, as FineWeb's recipe (DataTrove's examples/fineweb.py)
runs it; `--c4-terminal-punct` cuts them on both, C4's own recipe and C4QualityFilter's default.
Two substitutions, the same on both sides, because nothing may download at run time: the
language filter is py3langid through `filters.language.detect` (DataTrove's LanguageFilter
downloads a fastText model), and DataTrove's word tokenizer is a regex one (its default NLTK
punkt needs a data download).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

MIN_SCORE = 0.65
LABELS = os.path.join(ROOT, "bench", "labels", "web_labels_100.jsonl")  # bench/data/ is git-ignored


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar(b: int, c: int) -> float:
    """Two-sided exact McNemar test: the chance of a split of the b + c discordant documents at
    least this uneven if either side were as likely to be the right one."""
    from math import comb
    n, k = b + c, min(b, c)
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0


def agreement(labels: dict[str, bool], kept: set[str], docs: set[str]) -> dict:
    """One side's keep/drop against the hand labels of the documents it read: accuracy with its
    Wilson interval, and the confusion counts (positive = the labeller kept it)."""
    urls = [u for u in labels if u in docs]
    c = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for u in urls:
        c[("t" if (u in kept) == labels[u] else "f") + ("p" if u in kept else "n")] += 1
    right = c["tp"] + c["tn"]
    return {"n": len(urls), "accuracy": right / max(len(urls), 1), "ci": wilson(right, len(urls)), **c}


def report_labels(path: str, ours: dict, dt: dict) -> None:
    """Agreement of both sides with a hand-checked sample (labelled blind by someone who did not
    write the rules; the rules were not tuned on it)."""
    import json as _json
    with open(path, encoding="utf-8") as f:
        rows = [_json.loads(line) for line in f if line.strip()]
    labels = {r["url"]: bool(r["keep"]) for r in rows}
    print(f"hand labels: {len(rows)} rows, {len(labels)} URLs, {sum(labels.values())} keep ({path})")
    sides = {}
    print("| side | labelled docs | accuracy [Wilson 95%] | kept, label keep | kept, label drop "
          "| dropped, label keep | dropped, label drop |")
    print("|---|---|---|---|---|---|---|")
    for name, res, docs in (("ours", ours, set(ours["dropped"]) | set(ours["kept"])),
                            ("datatrove", dt, set(dt["dropped"]) | set(dt["kept"]))):
        a = sides[name] = agreement(labels, set(res["kept"]), docs)
        print(f"| {name} | {a['n']} | {a['accuracy']:.3f} [{a['ci'][0]:.3f}, {a['ci'][1]:.3f}] | {a['tp']} | {a['fp']} "
              f"| {a['fn']} | {a['tn']} |")
    both = [u for u in labels if u in set(ours["dropped"]) | set(ours["kept"])]
    o_right = {u for u in both if (u in set(ours["kept"])) == labels[u]}
    d_right = {u for u in both if (u in set(dt["kept"])) == labels[u]}
    only_o, only_d = len(o_right - d_right), len(d_right - o_right)
    print(f"labelled URLs not among the crawl's documents: {len(labels) - len(both)}; "
          f"only ours right {only_o}, only DataTrove right {only_d} (exact McNemar p = {mcnemar(only_o, only_d):.4f})")
    for u in sorted(set(both) - o_right):
        print("   ours wrong:", u, "label keep" if labels[u] else "label drop", "ours:", ours["dropped"].get(u, "kept"))


def run_ours(crawl: str, order: str, terminal_punct: bool) -> dict:
    import glob

    from filters.extract import HtmlExtractor
    from filters.heuristics import GopherFilter
    from filters.language import LanguageId
    from filters.web_lines import C4LineFilter, FineWebFilter
    from schemas.engine.inputs import plan_inputs, read_shard
    from schemas.engine.stage import run_stage
    from schemas.tables import DOCUMENTS, with_columns
    from schemas.warc import WEB_FIELDS
    schema = with_columns(DOCUMENTS, WEB_FIELDS)
    lines = [("c4_lines", C4LineFilter(filter_no_terminal_punct=terminal_punct)), ("fineweb", FineWebFilter())]
    rules = [("heuristics", GopherFilter()), *lines] if order == "fineweb" else [*lines, ("heuristics", GopherFilter())]
    stages = [("extract", HtmlExtractor()), ("language", LanguageId(languages=["en"], min_score=MIN_SCORE)), *rules]
    seconds: Counter = Counter()
    kept, dropped, docs = [], {}, 0
    for shard in plan_inputs(sorted(glob.glob(os.path.join(crawl, "*.warc.gz")))):
        t = time.process_time()
        live, _, _ = read_shard(shard, schema)
        seconds["read"] += time.process_time() - t
        docs += live.num_rows
        for name, fn in stages:
            t = time.process_time()
            live, rejects, _ = run_stage(name, fn, live)
            seconds[name] += time.process_time() - t
            if rejects is not None:
                dropped.update(zip(rejects.column("url").to_pylist(), rejects.column("drop_reason").to_pylist()))
        kept += live.column("url").to_pylist()
    return {"docs": docs, "kept": kept, "dropped": dropped, "stage_cpu": dict(seconds)}


def run_datatrove(crawl: str, logs: str, terminal_punct: bool) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LambdaFilter,
    )
    from datatrove.pipeline.readers import WarcReader
    from datatrove.utils.word_tokenizers import WordTokenizer

    from filters.language import detect

    class RegexTokenizer(WordTokenizer):
        """Words and punctuation apart, as NLTK's treebank tokenizer does, without its data files."""
        def word_tokenize(self, text):
            if os.environ.get("BENCH_DT_WORDS") == "whitespace":  # words as our Gopher counts them
                return text.split()
            return re.findall(r"\w+(?:['’-]\w+)*|[^\w\s]", text)

        def sent_tokenize(self, text):
            return [s for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]

        def span_tokenize(self, text):
            return [m.span() for m in re.finditer(r"\S+", text)]

    seen: dict[str, list[str]] = {}

    def track(name):
        def step(data, rank=0, world_size=1):
            urls = seen.setdefault(name, [])
            for doc in data:
                urls.append(doc.metadata.get("url"))
                yield doc
        return step

    def english(doc):
        code, score = detect(doc.text)
        return code == "en" and score >= MIN_SCORE

    tok = RegexTokenizer("en")
    steps = [WarcReader(crawl, glob_pattern="*.warc.gz"), track("read"), Trafilatura(favour_precision=True),
             track("extract"), LambdaFilter(english), track("language"), GopherRepetitionFilter(language=tok),
             track("gopher_rep"), GopherQualityFilter(language=tok), track("gopher_quality"),
             C4QualityFilter(filter_no_terminal_punct=terminal_punct, language=tok), track("c4"),
             FineWebQualityFilter(language=tok), track("fineweb")]
    LocalPipelineExecutor(pipeline=steps, tasks=1, workers=1, logging_dir=logs, skip_completed=False).run()
    order = ["read", "extract", "language", "gopher_rep", "gopher_quality", "c4", "fineweb"]
    dropped = {}
    for before, after in zip(order, order[1:]):
        for url in set(seen.get(before, [])) - set(seen.get(after, [])):
            dropped.setdefault(url, after)
    step_seconds, reasons = {}, {}
    stats = os.path.join(logs, "stats.json")
    if os.path.exists(stats):
        with open(stats) as f:
            for s in json.load(f):
                name = s["name"].split(":")[-1].strip()
                if s.get("time_stats"):
                    step_seconds[name] = round(s["time_stats"].get("total", 0.0), 3)
                reasons.update({f"{name}:{k[len('dropped_'):]}": v for k, v in s.get("stats", {}).items()
                                if k.startswith("dropped_")})
    return {"docs": len(seen.get("read", [])), "kept": seen.get("fineweb", []), "dropped": dropped,
            "step_wall": step_seconds, "reasons": reasons}


def side(name: str, crawl: str, out: str, order: str, terminal_punct: bool) -> None:
    result = run_ours(crawl, order, terminal_punct) if name == "ours" \
        else run_datatrove(crawl, tempfile.mkdtemp(prefix="dt-logs-"), terminal_punct)
    with open(out, "w") as f:
        json.dump(result, f)


def cpu_of(name: str, crawl: str, out: str, chain: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, os.path.abspath(__file__), "--side", name, "--crawl", crawl, "--out", out, *chain],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", type=int, default=300)
    ap.add_argument("--man", type=int, default=30)
    ap.add_argument("--split", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--crawl", default=None, help="existing folder of *.warc.gz (else one is built)")
    ap.add_argument("--dt-words", choices=["regex", "whitespace"], default="regex",
                    help="DataTrove's words: punctuation apart as NLTK's tokenizer (its default), or split on "
                         "whitespace as our Gopher rules count them (to see what else differs)")
    ap.add_argument("--order", choices=["fineweb", "c4-first"], default="fineweb",
                    help="our chain: Gopher → C4 → FineWeb (FineWeb's, text_curation.py's) or C4 → FineWeb → Gopher")
    ap.add_argument("--c4-terminal-punct", action="store_true",
                    help="both sides' C4 cuts lines without terminal punctuation (C4's recipe; FineWeb's keeps them)")
    ap.add_argument("--labels", default=None,
                    help=f"hand labels (url, keep, why) to score both sides against (e.g. {os.path.relpath(LABELS)})")
    ap.add_argument("--results", default=None,
                    help="folder of a finished run (printed as 'results:'): only score its kept sets against --labels")
    ap.add_argument("--baseline", default=None,
                    help="with --results: an earlier run's folder; compare our kept sets, reasons and label agreement")
    ap.add_argument("--side", choices=["ours", "datatrove"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.side:
        return side(a.side, a.crawl, a.out, a.order, a.c4_terminal_punct)
    if a.results:  # score a finished run's kept sets against the labels, without running again
        ours, dt = last_results(a.results)
        if a.baseline:
            return compare(a.labels or LABELS, last_results(a.baseline), (ours, dt))
        return report_labels(a.labels or LABELS, ours, dt)
    os.environ["BENCH_DT_WORDS"] = a.dt_words
    crawl = a.crawl
    if crawl is None:
        from crawl_sample import build
        crawl = tempfile.mkdtemp(prefix="crawl-")
        build(crawl, a.python, a.man, a.split, wet=False)
    work = tempfile.mkdtemp(prefix="bench-web-")
    print(f"results: {work}", flush=True)
    cpu: dict[str, list[float]] = {"ours": [], "datatrove": []}
    chain = ["--order", a.order] + ["--c4-terminal-punct"] * a.c4_terminal_punct
    results = {}
    for r in range(a.rounds):
        for name in (("ours", "datatrove") if r % 2 == 0 else ("datatrove", "ours")):
            out = os.path.join(work, f"{name}-{r}.json")
            cpu[name].append(cpu_of(name, crawl, out, chain))
            with open(out) as f:
                results[name] = json.load(f)
    report(crawl, cpu, results)
    if a.labels:
        report_labels(a.labels, results["ours"], results["datatrove"])


def last_results(folder: str) -> tuple[dict, dict]:
    """Both sides' results of a finished run's last round."""
    last = max(int(f.split("-")[-1].split(".")[0]) for f in os.listdir(folder) if f.startswith("ours-"))
    with open(os.path.join(folder, f"ours-{last}.json")) as f, \
            open(os.path.join(folder, f"datatrove-{last}.json")) as g:
        return json.load(f), json.load(g)


def compare(labels_path: str, before: tuple[dict, dict], after: tuple[dict, dict]) -> None:
    """Our chain before and after a change on the same crawl: label agreement of each (McNemar on the
    labelled pages whose verdict changed), rejects by reason, Jaccard with DataTrove, and every page
    whose verdict changed, with the reason it was dropped for."""
    with open(labels_path, encoding="utf-8") as f:
        labels = {r["url"]: bool(r["keep"]) for r in map(json.loads, filter(str.strip, f))}
    (old, old_dt), (new, new_dt) = before, after
    docs = set(new["dropped"]) | set(new["kept"])
    print("| chain | labelled docs | accuracy [Wilson 95%] | kept, label keep | kept, label drop "
          "| dropped, label keep | dropped, label drop | kept | Jaccard with DataTrove (its kept) |")
    print("|---|---|---|---|---|---|---|---|---|")
    right = {}
    for name, res, dt in (("before", old, old_dt), ("after", new, new_dt)):
        a = agreement(labels, set(res["kept"]), docs)
        right[name] = {u for u in labels if u in docs and (u in set(res["kept"])) == labels[u]}
        k, d = set(res["kept"]), set(dt["kept"])
        print(f"| {name} | {a['n']} | {a['accuracy']:.3f} [{a['ci'][0]:.3f}, {a['ci'][1]:.3f}] | {a['tp']} | {a['fp']} "
              f"| {a['fn']} | {a['tn']} | {len(k)} | {len(k & d) / max(len(k | d), 1):.3f} ({len(d)}) |")
    only_new, only_old = len(right["after"] - right["before"]), len(right["before"] - right["after"])
    print(f"labelled pages only after right {only_new}, only before right {only_old} "
          f"(exact McNemar p = {mcnemar(only_new, only_old):.4f})")
    for name, res in (("before", old), ("after", new)):
        print(f"our rejects by reason, {name}:", dict(Counter(res["dropped"].values()).most_common()))
    for u in sorted(docs):
        was, now = old["dropped"].get(u, "kept"), new["dropped"].get(u, "kept")
        if (was == "kept") != (now == "kept"):
            label = "unlabelled" if u not in labels else "label keep" if labels[u] else "label drop"
            print(f"   {label}: {u} before: {was} after: {now}")


def report(crawl: str, cpu: dict[str, list[float]], results: dict) -> None:
    ours, dt = results["ours"], results["datatrove"]
    med = {k: sorted(v)[len(v) // 2] for k, v in cpu.items()}
    print(f"crawl: {crawl}; HTML documents: ours {ours['docs']}, DataTrove {dt['docs']}")
    print("| side | CPU-s (median; all rounds) | docs/CPU-s | kept |")
    print("|---|---|---|---|")
    for name, res in (("ours", ours), ("datatrove", dt)):
        print(f"| {name} | {med[name]:.1f} ({', '.join(f'{x:.1f}' for x in cpu[name])}) "
              f"| {res['docs'] / med[name]:.1f} | {len(res['kept'])} |")
    print(f"ours / DataTrove docs per CPU-s: {(ours['docs'] / med['ours']) / (dt['docs'] / med['datatrove']):.2f}x")
    print("our stage CPU-s (last round):", {k: round(v, 2) for k, v in ours["stage_cpu"].items()})
    print("DataTrove step wall s (its stats, last round):", dt.get("step_wall"))
    print("our reasons:", dict(Counter(ours["dropped"].values()).most_common()))
    print("DataTrove reasons:", dt.get("reasons"))
    a, b = set(ours["kept"]), set(dt["kept"])
    print(f"kept-URL Jaccard: {len(a & b) / max(len(a | b), 1):.3f} (both {len(a & b)}, only ours {len(a - b)}, "
          f"only DataTrove {len(b - a)})")
    print("kept only by DataTrove, our reason:", dict(Counter(ours["dropped"].get(u, "?") for u in b - a)))
    print("kept only by ours, DataTrove's dropping step:", dict(Counter(dt["dropped"].get(u, "?") for u in a - b)))
    for u in sorted(b - a)[:5] + sorted(a - b)[:5]:
        print("  ", u, "ours:", ours["dropped"].get(u, "kept"), "datatrove:", dt["dropped"].get(u, "kept"))


if __name__ == "__main__":
    main()
