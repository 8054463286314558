"""PII and secrets in page URLs, scrubbed in place (issue 28/27: the `url` of a kept row is persisted).

`PiiScrubber` scrubs `text`; a crawled row also carries the URL it was fetched from, and a URL
can hold an e-mail (`/users/jane.doe@example.com/`, `?email=jane.doe%40gmail.com`), a password
(`https://bob:hunter2@host/`) or a token (`?access_token=ghp_...`). Replacing the whole URL
with `<URL>`, as the text scrubber does, would lose the page's provenance, so this stage
replaces only the parts that hold such a value and leaves every other character as it was
(nothing is re-encoded or normalised):

- the password of a URL's userinfo → `<URL_PASSWORD>`;
- the value of a credential parameter (`CREDENTIAL_PARAMS`, case-insensitive, `-` read as `_`),
  in the query, the fragment (OAuth's `#access_token=`), a path segment's `;jsessionid=` or a
  URL nested in a value → `<URL_CREDENTIAL>`;
- in the user name, each path segment, each query or fragment value (percent-decoded, twice
  for a URL nested in a parameter, `+` read as a space), a span of one of `ENTITIES` →
  `<TYPE>`: e-mails (also obfuscated), cards, IBANs, SSN/NINO/SIN (these need their label,
  which the parameter name gives: `?ssn=...`), crypto wallets, and secrets by detect-secrets'
  rules (`filters/secrets.py`), through the same `Detector` as `PiiScrubber`.

No NER and no PERSON, ADDRESS, PHONE, URL or DATE_OF_BIRTH: a slug names public people
(`/wiki/John_Smith`), numeric ids look like phone numbers, and a URL is not PII in itself.
The host is not scanned (an IP host or a person's subdomain names the site, which the row's
provenance needs). `mailto:` URLs are scrubbed like any other (their address is a path).

`url_pii` (list of the types replaced, sorted, per row; null where the row has no URL) says
what was found without holding it: the name pairs with `pii_entities`/`pii_action` and the
column it describes. The stage never rejects.

It `redacts`: rejects are persisted too, and what they hold of a URL is not only their `url`
column but the record's WARC headers, its request line (`GET /profile?email=...`), a
redirect's `Location` and the reject detail. `PiiScrubber.redact_strings` does not make these
safe: presidio's URL recognizer leaves many URLs whole (`https://x.org/p?email=jane%40x.com`
kept its percent-encoded e-mail, an `X-Amz-Signature` its hex, in `tests/test_pii_url.py`'s
run). So every URL-like token (with a scheme, `mailto:`, `www.`, or a path starting a word)
of every string of every reject so far is scrubbed by the same rules, before the text PII
stage redacts what it finds there as well.
"""
from __future__ import annotations

import codecs
import re
from typing import Any

import pyarrow as pa

from filters import pii_detect
from filters.pii_detect import Detector
from filters.secrets import KEYWORD_GATE, find_secrets
from schemas.engine import ModelStage, annotate
from schemas.tables import field

__all__ = ["UrlPiiScrubber", "scrub_url", "redact_urls", "CREDENTIAL_PARAMS", "ENTITIES"]

ENTITIES = ["EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "UK_NINO", "CA_SIN", "CRYPTO_WALLET",
            *pii_detect.SECRET_ENTITIES]
# parameter names whose value is a credential whatever it looks like (OAuth 2 and 1, API keys,
# passwords, session ids, AWS SigV4 and Azure SAS presigned URLs, GitLab/GitHub tokens)
CREDENTIAL_PARAMS = frozenset({
    "token", "access_token", "refresh_token", "id_token", "auth_token", "private_token", "oauth_token",
    "oauth_signature", "api_key", "apikey", "key", "x_api_key", "password", "passwd", "pwd", "pass",
    "secret", "client_secret", "signature", "sig", "session", "sessionid", "session_id", "sessid", "jsessionid",
    "phpsessid", "auth", "authorization", "x_amz_signature", "x_amz_credential", "x_amz_security_token",
    "x_goog_signature", "x_goog_credential",
})
PASSWORD, CREDENTIAL = "URL_PASSWORD", "URL_CREDENTIAL"
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
PCT = re.compile(r"%[0-9A-Fa-f]{2}")
# name=value inside a decoded piece: a nested URL's parameter or a path segment's ;param
NESTED_PARAM = re.compile(r"(?:^|[?&#;])([\w.\-]+)=([^?&#;]+)")
# no entity we look for fits in fewer characters (an SSN has 9; a secret 8)
MIN_CHARS = 8
SEPARATORS = str.maketrans("?&=#;/", "      ")
# a URL inside any text: with a scheme, mailto:, www., or a path at the start of a word (a request line)
URL_IN_TEXT = re.compile(r"""(?:\b[A-Za-z][A-Za-z0-9+.\-]*://|\bmailto:|\bwww\.|(?<![^\s"'=(])/)[^\s"'<>]+""")
Span = tuple[int, int, str]          # raw (start, end, type)
Spans = list[tuple[int, int]]        # raw (start, end) of each decoded character


