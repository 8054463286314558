"""Content statistics computed when a shard is written, and merged across shards.

Every statistic here is mergeable (histograms with fixed bins, counts, sums, min/max and a
quantile sketch), so a table version's statistics are the merge of its shards' without
rescanning rows. Histograms are for plots; percentiles come from the sketch (`Quantiles`):
exact while a column holds at most `SKETCH_K` values, otherwise within a stated rank error.
Non-finite values (NaN, ±inf) are counted apart, never mixed into sums or quantiles.
"""
from __future__ import annotations

import base64
import math
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.tables import stats_kind


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of a proportion k/n, to 4 places: honest for small sets and
    for proportions near 0 or 1, where the normal approximation is not. n = 0 → [0, 1]."""
    if not n:
        return [0.0, 1.0]
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [round(max(0.0, c - h), 4), round(min(1.0, c + h), 4)]

LOG_BINS_PER_DOUBLING = 8
TOP_CATEGORIES = 50
SKETCH_K = 200  # exact up to 200 values; beyond, ±1.3% rank (99% confidence), ≤ ~600 values kept


# ---- quantile sketch --------------------------------------------------------------------
class Quantiles:
    """A KLL sketch (Karnin, Lang, Liberty 2016): levels of sorted samples, an item at level h
    standing for 2**h values. A full level is compacted by keeping every other item (offset
    picked by a coin seeded from the sketch's own state, so equal inputs give equal sketches).
    Mergeable: merging shards' sketches is as accurate as sketching the whole column.
    """

    def __init__(self, k: int = SKETCH_K):
        self.k, self.n, self.levels = k, 0, [np.empty(0, np.float32)]

    def _capacity(self, h: int) -> int:
        return max(8, math.ceil(self.k * (2 / 3) ** (len(self.levels) - 1 - h)))

    def update(self, values: np.ndarray) -> "Quantiles":
        v = np.asarray(values, np.float32)
        self.n += int(v.size)
        self.levels[0] = np.concatenate([self.levels[0], v])
        self._compress()
        return self

    def merge(self, other: "Quantiles") -> "Quantiles":
        out = Quantiles(max(self.k, other.k))
        out.n = self.n + other.n
        depth = max(len(self.levels), len(other.levels))
        pad = lambda ls: ls + [np.empty(0, np.float32)] * (depth - len(ls))
        out.levels = [np.concatenate([a, b]) for a, b in zip(pad(self.levels), pad(other.levels))]
        out._compress()
        return out

    def _compress(self) -> None:
        while sum(map(len, self.levels)) > sum(self._capacity(h) for h in range(len(self.levels))):
            h = next(h for h, lv in enumerate(self.levels) if len(lv) >= self._capacity(h))
            if h + 1 == len(self.levels):
                self.levels.append(np.empty(0, np.float32))
            lv = np.sort(self.levels[h])
            coin = int(np.random.default_rng([self.n, h, len(lv)]).integers(2))
            rest, lv = (lv[:1], lv[1:]) if len(lv) % 2 else (lv[:0], lv)
            self.levels[h] = rest
            self.levels[h + 1] = np.concatenate([self.levels[h + 1], lv[coin::2]])

    @property
    def exact(self) -> bool:
        return len(self.levels) == 1

    def rank_error(self) -> float:
        """Normalised rank error of one quantile, 99% confidence (DataSketches' KLL bound); 0 if exact."""
        return 0.0 if self.exact else 2.296 / self.k ** 0.9723

    def quantile(self, q: float) -> float | None:
        if self.n == 0:
            return None
        if self.exact:
            return float(np.quantile(self.levels[0].astype(np.float64), q))
        items = np.concatenate(self.levels).astype(np.float64)
        weights = np.concatenate([np.full(len(lv), 2.0 ** h) for h, lv in enumerate(self.levels)])
        order = np.argsort(items, kind="stable")
        cum = np.cumsum(weights[order])
        i = int(np.searchsorted(cum, q * cum[-1], side="left"))
        return float(items[order][min(i, len(items) - 1)])

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "k": self.k,
                "levels": [base64.b64encode(np.sort(lv).astype("<f4").tobytes()).decode() for lv in self.levels]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Quantiles":
        out = cls(d["k"])
        out.n = d["n"]
        out.levels = [np.frombuffer(base64.b64decode(s), "<f4").astype(np.float32) for s in d["levels"]]
        return out


# ---- per-kind computations --------------------------------------------------------------
def _finite(values: Any) -> tuple[np.ndarray, int]:
    """Finite values (negative zero made zero) and how many were NaN or infinite."""
    v = np.asarray(values, dtype=np.float64).ravel()
    ok = np.isfinite(v)
    return v[ok] + 0.0, int(v.size - ok.sum())


def _numeric_summary(values: np.ndarray, nonfinite: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"count": 0, "sum": 0.0, "min": None, "max": None}
    if values.size:
        out.update({"count": int(values.size), "sum": float(values.sum()) + 0.0,
                    "min": float(values.min()), "max": float(values.max())})
    out["q"] = Quantiles().update(values).to_json()
    if nonfinite:
        out["nonfinite"] = nonfinite
    return out


def log_hist(values: np.ndarray) -> dict[str, Any]:
    """Histogram of non-negative values on log2(v+1) bins: {bin: count} plus exact summary."""
    v, bad = _finite(values)
    v = v[v >= 0]
    out = _numeric_summary(v, bad)
    bins = np.floor(np.log2(v + 1.0) * LOG_BINS_PER_DOUBLING).astype(np.int64)
    idx, counts = np.unique(bins, return_counts=True)
    out["bins"] = {str(int(i)): int(c) for i, c in zip(idx, counts)}
    return out


def fixed_hist(values: np.ndarray, lo: float, hi: float, nbins: int, closed: str = "left") -> dict[str, Any]:
    """`nbins` equal bins over [lo, hi]; values outside are counted in the first or last bin (and
    as `below`/`above`). Bins hold their lower edge (`closed="left"`, numpy's way) or their upper
    edge (`"right"`: a WER of exactly 0.2 is in the bin that ends at 0.2, with the rows a
    `wer <= 0.2` filter keeps). Right-closed edges are compared at the values' own precision, so a
    float32 0.2 sits on the float32 edge 0.2, not just above it."""
    raw = np.asarray(values)
    v, bad = _finite(values)
    out = _numeric_summary(v, bad)
    if closed == "right":
        dtype = raw.dtype if raw.dtype in (np.float16, np.float32) else np.float64
        edges = np.linspace(lo, hi, nbins + 1).astype(dtype).astype(np.float64)
        edges_v = np.clip(v, edges[0], edges[-1])
        idx = np.clip(np.searchsorted(edges, edges_v, side="left") - 1, 0, nbins - 1)
        counts = np.bincount(idx, minlength=nbins)
        out["closed"] = "right"
    else:
        counts, _ = np.histogram(np.clip(v, lo, hi), bins=nbins, range=(lo, hi))
    out.update({"lo": lo, "hi": hi, "counts": counts.astype(int).tolist(),
                "below": int((v < lo).sum()), "above": int((v > hi).sum())})
    return out


def hist_spec(kind: str) -> tuple[float, float, int, str]:
    """`hist:LO:HI:BINS[:right]` → lo, hi, bins, closed side."""
    parts = kind.split(":")
    return float(parts[1]), float(parts[2]), int(parts[3]), (parts[4] if len(parts) > 4 else "left")


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
            vals = col.drop_null().to_numpy() if col.null_count < len(col) else np.array([])
            out["hist"] = fixed_hist(vals, *hist_spec(kind))
        elif kind == "category":  # a list column: each of its values counts (the types a row holds)
            flat = pc.list_flatten(col) if pa.types.is_list(col.type) else col
            vc = pc.value_counts(flat.drop_null())
            out["values"] = {str(v): int(c) for v, c in zip(vc.field("values").to_pylist(),
                                                             vc.field("counts").to_pylist())}
        elif kind == "sum":
            vals = col.drop_null().to_numpy() if col.null_count < len(col) else np.array([])
            out["total"] = _numeric_summary(*_finite(vals))
    if "total" in out and "hist" in out:
        out["total"].pop("q")  # the same values: one sketch is enough
    return out


def table_stats(table: pa.Table, schema: pa.Schema | None = None) -> dict[str, Any]:
    """Content statistics of one shard, for the columns whose schema field asks for them.

    A kind may name a grouping column after `@` (`hist:0:1:20@voice`): the histogram is then
    also kept per value of that column (WER per TTS voice). `hist:0:1:20:right` puts a value on a
    bin edge in the bin below it (see `fixed_hist`).
    """
    schema = schema or table.schema
    cols: dict[str, dict[str, Any]] = {}
    for f in schema:
        kinds = stats_kind(f)
        if f.name not in table.column_names:
            continue
        if not kinds:
            if pa.types.is_nested(f.type):  # Iceberg keeps no metrics for these: their nulls, at least
                cols[f.name] = {"nulls": int(table.column(f.name).null_count)}
            continue
        plain = ",".join(k.split("@")[0] for k in kinds.split(","))
        cols[f.name] = column_stats(table.column(f.name), plain)
        for k in kinds.split(","):
            if "@" in k and k.startswith("hist:") and k.split("@")[1] in table.column_names:
                kind, group = k.split("@")
                keys = table.column(group).to_pylist()
                vals = table.column(f.name).to_pylist()
                dtype = np.float32 if pa.types.is_float32(f.type) else np.float64  # the column's precision
                by: dict[str, list[float]] = {}
                for key, v in zip(keys, vals):
                    if v is not None:
                        by.setdefault(str(key), []).append(v)
                cols[f.name]["hist_by"] = {key: fixed_hist(np.array(v, dtype), *hist_spec(kind))
                                           for key, v in by.items()}
    return {"rows": table.num_rows, "columns": cols}


# ---- merging --------------------------------------------------------------------------
def _merge_summary(a: dict, b: dict) -> dict:
    out = {"count": a["count"] + b["count"], "sum": a["sum"] + b["sum"]}
    if "q" in a and "q" in b:  # stats written before sketches existed have none: no quantiles then
        out["q"] = Quantiles.from_json(a["q"]).merge(Quantiles.from_json(b["q"])).to_json()
    if a.get("nonfinite", 0) + b.get("nonfinite", 0):
        out["nonfinite"] = a.get("nonfinite", 0) + b.get("nonfinite", 0)
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
        if a.get("closed") or b.get("closed"):  # "right"; shards written before it say nothing (left)
            out["closed"] = a.get("closed") if a.get("closed") == b.get("closed") else "mixed"
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
            counts: Counter[str] = Counter(col["values"])
            top = counts.most_common(TOP_CATEGORIES)
            other = sum(col["values"].values()) - sum(c for _, c in top)
            col["values"] = dict(top) | {"(other)": other}
        out["columns"][name] = col
    return out


# ---- reading ----------------------------------------------------------------------------
def quantile(h: dict[str, Any], q: float) -> float | None:
    """The q-quantile (0..1) of a summary: from its sketch (exact when small); the exact
    min/max at the ends. Stats written before sketches fall back to their histogram."""
    if not h.get("count"):
        return None
    if q <= 0 or q >= 1:
        return h["min"] if q <= 0 else h["max"]
    if "q" in h:
        v = Quantiles.from_json(h["q"]).quantile(q)
    elif "bins" in h:
        v = log_hist_percentile(h, q)
    else:
        v = fixed_hist_percentile(h, q)
    return None if v is None else float(min(max(v, h["min"]), h["max"])) + 0.0


def rank_error(h: dict[str, Any]) -> float | None:
    """The rank error of `quantile(h, ·)`: 0.0 exact, a fraction, or None (histogram fallback)."""
    if not h.get("count"):
        return 0.0
    return Quantiles.from_json(h["q"]).rank_error() if "q" in h else None


def fmt_error(err: float | None) -> str:
    return "exact" if err == 0 else "histogram" if err is None else f"±{err:.1%} rank"


def log_hist_percentile(h: dict[str, Any], q: float) -> float | None:
    """Approximate q-quantile (0..1) from a log histogram (old stats without a sketch)."""
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
    """Approximate q-quantile of a fixed-bin histogram (old stats without a sketch)."""
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


def describe(h: dict[str, Any], qs: tuple[float, ...] = (0.05, 0.5, 0.95)) -> dict[str, Any]:
    """min, percentiles, max, mean and the percentiles' rank error of a numeric summary."""
    out = {"min": h.get("min")} | {f"p{round(q * 100)}": quantile(h, q) for q in qs}
    return out | {"max": h.get("max"), "mean": (h["sum"] / h["count"]) if h.get("count") else None,
                  "count": h.get("count", 0), "rank_error": rank_error(h)}


def percentiles(content: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every summary's `describe`, keyed `column.unit` or `column[group]`: the quantiles a
    machine reading `curate stats --json` wants, with their rank error."""
    out = {}
    for name, c in (content or {}).get("columns", {}).items():
        for unit in ("chars", "words", "hist", "total"):
            if unit in c and "q" in c[unit]:
                out[f"{name}.{unit}"] = describe(c[unit], (0.05, 0.1, 0.5, 0.9, 0.95))
        for key, h in (c.get("hist_by") or {}).items():
            out[f"{name}[{key}]"] = describe(h, (0.05, 0.1, 0.5, 0.9, 0.95))
    return out


def fmt_num(v: Any) -> str:
    """A number for people: no `-0`, thousands separators, 3 significant digits below 100."""
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        s = f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"
        return "0" if s in ("-0", "0", "-0.0") else s
    return f"{v:,}" if isinstance(v, int) else str(v)
