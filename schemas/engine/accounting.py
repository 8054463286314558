"""Accounting: per-stage counts and the check that a shard's rows add up (ARCHITECTURE.md,
"What the store guarantees"): rows in = kept + rejected + lost, per stage and per shard, and
equal to the count the input's own metadata promises. A count that does not add up is a bug
in the engine or a stage, never bad input, so it fails the run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


class AccountingError(RuntimeError):
    """Counts that do not add up: a bug, never bad input."""


@dataclass
class StageCount:
    stage: str
    rows_in: int = 0
    rows_out: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    lost: int = 0      # rows of unreadable inputs, recorded only under `--on-unreadable record`
    seconds: float = 0.0  # worker time in the stage (model loading excluded)

    def add(self, other: StageCount) -> None:
        self.seconds += other.seconds
        self.rows_in += other.rows_in
        self.rows_out += other.rows_out
        self.rejected += other.rejected
        self.lost += other.lost
        for k, v in other.reasons.items():
            self.reasons[k] = self.reasons.get(k, 0) + v

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stage": self.stage, "rows_in": self.rows_in, "rows_out": self.rows_out,
                               "rejected": self.rejected, "reasons": dict(sorted(self.reasons.items()))}
        if self.lost:
            out["lost"] = self.lost
        out["seconds"] = round(self.seconds, 4)
        return out


def reason_counts(rejects: pa.Table) -> dict[str, int]:
    """Rejected rows per `drop_reason` (the one place reasons are counted)."""
    if not rejects.num_rows:
        return {}
    vc = pc.value_counts(rejects.column("drop_reason"))
    return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))


def check_shard(summary: dict[str, Any]) -> None:
    for s in summary["stages"]:
        if (s["rows_in"] != s["rows_out"] + s["rejected"] + s.get("lost", 0)
                or sum(s["reasons"].values()) != s["rejected"]):
            raise AccountingError(f"shard {summary['shard']}: stage {s['stage']} counts do not add up: {s}")
    if summary["rows_in"] != summary["kept"] + summary["rejected"] + summary["lost"]:
        raise AccountingError(f"shard {summary['shard']}: {summary['rows_in']} in != {summary['kept']} kept + "
                              f"{summary['rejected']} rejected + {summary['lost']} lost")
    # With plan_inputs' check that a table version's files add up to its record count, this makes
    # rows in equal the input version's own count.
    promised = summary["input"].get("rows", -1)
    if promised >= 0 and summary["rows_in"] != promised:
        raise AccountingError(f"shard {summary['shard']}: {summary['rows_in']} rows in, its metadata says {promised}")
