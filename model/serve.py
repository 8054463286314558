"""`curate serve CHECKPOINT`: the built-in model behind an OpenAI-compatible Chat Completions API
(POST /v1/chat/completions, GET /v1/models, GET /v1/models/{id}), so `openai:http://host:port/v1`
works as a generator everywhere and the official `openai` client talks to it
(tests/test_serve.py over HTTP, tests/test_interop.py with the `openai` package).

What it speaks: `messages` with the roles system, developer (treated as system), user and
assistant, each `content` a string or a list of text parts; `max_completion_tokens` (or the
deprecated `max_tokens`), `n`, `seed`, `temperature`, `top_p`, `stop` (a string or up to 4);
`stream` (server-sent events of `chat.completion.chunk` objects, ending in `data: [DONE]`) with
`stream_options.include_usage`; `usage` with prompt, completion and total tokens. Other fields
are accepted and ignored, except the ones whose silent omission would hand the client a wrong
answer (`logprobs`, `tools`, a JSON `response_format`): those get 400. Every refusal is an
OpenAI-style error body, `{"error": {"message", "type", "param", "code"}}`, naming the field.

Streaming: a stream sends its first chunks (the role) as soon as the request is queued, then the
text as the model samples it (the generator's `on_text` hook: each step's decoded text, an
unfinished multi-byte character held until it completes), through a stop-string filter
(`StopFilter`: text that could be the start of a stop string is held back until it is not). An
answer that comes whole (from the cache, or a backend that cannot stream) goes out in word-sized
deltas through the same filter.

Bounded everywhere, so no client can hold the server: a body-size limit (413), caps on `n`
and the completion tokens (400), a per-read timeout and a whole-request deadline on reading, a listen
backlog and a cap on open connections, and a bounded queue in front of the one generation
worker: a request that finds the queue full gets 503 with Retry-After (our OpenAI client
retries it with backoff). Requests are generated one at a time, each as one batch of its `n`
prompts, each choice sampled from its own seed (`seed + i`), so an answer never depends on who
else was asking.

The handler (`Handler`) is a module-level class; everything it shares (the generator, the
limits, the job queue) lives on the server object (`ChatServer`), so tests and callers can build
a server around any generator.
"""
from __future__ import annotations

import contextlib
import json
import math
import queue
import re
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from model.generator_api import Completion, Generator, Request, Sampling


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1 << 20      # 1 MiB of JSON is far more than any chat prompt the model can take
    max_n: int = 16
    max_tokens: int | None = None      # None: the model's context length
    max_queue: int = 64                # requests waiting for the worker; one more gets 503
    max_connections: int = 128         # open connections; one more gets 503 without a thread
    backlog: int = 256                 # listen(2) backlog: bursts wait in the kernel, not reset
    read_timeout_s: float = 10.0       # per socket read/write
    request_deadline_s: float = 30.0   # the whole request line + headers + body


# ---- the request ---------------------------------------------------------------------------
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STOPS = 4


class BadRequest(ValueError):
    """A 400: `param` is the offending field as OpenAI names it (`messages[1].role`, `n`)."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value"):
        super().__init__(message)
        self.param, self.code = param, code


@dataclass
class ChatRequest:
    """A parsed chat-completions body: one generator Request per choice, and how to answer."""
    requests: list[Request]
    stream: bool = False
    include_usage: bool = False


def _text(v: Any, param: str) -> str:
    """A string that is valid Unicode: JSON's \\ud800 escapes decode to lone surrogates, which
    no tokenizer (and no UTF-8 encoder) takes."""
    if not isinstance(v, str):
        raise BadRequest(f"'{param}' must be a string (got {type(v).__name__})", param, "invalid_type")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadRequest(f"'{param}' is not valid Unicode (a lone surrogate at character {e.start})", param,
                         "invalid_value") from None
    return v


def _int(body: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BadRequest(f"'{key}' must be an integer from {lo} to {hi} (got {v!r})"[:300], key,
                         "invalid_type" if isinstance(v, bool) or not isinstance(v, int) else "invalid_value")
    return v


def _float(body: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise BadRequest(f"'{key}' must be a number from {lo} to {hi} (got {v!r})"[:300], key,
                         "invalid_type" if isinstance(v, bool) or not isinstance(v, (int, float)) else "invalid_value")
    return float(v)


def _bool(body: dict[str, Any], key: str, param: str | None = None) -> bool:
    v = body.get(key)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise BadRequest(f"'{param or key}' must be a boolean (got {v!r})"[:300], param or key, "invalid_type")
    return v


def _content(v: Any, param: str) -> str:
    """A message's content: a string, or a list of text parts (joined), as the API allows."""
    if isinstance(v, list):
        parts = []
        for j, part in enumerate(v):
            p = f"{param}[{j}]"
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise BadRequest(f"'{p}' must be a text part ({{'type': 'text', 'text': ...}}); this model "
                                 f"takes text only (got {str(kind)[:40]!r})", p, "invalid_type")
            parts.append(_text(part.get("text"), f"{p}.text"))
        return "".join(parts)
    if not isinstance(v, str):
        raise BadRequest(f"'{param}' must be a string or a list of text parts (got {type(v).__name__})", param,
                         "invalid_type")
    return _text(v, param)


