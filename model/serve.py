"""`curate serve CHECKPOINT`: the built-in model behind an OpenAI-compatible API
(POST /v1/chat/completions, GET /v1/models), so `openai:http://host:port/v1` works as a
generator everywhere (and any OpenAI client can talk to it).

Bounded everywhere, so no client can hold the server: a body-size limit (413), caps on `n`
and `max_tokens` (400), a per-read timeout and a whole-request deadline on reading, a listen
backlog and a cap on open connections, and a bounded queue in front of the one generation
worker: a request that finds the queue full gets 503 with Retry-After (our OpenAI client
retries it with backoff). Requests are generated one at a time, each as one batch of its `n`
prompts: the built-in sampler draws one seed per batch, so merging different clients' requests
would make an answer depend on who else was asking.
"""
from __future__ import annotations

import contextlib
import json
import math
import queue
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from model.generate import BuiltinGenerator
from model.generation import Request, Sampling


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


class BadRequest(ValueError):
    pass


@dataclass
class _Job:
    requests: list[Request]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: str | None = None


def _int(body: dict, key: str, default: int, lo: int, hi: int) -> int:
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BadRequest(f"'{key}' must be an integer from {lo} to {hi} (got {v!r})")
    return v


def _float(body: dict, key: str, default: float, lo: float, hi: float) -> float:
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise BadRequest(f"'{key}' must be a number from {lo} to {hi} (got {v!r})")
    return float(v)


def parse_request(body: Any, limits: Limits, max_tokens_cap: int) -> list[Request]:
    """An OpenAI chat-completions body → one Request per choice; BadRequest names the field."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("'messages' must be a non-empty list")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
               for m in msgs):
        raise BadRequest("each message needs a string 'role' and a string 'content'")
    n = _int(body, "n", 1, 1, limits.max_n)
    max_tokens = _int(body, "max_tokens", min(256, max_tokens_cap), 1, max_tokens_cap)
    seed = _int(body, "seed", 0, -(2 ** 62), 2 ** 62)
    temperature = _float(body, "temperature", 1.0, 0.0, 2.0)
    top_p = _float(body, "top_p", 1.0, 0.0, 1.0)
    if top_p <= 0:
        raise BadRequest("'top_p' must be above 0 (got 0)")
    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else stop
    if not isinstance(stop, (list, tuple)) or len(stop) > 4 or not all(isinstance(s, str) for s in stop):
        raise BadRequest("'stop' must be a string or a list of at most 4 strings")
    msgs = [{"role": m["role"], "content": m["content"]} for m in msgs]
    return [Request(msgs, Sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed + i,
                                   stop=tuple(stop))) for i in range(n)]


_BUSY_BODY = json.dumps({"error": {"message": "server busy: too many connections; retry later", "code": 503}})
BUSY = (f"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
        f"Connection: close\r\nContent-Length: {len(_BUSY_BODY)}\r\n\r\n{_BUSY_BODY}").encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    jobs: queue.Queue | None = None

    def __init__(self, address, handler, limits: Limits):
        self.request_queue_size = limits.backlog
        self.limits = limits
        self.slots = threading.BoundedSemaphore(limits.max_connections)
        self.overflow: queue.Queue[socket.socket] = queue.Queue(maxsize=limits.max_connections)
        super().__init__(address, handler)
        threading.Thread(target=self._turn_away, name="curate-serve-busy", daemon=True).start()

    def process_request(self, request, client_address):
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

    def process_request_thread(self, request, client_address):
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

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError):  # a client that hung up or timed out is no error
            super().handle_error(request, client_address)

    def server_close(self):
        super().server_close()
        if self.jobs is not None:
            try:
                self.jobs.put_nowait(None)  # stops the worker
            except queue.Full:
                pass


def make_server(checkpoint_dir: str, host: str = "127.0.0.1", port: int = 8000, threads: int | None = None,
                batch_size: int = 32, limits: Limits = Limits()) -> ThreadingHTTPServer:
    gen = BuiltinGenerator(checkpoint_dir, batch_size=batch_size, threads=threads)
    max_tokens_cap = limits.max_tokens or gen.model.cfg.max_seq_len
    jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=limits.max_queue)

    def worker() -> None:  # the only thread that touches the model
        while (job := jobs.get()) is not None:
            try:
                job.result = gen.generate(job.requests)
            except Exception as e:  # noqa: BLE001 - reported to that client as a 500
                job.error = f"{type(e).__name__}: {e}"[:500]
            job.done.set()

    class Handler(BaseHTTPRequestHandler):
        timeout = limits.read_timeout_s  # socket timeout for every read and write

        def log_message(self, fmt, *args):
            pass

        def setup(self):
            super().setup()
            # The deadline covers a client that trickles bytes just under the per-read timeout.
            self._reading, self._unread = True, False
            self._deadline = threading.Timer(limits.request_deadline_s, self._expire)
            self._deadline.daemon = True
            self._deadline.start()

        def _expire(self):
            if self._reading:
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        def finish(self):
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

        def _send(self, status: int, obj, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _refuse_body(self, status: int, message: str) -> None:
            self._unread = True
            self._error(status, message)

        def _error(self, status: int, message: str, **headers: str) -> None:
            self.close_connection = True
            self._send(status, {"error": {"message": message, "code": status}}, headers)

        def _read_body(self) -> bytes | None:
            """The body, or None after answering 411/413/400 (the rest is never read)."""
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
                self._refuse_body(413, f"body of {length} bytes is over the limit of {limits.max_body_bytes}")
                return None
            data = self.rfile.read(int(length))
            if len(data) < int(length):
                self.close_connection = True
                return None
            return data

        def do_GET(self):
            self._reading = False
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                return self._send(200, {"object": "list", "data": [{"id": gen.model_id, "object": "model",
                                                                    "owned_by": "curate"}]})
            self._error(404, f"no route {self.path[:200]}")

        def do_POST(self):
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
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
                reqs = parse_request(json.loads(raw), limits, max_tokens_cap)
            except (ValueError, RecursionError) as e:  # BadRequest, JSON and UTF-8 errors
                return self._error(400, f"bad request: {e}"[:500])
            job = _Job(reqs)
            try:
                jobs.put_nowait(job)
            except queue.Full:
                return self._error(503, f"server busy: {limits.max_queue} requests queued; retry later",
                                   **{"Retry-After": "1"})
            job.done.wait()
            if job.error is not None:
                return self._error(500, f"generation failed: {job.error}")
            choices = []
            for i, c in enumerate(job.result):
                text = c.text or ""
                for s in reqs[i].sampling.stop:  # stop strings, cut as OpenAI does
                    if s and s in text:
                        text, c.finish_reason = text[:text.index(s)], "stop"
                choices.append({"index": i, "message": {"role": "assistant", "content": text},
                                "finish_reason": c.finish_reason})
            self._send(200, {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
                             "created": int(time.time()), "model": gen.model_id, "choices": choices,
                             "usage": {"completion_tokens": sum(c.tokens or 0 for c in job.result)}})

    srv = _Server((host, port), Handler, limits)
    srv.jobs = jobs
    threading.Thread(target=worker, name="curate-serve-worker", daemon=True).start()
    return srv
