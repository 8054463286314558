"""Input shards: deterministic units of work, and reading them without losing a row.

A shard is a byte range of a JSONL file (lines that start inside it), a run of row groups
of a Parquet file, or one data file of a store table version. Its key depends only on the
file's identity (path, size, mtime) and the range, so a rerun plans the same shards and can
skip the ones already done. Reading never raises on bad content: a line that is not UTF-8,
not JSON, nested too deeply, holds a lone surrogate escape (no text can hold it), or does not
fit the schema becomes a reject with a reason and the raw text.
"""
from __future__ import annotations

import gzip
import json
import os
import zlib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import filesystem as fsys
from schemas.ids import row_id
from schemas.tables import numbers_as_text
from schemas.validate import Conformed, conform, empty_rejects, make_rejects
from schemas.warc import WARC_EXT, is_crawl_file

if TYPE_CHECKING:
    from schemas.store import Store

JSONL_EXT = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz")
PARQUET_EXT = (".parquet",)
DEFAULT_SHARD_BYTES = 64 << 20
DEFAULT_SHARD_ROWS = 100_000


class InputError(ValueError):
    """Inputs that cannot be planned at all (nothing matches, unknown format)."""


class UnreadableInput(RuntimeError):
    """An input file that cannot be read, or holds other rows than its metadata says.

    Not a row-level reject: rows would vanish under a green run. The run fails naming the
    file, unless the user asked to record such files as lost (`--on-unreadable record`)."""

    def __init__(self, path: str, problem: str, expected_rows: int | None):
        super().__init__(f"input file {path}: {problem}")
        self.path, self.problem, self.expected_rows = path, problem, expected_rows

    def __reduce__(self) -> tuple[type[UnreadableInput], tuple[str, str, int | None]]:  # survives Ray pickling
        return (UnreadableInput, (self.path, self.problem, self.expected_rows))


@dataclass(frozen=True)
class InputShard:
    kind: str          # jsonl | parquet | table | warc (a WARC or WET file)
    path: str          # file path (for table shards: the data file)
    start: int         # jsonl: byte offset; parquet/table: first row group
    end: int           # jsonl: byte end (exclusive); parquet/table: last row group + 1
    fingerprint: str   # size/mtime of the file, or table@snapshot
    source: str        # default `source` for its rows
    rows: int = -1     # rows the metadata promises (Parquet footer, table manifest); -1 unknown

    @property
    def key(self) -> str:
        return row_id(self.kind, location(self.path), self.start, self.end, self.fingerprint)[:24]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InputShard":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def location(path: str) -> str:
    """Where a file is, independent of the working directory: a URI as given, else the absolute path."""
    return path if fsys.is_remote(path) else os.path.abspath(path)


def _expand(spec: str) -> list[str]:
    if fsys.isdir(spec):
        return [p for p in fsys.walk(spec) if p.endswith(JSONL_EXT + PARQUET_EXT + WARC_EXT)]
    if any(ch in spec for ch in "*?["):
        return fsys.glob(spec)
    return [spec] if fsys.exists(spec) else []


def plan_file(path: str, shard_bytes: int = DEFAULT_SHARD_BYTES,
              shard_rows: int = DEFAULT_SHARD_ROWS, source: str | None = None) -> list[InputShard]:
    fp = fsys.fingerprint(path)
    name = source or os.path.basename(path).split(".")[0]
    if is_crawl_file(path):  # .gz: byte ranges, each holding the records whose gzip member starts in it
        size = fsys.size(path)
        if not path.endswith(".gz") or size <= shard_bytes:
            return [InputShard("warc", path, 0, max(size, 0), fp, name)]
        return [InputShard("warc", path, s, min(s + shard_bytes, size), fp, name) for s in range(0, size, shard_bytes)]
    if path.endswith(JSONL_EXT):
        size = fsys.size(path)
        if path.endswith(".gz") or size <= shard_bytes:
            return [InputShard("jsonl", path, 0, max(size, 0), fp, name)]
        return [InputShard("jsonl", path, s, min(s + shard_bytes, size), fp, name)
                for s in range(0, size, shard_bytes)]
    if path.endswith(PARQUET_EXT):
        try:
            with fsys.open_random(path) as f:
                md = pq.read_metadata(f)
        except (pa.ArrowInvalid, OSError) as e:
            # Still one shard: reading it fails the run naming the file (or records it as lost).
            return [InputShard("parquet", path, 0, -1, fp + f":unreadable:{type(e).__name__}", name)]
        shards, first, rows = [], 0, 0
        for g in range(md.num_row_groups):
            rows += md.row_group(g).num_rows
            if rows >= shard_rows:
                shards.append(InputShard("parquet", path, first, g + 1, fp, name, rows))
                first, rows = g + 1, 0
        if first < md.num_row_groups or not shards:
            shards.append(InputShard("parquet", path, first, md.num_row_groups, fp, name, rows))
        return shards
    raise InputError(f"'{path}': unknown input format (expected {', '.join(JSONL_EXT + PARQUET_EXT + WARC_EXT)})")


