"""URL filter: drop pages by where they come from before any text work is spent on them.

Rules, first match names the reason: `url_malformed` (no scheme or host), `url_blocklist:domain`
(the host or a parent domain is in the blocklist file), `url_blocklist:url` (the exact URL is),
`url_adult_word` (a token of the host or path is in the adult list: one is enough),
`url_spam_words` (at least `spam_word_threshold` tokens are in the spam list: one alone, "free"
or "bonus", is not proof). Lists are files of one entry a line (`#` comments), so a user swaps
in a real blocklist (e.g. the UT1 lists) with a flag. Rows without a URL (JSONL documents)
pass. `url_domain` and `url_spam_hits` stay on every row.
"""
from __future__ import annotations

import functools
import gzip
import os
import re
from urllib.parse import urlsplit

import pyarrow as pa

from schemas.engine.stage import TaskStage, annotate, unknown_parameter
from schemas.tables import field

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
ADULT_WORDS = os.path.join(DATA, "url_adult_words.txt.gz")  # gzipped: the package data the wheel ships
SPAM_WORDS = os.path.join(DATA, "url_spam_words.txt.gz")
TOKEN = re.compile(r"[a-z0-9]+")


@functools.lru_cache(maxsize=32)
def read_list(path: str) -> frozenset[str]:
    """Entries of a list file (plain or .gz), lower case; a missing file is an error, not an empty list."""
    with (gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")) as f:
        return frozenset(s for s in (ln.split("#", 1)[0].strip().lower() for ln in f) if s)


def _domains(host: str) -> list[str]:
    """The host and every parent domain: a.b.example.com → a.b.example.com, b.example.com, example.com."""
    parts = host.split(".")
    return [".".join(parts[i:]) for i in range(len(parts) - 1)] or [host]


class UrlFilter(TaskStage):
    """Stage: reasons per rule for URLs from blocked domains, adult or spam URLs."""
    name = "url_filter"
    kind = "task"
    adds = [field("url_domain", pa.string()), field("url_spam_hits", pa.int16())]

    def __init__(self, blocklist: str | None = None, adult_words: str | None = ADULT_WORDS,
                 spam_words: str | None = SPAM_WORDS, spam_word_threshold: int = 2, column: str = "url"):
        self.blocked = read_list(blocklist) if blocklist else frozenset()
        self.adult = read_list(adult_words) if adult_words else frozenset()
        self.spam = read_list(spam_words) if spam_words else frozenset()
        self.paths = {"blocklist": blocklist, "adult_words": adult_words, "spam_words": spam_words}
        self.threshold, self.column = spam_word_threshold, column

    @classmethod
    def validate(cls, **params) -> None:
        problem = unknown_parameter(params, ["blocklist", "adult_words", "spam_words", "spam_word_threshold",
                                             "column"])
        if problem:
            raise TypeError(problem)
        for key in ("blocklist", "adult_words", "spam_words"):
            if params.get(key) and not os.path.isfile(params[key]):
                raise TypeError(f"{key}: no such file {params[key]!r}")
        if params.get("spam_word_threshold", 2) < 1:
            raise TypeError(f"spam_word_threshold must be at least 1, not {params['spam_word_threshold']}")

    @classmethod
    def model_info(cls, **params) -> dict:
        """Lineage: the lists' sizes, so a changed list shows in the run's record."""
        out = {}
        for key, default in (("blocklist", None), ("adult_words", ADULT_WORDS), ("spam_words", SPAM_WORDS)):
            path = params.get(key, default)
            out[key] = {"path": path, "entries": len(read_list(path))} if path and os.path.isfile(path) else None
        return out

    def check(self, url: str) -> tuple[str | None, int, str | None, str | None]:
        """(domain, spam hits, reason, detail) of one URL."""
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        if not parts.scheme or not host:
            return None, 0, "url_malformed", url[:200]
        domains = _domains(host)
        blocked = next((d for d in domains if d in self.blocked), None)
        if blocked:
            return host, 0, "url_blocklist:domain", blocked
        bare = url.strip().lower().split("://", 1)[-1]
        if url.strip().lower() in self.blocked or bare in self.blocked:
            return host, 0, "url_blocklist:url", None
        tokens = TOKEN.findall(f"{host} {parts.path.lower()}")
        adult = next((t for t in tokens if t in self.adult), None)
        hits = sorted({t for t in tokens if t in self.spam})
        if adult:
            return host, len(hits), "url_adult_word", adult
        if len(hits) >= self.threshold:
            return host, len(hits), "url_spam_words", " ".join(hits)
        return host, len(hits), None, None

    def __call__(self, batch: pa.Table) -> pa.Table:
        urls = batch.column(self.column).to_pylist() if self.column in batch.column_names else [None] * batch.num_rows
        domains, hits, reasons, details = [], [], [], []
        for url in urls:
            d, h, r, det = self.check(url) if url else (None, 0, None, None)
            domains.append(d)
            hits.append(h)
            reasons.append(r)
            details.append(det)
        batch = annotate(batch, url_domain=pa.array(domains, pa.string()), url_spam_hits=pa.array(hits, pa.int16()))
        return annotate(batch, drop_reason=pa.array(reasons, pa.string()), reject_detail=pa.array(details, pa.string()))

    def params(self) -> dict:
        return {**self.paths, "spam_word_threshold": self.threshold, "column": self.column}
