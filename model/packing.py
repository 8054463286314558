"""Sequence packing and dynamic batching.

`pack_bfd` places documents into rows of `seq_len` tokens best-fit-decreasing (each document
goes to the fullest row it still fits in), so rows fill up with little padding; every token
carries its document index and its position within the document, from which the model builds
a block-diagonal causal mask and restarts RoPE positions: no token attends across documents.
`pad_batches` is the alternative for short samples on CPU: length-sorted rows, right-padded.
Both return batches under a token budget, and report the non-pad share of their tokens.
"""
from __future__ import annotations

import bisect
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

IGNORE = -100

Encoded = tuple[list[int], list[bool]]  # one conversation: token ids and the learn mask
# Documents by index: every one (a list), or the ones a Ray Train worker holds (a dict).
Docs = Sequence[Encoded] | Mapping[int, Encoded]


@dataclass
class Batch:
    ids: torch.Tensor       # [B, T]
    labels: torch.Tensor    # [B, T], IGNORE where no loss (prompt, padding, last token of a doc)
    pos: torch.Tensor       # [B, T] position within the document
    doc: torch.Tensor       # [B, T] document index within the row, -1 on padding
    packed: bool            # True: the model needs the document mask (several docs per row)

    @property
    def real_tokens(self) -> int:
        return int((self.doc >= 0).sum())

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.ids.to(device), self.labels.to(device), self.pos.to(device), self.doc.to(device), self.packed)


def next_token_labels(ids: list[int], learn: list[bool]) -> list[int]:
    """Next-token targets: position t predicts ids[t+1], counted only where ids[t+1] is learned."""
    return [ids[t + 1] if learn[t + 1] else IGNORE for t in range(len(ids) - 1)] + [IGNORE]


def pack_bfd(docs: list[tuple[list[int], list[bool]]], seq_len: int) -> list[list[int]]:
    """Rows as lists of document indices; documents longer than seq_len are truncated later."""
    return pack_lengths([len(d[0]) for d in docs], seq_len)


def pack_lengths(lengths: list[int], seq_len: int) -> list[list[int]]:
    """`pack_bfd` from the documents' lengths alone (what a plan over sharded data knows)."""
    order = sorted(range(len(lengths)), key=lambda i: -min(lengths[i], seq_len))
    free: list[tuple[int, int]] = []    # (space left, row index), kept sorted
    rows: list[list[int]] = []
    for i in order:
        n = min(lengths[i], seq_len)
        k = bisect.bisect_left(free, (n, -1))   # the row with the least space that still fits
        if k < len(free):
            space, r = free.pop(k)
        else:
            space, r = seq_len, len(rows)
            rows.append([])
        rows[r].append(i)
        if space - n > 0:
            bisect.insort(free, (space - n, r))
    return rows


def packed_plan(lengths: list[int], seq_len: int, tokens_per_batch: int, seed: int = 0) -> list[list[list[int]]]:
    """Batches as lists of rows (lists of document indices): BFD rows, shuffled, as many per
    batch as fit the token budget. A function of the lengths and the seed only."""
    rows = pack_lengths(lengths, seq_len)
    random.Random(seed).shuffle(rows)
    per_batch = max(1, tokens_per_batch // seq_len)
    return [rows[b:b + per_batch] for b in range(0, len(rows), per_batch)]


def packed_batch(docs: Docs, chunk: list[list[int]], seq_len: int, pad_id: int) -> Batch:
    """The tensors of packed rows (`docs` indexed by the rows' document indices)."""
    ids = torch.full((len(chunk), seq_len), pad_id, dtype=torch.long)
    labels = torch.full_like(ids, IGNORE)
    pos = torch.zeros_like(ids)
    doc = torch.full_like(ids, -1)
    for r, row in enumerate(chunk):
        t = 0
        for d, i in enumerate(row):
            toks, learn = docs[i][0][:seq_len], docs[i][1][:seq_len]
            n = len(toks)
            ids[r, t:t + n] = torch.tensor(toks)
            labels[r, t:t + n] = torch.tensor(next_token_labels(toks, learn))
            pos[r, t:t + n] = torch.arange(n)
            doc[r, t:t + n] = d
            t += n
    return Batch(ids, labels, pos, doc, packed=True)


def packed_batches(docs: list[tuple[list[int], list[bool]]], seq_len: int, tokens_per_batch: int, pad_id: int,
                   seed: int = 0) -> tuple[list[Batch], float]:
    batches, real, total = [], 0, 0
    for chunk in packed_plan([len(d[0]) for d in docs], seq_len, tokens_per_batch, seed):
        batch = packed_batch(docs, chunk, seq_len, pad_id)
        real += batch.real_tokens
        total += batch.ids.numel()
        batches.append(batch)
    return batches, real / max(1, total)


def pad_plan(lengths: list[int], max_len: int, tokens_per_batch: int, seed: int = 0) -> list[list[int]]:
    """Batches as lists of document indices (one per row), shortest first within a batch."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        n = min(lengths[i], max_len)
        if cur and n * (len(cur) + 1) > tokens_per_batch:
            groups.append(cur)
            cur = []
        cur.append(i)
    if cur:
        groups.append(cur)
    random.Random(seed).shuffle(groups)
    return groups


def padded_batch(docs: Docs, group: list[int], max_len: int, pad_id: int) -> Batch:
    """One right-padded row per document of `group`, as long as its longest (at most max_len)."""
    T = min(max_len, max(len(docs[i][0]) for i in group))
    ids = torch.full((len(group), T), pad_id, dtype=torch.long)
    labels = torch.full_like(ids, IGNORE)
    pos = torch.arange(T).repeat(len(group), 1)
    doc = torch.full_like(ids, -1)
    for r, i in enumerate(group):
        toks, learn = docs[i][0][:T], docs[i][1][:T]
        n = len(toks)
        ids[r, :n] = torch.tensor(toks)
        labels[r, :n] = torch.tensor(next_token_labels(toks, learn))
        doc[r, :n] = 0
    return Batch(ids, labels, pos, doc, packed=False)


def pad_batches(docs: list[tuple[list[int], list[bool]]], max_len: int, tokens_per_batch: int, pad_id: int,
                seed: int = 0) -> tuple[list[Batch], float]:
    """One document per row, rows of similar length together, as many as fit the token budget."""
    batches, real, total = [], 0, 0
    for g in pad_plan([len(d[0]) for d in docs], max_len, tokens_per_batch, seed):
        batch = padded_batch(docs, g, max_len, pad_id)
        real += batch.real_tokens
        total += batch.ids.numel()
        batches.append(batch)
    return batches, real / max(1, total)
