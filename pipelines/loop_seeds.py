"""The multi-seed runner: each seed in its own process and warehouse, then the table and plot over them.

A process per seed (not a thread): each seeds its own RNGs and sets its own torch thread count, so
a seed's numbers are those of the same seed run alone with the same flags.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from pipelines.loop_bench import log
from pipelines.loop_report import (
    ablation_summary,
    per_seed_lines,
    plot_rounds,
    print_ablation_summary,
    print_summary,
    summarize,
)

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reasoning_loop.py")


def seed_argv(argv: list[str], workers: int | None) -> list[str]:
    """argv without --seeds/--jobs/--warehouse and their values; one process a seed by default."""
    rest, skip = [], False
    for x in argv:
        if skip and not x.startswith("--"):
            continue
        skip = x in ("--seeds", "--jobs", "--warehouse")
        if not skip:
            rest.append(x)
    if workers is None:
        rest += ["--workers", "1"]  # the seeds already share the cores
    return rest


def run_seeds(argv: list[str], seeds: list[int], jobs: int, warehouse: str, run: str | None,
              workers: int | None) -> int:
    """Each seed in <warehouse>/seed-S, `jobs` at a time; then the table, the per-seed lines and the plot."""
    rest = seed_argv(argv, workers)
    wh = os.path.abspath(warehouse)
    procs: list[tuple[int, subprocess.Popen]] = []
    records: list[dict] = []
    failed: list[int] = []
    pending = list(seeds)
    while pending or procs:
        while pending and len(procs) < jobs:
            s = pending.pop(0)
            cmd = [sys.executable, SCRIPT, *rest, "--seed", str(s), "--warehouse", f"{wh}/seed-{s}"]
            log(f"seed {s}: {' '.join(cmd[1:])}")
            procs.append((s, subprocess.Popen(cmd)))
        s, p = procs.pop(0)
        if p.wait() != 0:
            failed.append(s)
    for s in seeds:
        path = f"{wh}/seed-{s}/_loop/{run or f'loop-s{s}'}/record.json"
        if os.path.exists(path) and s not in failed:
            with open(path) as f:
                records.append(json.load(f))
    if failed or not records:
        log(f"seeds failed: {failed}")
        return 1
    rows = summarize(records)
    print_summary(rows)
    print_ablation_summary(records)
    print(per_seed_lines(records))
    out = os.path.join(wh, "_loop")
    os.makedirs(out, exist_ok=True)
    png = plot_rounds(records, os.path.join(out, "seeds.png"))
    with open(os.path.join(out, "seeds.json"), "w") as f:
        json.dump({"seeds": list(seeds), "rounds": rows, "ablation": ablation_summary(records),
                   "records": [os.path.join(wh, f"seed-{s}") for s in seeds]},
                  f, indent=1)
    print(f"summary: {os.path.join(out, 'seeds.json')}  plot: {png}")
    return 0
