"""Hostile input at the edges: row text given to TTS command lines, pickles in checkpoints,
clients of `curate serve`, and the network reach of the embedded Ray."""
import contextlib
import http.client
import ipaddress
import json
import os
import pathlib
import pickle
import socket
import tempfile
import threading
import time

import numpy as np
import pytest
import torch

import served
from model import checkpoint
from synth.tts import available_voices, load_voice

# ---- TTS: row text is never an option, a path or a template ----------------------------------
COMMAND_VOICES = ["flite:slt", "espeak-ng:en-us", "festival:kal_diphone"]
LONG_TEXT = " ".join(["the quick brown fox jumps over the lazy dog"] * 8)  # ~20 s of speech


def _seconds(voice: str, text: str) -> float:
    x, sr = load_voice(voice)(text)
    return x.size / sr


@pytest.fixture(scope="module")
def command_voices():
    voices = available_voices(COMMAND_VOICES)
    assert voices == COMMAND_VOICES, "flite, espeak-ng and festival voices are installed by `make setup`"
    return voices


@pytest.fixture
def short_dir():
    """A short path, so speaking it literally is short too."""
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="t") as d:
        yield pathlib.Path(d)


@pytest.mark.parametrize("voice", COMMAND_VOICES)
def test_tts_never_reads_or_writes_files_named_in_the_text(voice, command_voices, short_dir):
    tmp_path = short_dir
    secret = tmp_path / "s"
    secret.write_text(LONG_TEXT)
    reading = _seconds(voice, LONG_TEXT)
    assert reading > 10
    planted = tmp_path / "w"
    for text in (f"-f{secret}", f"-f {secret}", f"--file={secret}", f"-w{planted}", f"-o{planted}", "--help"):
        spoken = _seconds(voice, text)  # the text itself, a few seconds, never the file's contents
        assert 0.3 < spoken < reading / 2, (voice, text, spoken)
    assert not planted.exists()


@pytest.mark.parametrize("voice", COMMAND_VOICES)
def test_tts_placeholder_in_text_is_spoken_not_substituted(voice, command_voices):
    # With the temp WAV path substituted for {out}, each call spoke a different random path.
    a, _ = load_voice(voice)("say {out} now")
    b, _ = load_voice(voice)("say {out} now")
    assert a.size > 0 and np.array_equal(a, b)


@pytest.mark.parametrize("spec", ["espeak-ng:-f/etc/os-release", "flite:--help", "festival:x)(system \"id\""])
def test_tts_voice_names_cannot_be_options_or_code(spec):
    with pytest.raises(ValueError, match="bad voice name"):
        load_voice(spec)


