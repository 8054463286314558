"""Supervised fine-tuning: loss only on assistant tokens, packed (or length-bucketed) batches,
AdamW with warmup + cosine decay, checkpoints that resume to the same next step."""
from __future__ import annotations

import json
import math
import os
import time
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F

from model import checkpoint, lora as lora_mod
from model.config import TrainConfig
from model.lora import LoRAConfig
from model.packing import IGNORE, Batch, packed_batches, pad_batches
from model.transformer import Transformer, document_mask

if TYPE_CHECKING:
    from model.tokenizer import AnyTokenizer


def token_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over the learned (assistant) tokens of the batch. `model`: a
    Transformer, or one wrapped for DDP (model/train_ray.py)."""
    mask = None
    if batch.packed:  # additive float mask: CPU SDPA runs it a little faster than a bool one
        mask = torch.zeros(batch.doc.shape[0], 1, batch.doc.shape[1], batch.doc.shape[1], device=batch.doc.device)
        mask.masked_fill_(~document_mask(batch.doc), float("-inf"))
    logits = model(batch.ids, batch.pos, mask)
    n = int((batch.labels != IGNORE).sum())
    loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), batch.labels.view(-1),
                           ignore_index=IGNORE, reduction="sum")
    return loss / max(1, n), n


def make_batches(tok: AnyTokenizer, conversations: list[list[dict[str, Any]]], cfg: TrainConfig, max_len: int,
                 epoch: int = 0) -> tuple[list[Batch], float]:
    docs = [tok.encode_chat(c) for c in conversations]
    if cfg.packing == "bfd":
        return packed_batches(docs, min(cfg.seq_len, max_len), cfg.tokens_per_batch, tok.pad, cfg.seed + epoch)
    return pad_batches(docs, max_len, cfg.tokens_per_batch, tok.pad, cfg.seed + epoch)


def lr_at(step: int, cfg: TrainConfig, peak: float, total: int) -> float:
    if step < cfg.warmup_steps:
        return peak * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return peak * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def optimizer_for(model: Transformer, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters (all of them, or a LoRA run's adapters only)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    other = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), fused=False)


def metrics_path(out_dir: str) -> str:
    """Beside the checkpoint, not in it: a checkpoint directory is replaced whole at each save."""
    return os.path.join(os.path.dirname(os.path.abspath(out_dir)), os.path.basename(os.path.abspath(out_dir))
                        + ".metrics.jsonl")


def read_metrics(out_dir: str) -> list[dict[str, Any]]:
    """The per-step records of the run that wrote `out_dir` ([] when it left none)."""
    path = metrics_path(out_dir)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def final_loss(losses: list[float]) -> float:
    """The mean of the last tenth of the steps' losses: one step's loss swings with what its batch
    packed (0.016 to 0.14 within a 45-step SmolLM2 round), so a summary that read the last step
    alone would compare batches, not runs."""
    tail = losses[-max(1, len(losses) // 10):]
    return sum(tail) / max(1, len(tail))


def train_sft(model: Transformer, tok: AnyTokenizer, conversations: list[list[dict[str, Any]]], cfg: TrainConfig,
              out_dir: str, trained_on: list[str], device: torch.device, autocast: torch.dtype | None = None,
              resume: bool = True, progress: bool = True, stop_after: int | None = None,
              on_step: Callable[[dict[str, Any]], bool | None] | None = None,
              lora: LoRAConfig | None = None) -> dict[str, Any]:
    """Train for cfg.steps optimizer steps (cycling over the data); resume from out_dir when a
    checkpoint with optimizer state is there. `stop_after` ends early (to test resuming);
    `on_step` returning True ends early too (early stopping on a dev set).

    `lora`: train low-rank adapters on the frozen `model` (model/lora.py) instead of every weight;
    checkpoints hold the merged weights plus the adapters, and `model` is merged when this returns
    (a plain Transformer either way). Resuming a LoRA run needs the same base `model` again."""
    torch.manual_seed(cfg.seed)
    lora_extra = attach_lora(model, lora)
    opt = optimizer_for(model, cfg.lr, cfg.weight_decay)
    start = 0
    if resume and os.path.exists(os.path.join(out_dir, "optimizer.pt")):
        resume_weights(out_dir, model, lora_extra, device)
        start = checkpoint.load_optimizer(out_dir, opt) or 0
    first, efficiency = make_batches(tok, conversations, cfg, model.cfg.max_seq_len, 0)
    epoch_batches: dict[int, list[Batch]] = {0: first}
    n_per_epoch = len(first)
    log_path = metrics_path(out_dir)
    log = open(log_path, "a" if start else "w")
    bar = step_bar(progress, cfg.steps, start, "sft")
    model.train()
    tokens_seen, t0, history = 0, time.perf_counter(), []
    for step in range(start, cfg.steps):
        epoch, k = divmod(step, n_per_epoch)
        if epoch not in epoch_batches:  # a fresh shuffle per epoch, a function of the step only
            epoch_batches = {epoch: make_batches(tok, conversations, cfg, model.cfg.max_seq_len, epoch)[0]}
        batch = epoch_batches[epoch][k].to(device)
        lr = lr_at(step, cfg, cfg.lr, cfg.steps)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            loss, n = token_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        tokens_seen += batch.real_tokens
        rec = {"step": step + 1, "loss": round(loss.item(), 5), "lr": lr, "grad_norm": round(float(gnorm), 4),
               "tokens": batch.real_tokens, "tokens_per_s": round(tokens_seen / (time.perf_counter() - t0), 1)}
        history.append(rec)
        log.write(json.dumps(rec) + "\n")
        stop = bool(on_step(rec)) if on_step else False
        if bar is not None:
            if step % cfg.log_every == 0:
                bar.set_postfix(loss=f"{rec['loss']:.3f}", tok_s=f"{rec['tokens_per_s']:.0f}")
            bar.update(1)
        done = step + 1
        if (cfg.save_every and done % cfg.save_every == 0) or done == cfg.steps or done == stop_after or stop:
            checkpoint.save(out_dir, model, tok, step=done, train_config=cfg.to_dict(), trained_on=trained_on,
                            metrics={"loss": rec["loss"], "packing_efficiency": efficiency}, optimizer=opt,
                            extra={"stage": "sft", **lora_extra}, **lora_checkpoint_files(model, lora_extra))
        if (stop_after is not None and done >= stop_after) or stop:
            break
    log.close()
    if lora_extra:
        lora_mod.merge(model)
    if bar is not None:
        bar.close()
    return {"steps": len(history) + start, "start_step": start,
            "final_loss": final_loss([r["loss"] for r in history]),
            "packing_efficiency": round(efficiency, 4), "tokens": tokens_seen,
            "tokens_per_s": history[-1]["tokens_per_s"] if history else None, "metrics_log": log_path,
            "history": history}


def attach_lora(model: Transformer, lora: LoRAConfig | None) -> dict[str, Any]:
    """Put adapters on `model` (when `lora`) and return what its checkpoints record about them."""
    if lora is None:
        return {}
    base = lora_mod.fingerprint(model)
    lora_mod.apply(model, lora)
    return {"lora": {**lora.to_dict(), "base": base, "trainable_params": lora_mod.trainable(model)}}


def lora_checkpoint_files(model: Transformer, lora_extra: dict[str, Any]) -> dict[str, Any]:
    """checkpoint.save's keywords for a LoRA run: the merged weights and the adapters."""
    if not lora_extra:
        return {}
    return {"state": lora_mod.merged_state(model), "adapters": lora_mod.adapter_state(model)}


