"""Crawl files as input: WARC (`.warc`, `.warc.gz`) and WET (`.warc.wet.gz`) records as rows.

Every record of a file is one input row, kept or rejected with a reason, so a crawl's
accounting adds up like any other input's: a response holding HTML (or a WET conversion
record holding text) becomes a row whose `text` is the decoded payload (HTML is turned into
text by the `extract` stage, which sees the `content_type` column); request, warcinfo and
metadata records, other media types, HTTP errors, payloads that are binary, undecodable, too
large or cut short are rejects. warcio parses the records; the checks it leaves to its caller
(a Content-Length that does not match the record, a file that ends inside a record, which it
would report on stderr or not at all) are made here. A file whose records cannot be counted
(a damaged header, garbage between records of an uncompressed WARC) raises UnreadableInput:
the run fails naming it, or records it as lost under `--on-unreadable record`.

A `.gz` crawl file is planned in byte ranges: every record is its own gzip member, so a shard
finds the first member that starts in its range (gzip magic that inflates to `WARC/`) and reads
the records whose member starts before its end, as a JSONL range reads the lines that start in
it. An uncompressed file has no boundary that can be found mid-file and is one shard.
"""
from __future__ import annotations

import codecs
import os
import re
import zlib
from typing import Any

import pyarrow as pa

from schemas.tables import field

WARC_EXT = (".warc", ".warc.gz", ".warc.wet", ".warc.wet.gz", ".wet", ".wet.gz")
HTML_TYPES = ("text/html", "application/xhtml+xml")
MAX_RECORD_BYTES = 32 << 20   # a larger payload is `record_too_large`, skipped without being held in memory
RAW_CHARS = 2000              # how much of a rejected record's payload its reject keeps

WEB_FIELDS = [
    field("url", pa.string(), doc="WARC-Target-URI of the record"),
    field("warc_record_id", pa.string(), doc="WARC-Record-ID"),
    field("fetch_date", pa.string(), doc="WARC-Date (ISO 8601)"),
    field("content_type", pa.string(), stats="category",
          doc="media type of the payload (HTTP Content-Type; text/plain for WET conversion records)"),
    field("charset", pa.string(), stats="category", doc="the charset the payload was decoded with"),
]

_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I)


def is_crawl_file(path: str) -> bool:
    return path.endswith(WARC_EXT)


class _Skip(Exception):
    """A record that is not a row: (reason, detail)."""


