"""The dataset store: versioned tables of Parquet shards in an Apache Iceberg warehouse.

Default: a local warehouse directory with an embedded SQLite catalog. Any pyiceberg
catalog (PostgreSQL through SQLAlchemy, REST, Glue, Hive) with S3 storage works by passing
its properties instead (`--catalog`, env CURATE_CATALOG); every path goes through
`schemas.filesystem`. See README "Remote storage and a shared catalog". A pipeline run writes
its shards first (workers, straight to storage) and then `publish` registers them in ONE
snapshot per table: readers never see a partial run.
Snapshot properties carry the run's lineage and accounting (keys `curate.*`).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from schemas import filesystem as fsys

DEFAULT_NAMESPACE = "curate"
REJECTS_SUFFIX = "_rejects"
PROPERTY_PREFIX = "curate."
LINEAGE_KEY = "lineage_file"       # snapshot property pointing at the run's full lineage (JSON)
INLINE_MAX = 256                   # property values longer than this go to the lineage file
# Old metadata.json files are deleted after each commit; snapshots (the versions) are all kept.
TABLE_PROPERTIES = {"write.metadata.delete-after-commit.enabled": "true",
                    "write.metadata.previous-versions-max": "20"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,119}")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RESERVED_TAGS = {"main", "latest"}


def _env_catalog() -> dict[str, str] | None:
    raw = os.environ.get("CURATE_CATALOG")
    return parse_catalog(raw) if raw else None


def parse_catalog(text: str) -> dict[str, str]:
    """Catalog properties from JSON (`{"uri": ..., "warehouse": ...}`) or a bare catalog URI
    (`postgresql+psycopg://user@host/db`, `https://rest-catalog/api`)."""
    text = text.strip()
    if text.startswith("{"):
        try:
            props = json.loads(text)
        except json.JSONDecodeError as e:
            raise StoreError(f"catalog properties are not valid JSON: {e}") from None
        if not isinstance(props, dict):
            raise StoreError("catalog properties must be a JSON object")
        return {str(k): str(v) for k, v in props.items()}
    if "://" not in text:
        raise StoreError("the catalog is neither a URI (postgresql+psycopg://…, https://…) "
                         "nor a JSON object of pyiceberg catalog properties")
    return {"uri": text}


def catalog_options(catalog: str | None, warehouse: str | None) -> dict[str, str] | None:
    """The catalog a command line names (`--catalog`, else env CURATE_CATALOG), with a remote
    `--warehouse` as its warehouse; exported as CURATE_CATALOG so the Ray workers and child
    processes this process starts reach the same catalog and storage. None: the local default."""
    props = parse_catalog(catalog) if catalog else _env_catalog()
    if props is None:
        return None
    if warehouse and fsys.is_remote(warehouse):
        props = {**props, "warehouse": warehouse}
    os.environ["CURATE_CATALOG"] = json.dumps(props)
    return props


def default_warehouse() -> str:
    return os.environ.get("CURATE_WAREHOUSE", "./warehouse")


class StoreError(Exception):
    """A store problem a user can act on; the CLI prints it as one line."""


class VersionNotFound(KeyError):
    pass


class InvalidName(StoreError, ValueError):
    """A table or tag name that could break the warehouse (paths, reserved refs)."""


class QueryError(StoreError, ValueError):
    """A column or filter that the version does not have."""


class OutsideWarehouse(StoreError, OSError):
    """gc was asked to delete files outside the warehouse's own directory (never done)."""


class DataFileError(StoreError, RuntimeError):
    """A data file of a version cannot be read, or holds other rows than the metadata says."""


class StaleBase(RuntimeError):
    """An append-mode output commit found another output version current than the one its
    rejects were built on (another run committed in between): rebuild the rejects and retry."""

    def __init__(self, table: str, expected: int | None, current: int | None):
        super().__init__(f"'{table}' moved from version {expected} to {current} since the rejects were built")
        self.expected, self.current = expected, current


def check_table_name(name: str) -> str:
    """Table names are identifiers (optionally `namespace.table`): never paths, never `..`."""
    parts = name.split(".")
    if len(parts) > 2 or not all(_NAME.fullmatch(p) for p in parts):
        raise InvalidName(f"invalid table name '{name}': use letters, digits and '_' (at most 120, "
                          "not starting with a digit), optionally 'namespace.table'")
    return name


