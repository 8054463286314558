"""`curate serve CHECKPOINT`: the built-in model behind an OpenAI-compatible API
(POST /v1/chat/completions, GET /v1/models), so `openai:http://host:port/v1` works as a
generator everywhere (and any OpenAI client can talk to it)."""
from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from model.generate import BuiltinGenerator
from synth.generators import Request, Sampling


def make_server(checkpoint_dir: str, host: str = "127.0.0.1", port: int = 8000, threads: int | None = None,
                batch_size: int = 32) -> ThreadingHTTPServer:
    gen = BuiltinGenerator(checkpoint_dir, batch_size=batch_size, threads=threads)
    lock = threading.Lock()  # one forward pass at a time; requests queue here

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            pass

        def _send(self, status: int, obj) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                return self._send(200, {"object": "list", "data": [{"id": gen.model_id, "object": "model",
                                                                    "owned_by": "curate"}]})
            self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                msgs = [{"role": m["role"], "content": m["content"]} for m in body["messages"]]
                n = int(body.get("n", 1))
                base = int(body.get("seed") or 0)
                stop = body.get("stop") or ()
                reqs = [Request(msgs, Sampling(temperature=float(body.get("temperature", 1.0)),
                                               top_p=float(body.get("top_p", 1.0)),
                                               max_tokens=int(body.get("max_tokens") or 256), seed=base + i,
                                               stop=tuple([stop] if isinstance(stop, str) else stop)))
                        for i in range(n)]
            except (ValueError, KeyError, TypeError) as e:
                return self._send(400, {"error": {"message": f"bad request: {e}"}})
            with lock:
                outs = gen.generate(reqs)
            choices = []
            for i, c in enumerate(outs):
                text = c.text or ""
                for s in reqs[i].sampling.stop:  # stop strings, cut as OpenAI does
                    if s and s in text:
                        text, c.finish_reason = text[:text.index(s)], "stop"
                choices.append({"index": i, "message": {"role": "assistant", "content": text},
                                "finish_reason": c.finish_reason})
            self._send(200, {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
                             "created": int(time.time()), "model": gen.model_id, "choices": choices,
                             "usage": {"completion_tokens": sum(c.tokens or 0 for c in outs)}})

    return ThreadingHTTPServer((host, port), Handler)
