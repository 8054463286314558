"""PII and secrets in page URLs (`filters/pii_url.py`): each form is replaced in place, every
other character of a URL stays as it was, and after a web run on a crawl whose URLs carry
them, no file under the warehouse holds one (kept rows, rejects, metadata, stats, catalog)."""
import glob
import io
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crawl_sample import request, response, warcinfo
from filters.pii_url import UrlPiiScrubber, scrub_url
from schemas.store import Store

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(HERE, "data", "crawl", "crawl-00000.warc.gz")

EMAIL = "marta.kowalczyk.url@gmail.com"
GH_TOKEN = "ghp_4fK9aZ0qLm3Xv7Bn2Ty8Rw1Ps6Ud5Ce0Hg2J"
PASSWORD = "hunter2-Zq9"
CARD, IBAN, SSN = "4111111111111111", "DE89370400440532013000", "078-05-1120"
WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"
AMZ_SIG = "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"
AWS_KEY = "AKIAZ7XQ4JH2LMN3OPQR"
SESSION = "F1E2D3C4B5A69788"
OAUTH = "ya29a0AfH6SMBx7QwErTy"

# (URL, what the scrubbed URL must be)
FORMS = [
    (f"https://x.org/profile?email={EMAIL.replace('@', '%40')}&access_token={GH_TOKEN}",
     "https://x.org/profile?email=<EMAIL_ADDRESS>&access_token=<URL_CREDENTIAL>"),
    (f"https://bob:{PASSWORD}@x.org/", "https://bob:<URL_PASSWORD>@x.org/"),
    (f"https://x.org/users/{EMAIL}/", "https://x.org/users/<EMAIL_ADDRESS>/"),
    (f"https://x.org/u/{EMAIL.replace('@', '%40')}/posts", "https://x.org/u/<EMAIL_ADDRESS>/posts"),
    (f"https://x.org/s?q=write+to+{EMAIL.replace('@', '%40')}+today", "https://x.org/s?q=write+to+<EMAIL_ADDRESS>+today"),
    (f"mailto:{EMAIL}?subject=hello", "mailto:<EMAIL_ADDRESS>?subject=hello"),
    (f"https://x.org/pay?card={CARD}&iban={IBAN}", "https://x.org/pay?card=<CREDIT_CARD>&iban=<IBAN_CODE>"),
    (f"https://x.org/f?ssn={SSN}&nino=AB123456C&sin=130692544",
     "https://x.org/f?ssn=<US_SSN>&nino=<UK_NINO>&sin=<CA_SIN>"),
    (f"https://etherscan.io/address/{WALLET}", "https://etherscan.io/address/<CRYPTO_WALLET>"),
    (f"https://x.org/k/{AWS_KEY}/", "https://x.org/k/<AWS_ACCESS_KEY>/"),
    (f"https://x.org/cb#access_token={OAUTH}&token_type=bearer",
     "https://x.org/cb#access_token=<URL_CREDENTIAL>&token_type=bearer"),
    (f"https://x.org/page;jsessionid={SESSION}?x=1", "https://x.org/page;jsessionid=<URL_CREDENTIAL>?x=1"),
    (f"https://b.s3.amazonaws.com/k.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={AWS_KEY}%2F20240101%2F"
     f"us-east-1%2Fs3%2Faws4_request&X-Amz-Signature={AMZ_SIG}",
     "https://b.s3.amazonaws.com/k.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=<URL_CREDENTIAL>"
     "&X-Amz-Signature=<URL_CREDENTIAL>"),
    (f"https://x.org/login?next=https%3A%2F%2Fy.org%2Fcb%3Ftoken%3D{SESSION}%26email%3D{EMAIL.replace('@', '%2540')}",
     "https://x.org/login?next=https%3A%2F%2Fy.org%2Fcb%3Ftoken%3D<URL_CREDENTIAL>%26email%3D<EMAIL_ADDRESS>"),
    ("https://x.org/?db_password=S3cr3tP4ssw0rd", "https://x.org/?db_password=<PASSWORD>"),
    ("https://x.org/Settings?API-KEY=abc123def456", "https://x.org/Settings?API-KEY=<URL_CREDENTIAL>"),
]
# URLs that hold none: byte for byte unchanged
CLEAN = ["https://x.org/list?page=2", "https://x.org/s?q=python+tutorial", "https://x.org/2024/05/12/title-slug",
         "https://x.org/item/4155552671", "https://en.wikipedia.org/wiki/John_Smith", "https://x.org/?utm_source=x",
         "http://192.168.1.10:8080/admin", "https://x.org:8443/doc#section-3", "https://x.org/a%20b/%E2%82%AC%zz?c=%C3%A9",
         "https://x.org/?token=", "https://x.org/?key", "https://github.com/python/cpython/commit/"
         "3c5e8b7f9d1e2a4b6c8d0e2f4a6b8c0d2e4f6a8b", "https://x.org/search?q=social+security+number",
         "https://[2001:db8::1]:8080/p?id=550e8400-e29b-41d4-a716-446655440000", "https://x.org/@jane/post-1",
         "//cdn.x.org/lib.js?v=3.2.1", "/relative/path?sort=desc", "", "not a url at all", "%%%%", "::::@@@@"]