def check_tag(tag: str) -> str:
    """Tags name versions; `main` is Iceberg's branch and a number would read as a snapshot id."""
    if tag in RESERVED_TAGS or not _TAG.fullmatch(tag) or tag.lstrip("-").isdigit():
        raise InvalidName(f"invalid tag '{tag}': reserved ({', '.join(sorted(RESERVED_TAGS))}), all digits, or "
                          "not letters/digits/'.'/'_'/'-' (at most 100, starting with a letter or digit)")
    return tag


def _retryable() -> tuple[type[BaseException], ...]:
    """Every failure pyiceberg or the SQL catalog raises when another writer got there first."""
    from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException, ValidationException
    errors: list[type[BaseException]] = [CommitFailedException, CommitStateUnknownException, ValidationException]
    try:
        from sqlalchemy.exc import IntegrityError, OperationalError
        errors += [IntegrityError, OperationalError]  # SQLite: "database is locked", racing inserts
    except ImportError:  # pragma: no cover - catalogs without SQL
        pass
    return tuple(errors)


def _run_snapshot(t, run_id: str, output_base: str | None = None) -> int | None:
    """The newest snapshot of run `run_id` (built on output version `output_base`, when given:
    an append-mode rejects version rebased onto another output is a new snapshot of the same run)."""
    for snap in reversed(_lineage_order(t)):
        props = snap.summary.additional_properties or {}
        if props.get(PROPERTY_PREFIX + "run_id") == run_id and (
                output_base is None or props.get(PROPERTY_PREFIX + "output_base") == output_base):
            return snap.snapshot_id
    return None


def _backoff(attempt: int) -> None:
    time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))


def _lost_creation_race(e: BaseException) -> bool:
    """PostgreSQL: two processes creating the SQL catalog's own tables at once; one gets DuplicateTable."""
    try:
        from sqlalchemy.exc import ProgrammingError
    except ImportError:  # pragma: no cover - catalogs without SQL
        return False
    return isinstance(e, ProgrammingError) and "already exists" in str(getattr(e, "orig", e))


def _retry(fn, attempts: int = 8):
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as e:
            if not (isinstance(e, _retryable()) or _lost_creation_race(e)) or attempt == attempts - 1:
                raise
            _backoff(attempt)


@dataclass
class Ref:
    """`table`, `table@tag` or `table@snapshot-id` parsed."""
    table: str
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Ref":
        name, _, ver = text.partition("@")
        return cls(name, ver or None)

    def __str__(self) -> str:
        return f"{self.table}@{self.version}" if self.version else self.table


def rejects_name(table: str) -> str:
    return table + REJECTS_SUFFIX


