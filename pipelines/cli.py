"""`curate`: the command line over the store and the pipelines.

    curate tables                         list tables in the warehouse
    curate versions TABLE                 snapshots, tags, time, rows, parents
    curate versions models                models: imports, checkpoints, exports, lineage both ways
    curate stats TABLE[@VER]              shard/column metadata, content stats, rejects by reason
    curate diff A B                       rows, schema, column stats, ids added/removed
    curate show TABLE[@VER]               sample rows
    curate tag TABLE@VER NAME             name a version
    curate lineage TABLE[@VER]            run, config, code commit, inputs, models
    curate gc TABLE                       delete files no version refers to
    curate validate FILE --schema NAME    check a file against a table schema
    curate annotate [ARGS]                grade documents' educational value with an LLM
    curate train-classifier               train the fastText quality classifier (labels or grades)
    curate run PIPELINE [ARGS]            run pipelines/PIPELINE.py
    curate serve CHECKPOINT               the built-in model as an OpenAI-compatible endpoint
    curate train --table T@V --init CKPT  SFT of the built-in trainer on N Ray Train workers
"""
from __future__ import annotations

import importlib
import json
import os
import sys

import click
import pyarrow.compute as pc

from schemas import stats as st
from schemas.filesystem import work_dir
from schemas.store import Ref, Store, StoreError, VersionNotFound, catalog_options, default_warehouse


def _store(ctx: click.Context) -> Store:
    return Store(ctx.obj["warehouse"], ctx.obj["catalog"])


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


