"""Executors side by side: the stage-level Ray DAG vs the shard-chain executor vs an in-process loop.

    python bench/bench_executor.py --pipeline text --docs 3000 6000 --repeats 3
    python bench/bench_executor.py --pipeline speech --queries 96 192 --repeats 3

The same pipeline script on the same input, three ways, interleaved and rotated (a, b, c,
b, c, a, ...) so the shared machine's noise falls on all of them alike:
- `loop`:  `--executor local`, the stages called shard after shard in one process;
- `chain`: `--executor ray --fuse all`, one Ray operator running the whole stage chain per
           shard (the executor before the DAG);
- `dag`:   `--executor ray`, the default: an operator per run of adjacent stages with the same
           resources, streaming;
- `unfused` (only when asked for): `--executor ray --fuse none`, strictly one operator per stage.
Per run: wall seconds, CPU seconds of the whole process tree (driver, raylet, workers;
sampled every 0.2 s, so a process living less than that is missed) and the peak of the
tree's summed RSS and PSS (RSS counts Ray's shared object-store pages once per process that
maps them; PSS divides shared pages among their processes, so it does not). Reported as
medians and as ratios within each size; two input sizes show whether memory stays bounded
as the input grows. Results: bench/results/executor-<pipeline>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

VARIANTS = {"loop": ["--executor", "local"], "chain": ["--executor", "ray", "--fuse", "all"],
            "dag": ["--executor", "ray"], "unfused": ["--executor", "ray", "--fuse", "none"]}
DEFAULT_VARIANTS = ["loop", "chain", "dag"]


def measure(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall, CPU and peak summed RSS of `cmd` and every process it starts."""
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cpu: dict[int, float] = {}
    peak = peak_pss = 0
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        rss = pss = 0
        for p in tree:
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    cpu[p.pid] = t.user + t.system
                    mem = p.memory_full_info()
                    rss += mem.rss
                    pss += getattr(mem, "pss", mem.rss)
            except psutil.Error:
                pass
        peak, peak_pss = max(peak, rss), max(peak_pss, pss)
        time.sleep(0.2)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return {"wall_s": wall, "cpu_s": sum(cpu.values()), "peak_rss_mb": peak / 2**20, "peak_pss_mb": peak_pss / 2**20}


def make_input(pipeline: str, size: int, directory: str) -> list[str]:
    if pipeline == "text":
        subprocess.run([sys.executable, "bench/corpus.py", "--docs", str(size), "--out", directory], cwd=ROOT,
                       check=True, capture_output=True)
        return [directory]
    from pipelines.demo_corpus import speech_queries
    rows, seen, seed = [], set(), 0
    while len(rows) < size:  # distinct conversations: duplicates would be rejected, not spoken
        for r in speech_queries(48, seed=seed):
            if (key := json.dumps(r["messages"])) not in seen:
                seen.add(key)
                rows.append(r)
        seed += 1
    os.makedirs(directory, exist_ok=True)
    n_files = max(2, size // 24)
    for i in range(n_files):
        with open(os.path.join(directory, f"queries-{i:02d}.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows[:size][i::n_files])
    return [directory]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", choices=["text", "speech"], default="text")
    ap.add_argument("--docs", type=int, nargs="+", default=[3000, 6000], help="text: documents per size")
    ap.add_argument("--queries", type=int, nargs="+", default=[96, 192], help="speech: queries per size")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS),
                    help="unfused: --fuse none, one operator per stage (not run by default)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    script = {"text": "pipelines/text_curation.py", "speech": "pipelines/speech_sft.py"}[a.pipeline]
    sizes = a.docs if a.pipeline == "text" else a.queries
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    work = tempfile.mkdtemp(prefix="bench-executor-")
    results: dict = {"pipeline": a.pipeline, "cpus": a.num_cpus, "repeats": a.repeats, "sizes": {}}
    for size in sizes:
        inputs = make_input(a.pipeline, size, os.path.join(work, f"input-{size}"))
        runs: dict[str, list[dict]] = {v: [] for v in a.variants}
        for rep in range(a.repeats):
            # rotated each repeat: a run right after a Ray run shares the machine with its
            # exiting workers for a few seconds, so no variant always goes second
            for v in a.variants[rep % len(a.variants):] + a.variants[:rep % len(a.variants)]:
                wh = os.path.join(work, f"wh-{size}-{v}-{rep}")  # fresh: nothing resumed
                cmd = [sys.executable, script, "--input", *inputs, "--warehouse", wh, "--quiet",
                       "--num-cpus", str(a.num_cpus), "--shard-rows", str(max(1, size // 16)),
                       "--shard-mb", "0.5", *VARIANTS[v]]
                r = measure(cmd, env)
                runs[v].append(r)
                print(f"size {size} rep {rep} {v:<7} wall {r['wall_s']:7.1f} s  cpu {r['cpu_s']:7.1f} s  "
                      f"peak rss {r['peak_rss_mb']:6.0f} MB  pss {r['peak_pss_mb']:6.0f} MB", flush=True)
        med = {v: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for v, rs in runs.items()}
        ratios = {}
        if "dag" in med and "chain" in med:
            ratios["chain_wall_over_dag_wall"] = med["chain"]["wall_s"] / med["dag"]["wall_s"]
        if "dag" in med and "loop" in med:
            ratios["dag_cpu_over_loop_cpu"] = med["dag"]["cpu_s"] / med["loop"]["cpu_s"]
            ratios["loop_wall_over_dag_wall"] = med["loop"]["wall_s"] / med["dag"]["wall_s"]
        results["sizes"][str(size)] = {"runs": runs, "median": med, "ratios": ratios}
        print(json.dumps({"size": size, "median": med, "ratios": ratios}, indent=1), flush=True)
    out = a.out or os.path.join(ROOT, "bench", "results", f"executor-{a.pipeline}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