class Store:
    def __init__(self, warehouse: str | None = None, catalog: dict[str, str] | None = None,
                 namespace: str = DEFAULT_NAMESPACE):
        from pyiceberg.catalog import load_catalog
        from pyiceberg.catalog.sql import SqlCatalog

        catalog = catalog if catalog is not None else _env_catalog()
        self.namespace = namespace
        if catalog:
            props = dict(catalog)
            if warehouse and fsys.is_remote(warehouse):
                props["warehouse"] = warehouse  # a remote --warehouse names the catalog's storage
            if props.get("uri", "").startswith(("sqlite", "postgresql", "mysql")):
                props.setdefault("type", "sql")
            props = fsys.catalog_s3_properties(props)
            fsys.use_catalog(props)  # our own reads and writes use the same S3 settings
            self.location = props.get("warehouse") or _without_password(props.get("uri", "catalog"))
            self.catalog_props = dict(props)
            name = props.pop("name", "curate")
            try:
                self.catalog = _retry(lambda: load_catalog(name, **props))  # racing first use of a SQL catalog
            except _retryable() as e:  # the database is down or unreachable: one line, not a traceback
                cause = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
                raise StoreError(f"cannot open the catalog {_without_password(props.get('uri', name))}: {cause}") from e
        else:
            if warehouse and fsys.is_remote(warehouse):
                raise StoreError(f"warehouse {warehouse} is on object storage: it needs a shared catalog, e.g. "
                                 "--catalog postgresql+psycopg://USER@HOST/DB (or env CURATE_CATALOG); "
                                 "see README \"Remote storage and a shared catalog\"")
            wh = os.path.abspath((warehouse or default_warehouse()).removeprefix("file://"))
            os.makedirs(wh, exist_ok=True)
            from schemas.warehouse import check_location
            check_location(wh)  # a copied or moved directory is refused: its catalog points elsewhere
            self.location = wh
            self.catalog_props = {"type": "sql", "uri": f"sqlite:///{wh}/catalog.db",
                                  "warehouse": f"file://{wh}"}
            self.catalog = _retry(lambda: SqlCatalog("curate", uri=self.catalog_props["uri"],
                                                     warehouse=self.catalog_props["warehouse"]))
        self._lineage_cache: dict[str, dict[str, Any]] = {}
        _retry(lambda: self._ensure_namespace(namespace))

    def _ensure_namespace(self, namespace: str) -> None:
        from pyiceberg.exceptions import NamespaceAlreadyExistsError
        try:
            self.catalog.create_namespace_if_not_exists(namespace)
        except NamespaceAlreadyExistsError:  # created by a concurrent run
            pass

    # ---- tables ---------------------------------------------------------------------
    def ident(self, name: str) -> str:
        return name if "." in name else f"{self.namespace}.{name}"

    def tables(self) -> list[str]:
        return sorted(t[-1] for t in self.catalog.list_tables(self.namespace))

    def exists(self, name: str) -> bool:
        return self.catalog.table_exists(self.ident(name))

    def table(self, name: str):
        from pyiceberg.exceptions import NoSuchTableError
        try:
            return self.catalog.load_table(self.ident(name))
        except NoSuchTableError:
            known = ", ".join(self.tables()) or "none yet"
            raise VersionNotFound(f"no table '{name}' in {self.location} (tables: {known})") from None

    def ensure_table(self, name: str, schema: pa.Schema):
        """Load the table, or create it: safe when two runs create it at once. Loads first, so
        an existing table never gets an orphan metadata file from a failed create."""
        from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError
        check_table_name(name)
        lost_race: tuple[type[BaseException], ...] = (TableAlreadyExistsError, *_retryable())
        for attempt in range(8):
            try:
                return self.catalog.load_table(self.ident(name))
            except NoSuchTableError:
                pass
            try:
                return self.catalog.create_table(self.ident(name), schema=schema, properties=TABLE_PROPERTIES)
            except lost_race:
                _backoff(attempt)  # another run created it (or holds the lock): load it next time
        return self.catalog.load_table(self.ident(name))

    def data_location(self, name: str) -> str:
        return self.table(name).location().rstrip("/") + "/data"

    # ---- versions -------------------------------------------------------------------
    def snapshot(self, ref: str | Ref):
        """The snapshot a ref names. Without a version: the current one; for a rejects table,
        the one paired with a complete run (see `_published_rejects`)."""
        ref = Ref.parse(ref) if isinstance(ref, str) else ref
        t = self.table(ref.table)
        if ref.version in (None, "latest", "main"):
            snap = self._current(ref.table, t)
            if snap is None:
                raise VersionNotFound(f"table '{ref.table}' has no published version yet")
            return t, snap
        if ref.version in t.metadata.refs:
            return t, t.snapshot_by_id(t.metadata.refs[ref.version].snapshot_id)
        if ref.version.lstrip("-").isdigit():
            snap = t.snapshot_by_id(int(ref.version))
            if snap is not None:
                return t, snap
        tags = ", ".join(sorted(k for k, v in t.metadata.refs.items() if k != "main")) or "none"
        raise VersionNotFound(f"'{ref}': no tag or snapshot '{ref.version}' (tags: {tags})")

    def _current(self, name: str, t):
        """A rejects table's current version is the one its output's current version names
        (`rejects_snapshot`), never the rejects table's own newest: two runs' commits interleave
        (R_A, R_B, O_B, O_A: a kill and rerun, or two configs at once) and the newest rejects can
        belong to another run than the current output. The one exception is a run that kept no
        row: its rejects, published alone, are current until an output is committed after them."""
        if not name.endswith(REJECTS_SUFFIX):
            return t.current_snapshot()
        out_name = name[:-len(REJECTS_SUFFIX)]
        out = self.table(out_name).current_snapshot() if self.exists(out_name) else None
        order = _lineage_order(t)
        for s in reversed(order):
            props = s.summary.additional_properties or {}
            if props.get(PROPERTY_PREFIX + "standalone") != "true":
                continue
            base = props.get(PROPERTY_PREFIX + "output_base")  # the output's current when it was published
            if base is not None:
                if base == (str(out.snapshot_id) if out is not None else "none"):
                    return s
            elif out is None or s.timestamp_ms >= out.timestamp_ms:  # published before output_base existed
                return s
        return self._named_or_newest(name, t, out, order)

    def _named_or_newest(self, name: str, t, out, order: list | None = None):
        """The rejects snapshot output snapshot `out` names; for an output published by hand or
        before pairing, or none, the newest visible rejects."""
        named = _named_rejects(out)
        if named is not None and (snap := t.snapshot_by_id(named)) is not None:
            return snap
        ok = self._published_rejects(name, t)
        for s in reversed(order if order is not None else _lineage_order(t)):
            if s.snapshot_id in ok:
                return s
        return None

    def named_rejects(self, output: str, snapshot_id: int) -> int | None:
        """The rejects snapshot that output version `snapshot_id` names, if any (read from the
        snapshot's own properties: no lineage file is loaded)."""
        return _named_rejects(self.table(output).snapshot_by_id(snapshot_id))

    def _published_rejects(self, name: str, t) -> set[int]:
        """Rejects snapshots whose run became visible: a run publishes its rejects first and its
        output last, naming the rejects snapshot; until then the rejects are invisible here. A
        run that kept no row publishes rejects alone, marked `standalone`."""
        ok = set()
        for s in t.snapshots():
            props = s.summary.additional_properties or {}
            if (props.get(PROPERTY_PREFIX + "standalone") == "true" or PROPERTY_PREFIX + "run_id" not in props
                    or PROPERTY_PREFIX + "output_snapshot" in props):  # published alone, by hand, or before pairing
                ok.add(s.snapshot_id)
        return ok | set(self._pairs(name))

    def _pairs(self, rejects_table: str) -> dict[int, int]:
        """rejects snapshot id → the output snapshot that names it (`rejects_snapshot`)."""
        out_name = rejects_table[:-len(REJECTS_SUFFIX)]
        if not self.exists(out_name):
            return {}
        pairs = {}
        for s in self.table(out_name).snapshots():
            if (sid := _named_rejects(s)) is not None:
                pairs[sid] = s.snapshot_id
        return pairs

    def properties(self, ref: str | Ref) -> dict[str, Any]:
        """The snapshot's `curate.*` properties, JSON values decoded, with the run's full lineage
        (config, inputs, accounting, stats) read from the file the snapshot points to."""
        t, snap = self.snapshot(ref)
        out = {}
        for k, v in (snap.summary.additional_properties or {}).items():
            if k.startswith(PROPERTY_PREFIX):
                key = k[len(PROPERTY_PREFIX):]
                try:
                    out[key] = json.loads(v)
                except (json.JSONDecodeError, TypeError):
                    out[key] = v
        if LINEAGE_KEY in out:
            out = {**self._lineage(t, out[LINEAGE_KEY]), **out}
        name = Ref.parse(ref).table if isinstance(ref, str) else ref.table
        if name.endswith(REJECTS_SUFFIX) and "output_snapshot" not in out:  # the pair, seen from this side
            paired = self._pairs(name).get(snap.snapshot_id)
            if paired is not None:
                out["output_snapshot"] = paired
        return out

    def _lineage(self, t, path: str) -> dict[str, Any]:
        if path not in self._lineage_cache:
            try:
                with t.io.new_input(path).open() as f:
                    self._lineage_cache[path] = json.loads(f.read())
            except (OSError, ValueError) as e:
                raise DataFileError(f"lineage file {path} of table {t.name()[-1]} cannot be read: {e}") from e
        return self._lineage_cache[path]

    def versions(self, name: str) -> list[dict[str, Any]]:
        t = self.table(name)
        tags: dict[int, list[str]] = {}
        for tag, r in t.metadata.refs.items():
            if tag != "main":
                tags.setdefault(r.snapshot_id, []).append(tag)
        current = self._current(name, t)
        visible = self._published_rejects(name, t) if name.endswith(REJECTS_SUFFIX) else None
        out = []
        for s in t.snapshots():
            props = s.summary.additional_properties or {}
            out.append({
                "snapshot_id": s.snapshot_id,
                "parent_id": s.parent_snapshot_id,
                "time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.timestamp_ms / 1000)),
                "timestamp_ms": s.timestamp_ms,
                "operation": s.summary.operation.value,
                "rows": int(props.get("total-records", 0)),
                "files": int(props.get("total-data-files", 0)),
                "tags": sorted(tags.get(s.snapshot_id, [])),
                "run_id": props.get("curate.run_id"),
                "pipeline": props.get("curate.pipeline"),
                "current": current is not None and s.snapshot_id == current.snapshot_id,
                # a rejects version whose run has not published its output (killed in between)
                "pending": visible is not None and s.snapshot_id not in visible,
            })
        return out

    def find_run(self, name: str, run_id: str) -> int | None:
        """Snapshot id a run already published to `name`, if any (makes publish idempotent)."""
        return _run_snapshot(self.table(name), run_id) if self.exists(name) else None

    def tag(self, ref: str, tag: str, replace: bool = False) -> int:
        check_tag(tag)

        def once() -> int:  # re-resolved on every try: a concurrent commit moves the refs
            t, snap = self.snapshot(ref)
            if tag in t.metadata.refs and not replace:
                raise ValueError(f"tag '{tag}' already exists on '{Ref.parse(ref).table}' (use --force to move it)")
            ms = t.manage_snapshots()
            if tag in t.metadata.refs:
                ms = ms.remove_tag(tag)
            ms.create_tag(snap.snapshot_id, tag).commit()
            return snap.snapshot_id
        return _retry(once)

    # ---- publishing -----------------------------------------------------------------
    def paired_rejects(self, output: str) -> tuple[int | None, int | None]:
        """(the output's current snapshot, the rejects snapshot it names): what an append-mode
        run builds its rejects on. An output published by hand or before pairing names none:
        then the rejects table's newest visible version; no output version yet: (None, None)."""
        if not self.exists(output) or (out := self.table(output).current_snapshot()) is None:
            return None, None
        rname = rejects_name(output)
        if not self.exists(rname):
            return out.snapshot_id, None
        rejects = self._named_or_newest(rname, self.table(rname), out)
        return out.snapshot_id, rejects.snapshot_id if rejects is not None else None

    def publish(self, name: str, schema: pa.Schema, files: list[str], properties: dict[str, Any],
                *, mode: str = "overwrite", retries: int = 10, with_files_of: int | None = None,
                expect_current: int | None = None, check_current: bool = False) -> int:
        """Register written Parquet files as one new snapshot of `name` and return its id.

        `overwrite` makes the new version exactly these files; `append` adds them to the
        current ones. Idempotent per `properties['run_id']` (and `output_base`, where given):
        a retried publish of the same run returns the snapshot it already made. Small
        properties go into the snapshot; large ones (config, accounting, stats) into one
        content-addressed lineage file it points to, so table metadata does not grow by
        kilobytes per version. A commit that loses a race with another writer is retried on
        the refreshed table.

        The paired append (ARCHITECTURE.md, "What the store guarantees"): `overwrite` with
        `with_files_of` makes the new version exactly these files plus those of that snapshot of
        the same table, whatever the table's own newest is (a run's rejects built on the rejects
        the output names, never on another run's pending ones); `check_current` raises StaleBase
        unless the table's current snapshot is `expect_current` when the commit lands (a
        compare-and-swap: Iceberg's commit asserts the very snapshot this check read).
        """
        check_table_name(name)
        run_id = properties.get("run_id")
        base = properties.get("output_base")
        t = self.ensure_table(name, schema)
        props = self._snapshot_properties(t, properties)
        for attempt in range(retries):
            # Checked on the very metadata the commit builds on: a run that commits after this
            # load makes the commit fail (compare-and-swap) and the retry sees its snapshot. Checked
            # on a separate, earlier load, two identical runs on S3 both committed once.
            t = self.ensure_table(name, schema)
            if run_id and (done := _run_snapshot(t, run_id, base)) is not None:
                return done
            current = t.current_snapshot()
            if check_current and (current.snapshot_id if current is not None else None) != expect_current:
                raise StaleBase(name, expect_current, current.snapshot_id if current is not None else None)
            try:
                self._commit(t, schema, files, props, mode, with_files_of)
                break
            except _retryable():
                if attempt == retries - 1:
                    raise
                _backoff(attempt)
        if run_id and (done := _run_snapshot(self.table(name), run_id, base)) is not None:
            return done
        return self.table(name).current_snapshot().snapshot_id

    def _commit(self, t, schema: pa.Schema, files: list[str], props: dict[str, str], mode: str,
                with_files_of: int | None) -> None:
        """One commit of `files` to `t` as loaded (see `publish`). pyiceberg (0.12) would retry a
        commit that lost a race itself, rebuilt on the new current version, skipping publish's
        checks (the run already published; the output version its rejects were built on): its
        retries are turned off for this commit (in memory only) and `publish` retries instead."""
        from pyiceberg.io.pyarrow import parquet_files_to_data_files
        from pyiceberg.table import TableProperties

        t.metadata = t.metadata.model_copy(update={"properties": {**t.metadata.properties,
                                                                  TableProperties.COMMIT_NUM_RETRIES: "0"}})
        with t.transaction() as tx:
            if not _schema_covers(tx.table_metadata.schema(), schema):
                with tx.update_schema() as us:
                    us.union_by_name(schema)
            table_props = {TableProperties.DEFAULT_NAME_MAPPING:
                           tx.table_metadata.schema().name_mapping.model_dump_json(), **TABLE_PROPERTIES}
            tx.set_properties(**table_props)
            producer = tx.update_snapshot(snapshot_properties=props)
            exact = mode == "overwrite"
            with (producer.overwrite() if exact else producer.fast_append()) as op:
                current = tx.table_metadata.current_snapshot()
                have = {task.file.file_path: task.file for task in t.scan(snapshot_id=current.snapshot_id).plan_files()
                        } if exact and current is not None else {}
                keep = {task.file.file_path: task.file for task in t.scan(snapshot_id=with_files_of).plan_files()
                        } if exact and with_files_of is not None else {}
                for path, df in have.items():
                    if path not in keep:
                        op.delete_data_file(df)
                for path, df in keep.items():
                    if path not in have:
                        op.append_data_file(df)
                new = [f for f in files if f not in keep]
                for df in parquet_files_to_data_files(io=t.io, table_metadata=tx.table_metadata, file_paths=iter(new)):
                    op.append_data_file(df)

    def _snapshot_properties(self, t, properties: dict[str, Any]) -> dict[str, str]:
        encoded = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
                   for k, v in properties.items()}
        inline = {k: v for k, v in encoded.items() if len(v) <= INLINE_MAX}
        large = {k: properties[k] for k in encoded if k not in inline}
        if large:
            body = json.dumps(large, sort_keys=True, default=str).encode()
            path = f"{t.location().rstrip('/')}/metadata/curate/{hashlib.sha256(body).hexdigest()}.json"
            out = t.io.new_output(path)
            if not out.exists():
                with out.create(overwrite=True) as f:
                    f.write(body)
            inline[LINEAGE_KEY] = path
        return {PROPERTY_PREFIX + k: v for k, v in inline.items()}

    # ---- garbage --------------------------------------------------------------------
    def sweep(self, name: str, older_than_s: float = 3600, runs: bool = False, dry_run: bool = False) -> list[str]:
        """Delete what no version refers to: metadata, manifests and lineage files left by failed
        or lost commit races, and with `runs` the data of runs that never published (killed and
        not rerun). Only files older than `older_than_s`: a concurrent writer's files-in-flight
        and a killed run awaiting its rerun are younger than that. Returns the paths removed."""
        t = self.table(name)
        keep = {t.metadata_location} | {e.metadata_file for e in t.metadata.metadata_log}
        for snap in t.snapshots():
            keep.add(snap.manifest_list)
            keep |= {m.manifest_path for m in snap.manifests(t.io)}
            lineage = (snap.summary.additional_properties or {}).get(PROPERTY_PREFIX + LINEAGE_KEY)
            if lineage:
                keep.add(lineage)
            if runs:
                keep |= {task.file.file_path for task in t.scan(snapshot_id=snap.snapshot_id).plan_files()}
        keep = {fsys.filesystem(p)[1] for p in keep}  # compared as paths inside the filesystem
        fs, base = fsys.filesystem(t.location().rstrip("/"))
        root = self._root()
        if root is None or not _inside(base, root):
            raise OutsideWarehouse(f"table '{name}' lies at {t.location()}, outside this warehouse ({self.location}): "
                                   "gc deletes files only inside its own warehouse")
        now, removed = time.time(), []
        live = _runs_in_progress(fs, [f"{base}/data", _output_data_dir(base)]) if runs else set()
        for sub in ("metadata", "data") if runs else ("metadata",):
            for info in fs.get_file_info(pafs.FileSelector(f"{base}/{sub}", recursive=True, allow_not_found=True)):
                if info.type != pafs.FileType.File or info.path in keep:
                    continue
                rel = info.path[len(base) + len("/data/"):] if sub == "data" else ""
                if rel.startswith(".lock-") or any(rel.startswith(f"run-{key}-") for key in live):
                    continue  # a run's lock, and the files of a run some process is running now
                if not _inside(info.path, root) or (isinstance(fs, pafs.LocalFileSystem) and not _inside(
                        os.path.realpath(info.path), os.path.realpath(root))):  # a link out of the warehouse
                    continue
                if info.mtime is not None and now - info.mtime.timestamp() < older_than_s:
                    continue
                removed.append(info.path)
                if not dry_run:
                    fs.delete_file(info.path)
        return removed

    def _root(self) -> str | None:
        """The warehouse's own root as a path inside its filesystem, or None when unknown."""
        wh = self.catalog_props.get("warehouse") or getattr(self.catalog, "properties", {}).get("warehouse")
        return fsys.filesystem(wh.rstrip("/"))[1].rstrip("/") if wh else None

    # ---- reading --------------------------------------------------------------------
    def files(self, ref: str | Ref) -> pa.Table:
        """Per data file metadata of a version: rows, bytes, null counts, bounds (no scan)."""
        t, snap = self.snapshot(ref)
        if not any(True for _ in t.scan(snapshot_id=snap.snapshot_id).plan_files()):
            return EMPTY_FILES  # pyiceberg's inspect fails on a version with no files
        return t.inspect.files(snapshot_id=snap.snapshot_id)

    def read_arrow(self, ref: str | Ref, columns: Iterable[str] | None = None,
                   limit: int | None = None, where: str | None = None) -> pa.Table:
        """Rows of a version, verified: a file that cannot be read, or a full read whose row
        count differs from the table metadata, raises DataFileError naming the file.

        `where` may name columns that `columns` leaves out: the rows are filtered first, then
        projected (the filter's columns are read and dropped again)."""
        from pyiceberg.expressions.visitors import bind, extract_field_ids
        from pyparsing import ParseException
        t, snap = self.snapshot(ref)
        fields = tuple(columns) if columns else ("*",)
        try:
            scan = t.scan(snapshot_id=snap.snapshot_id, selected_fields=("*",), limit=limit, row_filter=where or "True")
            schema = t.schemas()[snap.schema_id]
            extra: list[str] = []
            if columns:
                needed = [schema.find_column_name(i) for i in sorted(extract_field_ids(
                    bind(schema, scan.row_filter, case_sensitive=True)))]
                extra = [c for c in needed if c and c not in fields]
                scan = t.scan(snapshot_id=snap.snapshot_id, selected_fields=fields + tuple(extra), limit=limit,
                              row_filter=where or "True")
            bind(scan.projection(), scan.row_filter, case_sensitive=True)
        except ParseException as e:
            raise QueryError(f"{ref}: cannot parse the filter {where!r} at character {e.loc + 1} "
                             "(e.g. \"drop_reason == 'too_short'\", \"n_words > 50 and source == 'web'\")") from None
        except ValueError as e:  # unknown column
            names = ", ".join(f.name for f in t.schemas()[snap.schema_id].fields)
            raise QueryError(f"{ref}: {e} (columns: {names})") from None
        try:
            table = scan.to_arrow()
        except (OSError, pa.ArrowException) as e:
            raise DataFileError(self._diagnose(t, snap, e)) from e
        if extra:  # read for the filter only
            wanted = {c.split(".")[0] for c in fields}
            table = table.drop_columns([c for c in {e.split(".")[0] for e in extra} - wanted
                                        if c in table.column_names])
        if limit is None and where is None:
            expected = sum(task.file.record_count for task in t.scan(snapshot_id=snap.snapshot_id).plan_files())
            if table.num_rows != expected:
                raise DataFileError(self._diagnose(
                    t, snap, f"read {table.num_rows:,} rows, metadata says {expected:,}"))
        return table

    def _diagnose(self, t, snap, cause: Any) -> str:
        """Name the data file behind a failed read (checked one by one, only on failure)."""
        where = f"{t.name()[-1]}@{snap.snapshot_id}"
        for task in t.scan(snapshot_id=snap.snapshot_id).plan_files():
            problem = check_data_file(t.io, task.file.file_path, task.file.record_count)
            if problem:
                return f"{where}: {problem}"
        return f"{where}: read failed: {cause}"

    def read_ray(self, ref: str | Ref, columns: Iterable[str] | None = None):
        """A Ray Dataset over one version (streams its files from the workers).

        Ray is started the way the pipelines start it (schemas/engine/raysession.py: embedded,
        on 127.0.0.1, auth off, no dashboard) unless it is already up in this process or
        RAY_ADDRESS names a cluster to join; never Ray's own defaults."""
        import ray.data

        from schemas.engine.raysession import init_ray
        t, snap = self.snapshot(ref)  # a wrong name or tag fails before Ray starts
        ref = Ref.parse(ref) if isinstance(ref, str) else ref
        init_ray()
        return ray.data.read_iceberg(
            table_identifier=self.ident(ref.table), snapshot_id=snap.snapshot_id,
            selected_fields=tuple(columns) if columns else ("*",),
            catalog_kwargs={"name": "curate", **self.catalog_props})

    def shard_stats(self, path: str) -> dict[str, Any] | None:
        """Content stats a shard's writer put in its Parquet footer."""
        fs, p = fsys.filesystem(path)
        try:
            with fs.open_input_file(p) as f:
                meta = pq.read_metadata(f).metadata or {}
        except (OSError, pa.ArrowException) as e:
            raise DataFileError(f"data file {path} cannot be read: {e}") from e
        raw = meta.get(b"curate.stats")
        return json.loads(raw) if raw else None