class _Group(click.Group):
    """Turns store lookups that fail into one clear line instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except VersionNotFound as e:
            _fail(str(e.args[0]) if e.args else str(e))
        except StoreError as e:  # a damaged data file, a bad name: named, in one line
            _fail(str(e))


@click.group(cls=_Group, help=__doc__.split("\n\n")[0], context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--warehouse", default=default_warehouse, show_default="./warehouse or $CURATE_WAREHOUSE",
              help="warehouse directory, or with a shared catalog an s3:// URI")
@click.option("--catalog", default=None, show_default="$CURATE_CATALOG, else SQLite in the warehouse",
              help="shared catalog: postgresql+psycopg://USER@HOST:PORT/DB, or JSON of pyiceberg catalog properties")
@click.pass_context
def main(ctx: click.Context, warehouse: str, catalog: str | None) -> None:
    ctx.ensure_object(dict)
    ctx.obj["warehouse"] = warehouse
    # Exported as CURATE_CATALOG: `curate run`/`annotate` pipelines and their Ray workers use it too.
    ctx.obj["catalog"] = catalog_options(catalog, warehouse)


@main.command()
@click.pass_context
def tables(ctx):
    """List the tables and their current row counts."""
    from pipelines.report import console, rich_table
    store = _store(ctx)
    rows = []
    for name in store.tables():
        vs = store.versions(name)
        cur = next((v for v in vs if v["current"]), None)
        rows.append([name, len(vs), cur["rows"] if cur else 0, cur["time"] if cur else "-",
                     ", ".join(t for v in vs for t in v["tags"])])
    console.print(rich_table(f"tables in {store.location}", ["table", "versions", "rows", "updated", "tags"], rows))


@main.command()
@click.argument("table")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--snapshots", is_flag=True, help="for `models`: its snapshots, as for any other table")
@click.pass_context
def versions(ctx, table, as_json, snapshots):
    """Snapshots of TABLE: id, parent, time, rows, tags, run and pipeline.

    `curate versions models` lists the model versions instead: imported bases (`curate model
    import`), trained checkpoints (`curate train`, each round of the loop) and Hugging Face exports
    (`curate model export`), oldest first, each with its lineage both ways: `from` (the checkpoint
    it was trained or exported from) and `trained on` (table versions), then `derived` (the
    checkpoints trained from it and its exports). A model whose files were since deleted or
    overwritten is marked [gone] / [replaced]."""
    if table == "models" and not snapshots:
        from pipelines.cli_model import print_model_versions
        return print_model_versions(_store(ctx), as_json)
    from pipelines.report import console, rich_table
    vs = _store(ctx).versions(table)
    if as_json:
        click.echo(json.dumps(vs, indent=2))
        return
    rows = [[("* " if v["current"] else "  ") + str(v["snapshot_id"]), str(v["parent_id"] or "-"), v["time"],
             v["operation"], v["rows"], v["files"], ", ".join(v["tags"]), v["run_id"] or "-", v["pipeline"] or "-"]
            for v in vs]
    console.print(rich_table(f"{table}: {_plural(len(vs), 'version')} (* current)",
                             ["snapshot", "parent", "time", "op", "rows", "files", "tags", "run", "pipeline"], rows))


@main.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="write an HTML report with plots")
@click.option("--png", "png_path", type=click.Path(dir_okay=False), help="write the histograms as a PNG")
@click.option("--shards/--no-shards", default=True, help="per-shard rows")
@click.pass_context
def stats(ctx, ref, as_json, html_path, png_path, shards):
    """Statistics of TABLE[@VERSION] without scanning rows: per-shard metadata, content stats
    written with each shard (lengths, histograms, values), and rejects by reason."""
    from pipelines import report
    store = _store(ctx)
    if as_json:
        data = report.collect(store, ref, shards)
        click.echo(report.to_json(data))
    else:
        data = report.print_stats(store, ref, shards)
    if html_path:
        click.echo(f"wrote {report.write_html(data, html_path)}", err=as_json)
    if png_path:
        click.echo(f"wrote {report.write_png(data, png_path)}", err=as_json)


def _resolve_pair(a: str, b: str) -> tuple[str, str]:
    """`diff t@1 t@2`, or `diff t@1 2` (same table), or `diff t 2` (current vs 2)."""
    ra, rb = Ref.parse(a), Ref.parse(b)
    if rb.version is None and "@" not in b and not b.isidentifier():
        rb = Ref(ra.table, b)
    elif rb.version is None and "@" not in b:
        rb = Ref(b, None)
    return str(ra), str(rb)


@main.command()
@click.argument("a")
@click.argument("b")
@click.option("--ids", "n_ids", default=5, show_default=True, help="sample ids to list per side")
@click.option("--json", "as_json", is_flag=True, help="the comparison as one JSON document (for scripts)")
@click.pass_context
def diff(ctx, a, b, n_ids, as_json):
    """Compare two versions: rows, schema, per-column stats, ids added and removed."""
    from pipelines.report import collect, console, rich_table
    store = _store(ctx)
    a, b = _resolve_pair(a, b)
    da, db = collect(store, a, shards=False), collect(store, b, shards=False)
    ta, sa = store.snapshot(a)
    tb, sb = store.snapshot(b)
    fa = {f.name: str(f.field_type) for f in ta.schemas()[sa.schema_id].fields}
    fb = {f.name: str(f.field_type) for f in tb.schemas()[sb.schema_id].fields}
    schema = {"added": sorted(set(fb) - set(fa)), "removed": sorted(set(fa) - set(fb)),
              "changed": sorted(c for c in set(fa) & set(fb) if fa[c] != fb[c])}
    # Distinct ids, not rows: a version holding one id twice has not added it twice.
    ids_a = pc.unique(store.read_arrow(a, ["id"]).column("id").combine_chunks()).sort()
    ids_b = pc.unique(store.read_arrow(b, ["id"]).column("id").combine_chunks()).sort()
    added = pc.filter(ids_b, pc.invert(pc.is_in(ids_b, value_set=ids_a)))
    removed = pc.filter(ids_a, pc.invert(pc.is_in(ids_a, value_set=ids_b)))
    col_rows = []
    meta_a = {c["column"]: c for c in da["columns"]}
    for c in db["columns"]:
        ca = meta_a.get(c["column"], {"nulls": 0})
        col_rows.append({"column": c["column"], "nulls_a": ca["nulls"], "nulls_b": c["nulls"]})
    content = []
    cols_a = (da["content"] or {}).get("columns", {})
    for name, cb in (db["content"] or {}).get("columns", {}).items():
        ca = cols_a.get(name, {})
        for unit in ("chars", "words"):
            if unit in cb:
                xa = st.describe(ca[unit]) if unit in ca else {}
                xb = st.describe(cb[unit])
                for k in ("p50", "mean", "max"):
                    content.append({"stat": f"{name} {unit} {k}", "a": xa.get(k), "b": xb.get(k)})
        if "hist" in cb and cb["hist"]["count"]:
            ha = ca.get("hist", {})
            mean = lambda h: h["sum"] / h["count"] if h.get("count") else None
            content.append({"stat": f"{name} mean", "a": mean(ha), "b": mean(cb["hist"])})
    reasons_a = (da["accounting"] or {}).get("rejects_by_reason", {})
    reasons_b = (db["accounting"] or {}).get("rejects_by_reason", {})
    out = {"a": a, "b": b, "rows": [da["rows"], db["rows"]], "bytes": [da["bytes"], db["bytes"]],
           "files": [da["files"], db["files"]], "schema": schema, "columns": col_rows, "content": content,
           "rejects": {r: [reasons_a.get(r, 0), reasons_b.get(r, 0)] for r in sorted(set(reasons_a) | set(reasons_b))},
           "ids": {"distinct": [len(ids_a), len(ids_b)],
                   "duplicate_rows": [da["rows"] - len(ids_a), db["rows"] - len(ids_b)],
                   "added": len(added), "removed": len(removed), "kept": len(ids_b) - len(added),
                   "added_sample": added.slice(0, n_ids).to_pylist(),
                   "removed_sample": removed.slice(0, n_ids).to_pylist()}}
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
        return
    console.print(f"[bold]{a}[/bold]  →  [bold]{b}[/bold]")
    d = lambda x, y: "" if x is None or y is None else f"{(y - x) + 0.0:+,.4g}"  # + 0.0: no -0
    console.print(rich_table("summary", ["", "A", "B", "Δ"],
                             [["rows", da["rows"], db["rows"], d(da["rows"], db["rows"])],
                              ["bytes", da["bytes"], db["bytes"], d(da["bytes"], db["bytes"])],
                              ["files", da["files"], db["files"], d(da["files"], db["files"])],
                              ["distinct ids", len(ids_a), len(ids_b), d(len(ids_a), len(ids_b))],
                              ["distinct ids only in A (removed)", "", len(removed), ""],
                              ["distinct ids only in B (added)", "", len(added), ""]]))
    dup = out["ids"]["duplicate_rows"]
    if any(dup):
        console.print(f"rows sharing an id with another row: A {dup[0]:,}, B {dup[1]:,}")
    if any(schema.values()):
        console.print("schema: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in schema.items() if v))
    else:
        console.print("schema: unchanged")
    if content:
        console.print(rich_table("content stats", ["stat", "A", "B", "Δ"],
                                 [[c["stat"], c["a"], c["b"], d(c["a"], c["b"])] for c in content]))
    nulls = [[c["column"], c["nulls_a"], c["nulls_b"], d(c["nulls_a"], c["nulls_b"])] for c in col_rows
             if c["nulls_a"] != c["nulls_b"]]
    if nulls:
        console.print(rich_table("null counts that changed", ["column", "A", "B", "Δ"], nulls))
    if out["rejects"]:
        console.print(rich_table("rejects by reason", ["reason", "A", "B", "Δ"],
                                 [[r, x, y, d(x, y)] for r, (x, y) in out["rejects"].items()]))
    for side in ("removed", "added"):
        if out["ids"][f"{side}_sample"]:
            console.print(f"{side} ids (sample): " + ", ".join(i[:16] for i in out["ids"][f"{side}_sample"]))


@main.command()
@click.argument("ref")
@click.option("-n", "n", default=5, show_default=True, help="rows to show")
@click.option("--columns", "-c", multiple=True, help="columns to show (repeatable)")
@click.option("--where", default=None, help="filter, e.g. \"drop_reason = 'too_short'\" (pyiceberg syntax)")
@click.option("--width", default=300, show_default=True, help="characters of each value")
@click.option("--json", "as_json", is_flag=True, help="rows as JSON lines, untruncated")
@click.pass_context
def show(ctx, ref, n, columns, where, width, as_json):
    """Print sample rows of TABLE[@VERSION] (rejects: TABLE_rejects)."""
    from rich.panel import Panel

    from pipelines.report import console
    store = _store(ctx)
    rows = _as_written(store.read_arrow(ref, columns or None, limit=n, where=where)).to_pylist()
    for r in rows:
        if as_json:
            click.echo(json.dumps(r, default=_jsonable, ensure_ascii=False))
            continue
        lines = []
        for k, v in r.items():
            s = json.dumps(v, default=_jsonable, ensure_ascii=False) if not isinstance(v, str) else v
            s = s if len(s) <= width else s[:width] + f"… ({len(s):,} chars)"
            lines.append(f"[bold]{k}[/bold]: {s}")
        console.print(Panel("\n".join(lines), expand=True))
    if not as_json:
        console.print(f"{len(rows)} rows of {ref}")


def _as_written(table):
    """float32 columns as the shortest decimals that read back the same (0.025 for an accuracy of
    1/40, not 0.02500000037252903, which is the float32 value widened to a Python float)."""
    import pyarrow as pa
    for i, f in enumerate(table.schema):
        if pa.types.is_float32(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(pa.string()).cast(pa.float64()))
    return table


def _jsonable(v):
    if isinstance(v, bytes):
        return f"<{len(v):,} bytes>"
    return str(v)


@main.command()
@click.argument("ref")
@click.argument("name")
@click.option("--force", is_flag=True, help="move the tag if it exists")
@click.pass_context
def tag(ctx, ref, name, force):
    """Name the version REF (TABLE@SNAPSHOT, TABLE@TAG, or TABLE for current) as NAME."""
    try:
        sid = _store(ctx).tag(ref, name, replace=force)
    except ValueError as e:
        _fail(str(e))
    click.echo(f"tagged {Ref.parse(ref).table}@{sid} as {name}")


@main.command()
@click.argument("table")
@click.option("--older-than", default="1h", show_default=True,
              help="only files older than this (s, m, h, d): younger ones may belong to a run in progress")
@click.option("--runs", is_flag=True, help="also the data of runs that never published (killed, not rerun)")
@click.option("--dry-run", is_flag=True, help="list, do not delete")
@click.pass_context
def gc(ctx, table, older_than, runs, dry_run):
    """Delete files of TABLE that no version refers to (failed commits; with --runs, unpublished runs)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if older_than[-1:] not in units or not older_than[:-1].replace(".", "", 1).isdigit():
        _fail(f"--older-than {older_than!r}: a number with s, m, h or d (e.g. 7d)")
    removed = _store(ctx).sweep(table, float(older_than[:-1]) * units[older_than[-1]], runs=runs, dry_run=dry_run)
    for path in removed:
        click.echo(path)
    click.echo(f"{'would remove' if dry_run else 'removed'} {len(removed)} unreferenced files of {table}", err=True)


