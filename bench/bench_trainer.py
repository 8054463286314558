"""SFT step throughput and peak memory: our trainer vs Hugging Face transformers training the
same Llama-style architecture (built locally from a config object) on the same data and threads.

    python bench/bench_trainer.py --steps 40 --repeats 3 --threads 2

Each run is a fresh subprocess (peak RSS is per process); variants are interleaved and the
median of the repeats is reported. Throughput counts real (non-pad) tokens per second.
Variants, each ours vs HF LlamaForCausalLM on identical batches: `*-bfd` best-fit-decreasing
packed rows with a block-diagonal causal mask and per-document positions (HF gets the same mask
as a 4D `attention_mask` and `position_ids`; without the mask its SDPA path attends across
documents), `*-pad` length-bucketed, right-padded rows.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ARCH = dict(dim=128, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=352, max_seq_len=256)


def data(n: int):
    from model.tokenizer import ChatTokenizer
    from synth.problems import word_problems
    convs = [[{"role": "user", "content": p["problem"]}, {"role": "assistant", "content": p["reference_cot"]}]
             for p in word_problems(n, seed=11)]
    tok = ChatTokenizer.train((m["content"] for c in convs for m in c), vocab_size=512)
    return tok, convs


def child(variant: str, steps: int, threads: int, tokens_per_batch: int, seq_len: int) -> dict:
    import torch

    from model.config import ModelConfig, TrainConfig
    from model.sft import make_batches, optimizer_for, token_loss
    from model.transformer import Transformer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tok, convs = data(4000)
    packing = "bfd" if variant.endswith("bfd") else "pad"
    cfg = TrainConfig(packing=packing, tokens_per_batch=tokens_per_batch, seq_len=seq_len)
    batches, eff = make_batches(tok, convs, cfg, ARCH["max_seq_len"])
    if variant.startswith("ours"):
        model = Transformer(ModelConfig(vocab_size=tok.vocab_size, rope_fraction=1.0, **ARCH))
        opt = optimizer_for(model, 1e-3, 0.1)

        def step(b):
            loss, _ = token_loss(model, b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.item()
    else:
        from transformers import LlamaConfig, LlamaForCausalLM
        hf = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=ARCH["dim"], intermediate_size=ARCH["ffn_dim"],
                         num_hidden_layers=ARCH["n_layers"], num_attention_heads=ARCH["n_heads"],
                         num_key_value_heads=ARCH["n_kv_heads"], max_position_embeddings=ARCH["max_seq_len"],
                         tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=10000.0, attn_implementation="sdpa")
        model = LlamaForCausalLM(hf)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)

        from model.transformer import document_mask

        def step(b):
            # padded rows: a 2D padding mask; packed rows: the same block-diagonal causal mask we
            # use, as a 4D mask, with positions restarting per document (HF reads both)
            att = document_mask(b.doc) if b.packed else (b.doc >= 0).long()
            # HF shifts labels itself: give it the token ids with -100 where we have no loss target
            labels = torch.full_like(b.ids, -100)
            labels[:, 1:] = b.labels[:, :-1]
            out = model(input_ids=b.ids, attention_mask=att, position_ids=b.pos, labels=labels)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            return out.loss.item()
    model.train()
    for b in batches[:3]:  # warm-up
        step(b)
    t0, real = time.perf_counter(), 0
    for i in range(steps):
        b = batches[(3 + i) % len(batches)]
        step(b)
        real += b.real_tokens
    dt = time.perf_counter() - t0
    return {"variant": variant, "tokens_per_s": real / dt, "steps": steps, "packing_efficiency": eff,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tokens-per-batch", type=int, default=4096)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--variants", nargs="+", default=["ours-bfd", "hf-llama-bfd", "ours-pad", "hf-llama-pad"])
    p.add_argument("--child", default=None)
    p.add_argument("--json", default=None, help="write the results here")
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.steps, a.threads, a.tokens_per_batch, a.seq_len)))
        return
    runs: dict[str, list[dict]] = {v: [] for v in a.variants}
    for r in range(a.repeats):
        for v in a.variants:  # interleaved: machine noise hits every variant alike
            out = subprocess.run([sys.executable, __file__, "--child", v, "--steps", str(a.steps), "--threads",
                                  str(a.threads), "--tokens-per-batch", str(a.tokens_per_batch), "--seq-len",
                                  str(a.seq_len)], capture_output=True, text=True, check=True)
            runs[v].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"repeat {r + 1} {v}: {runs[v][-1]['tokens_per_s']:.0f} tok/s", file=sys.stderr)
    med = {v: statistics.median(x["tokens_per_s"] for x in rs) for v, rs in runs.items()}
    rows = []
    for v, rs in runs.items():
        tps = med[v]
        base = med.get("hf-llama-" + v.split("-")[-1], tps)  # ours vs HF with the same batching
        rows.append({"variant": v, "tokens_per_s": round(tps), "vs_hf": round(tps / base, 2),
                     "peak_rss_mb": round(statistics.median(x["peak_rss_mb"] for x in rs)),
                     "packing_efficiency": round(rs[0]["packing_efficiency"], 3), "params": rs[0]["params"]})
    print(f"{'variant':14} {'tok/s':>8} {'vs HF':>6} {'peak MB':>8} {'non-pad':>8} {'params':>8}")
    for r in rows:
        print(f"{r['variant']:14} {r['tokens_per_s']:>8} {r['vs_hf']:>6} {r['peak_rss_mb']:>8} "
              f"{r['packing_efficiency']:>8} {r['params']:>8}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "results": rows, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