EMPTY_FILES = pa.table({"file_path": pa.array([], pa.string()), "record_count": pa.array([], pa.int64()),
                        "file_size_in_bytes": pa.array([], pa.int64()),
                        "readable_metrics": pa.array([], pa.struct([("_", pa.int8())]))})


def check_data_file(io, path: str, expected_rows: int | None) -> str | None:
    """What is wrong with one Parquet data file (unreadable, or other rows than expected), or None."""
    try:
        with io.new_input(path).open() as f:
            pf = pq.ParquetFile(f)
            rows = pf.metadata.num_rows
            for g in range(pf.metadata.num_row_groups):  # decode every page: a footer can survive truncation
                pf.read_row_group(g)
    except (OSError, pa.ArrowException) as e:
        return f"data file {path} cannot be read: {e}"
    if expected_rows is not None and rows != expected_rows:
        return f"data file {path} holds {rows:,} rows but the table metadata says {expected_rows:,}"
    return None


def _without_password(uri: str) -> str:
    """A catalog URI fit for messages: `user:secret@host` becomes `user:***@host`."""
    return re.sub(r"(://[^:/@]+):[^/]*@", r"\1:***@", uri)


def _output_data_dir(base: str) -> str:
    """A rejects table's runs are locked in its output table's data directory."""
    return f"{base.removesuffix('_rejects')}/data" if base.endswith("_rejects") else f"{base}/data"


