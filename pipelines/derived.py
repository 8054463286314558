"""Publish a table derived on the driver from another table's version (e.g. SFT rows and
preference pairs unnested from sampled problems), with the same lineage as a pipeline run."""
from __future__ import annotations

import sys
from typing import Any

import pyarrow as pa

from schemas import stats as st
from schemas.engine.files import write_parquet
from schemas.engine.lineage import config_hash, git_commit
from schemas.engine.runner import AccountingError
from schemas.store import Store


def publish_derived(store: Store, name: str, schema: pa.Schema, table: pa.Table, *, source: str,
                    pipeline: str, config: dict[str, Any], rows_in: int, used: int, reasons: dict[str, int],
                    unit: str = "rows", counts: dict[str, Any] | None = None, mode: str = "overwrite",
                    tag: str | None = None, extra: dict[str, Any] | None = None) -> int:
    """Write `table` as one Parquet file of `name` and publish it as one snapshot.

    Accounting is in the source's `unit` (samples, prompts): `rows_in = used + sum(reasons)`,
    where `reasons` says why the others were not used (they stay in the source table). The run
    id hashes the source version and the config: publishing the same derivation twice returns
    the snapshot already made.
    """
    if rows_in != used + sum(reasons.values()):
        raise AccountingError(f"{name}: {rows_in} {unit} in != {used} used + {sum(reasons.values())} not used")
    table = table.cast(schema)
    run_id = f"{config_hash({'source': source, 'name': name, 'config': config, 'mode': mode})}-0"
    stats = st.table_stats(table, schema)
    files = []
    if table.num_rows:
        store.ensure_table(name, schema)
        uri = f"{store.data_location(name)}/derived-{run_id}/part-00000.parquet"
        write_parquet(table, uri, stats)
        files.append(uri)
    reasons = {k: v for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]) if v}
    accounting = {"unit": unit, "rows_in": rows_in, "kept": used, "rejected": rows_in - used,
                  "rows_out": table.num_rows,
                  "stages": [{"stage": f"derive:{name}", "rows_in": rows_in, "rows_out": used,
                              "rejected": rows_in - used, "reasons": reasons}],
                  "rejects_by_reason": reasons, **(counts or {})}
    props = {"run_id": run_id, "pipeline": pipeline, "role": "derived", "config": config,
             "config_hash": run_id.split("-")[0], "git_commit": git_commit(), "python": sys.version.split()[0],
             "inputs": {"tables": [source]}, "accounting": accounting, "stats": st.compact(stats), **(extra or {})}
    snap = store.publish(name, schema, files, props, mode=mode)
    if tag:
        store.tag(f"{name}@{snap}", tag, replace=True)
    return snap
