"""The closed loop's settings as one typed, frozen value (like `model/config.py`).

Built once from the command line (`pipelines/reasoning_loop.py`'s parser is the CLI and the one
place defaults live); every part of the loop reads `cfg.x` from here, and the second process
receives the same value, so a setting cannot differ between the loop and its side chain.
A field per parser destination: `from_args` fails loudly when they drift apart.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class LoopConfig:
    # run
    warehouse: str
    run: str | None
    seed: int
    seeds: tuple[int, ...] | None
    jobs: int
    rounds: int
    executor: str
    num_cpus: int | None
    threads: int | None
    workers: int | None
    device: str | None
    quiet: bool
    # data
    teacher_problems: int
    eval_problems: int
    dev_problems: int
    levels: tuple[int, ...]
    teacher_error_rate: float
    teacher_errors: str
    no_ablation: bool
    no_row_matched: bool
    no_ceiling: bool
    # model
    vocab_size: int
    bpe_digits: bool
    dim: int
    layers: int
    heads: int
    kv_heads: int
    ffn_dim: int
    max_seq_len: int
    rope_fraction: float
    # training
    sft_steps: int
    eval_every: int
    patience: int
    min_steps: int
    lr: float
    tokens_per_batch: int
    round_tokens_per_batch: int
    packing: str
    seq_len: int
    round_tokens: int
    rft_lr: float
    init: str
    reuse_checkpoints: bool
    train_workers: int | None
    train_resources: str
    dpo: bool
    dpo_steps: int
    dpo_lr: float
    beta: float
    rpo_alpha: float
    min_pairs: int
    # sampling
    sample_problems: int
    k: int
    unsure_copies: int
    curriculum_floor: float
    temperature: float
    max_new_tokens: int
    eval_k: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LoopConfig:
        """The parsed command line as a config; lists become tuples (the value is frozen)."""
        given = vars(args)
        names = [f.name for f in fields(cls)]
        missing, unknown = set(names) - set(given), set(given) - set(names)
        if missing or unknown:
            raise TypeError(f"LoopConfig and the loop's parser disagree: missing {sorted(missing)}, "
                            f"unknown {sorted(unknown)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """As recorded in record.json (`config`): the parser's destinations, in its order."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def round_steps(self) -> int:
        """Training steps of every round ≥ 1, the loop's and the control's alike (compute-matched)."""
        return max(1, self.round_tokens // self.round_tokens_per_batch)

    def sampled_eval_at(self, r: int) -> bool:
        """pass@k / maj@k at round 0 and the last round only: each costs `--eval-k` greedy scorings."""
        return r in (0, self.rounds)
