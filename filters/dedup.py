"""Exact and near-duplicate removal across the whole corpus, as a shuffle.

1. signatures (per input shard, in parallel): content hash of the normalised text, and a
   datasketch MinHash of its word n-gram shingles cut into LSH bands; one Parquet file per
   shard of (row key, content hash, band, bucket).
2. clusters (a shuffle, Ray Data `groupby`; polars when run in-process): rows sharing a content
   hash are exact duplicates; distinct texts sharing any band bucket are near-duplicate
   candidates; union-find over those candidate edges gives clusters. Memory grows with the
   number of duplicates, not the corpus: no global index of all documents is ever built.
3. `DedupMarker` stage (in the main run): each row whose row key is a non-representative
   cluster member becomes `exact_duplicate` / `near_duplicate`; every member gets `dup_cluster`.
The representative of a cluster is the member with the smallest (content hash, row key): the
text kept does not depend on file names or shard order, only on the texts.
"""
from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.engine.failpoints import failpoint
from schemas.engine.inputs import InputShard, UnreadableInput, read_shard
from schemas.engine.lineage import code_fingerprint
from schemas.engine.stage import ModelStage, annotate, reject_where
from schemas.tables import field

SIG_SCHEMA = pa.schema([("node", pa.string()), ("content_hash", pa.string()),
                        ("band", pa.int16()), ("bucket", pa.int64())])  # node = content_hash|row key
DUPS_SCHEMA = pa.schema([("_rowkey", pa.string()), ("cluster", pa.string()), ("reason", pa.string())])


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).lower().split())


def shingles(text: str, n: int) -> list[bytes]:
    w = text.split()
    if len(w) < n:
        return [" ".join(w).encode()] if w else []
    return [" ".join(w[i:i + n]).encode() for i in range(len(w) - n + 1)]


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    from datasketch.lsh import _optimal_param
    return _optimal_param(threshold, num_perm, 0.5, 0.5)


def signature_table(texts: list[str], rowkeys: list[str], num_perm: int = 128, ngram: int = 5,
                    threshold: float = 0.8, seed: int = 1) -> pa.Table:
    """(node, content hash, band, bucket) rows for every text; a node sorts by content first."""
    from datasketch import MinHash

    bands, rows = lsh_params(threshold, num_perm)
    norm = [normalise(t or "") for t in texts]
    hashes = [hashlib.sha256(t.encode()).hexdigest()[:32] for t in norm]
    sets = [set(shingles(t, ngram)) for t in norm]
    mhs = MinHash.bulk(sets, num_perm=num_perm, seed=seed)
    hv = np.stack([m.hashvalues for m in mhs]).astype(np.uint64) if mhs else np.zeros((0, num_perm), np.uint64)
    keys, chs, band_col, buckets = [], [], [], []
    for i in range(len(texts)):
        if not sets[i]:
            continue  # empty text: nothing to compare (it is rejected by the text stages)
        raw = hv[i, : bands * rows].reshape(bands, rows)
        for b in range(bands):
            d = hashlib.blake2b(raw[b].tobytes(), digest_size=8).digest()
            keys.append(f"{hashes[i]}|{rowkeys[i]}")
            chs.append(hashes[i])
            band_col.append(b)
            buckets.append(int.from_bytes(d, "little", signed=True))
    return pa.table({"node": keys, "content_hash": chs, "band": pa.array(band_col, pa.int16()),
                     "bucket": pa.array(buckets, pa.int64())}, schema=SIG_SCHEMA)


def row_keys(shard: InputShard, n: int) -> list[str]:
    """Stable key of each row read from a shard (the runner attaches the same as `_rowkey`)."""
    return [f"{shard.key}:{i}" for i in range(n)]


