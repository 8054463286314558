"""Small reads and writes the engine makes on any filesystem: markers (whole or absent) and shards."""
from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), uri


def write_json(uri: str, obj: Any) -> None:
    fs, path = filesystem(uri)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    fs.create_dir(os.path.dirname(path), recursive=True)
    with fs.open_output_stream(tmp) as f:
        f.write(json.dumps(obj, default=str).encode())
    fs.move(tmp, path)  # a marker is either whole or absent


def read_json(uri: str) -> Any:
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as f:
        return json.loads(f.read())


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type == pafs.FileType.File


def write_parquet(table: pa.Table, uri: str, stats: dict[str, Any] | None = None) -> None:
    """Written under a temporary name and moved: a file at `uri` is always whole."""
    fs, path = filesystem(uri)
    fs.create_dir(os.path.dirname(path), recursive=True)
    if stats is not None:
        meta = dict(table.schema.metadata or {})
        meta[b"curate.stats"] = json.dumps(stats).encode()
        table = table.replace_schema_metadata(meta)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    pq.write_table(table, tmp, filesystem=fs, compression="zstd")
    fs.move(tmp, path)


def read_parquet(uri: str) -> pa.Table:
    fs, path = filesystem(uri)
    return pq.read_table(path, filesystem=fs)
