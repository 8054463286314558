"""The loop from a pretrained base over seeds (bench/README.md, "Loop from a pretrained base"):
runs `pipelines/loop_base.py` one seed at a time (each in its own directory, its own processes),
then prints the table: per round loop and control mean ± sd over seeds, each seed's paired gain
with its SE, the base's and round 0's scores, the ablation arms, and where the CPU went.

    python bench/bench_loop_base.py --seeds 0 1 2 --out runs/loop-base -- --base smollm2 --levels 1 2
    python bench/bench_loop_base.py --seeds 0 1 2 --out runs/loop-base --report-only   # tables from records

Everything after `--` goes to `pipelines/loop_base.py` unchanged. A seed whose record.json is
already there is not rerun (delete its directory to rerun it).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from pipelines.loop_base import table


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default=os.path.join("runs", "loop-base"))
    p.add_argument("--report-only", action="store_true")
    a = p.parse_args(own)
    records = []
    for s in a.seeds:
        d = os.path.join(a.out, f"seed-{s}")
        path = os.path.join(d, "record.json")
        if not os.path.exists(path) and not a.report_only:
            cmd = [sys.executable, os.path.join(REPO, "pipelines", "loop_base.py"), *rest, "--seed", str(s), "--out", d]
            print(" ".join(cmd), file=sys.stderr, flush=True)
            if subprocess.call(cmd) != 0:
                print(f"seed {s} failed", file=sys.stderr)
                continue
        if os.path.exists(path):
            records.append(json.load(open(path)))
    if not records:
        print("no records", file=sys.stderr)
        return 1
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