def _charset_of(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        k, _, v = part.strip().partition("=")
        if k.strip().lower() == "charset" and v.strip().strip("\"'"):
            return v.strip().strip("\"'")
    return None


def _codec(name: str | None) -> str | None:
    """Python's name of a declared charset, or None if Python does not know it."""
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_payload(body: bytes, declared: str | None) -> tuple[str, str]:
    """(text, charset used): the HTTP-declared charset, else a <meta> one, else UTF-8, else a
    detected one (charset-normalizer). Raises _Skip(binary_payload | bad_encoding)."""
    head = body[:4096]
    meta = _META_CHARSET.search(head)
    candidates = [_codec(declared), _codec(meta.group(1).decode("ascii", "replace")) if meta else None]
    if not any(c and c.startswith("utf-16") or c and c.startswith("utf-32") for c in candidates) \
            and b"\x00" in head:
        raise _Skip("binary_payload", f"NUL bytes in the first {len(head)} bytes of a {len(body)}-byte payload")
    if body.startswith(codecs.BOM_UTF8):
        candidates.insert(0, "utf-8-sig")
    for name in [c for c in candidates if c] + ["utf-8"]:
        try:
            return body.decode(name), name
        except (UnicodeDecodeError, LookupError):
            continue
    from charset_normalizer import from_bytes
    best = from_bytes(body[:200_000]).best()
    if best is not None and best.encoding:
        try:
            return body.decode(best.encoding), codecs.lookup(best.encoding).name
        except (UnicodeDecodeError, LookupError):
            pass
    said = f"declared {declared!r}" if declared else "no charset declared"
    raise _Skip("bad_encoding", f"{said}; not UTF-8 and no charset decodes it")


def _mime(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()[:80] or "none"


def _record_row(rec) -> dict[str, Any]:
    """The row of one content record, or _Skip. Reads the payload (bounded by MAX_RECORD_BYTES)."""
    h = rec.rec_headers
    kind = rec.rec_type
    row = {"url": h.get_header("WARC-Target-URI"), "warc_record_id": h.get_header("WARC-Record-ID"),
           "fetch_date": h.get_header("WARC-Date")}
    if kind not in ("response", "conversion"):
        raise _Skip(f"not_response:{kind}", None)
    if rec.length is not None and rec.length > MAX_RECORD_BYTES:
        raise _Skip("record_too_large", f"{rec.length:,} bytes > {MAX_RECORD_BYTES:,}")
    if kind == "response":
        if rec.http_headers is None:
            raise _Skip("not_http", "response record without HTTP headers")
        status = rec.http_headers.get_statuscode() or ""
        if not status.startswith("2"):
            raise _Skip(f"http_status:{status[:3] or 'none'}", rec.http_headers.statusline[:200])
        ctype = rec.http_headers.get_header("Content-Type") or ""
        if _mime(ctype) not in HTML_TYPES:
            raise _Skip(f"not_html:{_mime(ctype)}", ctype[:200])
    else:
        ctype = h.get_header("Content-Type") or "text/plain"
    try:
        body = rec.content_stream().read()
    except (zlib.error, EOFError, OSError, ValueError) as e:  # a payload whose Content-Encoding is broken
        raise _Skip("bad_content_encoding", f"{type(e).__name__}: {e}"[:300]) from None
    if not body.strip():
        raise _Skip("empty_payload", None)
    text, charset = decode_payload(body, _charset_of(ctype) if kind == "response" else "utf-8")
    row.update(text=text, content_type=_mime(ctype) if kind == "response" else "text/plain", charset=charset)
    return row


def _raw(rec) -> str:
    """What a reject keeps of a record: its WARC headers and the start of its payload."""
    head = rec.rec_headers.to_str() if rec.rec_headers is not None else ""
    try:
        data = rec.raw_stream.read(RAW_CHARS)
    except Exception:  # noqa: BLE001 - the raw of a broken record is best effort
        data = b""
    return (head + data.decode("utf-8", "backslashreplace"))[:RAW_CHARS + len(head)]


def iter_records(f, path: str, size: int, stop: int | None = None):
    """(row dict | None, reason, detail, raw, locator) for every record of an open crawl file from
    its position on, up to the first record that starts at or after byte `stop`.

    A file that ends inside a record gives that record as `truncated_record`; anything else that
    stops the records from being counted raises UnreadableInput, one line naming the file."""
    from warcio.archiveiterator import ArchiveIterator

    from schemas.engine.inputs import UnreadableInput
    base = os.path.basename(path)
    it = ArchiveIterator(f, check_digests=False)
    it._consume_blanklines = _quiet(it)  # its warning goes to stderr; err_count is checked below
    records, end = iter(it), it.offset
    while True:
        try:
            rec = next(records)
        except StopIteration:
            break
        except Exception as e:  # noqa: BLE001 - warcio fails in many ways on a cut or damaged header
            if _tail_is_cut(path, end, size):
                yield None, "truncated_record", f"{size - end:,} bytes at byte {end:,} end inside a record", \
                    f"<{size - end} bytes>", f"{base}@{end}"
                return
            first = "".join(c if c.isprintable() else "?" for c in (str(e).strip() or type(e).__name__)
                            .splitlines()[0][:120])
            raise UnreadableInput(path, f"not a readable WARC after byte {end:,}: {first}", None) from None
        offset, errs = it.offset, it.err_count
        if stop is not None and offset >= stop:
            return  # the next shard's first record
        row, reason, detail, raw = _classify(rec)
        try:
            it.read_to_end()
        except (zlib.error, EOFError, OSError) as e:
            raise UnreadableInput(path, f"cannot be read after byte {offset:,}: {type(e).__name__}: {e}",
                                  None) from None
        end = it.offset
        cut = _cut_short(it, rec)
        if cut:
            row, reason, detail, raw = None, "truncated_record", cut, raw or f"<record at byte {offset}>"
        elif it.err_count > errs:
            if not it.reader.decompressor:
                raise UnreadableInput(path, f"the record at byte {offset:,} does not end where its "
                                            "Content-Length says (or is not a WARC record): the records "
                                            "after it cannot be counted", None)
            row, reason, detail = None, "bad_content_length", "Content-Length disagrees with the record's gzip member"
            raw = raw or f"<record at byte {offset}>"
        yield row, reason, detail, raw, f"{base}@{offset}"
    if 0 <= end < size:
        yield (None, "truncated_record", f"{size - end:,} bytes at byte {end:,} end inside a record "
               "(a truncated gzip member or record header)", f"<{size - end} bytes>", f"{base}@{end}")


def _tail_is_cut(path: str, end: int, size: int) -> bool:
    """Whether the bytes from `end` to the end of the file are the start of one record cut short:
    one gzip member without its end, or WARC headers without the blank line that ends them."""
    from schemas import filesystem as fsys
    if not 0 <= end < size or size - end > (1 << 20):
        return False
    with fsys.open_random(path) as f:
        f.seek(end)
        tail = f.read(size - end)
    if tail[:2] == b"\x1f\x8b":
        d = zlib.decompressobj(31)
        try:
            head = d.decompress(tail)
        except zlib.error:
            return False
        return not d.eof and head[:5] in (b"WARC/"[:len(head)], b"WARC/")
    return tail.startswith(b"WARC/"[:len(tail)]) and b"\r\n\r\n" not in tail


def _classify(rec) -> tuple[dict[str, Any] | None, str | None, str | None, str | None]:
    """(row, reason, detail, raw) of one record; a record too broken to classify is `malformed_record`."""
    if rec.rec_type is None or rec.rec_headers.get_header("Content-Length") is None:
        return None, "malformed_record", "no WARC-Type or Content-Length header", _raw(rec)
    try:
        return _record_row(rec), None, None, None
    except _Skip as s:
        url = rec.rec_headers.get_header("WARC-Target-URI")  # the reject names its page
        return None, s.args[0], " ".join(filter(None, [url, s.args[1]])) or None, _raw(rec)
    except Exception as e:  # noqa: BLE001 - a record warcio half-parsed is that record's reject, not the run's
        return None, "malformed_record", f"{type(e).__name__}: {e}"[:300], _raw(rec)


def _cut_short(it, rec) -> str | None:
    """Why the record just read is incomplete, or None: fewer bytes than its Content-Length, or
    (gzip) a member that ends without its end-of-stream (the file was cut inside it)."""
    remaining = getattr(rec.raw_stream, "limit", 0) or 0
    if remaining > 0:
        return (f"payload ends {remaining:,} bytes before its Content-Length ({rec.length:,}): "
                "the file or its gzip member is cut short")
    dec = it.reader.decompressor if it.reader is not None else None
    if dec is not None and not getattr(dec, "eof", True):
        return "its gzip member ends before its end-of-stream marker: the file is cut inside it"
    return None


def _quiet(it):
    """warcio's _consume_blanklines without its stderr warning (the count it keeps is used)."""
    def consume():
        empty_size, first_line = 0, True
        while True:
            line = it.reader.readline()
            if len(line) == 0:
                return None, empty_size
            stripped = line.rstrip()
            if len(stripped) == 0 or first_line:
                empty_size += len(line)
                if len(stripped) != 0:
                    it.err_count += 1
                first_line = False
                continue
            return line, empty_size
    return consume


GZIP_MEMBER = b"\x1f\x8b\x08"


def _is_member(f, pos: int) -> bool:
    """Whether a gzip member holding a WARC record starts at byte `pos` (the position is kept)."""
    here = f.tell()
    f.seek(pos)
    data = f.read(1 << 16)
    f.seek(here)
    try:
        return zlib.decompressobj(31).decompress(data, 16).startswith(b"WARC/")
    except zlib.error:
        return False


def next_member(f, start: int, end: int) -> int | None:
    """The first byte in [start, end) where a record's gzip member starts, or None. Each record of
    a .warc.gz is its own member, so a byte range of the file holds the records whose member
    starts in it, as a JSONL byte range holds the lines that start in it."""
    f.seek(start)
    base, tail = start, b""
    while base < end:
        chunk = f.read(1 << 20)
        if not chunk:
            return None
        data = tail + chunk
        i = data.find(GZIP_MEMBER)
        while i != -1:
            pos = base - len(tail) + i
            if pos >= end:
                return None
            if _is_member(f, pos):
                return pos
            i = data.find(GZIP_MEMBER, i + 1)
        tail, base = data[-(len(GZIP_MEMBER) - 1):], base + len(chunk)
    return None


def read_warc(shard, schema: pa.Schema) -> tuple[pa.Table, pa.Table, int]:
    """(rows fitting `schema`, rejects, records) of a WARC/WET shard: the whole file, or (gzip) a
    byte range and the records whose gzip member starts in it."""
    from schemas import filesystem as fsys
    from schemas.engine.inputs import UnreadableInput, concat_rejects, records_to_table
    from schemas.validate import empty_rejects, make_rejects
    base = os.path.basename(shard.path)
    records, locators, raws = [], [], []
    reasons, details, rejected_raws = [], [], []
    n = 0
    try:
        size = fsys.size(shard.path)
        with fsys.open_random(shard.path) as f:
            gz = f.read(2) == GZIP_MEMBER[:2]
            # Not gzip: no record boundary can be found mid-file, so the first shard reads it all.
            begin = 0 if shard.start <= 0 else next_member(f, shard.start, shard.end) if gz else None
            stop = shard.end if gz and 0 < shard.end < size else None
            f.seek(begin or 0)
            for row, reason, detail, raw, where in (iter_records(f, shard.path, size, stop)
                                                    if begin is not None else ()):
                n += 1
                if row is None:
                    reasons.append(reason)
                    details.append(f"{where}: {detail}" if detail else where)
                    rejected_raws.append(raw)
                    continue
                row["source_ids"] = [row["warc_record_id"] or where]
                records.append(row)
                locators.append(where)
                raws.append(f"{row['url']}\n{row['text'][:RAW_CHARS]}")
    except UnreadableInput:
        raise
    except OSError as e:
        raise UnreadableInput(shard.path, f"cannot be read: {type(e).__name__}: {e}", None) from e
    rejects = make_rejects(reasons, "read", details, rejected_raws) if reasons else empty_rejects()
    rows, more = records_to_table(records, schema, locators, shard.source, base, raws)
    return rows, concat_rejects([rejects, more]), n
