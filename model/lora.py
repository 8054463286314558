"""Low-rank adapters (LoRA, Hu et al. 2021) on the built-in transformer's linear layers.

    y = x Wᵀ + b + (α / r) · dropout(x) Aᵀ Bᵀ      A: [r, in] (random), B: [out, r] (zeros)

The base weights are frozen and only A and B train, so a step keeps no gradient or AdamW state
for the 135M base weights (that memory, not the FLOPs, is what LoRA saves: the backward still
runs through every layer). B starts at zero, so an adapted model starts as its base.

`merge` folds each adapter into its weight (W + (α / r) · B A), in place: the merged model is a
plain `Transformer` whose checkpoint `model/hf_format.py` exports like any other. A LoRA run's
checkpoint (model/sft.py) holds the merged weights (so everything that loads a checkpoint takes
it as is) *and* the adapters with a fingerprint of the base they sit on: resuming re-applies the
adapters to that same base, since subtracting them from the merged weights would not give the
base back bit for bit.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.config import _Json
from model.transformer import Transformer

ATTENTION = ("q", "k", "v", "o")
MLP = ("gate", "up", "down")
ADAPTERS = "adapters.safetensors"


@dataclass
class LoRAConfig(_Json):
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ATTENTION   # any of q k v o (attention) and gate up down (MLP)

    def __post_init__(self) -> None:
        self.targets = tuple(self.targets)  # a list after a JSON round trip
        unknown = set(self.targets) - set(ATTENTION + MLP)
        if unknown or not self.targets:
            raise ValueError(f"LoRA targets must be among {ATTENTION + MLP}, got {list(self.targets)}")
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be ≥ 1, got {self.rank}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoRALinear(nn.Linear):
    """An nn.Linear that shares the base layer's weight and bias (so their state-dict names stay
    `...q.weight`) and adds `lora_A` / `lora_B`."""

    def __init__(self, base: nn.Linear, cfg: LoRAConfig):
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        dev = base.weight.device
        self.lora_A = nn.Parameter(torch.empty(cfg.rank, self.in_features, device=dev))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, cfg.rank, device=dev))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as peft: B = 0 makes the start the base
        self.scale, self.p = cfg.scale, cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(x, self.p, self.training) if self.p else x
        return F.linear(x, self.weight, self.bias) + F.linear(F.linear(h, self.lora_A), self.lora_B) * self.scale

    def merged_weight(self) -> torch.Tensor:
        return self.weight + (self.lora_B @ self.lora_A) * self.scale


def _targets(model: Transformer, cfg: LoRAConfig) -> Iterator[tuple[Any, str]]:  # (attention or MLP, name)
    for blk in model.blocks:
        for name in cfg.targets:
            owner = blk.attn if name in ATTENTION else blk.mlp
            yield owner, name


def apply(model: Transformer, cfg: LoRAConfig) -> Transformer:
    """Freeze every base parameter and wrap the target layers with adapters, in place."""
    if adapted(model):
        raise ValueError("the model already has LoRA adapters: merge them first")
    for p in model.parameters():
        p.requires_grad_(False)
    for owner, name in _targets(model, cfg):
        setattr(owner, name, LoRALinear(getattr(owner, name), cfg))
    return model


def adapted(model: nn.Module) -> bool:
    return any(isinstance(m, LoRALinear) for m in model.modules())


def merged_state(model: Transformer) -> dict[str, torch.Tensor]:
    """The state dict of the merged model without touching the adapted one (what a checkpoint saves)."""
    with torch.no_grad():
        out = {k: v for k, v in model.state_dict().items() if "lora_" not in k}
        for name, m in model.named_modules():
            if isinstance(m, LoRALinear):
                out[f"{name}.weight"] = m.merged_weight()
    return out


def merge(model: Transformer) -> Transformer:
    """Fold the adapters into the base weights, in place: a plain Transformer again, every parameter
    trainable (as a loaded checkpoint is)."""
    with torch.no_grad():
        for _, m in list(model.named_modules()):
            for child_name, child in list(m.named_children()):
                if isinstance(child, LoRALinear):
                    plain = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None,
                                      device=child.weight.device, dtype=child.weight.dtype)
                    plain.weight.copy_(child.merged_weight())
                    if child.bias is not None:
                        plain.bias.copy_(child.bias)
                    setattr(m, child_name, plain)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def adapter_state(model: Transformer) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items() if "lora_" in k}


def load_adapters(model: Transformer, state: dict[str, torch.Tensor]) -> None:
    own = {k for k in model.state_dict() if "lora_" in k}
    if own != set(state):
        raise ValueError(f"saved adapters do not fit this model's: {sorted(own ^ set(state))[:4]}")
    with torch.no_grad():
        params = dict(model.named_parameters())
        for k, v in state.items():
            params[k].copy_(v)


def fingerprint(model: Transformer) -> str:
    """sha256 of the base weights (fp32 bytes, sorted names; adapters excluded): a LoRA checkpoint
    names the base it resumes on, and resuming on any other base is refused."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        if "lora_" in k:
            continue
        h.update(k.encode())
        h.update(v.detach().to("cpu", torch.float32).contiguous().numpy())  # its buffer: no copy
    return h.hexdigest()[:16]


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