def write_signatures(shard: InputShard, schema: pa.Schema, out_dir: str, params: dict[str, Any],
                     chunk: int = 1000) -> str:
    """Signatures of one shard, computed `chunk` documents at a time (shingle sets are the big part)."""
    path = os.path.join(out_dir, f"{shard.key}.parquet")
    if os.path.exists(path):
        return path  # done in an earlier, interrupted run
    try:
        rows, _, _ = read_shard(shard, schema)
    except UnreadableInput:
        rows = schema.empty_table()  # the main run fails on it, or records its rows as lost
    keys = row_keys(shard, rows.num_rows)
    texts = rows.column("text")
    tmp = path + ".tmp"
    with pq.ParquetWriter(tmp, SIG_SCHEMA) as writer:
        for i in range(0, max(rows.num_rows, 1), chunk):
            writer.write_table(signature_table(texts.slice(i, chunk).to_pylist(), keys[i:i + chunk], **params))
    os.replace(tmp, path)
    return path


class _UnionFind:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        p = self.parent.setdefault(x, x)
        while p != self.parent[p]:
            self.parent[p] = self.parent[self.parent[p]]
            p = self.parent[p]
        self.parent[x] = p
        return p

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra  # the smaller key is the root: the representative


def _edges_from_groups(groups: pa.Table) -> list[tuple[str, str]]:
    """Star edges (first -> each other) of every group listed as (key, members)."""
    edges = []
    for members in groups.column("members").to_pylist():
        members = sorted(set(members))
        edges += [(members[0], m) for m in members[1:]]
    return edges


def find_duplicates(sig_files: list[str], executor: str = "local") -> pa.Table:
    """Clusters of exact and near duplicates from signature files, as DUPS_SCHEMA rows."""
    if not sig_files or not any(pq.read_metadata(f).num_rows for f in sig_files):
        return DUPS_SCHEMA.empty_table()  # no row has text to compare (empty or unusable input)
    exact_groups, near_groups = (_groups_ray if executor == "ray" else _groups_polars)(sig_files)
    uf = _UnionFind()
    exact_members: dict[str, str] = {}
    for a, b in _edges_from_groups(exact_groups):
        uf.union(a, b)
        exact_members[b] = a
    for a, b in _edges_from_groups(near_groups):
        uf.union(a, b)
    keys, clusters, reasons = [], [], []
    for node in uf.parent:
        root = uf.find(node)
        keys.append(node.split("|", 1)[1])
        clusters.append(root.split("|", 1)[0])  # the kept text's content hash
        reasons.append(None if node == root else ("exact_duplicate" if node in exact_members else "near_duplicate"))
    return pa.table({"_rowkey": keys, "cluster": clusters, "reason": reasons}, schema=DUPS_SCHEMA)


def _groups_polars(sig_files: list[str]) -> tuple[pa.Table, pa.Table]:
    """Exact groups, then near-duplicate groups one LSH band at a time (a ninth of the rows each)."""
    import polars as pl
    sig = pl.scan_parquet(sig_files)
    first = sig.filter(pl.col("band") == 0).select("node", "content_hash")
    exact = (first.group_by("content_hash").agg(pl.col("node").alias("members"))
             .filter(pl.col("members").list.len() > 1).select("members").collect(engine="streaming").to_arrow())
    reps = first.group_by("content_hash").agg(pl.col("node").min().alias("node")).select("node") \
        .collect(engine="streaming")
    bands = sig.select(pl.col("band").max()).collect().item()
    near = []
    for band in range(0, (bands or 0) + 1):
        groups = (sig.filter(pl.col("band") == band).join(reps.lazy(), on="node", how="semi")
                  .group_by("bucket").agg(pl.col("node").alias("members"))
                  .filter(pl.col("members").list.len() > 1).select("members").collect(engine="streaming"))
        near.append(groups.to_arrow())
    empty = pa.table({"members": pa.array([], pa.list_(pa.string()))})
    return exact, pa.concat_tables([empty, *[t.cast(empty.schema) for t in near]])


def _members(batch: pa.Table) -> pa.Table:
    keys = sorted(set(batch.column("node").to_pylist()))
    return pa.table({"members": pa.array([keys] if len(keys) > 1 else [], pa.list_(pa.string()))})


def _representative(batch: pa.Table) -> pa.Table:
    """Rows of the smallest node of one content hash (one text stands for its copies)."""
    first = pc.min(batch.column("node")).as_py()
    return batch.filter(pc.equal(batch.column("node"), first))