@main.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="the lineage as one JSON document, nothing else (for scripts)")
@click.pass_context
def lineage(ctx, ref, as_json):
    """Run id, pipeline, resolved config, code commit, inputs, models, operators with their
    resources, and accounting of a version; then where the time went, per stage. Tables for
    people; --json prints the whole lineage as one JSON document."""
    props = _store(ctx).properties(ref)
    props.pop("stats", None)
    if as_json:
        click.echo(json.dumps(props, indent=2, default=str))
        return
    _print_lineage(ref, props)


def _compact(v, n: int = 200) -> str:
    """A value on one line: strings as they are, the rest as compact JSON, cut at n characters."""
    s = v if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False, separators=(", ", ": "))
    return s if len(s) <= n else s[: n - 1] + "…"


def _left(table):
    """A table of names and values: text read left to right."""
    for c in table.columns:
        c.justify = "left"
    return table


def _print_lineage(ref: str, props: dict) -> None:
    """The lineage as tables: the run, its config and stages, inputs, models, operators, accounting."""
    from pipelines import report
    props = dict(props)
    props.pop("stats_scored", None)  # content stats over every scored row: `curate stats` shows them
    config = dict(props.pop("config", None) or {})
    inputs = props.pop("inputs", None) or {}
    models = props.pop("models", None) or {}
    ex = props.pop("execution", None) or {}
    acc = props.pop("accounting", None)
    first = ("run_id", "pipeline", "role", "git_commit", "code", "config_hash", "python", "tag")
    keys = [k for k in first if k in props] + sorted(k for k in props if k not in first)
    rows = [[k, _compact(props[k]) if props[k] is not None else "-"] for k in keys]
    report.console.print(_left(report.rich_table(f"lineage of {ref}", ["", "value"], rows)))
    stages = config.pop("stages", None) or []
    config.pop("schema", None)  # the table's schema: `curate stats` lists its columns
    if config:
        config_rows = [[k, _compact(v) if v is not None else "-"] for k, v in config.items()]
        report.console.print(_left(report.rich_table("config", ["", "value"], config_rows)))
    if stages:
        stage_rows = [[s.get("name", ""), s.get("kind", ""), s.get("code", ""), _compact(s.get("params") or {})]
                      for s in stages]
        report.console.print(_left(report.rich_table("stages (resolved parameters)",
                                                     ["stage", "kind", "code", "params"], stage_rows)))
    if inputs:
        files = inputs.get("files") or {}
        head = [[k, _compact(v)] for k, v in inputs.items() if k != "files"]
        shown = list(files.items())[:10]
        head += [[f"file {path}", _compact(fp)] for path, fp in shown]
        if len(files) > len(shown):
            head.append([f"… {len(files) - len(shown):,} more files", "(--json lists them all)"])
        report.console.print(_left(report.rich_table("inputs", ["", "value"], head)))
    if models:
        report.console.print(_left(report.rich_table("models", ["stage", "model"],
                                                     [[k, _compact(v, 300)] for k, v in models.items()])))
    if ex.get("operators"):
        report.console.print(report.rich_table("operators (resources per worker)", ["operator", "kind", "cpus", "gpus",
                                                                                  "actors", "rows/call"],
                                               [[o["operator"], o["kind"], o["cpus"], o["gpus"],
                                                 (f"{o['actors'][0]}-{o['actors'][1] or 'any'} "
                                                  f"(at most {o.get('max_actors')} here)"
                                                  if o["kind"] == "actor" else ""),
                                                 o["batch_rows"] or "shard"] for o in ex["operators"]]))
    rest = {k: v for k, v in ex.items() if k != "operators" and v not in (None, [], {})}
    if rest:
        report.console.print(_left(report.rich_table("execution", ["", "value"],
                                                     [[k, _compact(v)] for k, v in rest.items()])))
    report.print_accounting(acc)


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--schema", "schema_name", required=True,
              help="documents, sft, speech_sft, problems, cot_samples, preferences")
