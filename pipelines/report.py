"""Readable reports of runs and table versions: terminal tables, JSON, and HTML/PNG plots."""
from __future__ import annotations

import base64
import html
import io
import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from schemas import stats as st
from schemas.store import Store

# Wide enough for snapshot ids when piped; a terminal uses its own width.
console = Console(width=None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160")))


def rich_table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left", show_lines=False)
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*[st.fmt_num(v) if not isinstance(v, str) else v for v in r])
    return t


# ---- collecting ------------------------------------------------------------------------
TOP_N = 15  # bars per category panel; the rest is one "other" bar, never dropped


def collect(store: Store, ref: str, shards: bool = True) -> dict[str, Any]:
    """Everything `curate stats` shows, as plain data (the `--json` output)."""
    t, snap = store.snapshot(ref)
    name = ref.partition("@")[0]
    props = store.properties(f"{name}@{snap.snapshot_id}")
    files = store.files(f"{name}@{snap.snapshot_id}")
    out: dict[str, Any] = {
        "table": name, "snapshot_id": snap.snapshot_id, "run_id": props.get("run_id"),
        "pipeline": props.get("pipeline"), "git_commit": props.get("git_commit"), "role": props.get("role"),
        "tags": sorted(k for k, v in t.metadata.refs.items() if v.snapshot_id == snap.snapshot_id and k != "main"),
        "rows": int(sum(files.column("record_count").to_pylist())) if files.num_rows else 0,
        "bytes": int(sum(files.column("file_size_in_bytes").to_pylist())) if files.num_rows else 0,
        "files": files.num_rows, "accounting": props.get("accounting"), "content": props.get("stats"),
        "content_scored": props.get("stats_scored"), "percentiles": st.percentiles(props.get("stats")),
        "columns": _column_metadata(files, props.get("stats")), "shards": [],
        "thresholds": thresholds(props.get("config")),
    }
    if shards:
        metrics = files.column("readable_metrics").to_pylist() if files.num_rows else []
        for path, rows, size, m in zip(files.column("file_path").to_pylist(),
                                       files.column("record_count").to_pylist(),
                                       files.column("file_size_in_bytes").to_pylist(), metrics):
            content = store.shard_stats(path)
            out["shards"].append({
                "file": os.path.basename(path), "path": path, "rows": rows, "bytes": size,
                "nulls": {c: v["null_value_count"] for c, v in (m or {}).items() if v.get("null_value_count")},
                "bounds": {c: [v["lower_bound"], v["upper_bound"]] for c, v in (m or {}).items()
                           if _is_number(v.get("lower_bound"))},
                "content": content,
            })
    return out


_SIGN = {"<=": "≤", ">=": "≥"}
# A score column, the stage and parameter that filter on it, and the side of it that is kept.
THRESHOLDS = {"wer": ("wer_filter", "max_wer", "<="), "quality_score": ("quality", "threshold", ">=")}


