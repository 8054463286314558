"""Build crawl files (WARC, WET) from real HTML that ships offline, plus the records a crawl also holds.

    python tests/crawl_sample.py tests/data/crawl            # the committed test sample
    python tests/crawl_sample.py /tmp/crawl --python 110 --man 60 --split 4   # a larger crawl (demo, bench)

Pages: Debian's `python3.11-doc` HTML (English, Sphinx) and translated man pages from
`manpages-{de,fr,es,it,ru,pl,nl}` rendered to HTML by `mandoc` (other languages). Around them:
request and warcinfo records, a 404 and a redirect, images/CSS/JS payloads, a binary payload
labelled text/html, pages re-encoded in ISO-8859-1, KOI8-R and windows-1252 (declared in the HTTP
header, only in a <meta>, or not at all), and pages at URLs a URL filter should refuse. Records
get ids and dates derived from their URL, so a rebuild holds the same records.
"""
from __future__ import annotations

import argparse
import glob
import io
import os
import re
import subprocess
import uuid

PY_DOCS = "/usr/share/doc/python3.11/html"
MAN_ROOT = "/usr/share/man"
MAN_LANGS = ("de", "fr", "es", "it", "ru", "pl", "nl")
DATE = "2026-01-15T10:00:00Z"


def _headers(url: str, kind: str) -> dict[str, str]:
    return {"WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, kind + ':' + url)}>", "WARC-Date": DATE}


def response(writer, url: str, body: bytes, content_type: str | None = "text/html; charset=utf-8",
             status: str = "200 OK", extra: list[tuple[str, str]] | None = None) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    headers = ([("Content-Type", content_type)] if content_type else []) + list(extra or [])
    http = StatusAndHeaders(status, headers, protocol="HTTP/1.1")
    rec = writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http,
                                    warc_headers_dict=_headers(url, "response"))
    writer.write_record(rec)


def request(writer, url: str) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    http = StatusAndHeaders(f"GET {url.split('/', 3)[-1] or '/'} HTTP/1.1", [("User-Agent", "crawl-sample")],
                            is_http_request=True)
    rec = writer.create_warc_record(url, "request", payload=io.BytesIO(b""), http_headers=http,
                                    warc_headers_dict=_headers(url, "request"))
    writer.write_record(rec)


def warcinfo(writer, name: str) -> None:
    rec = writer.create_warcinfo_record(name, {"software": "tests/crawl_sample.py", "format": "WARC/1.0"})
    rec.rec_headers.replace_header("WARC-Record-ID", _headers(name, "warcinfo")["WARC-Record-ID"])
    rec.rec_headers.replace_header("WARC-Date", DATE)
    writer.write_record(rec)