@click.option("--max-errors", default=20, show_default=True, help="problems listed before the rest are only counted")
def validate(path, schema_name, max_errors):
    """Check a JSONL or Parquet file against a table schema; name the column and row of each problem."""
    from schemas.engine.inputs import plan_file, read_shard
    from schemas.tables import TABLES
    if schema_name not in TABLES:
        _fail(f"unknown schema '{schema_name}' (one of {', '.join(TABLES)})")
    errors, rows, total = [], 0, 0
    for shard in plan_file(path, shard_bytes=1 << 62, shard_rows=1 << 62):  # one shard: row numbers of the file
        ok, rejects, n = read_shard(shard, TABLES[schema_name])
        rows += ok.num_rows
        total += n
        errors += list(zip(rejects.column("drop_reason").to_pylist(), rejects.column("reject_detail").to_pylist()))
    locate = _row_locator(path)
    for reason, detail in errors[:max_errors]:
        click.echo(f"{reason}: {locate(detail or '')}")
    if len(errors) > max_errors:
        click.echo(f"... and {len(errors) - max_errors} more")
    click.echo(f"{os.path.basename(path)}: {rows:,} of {total:,} rows fit schema '{schema_name}'")
    sys.exit(1 if errors else 0)


def _row_locator(path: str):
    """Rewrites a reject detail's place in the file as its row: 1-based, counted as the README
    promises; JSONL keeps the line (where blank lines make it differ) and byte offset as detail,
    Parquet the 0-based row index."""
    import bisect
    import gzip
    import re
    base = re.escape(os.path.basename(path))
    if path.endswith(".parquet"):
        pat = re.compile(rf"row (\d+) in {base}")
        return lambda d: pat.sub(lambda m: f"{os.path.basename(path)} row {int(m[1]) + 1:,} (index {m[1]})", d)
    starts, rows, n = [], [], 0
    with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
        pos = 0
        for line in f:
            n += bool(line.strip())
            starts.append(pos)
            rows.append(n)
            pos += len(line)
    pat = re.compile(rf"{base}(?: byte |@)(\d+)")

    def where(m) -> str:
        byte = int(m[1])
        i = max(0, bisect.bisect_right(starts, byte) - 1)
        line = f"line {i + 1:,}, " if rows[i] != i + 1 else ""
        return f"{os.path.basename(path)} row {rows[i]:,} ({line}byte {byte:,})"
    return lambda d: pat.sub(where, d) if starts else d


