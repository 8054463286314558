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


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left", show_lines=False)
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*[st.fmt_num(v) if not isinstance(v, str) else v for v in r])
    return t


# ---- collecting ------------------------------------------------------------------------
def collect(store: Store, ref: str, shards: bool = True) -> dict[str, Any]:
    """Everything `curate stats` shows, as plain data (the `--json` output)."""
    t, snap = store.snapshot(ref)
    name = ref.partition("@")[0]
    props = store.properties(f"{name}@{snap.snapshot_id}")
    files = store.files(f"{name}@{snap.snapshot_id}")
    out: dict[str, Any] = {
        "table": name, "snapshot_id": snap.snapshot_id, "run_id": props.get("run_id"),
        "pipeline": props.get("pipeline"), "git_commit": props.get("git_commit"),
        "tags": sorted(k for k, v in t.metadata.refs.items() if v.snapshot_id == snap.snapshot_id and k != "main"),
        "rows": int(sum(files.column("record_count").to_pylist())) if files.num_rows else 0,
        "bytes": int(sum(files.column("file_size_in_bytes").to_pylist())) if files.num_rows else 0,
        "files": files.num_rows, "accounting": props.get("accounting"), "content": props.get("stats"),
        "content_scored": props.get("stats_scored"),
        "columns": _column_metadata(files), "shards": [],
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
                           if v.get("lower_bound") is not None and not isinstance(v["lower_bound"], bytes)},
                "content": content,
            })
    return out


def _column_metadata(files) -> list[dict[str, Any]]:
    """Per column over all files: null count and min/max bounds, from manifests only."""
    cols: dict[str, dict[str, Any]] = {}
    if not files.num_rows:
        return []
    for m in files.column("readable_metrics").to_pylist():
        for c, v in (m or {}).items():
            agg = cols.setdefault(c, {"column": c, "nulls": 0, "values": 0, "min": None, "max": None, "bytes": 0})
            agg["nulls"] += v.get("null_value_count") or 0
            agg["values"] += v.get("value_count") or 0
            agg["bytes"] += v.get("column_size") or 0
            lo, hi = v.get("lower_bound"), v.get("upper_bound")
            if lo is not None and not isinstance(lo, bytes):
                agg["min"] = lo if agg["min"] is None else min(agg["min"], lo)
            if hi is not None and not isinstance(hi, bytes):
                agg["max"] = hi if agg["max"] is None else max(agg["max"], hi)
    return list(cols.values())


# ---- terminal --------------------------------------------------------------------------
def _short(v: Any, n: int = 24) -> str:
    s = str(v).replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"


def print_run(result) -> None:
    acc = result.accounting
    console.print(f"[bold]published[/bold] {result.output}@{result.snapshot_id}  run {result.run_id}  "
                  f"({result.processed_shards} shards processed, {result.resumed_shards} resumed; "
                  f"{acc['rows_in']:,} rows in = {acc['kept']:,} kept + {acc['rejected']:,} rejected)")


def print_accounting(acc: dict[str, Any] | None) -> None:
    if not acc:
        return
    rows = [[s["stage"], s["rows_in"], s["rows_out"], s["rejected"],
             ", ".join(f"{k}={v}" for k, v in s["reasons"].items())] for s in acc["stages"]]
    head = (f"accounting: {acc['rows_in']:,} in = {acc['kept']:,} kept + {acc['rejected']:,} rejected"
            if "unit" not in acc else  # a derived table: its source's units, used or not (and why)
            f"accounting: {acc['rows_in']:,} {acc['unit']} in = {acc['kept']:,} used + {acc['rejected']:,} not used"
            f" → {acc.get('rows_out', acc['kept']):,} rows")
    console.print(_table(head,
                         ["stage", "in", "out", "rejected", "reasons"], rows))


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
        console.print(_table("shards (from table metadata; lengths from shard footers)",
                             ["file", "rows", "bytes", "null cells", "chars p50", "chars max"], rows))
    console.print(_table("columns (from table metadata, no scan)", ["column", "values", "nulls", "bytes", "min", "max"],
                         [[c["column"], c["values"], c["nulls"], c["bytes"], _short(c["min"]), _short(c["max"])]
                          for c in data["columns"]]))
    print_content(data["content"] or {}, data.get("content_scored"))
    print_accounting(data["accounting"])
    return data


