"""Model and training configuration (plain dataclasses, saved as JSON with every checkpoint)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Self


class _Json:
    """Round-trips through the JSON saved with each checkpoint; unknown keys are ignored.
    Only dataclasses derive from it."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]  # a dataclass

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]  # cls is a dataclass
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class ModelConfig(_Json):
    vocab_size: int = 1024
    dim: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2          # grouped-query attention: heads share K/V in groups
    ffn_dim: int = 352           # SwiGLU hidden size (~ 8/3 · dim, rounded)
    max_seq_len: int = 512
    rope_theta: float = 10000.0
    rope_fraction: float = 1.0   # share of each head's dims that rotate (Phi-4-Mini: 0.75)
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    dropout: float = 0.0
    # What a pretrained checkpoint needs beyond the from-scratch model (model/hf_format.py maps
    # Hugging Face configs onto these; the defaults leave a from-scratch model unchanged).
    family: str = "llama"        # llama | qwen2 | phi3: the HF architecture it exports as
    attn_bias: bool = False      # bias on q/k/v (Qwen2)
    head_size: int = 0           # per-head dims when not dim // n_heads (0: dim // n_heads)
    rope_scaling: dict[str, Any] | None = None   # Llama 3 long-context RoPE ({"rope_type": "llama3", ...})

    @property
    def head_dim(self) -> int:
        return self.head_size or self.dim // self.n_heads


@dataclass
class TrainConfig(_Json):
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    steps: int = 600
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    tokens_per_batch: int = 2048   # dynamic batches: as many sequences as fit this token budget
    packing: str = "bfd"           # bfd: best-fit-decreasing packing with document masks | pad: length buckets
    seq_len: int = 256             # packed row length (bfd)
    seed: int = 0
    log_every: int = 10
    save_every: int = 0            # 0: only at the end
    threads: int | None = None
    device: str | None = None      # cpu | cuda (default: cuda when present)
    dtype: str | None = None       # float32 | bfloat16 (default: bf16 on CUDA)
    # DPO
    beta: float = 0.1
    dpo_lr: float = 5e-4
    dpo_steps: int = 100
    pairs_per_batch: int = 16
    rpo_alpha: float = 0.0         # weight of the chosen answer's NLL added to the DPO loss