def _runs_in_progress(fs, dirs: list[str]) -> set[str]:
    """Run keys whose lock (`data/.lock-<run key>`, flock) a live process holds, read from
    /proc/locks so the check never takes the lock itself (a probe would make a run starting at
    that moment fail as already running). Without /proc/locks (not Linux) every locked-looking
    run counts as live: gc then keeps its files, which is the safe side."""
    if not isinstance(fs, pafs.LocalFileSystem):
        return set()  # object stores have no run locks
    locks = {}
    for d in dict.fromkeys(dirs):
        for info in fs.get_file_info(pafs.FileSelector(d, allow_not_found=True)):
            name = os.path.basename(info.path)
            if info.type == pafs.FileType.File and name.startswith(".lock-"):
                st = os.stat(info.path)
                locks[(os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)] = name[len(".lock-"):]
    if not locks:
        return set()
    try:
        with open("/proc/locks") as f:
            held = f.read().splitlines()
    except OSError:
        return set(locks.values())
    live = set()
    for line in held:
        parts = line.split()
        if "FLOCK" not in parts:
            continue
        dev_ino = next((x for x in parts if x.count(":") == 2), None)
        if dev_ino:
            major, minor, ino = dev_ino.split(":")
            key = (int(major, 16), int(minor, 16), int(ino))
            if key in locks:
                live.add(locks[key])
    return live


def _inside(path: str, root: str) -> bool:
    path, root = path.rstrip("/"), root.rstrip("/")
    return path == root or path.startswith(root + "/")


def _named_rejects(snap) -> int | None:
    """The rejects snapshot id an output snapshot names (`rejects_snapshot`), if any."""
    sid = (snap.summary.additional_properties or {}).get(PROPERTY_PREFIX + "rejects_snapshot") if snap else None
    return int(sid) if sid and sid.lstrip("-").isdigit() else None


def _lineage_order(t) -> list:
    """Snapshots oldest first by commit sequence."""
    return sorted(t.snapshots(), key=lambda s: (s.sequence_number or 0, s.timestamp_ms))


def _schema_covers(iceberg_schema, arrow_schema: pa.Schema) -> bool:
    names = {f.name for f in iceberg_schema.fields}
    return all(f.name in names for f in arrow_schema)
