"""A compact decoder-only transformer: RMSNorm, (partial) RoPE, grouped-query attention
through SDPA, SwiGLU, tied embeddings. One module per idea, nanoGPT-style."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.config import ModelConfig

Rope = tuple[torch.Tensor, torch.Tensor]  # (cos, sin), computed once per forward


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalise in fp32, then scale: the order transformers uses, so imported checkpoints give
        # bit-identical logits (the other order drifted by ~1e-4 over 30 layers)
        h = x.float()
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


class Rotary(nn.Module):
    """RoPE on the first `rot_dim` dims of each head; positions come from the caller, so a
    packed row restarts them at 0 for every document. cos/sin are computed once per forward
    and shared by every layer."""

    inv_freq: torch.Tensor  # a buffer (register_buffer), not a parameter

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.rot_dim = int(cfg.head_dim * cfg.rope_fraction) // 2 * 2
        inv = 1.0 / cfg.rope_theta ** (torch.arange(0, self.rot_dim, 2).float() / max(1, self.rot_dim))
        inv, self.scale = scaled_frequencies(inv, cfg.rope_scaling)
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, pos: torch.Tensor, dtype: torch.dtype) -> Rope:  # pos: [B, T] → cos, sin: [B, 1, T, rot/2]
        ang = pos[:, None, :, None].float() * self.inv_freq
        return (ang.cos() * self.scale).to(dtype), (ang.sin() * self.scale).to(dtype)


def scaled_frequencies(inv: torch.Tensor, scaling: dict[str, Any] | None) -> tuple[torch.Tensor, float]:
    """The RoPE variants pretrained checkpoints ship, as (inverse frequencies, cos/sin scale).

    llama3 (Llama 3.1+): wavelengths longer than the original context are slowed by `factor`,
    short ones are kept, and the band between is interpolated, so long-range positions spread
    over the extended context while local ones stay exact. linear: every frequency / factor.
    longrope (Phi-3.5/4): per-frequency factors (the short ones, valid up to the original
    context, where `max_seq_len` is capped) and a cos/sin scale. Anything else is refused at
    import (model/hf_format.py) rather than approximated."""
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind == "default" or scaling is None:
        return inv, 1.0
    if kind == "linear":
        return inv / scaling["factor"], 1.0
    if kind == "llama3":
        factor, lo, hi = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        ctx = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        slow = torch.where(wavelen > ctx / lo, inv / factor, inv)
        mix = (ctx / wavelen - lo) / (hi - lo)
        between = (wavelen >= ctx / hi) & (wavelen <= ctx / lo)
        return torch.where(between, (1 - mix) * slow / factor + mix * slow, slow), 1.0
    if kind == "longrope":
        short = torch.tensor(scaling["short_factor"], dtype=torch.float32)
        original = scaling["original_max_position_embeddings"]
        factor = scaling["max_position_embeddings"] / original
        scale = scaling.get("attention_factor") or (
            1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(original)))
        return inv / short, float(scale)
    raise ValueError(f"RoPE scaling {kind!r} is not supported")


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first rot_dim dims of x [B, H, T, D] as (first half, second half) pairs
    (the GPT-NeoX / Llama layout: contiguous halves, no strided copies)."""
    half = cos.shape[-1]
    if half == 0:
        return x
    x1, x2, xp = x[..., :half], x[..., half:2 * half], x[..., 2 * half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos, xp), dim=-1)


