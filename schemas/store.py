"""The dataset store: versioned tables of Parquet shards in an Apache Iceberg warehouse.

Default: a local warehouse directory with an embedded SQLite catalog. Any pyiceberg
catalog (REST, Glue, Hive, S3 storage) works by passing its properties instead; see
README "Store". A pipeline run writes its shards first (workers, straight to storage) and
then `publish` registers them in ONE snapshot per table: readers never see a partial run.
Snapshot properties carry the run's lineage and accounting (keys `curate.*`).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

DEFAULT_NAMESPACE = "curate"
REJECTS_SUFFIX = "_rejects"
PROPERTY_PREFIX = "curate."


def _env_catalog() -> dict[str, str] | None:
    raw = os.environ.get("CURATE_CATALOG")
    return json.loads(raw) if raw else None


def default_warehouse() -> str:
    return os.environ.get("CURATE_WAREHOUSE", "./warehouse")


class VersionNotFound(KeyError):
    pass


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
            self.location = props.get("warehouse", props.get("uri", "catalog"))
            self.catalog = load_catalog(props.pop("name", "curate"), **props)
            self.catalog_props = catalog
        else:
            wh = os.path.abspath(warehouse or default_warehouse())
            os.makedirs(wh, exist_ok=True)
            self.location = wh
            self.catalog_props = {"type": "sql", "uri": f"sqlite:///{wh}/catalog.db",
                                  "warehouse": f"file://{wh}"}
            self.catalog = SqlCatalog("curate", uri=self.catalog_props["uri"],
                                      warehouse=self.catalog_props["warehouse"])
        self.catalog.create_namespace_if_not_exists(namespace)

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
        return self.catalog.create_table_if_not_exists(self.ident(name), schema=schema)

    def data_location(self, name: str) -> str:
        return self.table(name).location().rstrip("/") + "/data"

    # ---- versions -------------------------------------------------------------------
    def snapshot(self, ref: str | Ref):
        """The snapshot a ref names (latest when no version is given)."""
        ref = Ref.parse(ref) if isinstance(ref, str) else ref
        t = self.table(ref.table)
        if ref.version in (None, "latest", "main"):
            snap = t.current_snapshot()
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

    def properties(self, ref: str | Ref) -> dict[str, Any]:
        """The snapshot's `curate.*` properties, JSON values decoded."""
        _, snap = self.snapshot(ref)
        out = {}
        for k, v in (snap.summary.additional_properties or {}).items():
            if k.startswith(PROPERTY_PREFIX):
                key = k[len(PROPERTY_PREFIX):]
                try:
                    out[key] = json.loads(v)
                except (json.JSONDecodeError, TypeError):
                    out[key] = v
        return out

    def versions(self, name: str) -> list[dict[str, Any]]:
        t = self.table(name)
        tags: dict[int, list[str]] = {}
        for tag, r in t.metadata.refs.items():
            if tag != "main":
                tags.setdefault(r.snapshot_id, []).append(tag)
        current = t.current_snapshot()
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
            })
        return out

    def find_run(self, name: str, run_id: str) -> int | None:
        """Snapshot id a run already published to `name`, if any (makes publish idempotent)."""
        if not self.exists(name):
            return None
        for s in self.table(name).snapshots():
            if (s.summary.additional_properties or {}).get("curate.run_id") == run_id:
                return s.snapshot_id
        return None

    def tag(self, ref: str, tag: str, replace: bool = False) -> int:
        t, snap = self.snapshot(ref)
        if tag in t.metadata.refs and not replace:
            raise ValueError(f"tag '{tag}' already exists on '{Ref.parse(ref).table}' (use --force to move it)")
        ms = t.manage_snapshots()
        if tag in t.metadata.refs:
            ms = ms.remove_tag(tag)
        ms.create_tag(snap.snapshot_id, tag).commit()
        return snap.snapshot_id

    # ---- publishing -----------------------------------------------------------------
    def publish(self, name: str, schema: pa.Schema, files: list[str], properties: dict[str, Any],
                *, mode: str = "overwrite", retries: int = 5) -> int:
        """Register written Parquet files as one new snapshot of `name` and return its id.

        `overwrite` makes the new version exactly these files; `append` adds them to the
        current ones. Idempotent per `properties['run_id']`: a retried publish of the same
        run returns the snapshot it already made.
        """
        from pyiceberg.exceptions import CommitFailedException
        from pyiceberg.io.pyarrow import parquet_files_to_data_files
        from pyiceberg.table import TableProperties

        run_id = properties.get("run_id")
        if run_id and (done := self.find_run(name, run_id)) is not None:
            return done
        props = {PROPERTY_PREFIX + k: v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
                 for k, v in properties.items()}
        for attempt in range(retries):
            t = self.ensure_table(name, schema)
            try:
                with t.transaction() as tx:
                    if not _schema_covers(tx.table_metadata.schema(), schema):
                        with tx.update_schema() as us:
                            us.union_by_name(schema)
                    tx.set_properties(**{TableProperties.DEFAULT_NAME_MAPPING:
                                         tx.table_metadata.schema().name_mapping.model_dump_json()})
                    producer = tx.update_snapshot(snapshot_properties=props)
                    with (producer.overwrite() if mode == "overwrite" else producer.fast_append()) as op:
                        current = tx.table_metadata.current_snapshot()
                        if mode == "overwrite" and current is not None:
                            for task in t.scan(snapshot_id=current.snapshot_id).plan_files():
                                op.delete_data_file(task.file)
                        for df in parquet_files_to_data_files(io=t.io, table_metadata=tx.table_metadata,
                                                              file_paths=list(files)):
                            op.append_data_file(df)
                break
            except CommitFailedException:
                if attempt == retries - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        snap = self.table(name).current_snapshot()
        return snap.snapshot_id

    # ---- reading --------------------------------------------------------------------
    def files(self, ref: str | Ref) -> pa.Table:
        """Per data file metadata of a version: rows, bytes, null counts, bounds (no scan)."""
        t, snap = self.snapshot(ref)
        return t.inspect.files(snapshot_id=snap.snapshot_id)

    def read_arrow(self, ref: str | Ref, columns: Iterable[str] | None = None,
                   limit: int | None = None) -> pa.Table:
        t, snap = self.snapshot(ref)
        fields = tuple(columns) if columns else ("*",)
        return t.scan(snapshot_id=snap.snapshot_id, selected_fields=fields, limit=limit).to_arrow()

    def read_ray(self, ref: str | Ref, columns: Iterable[str] | None = None):
        """A Ray Dataset over one version (streams its files from the workers)."""
        import ray.data
        t, snap = self.snapshot(ref)
        ref = Ref.parse(ref) if isinstance(ref, str) else ref
        return ray.data.read_iceberg(
            table_identifier=self.ident(ref.table), snapshot_id=snap.snapshot_id,
            selected_fields=tuple(columns) if columns else ("*",),
            catalog_kwargs={"name": "curate", **self.catalog_props})

    def shard_stats(self, path: str) -> dict[str, Any] | None:
        """Content stats a shard's writer put in its Parquet footer."""
        fs, p = pafs.FileSystem.from_uri(path) if "://" in path else (pafs.LocalFileSystem(), path)
        with fs.open_input_file(p) as f:
            meta = pq.read_metadata(f).metadata or {}
        raw = meta.get(b"curate.stats")
        return json.loads(raw) if raw else None


def _schema_covers(iceberg_schema, arrow_schema: pa.Schema) -> bool:
    names = {f.name for f in iceberg_schema.fields}
    return all(f.name in names for f in arrow_schema)