def _messages(body: dict[str, Any]) -> list[dict[str, str]]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("'messages' must be a non-empty list", "messages",
                         "invalid_type" if not isinstance(msgs, list) else "invalid_value")
    out = []
    for i, m in enumerate(msgs):
        p = f"messages[{i}]"
        if not isinstance(m, dict):
            raise BadRequest(f"'{p}' must be an object with a 'role' and a 'content'", p, "invalid_type")
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            shown = repr(role)[:40] if isinstance(role, str) else type(role).__name__
            raise BadRequest(f"'{p}.role' must be one of {', '.join(ROLES)} (got {shown})", f"{p}.role")
        out.append({"role": ROLES[role], "content": _content(m.get("content"), f"{p}.content")})
    return out


def _stops(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or len(stops) > MAX_STOPS or not all(isinstance(s, str) for s in stops):
        raise BadRequest(f"'stop' must be a string or a list of at most {MAX_STOPS} strings", "stop",
                         "invalid_type")
    return tuple(_text(s, "stop") for s in stops if s)


def _unsupported(body: dict[str, Any]) -> None:
    """Fields this server cannot honour and whose silent omission would mislead the client."""
    if body.get("logprobs") or body.get("top_logprobs"):
        raise BadRequest("'logprobs' is not supported by this server", "logprobs", "unsupported_parameter")
    if body.get("tools") or body.get("functions"):
        key = "tools" if body.get("tools") else "functions"
        raise BadRequest(f"'{key}' (function calling) is not supported by this server", key, "unsupported_parameter")
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") in (None, "text")):
        raise BadRequest("'response_format' other than text is not supported by this server", "response_format",
                         "unsupported_parameter")


def parse_request(body: Any, limits: Limits, max_tokens_cap: int) -> ChatRequest:
    """An OpenAI chat-completions body → a ChatRequest (one Request per choice); BadRequest names
    the field."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", None, "invalid_type")
    if body.get("model") is not None:
        _text(body["model"], "model")  # one model here: any name is answered by it
    msgs = _messages(body)
    n = _int(body, "n", 1, 1, limits.max_n)
    default_tokens = min(256, max_tokens_cap)
    legacy = _int(body, "max_tokens", default_tokens, 1, max_tokens_cap)
    max_tokens = _int(body, "max_completion_tokens", legacy, 1, max_tokens_cap)
    seed = _int(body, "seed", 0, -(2 ** 62), 2 ** 62)
    temperature = _float(body, "temperature", 1.0, 0.0, 2.0)
    top_p = _float(body, "top_p", 1.0, 0.0, 1.0)
    if top_p <= 0:
        raise BadRequest("'top_p' must be above 0 (got 0)", "top_p")
    stop = _stops(body)
    stream = _bool(body, "stream")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise BadRequest("'stream_options' must be an object", "stream_options", "invalid_type")
    if opts is not None and not stream:
        raise BadRequest("'stream_options' is only allowed when 'stream' is true", "stream_options")
    include_usage = _bool(opts or {}, "include_usage", "stream_options.include_usage")
    _unsupported(body)
    return ChatRequest([Request(msgs, Sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                                               seed=seed + i, stop=stop)) for i in range(n)],
                       stream=stream, include_usage=include_usage)


# ---- the answer ----------------------------------------------------------------------------
class StopFilter:
    """Text deltas in, text deltas out, cut before the first stop string as OpenAI does. Text that
    could be the start of a stop string is held back until the next delta shows it is not (or
    `flush` at the end lets it out), so no stop string ever reaches the client in pieces."""

    def __init__(self, stops: tuple[str, ...] | list[str]):
        self.stops = [s for s in stops if s]
        self.held = ""
        self.stopped = False

    def feed(self, delta: str) -> str:
        if self.stopped:
            return ""
        buf = self.held + delta
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped, self.held = True, ""
            return buf[:min(hits)]
        keep = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(buf)), keep, -1):
                if buf.endswith(s[:k]):
                    keep = k
                    break
        self.held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep]

    def flush(self) -> str:
        out, self.held = self.held, ""
        return out


_PIECES = re.compile(r"\s*\S+|\s+")


def pieces(text: str) -> list[str]:
    """A finished completion as the word-sized deltas a stream sends (they join back to `text`)."""
    return _PIECES.findall(text)


def cut_at_stops(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """`text` before its first stop string, and whether one was found."""
    f = StopFilter(stops)
    out = f.feed(text)
    return (out, True) if f.stopped else (out + f.flush(), False)


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 404: "not_found_error", 411: "invalid_request_error",
            413: "invalid_request_error", 503: "server_error"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass
class _Job:
    chat: ChatRequest
    done: threading.Event = field(default_factory=threading.Event)
    result: list[Completion] | None = None
    prompt_tokens: int = 0
    error: str | None = None
    # a stream's (choice, text so far) as the generator samples it; None once generation is over
    texts: queue.Queue[tuple[int, str] | None] = field(default_factory=queue.Queue)


_BUSY_BODY = json.dumps(error_body(503, "server busy: too many connections; retry later", code="server_busy"))
BUSY = (f"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
        f"Connection: close\r\nContent-Length: {len(_BUSY_BODY)}\r\n\r\n{_BUSY_BODY}").encode()


class ChatServer(ThreadingHTTPServer):
    """The listening socket, its bounds, and the one worker thread that runs the generator."""
    daemon_threads = True

    def __init__(self, gen: Generator, address: tuple[str, int], limits: Limits = Limits(),
                 max_tokens_cap: int | None = None,
                 prompt_tokens: Callable[[list[dict[str, str]]], int] | None = None) -> None:
        self.gen, self.limits = gen, limits
        self.model_id = gen.model_id
        self.created = int(time.time())
        self.max_tokens_cap = limits.max_tokens or max_tokens_cap or 256
        self.prompt_tokens = prompt_tokens or (lambda messages: 0)  # messages → tokens the model reads
        self.request_queue_size = limits.backlog
        self.slots = threading.BoundedSemaphore(limits.max_connections)
        self.overflow: queue.Queue[socket.socket] = queue.Queue(maxsize=limits.max_connections)
        self.jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=limits.max_queue)
        super().__init__(address, Handler)
        threading.Thread(target=self._turn_away, name="curate-serve-busy", daemon=True).start()
        threading.Thread(target=self._work, name="curate-serve-worker", daemon=True).start()

    def _work(self) -> None:  # the only thread that touches the model
        while (job := self.jobs.get()) is not None:
            try:
                job.prompt_tokens = self.prompt_tokens(job.chat.requests[0].messages)
                hear = (lambda i, text: job.texts.put((i, text))) if job.chat.stream else None
                job.result = self.gen.generate(job.chat.requests, on_text=hear)
                bad = [c.error or "no text" for c in job.result if c.error is not None or c.text is None]
                if bad or len(job.result) != len(job.chat.requests):
                    job.error = f"generator error: {bad[0] if bad else 'wrong number of choices'}"
            except Exception as e:  # noqa: BLE001 - reported to that client as a 500
                job.error = f"{type(e).__name__}: {e}"[:500]
            job.texts.put(None)
            job.done.set()

    def submit(self, chat: ChatRequest) -> _Job | None:
        """Queue a request for the worker; None when the queue is full."""
        job = _Job(chat)
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            return None
        return job

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):  # over the cap: one thread answers all of these
            try:
                self.overflow.put_nowait(request)
            except queue.Full:
                self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def _turn_away(self) -> None:
        """503 to connections over the cap: read what the client sends (up to a second), answer,
        stop writing and read a moment more, so the client gets the answer instead of a reset."""
        while True:
            conn = self.overflow.get()
            try:
                conn.settimeout(0.2)
                end, got = time.monotonic() + 1.0, b""
                while b"\r\n\r\n" not in got and len(got) < 65536 and time.monotonic() < end:
                    with contextlib.suppress(TimeoutError):
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        got += chunk
                conn.sendall(BUSY)
                conn.shutdown(socket.SHUT_WR)
                end = time.monotonic() + 1.0
                while time.monotonic() < end:
                    with contextlib.suppress(TimeoutError):
                        if not conn.recv(65536):
                            break
            except OSError:
                pass
            finally:
                conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client that hung up or timed out is no error
            super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        try:
            self.jobs.put_nowait(None)  # stops the worker
        except queue.Full:
            pass


class Handler(BaseHTTPRequestHandler):
    server: ChatServer

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        # socket timeout for every read and write (typeshed declares the class default a ClassVar)
        self.timeout = self.server.limits.read_timeout_s  # type: ignore[misc]
        super().setup()
        # The deadline covers a client that trickles bytes just under the per-read timeout.
        self._reading, self._unread = True, False
        self._deadline = threading.Timer(self.server.limits.request_deadline_s, self._expire)
        self._deadline.daemon = True
        self._deadline.start()

    def _expire(self) -> None:
        if self._reading:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def finish(self) -> None:
        self._deadline.cancel()
        try:
            super().finish()
            if self._unread:
                self._linger()
        except OSError:
            pass

    def _linger(self, seconds: float = 2.0, max_bytes: int = 64 << 20) -> None:
        """After refusing a body: stop writing and read what the client still sends for a
        moment, so closing does not reset the connection before it reads our answer."""
        self.connection.shutdown(socket.SHUT_WR)
        self.connection.settimeout(0.5)
        end, got = time.monotonic() + seconds, 0
        while time.monotonic() < end and got < max_bytes:
            chunk = self.connection.recv(65536)
            if not chunk:
                break
            got += len(chunk)

    # ---- responses
    def _send(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _refuse_body(self, status: int, message: str, code: str | None = None) -> None:
        self._unread = True
        self._error(status, message, code=code)

    def _error(self, status: int, message: str, param: str | None = None, code: str | None = None,
               **headers: str) -> None:
        self.close_connection = True
        self._send(status, error_body(status, message, param, code), headers)

    def _read_body(self) -> bytes | None:
        """The body, or None after answering 411/413/400 (the rest is never read)."""
        limits = self.server.limits
        if self.headers.get("Transfer-Encoding"):
            self._refuse_body(411, "send the body with a Content-Length (chunked bodies are not accepted)")
            return None
        length = self.headers.get("Content-Length")
        if length is None:
            self._refuse_body(411, "a Content-Length header is required")
            return None
        if not (length.isascii() and length.isdigit()):
            self._refuse_body(400, f"bad Content-Length {length[:40]!r}")
            return None
        if int(length) > limits.max_body_bytes:
            self._refuse_body(413, f"body of {length} bytes is over the limit of {limits.max_body_bytes}",
                              code="request_too_large")
            return None
        data = self.rfile.read(int(length))
        if len(data) < int(length):
            self.close_connection = True
            return None
        return data

    def _model(self) -> dict[str, Any]:
        return {"id": self.server.model_id, "object": "model", "created": self.server.created, "owned_by": "curate"}

    def do_GET(self) -> None:
        self._reading = False
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/v1/models", "/models"):
            return self._send(200, {"object": "list", "data": [self._model()]})
        for prefix in ("/v1/models/", "/models/"):
            if path.startswith(prefix):
                if path[len(prefix):] == self.server.model_id:
                    return self._send(200, self._model())
                return self._error(404, f"the model {path[len(prefix):][:200]!r} does not exist; this server has "
                                        f"{self.server.model_id!r}", "model", "model_not_found")
        self._error(404, f"no route {self.path[:200]}")

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0].rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._reading = False
            return self._refuse_body(404, f"no route {self.path[:200]}")
        try:
            raw = self._read_body()
        except OSError:  # read timeout or the deadline closed the socket
            self.close_connection = True
            return
        self._reading = False
        if raw is None:
            return
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as e:  # JSON and UTF-8 errors, absurd nesting
            return self._error(400, f"bad request: the body is not valid JSON ({e})"[:500], None, "invalid_json")
        try:
            chat = parse_request(body, self.server.limits, self.server.max_tokens_cap)
        except BadRequest as e:
            return self._error(400, f"bad request: {e}"[:500], e.param, e.code)
        except (ValueError, RecursionError) as e:  # anything else about the body is still the body's fault
            return self._error(400, f"bad request: {e}"[:500])
        job = self.server.submit(chat)
        if job is None:
            return self._error(503, f"server busy: {self.server.limits.max_queue} requests queued; retry later",
                               None, "server_busy", **{"Retry-After": "1"})
        if chat.stream:
            return self._stream(job)
        job.done.wait()
        if job.error is not None:
            return self._error(500, f"generation failed: {job.error}")
        choices = []
        for i, (req, c) in enumerate(zip(chat.requests, job.result or [])):
            text, stopped = cut_at_stops(c.text or "", req.sampling.stop)
            choices.append({"index": i, "message": {"role": "assistant", "content": text, "refusal": None},
                            "logprobs": None, "finish_reason": "stop" if stopped else c.finish_reason})
        self._send(200, {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                         "created": int(time.time()), "model": self.server.model_id, "choices": choices,
                         "usage": self._usage(job)})

    def _usage(self, job: _Job) -> dict[str, Any]:
        completion = sum(c.tokens or 0 for c in job.result or [])
        return {"prompt_tokens": job.prompt_tokens, "completion_tokens": completion,
                "total_tokens": job.prompt_tokens + completion}

    # ---- server-sent events
    def _stream(self, job: _Job) -> None:  # noqa: C901  (one stream's state, shared by its nested helpers)
        """`chat.completion.chunk` events: per choice a role delta, content deltas and a last
        delta with its finish_reason; then the usage chunk when asked for, then [DONE]."""
        self.close_connection = True  # HTTP/1.0: the stream ends when the connection does
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        chat = job.chat
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
            out = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": self.server.model_id,
                   "choices": choices}
            if chat.include_usage:
                out["usage"] = usage
            return out

        def choice(i: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}

        for i in range(len(chat.requests)):
            self._event(chunk([choice(i, {"role": "assistant", "content": ""})]))
        n = len(chat.requests)
        seen, filters, finished = [""] * n, [StopFilter(r.sampling.stop) for r in chat.requests], [False] * n

        def feed(i: int, delta: str) -> None:
            out = filters[i].feed(delta)
            if out:
                self._event(chunk([choice(i, {"content": out})]))
            if filters[i].stopped and not finished[i]:
                finished[i] = True
                self._event(chunk([choice(i, {}, "stop")]))

        def hear(i: int, text: str) -> None:  # the text so far: send what is new
            if not finished[i] and text.startswith(seen[i]) and len(text) > len(seen[i]):
                feed(i, text[len(seen[i]):])
                seen[i] = text

        while (heard := job.texts.get()) is not None:  # token by token while the model samples
            hear(*heard)
        job.done.wait()
        if job.error is not None:  # the status line is gone: the error travels as an event, as OpenAI's does
            self._event(error_body(500, f"generation failed: {job.error}"))
            return
        for i, c in enumerate(job.result or []):  # the rest: all of it for an answer that came whole (cache)
            text = c.text or ""
            for piece in pieces(text[len(seen[i]):] if text.startswith(seen[i]) else ""):
                if not finished[i]:
                    feed(i, piece)
            if not finished[i]:
                rest = filters[i].flush()
                if rest:
                    self._event(chunk([choice(i, {"content": rest})]))
                finished[i] = True
                self._event(chunk([choice(i, {}, c.finish_reason or "stop")]))
        if chat.include_usage:
            self._event(chunk([], self._usage(job)))
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, obj: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")


# ---- the built-in model --------------------------------------------------------------------
def make_server(checkpoint_dir: str, host: str = "127.0.0.1", port: int = 8000, threads: int | None = None,
                batch_size: int = 32, limits: Limits = Limits()) -> ChatServer:
    from model.sampling import BuiltinGenerator

    gen = BuiltinGenerator(checkpoint_dir, batch_size=batch_size, threads=threads)
    context = gen.model.cfg.max_seq_len

    def prompt_tokens(messages: list[dict[str, str]]) -> int:
        # as model.sampling feeds them: the chat-formatted prompt, its last context - 1 tokens
        return min(len(gen.tok.encode_chat(messages, add_generation_prompt=True)[0]), context - 1)

    return ChatServer(gen, (host, port), limits, max_tokens_cap=context, prompt_tokens=prompt_tokens)
