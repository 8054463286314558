"""One way to reach a path, on local disk or in object storage (`s3://`).

Every input, output, marker and warehouse path goes through here instead of `open`/`os.path`
on a string that could be a URI (ARCHITECTURE.md, "What the store guarantees"). Local paths
and `file://` go to the local filesystem exactly as before (same fingerprints, same atomic rename); `s3://` goes to
pyarrow's S3FileSystem configured from, in this order: the catalog's pyiceberg properties
(`s3.endpoint`, `s3.access-key-id`, `s3.secret-access-key`, `s3.session-token`, `s3.region`,
from `use_catalog` or env CURATE_CATALOG) and the standard AWS variables (AWS_ENDPOINT_URL_S3,
AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
AWS_DEFAULT_REGION). Ray workers see only their environment: the CLI and the pipeline scripts
export `--catalog` as CURATE_CATALOG before Ray starts, and `ray job submit` passes the
variables in its runtime_env (README "Remote storage and a shared catalog").
"""
from __future__ import annotations

import fnmatch
import functools
import io
import json
import os
import uuid
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from pyarrow import fs as pafs

_catalog: dict[str, str] | None = None  # set by the Store that opened a catalog in this process


def use_catalog(props: dict[str, str] | None) -> None:
    """Take S3 settings from these catalog properties (over the environment) in this process."""
    global _catalog
    _catalog = dict(props) if props else None


def catalog_properties() -> dict[str, str]:
    if _catalog is not None:
        return _catalog
    raw = os.environ.get("CURATE_CATALOG")
    try:
        return json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}


def is_remote(uri: str) -> bool:
    """A URI of another filesystem than the local one (`file://` and plain paths are local)."""
    return "://" in uri and not uri.startswith("file://")


def s3_options(props: dict[str, str] | None = None) -> dict[str, Any]:
    """S3FileSystem keyword arguments: catalog properties first, then the AWS variables."""
    p, env = props if props is not None else catalog_properties(), os.environ

    def first(*values: str | None) -> str | None:
        return next((v for v in values if v), None)

    endpoint = first(p.get("s3.endpoint"), env.get("AWS_ENDPOINT_URL_S3"), env.get("AWS_ENDPOINT_URL"))
    opts: dict[str, Any] = {}
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        opts["scheme"], opts["endpoint_override"] = parts.scheme, parts.netloc + parts.path.rstrip("/")
    for key, prop, var in (("access_key", "s3.access-key-id", "AWS_ACCESS_KEY_ID"),
                           ("secret_key", "s3.secret-access-key", "AWS_SECRET_ACCESS_KEY"),
                           ("session_token", "s3.session-token", "AWS_SESSION_TOKEN")):
        if value := first(p.get(prop), env.get(var) if not p.get("s3.access-key-id") else None):
            opts[key] = value
    # A custom endpoint (MinIO, Ceph, moto) has no region lookup: default to us-east-1 there.
    region = first(p.get("s3.region"), p.get("client.region"), env.get("AWS_REGION"), env.get("AWS_DEFAULT_REGION"),
                   "us-east-1" if endpoint else None)
    if region:
        opts["region"] = region
    return opts


def catalog_s3_properties(props: dict[str, str]) -> dict[str, str]:
    """Catalog properties completed with the S3 settings of the environment, so pyiceberg's
    own FileIO (metadata, manifests) reaches the same endpoint as our reads and writes.
    Credentials are not copied: pyarrow reads them from the environment itself."""
    opts = s3_options(props)
    extra = {}
    if "endpoint_override" in opts and "s3.endpoint" not in props:
        extra["s3.endpoint"] = f"{opts['scheme']}://{opts['endpoint_override']}"
    if "region" in opts and "s3.region" not in props and "client.region" not in props:
        extra["s3.region"] = opts["region"]
    return {**props, **extra}


