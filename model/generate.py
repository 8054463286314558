"""Batched sampling with a KV cache (temperature, top-p, max tokens, stop at <|end|>), and the
built-in model as a `model.generation.Generator` for rejection sampling."""
from __future__ import annotations

import os
from typing import Any

import torch

from model.transformer import KVCache, Transformer
from model.generation import Completion, Generator, Request


def _top_p(probs: torch.Tensor, p: float, head: int = 64) -> torch.Tensor:
    """The smallest set of tokens whose mass reaches p, renormalised by the sampler. Sorting the
    whole vocabulary every step was 9% of sampling; the `head` largest, when they hold p in
    every row (nearly always for a trained model), give the same set (ties at the edge aside)."""
    if probs.shape[-1] > head:
        top, idx = probs.topk(head, -1)
        mass = top.cumsum(-1)
        if bool((mass[:, -1] >= p).all()):
            return torch.zeros_like(probs).scatter(-1, idx, top * (mass - top < p))
    sorted_p, idx = probs.sort(-1, descending=True)
    keep = sorted_p.cumsum(-1) - sorted_p < p
    return torch.zeros_like(probs).scatter(-1, idx, sorted_p * keep)


@torch.no_grad()
def generate(model: Transformer, prompts: list[list[int]], *, max_new_tokens: int, stop_id: int, pad_id: int,
             temperature: float = 0.0, top_p: float = 1.0, seed: int = 0) -> list[tuple[list[int], str]]:
    """Left-padded batch → (new token ids without the stop token, finish_reason) per prompt."""
    model.eval()
    dev = next(model.parameters()).device
    B = len(prompts)
    limit = model.cfg.max_seq_len
    prompts = [p[-(limit - 1):] for p in prompts]
    max_new_tokens = min(max_new_tokens, limit - max(len(p) for p in prompts))
    T = max(len(p) for p in prompts)
    ids = torch.full((B, T), pad_id, dtype=torch.long, device=dev)
    valid = torch.zeros((B, T), dtype=torch.bool, device=dev)
    for i, p in enumerate(prompts):
        ids[i, T - len(p):] = torch.tensor(p, device=dev)
        valid[i, T - len(p):] = True
    pos = (valid.long().cumsum(-1) - 1).clamp(min=0)
    causal = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
    mask = (causal[None] & valid[:, None, :]) | torch.eye(T, dtype=torch.bool, device=dev)[None]
    caches = [KVCache(T + max(0, max_new_tokens)) for _ in model.blocks]
    logits = model(ids, pos, mask[:, None], caches)[:, -1]
    gen = torch.Generator(device=dev).manual_seed(seed)
    steps: list[tuple[torch.Tensor, torch.Tensor]] = []  # (rows still decoding, their new token) per step
    rows = torch.arange(B, device=dev)
    next_pos = pos[:, -1] + 1
    for _ in range(max(0, max_new_tokens)):
        if temperature > 0:
            probs = torch.softmax(logits.float() / temperature, -1)
            if top_p < 1.0:
                probs = _top_p(probs, top_p)
            tok = torch.multinomial(probs, 1, generator=gen)[:, 0]
        else:
            tok = logits.argmax(-1)
        steps.append((rows, tok))
        live = tok != stop_id
        if not bool(live.any()):
            break
        if not bool(live.all()):  # drop finished rows: the batch costs what its live rows cost
            rows, tok, next_pos, valid = rows[live], tok[live], next_pos[live], valid[live]
            keep = live.nonzero()[:, 0]
            for c in caches:
                c.keep(keep)
        valid = torch.cat((valid, torch.ones((len(rows), 1), dtype=torch.bool, device=dev)), 1)
        logits = model(tok[:, None], next_pos[:, None], valid[:, None, None, :], caches)[:, -1]
        next_pos = next_pos + 1
    out_ids: list[list[int]] = [[] for _ in range(B)]
    for idx, tok in steps:
        for i, t in zip(idx.tolist(), tok.tolist()):
            out_ids[i].append(t)
    out = []
    for row in out_ids:  # each row up to (without) its stop token
        cut = row.index(stop_id) if stop_id in row else None
        out.append((row[:cut], "stop" if cut is not None else "length"))
    return out


class BuiltinGenerator(Generator):
    """`builtin:<checkpoint dir>` for `synth.generators.make_generator`: the loop's generator."""

    def __init__(self, checkpoint_dir: str, cache: str | None = None, batch_size: int = 32,
                 threads: int | None = None, device: str | None = None):
        from model import checkpoint
        from model.runtime import setup

        super().__init__(cache)
        dev, _ = setup(threads, device)
        self.model, self.tok, self.meta = checkpoint.load(checkpoint_dir, device=str(dev))
        self.model_id = f"builtin:{self.meta['id']}"
        self.batch_size, self.checkpoint_dir = batch_size, checkpoint_dir

    def _generate(self, requests: list[Request]) -> list[Completion]:
        out = []
        for i in range(0, len(requests), self.batch_size):
            chunk = requests[i:i + self.batch_size]
            s = chunk[0].sampling  # one seed per chunk, as with the transformers backend
            prompts = [self.tok.encode_chat(r.messages, add_generation_prompt=True)[0] for r in chunk]
            res = generate(self.model, prompts, max_new_tokens=max(r.sampling.max_tokens for r in chunk),
                           stop_id=self.tok.end, pad_id=self.tok.pad, temperature=s.temperature,
                           top_p=s.top_p, seed=s.seed)
            for r, (ids, reason) in zip(chunk, res):
                ids = ids[:r.sampling.max_tokens]
                out.append(Completion(self.tok.decode(ids), reason, tokens=len(ids)))
        return out

    def info(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "checkpoint": os.path.abspath(self.checkpoint_dir),
                "step": self.meta.get("step"), "trained_on": self.meta.get("trained_on")}