def resume_weights(out_dir: str, model: Transformer, lora_extra: dict[str, Any], device: torch.device) -> None:
    """Full fine-tuning resumes from the saved weights; LoRA from the saved adapters on the same base."""
    saved_lora: dict[str, Any] = checkpoint.meta(out_dir).get("lora") or {}
    if bool(saved_lora) != bool(lora_extra):
        raise ValueError(f"{out_dir} holds a {'LoRA' if saved_lora else 'full fine-tuning'} run: resume it as one")
    if not lora_extra:
        saved, _, _ = checkpoint.load(out_dir, device=str(device))
        model.load_state_dict(saved.state_dict())
        return
    if LoRAConfig.from_dict(saved_lora) != LoRAConfig.from_dict(lora_extra["lora"]):
        raise ValueError(f"{out_dir}: its adapters are {LoRAConfig.from_dict(saved_lora)}, not "
                         f"{LoRAConfig.from_dict(lora_extra['lora'])}")
    if saved_lora["base"] != lora_extra["lora"]["base"]:
        raise ValueError(f"{out_dir}: its adapters were trained on base {saved_lora['base']}, this model is "
                         f"{lora_extra['lora']['base']}")
    from safetensors.torch import load_file
    lora_mod.load_adapters(model, load_file(os.path.join(out_dir, lora_mod.ADAPTERS), device=str(device)))


def step_bar(progress: bool, total: int, initial: int, desc: str) -> Any:
    """A step bar on a terminal; elsewhere a line every CURATE_PROGRESS_EVERY s (schemas.progress)."""
    if not progress:
        return None
    from schemas.progress import progress as make
    # no line-printing thread: a step is short, each update prints the line when one is due
    return make(total=total, initial=initial, desc=desc, unit="step", leave=False, thread=False)


def plot_loss(histories: dict[str, list[dict[str, Any]]], path: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, h in histories.items():
        if h:
            ax.plot([r["step"] for r in h], [r["loss"] for r in h], label=name, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
