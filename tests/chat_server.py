"""A real OpenAI-compatible chat-completions HTTP server for tests (stdlib http.server).

It answers math problems it was told the answers to, deterministically from the request's
seed, and misbehaves on purpose under some model names:
- model "flaky":   the first two requests of each body get HTTP 500, then success;
- model "slow":    sleeps `slow_s` before answering (for client timeouts);
- model "garbage": replies 200 with a body that is not JSON;
- model "broken":  always HTTP 503.
For a problem it knows, seed % 4 == 0 or 1 → a correct worked answer, 2 → a wrong one,
3 → an answer the rules cannot decide (`\\sqrt{?}`). Judge prompts get "CORRECT", or
"I am not sure" when the problem text contains "nojudge".
"""
from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client that hung up (its timeout, its shutdown) is normal traffic, not a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ChatServer:
    def __init__(self, answers: dict[str, str] | None = None, slow_s: float = 2.0,
                 always_wrong: set[str] | None = None):
        self.answers = dict(answers or {})
        self.always_wrong = set(always_wrong or ())
        self.slow_s = slow_s
        self.requests = 0
        self.seen: Counter = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n))
                server.requests += 1
                status, payload = server.respond(body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def respond(self, body: dict) -> tuple[int, object]:
        model = body.get("model")
        key = json.dumps(body, sort_keys=True)
        self.seen[key] += 1
        if model == "flaky" and self.seen[key] <= 2:
            return 500, {"error": "try again"}
        if model == "broken":
            return 503, {"error": "down"}
        if model == "garbage":
            return 200, b"<html>not json"
        if model == "slow":
            time.sleep(self.slow_s)
        user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        return 200, {"id": "x", "object": "chat.completion", "model": model,
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": self.complete(user, body)},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 10, "completion_tokens": 12}}

    def complete(self, user: str, body: dict) -> str:
        if user.startswith("You are grading"):
            return "I am not sure." if "nojudge" in user else "CORRECT"
        answer = self.answers.get(user.strip())
        if answer is None:
            return "I do not know."
        seed = int(body.get("seed") or 0)
        if user.strip() in self.always_wrong:
            seed = 2
        if seed % 4 in (0, 1):
            return f"Let me work it out step by step.\nThe answer is {answer}."
        if seed % 4 == 2:
            return f"Adding up carelessly.\nThe answer is {answer}1."
        return "It comes out as a root.\nThe answer is \\sqrt{?}."
