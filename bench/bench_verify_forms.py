"""The answer verifier on forms it was not written for (issue 27): precision / recall of
`correct`, the undecided rate, Wilson 95% intervals, overall and per category, on the set
`bench/verify_eval_set.py` generates (labels by construction).

    python bench/bench_verify_forms.py                        # the dev split (seed 1)
    python bench/bench_verify_forms.py --split heldout        # the held-out split (seed 2): score once
    python bench/bench_verify_forms.py --verify-module PATH   # another verify.py (e.g. git's original)
    python bench/bench_verify_forms.py --markdown             # a table for bench/README.md
    python bench/bench_verify_forms.py --errors               # list the misjudged cases
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bench_verify import _load_module, evaluate, scores
from verify_eval_set import generate

SPLITS = {"dev": 1, "heldout": 2}


def _fmt(p, ci):
    return "—" if p is None else f"{p:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def markdown(table: dict) -> str:
    lines = ["| category | n / correct | precision | recall | undecided | false `correct` |",
             "|---|---:|---|---|---|---:|"]
    for k, s in table.items():
        name = "**all**" if k == "all" else k
        und = f"{s['undecided']:.3f} [{s['undecided_ci'][0]:.3f}, {s['undecided_ci'][1]:.3f}]"
        lines.append(f"| {name} | {s['n']} / {s['positives']} | {_fmt(s['precision'], s['precision_ci'])} | "
                     f"{_fmt(s['recall'], s['recall_ci'])} | {und} | {s['fp']} |")
    return "\n".join(lines)


def by_category(rows: list[dict]) -> dict:
    """Scores overall, per category ("mixed") and per subcategory ("mixed:misread"); a row is
    counted once in each group it belongs to."""
    groups = defaultdict(list)
    for r in rows:
        for key in {r["class"].split(":")[0], r["class"]}:
            groups[key].append(r)
    return {"all": scores(rows), **{k: scores(v) for k, v in sorted(groups.items())}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=sorted(SPLITS), default="dev")
    ap.add_argument("--n", type=int, default=40, help="draws per category (see verify_eval_set.generate)")
    ap.add_argument("--verify-module", help="path to a verify.py to evaluate instead of synth.verify")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--errors", action="store_true", help="print every case whose verdict is not its label")
    ap.add_argument("--timeout", type=float, default=5.0)
    a = ap.parse_args()
    module = _load_module(a.verify_module) if a.verify_module else None
    cases = generate(SPLITS[a.split], a.n)
    t0 = time.perf_counter()
    _, rows = evaluate(cases, module, a.timeout)
    seconds = time.perf_counter() - t0
    table = by_category(rows)
    if a.errors:
        for r in rows:
            if r["verdict"] != r["label"]:
                print(json.dumps({k: r[k] for k in ("class", "verdict", "label", "completion", "reference", "source")}))
    if a.markdown:
        print(markdown(table))
    else:
        print(json.dumps(table, indent=1))
    print(f"{a.split} (seed {SPLITS[a.split]}): {len(cases)} cases, {seconds:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