class UrlPiiScrubber(ModelStage):
    """Stage: URL columns with their PII and secrets replaced by `<TYPE>`; `url_pii` the types."""
    name = "pii_url"
    redacts = True   # rejects are persisted too: the executor passes them through redact_strings
    adds = [field("url_pii", pa.list_(pa.string()), stats="category",
                  doc="types of the values replaced in the row's URL (<TYPE> placeholders), sorted")]

    def __init__(self, columns: list[str] | None = None, score_threshold: float = 0.5):
        # presidio's recognizers for the structured types are built here, once per actor
        self.detector = Detector(ENTITIES, None, thresholds={}, default_threshold=score_threshold)
        self.columns = list(columns or ["url"])

    def scrub(self, url: str | None) -> tuple[str | None, list[str] | None]:
        """(scrubbed url, sorted types replaced); None stays None."""
        if url is None:
            return None, None
        spans = find_url_pii(url, self.detector)
        return apply(url, spans), sorted({t for _, _, t in spans})

    def __call__(self, batch: pa.Table) -> pa.Table:
        columns = [c for c in self.columns if c in batch.column_names]
        if not columns:
            return batch
        found: list[set[str] | None] = [None] * batch.num_rows
        new: dict[str, pa.Array] = {}
        for c in columns:
            out = []
            for i, url in enumerate(batch.column(c).to_pylist()):
                clean, types = self.scrub(url)
                out.append(clean)
                if types is not None:
                    found[i] = (found[i] or set()) | set(types)
            new[c] = pa.array(out, pa.string())
        types_col = pa.array([None if f is None else sorted(f) for f in found], pa.list_(pa.string()))
        return annotate(batch, **new, url_pii=types_col)

    def redact_strings(self, values: list[str | None]) -> list[str | None]:
        """Every URL in each string scrubbed in place; None stays."""
        return [redact_urls(v, self.detector) if v else v for v in values]

    @classmethod
    def model_info(cls, **params: Any) -> dict[str, Any]:
        import importlib.metadata as md
        return {"kind": "patterns", "presidio_analyzer": md.version("presidio-analyzer"),
                "detect_secrets": md.version("detect-secrets"), "entities": ENTITIES,
                "credential_params": sorted(CREDENTIAL_PARAMS)}


def scrub_url(url: str, detector: Detector | None = None) -> str:
    """`url` with its PII and secrets replaced (a detector is built when none is given: slow)."""
    return apply(url, find_url_pii(url, detector or Detector(ENTITIES, None)))


def redact_urls(text: str, detector: Detector) -> str:
    """`text` with each URL in it scrubbed like a `url` column (the rest as it was)."""
    out, pos = [], 0
    for m in URL_IN_TEXT.finditer(text):
        spans = find_url_pii(m.group(), detector)
        if spans:
            out += [text[pos:m.start()], apply(m.group(), spans)]
            pos = m.end()
    return "".join(out) + text[pos:] if out else text


def apply(url: str, spans: list[Span]) -> str:
    """`url` with each raw span replaced by `<TYPE>`; overlapping spans merge (the first type)."""
    out, pos = [], 0
    for s, e, t in sorted(spans):
        if s < pos:                       # inside the previous replacement: widen it
            pos = max(pos, e)
            continue
        out += [url[pos:s], f"<{t}>"]
        pos = e
    return "".join(out) + url[pos:]


def find_url_pii(url: str, detector: Detector) -> list[Span]:
    """Raw (start, end, type) spans of `url` to replace."""
    pieces, spans = split_url(url)
    for start, end, kind in pieces:
        spans += _piece_spans(url, start, end, kind, detector)
    return spans