def _first_text_stats(content: dict[str, Any] | None) -> dict[str, Any]:
    for col in (content or {}).get("columns", {}).values():
        if "chars" in col:
            return st.describe_lengths(col["chars"])
    return {}


def print_content(content: dict[str, Any], scored: dict[str, Any] | None = None) -> None:
    cols = content.get("columns", {})
    scored_cols = (scored or {}).get("columns", {})
    lengths = []
    for name, c in cols.items():
        for unit in ("chars", "words"):
            if unit in c:
                d = st.describe_lengths(c[unit])
                lengths.append([f"{name} {unit}", d["min"], d["p5"], d["p50"], d["p95"], d["max"], d["mean"]])
    if lengths:
        console.print(_table("lengths (content stats written with each shard)",
                             ["column", "min", "p5", "p50", "p95", "max", "mean"], lengths))
    for name, c in cols.items():
        if "hist" in c:
            h = c["hist"]
            n = len(h["counts"])
            step = (h["hi"] - h["lo"]) / n
            bars = _hist_bar(h["counts"])
            rows = [[f"{h['lo'] + i * step:.3g}–{h['lo'] + (i + 1) * step:.3g}", cnt, bars[i]]
                    for i, cnt in enumerate(h["counts"]) if cnt or i in (0, n - 1)]
            console.print(_table(f"{name} histogram (below {h['below']}, above {h['above']})",
                                 ["bin", "rows", ""], rows))
        if c.get("hist_by"):
            all_by = scored_cols.get(name, {}).get("hist_by") or c["hist_by"]
            rows = []
            for key, h in sorted(all_by.items()):
                kept = c["hist_by"].get(key, {"count": 0})["count"]
                rows.append([key, h["count"], kept, f"{kept / h['count']:.0%}" if h["count"] else "-",
                             st.fixed_hist_percentile(h, 0.5), st.fixed_hist_percentile(h, 0.9),
                             (h["sum"] / h["count"]) if h["count"] else None])
            console.print(_table(f"{name} by group, over every scored row (kept and rejected)",
                                 ["group", "scored", "kept", "kept %", "p50", "p90", "mean"], rows))
        if "values" in c:
            vals = sorted(c["values"].items(), key=lambda kv: -kv[1])[:15]
            bars = _hist_bar([v for _, v in vals])
            console.print(_table(f"{name} values", ["value", "rows", ""],
                                 [[_short(k, 40), v, b] for (k, v), b in zip(vals, bars)]))
        if "total" in c:
            tot = c["total"]
            extra = f" ({tot['sum'] / 3600:.3f} h)" if name.startswith("duration") else ""
            console.print(f"{name}: total {st.fmt_num(tot['sum'])}{extra} over {tot['count']:,} rows")