def thresholds(config: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The filter threshold on each score column, from the run's resolved stage parameters:
    {column: {"param", "value", "kept": "<=" or ">="}}."""
    out = {}
    stages = {s.get("name"): s.get("params") or {} for s in (config or {}).get("stages", [])}
    for col, (stage_name, param, kept) in THRESHOLDS.items():
        value = stages.get(stage_name, {}).get(param)
        if _is_number(value):
            out[col] = {"param": param, "value": float(value), "kept": kept}  # type: ignore[arg-type]  # a number
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _column_metadata(files, content: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per column over all files: null count and min/max bounds, from manifests only.

    Iceberg keeps text bounds as 16-character truncated prefixes (an upper bound's last
    character bumped), which read like values but are not: only numeric bounds are kept.
    Nested columns (structs, lists) have no manifest metrics at all; their null counts come
    from the content stats written with each shard where there are any, else stay unknown.
    """
    cols: dict[str, dict[str, Any]] = {}
    if not files.num_rows:
        return []
    rows = int(sum(files.column("record_count").to_pylist()))
    for m in files.column("readable_metrics").to_pylist():
        for c, v in (m or {}).items():
            agg = cols.setdefault(c, {"column": c, "nulls": 0, "values": 0, "min": None, "max": None, "bytes": 0,
                                      "kind": None})
            if v.get("value_count") is None and v.get("column_size") is None:
                agg["kind"] = agg["kind"] or "nested"
                continue
            agg["nulls"] += v.get("null_value_count") or 0
            agg["values"] += v.get("value_count") or 0
            agg["bytes"] += v.get("column_size") or 0
            lo, hi = v.get("lower_bound"), v.get("upper_bound")
            if isinstance(lo, str) or isinstance(hi, str):
                agg["kind"] = "text"
            elif isinstance(lo, bytes) or isinstance(hi, bytes):
                agg["kind"] = "binary"
            else:
                agg["kind"] = agg["kind"] if agg["kind"] not in (None, "nested") else "number"
                if _is_number(lo):
                    agg["min"] = lo + 0.0 if agg["min"] is None else min(agg["min"], lo + 0.0)
                if _is_number(hi):
                    agg["max"] = hi + 0.0 if agg["max"] is None else max(agg["max"], hi + 0.0)
    known = (content or {}).get("columns", {})
    for agg in cols.values():
        if agg["kind"] == "nested":
            nulls = known.get(agg["column"], {}).get("nulls")
            agg.update({"nulls": nulls, "values": None if nulls is None else rows - nulls, "bytes": None})
    return list(cols.values())


# ---- rows shared by the terminal and HTML reports --------------------------------------
def column_rows(data: dict[str, Any]) -> list[list[Any]]:
    out = []
    for c in data["columns"]:
        if c["kind"] == "nested":
            out.append([c["column"], c["values"], c["nulls"], "-", "nested", "", ""])
        elif c["kind"] == "number":
            out.append([c["column"], c["values"], c["nulls"], c["bytes"], "number", c["min"], c["max"]])
        else:
            out.append([c["column"], c["values"], c["nulls"], c["bytes"], c["kind"] or "-", "", ""])
    return out


COLUMN_HEAD = ["column", "values", "nulls", "bytes", "type", "min", "max"]
COLUMN_NOTE = ("text bounds are not shown (Iceberg keeps 16-character truncated prefixes); nested columns "
               "have no per-column metadata: their nulls come from the content stats, '-' if unknown")


def length_rows(content: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, c in (content or {}).get("columns", {}).items():
        for unit in ("chars", "words"):
            if unit in c:
                d = st.describe(c[unit])
                rows.append([f"{name} {unit}", d["count"], d["min"], d["p5"], d["p50"], d["p95"], d["max"],
                             d["mean"], st.fmt_error(d["rank_error"])])
    return rows


LENGTH_HEAD = ["column", "rows", "min", "p5", "p50", "p95", "max", "mean", "percentiles"]
LENGTH_NOTE = (f"percentiles are exact up to {st.SKETCH_K} values, beyond from a KLL quantile sketch merged over "
               "shards: '±x% rank' means the true rank of the value shown is within x% of the one asked for")


def group_rows(data: dict[str, Any], name: str) -> tuple[str, list[str], list[list[Any]]]:
    """Per-group percentiles (WER per voice). Over every scored row where the run kept the
    rejected rows' scores too (kept share shown); a rejects table has no kept share."""
    c = (data.get("content") or {}).get("columns", {}).get(name, {})
    scored = ((data.get("content_scored") or {}).get("columns", {}).get(name) or {}).get("hist_by")
    by = c.get("hist_by") or {}
    rows = []
    if scored and data.get("role") != "rejects":
        for key, h in sorted(scored.items()):
            d = st.describe(h, (0.5, 0.9))
            kept = by.get(key, {"count": 0})["count"]
            rows.append([key, h["count"], kept, f"{kept / h['count']:.0%}" if h["count"] else "-",
                         d["p50"], d["p90"], d["mean"], st.fmt_error(d["rank_error"])])
        return (f"{name} by group, over every scored row (kept and rejected)",
                ["group", "scored", "kept", "kept %", "p50", "p90", "mean", "percentiles"], rows)
    what = "rejected rows" if data.get("role") == "rejects" else "rows"
    for key, h in sorted(by.items()):
        d = st.describe(h, (0.5, 0.9))
        rows.append([key, h["count"], d["p50"], d["p90"], d["mean"], st.fmt_error(d["rank_error"])])
    return f"{name} by group, over the {what} of this table", ["group", what, "p50", "p90", "mean", "percentiles"], rows


def top_n(values: dict[str, int], n: int = TOP_N) -> list[tuple[str, int]]:
    """The n largest, then one "other (k more)" entry holding the rest: nothing silently cut."""
    items = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(items) <= n + 1:
        return items
    head, rest = items[:n], items[n:]
    return head + [(f"other ({len(rest)} more)", sum(v for _, v in rest))]


ACCOUNTING_COLUMNS = ["stage", "in", "out", "rejected", "worker s", "share", "reasons"]


def accounting_rows(acc: dict[str, Any] | None) -> list[list[Any]]:
    """Rows per stage and where the time went (worker seconds summed over shards; model
    loading and queueing excluded)."""
    stages = (acc or {}).get("stages", [])
    total = sum(s.get("seconds", 0.0) for s in stages)
    return [[s["stage"], s["rows_in"], s["rows_out"], s["rejected"],
             f"{s['seconds']:.2f}" if "seconds" in s else "", f"{s['seconds'] / total:.0%}" if total and "seconds" in s
             else "", ", ".join(f"{k}={v}" for k, v in s["reasons"].items())] for s in stages]


def _accounting_head(acc: dict[str, Any]) -> str:
    if "unit" in acc:  # a derived table: its source's units, used or not (and why)
        return (f"accounting: {acc['rows_in']:,} {acc['unit']} in = {acc['kept']:,} used + {acc['rejected']:,}"
                f" not used → {acc.get('rows_out', acc['kept']):,} rows")
    return f"accounting: {acc['rows_in']:,} in = {acc['kept']:,} kept + {acc['rejected']:,} rejected"


def _hist_range(h: dict[str, Any]) -> tuple[int, int]:
    """First and last bin holding rows (the whole range if none do)."""
    nz = [i for i, c in enumerate(h["counts"]) if c]
    return (nz[0], nz[-1]) if nz else (0, len(h["counts"]) - 1)


# ---- terminal --------------------------------------------------------------------------
def _short(v: Any, n: int = 24) -> str:
    s = str(v).replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"


def print_run(result) -> None:
    acc = result.accounting
    console.print(f"[bold]published[/bold] {result.output}@{result.snapshot_id}  run {result.run_id}  "
                  f"({result.processed_shards} shards processed, {result.resumed_shards} resumed; "
                  f"{acc['rows_in']:,} rows in = {acc['kept']:,} kept + {acc['rejected']:,} rejected)")
    print_accounting(acc)


def print_accounting(acc: dict[str, Any] | None) -> None:
    if not acc:
        return
    console.print(rich_table(_accounting_head(acc), ACCOUNTING_COLUMNS, accounting_rows(acc)))


def _hist_bar(counts: list[int], width: int = 30) -> list[str]:
    top = max(counts) if counts else 0
    return ["█" * (round(width * c / top) if top else 0) for c in counts]


def print_stats(store: Store, ref: str, shards: bool = True) -> dict[str, Any]:
    data = collect(store, ref, shards)
    tags = f" tags: {', '.join(data['tags'])}" if data["tags"] else ""
    console.print(f"[bold]{data['table']}@{data['snapshot_id']}[/bold]{tags}  rows {data['rows']:,}  "
                  f"files {data['files']}  {data['bytes'] / 1e6:.2f} MB  run {data['run_id']}  "
                  f"pipeline {data['pipeline']}")
    if shards and data["shards"]:
        rows = []
        for s in data["shards"]:
            text = _first_text_stats(s["content"])
            rows.append([_short(s["file"], 40), s["rows"], s["bytes"], sum(s["nulls"].values()),
                         text.get("p50"), text.get("max")])
        console.print(rich_table("shards (from table metadata; lengths from shard footers)",
                             ["file", "rows", "bytes", "null cells", "chars p50", "chars max"], rows))
    if data["columns"]:
        console.print(rich_table("columns (from table metadata, no scan)", COLUMN_HEAD, column_rows(data)))
        console.print(f"[dim]{COLUMN_NOTE}[/dim]")
    print_content(data["content"] or {}, data.get("content_scored"), data)
    print_accounting(data["accounting"])
    return data


def _first_text_stats(content: dict[str, Any] | None) -> dict[str, Any]:
    for col in (content or {}).get("columns", {}).values():
        if "chars" in col:
            return st.describe(col["chars"])
    return {}


def print_content(content: dict[str, Any], scored: dict[str, Any] | None = None,
                  data: dict[str, Any] | None = None) -> None:
    data = data or {"content": content, "content_scored": scored}
    cols = content.get("columns", {})
    lengths = length_rows(content)
    if lengths:
        console.print(rich_table("lengths (content stats written with each shard)", LENGTH_HEAD, lengths))
        console.print(f"[dim]{LENGTH_NOTE}[/dim]")
    for name, c in cols.items():
        if "hist" in c:
            h = c["hist"]
            n = len(h["counts"])
            step = (h["hi"] - h["lo"]) / n
            first, last = _hist_range(h)
            bars = _hist_bar(h["counts"])
            rows = [[_bin_label(h, h["lo"] + i * step, h["lo"] + (i + 1) * step, i), h["counts"][i], bars[i]]
                    for i in range(first, last + 1)]
            d = st.describe(h, (0.1, 0.5, 0.9))
            extra = out_of_range(h)
            extra += f"; {h['nonfinite']} NaN/inf not counted" if h.get("nonfinite") else ""
            thr = (data.get("thresholds") or {}).get(name)
            extra += f"; kept: {name} {_SIGN[thr['kept']]} {st.fmt_num(thr['value'])}" if thr else ""
            console.print(rich_table(f"{name} histogram ({d['count']:,} rows{extra})", ["bin", "rows", ""], rows))
            console.print(f"{name}: p10 {st.fmt_num(d['p10'])} · p50 {st.fmt_num(d['p50'])} · p90 "
                          f"{st.fmt_num(d['p90'])} ({st.fmt_error(d['rank_error'])})")
        if c.get("hist_by"):
            title, head, rows = group_rows(data, name)
            console.print(rich_table(title, head, rows))
        if "values" in c:
            vals = top_n(c["values"])
            bars = _hist_bar([v for _, v in vals])
            console.print(rich_table(f"{name} values ({len(c['values'])} distinct)", ["value", "rows", ""],
                                 [[_short(k, 40), v, b] for (k, v), b in zip(vals, bars)]))
        if "total" in c:
            tot = c["total"]
            extra = f" ({tot['sum'] / 3600:.3f} h)" if name.startswith("duration") else ""
            console.print(f"{name}: total {st.fmt_num(tot['sum'])}{extra} over {tot['count']:,} rows")


def _bin_label(h: dict[str, Any], a: float, b: float, i: int) -> str:
    """`0.15–0.2` for bins that hold their lower edge; `(0.15, 0.2]` where they hold the upper."""
    if h.get("closed") == "right":
        return f"{'[' if i == 0 else '('}{a:.3g}, {b:.3g}]"
    return f"{a:.3g}–{b:.3g}"


def out_of_range(h: dict[str, Any]) -> str:
    """Values outside a histogram's range, said plainly: they are counted in its end bins."""
    def past(v: float, edge: float) -> str:  # enough digits to tell 1.0000001 from 1
        return next((f"{v:.{p}g}" for p in range(6, 10) if float(f"{v:.{p}g}") != edge), repr(v))
    parts = []
    if h.get("below"):
        parts.append(f"{h['below']:,} below {st.fmt_num(h['lo'])} (min {past(h['min'], h['lo'])}) in the first bin")
    if h.get("above"):
        parts.append(f"{h['above']:,} above {st.fmt_num(h['hi'])} (max {past(h['max'], h['hi'])}) in the last bin")
    return "".join(f"; {p}" for p in parts)


# ---- plots -----------------------------------------------------------------------------
def _panels(data: dict[str, Any]) -> tuple[list[tuple[str, str, Any]], tuple[str, dict] | None]:
    """The main panels, and the per-group histograms drawn as small multiples."""
    panels: list[tuple[str, str, Any]] = []
    acc = data.get("accounting")
    if acc and acc.get("stages"):
        panels.append(("accounting", _accounting_head(acc), acc))
    groups = None
    for name, c in (data.get("content") or {}).get("columns", {}).items():
        for unit in ("chars", "words"):
            if unit in c and c[unit].get("bins"):
                panels.append(("log", f"{name}: {unit} per row", c[unit]))
        if "hist" in c and c["hist"]["count"]:
            thr = (data.get("thresholds") or {}).get(name)
            scored = ((data.get("content_scored") or {}).get("columns", {}).get(name) or {}).get("hist")
            if thr and scored and scored.get("count") and data.get("role") != "rejects":
                # the rows on both sides of the threshold, coloured by the side the filter keeps
                panels.append(("fixed", f"{name}: every scored row (kept and rejected)", (name, scored, thr)))
            else:
                panels.append(("fixed", name, (name, c["hist"], thr)))
        if c.get("hist_by") and groups is None:
            groups = name, c["hist_by"]
        if "values" in c and len(c["values"]) > 1:
            panels.append(("bar", f"{name} ({len(c['values'])} distinct)", c["values"]))
    reasons = (acc or {}).get("rejects_by_reason") or {}
    if reasons and data.get("role") != "rejects":  # a rejects table plots its drop_reason column already
        panels.append(("bar", f"rejects by reason ({len(reasons)} reasons, {sum(reasons.values()):,} rows)", reasons))
    return panels, groups


def _draw_accounting(ax, acc: dict[str, Any]) -> None:
    stages = acc["stages"]
    labels = [s["stage"] for s in stages][::-1]
    out = [s["rows_out"] for s in stages][::-1]
    rej = [s["rejected"] for s in stages][::-1]
    lost = [s.get("lost", 0) for s in stages][::-1]
    ax.barh(labels, out, color="tab:blue", label="passed on")
    ax.barh(labels, rej, left=out, color="tab:red", label="rejected")
    if any(lost):
        ax.barh(labels, lost, left=[a + b for a, b in zip(out, rej)], color="tab:gray", label="lost")
    top = max(s["rows_in"] for s in stages) or 1
    for y, (o, r) in enumerate(zip(out, rej)):
        ax.text(o + r + top * 0.01, y, f"{o:,}" + (f" + {r:,} rej." if r else ""), va="center", fontsize=7)
    ax.set_xlim(0, top * 1.3)
    ax.set_xlabel("rows")
    ax.legend(fontsize=7, loc="lower right")
    ax.tick_params(axis="y", labelsize=7)


def _fitted_edges(h: dict[str, Any], include: float | None = None):
    """The bins holding rows, one empty bin either side, widened to show `include` (a threshold)."""
    import math

    import numpy as np
    first, last = _hist_range(h)
    n = len(h["counts"])
    step = (h["hi"] - h["lo"]) / n
    lo, hi = max(0, first - 1), min(n, last + 2)
    if include is not None and h["lo"] <= include <= h["hi"]:
        k = (include - h["lo"]) / step
        lo, hi = min(lo, max(0, math.floor(k + 1e-9) - 1)), max(hi, min(n, math.ceil(k - 1e-9) + 1))
    return np.linspace(h["lo"] + lo * step, h["lo"] + hi * step, hi - lo + 1), h["counts"][lo:hi]


def _sides(h: dict[str, Any], edges, counts, thr: dict[str, Any]) -> tuple[list[int], list[int], list[int]]:
    """Each bin's rows as kept, rejected, or (a bin the threshold cuts through) both, by the bin's
    edges and the side of them it holds (`closed`): with bins that hold their upper edge, a WER of
    exactly 0.2 is in the bar ending at 0.2, which `wer <= 0.2` keeps."""
    t, right = thr["value"], h.get("closed") == "right"
    tol = 1e-6 * (h["hi"] - h["lo"])
    kept, rejected, both = [], [], []
    for a, b, c in zip(edges[:-1], edges[1:], counts):
        if thr["kept"] == "<=":
            k = b <= t + tol
            r = a >= t - tol if right else a > t + tol
        else:
            k = a >= t - tol
            r = b < t - tol if right else b <= t + tol
        kept.append(c if k else 0)
        rejected.append(c if r and not k else 0)
        both.append(c if not k and not r else 0)
    return kept, rejected, both


def _draw_fixed(ax, name: str, h: dict[str, Any], thr: dict[str, Any] | None, legend: bool = True) -> None:
    """A fixed-bin histogram; with a filter threshold, its line and the bars coloured by side."""
    edges, counts = _fitted_edges(h, thr["value"] if thr else None)
    if not thr:
        ax.stairs(counts, edges, fill=True, alpha=0.7)
        return
    kept, rejected, both = _sides(h, edges, counts, thr)
    value = st.fmt_num(thr["value"])
    ax.stairs(kept, edges, fill=True, alpha=0.75, color="tab:blue", label=f"kept ({name} {_SIGN[thr['kept']]} {value})")
    if any(rejected):
        ax.stairs(rejected, edges, fill=True, alpha=0.75, color="tab:red", label="rejected")
    if any(both):
        ax.stairs(both, edges, fill=True, alpha=0.75, color="tab:gray", label="bin holds both")
    ax.axvline(thr["value"], color="tab:red", linestyle="-.", linewidth=1.5,
               label=f"{thr['param']} = {value}" if legend else None)


def _log_axis(ax) -> None:
    """Log x ticks at round numbers written out (60, 80, 100; not 6×10¹), few enough not to overlap."""
    import math

    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    lo, hi = ax.get_xlim()
    lo = max(lo, 1e-9)
    ticks: list[float] = []
    for subs in ((1, 2, 3, 4, 5, 6, 8), (1, 2, 3, 5), (1, 2, 5), (1, 3), (1,)):
        ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                 for m in subs if lo <= m * 10.0 ** k <= hi]
        if len(ticks) <= 6:
            break
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _quantile_lines(ax, h: dict[str, Any], qs=((0.5, "-"), (0.95, "--")), fmt: str = "{:,.3g}") -> None:
    err = st.fmt_error(st.rank_error(h))
    for q, style in qs:
        v = st.quantile(h, q)
        if v is not None:
            ax.axvline(v, color="k", linestyle=style, linewidth=1, label=f"p{round(q * 100)}={fmt.format(v)}")
    ax.legend(fontsize=7, title=err, title_fontsize=7)


def _draw_bar(ax, values: dict[str, int]) -> None:
    items = top_n(values)
    ax.barh([_short(k, 28) for k, _ in items][::-1], [v for _, v in items][::-1],
            color=["tab:gray" if k.startswith("other (") else "tab:blue" for k, _ in items][::-1])
    top = max(v for _, v in items)
    for y, (_, v) in enumerate(items[::-1]):
        ax.text(v + top * 0.01, y, f"{v:,}", va="center", fontsize=7)
    ax.set_xlim(0, top * 1.15)
    ax.tick_params(axis="y", labelsize=7)


def figure(data: dict[str, Any]):
    """The main panels in two columns; a per-group histogram as small multiples beneath."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels, groups = _panels(data)
    n = max(1, len(panels))
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    g_cols = 4
    g_rows = (len(groups[1]) + g_cols - 1) // g_cols if groups else 0
    main_h, g_h = 3.2 * rows, (1.9 * g_rows + 0.6 if groups else 0)
    fig = plt.figure(figsize=(12, main_h + g_h + 0.5), layout="constrained")
    subs: Any = fig.subfigures(2, 1, height_ratios=[main_h, g_h]) if groups else [fig]  # subfigures or the figure
    axes = subs[0].subplots(rows, cols, squeeze=False)
    for ax, (kind, title, d) in zip(axes.flat, panels):
        if kind == "accounting":
            _draw_accounting(ax, d)
        elif kind == "log":
            edges, counts = st.log_hist_edges(d)
            ax.stairs(counts, [max(e, 0.5) for e in edges], fill=True, alpha=0.7)
            ax.set_xscale("log")
            _log_axis(ax)
            _quantile_lines(ax, d, fmt="{:,.0f}")
            ax.set_ylabel("rows")
        elif kind == "fixed":
            name, h, thr = d
            _draw_fixed(ax, name, h, thr)
            _quantile_lines(ax, h)
            ax.set_xlabel(name)
            ax.set_ylabel("rows")
        else:
            _draw_bar(ax, d)
        ax.set_title(title, fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if groups:
        name, by = groups
        title, _, _ = group_rows(data, name)
        scored = ((data.get("content_scored") or {}).get("columns", {}).get(name) or {}).get("hist_by")
        by = scored if scored and data.get("role") != "rejects" else by
        gaxes = subs[1].subplots(g_rows, g_cols, squeeze=False, sharex=True, sharey=True)
        thr = (data.get("thresholds") or {}).get(name)
        at = thr["value"] if thr else None
        lo = min(_fitted_edges(h, at)[0][0] for h in by.values())
        hi = max(_fitted_edges(h, at)[0][-1] for h in by.values())
        for ax, (key, h) in zip(gaxes.flat, sorted(by.items(), key=lambda kv: st.quantile(kv[1], 0.5) or 0)):
            import numpy as np
            if thr:
                _draw_fixed(ax, name, h, thr, legend=False)
            else:
                ax.stairs(h["counts"], np.linspace(h["lo"], h["hi"], len(h["counts"]) + 1), fill=True, alpha=0.7)
            p50 = st.quantile(h, 0.5)
            if p50 is not None:
                ax.axvline(p50, color="k", linewidth=1)
            ax.set_title(f"{_short(key, 30)}  n={h['count']}  p50={st.fmt_num(p50)}", fontsize=7)
            ax.tick_params(labelsize=7)
        for ax in list(gaxes.flat)[len(by):]:
            ax.axis("off")
        gaxes[0][0].set_xlim(lo, hi)
        from matplotlib.ticker import MaxNLocator
        # shared: few ticks, none at the right edge, where it would run into the next panel's first
        gaxes[0][0].xaxis.set_major_locator(MaxNLocator(nbins=4, prune="upper"))
        for ax in gaxes[:, 0]:
            ax.set_ylabel("rows", fontsize=7)
        for col in range(g_cols):  # the lowest drawn panel of each column carries the x label
            drawn = [gaxes[r][col] for r in range(g_rows) if r * g_cols + col < len(by)]
            if drawn:
                drawn[-1].set_xlabel(name, fontsize=7)
                drawn[-1].xaxis.set_tick_params(labelbottom=True)
        line = "; black line: p50" + (f", red: {thr['param']} = {st.fmt_num(thr['value'])} (blue kept, red rejected)"
                                      if thr else "")
        subs[1].suptitle(f"{title}{line}", fontsize=9)
    fig.suptitle(f"{data['table']}@{data['snapshot_id']}  ({data['rows']:,} rows)", fontsize=11)
    return fig


def write_png(data: dict[str, Any], path: str) -> str:
    fig = figure(data)
    fig.savefig(path, dpi=110)
    return path


def write_html(data: dict[str, Any], path: str) -> str:
    buf = io.BytesIO()
    figure(data).savefig(buf, format="png", dpi=110)
    img = base64.b64encode(buf.getvalue()).decode()

    def table(ident: str, title: str, cols: list[str], rows: list[list[Any]], note: str = "") -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(st.fmt_num(v) if not isinstance(v, str) else v)}</td>"
                                        for v in r) + "</tr>" for r in rows)
        note = f"<p class=note>{html.escape(note)}</p>" if note else ""
        return (f'<section id="{ident}"><h2>{html.escape(title)}</h2>'
                f'<table><tr>{head}</tr>{body}</table>{note}</section>')

    acc = data.get("accounting")
    parts = [f"<h1>{html.escape(data['table'])}@{data['snapshot_id']}</h1>",
             f"<p id=summary>rows {data['rows']:,} · files {data['files']} · {data['bytes'] / 1e6:.2f} MB · run "
             f"{html.escape(str(data['run_id']))} · pipeline {html.escape(str(data['pipeline']))} · commit "
             f"{html.escape(str(data['git_commit']))}</p>",
             f'<section id="plots"><img src="data:image/png;base64,{img}" alt="plots of {html.escape(data["table"])}">'
             "</section>"]
    if acc:
        parts.append(table("accounting", _accounting_head(acc), ACCOUNTING_COLUMNS,
                           accounting_rows(acc)))
        reasons = acc.get("rejects_by_reason") or {}
        parts.append(table("rejects", f"rejects by reason ({len(reasons)} reasons)", ["reason", "rows"],
                           [[k, v] for k, v in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))]))
    lengths = length_rows(data.get("content") or {})
    if lengths:
        parts.append(table("lengths", "lengths", LENGTH_HEAD, lengths, LENGTH_NOTE))
    for name, c in (data.get("content") or {}).get("columns", {}).items():
        if c.get("hist_by"):
            title, head, rows = group_rows(data, name)
            parts.append(table(f"groups-{html.escape(name)}", title, head, rows))
    parts.append(table("shards", "shards", ["file", "rows", "bytes", "null cells"],
                       [[s["file"], s["rows"], s["bytes"], sum(s["nulls"].values())] for s in data["shards"]]))
    parts.append(table("columns", "columns", COLUMN_HEAD, column_rows(data), COLUMN_NOTE))
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1em}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}"
             "img{max-width:100%}.note{color:#666;font-size:small}")
    with open(path, "w") as f:
        f.write(f"<!doctype html><meta charset=utf-8><title>{html.escape(data['table'])}</title>"
                f"<style>{style}</style>{''.join(parts)}")
    return path


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, default=str)



def print_reasoning(counts: dict[str, dict[str, int]], snaps: dict[str, int]) -> None:
    """Where every sample went: verdicts, SFT rows, preference pairs."""
    s, f, p = counts["samples"], counts["sft"], counts["pairs"]
    rows = [["problems", f"{s['problems']:,}", ""],
            ["samples", f"{s['samples']:,}", f"generation errors {s['generation_errors']:,}"]]
    rows += [[k, f"{v:,}", f"{v / max(1, s['rows']):.1%} of samples"] for k, v in sorted(s.items())
             if k.startswith("verdict:")]
    rows += [["sft rows", f"{f['rows']:,}", f"duplicate correct answers {f.get('duplicate_answer', 0):,}"],
             ["preference pairs", f"{p['pairs']:,}",
              f"{p.get('prompts_with_pairs', 0):,} of {p.get('prompts', 0):,} prompts have a pair"]]
    console.print(rich_table("reasoning data", ["", "count", "note"], rows))
    console.print("published " + "  ".join(f"{k}@{v}" for k, v in snaps.items()))