def split_url(url: str) -> tuple[list[tuple[int, int, str]], list[Span]]:
    """The pieces to scan, as raw (start, end, kind) with kind `path` (no `+` decoding) or
    `param` (a query or fragment item: `+` is a space, `name=value`), and the userinfo
    password's span. A string that is not a URL is all path."""
    pieces: list[tuple[int, int, str]] = []
    spans: list[Span] = []
    n = len(url)
    pos = 0
    m = SCHEME.match(url)
    if m:
        pos = m.end()
    if url.startswith("//", pos):
        auth_end = _find_any(url, "/?#", pos + 2)
        at = url.rfind("@", pos + 2, auth_end)
        if at >= 0:
            colon = url.find(":", pos + 2, at)
            pieces.append((pos + 2, colon if colon >= 0 else at, "path"))        # user name
            if colon >= 0 and colon + 1 < at:
                spans.append((colon + 1, at, PASSWORD))
        pos = auth_end
    query = _find_any(url, "?#", pos)
    frag = url.find("#", pos)
    frag = n if frag < 0 else frag
    for s, e in _split(url, pos, query, "/"):
        pieces.append((s, e, "path"))
    if query < frag and url[query] == "?":
        pieces += [(s, e, "param") for s, e in _split(url, query + 1, frag, "&;")]
    if frag < n:
        fragment = url[frag + 1:]
        kind = "param" if "=" in fragment else "path"
        pieces += [(s, e, kind) for s, e in (_split(url, frag + 1, n, "&") if kind == "param" else [(frag + 1, n)])]
    return [p for p in pieces if p[1] > p[0]], spans


def _find_any(s: str, chars: str, start: int) -> int:
    """First index at or after `start` of any of `chars`, else len(s)."""
    hits = [i for i in (s.find(c, start) for c in chars) if i >= 0]
    return min(hits) if hits else len(s)


def _split(s: str, start: int, end: int, seps: str) -> list[tuple[int, int]]:
    out, a = [], start
    for i in range(start, end):
        if s[i] in seps:
            out.append((a, i))
            a = i + 1
    return out + [(a, end)]


def _piece_spans(url: str, start: int, end: int, kind: str, detector: Detector) -> list[Span]:
    """Spans of one piece: a credential parameter's value whole, else what the detector finds
    in the decoded text, a nested credential parameter's value, and detect-secrets' keyword
    assignments. The detector sees "name value": the name is the label an SSN needs."""
    raw = url[start:end]
    eq = raw.find("=") if kind == "param" else -1
    if eq >= 0 and _norm(_decode(raw[:eq], True)[0]) in CREDENTIAL_PARAMS:
        return [(start + eq + 1, end, CREDENTIAL)] if eq + 1 < len(raw) else []
    text, where = _decode(raw, kind == "param")
    if len(text) < MIN_CHARS:
        return []
    # the detector reads separators as spaces (e-mail patterns accept `=`, `&`, `?` and `/` in
    # an address); secrets are read as written too, where a `/` may be part of one (`://` of a
    # nested URL's password, a webhook's path)
    found = [(r.start, r.end, r.entity_type) for r in detector.detect([text.translate(SEPARATORS)])[0]]
    if "/" in text:
        found += [(r.start, r.end, r.entity_type) for r in find_secrets(text)]
    for m in NESTED_PARAM.finditer(text):
        if _norm(m.group(1)) in CREDENTIAL_PARAMS:
            found.append((m.start(2), m.end(2), CREDENTIAL))
    if "=" in text and "/" not in text and KEYWORD_GATE.search(text):
        # detect-secrets' keyword rules (`db_password=...`) read the assignment itself
        found += [(r.start, r.end, r.entity_type) for r in find_secrets(text)
                  if r.entity_type in ("PASSWORD", "SECRET", "AWS_SECRET_KEY") and text.find("=") < r.start]
    return [(start + where[a][0], start + max(e for _, e in where[a:b]), t) for a, b, t in found if b > a]


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _decode(raw: str, plus: bool) -> tuple[str, Spans]:
    """Percent-decoded `raw` (UTF-8; `+` as a space if `plus`) and each character's raw span;
    decoded again while it still holds escapes (a URL nested in a parameter), up to twice."""
    text, where = _decode_once(raw, plus)
    if PCT.search(text):
        text2, inner = _decode_once(text, False)
        where = [(where[s][0], where[e - 1][1]) for s, e in inner]
        text = text2
    return text, where


def _decode_once(raw: str, plus: bool) -> tuple[str, Spans]:
    chars: list[str] = []
    where: Spans = []
    i, n = 0, len(raw)
    while i < n:
        if raw[i] == "%" and PCT.match(raw, i):
            dec = codecs.getincrementaldecoder("utf-8")("replace")
            a = i
            while i < n and PCT.match(raw, i):
                for ch in dec.decode(bytes([int(raw[i + 1:i + 3], 16)])):
                    chars.append(ch)
                    where.append((a, i + 3))
                    a = i + 3
                i += 3
            for ch in dec.decode(b"", final=True):
                chars.append(ch)
                where.append((a, i))
            continue
        chars.append(" " if plus and raw[i] == "+" else raw[i])
        where.append((i, i + 1))
        i += 1
    return "".join(chars), where
