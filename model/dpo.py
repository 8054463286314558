"""Direct Preference Optimisation against a frozen reference whose log-probs are computed once.

    loss = -log σ( β · [(log π(y_w|x) - log π_ref(y_w|x)) - (log π(y_l|x) - log π_ref(y_l|x))] )

(Rafailov et al. 2023; TRL's `sigmoid` loss). With `rpo_alpha` > 0 the chosen answer's
per-token NLL is added (Pang et al. 2024, TRL's `rpo_alpha`): on a small model plain DPO can
lower the likelihood of both answers and lose accuracy. The implicit rewards β·(log π - log π_ref) of
chosen and rejected give the reported margin and accuracy (chosen reward > rejected reward).
"""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Literal, overload

import torch
import torch.nn.functional as F

from model import checkpoint
from model.config import TrainConfig
from model.lora import LoRAConfig, merge
from model.packing import IGNORE, Batch, next_token_labels
from model.sft import attach_lora, lora_checkpoint_files, lr_at, optimizer_for, step_bar
from model.transformer import Transformer

if TYPE_CHECKING:
    from model.tokenizer import AnyTokenizer

Encoded = tuple[list[int], list[bool]]  # one response: token ids and the learn mask


def dpo_loss(pol_chosen: torch.Tensor, pol_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair loss and implicit rewards; inputs are summed log-probs of each response."""
    chosen_reward = beta * (pol_chosen - ref_chosen)
    rejected_reward = beta * (pol_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen_reward - rejected_reward)
    return loss, chosen_reward.detach(), rejected_reward.detach()


def encode_pairs(tok: AnyTokenizer, pairs: list[dict[str, Any]], max_len: int) -> list[Encoded]:
    """[chosen_0, rejected_0, chosen_1, ...] as (ids, learn-mask) over the response tokens."""
    out = []
    for p in pairs:
        for side in ("chosen", "rejected"):
            ids, learn = tok.encode_chat([{"role": "user", "content": p["prompt"]},
                                          {"role": "assistant", "content": p[side]}])
            out.append((ids[:max_len], learn[:max_len]))
    return out


def _batch(docs: list[Encoded], pad: int) -> Batch:
    T = max(len(d[0]) for d in docs)
    ids = torch.full((len(docs), T), pad, dtype=torch.long)
    labels = torch.full_like(ids, IGNORE)
    doc = torch.full_like(ids, -1)
    for r, (toks, learn) in enumerate(docs):
        ids[r, :len(toks)] = torch.tensor(toks)
        labels[r, :len(toks)] = torch.tensor(next_token_labels(toks, learn))
        doc[r, :len(toks)] = 0
    return Batch(ids, labels, torch.arange(T).repeat(len(docs), 1), doc, packed=False)


@overload
def sequence_logps(model: Transformer, batch: Batch, with_counts: Literal[False] = False) -> torch.Tensor: ...
@overload
def sequence_logps(model: Transformer, batch: Batch,
                   with_counts: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...
def sequence_logps(model: Transformer, batch: Batch,
                   with_counts: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Sum of log-probs of the learned (response) tokens, per row (and the token counts)."""
    logits = model(batch.ids, batch.pos).float()
    mask = batch.labels != IGNORE
    lp = torch.gather(logits.log_softmax(-1), 2, batch.labels.clamp(min=0)[..., None])[..., 0]
    total = (lp * mask).sum(-1)
    return (total, mask.sum(-1)) if with_counts else total


@torch.no_grad()
def reference_logps(model: Transformer, docs: list[Encoded], pad: int, device: torch.device,
                    rows: int = 32) -> torch.Tensor:
    model.eval()
    out = [sequence_logps(model, _batch(docs[i:i + rows], pad).to(device)).cpu() for i in range(0, len(docs), rows)]
    return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def evaluate_pairs(model: Transformer, ref: torch.Tensor, docs: list[Encoded], pad: int, device: torch.device,
                   beta: float) -> dict[str, float]:
    pol = reference_logps(model, docs, pad, device)
    loss, cr, rr = dpo_loss(pol[0::2], pol[1::2], ref[0::2], ref[1::2], beta)
    return {"loss": float(loss.mean()), "reward_margin": float((cr - rr).mean()),
            "accuracy": float((cr > rr).float().mean()), "chosen_reward": float(cr.mean()),
            "rejected_reward": float(rr.mean()), "pairs": len(docs) // 2}


def train_dpo(model: Transformer, tok: AnyTokenizer, pairs: list[dict[str, Any]], heldout: list[dict[str, Any]],
              cfg: TrainConfig, out_dir: str, trained_on: list[str], device: torch.device, progress: bool = True,
              lora: LoRAConfig | None = None) -> dict[str, Any]:
    """DPO from the current weights; the reference is a frozen copy of them (log-probs once).
    `lora`: train adapters on the frozen weights (model/lora.py); saved and returned merged."""
    torch.manual_seed(cfg.seed)
    max_len = model.cfg.max_seq_len
    docs = encode_pairs(tok, pairs, max_len)
    held = encode_pairs(tok, heldout, max_len)
    ref = reference_logps(model, docs, tok.pad, device)
    ref_held = reference_logps(model, held, tok.pad, device) if held else None
    before = evaluate_pairs(model, ref_held, held, tok.pad, device, cfg.beta) if ref_held is not None else {}
    lora_extra = attach_lora(model, lora)  # after the reference: it is the base, adapters start at zero
    opt = optimizer_for(model, cfg.dpo_lr, 0.0)
    n_pairs, per = len(pairs), cfg.pairs_per_batch
    g = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(n_pairs, generator=g).tolist()
    bar = step_bar(progress, cfg.dpo_steps, 0, "dpo")
    model.train()
    history, t0 = [], time.perf_counter()
    warm = TrainConfig(**{**cfg.to_dict(), "warmup_steps": max(1, cfg.dpo_steps // 10)})
    for step in range(cfg.dpo_steps):
        start = (step * per) % max(1, n_pairs)
        idx = [order[(start + j) % n_pairs] for j in range(min(per, n_pairs))]
        rows = [d for i in idx for d in (docs[2 * i], docs[2 * i + 1])]
        batch = _batch(rows, tok.pad).to(device)
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step, warm, cfg.dpo_lr, cfg.dpo_steps)
        pol, counts = sequence_logps(model, batch, with_counts=True)
        r = torch.tensor([x for i in idx for x in (ref[2 * i], ref[2 * i + 1])], device=device)
        loss, cr, rr = dpo_loss(pol[0::2], pol[1::2], r[0::2], r[1::2], cfg.beta)
        loss = loss.mean()
        if cfg.rpo_alpha:  # + α · NLL of the chosen answer per token (RPO): keeps the chosen likely
            loss = loss + cfg.rpo_alpha * (-pol[0::2] / counts[0::2].clamp(min=1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        rec = {"step": step + 1, "loss": round(loss.item(), 5), "reward_margin": round(float((cr - rr).mean()), 4),
               "accuracy": round(float((cr > rr).float().mean()), 3)}
        history.append(rec)
        if bar is not None:
            bar.set_postfix(loss=f"{rec['loss']:.3f}", margin=f"{rec['reward_margin']:.2f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    after = evaluate_pairs(model, ref_held, held, tok.pad, device, cfg.beta) if ref_held is not None else {}
    checkpoint.save(out_dir, model, tok, step=cfg.dpo_steps, train_config=cfg.to_dict(), trained_on=trained_on,
                    metrics={"heldout_before": before, "heldout_after": after}, optimizer=opt,
                    extra={"stage": "dpo", **lora_extra}, **lora_checkpoint_files(model, lora_extra))
    if lora_extra:
        merge(model)
    return {"pairs": n_pairs, "heldout_before": before, "heldout_after": after, "history": history,
            "seconds": round(time.perf_counter() - t0, 1), "checkpoint": os.path.abspath(out_dir)}