@main.command("train-classifier")
@click.option("--input", "source", default=None,
              help="labeled JSONL(.gz)/Parquet file or store table; default: the shipped set "
                   "(filters/data/quality_labeled.jsonl.gz: python3.11-doc prose = hq, fortunes + word salad = lq)")
@click.option("--text-column", default="text", show_default=True, help="the column the classifier reads")
@click.option("--label-column", default=None, help="[default: label, or edu_score with --threshold/--multiclass]")
@click.option("--positive", default="hq", show_default=True, help="the label whose probability is quality_score")
@click.option("--threshold", "grade_threshold", default=None, type=int,
              help="labels are integer grades (e.g. `curate annotate`'s edu_score): grade >= N is the positive class")
@click.option("--multiclass", is_flag=True,
              help="labels are integer grades, one class each; quality_score = P(grade >= --threshold, default 3)")
@click.option("--valid-frac", default=0.1, show_default=True, help="held-out share (by text hash) for agreement")
@click.option("--epoch", default=10, show_default=True, help="fastText epochs")
@click.option("--lr", default=0.5, show_default=True, help="fastText learning rate")
@click.option("--ngrams", "word_ngrams", default=2, show_default=True, help="fastText wordNgrams")
@click.option("--dim", default=32, show_default=True, help="fastText word-vector size")
@click.option("--out", default=None, help="model directory root (default: WAREHOUSE/_models/quality)")
@click.option("--json", "as_json", is_flag=True, help="print the model card as JSON")
@click.pass_context
def train_classifier(ctx, source, text_column, label_column, positive, grade_threshold, multiclass, valid_frac,
                     epoch, lr, word_ngrams, dim, out, as_json):
    """Train the fastText quality classifier; print held-out agreement and the versioned model path.

    From LLM grades: `--input edu_grades --threshold 3` (binary) or `--multiclass`.
    Use it in a pipeline with `pipelines/text_curation.py --quality-model PATH`."""
    from filters.quality import SHIPPED_SET, grade_labels, load_labeled, train
    from pipelines.report import console, rich_table
    src = source or SHIPPED_SET
    graded = grade_threshold is not None or multiclass
    label_column = label_column or ("edu_score" if graded else "label")
    try:
        rows = load_labeled(src, text_column, label_column, ctx.obj["warehouse"])
        if graded:
            rows = grade_labels(rows, grade_threshold, multiclass, positive)
        art = train(rows, out or os.path.join(work_dir(ctx.obj["warehouse"]), "_models", "quality"),
                    positive=positive, valid_frac=valid_frac, source=f"{src} ({label_column})", epoch=epoch, lr=lr,
                    wordNgrams=word_ngrams, dim=dim, multiclass=multiclass, grade_threshold=grade_threshold)
    except (ValueError, KeyError, OSError) as e:
        _fail(str(e))
    m = art.card["metrics"]
    if as_json:
        click.echo(json.dumps({"path": art.path, **art.card}, indent=2))
        return
    if multiclass:
        console.print(rich_table(f"held-out agreement with grades ({m['n']} rows)",
                                 ["accuracy", "95% CI", "macro-F1", "MAE (expected grade)"],
                                 [[m["accuracy"], m["accuracy_ci95"], m["macro_f1"], m["mae"]]]))
    console.print(rich_table(f"held-out metrics ({m['n']} rows, label '{m['positive']}' positive, "
                             f"threshold {m['threshold']})",
                             ["precision", "recall", "f1", "accuracy", "macro-F1", "tp", "fp", "fn", "tn"],
                             [[m["precision"], m["recall"], m["f1"], m.get("binary_accuracy", m["accuracy"]),
                               m.get("binary_macro_f1", m["macro_f1"]), m["tp"], m["fp"], m["fn"], m["tn"]]]))
    click.echo(f"model {art.path}\nsha256 {art.sha256}\ntrained on {art.card['train_rows']} rows of {src}")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def annotate(ctx, args):
    """Grade documents' educational value (0-5) with an LLM → an `edu_grades` table.

    Runs pipelines/annotate_edu.py (see `curate annotate --help`), e.g.
    `curate annotate --input documents --sample 20000 --generator openai:http://HOST:8000/v1#MODEL`."""
    from pipelines.annotate_edu import parser, run_main
    argv = list(args)
    if "--warehouse" not in argv:
        argv = ["--warehouse", ctx.obj["warehouse"], *argv]
    if "-h" in argv or "--help" in argv:
        p = parser()
        p.prog = "curate annotate"
        p.print_help()
        sys.exit(0)
    sys.exit(run_main(argv))


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (0.0.0.0: every interface)")
@click.option("--port", default=8000, show_default=True, type=int, help="port to listen on")
@click.option("--threads", default=None, type=int, help="torch threads (default: all cores)")
def serve(checkpoint, host, port, threads):
    """Serve a built-in model CHECKPOINT as an OpenAI-compatible chat endpoint.

    Then use it as a generator: `--generator openai:http://HOST:PORT/v1`."""
    from model.serve import make_server
    srv = make_server(checkpoint, host, port, threads)
    click.echo(f"serving {checkpoint} at http://{host}:{srv.server_address[1]}/v1 (Ctrl-C stops)")
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