def plan_inputs(specs: list[str], store: Store | None = None, shard_bytes: int = DEFAULT_SHARD_BYTES,
                shard_rows: int = DEFAULT_SHARD_ROWS) -> list[InputShard]:
    """Shards of every input: paths, directories, globs, or store refs `table[@version]`."""
    shards: list[InputShard] = []
    for spec in specs:
        files = _expand(spec)
        if files:
            for f in files:
                shards.extend(plan_file(f, shard_bytes, shard_rows))
            continue
        if store is not None and _is_table(store, spec.partition("@")[0]):
            t, snap = store.snapshot(spec)
            name = spec.partition("@")[0]
            planned = []
            for task in t.scan(snapshot_id=snap.snapshot_id).plan_files():
                path = task.file.file_path.removeprefix("file://")
                planned.append(InputShard("table", path, 0, -1, f"{name}@{snap.snapshot_id}", name,
                                          int(task.file.record_count)))
            total = (snap.summary.additional_properties or {}).get("total-records")
            if total is not None and int(total) != sum(s.rows for s in planned):
                raise InputError(f"input '{spec}': its data files hold {sum(s.rows for s in planned):,} rows "
                                 f"but the snapshot says {int(total):,}: the table metadata is inconsistent")
            shards.extend(planned)
            continue
        raise InputError(f"input '{spec}' matches no file, directory or store table")
    return shards


# ---- reading ----------------------------------------------------------------------------
def _is_table(store: Store, name: str) -> bool:
    from schemas.store import InvalidName, check_table_name
    try:
        check_table_name(name)
    except InvalidName:
        return False
    return store.exists(name)


def _jsonl_lines(shard: InputShard) -> Iterator[tuple[int, bytes]]:
    """(byte offset, raw line) of each line that starts inside the shard's range."""
    if shard.path.endswith(".gz"):
        with fsys.open_input(shard.path) as raw, gzip.open(raw, "rb") as f:
            pos = 0
            for line in f:
                yield pos, line
                pos += len(line)
        return
    with fsys.open_input(shard.path) as f:
        if shard.start > 0:
            f.seek(shard.start - 1)
            f.readline()  # the line holding byte start-1 belongs to the previous shard
        pos = f.tell()
        while pos < shard.end:
            line = f.readline()
            if not line:
                break
            yield pos, line
            pos += len(line)


def _raw_text(line: bytes) -> str:
    return line.decode("utf-8", errors="backslashreplace").rstrip("\r\n")


MAX_JSON_DEPTH = 100  # arrays/objects nested deeper than this in one line are a reject