# ---- checkpoints: optimizer state never unpickles code ----------------------------------------
class _RunsCode:
    """Unpickling this object writes a file: what a crafted optimizer.pt would do."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return exec, (f"open({self.path!r}, 'w').write('pwned')",)


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_crafted_optimizer_state_is_refused(tmp_path, writer):
    marker = tmp_path / "marker"
    state = {"optimizer": _RunsCode(str(marker)), "step": 3, "rng": torch.get_rng_state()}
    path = tmp_path / "optimizer.pt"
    if writer == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state, protocol=2))
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match="refusing optimizer.pt"):
        checkpoint.load_optimizer(str(tmp_path), opt)
    assert not marker.exists()


def test_real_optimizer_state_round_trips(tmp_path):
    from model.config import ModelConfig
    from model.tokenizer import ChatTokenizer
    from model.transformer import Transformer

    tok = ChatTokenizer.train(["a small corpus for a tokenizer", "two lines"], vocab_size=300)
    model = Transformer(ModelConfig(vocab_size=tok.vocab_size, dim=32, n_layers=1, n_heads=2, n_kv_heads=1,
                                    ffn_dim=64, max_seq_len=32))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    model(torch.tensor([[1, 2, 3]])).sum().backward()
    opt.step()
    checkpoint.save(str(tmp_path / "ck"), model, tok, step=1, train_config={}, trained_on=[], optimizer=opt)
    rng = torch.get_rng_state()
    torch.manual_seed(123)
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    assert checkpoint.load_optimizer(str(tmp_path / "ck"), fresh) == 1
    assert torch.equal(torch.get_rng_state(), rng)
    for a, b in zip(opt.state.values(), fresh.state.values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])


# ---- curate serve: bounded body, n, max_tokens, time and queue -------------------------------
@pytest.fixture(scope="module")
def served_checkpoint(tmp_path_factory):
    from model.config import ModelConfig
    from model.tokenizer import ChatTokenizer
    from model.transformer import Transformer
    from synth.problems import word_problems

    tok = ChatTokenizer.train((p["problem"] for p in word_problems(60, seed=1)), vocab_size=300)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=tok.vocab_size, dim=32, n_layers=2, n_heads=2, n_kv_heads=1,
                                    ffn_dim=64, max_seq_len=128))
    path = str(tmp_path_factory.mktemp("serve") / "ck")
    checkpoint.save(path, model, tok, step=0, train_config={}, trained_on=[])
    return path


@contextlib.contextmanager
def serving(ck: str, **limits):
    """The shared test server (tests/served.py), as a port."""
    with served.serving(ck, **limits) as srv:
        yield srv.server_address[1]


def post(port: int, body, headers: dict | None = None, timeout: float = 60) -> tuple[int, dict, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/chat/completions", body=data,
                     headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}"), dict(r.getheaders())
    finally:
        conn.close()


def chat(n: int = 1, max_tokens: int = 8, **kw) -> dict:
    return {"messages": [{"role": "user", "content": "Ava has 3 apples."}], "n": n, "max_tokens": max_tokens,
            "seed": 1, **kw}


def hammer(port: int, clients: int = 50, max_tokens: int = 12) -> list:
    """`clients` threads POST at once; each result is (status, body) or the exception raised."""
    barrier, results = threading.Barrier(clients), [None] * clients

    def one(i):
        barrier.wait(30)
        try:
            status, body, _ = post(port, chat(n=2, max_tokens=max_tokens, seed=i), timeout=120)
            results[i] = (status, body)
        except Exception as e:  # noqa: BLE001 - a reset or timeout is what the test looks for
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return results


def test_serve_answers_50_concurrent_clients_without_resets(served_checkpoint):
    with serving(served_checkpoint) as port:  # default limits: all 50 fit the queue
        results = hammer(port)
    errors = [r for r in results if not isinstance(r, tuple)]
    assert not errors, errors[:3]
    assert [s for s, _ in results] == [200] * 50
    assert all(len(b["choices"]) == 2 and isinstance(b["choices"][0]["message"]["content"], str) for _, b in results)


def test_serve_full_queue_answers_a_clean_503(served_checkpoint):
    with serving(served_checkpoint, max_queue=2) as port:  # long answers: the queue fills on any machine
        results = hammer(port, max_tokens=100)
    errors = [r for r in results if not isinstance(r, tuple)]
    assert not errors, errors[:3]
    statuses = [s for s, _ in results]
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    assert all("busy" in b["error"]["message"] for s, b in results if s == 503)


def test_serve_refuses_huge_bodies_and_oversized_requests(served_checkpoint):
    with served.serving(served_checkpoint) as srv:
        port = srv.server_address[1]
        status, body, _ = post(port, b'{"messages": [' + b" " * (2 << 20) + b"]}", timeout=20)
        assert status == 413 and "over the limit" in body["error"]["message"]
        # A claimed length is refused before anything is read.
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n{")
        assert conn.recv(4096).startswith(b"HTTP/1.0 413")
        conn.close()
        status, body, _ = post(port, chat(n=2000), timeout=20)
        assert status == 400 and "'n' must be an integer from 1 to 16 (got 2000)" in body["error"]["message"]
        status, body, _ = post(port, chat(max_tokens=10 ** 6), timeout=20)
        assert status == 400 and "'max_tokens' must be an integer from 1 to 128" in body["error"]["message"]
        assert srv.gen.stats["requests"] == 0  # refused, not generated
        for bad, field in [(chat(n="2"), "'n'"), (chat(n=True), "'n'"), (chat(temperature=float("inf")), "'temp"),
                           (chat(top_p=0), "'top_p'"), ({"messages": "hi"}, "'messages'"),
                           (chat(stop=[1]), "'stop'"), ([1, 2], "JSON object"), (b"{not json", "bad request")]:
            status, body, _ = post(port, bad, timeout=20)
            assert status == 400 and field in body["error"]["message"], (bad, body)
        status, body, _ = post(port, chat(n=3, max_tokens=4))
        assert status == 200 and len(body["choices"]) == 3


def test_serve_drops_slow_clients_and_keeps_serving(served_checkpoint):
    with serving(served_checkpoint, read_timeout_s=0.5, request_deadline_s=1.5) as port:
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)
        idle.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n")
        trickle = socket.create_connection(("127.0.0.1", port), timeout=10)
        closed_after = None  # bytes sent when the server closed the connection
        payload = b"POST /v1/chat/completions HTTP/1.1\r\nX-Slow: " + b"a" * 100
        for i in range(len(payload)):  # one byte every 0.2 s: under the read timeout, over the deadline
            try:
                trickle.sendall(payload[i:i + 1])
            except OSError:
                closed_after = i
                break
            trickle.settimeout(0.2)
            try:
                if trickle.recv(1) == b"":
                    closed_after = i + 1
                    break
            except TimeoutError:
                pass
        # closed mid-request (the 1.5 s deadline falls at ~8 bytes): an order of events, no bound in
        # seconds; a server without the deadline keeps reading while bytes keep coming
        assert closed_after is not None and closed_after < len(payload) // 2, closed_after
        idle.settimeout(5)
        assert idle.recv(1) == b""  # closed by the read timeout
        status, _, _ = post(port, chat(), timeout=20)
        assert status == 200
        idle.close()
        trickle.close()


def test_serve_connection_cap_answers_503(served_checkpoint):
    with serving(served_checkpoint, max_connections=2, read_timeout_s=5) as port:
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        time.sleep(0.3)  # both accepted and holding their slots
        status, body, headers = post(port, chat(), timeout=10)
        assert status == 503 and "too many connections" in body["error"]["message"]
        assert headers.get("Retry-After") == "1"
        for s in held:
            s.close()
        deadline = time.monotonic() + 10
        while (status := post(port, chat(), timeout=10)[0]) == 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 200


# ---- the embedded Ray is reachable from this machine only -----------------------------------
def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def test_embedded_ray_listens_on_loopback_only(ray_session):
    import psutil

    if os.environ.get("RAY_ADDRESS"):
        pytest.skip("joined an external cluster: nothing embedded to check")
    ray = ray_session

    @ray.remote
    def pid():
        return os.getpid()

    worker = ray.get(pid.remote())
    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    assert worker in {p.pid for p in procs}, "the embedded Ray's processes descend from this one"
    listening = []
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            listening += [(p.name(), c.laddr.ip, c.laddr.port) for c in p.net_connections(kind="inet")
                          if c.status == psutil.CONN_LISTEN]
    names = {n for n, _, _ in listening}
    assert "gcs_server" in names and "raylet" in names, names
    assert [x for x in listening if not _loopback(x[1])] == []
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ  # the setting did not leak