PIPELINES = ("flagship", "demo", "text_curation", "speech_sft", "reasoning_data", "reasoning_loop", "annotate_edu")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("pipeline")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx, pipeline, args):
    """Run pipelines/PIPELINE.py with ARGS (see `curate run PIPELINE --help`)."""
    if pipeline not in PIPELINES:
        _fail(f"unknown pipeline '{pipeline}' (one of {', '.join(PIPELINES)})")
    mod = importlib.import_module(f"pipelines.{pipeline}")
    argv = list(args)
    if "--warehouse" not in argv:
        argv = ["--warehouse", ctx.obj["warehouse"], *argv]
    if hasattr(mod, "run_main"):  # pipelines that publish more than one table run their own main
        sys.exit(mod.run_main(argv))
    from pipelines.script import main as script_main
    parser = mod.parser()
    parser.prog = f"curate run {pipeline} --"
    sys.exit(script_main(mod.build, parser, argv))


from pipelines.cli_model import model_group  # noqa: E402  (its own module: pretrained checkpoints in and out)

main.add_command(model_group)
from pipelines.cli_train import train_cmd  # noqa: E402  (its own module: SFT on Ray Train workers)

main.add_command(train_cmd)
from pipelines.cli_warehouse import warehouse_group  # noqa: E402  (its own module: copied or moved warehouses)

main.add_command(warehouse_group)

if __name__ == "__main__":
    main()
