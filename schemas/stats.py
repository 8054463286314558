"""Content statistics computed when a shard is written, and merged across shards.

Every statistic here is mergeable (histograms with fixed bins, counts, sums, min/max), so
a table version's statistics are the exact merge of its shards' without rescanning rows.
Length percentiles come from log-spaced histograms (8 bins per doubling: within ~5%).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.tables import stats_kind

LOG_BINS_PER_DOUBLING = 8
TOP_CATEGORIES = 50


# ---- per-kind computations --------------------------------------------------------------
def _numeric_summary(values: np.ndarray) -> dict[str, Any]:
    if values.size == 0:
        return {"count": 0, "sum": 0.0, "min": None, "max": None}
    return {"count": int(values.size), "sum": float(values.sum()),
            "min": float(values.min()), "max": float(values.max())}


def log_hist(values: np.ndarray) -> dict[str, Any]:
    """Histogram of non-negative values on log2(v+1) bins: {bin: count} plus exact summary."""
    v = np.asarray(values, dtype=np.float64)
    out = _numeric_summary(v)
    bins = np.floor(np.log2(v + 1.0) * LOG_BINS_PER_DOUBLING).astype(np.int64)
    idx, counts = np.unique(bins, return_counts=True)
    out["bins"] = {str(int(i)): int(c) for i, c in zip(idx, counts)}
    return out


def fixed_hist(values: np.ndarray, lo: float, hi: float, nbins: int) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    out = _numeric_summary(v)
    counts, _ = np.histogram(np.clip(v, lo, hi), bins=nbins, range=(lo, hi))
    out.update({"lo": lo, "hi": hi, "counts": counts.astype(int).tolist(),
                "below": int((v < lo).sum()), "above": int((v > hi).sum())})
    return out


def _text_lengths(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Characters and whitespace-separated words per row; lists of messages are summed."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        flat = pc.list_flatten(arr)
        parents = pc.list_parent_indices(arr).to_numpy()
        if pa.types.is_struct(flat.type):
            flat = pc.struct_field(flat, "content")
        chars_f, words_f = _text_lengths(flat)
        n = len(arr)
        chars = np.bincount(parents, weights=chars_f, minlength=n)
        words = np.bincount(parents, weights=words_f, minlength=n)
        valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
        return chars[valid], words[valid]
    arr = arr.drop_null()
    chars = pc.utf8_length(arr).to_numpy(zero_copy_only=False)
    words = pc.count_substring_regex(arr, r"\S+").to_numpy(zero_copy_only=False)
    return chars.astype(np.float64), words.astype(np.float64)


def column_stats(col: pa.ChunkedArray, kinds: str) -> dict[str, Any]:
    out: dict[str, Any] = {"nulls": int(col.null_count)}
    for kind in kinds.split(","):
        if kind == "text":
            chars, words = _text_lengths(col)
            out["chars"], out["words"] = log_hist(chars), log_hist(words)
        elif kind.startswith("hist:"):
            _, lo, hi, nb = kind.split(":")
            vals = col.drop_null().to_numpy() if col.null_count < len(col) else np.array([])
            out["hist"] = fixed_hist(vals, float(lo), float(hi), int(nb))
        elif kind == "category":
            vc = pc.value_counts(col.drop_null())
            out["values"] = {str(v): int(c) for v, c in zip(vc.field("values").to_pylist(),
                                                             vc.field("counts").to_pylist())}
        elif kind == "sum":
            vals = col.drop_null().to_numpy() if col.null_count < len(col) else np.array([])
            out["total"] = _numeric_summary(np.asarray(vals, dtype=np.float64))
    return out


def table_stats(table: pa.Table, schema: pa.Schema | None = None) -> dict[str, Any]:
    """Content statistics of one shard, for the columns whose schema field asks for them.

    A kind may name a grouping column after `@` (`hist:0:1:20@voice`): the histogram is then
    also kept per value of that column (WER per TTS voice).
    """
    schema = schema or table.schema
    cols = {}
    for f in schema:
        kinds = stats_kind(f)
        if not kinds or f.name not in table.column_names:
            continue
        plain = ",".join(k.split("@")[0] for k in kinds.split(","))
        cols[f.name] = column_stats(table.column(f.name), plain)
        for k in kinds.split(","):
            if "@" in k and k.startswith("hist:") and k.split("@")[1] in table.column_names:
                kind, group = k.split("@")
                _, lo, hi, nb = kind.split(":")
                keys = table.column(group).to_pylist()
                vals = table.column(f.name).to_pylist()
                by: dict[str, list[float]] = {}
                for key, v in zip(keys, vals):
                    if v is not None:
                        by.setdefault(str(key), []).append(v)
                cols[f.name]["hist_by"] = {key: fixed_hist(np.array(v), float(lo), float(hi), int(nb))
                                           for key, v in by.items()}
    return {"rows": table.num_rows, "columns": cols}


# ---- merging --------------------------------------------------------------------------
def _merge_summary(a: dict, b: dict) -> dict:
    out = {"count": a["count"] + b["count"], "sum": a["sum"] + b["sum"]}
    mins = [x for x in (a["min"], b["min"]) if x is not None]
    maxs = [x for x in (a["max"], b["max"]) if x is not None]
    out["min"], out["max"] = (min(mins) if mins else None), (max(maxs) if maxs else None)
    return out


def _merge_value(key: str, a: Any, b: Any) -> Any:
    if key == "nulls" or key == "rows":
        return a + b
    if key == "values":
        c = Counter(a)
        c.update(b)
        return dict(c)
    if key == "total":
        return _merge_summary(a, b)
    if key == "hist_by":
        return {k: (_merge_value("hist", a[k], b[k]) if k in a and k in b else a.get(k, b.get(k)))
                for k in set(a) | set(b)}
    if key == "hist":
        out = _merge_summary(a, b)
        out.update({"lo": a["lo"], "hi": a["hi"], "below": a["below"] + b["below"],
                    "above": a["above"] + b["above"],
                    "counts": [x + y for x, y in zip(a["counts"], b["counts"])]})
        return out
    if key in ("chars", "words"):
        out = _merge_summary(a, b)
        bins = Counter(a["bins"])
        bins.update(b["bins"])
        out["bins"] = dict(bins)
        return out
    if isinstance(a, dict) and isinstance(b, dict):
        return merge_stats(a, b)
    return b


def merge_stats(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge_value(k, a[k], v) if k in a else v
    return out


def merge_all(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": 0, "columns": {}}
    for s in items:
        out = merge_stats(out, s)
    return out


def compact(stats: dict[str, Any]) -> dict[str, Any]:
    """Keep only the top categories so stats stay small enough for snapshot properties."""
    out = {"rows": stats.get("rows", 0), "columns": {}}
    for name, col in stats.get("columns", {}).items():
        col = dict(col)
        if "values" in col and len(col["values"]) > TOP_CATEGORIES:
            top = Counter(col["values"]).most_common(TOP_CATEGORIES)
            other = sum(col["values"].values()) - sum(c for _, c in top)
            col["values"] = dict(top) | {"(other)": other}
        out["columns"][name] = col
    return out


# ---- reading ----------------------------------------------------------------------------
def log_hist_percentile(h: dict[str, Any], q: float) -> float | None:
    """Approximate q-quantile (0..1) from a log histogram, interpolating inside the bin."""
    total = h.get("count", 0)
    if not total:
        return None
    target = q * total
    seen = 0
    for b in sorted(h["bins"], key=int):
        c = h["bins"][b]
        if seen + c >= target:
            lo = 2 ** (int(b) / LOG_BINS_PER_DOUBLING) - 1
            hi = 2 ** ((int(b) + 1) / LOG_BINS_PER_DOUBLING) - 1
            frac = (target - seen) / c if c else 0.0
            value = lo + frac * (hi - lo)
            return float(min(max(value, h["min"]), h["max"]))
        seen += c
    return float(h["max"])


def fixed_hist_percentile(h: dict[str, Any], q: float) -> float | None:
    """Approximate q-quantile of a fixed-bin histogram (values clipped to its range)."""
    counts = h.get("counts") or []
    total = sum(counts)
    if not total:
        return None
    step = (h["hi"] - h["lo"]) / len(counts)
    target, seen = q * total, 0
    for i, c in enumerate(counts):
        if c and seen + c >= target:
            return h["lo"] + (i + (target - seen) / c) * step
        seen += c
    return h["hi"]


def log_hist_edges(h: dict[str, Any]) -> tuple[list[float], list[int]]:
    """Bin edges and counts of a log histogram, for plotting."""
    if not h.get("bins"):
        return [], []
    keys = sorted(int(b) for b in h["bins"])
    lo, hi = keys[0], keys[-1]
    edges = [2 ** (b / LOG_BINS_PER_DOUBLING) - 1 for b in range(lo, hi + 2)]
    counts = [h["bins"].get(str(b), 0) for b in range(lo, hi + 1)]
    return edges, counts


def describe_lengths(h: dict[str, Any]) -> dict[str, Any]:
    return {"min": h.get("min"), "p5": log_hist_percentile(h, 0.05),
            "p50": log_hist_percentile(h, 0.5), "p95": log_hist_percentile(h, 0.95),
            "max": h.get("max"), "mean": (h["sum"] / h["count"]) if h.get("count") else None}


def fmt_num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if abs(v) >= 100 or v == int(v):
            return f"{v:,.0f}"
        return f"{v:.3g}"
    return f"{v:,}" if isinstance(v, int) else str(v)
