"""PII and secrets on realistic text (issue 27): "removed everywhere" per type and form, hard
negatives altered, and speed against presidio's plain loop, on bench/pii_realistic_set.py.

    python bench/bench_pii_real.py --seed 0 --per-type 160 --negatives 600 --speed-docs 200 --repeats 3
    python bench/bench_pii_real.py --seed 1000 ...   # the held-out split: score it once, at the end

Systems: "ours" is `PiiScrubber` as pipelines/text_curation.py builds it (bench/bench_pii.py's
`Ours`); "presidio-loop" is AnalyzerEngine.analyze + AnonymizerEngine.anonymize per document
(`--loop-accuracy` also scores it; it is slow). `--load RESULT.json` adds the accuracy of an
earlier run (the baseline) to the tables. Results: bench/results/pii_real_<seed>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.bench_pii import Ours, PresidioLoop, interleaved_speed
from bench.pii_realistic_set import build, format_forms, format_types, score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-type", type=int, default=160)
    ap.add_argument("--negatives", type=int, default=600)
    ap.add_argument("--speed-docs", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loop-accuracy", action="store_true", help="also score presidio's plain loop")
    ap.add_argument("--load", action="append", default=[], help="NAME=RESULT.json of an earlier run to compare")
    ap.add_argument("--label", default="ours")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    data = build(a.seed, a.per_type, a.negatives)
    docs = data["docs"]
    texts = [d["text"] for d in docs]
    print(f"set: seed {a.seed}, {len(docs)} docs ({sum(map(len, texts)) / len(texts):.0f} chars on average), "
          f"{sum(len(d['gold']) for d in docs)} values, {sum(d['negative'] is not None for d in docs)} "
          f"hard-negative docs", flush=True)
    ours = Ours()
    systems = {a.label: ours}
    out = {"seed": a.seed, "docs": len(docs), "accuracy": {}, "speed": {}}
    t0 = time.process_time()
    out["accuracy"][a.label] = score(ours.predict(texts), docs)
    print(f"  accuracy of {a.label}: {time.process_time() - t0:.0f} CPU-s", flush=True)
    loop = None
    if a.speed_docs or a.loop_accuracy:
        loop = PresidioLoop()
        systems["presidio-loop"] = loop
    if a.loop_accuracy:
        t0 = time.process_time()
        out["accuracy"]["presidio-loop"] = score(loop.predict(texts), docs)
        print(f"  accuracy of presidio-loop: {time.process_time() - t0:.0f} CPU-s", flush=True)
    if a.speed_docs:
        out["speed"] = interleaved_speed(systems, texts[:a.speed_docs], a.repeats)
    out_path = a.out or os.path.join(ROOT, f"bench/results/pii_real_{a.label}_{a.seed}.json")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
    tables = dict(out["accuracy"])
    for spec in a.load:
        name, path = spec.split("=", 1)
        tables[name] = json.load(open(path))["accuracy"][name.split("@")[0]] if "@" in name else \
            next(iter(json.load(open(path))["accuracy"].values()))
    print(format_types(tables))
    print()
    print(format_forms(tables))
    acc = out["accuracy"][a.label]
    print("\nnegatives by category:", {k: f"{v['altered']:.2f} ({v['n']})" for k, v in acc["negatives"].items()})
    print("\ntop false positives on hard negatives:")
    for k, c in acc["negative_false_positives"][:25]:
        print(f"  {c:3d}  {k!r}")
    print("\nfalse positives on positive docs:", acc["positive_doc_false_positives"]["count"])
    for k, c in acc["positive_doc_false_positives"]["top"][:15]:
        print(f"  {c:3d}  {k!r}")
    print("\nmisses:")
    for t, ms in acc["misses"].items():
        print(f" {t}:")
        for m in ms[:8]:
            print("    ", m)
    if out["speed"]:
        base = out["speed"]["presidio-loop"]["docs_per_cpu_s"]
        for name, v in out["speed"].items():
            print(f"{name:16s} {v['docs_per_cpu_s']:7.1f} docs/CPU-s (runs {', '.join(f'{x:.1f}' for x in v['runs'])})"
                  f"  = {v['docs_per_cpu_s'] / base:.2f}x the plain loop")


if __name__ == "__main__":
    main()
