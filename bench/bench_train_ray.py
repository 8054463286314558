"""`curate train` on Ray Train (issue 26): throughput of 2 workers vs 1 on a 2-node local cluster,
and the Ray Train path on one worker vs the plain in-process trainer (`model.sft.train_sft`).

    python bench/bench_train_ray.py --steps 60 --repeats 3

A head and a worker node (tests/localcluster.py, 2 logical CPUs each, every port named) are
started on this machine and stopped by their own process ids. The same SFT table (word problems
with worked solutions, `synth.problems`), the same from-scratch init checkpoint and the same
global batches (`--tokens-per-batch` per step, split across the workers) for every variant, one
torch thread per worker; variants are interleaved per repeat and medians reported.

- steady tok/s: real (non-pad) tokens per second over steps 6..end, from each run's own step log
  (the first steps hold the plan, the all-to-all and warm-up). Overhead = 1 - ray-1 / in-process.
- wall s: the whole call (Ray Train: controller, worker group, the table read; in-process: the
  table read and training), the fixed cost a run pays once.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["PYTHONPATH"] = os.pathsep.join(
    [ROOT, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]])

ARCH = dict(dim=128, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=352, max_seq_len=256)


def setup(root: str, n: int) -> tuple[str, str, str]:
    import pyarrow as pa
    import torch

    from model import checkpoint
    from model.config import ModelConfig
    from model.tokenizer import ChatTokenizer
    from model.train_ray import doc_key
    from model.transformer import Transformer
    from pipelines.derived import publish_derived
    from schemas.store import Store
    from synth.problems import word_problems

    convs = [[{"role": "user", "content": p["problem"]}, {"role": "assistant", "content": p["reference_cot"]}]
             for p in word_problems(n, seed=11)]
    wh = os.path.join(root, "warehouse")
    store = Store(wh)
    msgs = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    schema = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("messages", msgs)])
    snap = None
    for p in range(4):  # four files: blocks for the workers' shards
        rows = convs[p::4]
        snap = publish_derived(store, "bench_sft", schema,
                               pa.table({"id": [doc_key(c) for c in rows], "messages": rows}, schema=schema),
                               source=f"bench:{p}", pipeline="bench", config={"part": p}, rows_in=len(rows),
                               used=len(rows), reasons={}, mode="append" if p else "overwrite")
    tok = ChatTokenizer.train((m["content"] for c in convs for m in c), vocab_size=512)
    torch.manual_seed(0)
    init = os.path.join(root, "init")
    checkpoint.save(init, Transformer(ModelConfig(vocab_size=tok.vocab_size, **ARCH)), tok, step=0, train_config={},
                    trained_on=[])
    return wh, f"bench_sft@{snap}", init


def steady(history: list[dict], skip: int = 5) -> float:
    """Tokens per second over steps skip+1..end from the cumulative tokens_per_s each step logs."""
    tokens = [0]
    for r in history:
        tokens.append(tokens[-1] + r["tokens"])
    t_at = lambda i: tokens[i] / history[i - 1]["tokens_per_s"]
    return (tokens[-1] - tokens[skip]) / (t_at(len(history)) - t_at(skip))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--problems", type=int, default=400)
    ap.add_argument("--tokens-per-batch", type=int, default=2048)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--json", help="write the runs here")
    a = ap.parse_args()

    import torch

    from localcluster import LocalCluster
    from model.config import TrainConfig
    from model.train_ray import train_local, train_ray
    from schemas.store import Store

    root = tempfile.mkdtemp(prefix="bench-train-ray-")
    wh, ref, init = setup(root, a.problems)
    runs: list[dict] = []
    for attempt in range(3):  # under heavy load `ray start` can time out ("timed out during startup"): retry
        cluster = LocalCluster(os.path.join(root, f"ray{attempt}"), object_store_mb=300)
        cluster.env["RAY_memory_monitor_refresh_ms"] = "0"  # other processes' memory must not kill our workers
        try:
            cluster.start_head(num_cpus=2)
            cluster.add_node("cpu", num_cpus=2)
            break
        except (RuntimeError, TimeoutError) as e:
            print(f"cluster start failed ({str(e)[:200]}), retrying", flush=True)
            cluster.stop()
    else:
        raise SystemExit("could not start the local cluster")
    try:
        os.environ["RAY_ADDRESS"] = cluster.address
        store = Store(wh)
        cfg = TrainConfig(steps=a.steps, warmup_steps=5, tokens_per_batch=a.tokens_per_batch, seq_len=a.seq_len,
                          save_every=0, seed=0)
        for rep in range(a.repeats):
            for variant in ("in-process", "ray-1", "ray-2"):
                out = os.path.join(root, f"{variant}-{rep}")
                t = time.perf_counter()
                if variant == "in-process":
                    res = train_local(store, ref, init, out, cfg, threads=1)
                    with open(res["metrics_log"]) as f:
                        hist = [json.loads(line) for line in f]
                else:
                    res = train_ray(store, ref, init, out, cfg, workers=int(variant[-1]),
                                    resources={"cpus": 1.0, "gpus": 0.0}, placement="SPREAD", threads=1)
                    hist = res["history"]
                wall = time.perf_counter() - t
                runs.append({"variant": variant, "rep": rep, "wall_s": round(wall, 1),
                             "steady_tok_s": round(steady(hist)),
                             "final_loss": hist[-1]["loss"], "nodes": len(res.get("train_nodes") or [])})
                print(json.dumps(runs[-1]), flush=True)
    finally:
        cluster.stop()
    med = {v: {k: statistics.median(r[k] for r in runs if r["variant"] == v) for k in ("wall_s", "steady_tok_s")}
           for v in ("in-process", "ray-1", "ray-2")}
    load = os.getloadavg()
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"load average {load[0]:.1f} at the end; {a.steps} steps of {a.tokens_per_batch} tokens, "
          f"medians of {a.repeats}")
    print("| variant | steady tok/s | wall s |\n|---|---|---|")
    for v, m in med.items():
        print(f"| {v} | {m['steady_tok_s']:,.0f} | {m['wall_s']:.1f} |")
    overhead = 1 - med["ray-1"]["steady_tok_s"] / med["in-process"]["steady_tok_s"]
    print(f"\nRay Train overhead on one worker (steady): {overhead:+.1%}"
          f"; 2 workers / 1 worker: {med['ray-2']['steady_tok_s'] / med['ray-1']['steady_tok_s']:.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"runs": runs, "medians": med, "args": vars(a)}, f, indent=1)


if __name__ == "__main__":
    main()
