"""Small reads and writes the engine makes on any filesystem: markers (whole or absent) and shards.

Paths are local, `file://` or `s3://`; `schemas.filesystem` resolves them (S3 endpoint and
credentials from the catalog's properties or the AWS variables)."""
from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import filesystem as fsys

filesystem = fsys.filesystem
read_json = fsys.read_json
exists = fsys.exists  # a file is there (a directory of that name is not): markers, signatures, decisions


def write_json(uri: str, obj: Any) -> None:
    fsys.write_json(uri, obj)  # a marker is either whole or absent (a rename locally, one PUT on S3)


def write_parquet(table: pa.Table, uri: str, stats: dict[str, Any] | None = None) -> int:
    """A file at `uri` is always whole: locally written under a temporary name and moved; on
    object storage the upload becomes visible only when complete (a move would copy it).
    Returns its size in bytes (a shard's marker records it: resume checks the file is the same)."""
    fs, path = filesystem(uri)
    if stats is not None:
        meta = dict(table.schema.metadata or {})
        meta[b"curate.stats"] = json.dumps(stats).encode()
        table = table.replace_schema_metadata(meta)
    if fsys.is_remote(uri):
        pq.write_table(table, path, filesystem=fs, compression="zstd")
        return int(fs.get_file_info(path).size)
    fs.create_dir(os.path.dirname(path), recursive=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    pq.write_table(table, tmp, filesystem=fs, compression="zstd")
    size = int(fs.get_file_info(tmp).size)
    fs.move(tmp, path)
    return size


def read_parquet(uri: str) -> pa.Table:
    fs, path = filesystem(uri)
    return pq.read_table(path, filesystem=fs)
