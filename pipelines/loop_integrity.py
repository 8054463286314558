"""The loop's integrity checks: held-out problems are never trained on or sampled.

They raise `HeldoutLeak` rather than `assert`, so they hold under `python -O` too: a leaked
held-out problem would make every number of the run meaningless, not just a test fail.
"""
from __future__ import annotations

from collections.abc import Iterable


class HeldoutLeak(Exception):
    """A held-out problem (or a twin of one) is in data the loop trains on or samples from."""


def check_disjoint_ids(train_ids: Iterable[str], heldout_ids: Iterable[str], where: str) -> None:
    overlap = set(train_ids) & set(heldout_ids)
    if overlap:
        raise HeldoutLeak(f"{len(overlap)} held-out problems are in {where}, e.g. {sorted(overlap)[:3]}")


def check_no_twins(heldout: list[dict], used) -> int:
    """`used` is a `filters.twins.TwinIndex` of every problem trained on or sampled; returns the count (0)."""
    twins = [p["problem"] for p in heldout if used.twin_of(p["problem"]) is not None]
    if twins:
        raise HeldoutLeak(f"{len(twins)} held-out problems have a twin in the problems trained on or sampled, "
                          f"e.g. {twins[0]!r}")
    return 0