def python_pages(n: int, max_bytes: int = 40_000) -> list[tuple[str, bytes]]:
    files = sorted(p for p in glob.glob(f"{PY_DOCS}/library/*.html") if os.path.getsize(p) <= max_bytes)
    step = max(len(files) // max(n, 1), 1)
    out = []
    for p in files[::step][:n]:
        with open(p, "rb") as f:
            out.append((f"https://docs.python.org/3.11/library/{os.path.basename(p)}", f.read()))
    return out


def man_pages(per_lang: int, langs=MAN_LANGS) -> list[tuple[str, str, bytes]]:
    """(language, url, HTML) of translated section-1 man pages, the longest under 8 kB compressed first."""
    out = []
    for lang in langs:
        files = sorted((p for p in glob.glob(f"{MAN_ROOT}/{lang}/man1/*.1.gz") if os.path.getsize(p) <= 8000),
                       key=lambda p: (-os.path.getsize(p), p))
        for p in files[:per_lang]:
            html = subprocess.run(["mandoc", "-Thtml", "-Ofragment", p], capture_output=True, check=False).stdout
            if not html.strip():
                continue
            name = os.path.basename(p)[:-len(".1.gz")]
            page = b"<!DOCTYPE html><html lang=\"" + lang.encode() + b"\"><head><meta charset=\"utf-8\"><title>" + \
                name.encode() + b"</title></head><body><main>" + html + b"</main></body></html>"
            out.append((lang, f"https://manpages.debian.org/bookworm/manpages-{lang}/{name}.1.{lang}.html", page))
    return out


def _recode(html: bytes, charset: str, meta: bool) -> bytes:
    """The page in another charset: mandoc writes non-ASCII as character references, made characters first."""
    text = html.decode("utf-8").replace('<meta charset="utf-8">', f'<meta charset="{charset}">' if meta else "")
    text = re.sub(r"&#x([0-9A-Fa-f]{2,6});", lambda m: chr(int(m.group(1), 16)) if int(m.group(1), 16) >= 0x80
                  else m.group(0), text)
    return text.encode(charset, errors="xmlcharrefreplace")


def extras(writer, pages: list[tuple[str, str, bytes]]) -> None:
    """The records around pages in a real crawl: other media, errors, other charsets, bad URLs."""
    with open(sorted(glob.glob(f"{PY_DOCS}/_images/*.png"))[0], "rb") as f:
        response(writer, "https://docs.python.org/3.11/_images/logo.png", f.read(), "image/png")
    css = sorted(glob.glob(f"{PY_DOCS}/_static/*.css"))[0]
    with open(css, "rb") as f:
        response(writer, f"https://docs.python.org/3.11/_static/{os.path.basename(css)}", f.read(), "text/css")
    response(writer, "https://docs.python.org/3.11/missing.html", b"<html><body>Not Found</body></html>",
             status="404 Not Found")
    response(writer, "https://docs.python.org/3/", b"", status="301 Moved Permanently",
             extra=[("Location", "https://docs.python.org/3.11/")])
    response(writer, "https://docs.python.org/3.11/download.html", bytes(range(256)) * 40)  # binary as HTML
    response(writer, "https://docs.python.org/3.11/empty.html", b"  \n")
    by_lang = {lang: (url, html) for lang, url, html in pages}
    for lang, charset, how in (("de", "iso-8859-1", "header"), ("fr", "windows-1252", "none"),
                               ("ru", "koi8-r", "meta")):
        if lang not in by_lang:
            continue
        url, html = by_lang[lang]
        body = _recode(html, charset, meta=how == "meta")
        ctype = f"text/html; charset={charset}" if how == "header" else "text/html"
        response(writer, url.replace(".html", f".{charset}.html"), body, ctype)
    en = pages[0][2] if pages else b"<html><body><p>x</p></body></html>"
    for url in ("http://free-casino-bonus.example.com/slots/win.html", "http://blocked.example.org/page.html",
                "https://docs.example.net/porn/index.html"):
        response(writer, url, en)


def build(out_dir: str, python: int = 20, man: int = 5, split: int = 1, wet: bool = True) -> list[str]:
    from warcio.warcwriter import WARCWriter
    os.makedirs(out_dir, exist_ok=True)
    docs = [("en", u, h) for u, h in python_pages(python)] + man_pages(man)
    parts = [docs[i::split] for i in range(split)]
    written = []
    for i, part in enumerate(parts):
        path = os.path.join(out_dir, f"crawl-{i:05d}.warc.gz")
        with open(path, "wb") as f:
            w = WARCWriter(f, gzip=True)
            warcinfo(w, os.path.basename(path))
            for _lang, url, html in part:
                request(w, url)
                response(w, url, html)
            if i == 0:
                extras(w, docs[len(python_pages(python)):] or docs)
        written.append(path)
    if wet:
        written.append(write_wet(os.path.join(out_dir, "crawl-00000.warc.wet.gz"), docs[:10]))
    return written


def write_wet(path: str, docs: list[tuple[str, str, bytes]]) -> str:
    """A WET file: warcinfo, then one conversion record of plain text per page (as CC makes them)."""
    import trafilatura
    from warcio.warcwriter import WARCWriter
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        warcinfo(w, os.path.basename(path))
        for _lang, url, html in docs:
            text = (trafilatura.extract(html.decode("utf-8"), favor_precision=True) or "").encode("utf-8")
            rec = w.create_warc_record(url, "conversion", payload=io.BytesIO(text),
                                       warc_headers_dict={**_headers(url, "conversion"),
                                                          "Content-Type": "text/plain"})
            w.write_record(rec)
    return path



if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--python", type=int, default=20, help="Python documentation pages")
    ap.add_argument("--man", type=int, default=5, help="man pages per language")
    ap.add_argument("--split", type=int, default=1, help="WARC files to spread the pages over")
    a = ap.parse_args()
    for p in build(a.out_dir, a.python, a.man, a.split):
        print(p, os.path.getsize(p))