def _unstorable(obj: Any, text: str) -> tuple[str, str] | None:
    """Why a parsed line cannot be stored (reason, detail), or None: nesting deeper than
    MAX_JSON_DEPTH (JSON encoding and Arrow conversion later recurse, and a stack overflow
    there would fail the run), or a string holding a lone surrogate from a `\\ud800`-style
    escape (valid JSON but not text: UTF-8, Arrow and Parquet cannot hold it). Iterative, so
    no depth overflows it; skipped where the line has too few brackets to nest that deep and
    no `\\u` escape, the only way to get a surrogate."""
    escapes = "\\u" in text
    if not escapes and text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return None
    todo = [(obj, 1, "")] if isinstance(obj, (dict, list)) else []
    while todo:
        v, depth, where = todo.pop()
        if depth > MAX_JSON_DEPTH:
            return "malformed_json:too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        for k, x in (v.items() if isinstance(v, dict) else enumerate(v)):
            if escapes and isinstance(k, str) and (bad := _surrogate(k)):
                return "invalid_utf8:lone_surrogate", f"lone surrogate escape {bad} in a key: not text"
            if isinstance(x, (dict, list)):
                todo.append((x, depth + 1, _path(where, k)))
            elif escapes and isinstance(x, str) and (bad := _surrogate(x)):
                return ("invalid_utf8:lone_surrogate",
                        f"lone surrogate escape {bad} in '{_path(where, k)}': not text (UTF-8 cannot encode it)")
    if escapes and isinstance(obj, str) and (bad := _surrogate(obj)):
        return "invalid_utf8:lone_surrogate", f"lone surrogate escape {bad}: not text"
    return None


def _path(where: str, key: Any) -> str:
    return f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else str(key)


def _surrogate(s: str) -> str | None:
    """The first lone surrogate in `s` as its JSON escape (a pair decodes to one character)."""
    try:
        s.encode("utf-8")
        return None
    except UnicodeEncodeError as e:
        return f"\\u{ord(s[e.start]):04x}"


def read_jsonl(shard: InputShard, schema: pa.Schema) -> tuple[pa.Table, pa.Table, int]:
    """Parse a JSONL shard into (rows fitting `schema`, rejects, input rows)."""
    records: list[dict[str, Any]] = []
    offsets: list[int] = []
    texts: list[str] = []
    reasons, details, raws = [], [], []
    base = os.path.basename(shard.path)
    n_rows = 0
    try:
        lines = list(_jsonl_lines(shard))
    except (OSError, EOFError, zlib.error) as e:  # truncated gzip, I/O error: rows would vanish
        raise UnreadableInput(shard.path, f"cannot be read: {type(e).__name__}: {e}", None) from e
    for pos, line in lines:
        if not line.strip():
            continue  # blank lines are not rows
        n_rows += 1
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            reasons.append("invalid_utf8")
            details.append(f"{base} byte {pos + e.start}: not UTF-8 ({e.reason})")
            raws.append(_raw_text(line))
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            reasons.append("malformed_json")
            details.append(f"{base} byte {pos}: {e.msg} at column {e.colno}")
            raws.append(text.rstrip("\r\n"))
            continue
        except RecursionError:  # deeper than the interpreter's stack: a row, not the run
            reasons.append("malformed_json:too_deep")
            details.append(f"{base} byte {pos}: JSON nested too deeply to parse (over {MAX_JSON_DEPTH} levels)")
            raws.append(text.rstrip("\r\n"))
            continue
        except ValueError as e:  # an integer of over 4,300 digits (Python's int_max_str_digits)
            reasons.append("malformed_json:number_too_long")
            details.append(f"{base} byte {pos}: {str(e).split(';')[0]}")
            raws.append(text.rstrip("\r\n"))
            continue
        problem = _unstorable(obj, text)
        if problem is not None:
            reasons.append(problem[0])
            details.append(f"{base} byte {pos}: {problem[1]}")
            raws.append(text.rstrip("\r\n"))
            continue
        if not isinstance(obj, dict):
            reasons.append("malformed_json")
            details.append(f"{base} byte {pos}: expected a JSON object, got {type(obj).__name__}")
            raws.append(text.rstrip("\r\n"))
            continue
        records.append(obj)
        offsets.append(pos)
        texts.append(text.rstrip("\r\n"))
    rejects = make_rejects(reasons, "read", details, raws) if reasons else empty_rejects()
    rows, more = records_to_table(records, schema, [f"{base}@{o}" for o in offsets], shard.source, base, texts)
    return rows, concat_rejects([rejects, more]), n_rows


