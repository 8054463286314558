"""Exact and near-duplicate removal across the whole corpus, as a shuffle inside the run.

`Dedup` is a stage with a global pass (see schemas/engine/execute.py):
1. signatures (per shard, in the run's DAG after the stages before dedup, so rows already
   rejected take no part): content hash of the normalised text, and a datasketch MinHash of
   its word n-gram shingles cut into LSH bands; one Parquet file per shard of (row key,
   content hash, band, bucket) under the run directory (a rerun reuses them).
2. decide (a shuffle, Ray Data `groupby`; polars when run in-process): rows sharing a content
   hash are exact duplicates; distinct texts sharing any band bucket are near-duplicate
   candidates; union-find over those candidate edges gives clusters. Memory grows with the
   number of duplicates, not the corpus: no global index of all documents is ever built.
3. the stage (main pass): each row whose row key is a non-representative cluster member
   becomes `exact_duplicate` / `near_duplicate`; every member gets `dup_cluster`.
The representative of a cluster is the member with the smallest (content hash, row digest, row
key), the row digest a hash of the row's other columns (`source`, `source_ids`, …): the text kept
does not depend on file names or shard order, only on the texts, and among copies of one text
the row kept does not either (a row key names the input file by path and mtime, so with it alone
one run kept the `stdlib` copy of a text and the next its `stdlib-copy`).
"""
from __future__ import annotations

import functools
import hashlib
import unicodedata
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.engine import Resources, Stage, annotate, reject_where
from schemas.engine.files import filesystem, read_parquet, write_parquet
from schemas.tables import field

SIG_SCHEMA = pa.schema([("node", pa.string()), ("content_hash", pa.string()),
                        ("band", pa.int16()), ("bucket", pa.int64())])  # node = content_hash|row digest|row key
DUPS_SCHEMA = pa.schema([("_rowkey", pa.string()), ("cluster", pa.string()), ("reason", pa.string())])


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).lower().split())


def shingles(text: str, n: int) -> list[bytes]:
    w = text.split()
    if len(w) < n:
        return [" ".join(w).encode()] if w else []
    return [" ".join(w[i:i + n]).encode() for i in range(len(w) - n + 1)]


@functools.lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) with bands × rows ≤ num_perm minimising the area of false
    positives (Jaccard below `threshold` yet candidates, probability 1 − (1 − s^r)^b) plus
    false negatives (above it yet not candidates), equally weighted: the banding that best
    approximates a step at the threshold (Leskovec et al., Mining of Massive Datasets §3.4)."""
    s = np.linspace(0.0, 1.0, 2001)
    below, above = s <= threshold, s >= threshold
    best, best_err = (1, num_perm), np.inf
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1.0 - (1.0 - s ** r) ** b
            err = np.trapezoid(p[below], s[below]) + np.trapezoid(1.0 - p[above], s[above])
            if err < best_err - 1e-12:
                best, best_err = (b, r), float(err)
    return best


def row_digests(rows: pa.Table) -> list[str]:
    """A hash of each row's columns but its row key: what orders copies of one text."""
    import json
    rest = rows.drop_columns([c for c in ("_rowkey",) if c in rows.column_names])
    return [hashlib.sha256(json.dumps(r, sort_keys=True, default=str).encode()).hexdigest()[:16]
            for r in rest.to_pylist()]


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


RAY_SHUFFLE_ROWS = 20_000_000  # ~2M documents at 9 bands


def find_duplicates(sig_files: list[str], executor: str = "local") -> pa.Table:
    """Clusters of exact and near duplicates from signature files, as DUPS_SCHEMA rows."""
    rows = sum(_num_rows(f) for f in sig_files)
    if not rows:
        return DUPS_SCHEMA.empty_table()  # no row has text to compare (empty or unusable input)
    # The Ray shuffle pays seconds of scheduling per stage: below RAY_SHUFFLE_ROWS signature rows
    # (a few GB in memory at most) polars' streaming group-by in this process is far faster.
    shuffle = _groups_ray if executor == "ray" and rows >= RAY_SHUFFLE_ROWS else _groups_polars
    exact_groups, near_groups = shuffle(sig_files)
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
        keys.append(node.rsplit("|", 1)[1])  # the row key (a node of a run before row digests has no digest)
        clusters.append(root.split("|", 1)[0])  # the kept text's content hash
        reasons.append(None if node == root else ("exact_duplicate" if node in exact_members else "near_duplicate"))
    return pa.table({"_rowkey": keys, "cluster": clusters, "reason": reasons}, schema=DUPS_SCHEMA)


