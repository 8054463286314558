"""Checkpoints: weights in safetensors, config + tokenizer + training state beside them, and
the table versions trained on (the store records the checkpoint in turn: lineage both ways).

    <dir>/model.safetensors   weights (tied embedding stored once)
    <dir>/tokenizer.json
    <dir>/checkpoint.json     model config, train config, step, trained_on, metrics, id, and `init`
                              (path, id, trained_on) of the checkpoint it was trained from
    <dir>/optimizer.pt        optimizer + LR-schedule step + RNG states, for an exact resume
    <dir>/adapters.safetensors  a LoRA run's adapters (model/lora.py); model.safetensors then holds
                              the merged weights and checkpoint.json the LoRA config and base fingerprint
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tempfile
from typing import TYPE_CHECKING, Any

import torch

from model.config import ModelConfig
from model.tokenizer import load_tokenizer
from model.transformer import Transformer

if TYPE_CHECKING:
    from model.tokenizer import AnyTokenizer


def save(directory: str, model: Transformer, tokenizer: AnyTokenizer, *, step: int, train_config: dict[str, Any],
         trained_on: list[str], metrics: dict[str, Any] | None = None, optimizer: torch.optim.Optimizer | None = None,
         extra: dict[str, Any] | None = None,
         state: dict[str, torch.Tensor] | None = None, adapters: dict[str, torch.Tensor] | None = None) -> str:
    """Write to a temporary directory and rename: a checkpoint is whole or absent. `state` replaces
    the model's own weights (a LoRA run's merged ones); `adapters` go beside them."""
    from safetensors.torch import save_file

    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".ckpt-")
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in (state or model.state_dict()).items()
             if not (model.cfg.tie_embeddings and k == "head.weight")}
    save_file(state, os.path.join(tmp, "model.safetensors"))
    if adapters:
        save_file(adapters, os.path.join(tmp, "adapters.safetensors"))
    tokenizer.save(tmp)
    if optimizer is not None:
        torch.save({"optimizer": optimizer.state_dict(), "step": step, "rng": torch.get_rng_state()},
                   os.path.join(tmp, "optimizer.pt"))
    with open(os.path.join(tmp, "model.safetensors"), "rb") as f:  # in chunks: a 135M model is 540 MB
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    meta = {"id": digest[:16], "step": step, "model_config": model.cfg.to_dict(), "train_config": train_config,
            "trained_on": trained_on, "metrics": metrics or {}, **(extra or {})}
    origin = getattr(model, "trained_from", None)
    if "init" not in meta and origin and origin["id"] != meta["id"]:
        meta["init"] = origin  # what the weights were loaded from: lineage to the parent checkpoint
    with open(os.path.join(tmp, "checkpoint.json"), "w") as f:
        json.dump(meta, f, indent=1, default=str)
    if os.path.exists(directory):
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory


def meta(directory: str) -> dict[str, Any]:
    with open(os.path.join(directory, "checkpoint.json")) as f:
        m: dict[str, Any] = json.load(f)
    return m


def same_inputs(directory: str, train_config: dict[str, Any], trained_on: list[str],
                init: str | None = None) -> dict[str, Any] | None:
    """The meta of the checkpoint at `directory` when training it again would give the same weights
    (training is deterministic): trained from the same weights (the id of `init`; none for a model
    built from scratch), with the same settings, on data of the same names. None otherwise, or when
    there is no checkpoint. What those names hold is the caller's to fix (the loops compare the
    problems their run drew), so a rerun may skip the training it has already done."""
    if not os.path.exists(os.path.join(directory, "checkpoint.json")):
        return None
    m = meta(directory)
    init_id = meta(init)["id"] if init else None
    if m.get("train_config") != train_config or m.get("trained_on") != trained_on \
            or (m.get("init") or {}).get("id") != init_id:
        return None
    return m


def load(directory: str, device: str = "cpu") -> tuple[Transformer, AnyTokenizer, dict[str, Any]]:
    from safetensors.torch import load_file

    m = meta(directory)
    model = Transformer(ModelConfig.from_dict(m["model_config"]))
    state = load_file(os.path.join(directory, "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not (model.cfg.tie_embeddings and k == "head.weight")]:
        raise ValueError(f"checkpoint {directory}: missing {missing}, unexpected {unexpected}")
    # a checkpoint saved from this model (trained or not) records it as its `init` (see `save`)
    model.trained_from = {"path": os.path.abspath(directory), "id": m.get("id"), "trained_on": m.get("trained_on", [])}
    return model.to(device), load_tokenizer(directory), m


def load_optimizer(directory: str, optimizer: torch.optim.Optimizer) -> int | None:
    """Restore optimizer and RNG state; returns the step to resume from (None: no state saved)."""
    path = os.path.join(directory, "optimizer.pt")
    if not os.path.exists(path):
        return None
    # torch's restricted unpickler: tensors, containers and plain values only; a pickle that
    # would import or call anything (a crafted optimizer.pt) raises instead of running code.
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"checkpoint {directory}: refusing optimizer.pt: it holds more than tensors and "
                         f"plain values ({str(e).splitlines()[0][:200]})") from e
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    return int(state["step"])