def records_to_table(records: list[dict[str, Any]], schema: pa.Schema, locators: list[str],
                     source: str, where: str, raws: list[str]) -> tuple[pa.Table, pa.Table]:
    """Build a table of `schema` from JSON objects; rows that do not fit become rejects.

    `raws` are the input lines, kept verbatim in the rejects."""
    bad: dict[int, tuple[str, str]] = {}
    for i, rec in enumerate(records):
        uid = rec.pop("id", None)
        if "source_ids" not in rec and "source_ids" in schema.names:
            rec["source_ids"] = [str(uid)] if uid is not None else [locators[i]]
        if "source" in schema.names and rec.get("source") is None:
            rec["source"] = source
    columns: dict[str, list[Any]] = {}
    converted: dict[str, pa.Array] = {}  # reused below when every row fits
    names = set(schema.names)
    for f in schema:
        if f.name == "id":
            continue
        values = [r.get(f.name) for r in records]
        if numbers_as_text(f):
            values = [_number_text(v) for v in values]
        array = _convert_column(f, values, locators, bad)
        if array is not None:
            converted[f.name] = array
        columns[f.name] = values
    keep = [i for i in range(len(records)) if i not in bad]
    extra_keys = sorted({k for r in records for k in r} - names)
    data = {k: [columns[k][i] for i in keep] for k in columns}
    for k in extra_keys:  # folded into `meta` by conform
        data[k] = [json.dumps(records[i].get(k), ensure_ascii=False) if isinstance(records[i].get(k), (dict, list))
                   else records[i].get(k) for i in keep]
    fields = [f for f in schema if f.name != "id"]
    arrays = {f.name: converted[f.name] if not bad else pa.array(data[f.name], f.type) for f in fields}
    for k in extra_keys:
        try:
            arrays[k] = pa.array(data[k])
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # mixed types, an int over 64 bits
            arrays[k] = pa.array([None if v is None else str(v) for v in data[k]], pa.string())
    table = pa.table(arrays) if keep or arrays else pa.table({f.name: pa.array([], f.type) for f in fields})
    c = conform(table, schema, where=where, row_names=[locators[i] for i in keep])
    order = sorted(bad)
    rejects = make_rejects([bad[i][0] for i in order], "read", [bad[i][1] for i in order],
                           [raws[i] for i in order]) if bad else empty_rejects()
    fit_rejects = c.rejects
    if fit_rejects.num_rows:
        fit_rejects = fit_rejects.set_column(fit_rejects.column_names.index("raw"), "raw",
                                             pa.array([raws[keep[j]] for j in c.reject_rows], pa.string()))
    return c.table, concat_rejects([rejects, fit_rejects])