# ---- plots -----------------------------------------------------------------------------
def figure(data: dict[str, Any]):
    """One panel per histogram a person would rather look at than read."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for name, c in (data.get("content") or {}).get("columns", {}).items():
        for unit in ("chars", "words"):
            if unit in c and c[unit].get("bins"):
                panels.append(("log", f"{name}: {unit} per row", c[unit]))
        if "hist" in c and c["hist"]["count"]:
            panels.append(("fixed", f"{name}", c["hist"]))
        scored_by = ((data.get("content_scored") or {}).get("columns", {}).get(name) or {}).get("hist_by")
        if scored_by or c.get("hist_by"):
            panels.append(("fixed_by", f"{name} by group (all scored rows)", scored_by or c["hist_by"]))
        if "values" in c and len(c["values"]) > 1:
            panels.append(("bar", f"{name}", c["values"]))
    reasons = (data.get("accounting") or {}).get("rejects_by_reason") or {}
    if reasons:
        panels.append(("bar", "rejects by reason", reasons))
    n = max(1, len(panels))
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.2 * rows), squeeze=False)
    for ax, (kind, title, d) in zip(axes.flat, panels):
        if kind == "log":
            edges, counts = st.log_hist_edges(d)
            ax.stairs(counts, [max(e, 0.5) for e in edges], fill=True, alpha=0.7)
            ax.set_xscale("log")
            for q, style in ((0.5, "-"), (0.95, "--")):
                v = st.log_hist_percentile(d, q)
                if v:
                    ax.axvline(max(v, 0.5), color="k", linestyle=style, linewidth=1, label=f"p{int(q * 100)}={v:,.0f}")
            ax.legend(fontsize=8)
        elif kind == "fixed":
            import numpy as np
            edges = np.linspace(d["lo"], d["hi"], len(d["counts"]) + 1)
            ax.stairs(d["counts"], edges, fill=True, alpha=0.7)
        elif kind == "fixed_by":
            import numpy as np
            for key, h in sorted(d.items()):
                edges = np.linspace(h["lo"], h["hi"], len(h["counts"]) + 1)
                ax.stairs(h["counts"], edges, label=_short(key, 30), linewidth=1.5)
            ax.legend(fontsize=7)
        else:
            items = sorted(d.items(), key=lambda kv: -kv[1])[:12]
            ax.barh([_short(k, 28) for k, _ in items][::-1], [v for _, v in items][::-1])
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("rows" if kind != "bar" else "")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{data['table']}@{data['snapshot_id']}  ({data['rows']:,} rows)", fontsize=11)
    fig.tight_layout()
    return fig


def write_png(data: dict[str, Any], path: str) -> str:
    fig = figure(data)
    fig.savefig(path, dpi=110)
    return path


def write_html(data: dict[str, Any], path: str) -> str:
    buf = io.BytesIO()
    figure(data).savefig(buf, format="png", dpi=110)
    img = base64.b64encode(buf.getvalue()).decode()

    def table(title: str, cols: list[str], rows: list[list[Any]]) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(st.fmt_num(v) if not isinstance(v, str) else v)}</td>"
                                        for v in r) + "</tr>" for r in rows)
        return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>"

    acc = data.get("accounting") or {"stages": []}
    parts = [f"<h1>{html.escape(data['table'])}@{data['snapshot_id']}</h1>",
             f"<p>rows {data['rows']:,} · files {data['files']} · {data['bytes'] / 1e6:.2f} MB · run "
             f"{html.escape(str(data['run_id']))} · pipeline {html.escape(str(data['pipeline']))} · commit "
             f"{html.escape(str(data['git_commit']))}</p>",
             f'<img src="data:image/png;base64,{img}" alt="histograms">',
             table("accounting", ["stage", "in", "out", "rejected", "reasons"],
                   [[s["stage"], s["rows_in"], s["rows_out"], s["rejected"],
                     ", ".join(f"{k}={v}" for k, v in s["reasons"].items())] for s in acc["stages"]]),
             table("shards", ["file", "rows", "bytes", "null cells"],
                   [[s["file"], s["rows"], s["bytes"], sum(s["nulls"].values())] for s in data["shards"]]),
             table("columns", ["column", "values", "nulls", "min", "max"],
                   [[c["column"], c["values"], c["nulls"], _short(c["min"], 40), _short(c["max"], 40)]
                    for c in data["columns"]])]
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1em}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child{text-align:left}")
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
    console.print(_table("reasoning data", ["", "count", "note"], rows))
    console.print("published " + "  ".join(f"{k}@{v}" for k, v in snaps.items()))