PLANTED = [EMAIL, EMAIL.replace("@", "%40"), EMAIL.replace("@", "%2540"), GH_TOKEN, PASSWORD, CARD, IBAN, SSN,
           WALLET, AMZ_SIG, AWS_KEY, SESSION, OAUTH, "S3cr3tP4ssw0rd", "abc123def456", "AB123456C", "130692544"]


@pytest.fixture(scope="module")
def scrubber():
    return UrlPiiScrubber()


@pytest.mark.parametrize("url,want", FORMS, ids=[w.split("<", 1)[1].split(">")[0] + str(i)
                                                 for i, (_, w) in enumerate(FORMS)])
def test_each_form_is_replaced_in_place(scrubber, url, want):
    clean, types = scrubber.scrub(url)
    assert clean == want
    assert types == sorted({t.split(">")[0] for t in want.split("<")[1:]})
    assert not any(p in clean for p in PLANTED)


@pytest.mark.parametrize("url", CLEAN)
def test_urls_without_pii_stay_byte_for_byte(scrubber, url):
    assert scrubber.scrub(url) == (url, [])


def test_the_stage_annotates_types_and_never_rejects(scrubber):
    urls = [FORMS[0][0], None, CLEAN[0], FORMS[1][0], ""]
    out = scrubber(pa.table({"text": ["a"] * 5, "url": urls}))
    assert out.column("url").to_pylist() == [FORMS[0][1], None, CLEAN[0], FORMS[1][1], ""]
    assert out.column("url_pii").to_pylist() == [["EMAIL_ADDRESS", "URL_CREDENTIAL"], None, [], ["URL_PASSWORD"], []]
    assert "drop_reason" not in out.column_names
    # a batch without the column (JSONL documents) passes unchanged
    plain = pa.table({"text": ["a", "b"]})
    assert scrubber(plain).equals(plain)
    # other columns, as configured
    other = UrlPiiScrubber(columns=["link"])(pa.table({"link": [FORMS[2][0]]}))
    assert other.to_pylist() == [{"link": FORMS[2][1], "url_pii": ["EMAIL_ADDRESS"]}]


def test_rejects_strings_have_every_url_in_them_scrubbed(scrubber):
    """What a reject keeps of a crawl record: its headers, request line, a redirect's target."""
    url, want = FORMS[0]
    path = url.split("x.org", 1)[1]
    raw = (f"WARC/1.0\r\nWARC-Type: request\r\nWARC-Target-URI: {url}\r\n\r\nGET {path} HTTP/1.1\r\n"
           f"Referer: {FORMS[1][0]}\r\nLocation: \"{FORMS[13][0]}\"\r\n")
    text = f"see www.x.org/users/{EMAIL}/ and {CLEAN[1]} or mail {EMAIL}."
    out = scrubber.redact_strings([raw, None, "", text, f"f.warc.gz@12: {url} 302 Found"])
    assert out[0] == (f"WARC/1.0\r\nWARC-Type: request\r\nWARC-Target-URI: {want}\r\n\r\n"
                      f"GET {want.split('x.org', 1)[1]} HTTP/1.1\r\nReferer: {FORMS[1][1]}\r\n"
                      f"Location: \"{FORMS[13][1]}\"\r\n")
    assert out[1:3] == [None, ""]
    # only URLs are this stage's: a bare e-mail in prose is the text PII stage's
    assert out[3] == f"see www.x.org/users/<EMAIL_ADDRESS>/ and {CLEAN[1]} or mail {EMAIL}."
    assert out[4] == f"f.warc.gz@12: {want} 302 Found"


def test_scrub_url_builds_its_own_detector():
    assert scrub_url(FORMS[1][0]) == FORMS[1][1]