def _groups_ray(sig_files: list[str]) -> tuple[pa.Table, pa.Table]:
    import ray.data
    sig = ray.data.read_parquet(sig_files)
    parts = max(2, min(200, len(sig_files)))  # Ray's default of 200 partitions is for clusters
    exact = sig.filter(expr="band == 0").groupby("content_hash", num_partitions=parts) \
        .map_groups(_members, batch_format="pyarrow")
    reps = sig.groupby("content_hash", num_partitions=parts).map_groups(_representative, batch_format="pyarrow")
    near = reps.groupby(["band", "bucket"], num_partitions=parts).map_groups(_members, batch_format="pyarrow")
    collect = lambda ds: pa.concat_tables([pa.table({"members": pa.array([], pa.list_(pa.string()))}),  # noqa: E731
                                           *[b for b in ds.iter_batches(batch_format="pyarrow")]])
    return collect(exact), collect(near)


def plan_dedup(shards: list[InputShard], schema: pa.Schema, work_dir: str, executor: str = "local",
               **params: Any) -> tuple[str, dict[str, Any]]:
    """Signatures for every shard, then clusters; returns the duplicates file and a summary."""
    key = hashlib.sha256(json.dumps([sorted(s.key for s in shards), params, code_fingerprint([__name__])],
                                    sort_keys=True).encode()).hexdigest()[:16]
    out_dir = os.path.join(work_dir, f"dedup-{key}")
    sig_dir = os.path.join(out_dir, "signatures")
    os.makedirs(sig_dir, exist_ok=True)
    dups_path = os.path.join(out_dir, "duplicates.parquet")
    if not os.path.exists(dups_path):
        if executor == "ray":
            import ray.data

            from schemas.engine.raysession import init_ray
            init_ray()
            items = [{"shard": json.dumps(s.to_dict())} for s in shards]
            ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                _signature_task, fn_kwargs={"schema": schema, "out_dir": sig_dir, "params": params},
                batch_size=1, batch_format="pyarrow").materialize()
            files = [os.path.join(sig_dir, f"{s.key}.parquet") for s in shards]
        else:
            files = [write_signatures(s, schema, sig_dir, params) for s in shards]
        failpoint("dedup")
        dups = find_duplicates(files, executor)
        pq.write_table(dups, dups_path + ".tmp")
        os.replace(dups_path + ".tmp", dups_path)
    dups = pq.read_table(dups_path)
    reasons = dups.column("reason").to_pylist()
    summary = {"path": dups_path, "clusters": len(set(dups.column("cluster").to_pylist())),
               "exact_duplicates": reasons.count("exact_duplicate"), "near_duplicates": reasons.count("near_duplicate"),
               "params": params}
    return dups_path, summary


def _signature_task(batch: pa.Table, schema: pa.Schema, out_dir: str, params: dict[str, Any]) -> pa.Table:
    paths = [write_signatures(InputShard.from_dict(json.loads(s)), schema, out_dir, params)
             for s in batch.column("shard").to_pylist()]
    return pa.table({"path": paths})


class DedupMarker(ModelStage):
    """Stage: marks rows of duplicate clusters found by `plan_dedup` (loads only the duplicates)."""
    name = "dedup"
    adds = [field("dup_cluster", pa.string())]

    def __init__(self, duplicates: str):
        t = pq.read_table(duplicates)
        self.cluster = dict(zip(t.column("_rowkey").to_pylist(), t.column("cluster").to_pylist()))
        self.reason = {k: r for k, r in zip(t.column("_rowkey").to_pylist(), t.column("reason").to_pylist()) if r}

    def __call__(self, batch: pa.Table) -> pa.Table:
        keys = batch.column("_rowkey").to_pylist()
        batch = annotate(batch, dup_cluster=pa.array([self.cluster.get(k) for k in keys], pa.string()))
        reasons = [self.reason.get(k) for k in keys]
        for r in ("exact_duplicate", "near_duplicate"):
            batch = reject_where(batch, [x == r for x in reasons], r,
                                 [f"cluster {self.cluster[k][:16]}" if x == r else None for k, x in zip(keys, reasons)])
        return batch

    @classmethod
    def model_info(cls, duplicates: str, **params: Any) -> dict[str, Any]:
        return {"kind": "minhash-lsh", "duplicates": duplicates}
