"""The whole text-curation pipeline, and near-dedup memory at two corpus sizes.

    python bench/bench_pipeline.py --corpus bench/data/corpus-100k

1. pipelines/text_curation.py in-process (one core) on 100k documents without PII and on
   `--pii-docs` documents with it: documents per CPU-second and peak RSS of the process.
2. near-dedup alone (signatures + clustering, in-process) on the first half and on all of the
   corpus: peak RSS and CPU seconds, to show how its memory grows with the corpus.
Results go to bench/results/pipeline.json.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(cmd: list[str]) -> dict:
    """Run a command; its CPU seconds and peak RSS from the kernel's accounting of the child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return {"cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "peak_rss_mb": after.ru_maxrss / 1024, "stdout": proc.stdout.strip().splitlines()[-1:],
            "stderr_tail": proc.stderr.strip().splitlines()[-2:]}


DEDUP = """
import json, sys, time
sys.path.insert(0, {root!r})
import os
from schemas.engine.inputs import plan_inputs, read_shard
from filters.dedup import Dedup
from schemas.tables import DOCUMENTS
params = dict(num_perm=128, ngram=5, threshold=0.8)
sigs = []
for i, shard in enumerate(plan_inputs({files!r}, None, 1 << 26, 100000)):
    rows = read_shard(shard, DOCUMENTS)[0]
    rows = rows.append_column("_rowkey", [[f"{{shard.key}}:{{j}}" for j in range(rows.num_rows)]])
    sigs.append(os.path.join({work!r}, f"{{i}}.parquet"))
    import pyarrow.parquet as pq; pq.write_table(Dedup.signatures(rows, **params), sigs[-1])
print(json.dumps(Dedup.decide(sigs, os.path.join({work!r}, "decisions.parquet"), "local", **params)))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=os.path.join(ROOT, "bench/data/corpus-100k"))
    ap.add_argument("--pii-docs", type=int, default=2000)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/pipeline.json"))
    a = ap.parse_args()
    files = sorted(glob.glob(os.path.join(a.corpus, "*.jsonl")))
    n_docs = sum(1 for f in files for _ in open(f, encoding="utf-8"))
    results: dict = {}
    for label, n_files in (("half", len(files) // 2), ("all", len(files))):
        docs = sum(1 for f in files[:n_files] for _ in open(f, encoding="utf-8"))
        code = DEDUP.format(root=ROOT, files=files[:n_files], work=tempfile.mkdtemp())
        r = child([sys.executable, "-c", code])
        r["docs"] = docs
        r["summary"] = json.loads(r.pop("stdout")[0])
        results[f"dedup_{label}"] = r
        print(f"dedup {docs:,} docs: {r['cpu_s']:.0f} CPU-s, peak {r['peak_rss_mb']:.0f} MB, "
              f"{r['summary']['exact_duplicates']} exact + {r['summary']['near_duplicates']} near", flush=True)
    wh = tempfile.mkdtemp()
    cmd = [sys.executable, "pipelines/text_curation.py", "--executor", "local", "--quiet", "--warehouse", wh]
    r = child(cmd + ["--input", *files, "--no-pii", "--output", "bench_nopii"])
    r["docs"] = n_docs
    results["pipeline_no_pii"] = r
    print(f"pipeline without PII, {n_docs:,} docs: {n_docs / r['cpu_s']:.0f} docs/CPU-s, "
          f"peak {r['peak_rss_mb']:.0f} MB  {r['stdout']}", flush=True)
    sub = os.path.join(wh, "pii_input.jsonl")
    with open(sub, "w", encoding="utf-8") as out, open(files[0], encoding="utf-8") as f:
        for _, line in zip(range(a.pii_docs), f):
            out.write(line)
    r = child(cmd + ["--input", sub, "--output", "bench_pii"])
    r["docs"] = a.pii_docs
    results["pipeline_with_pii"] = r
    print(f"pipeline with PII, {a.pii_docs:,} docs: {a.pii_docs / r['cpu_s']:.1f} docs/CPU-s, "
          f"peak {r['peak_rss_mb']:.0f} MB  {r['stdout']}", flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