def _convert_column(f: pa.Field, values: list[Any], locators: list[str],
                    bad: dict[int, tuple[str, str]]) -> pa.Array | None:
    """`values` as an array of `f`'s type, or None where some do not fit: those rows go into `bad`
    as `wrong_type:<column>` (a string for a list is one, and its value becomes None in place)."""
    def wrong(i: int, v: Any) -> None:
        detail = f"{locators[i]}: '{f.name}' is {type(v).__name__}, expected {f.type}"
        bad.setdefault(i, (f"wrong_type:{f.name}", detail))

    if pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
        # Arrow takes a string for a list of its characters: "ab" would become ["a", "b"]
        for i, v in enumerate(values):
            if isinstance(v, (str, bytes)):
                wrong(i, v)
                values[i] = None
    try:
        return pa.array(values, f.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        for i, v in enumerate(values):
            try:
                pa.array([v], f.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
                wrong(i, v)
        return None


def _number_text(v: Any) -> Any:
    """A JSON number where text is expected is its text (an answer of 42 is "42"); bools are not."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return json.dumps(v)
    return v


def read_parquet(shard: InputShard, schema: pa.Schema) -> tuple[pa.Table, pa.Table, int]:
    base = os.path.basename(shard.path)
    expected = shard.rows if shard.rows >= 0 else None
    try:
        with fsys.open_random(shard.path) as f:
            pf = pq.ParquetFile(f)
            groups = list(range(shard.start, shard.end if shard.end >= 0 else pf.metadata.num_row_groups))
            table = pf.read_row_groups(groups) if groups else pf.schema_arrow.empty_table()
            first_row = sum(pf.metadata.row_group(g).num_rows for g in range(groups[0])) if groups else 0
    except (pa.ArrowException, OSError) as e:
        raise UnreadableInput(shard.path, f"cannot be read: {e}", expected) from e
    n = table.num_rows
    if expected is not None and n != expected:
        what = "the table metadata" if shard.kind == "table" else "its footer"
        raise UnreadableInput(shard.path, f"holds {n:,} rows but {what} says {expected:,}", expected)
    not_text = _invalid_utf8_rows(table)
    rows = list(range(n))  # each remaining row's index in the shard
    if not_text:
        rows = [i for i in rows if i not in not_text]
        order = sorted(not_text)
        text_rejects = make_rejects(["invalid_utf8"] * len(order), "read",
                                    [f"row {i} in {base}: '{not_text[i]}' is not UTF-8" for i in order],
                                    [_row_text(table, i) for i in order])
        table = table.take(pa.array(rows, pa.int64()))
    if shard.kind == "table" and "id" in table.column_names and "source_ids" in schema.names:
        # Rows read from a store table point at the row they came from.
        if "source_ids" in table.column_names:
            table = table.drop_columns(["source_ids"])
        table = table.append_column("source_ids", pa.array([[v] for v in table.column("id").to_pylist()],
                                                           pa.list_(pa.string())))
    if "source_ids" not in table.column_names and "source_ids" in schema.names:
        if "id" in table.column_names:
            ids = [[str(v)] if v is not None else [f"{base}#{first_row + i}"]
                   for i, v in zip(rows, table.column("id").to_pylist())]
        else:
            ids = [[f"{base}#{first_row + i}"] for i in rows]
        table = table.append_column("source_ids", pa.array(ids, pa.list_(pa.string())))
    if "source" in schema.names and "source" not in table.column_names:
        table = table.append_column("source", pa.array([shard.source] * table.num_rows, pa.string()))
    if "id" in table.column_names:
        table = table.drop_columns(["id"])  # ids are recomputed from content when written
    c: Conformed = conform(table, schema, where=base,
                           row_names=[f"row {i} in {base}" for i in rows] if not_text else None)
    if not_text:
        return c.table, concat_rejects([text_rejects, c.rejects]), n
    return c.table, c.rejects, n


def _has_text(t: pa.DataType) -> bool:
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return True
    return any(_has_text(t.field(i).type) for i in range(t.num_fields))


def _invalid_utf8_rows(table: pa.Table) -> dict[int, str]:
    """Row → the first column where it holds text that is not UTF-8. Parquet readers do not check
    it, and the first Python conversion of such a value (a stage's to_pylist) would fail the run;
    a whole column is checked at C speed, rows one by one only in a column that fails."""
    bad: dict[int, str] = {}
    for name in table.column_names:
        col = table.column(name)
        if not _has_text(col.type):
            continue
        try:
            for chunk in col.chunks:
                chunk.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        for i in range(table.num_rows):
            if i not in bad:
                try:  # take, not slice: a sliced list still holds (and checks) every row's values
                    col.take([i]).validate(full=True)
                except pa.ArrowInvalid:
                    bad[i] = name
    return bad


def _row_text(table: pa.Table, i: int) -> str:
    """A row as JSON for a reject's `raw`, text that is not UTF-8 shown with backslash escapes."""
    out: dict[str, Any] = {}
    for name in table.column_names:
        col = table.column(name).take([i])
        try:
            col.validate(full=True)
            out[name] = col.to_pylist()[0]
        except pa.ArrowInvalid:
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                v = col.cast(pa.large_binary()).to_pylist()[0]
                out[name] = v.decode("utf-8", errors="backslashreplace")
            else:
                out[name] = None
    return json.dumps(out, ensure_ascii=False, default=str)


def read_shard(shard: InputShard, schema: pa.Schema) -> tuple[pa.Table, pa.Table, int]:
    """(rows fitting `schema`, rejects, number of input rows) of one shard."""
    if shard.kind == "jsonl":
        return read_jsonl(shard, schema)
    if shard.kind == "warc":
        from schemas.warc import read_warc
        return read_warc(shard, schema)
    return read_parquet(shard, schema)


def concat_rejects(parts: list[pa.Table]) -> pa.Table:
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return empty_rejects()
    return pa.concat_tables(parts, promote_options="permissive")
