"""Publish a table derived on the driver from another table's version (e.g. SFT rows and
preference pairs unnested from sampled problems), with the same lineage as a pipeline run."""
from __future__ import annotations

import sys
from typing import Any

import pyarrow as pa

from pipelines.lineage import config_hash, git_commit
from pipelines.runner import _write_parquet
from schemas import stats as st
from schemas.store import Store


def publish_derived(store: Store, name: str, schema: pa.Schema, table: pa.Table, *, source: str,
                    pipeline: str, config: dict[str, Any], accounting: dict[str, Any],
                    mode: str = "overwrite", tag: str | None = None, extra: dict[str, Any] | None = None) -> int:
    """Write `table` as one Parquet file of `name` and publish it as one snapshot.

    The run id hashes the source version and the config, so publishing the same derivation
    twice returns the snapshot already made instead of a duplicate version.
    """
    table = table.cast(schema)
    run_id = f"{config_hash({'source': source, 'name': name, 'config': config, 'mode': mode})}-0"
    stats = st.table_stats(table, schema)
    files = []
    if table.num_rows:
        store.ensure_table(name, schema)
        uri = f"{store.data_location(name)}/derived-{run_id}/part-00000.parquet"
        _write_parquet(table, uri, stats)
        files.append(uri)
    props = {"run_id": run_id, "pipeline": pipeline, "role": "derived", "config": config,
             "config_hash": run_id.split("-")[0], "git_commit": git_commit(), "python": sys.version.split()[0],
             "inputs": {"tables": [source]}, "accounting": {"rows_in": accounting.get("rows_in"),
                                                            "kept": table.num_rows, **accounting},
             "stats": st.compact(stats), **(extra or {})}
    snap = store.publish(name, schema, files, props, mode=mode)
    if tag:
        store.tag(f"{name}@{snap}", tag, replace=True)
    return snap