# ---- a web run --------------------------------------------------------------------------------
def _sample_pages():
    """(url, HTML) of the committed sample's Python docs (English) and German man pages."""
    from warcio.archiveiterator import ArchiveIterator
    out = []
    with open(SAMPLE, "rb") as f:
        for rec in ArchiveIterator(f):
            url = rec.rec_headers.get_header("WARC-Target-URI") or ""
            if rec.rec_type == "response" and ("/library/" in url or "manpages-de/" in url):
                out.append((url, rec.content_stream().read()))
    return out


def _crawl(path):
    """Python doc pages (kept) and German man pages (rejected by language) at the planted URLs,
    each after its request record (rejected: its raw keeps the request line), plus an image and
    a redirect whose Location is a planted URL."""
    from warcio.warcwriter import WARCWriter
    pages = _sample_pages()
    english = [html for u, html in pages if "/library/" in u]
    german = [html for u, html in pages if "manpages-de/" in u]
    urls = [u for u, _ in FORMS]
    out = io.BytesIO()
    w = WARCWriter(out, gzip=True)
    warcinfo(w, "pii.warc.gz")
    for i, url in enumerate(urls):
        request(w, url)
        response(w, url, english[i % len(english)])
    for url in urls[:3]:
        response(w, url + ("&" if "?" in url else "?") + "lang=de", german[0])
    response(w, urls[3], b"\x89PNG\r\n\x1a\n" + bytes(200), "image/png")
    response(w, "https://x.org/old", b"", status="302 Found", extra=[("Location", urls[0])])
    path.write_bytes(out.getvalue())
    return path


def _leaks(wh):
    """Each planted value found, with the files it was found in (raw bytes, and Parquet decoded)."""
    found: dict[str, list[str]] = {}
    store = Store(wh)
    for p in glob.glob(f"{wh}/**/*", recursive=True):
        if not os.path.isfile(p):
            continue
        texts = [open(p, "rb").read().decode("utf-8", "replace")]
        if p.endswith(".parquet"):
            texts.append(json.dumps(pq.read_table(p).to_pylist(), default=str))
        for s in PLANTED:
            if any(s in t for t in texts):
                found.setdefault(s, []).append(p)
    for table in store.tables():  # Iceberg column bounds, as any reader sees them
        bounds = json.dumps(store.files(table).column("readable_metrics").to_pylist(), default=str)
        for s in PLANTED:
            if s in bounds:
                found.setdefault(s, []).append(f"{table} bounds")
    return found


def test_a_web_run_persists_no_planted_value_anywhere(tmp_path):
    from pipelines.script import options
    from pipelines.text_curation import build, parser
    from schemas.engine.runner import run
    crawl = _crawl(tmp_path / "pii.warc.gz")
    wh = str(tmp_path / "wh")
    args = parser().parse_args(["--input", str(crawl), "--warehouse", wh, "--output", "web", "--quiet",
                                "--executor", "local", "--no-dedup", "--benchmarks", "--min-words", "20"])
    pipeline, inputs = build(args)
    acc = run(pipeline, options(args, inputs)).accounting
    stages = [s["stage"] for s in acc["stages"]]
    assert stages[-3:] == ["pii_url", "pii", "write"]
    store = Store(wh)
    kept = store.read_arrow("web").to_pylist()
    want = dict(FORMS)
    scrubbed = {want[u] for u in want}
    assert len(kept) >= len(FORMS) // 2, acc["rejects_by_reason"]
    for row in kept:   # the page's host and path stay; only the planted parts are placeholders
        assert row["url"] in scrubbed, row["url"]
        assert row["url_pii"] and all(f"<{t}>" in row["url"] for t in row["url_pii"])
    rejects = store.read_arrow("web_rejects").to_pylist()
    reasons = {r["drop_reason"] for r in rejects}
    assert {"not_response:request", "language:de", "not_html:image/png", "http_status:302"} <= reasons, reasons
    # rejects keep what they hold of a URL (their url column, WARC headers, request line,
    # redirect target, detail) with the planted parts replaced like a kept row's
    late = [r for r in rejects if r["reject_stage"] != "read"]
    assert late and all(r["url"].count("<") >= 1 for r in late)
    requests = [r for r in rejects if r["drop_reason"] == "not_response:request"]
    assert len(requests) == len(FORMS) and all("WARC-Target-URI: " in r["raw"] for r in requests)
    stats = json.dumps(store.properties("web"), default=str)
    assert "URL_CREDENTIAL" in stats and "EMAIL_ADDRESS" in stats   # url_pii's category counts
    assert _leaks(wh) == {}