@functools.lru_cache(maxsize=16)
def _s3(items: tuple[tuple[str, Any], ...]) -> pafs.FileSystem:
    return pafs.S3FileSystem(**dict(items))


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path, `file://…` or `s3://bucket/key`."""
    if uri.startswith("file://"):
        return pafs.LocalFileSystem(), uri[len("file://"):]
    if "://" not in uri:
        return pafs.LocalFileSystem(), uri
    scheme, _, rest = uri.partition("://")
    if scheme in ("s3", "s3a", "s3n"):
        return _s3(tuple(sorted(s3_options().items()))), rest.rstrip("/") or rest
    fs, path = pafs.FileSystem.from_uri(uri)  # gs://, hdfs://: pyarrow's own defaults
    return fs, str(path)


def _uri(like: str, path: str) -> str:
    """A path the filesystem returned, in the form of `like` (scheme kept for remote URIs)."""
    if is_remote(like):
        return f"{like.partition('://')[0]}://{path}"
    if like.startswith("file://"):
        return f"file://{path}"
    return path


def info(uri: str) -> pafs.FileInfo:
    fs, path = filesystem(uri)
    return fs.get_file_info(path)


def exists(uri: str) -> bool:
    """A file is there. A directory of that name is not one: on object storage any key under the
    prefix makes one, and a marker, a signature or a decisions file must be the file itself."""
    return bool(info(uri).type == pafs.FileType.File)


def isdir(uri: str) -> bool:
    return bool(info(uri).type == pafs.FileType.Directory)


def fingerprint(uri: str) -> str:
    """Size and modification time, so a changed file is a new input; on object storage also
    the ETag (LastModified has whole seconds: a same-size rewrite within one would look equal)."""
    i = info(uri)
    if i.type != pafs.FileType.File:
        raise FileNotFoundError(f"no file {uri}")
    if not is_remote(uri):
        return f"{i.size}:{i.mtime_ns}"
    fs, path = filesystem(uri)
    with fs.open_input_file(path) as f:
        etag = (f.metadata() or {}).get("ETag", b"").decode(errors="replace").strip('"')
    return f"{i.size}:{i.mtime_ns}:{etag}"


def size(uri: str) -> int:
    return int(info(uri).size)


def walk(uri: str) -> list[str]:
    """Every file under a directory (recursively), as URIs of the same form, sorted."""
    fs, path = filesystem(uri)
    found = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return sorted(_uri(uri, f.path) for f in found if f.type == pafs.FileType.File)


def glob(pattern: str) -> list[str]:
    """Files matching a glob (`*`, `?`, `[...]` within one path part, `**` across parts)."""
    if not is_remote(pattern):
        import glob as _glob
        return sorted(_glob.glob(pattern, recursive=True))
    scheme, _, rest = pattern.partition("://")
    parts = rest.split("/")
    fixed = next(i for i, p in enumerate(parts) if any(c in p for c in "*?["))
    base = f"{scheme}://{'/'.join(parts[:fixed])}"
    want = parts[fixed:]
    out = []
    for f in walk(base):
        rel = f[len(base):].lstrip("/").split("/")
        if _match(rel, want):
            out.append(f)
    return sorted(out)


def _match(parts: list[str], pats: list[str]) -> bool:
    if not pats:
        return not parts
    if pats[0] == "**":
        return any(_match(parts[i:], pats[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pats[0]) and _match(parts[1:], pats[1:])


def open_input(uri: str) -> BinaryIO:
    """A buffered, seekable binary file (readline works): local files as `open` gives them."""
    fs, path = filesystem(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        return open(path, "rb")
    return io.BufferedReader(fs.open_input_file(path), buffer_size=1 << 20)


def open_random(uri: str) -> Any:
    """A pyarrow random-access file (for Parquet footers and row groups)."""
    fs, path = filesystem(uri)
    return fs.open_input_file(path)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    with fs.open_input_stream(path, compression=None) as f:
        data: bytes = f.read()
    return data


def write_bytes(uri: str, data: bytes) -> None:
    """Whole or absent: locally a temporary file renamed over the name; on S3 one PUT, which
    becomes visible only when complete."""
    fs, path = filesystem(uri)
    if is_remote(uri):
        with fs.open_output_stream(path, compression=None) as f:
            f.write(data)
        return
    fs.create_dir(os.path.dirname(path), recursive=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open_output_stream(tmp, compression=None) as f:
        f.write(data)
    fs.move(tmp, path)


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def write_json(uri: str, obj: Any) -> None:
    write_bytes(uri, json.dumps(obj, default=str).encode())


def makedirs(uri: str) -> None:
    """Create a directory locally; object stores have none to create."""
    if not is_remote(uri):
        fs, path = filesystem(uri)
        fs.create_dir(path, recursive=True)


def work_dir(warehouse: str) -> str:
    """A local directory for a pipeline's scratch files (demo inputs, models, caches): the
    warehouse itself when it is local, else a directory under CURATE_WORK_DIR (default
    ~/.cache/curate) named after the warehouse URI."""
    if not is_remote(warehouse):
        return os.path.abspath(warehouse.removeprefix("file://"))
    root = os.environ.get("CURATE_WORK_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "curate")
    return os.path.join(root, warehouse.replace("://", "/").strip("/").replace("/", "_"))
