"""Where a local warehouse lives, and moving it (`curate warehouse relocate`).

Iceberg keeps absolute paths: the SQLite catalog names each table's metadata file, the metadata
JSON names the table's location, its manifest lists and the lineage files, the manifest lists name
the manifests (Avro), the manifests name the data files (Avro), and the run markers name their
shard files. A copied directory therefore still points at, and would write into, the original;
a moved one points at nothing. So a warehouse records where it was created (MARKER: its absolute
location and a random id), and one opened anywhere else is refused in one line until `relocate`
has rewritten every one of those paths from the old prefix to the new one, in this directory
only. Shared catalogs (PostgreSQL, REST) with object storage are not concerned: the catalog, not
a directory, is the warehouse there.
"""
from __future__ import annotations

import gzip
import json
import os
import sqlite3
import time
import uuid
from typing import Any, Callable

from schemas.store import StoreError

MARKER = ".curate-warehouse.json"


class WarehouseMoved(StoreError):
    """The warehouse directory is not where its catalog and metadata say it is (copied or moved)."""


class _Unknown(Exception):
    """The catalog could not be read to tell where its tables are."""


def _marker_path(wh: str) -> str:
    return os.path.join(wh, MARKER)


def read_marker(wh: str) -> dict[str, Any] | None:
    try:
        with open(_marker_path(wh), "rb") as f:
            marker = json.loads(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise StoreError(f"warehouse marker {_marker_path(wh)} cannot be read ({e}); it records where the "
                         "warehouse was created: restore it, or delete it if this directory never moved") from None
    if not isinstance(marker, dict) or not isinstance(marker.get("location"), str):
        raise StoreError(f"warehouse marker {_marker_path(wh)} is not a warehouse marker; restore it, or delete "
                         "it if this directory never moved")
    return marker


def _write_marker(wh: str, marker: dict[str, Any], replace: bool = False) -> dict[str, Any]:
    """Write atomically; without `replace`, the first of two racing writers wins (link is exclusive)."""
    tmp = f"{_marker_path(wh)}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "w") as f:
        json.dump(marker, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    try:
        if replace:
            os.replace(tmp, _marker_path(wh))
            return marker
        try:
            os.link(tmp, _marker_path(wh))
        except FileExistsError:
            return read_marker(wh) or marker
        return marker
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _same_place(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def catalog_origin(wh: str) -> str | None:
    """Where the SQLite catalog in `wh` says its tables live, when that is not `wh` (a warehouse
    copied or moved before it had a marker). Tables are at ROOT/namespace/table/metadata/FILE."""
    db = os.path.join(wh, "catalog.db")
    if not os.path.exists(db):
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            rows = [r[0] for r in con.execute("SELECT metadata_location FROM iceberg_tables")]
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):  # no tables yet (pyiceberg creates them on first use)
            return None
        raise _Unknown(str(e)) from e
    except sqlite3.Error as e:
        raise _Unknown(str(e)) from e
    for loc in rows:
        path = (loc or "").removeprefix("file://")
        if not path.startswith("/") or path.startswith(wh.rstrip("/") + "/"):
            continue
        root = path
        for _ in range(4):
            root = os.path.dirname(root)
        if not _same_place(root, wh):
            return root
    return None


def check_location(wh: str) -> None:
    """Refuse a warehouse directory that is not where it was created; mark a new (or unmarked,
    in-place) one. `wh` is absolute."""
    marker = read_marker(wh)
    if marker is None:
        try:
            origin = catalog_origin(wh)
        except _Unknown:  # the catalog cannot be read now (locked, damaged): mark it another time
            return
        if origin is not None:
            raise WarehouseMoved(_refusal(wh, origin, None))
        try:
            _write_marker(wh, {"location": wh, "id": uuid.uuid4().hex,
                               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        except OSError:  # a read-only warehouse: nothing here will write into it either
            pass
        return
    if not _same_place(marker["location"], wh):
        raise WarehouseMoved(_refusal(wh, marker["location"], marker.get("id")))


def _refusal(wh: str, origin: str, wid: str | None) -> str:
    try:
        other = read_marker(origin) if os.path.isdir(origin) else None
    except StoreError:
        other = None
    if other is not None and (wid is None or other.get("id") == wid):
        what = (f"warehouse {wh} is a copy of {origin}: its catalog and metadata still point there, so new "
                f"versions would be written into {origin}")
    else:
        what = (f"warehouse {wh} was created at {origin} and has moved: its catalog and metadata still point "
                "there")
    return (f"{what}; run `curate --warehouse {wh} warehouse relocate` to rewrite them for {wh} "
            "(see README \"The store\")")


# ---- relocate -------------------------------------------------------------------------
def _mover(old: str, new: str) -> Callable[[str], str]:
    old, new = old.rstrip("/"), new.rstrip("/")

    def move(s: str) -> str:
        for scheme in ("file://", ""):
            p = scheme + old
            if s == p or s.startswith(p + "/"):
                return scheme + new + s[len(p):]
        return s
    return move


def _deep(value: Any, move: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return move(value)
    if isinstance(value, list):
        return [_deep(v, move) for v in value]
    if isinstance(value, dict):
        return {k: _deep(v, move) for k, v in value.items()}
    return value


def _replace_file(path: str, data: bytes) -> None:
    tmp = f"{path}.relocate-{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _rewrite_json(path: str, move: Callable[[str], str]) -> bool:
    raw = open(path, "rb").read()
    gz = raw[:2] == b"\x1f\x8b"
    doc = json.loads(gzip.decompress(raw) if gz else raw)
    moved = _deep(doc, move)
    if moved == doc:
        return False
    body = json.dumps(moved, indent=None if path.endswith(".metadata.json") else 1).encode()
    _replace_file(path, gzip.compress(body) if gz else body)
    return True


def _avro_kind(path: str) -> str | None:
    """'manifest' (entries naming data files), 'list' (naming manifests) or None."""
    from pyiceberg.avro.file import AvroFile
    from pyiceberg.io.pyarrow import PyArrowFileIO
    reader: AvroFile[Any]
    try:
        with AvroFile(PyArrowFileIO().new_input(path)) as reader:
            names = {f.name for f in reader.schema.fields}
    except Exception:  # noqa: BLE001  not an Iceberg Avro file (any reader error): left alone
        return None
    return "manifest" if "data_file" in names else "list" if "manifest_path" in names else None


def _rewrite_avro(path: str, move: Callable[[str], str],
                  fix_length: Callable[[str], int | None] | None = None) -> bool:
    """Rewrite every string field of a manifest's data files (file_path, ...) or of a manifest
    list's entries (manifest_path; manifest_length then re-read from the rewritten manifest),
    keeping the file's schema, metadata and codec."""
    from pyiceberg.avro.file import AvroFile, AvroOutputFile
    from pyiceberg.io.pyarrow import PyArrowFileIO
    from pyiceberg.types import StringType, StructType

    io = PyArrowFileIO()
    reader: AvroFile[Any]
    with AvroFile(io.new_input(path)) as reader:
        meta = dict(reader.header.meta)
        schema = reader.schema
        records: list[Any] = list(reader)
    top = [f.name for f in schema.fields]
    if "data_file" in top:
        pos = top.index("data_file")
        struct = schema.fields[pos].field_type
        assert isinstance(struct, StructType)
        targets = [(r[pos], [i for i, f in enumerate(struct.fields) if isinstance(f.field_type, StringType)])
                   for r in records]
    else:
        targets = [(r, [i for i, f in enumerate(schema.fields) if isinstance(f.field_type, StringType)])
                   for r in records]
    changed = False
    for rec, fields in targets:
        for i in fields:
            if isinstance(rec[i], str) and (m := move(rec[i])) != rec[i]:
                rec[i] = m
                changed = True
    if fix_length is not None and "manifest_length" in top:
        i, j = top.index("manifest_path"), top.index("manifest_length")
        for rec in records:
            size = fix_length(rec[i])
            if size is not None and size != rec[j]:
                rec[j] = size
                changed = True
    if not changed:
        return False
    name = json.loads(meta.pop("avro.schema")).get("name", "record")
    tmp = f"{path}.relocate-{uuid.uuid4().hex}.tmp"
    out: AvroOutputFile[Any]
    with AvroOutputFile(io.new_output(tmp), file_schema=schema, schema_name=name, metadata=meta) as out:
        out.write_block(records)
    os.replace(tmp, path)
    return True


def _rewrite_catalog(db: str, move: Callable[[str], str]) -> int:
    n = 0
    with sqlite3.connect(db) as con:  # one transaction: every row or none
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            cols = [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]
            quoted = ", ".join(chr(34) + c + chr(34) for c in cols)
            for row in con.execute(f'SELECT rowid, {quoted} FROM "{table}"').fetchall():
                new = {c: move(v) for c, v in zip(cols, row[1:]) if isinstance(v, str) and move(v) != v}
                if new:
                    sets = ", ".join(f'"{c}" = ?' for c in new)
                    con.execute(f'UPDATE "{table}" SET {sets} WHERE rowid = ?', (*new.values(), row[0]))
                    n += 1
    return n


def relocate(warehouse: str, log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:  # noqa: C901  (file kinds)
    """Rewrite a copied or moved local warehouse's catalog, metadata, manifests and run markers
    from the location it was created at to where it is now; only files in this directory are
    written, each atomically, so a killed relocate is finished by running it again (the marker
    moves last: until then the warehouse is still refused). Returns what was rewritten."""
    wh = os.path.abspath(warehouse.removeprefix("file://"))
    if not os.path.isdir(wh):
        raise StoreError(f"no warehouse at {wh}")
    marker = read_marker(wh)
    try:
        old = marker["location"] if marker else catalog_origin(wh)
    except _Unknown as e:
        raise StoreError(f"the catalog {wh}/catalog.db cannot be read: {e}") from None
    if old is None or _same_place(old, wh):
        return {"location": wh, "from": None, "files": 0, "catalog_rows": 0}
    move = _mover(old, wh)
    counts = {"metadata": 0, "manifests": 0, "manifest_lists": 0, "markers": 0}
    manifests: list[str] = []
    lists: list[str] = []
    metadata: list[str] = []
    markers: list[str] = []
    for d, dirs, files in os.walk(wh):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(d, f)
            if f.endswith(".tmp"):
                continue
            if f.endswith(".metadata.json"):
                metadata.append(p)
            elif f.endswith(".avro"):
                kind = _avro_kind(p)
                (manifests if kind == "manifest" else lists if kind == "list" else []).append(p)
            elif f.endswith(".json") and os.path.basename(d) == "_markers":
                markers.append(p)
    for p in manifests:  # first: the lists record their sizes
        counts["manifests"] += _rewrite_avro(p, move)

    def length(path: str) -> int | None:
        local = path.removeprefix("file://")
        return os.path.getsize(local) if local.startswith(wh + "/") and os.path.exists(local) else None
    for p in lists:
        counts["manifest_lists"] += _rewrite_avro(p, move, length)
    for p in metadata:
        counts["metadata"] += _rewrite_json(p, move)
    for p in markers:
        try:
            counts["markers"] += _rewrite_json(p, move)
        except ValueError:  # a damaged marker: its shard is redone anyway
            continue
    catalog_db = os.path.join(wh, "catalog.db")
    rows = _rewrite_catalog(catalog_db, move) if os.path.exists(catalog_db) else 0
    # A copy becomes a warehouse of its own: a new id, and where it came from.
    _write_marker(wh, {"location": wh, "id": uuid.uuid4().hex,
                       "created": (marker or {}).get("created"),
                       "relocated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "relocated_from": old, "previous_id": (marker or {}).get("id")}, replace=True)
    log(f"relocated {wh} from {old}: {counts['metadata']} metadata files, {counts['manifest_lists']} manifest "
        f"lists, {counts['manifests']} manifests, {counts['markers']} run markers, {rows} catalog rows")
    return {"location": wh, "from": old, **counts, "catalog_rows": rows}


def outside(store, wh: str) -> list[str]:
    """Every file a version of any table refers to that is not inside `wh` (empty after a
    complete relocate)."""
    root = wh.rstrip("/") + "/"
    tables = [ident for ns in store.catalog.list_namespaces() for ident in store.catalog.list_tables(ns)]
    bad = []
    for ident in tables:
        t = store.catalog.load_table(ident)
        paths = [t.metadata_location, t.location() + "/"]
        paths += [e.metadata_file for e in t.metadata.metadata_log]
        for snap in t.snapshots():
            paths.append(snap.manifest_list)
            paths += [m.manifest_path for m in snap.manifests(t.io)]
            paths += [task.file.file_path for task in t.scan(snapshot_id=snap.snapshot_id).plan_files()]
            lineage = (snap.summary.additional_properties or {}).get("curate.lineage_file")
            if lineage:
                paths.append(lineage)
        bad += [p for p in paths if not p.removeprefix("file://").startswith(root)]
    return bad