def _num_rows(uri: str) -> int:
    fs, path = filesystem(uri)
    with fs.open_input_file(path) as f:
        return pq.read_metadata(f).num_rows


def _groups_polars(sig_files: list[str]) -> tuple[pa.Table, pa.Table]:
    """Exact groups, then near-duplicate groups one LSH band at a time (a ninth of the rows each)."""
    import polars as pl
    if any("://" in f for f in sig_files):  # polars' own object-store reader needs its own credentials
        sig = pl.from_arrow(pa.concat_tables([read_parquet(f) for f in sig_files])).lazy()  # type: ignore[union-attr]
    else:
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
    fs, _ = filesystem(sig_files[0])
    sig = ray.data.read_parquet([filesystem(f)[1] for f in sig_files], filesystem=fs)
    parts = max(2, min(200, len(sig_files)))  # Ray's default of 200 partitions is for clusters
    exact = sig.filter(expr="band == 0").groupby("content_hash", num_partitions=parts) \
        .map_groups(_members, batch_format="pyarrow")
    reps = sig.groupby("content_hash", num_partitions=parts).map_groups(_representative, batch_format="pyarrow")
    near = reps.groupby(["band", "bucket"], num_partitions=parts).map_groups(_members, batch_format="pyarrow")
    collect = lambda ds: pa.concat_tables([pa.table({"members": pa.array([], pa.list_(pa.string()))}),
                                           *[b for b in ds.iter_batches(batch_format="pyarrow")]])
    return collect(exact), collect(near)


class Dedup(Stage):
    """Stage: marks the rows of duplicate clusters. Its global pass computes `signatures` per
    shard and `decide`s once over all of them; the stage itself loads only the duplicates."""
    name = "dedup"
    kind = "actor"  # no model, but its decisions are loaded once per actor, not per shard
    adds = [field("dup_cluster", pa.string())]
    resources = Resources(cpus=1)
    global_pass = True

    def __init__(self, decisions: str, num_perm: int = 128, ngram: int = 5, threshold: float = 0.8):
        t = read_parquet(decisions)
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

    @staticmethod
    def signatures(live: pa.Table, num_perm: int = 128, ngram: int = 5, threshold: float = 0.8,  # type: ignore[override]  # its own parameters, bound by StageSpec
                   chunk: int = 1000) -> pa.Table:
        """One shard's signatures, `chunk` documents at a time (shingle sets are the big part)."""
        texts, keys = live.column("text"), live.column("_rowkey").to_pylist()
        keys = [f"{d}|{k}" for d, k in zip(row_digests(live), keys)]  # copies of a text: ordered by content
        params: dict[str, Any] = {"num_perm": num_perm, "ngram": ngram, "threshold": threshold}
        parts = [signature_table(texts.slice(i, chunk).to_pylist(), keys[i:i + chunk], **params)
                 for i in range(0, live.num_rows, chunk)]
        return pa.concat_tables([SIG_SCHEMA.empty_table(), *parts])

    @staticmethod
    def decide(signature_files: list[str], out: str, executor: str = "local", **params: Any) -> dict[str, Any]:
        dups = find_duplicates(signature_files, executor)
        write_parquet(dups, out)
        reasons = dups.column("reason").to_pylist()
        return {"clusters": len(set(dups.column("cluster").to_pylist())),
                "exact_duplicates": reasons.count("exact_duplicate"),
                "near_duplicates": reasons.count("near_duplicate")}

    @classmethod
    def model_info(cls, num_perm: int = 128, ngram: int = 5, threshold: float = 0.8, **params: Any) -> dict[str, Any]:
        bands, rows = lsh_params(threshold, num_perm)
        return {"kind": "minhash-lsh", "num_perm": num_perm, "ngram": ngram, "threshold": threshold,
                "bands": bands, "rows": rows}