class KVCache:
    """One layer's past K/V in a buffer sized for the whole generation: each step writes its
    keys in place (a growing `torch.cat` copied the whole cache every step, 13% of sampling)."""

    def __init__(self, length: int) -> None:
        self.length, self.n = length, 0
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, t = self.n, k.shape[2]
        if self.k is None or self.v is None:
            self.k = k.new_empty(k.shape[0], k.shape[1], max(self.length, t), k.shape[3])
            self.v = torch.empty_like(self.k)
        self.k[:, :, n:n + t], self.v[:, :, n:n + t] = k, v
        self.n = n + t
        return self.k[:, :, :n + t], self.v[:, :, :n + t]

    def keep(self, rows: torch.Tensor) -> None:
        """Only these batch rows (indices) go on, the others have finished: copies the filled part."""
        n = self.n
        for name in ("k", "v"):
            old = getattr(self, name)
            new = old.new_empty((len(rows),) + old.shape[1:])
            new[:, :, :n] = old[:, :, :n].index_select(0, rows)
            setattr(self, name, new)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.h, self.kv, self.d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.q = nn.Linear(cfg.dim, self.h * self.d, bias=cfg.attn_bias)
        self.k = nn.Linear(cfg.dim, self.kv * self.d, bias=cfg.attn_bias)
        self.v = nn.Linear(cfg.dim, self.kv * self.d, bias=cfg.attn_bias)
        self.o = nn.Linear(self.h * self.d, cfg.dim, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, rope: Rope, mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """mask: bool [B, 1, Tq, Tk] (True = may attend) or None for plain causal;
        cache: this layer's `KVCache`, extended in place."""
        B, T, _ = x.shape
        q = apply_rope(self.q(x).view(B, T, self.h, self.d).transpose(1, 2), *rope)
        k = apply_rope(self.k(x).view(B, T, self.kv, self.d).transpose(1, 2), *rope)
        v = self.v(x).view(B, T, self.kv, self.d).transpose(1, 2)
        if cache is not None:
            k, v = cache.append(k, v)
        # GQA: each K/V head serves h/kv query heads (SDPA broadcasts them, nothing is copied)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and T > 1,
                                           dropout_p=self.dropout if self.training else 0.0,
                                           enable_gqa=self.kv != self.h)
        out: torch.Tensor = self.o(y.transpose(1, 2).reshape(B, T, self.h * self.d))
        return out


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.up = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.down = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.down(F.silu(self.gate(x)) * self.up(x))
        return out


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n1, self.attn = RMSNorm(cfg.dim, cfg.norm_eps), Attention(cfg)
        self.n2, self.mlp = RMSNorm(cfg.dim, cfg.norm_eps), MLP(cfg)

    def forward(self, x: torch.Tensor, rope: Rope, mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.n1(x), rope, mask, cache)
        out: torch.Tensor = x + self.mlp(self.n2(x))
        return out


class Transformer(nn.Module):
    trained_from: dict[str, Any]  # set by checkpoint.load: the checkpoint the weights came from

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.rope = Rotary(cfg)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        self.apply(self._init)
        for n, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if n.endswith("o.weight") or n.endswith("down.weight"):
                nn.init.normal_(p, std=0.02 / (2 * cfg.n_layers) ** 0.5)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, ids: torch.Tensor, pos: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                caches: list[KVCache] | None = None, last_only: bool = False) -> torch.Tensor:
        """ids, pos: [B, T]. Returns logits [B, T, V] ([B, 1, V] with `last_only`: sampling
        needs the last position only, and a 49k-token head over a whole prompt is most of a
        prefill's cost)."""
        if pos is None:
            pos = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
        x = self.embed(ids)
        rope = self.rope(pos, x.dtype)
        for i, blk in enumerate(self.blocks):
            x = blk(x, rope, mask, None if caches is None else caches[i])
        logits: torch.Tensor = self.head(self.norm(x[:, -1:] if last_only else x))
        return logits

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def document_mask(doc: torch.Tensor) -> torch.Tensor:
    """Block-diagonal causal mask for packed rows: token i sees token j only when j <= i and
    both belong to the same document. doc: [B, T] document index per token (-1 = padding)."""
    T = doc.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=doc.device).tril()
    same = doc[:, :, None] == doc[:, None, :]
    mask = same & causal
    mask |= torch.eye(T, dtype=torch.bool, device=doc.device)  # padding sees itself: no all-masked row (NaN)
    return mask[:, None]
