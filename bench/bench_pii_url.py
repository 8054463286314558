"""PII in page URLs (`filters/pii_url.py`): how many URLs of clean crawls change, and the cost.

    python bench/bench_pii_url.py                      # committed sample + the bench crawl + Python docs links
    python bench/bench_pii_url.py --python 300 --man 30 --split 4   # bench/bench_web.py's crawl (the default)

URL sets: every WARC-Target-URI of the committed sample (`tests/data/crawl`), of the crawl
`bench/bench_web.py` builds (`tests/crawl_sample.py`), and every absolute http(s) link in
Debian's python3.11-doc HTML (real URLs of many sites, with queries and fragments: a set of
hard negatives). None holds PII, so every changed URL is listed and judged by hand. Cost:
CPU seconds (`time.process_time`) of the stage on each set, per 1,000 URLs, and of its
`redact_strings` on what rejects hold (a record's headers + 2,000 characters; a whole page).
"""
from __future__ import annotations

import argparse
import glob
import html
import os
import re
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

HREF = re.compile(r'href="(https?://[^"]+)"')


def crawl_urls(paths: list[str]) -> list[str]:
    from warcio.archiveiterator import ArchiveIterator
    out = []
    for p in paths:
        with open(p, "rb") as f:
            out += [u for u in (r.rec_headers.get_header("WARC-Target-URI") for r in ArchiveIterator(f)) if u]
    return out


def doc_links(root: str = "/usr/share/doc/python3.11/html") -> list[str]:
    links: set[str] = set()
    for p in glob.glob(f"{root}/**/*.html", recursive=True):
        with open(p, encoding="utf-8", errors="replace") as f:
            links.update(html.unescape(u) for u in HREF.findall(f.read()))
    return sorted(links)


def cpu_per_1000(fn, n: int, min_s: float = 1.0) -> float:
    """CPU seconds of `fn()` (which handles n items) per 1,000 items, repeated to at least min_s."""
    reps, spent = 0, 0.0
    while spent < min_s:
        t = time.process_time()
        fn()
        spent += time.process_time() - t
        reps += 1
    return spent / reps / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", type=int, default=300)
    ap.add_argument("--man", type=int, default=30)
    ap.add_argument("--split", type=int, default=4)
    a = ap.parse_args()
    import pyarrow as pa

    from crawl_sample import build
    from filters.pii_url import UrlPiiScrubber
    t = time.process_time()
    stage = UrlPiiScrubber()
    print(f"stage built in {time.process_time() - t:.2f} CPU-s")
    bench_crawl = tempfile.mkdtemp(prefix="crawl-")
    build(bench_crawl, a.python, a.man, a.split, wet=False)
    sets = {"committed sample": crawl_urls(sorted(glob.glob(os.path.join(ROOT, "tests/data/crawl/*.warc*")))),
            f"bench crawl ({a.python} python, {a.man} man/lang)": crawl_urls(sorted(glob.glob(f"{bench_crawl}/*"))),
            "python3.11-doc links": doc_links()}
    from test_pii_url import FORMS  # positive control: every one must change
    sets["planted forms (tests/test_pii_url.py) x 50"] = [u for u, _ in FORMS] * 50
    print("| URL set | URLs (distinct) | changed | CPU-s per 1,000 URLs |")
    print("|---|---|---|---|")
    changed_all = []
    for name, urls in sets.items():
        table = pa.table({"url": urls})
        out = stage(table)
        changed = [(u, v) for u, v in zip(urls, out.column("url").to_pylist()) if u != v]
        changed_all += changed
        cost = cpu_per_1000(lambda t=table: stage(t), len(urls))
        print(f"| {name} | {len(urls):,} ({len(set(urls)):,}) | {len(changed)} | {cost:.3f} |")
    for u, v in sorted(set(changed_all) - {(u, w) for u, w in FORMS}):
        print(f"changed: {u}\n      -> {v}")
    pages = []
    for p in sorted(glob.glob(f"{bench_crawl}/*"))[:1]:
        from warcio.archiveiterator import ArchiveIterator
        with open(p, "rb") as f:
            for r in ArchiveIterator(f):
                if r.rec_type == "response":
                    pages.append(r.rec_headers.to_str() + r.content_stream().read().decode("utf-8", "replace"))
    heads = [p[:2500] for p in pages]
    per_raw = cpu_per_1000(lambda: stage.redact_strings(heads), len(heads))
    per_page = cpu_per_1000(lambda: stage.redact_strings(pages), len(pages))
    n_links = sum(len(HREF.findall(p)) for p in pages) / max(len(pages), 1)
    print(f"redact_strings: {per_raw:.2f} CPU-s per 1,000 read rejects (headers + 2,000 chars); "
          f"{per_page:.2f} CPU-s per 1,000 whole pages ({len(pages)} pages, {n_links:.0f} absolute links each)")


if __name__ == "__main__":
    main()
