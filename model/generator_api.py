"""The generator interface every backend implements (synth/generator_backends.py: HTTP, transformers,
SmolLM2; model/sampling.py: the built-in model), with the cache so a rerun never pays twice.

`Generator.generate(requests)` takes chat requests (messages + sampling parameters with a
seed) and returns one `Completion` per request, in order, never raising for a single bad
request. It lives in model/ because the built-in model implements it and synth/ builds on
model/, never the other way round.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int = 0
    stop: tuple[str, ...] = ()


@dataclass
class Request:
    messages: Messages
    sampling: Sampling


@dataclass
class Completion:
    text: str | None
    finish_reason: str | None = None      # stop | length | error
    error: str | None = None              # timeout | http_<code> | connection | <exception name>
    cached: bool = False
    seconds: float = 0.0
    tokens: int | None = None


def cache_key(model_id: str, req: Request) -> str:
    blob = json.dumps([model_id, req.messages, asdict(req.sampling)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class GenerationCache:
    """SQLite, safe across processes on one machine (WAL); only successful completions are stored."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._local = threading.local()
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, model TEXT, "
                       "text TEXT, finish_reason TEXT, tokens INTEGER, created REAL)")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60)
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        out = {}
        db = self._db()
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            rows = db.execute(f"SELECT key, text, finish_reason, tokens FROM completions WHERE key IN "
                              f"({','.join('?' * len(chunk))})", chunk).fetchall()
            out.update({k: Completion(t, fr, None, True, 0.0, n) for k, t, fr, n in rows})
        return out

    def put_many(self, items: list[tuple[str, str, Completion]]) -> None:
        rows = [(k, m, c.text, c.finish_reason, c.tokens, time.time()) for k, m, c in items if c.error is None]
        if rows:
            with self._db() as db:
                db.executemany("INSERT OR REPLACE INTO completions VALUES (?,?,?,?,?,?)", rows)


class Generator:
    """Base: cache lookups around a backend's `_generate` over the misses. A backend that can
    report text as it is sampled sets `streams` and takes `on_text` in `_generate`."""
    model_id: str = "generator"
    streams: bool = False

    def __init__(self, cache: str | None = None):
        self.cache = GenerationCache(cache) if cache else None
        self.stats = {"requests": 0, "cache_hits": 0, "errors": 0, "seconds": 0.0, "tokens": 0}

    def generate(self, requests: list[Request], on_text: Callable[[int, str], None] | None = None
                 ) -> list[Completion]:
        """One completion per request, in order. `on_text(i, text so far)` hears request i's text
        while it is sampled, from backends that stream (cached and other answers only arrive whole)."""
        keys = [cache_key(self.model_id, r) for r in requests]
        hits = self.cache.get_many(keys) if self.cache else {}
        todo = [i for i, k in enumerate(keys) if k not in hits]
        t0 = time.perf_counter()
        if todo and on_text is not None and self.streams:
            fresh = self._generate([requests[i] for i in todo],  # type: ignore[call-arg]
                                   on_text=lambda j, text: on_text(todo[j], text))
        else:
            fresh = self._generate([requests[i] for i in todo]) if todo else []
        self.stats["seconds"] += time.perf_counter() - t0
        if self.cache:
            self.cache.put_many([(keys[i], self.model_id, c) for i, c in zip(todo, fresh)])
        out: list[Completion | None] = [hits.get(k) for k in keys]
        for i, c in zip(todo, fresh):
            out[i] = c
        self.stats["requests"] += len(requests)
        self.stats["cache_hits"] += len(hits)
        self.stats["errors"] += sum(c.error is not None for c in fresh)
        self.stats["tokens"] += sum(c.tokens or 0 for c in fresh)
        return out  # type: ignore[return-value]

    def _generate(self, requests: list[Request]) -> list[Completion]:  # pragma: no cover - abstract
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {"model_id": self.model_id}
