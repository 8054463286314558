"""`curate serve` as an OpenAI Chat Completions endpoint, over HTTP with plain httpx: the request
fields (max_completion_tokens, developer, stop, n, seed), usage, server-sent-event streaming, the
models routes, and every bad body as a 400 naming its field. Most tests run against a scripted
generator (exact texts, so stop strings and deltas can be checked to the character); the rest
against a tiny from-scratch built-in checkpoint. The official `openai` client is in
tests/test_interop.py; the bounds (413, 503, slow clients) in tests/test_security.py."""
import json
import threading

import httpx
import pytest

from model.generator_api import Completion, Generator
from model.serve import ChatServer, Limits, StopFilter, cut_at_stops, pieces
from served import serving, tiny_checkpoint

MSG = [{"role": "user", "content": "Ava has 3 apples."}]


class Scripted(Generator):
    """Answers choice i with texts[i % len(texts)]; `fail` raises instead."""
    model_id = "scripted"

    def __init__(self, texts, fail=False):
        super().__init__()
        self.texts, self.fail, self.seen = list(texts), fail, []

    def _generate(self, requests):
        self.seen.append(requests)
        if self.fail:
            raise RuntimeError("the model fell over")
        texts = [self.texts[i % len(self.texts)] for i in range(len(requests))]
        return [Completion(t, "length", tokens=len(t.split())) for t in texts]


@pytest.fixture
def scripted():
    servers = []

    def start(texts=("The answer is 42. END of it",), fail=False, **limits):
        gen = Scripted(texts, fail)
        srv = ChatServer(gen, ("127.0.0.1", 0), Limits(**limits), max_tokens_cap=64, prompt_tokens=lambda m: 7)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/v1", gen

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def post(url, body, **kw):
    if isinstance(body, bytes):
        return httpx.post(url + "/chat/completions", content=body, headers={"Content-Type": "application/json"},
                          timeout=60, **kw)
    return httpx.post(url + "/chat/completions", json=body, timeout=60, **kw)


def stream(url, body) -> tuple[httpx.Response, list]:
    """The response and its events: parsed chunks, and "[DONE]" as the string."""
    events = []
    with httpx.stream("POST", url + "/chat/completions", json={**body, "stream": True}, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                data = line[len("data: "):]
                events.append(data if data == "[DONE]" else json.loads(data))
            else:
                assert line == "", line  # nothing but data lines and the blank lines between events
    return r, events


# ---- the stop filter -----------------------------------------------------------------------
@pytest.mark.parametrize("text, stops, want, stopped", [
    ("The answer is 42. END of it", ("END",), "The answer is 42. ", True),
    ("The answer is 42. END of it", ("END", "is 4"), "The answer ", True),    # the earliest occurrence wins
    ("The answer is 42. EN", ("END",), "The answer is 42. EN", False),       # a held-back prefix comes out at the end
    ("aaab", ("aab",), "a", True),                                            # overlapping prefixes
    ("no stops here", (), "no stops here", False),
    ("", ("x",), "", False),
])
def test_stop_filter_gives_the_same_text_however_the_deltas_fall(text, stops, want, stopped):
    assert cut_at_stops(text, stops) == (want, stopped)
    for split in (list(text), pieces(text), [text]):
        f = StopFilter(stops)
        out = [f.feed(d) for d in split]
        assert not any(s in o for o in out for s in stops)  # no stop string ever goes out, not even in part
        got = "".join(out) + ("" if f.stopped else f.flush())
        assert (got, f.stopped) == (want, stopped), split
    assert "".join(pieces(text)) == text


# ---- the request fields reach the generator ------------------------------------------------
def test_current_parameter_names_reach_the_generator(scripted):
    url, gen = scripted()
    r = post(url, {"model": "whatever", "n": 3, "seed": 10, "temperature": 0.3, "top_p": 0.9, "stop": "END",
                   "max_tokens": 50, "max_completion_tokens": 3,
                   "messages": [{"role": "developer", "content": "Be brief."},
                                {"role": "user", "content": [{"type": "text", "text": "Ava has "},
                                                             {"type": "text", "text": "3 apples."}]}]})
    assert r.status_code == 200, r.text
    reqs = gen.seen[-1]
    assert [q.messages for q in reqs] == [[{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": "Ava has 3 apples."}]] * 3
    assert [q.sampling.seed for q in reqs] == [10, 11, 12]  # one seed per choice
    assert {(q.sampling.max_tokens, q.sampling.temperature, q.sampling.top_p, q.sampling.stop) for q in reqs} == \
        {(3, 0.3, 0.9, ("END",))}  # max_completion_tokens over the deprecated max_tokens
    assert post(url, {"messages": MSG, "max_tokens": 5}).status_code == 200
    assert gen.seen[-1][0].sampling.max_tokens == 5  # the deprecated name still works alone
    post(url, {"messages": MSG, "stop": ["a", "b"]})
    assert gen.seen[-1][0].sampling.stop == ("a", "b")


def test_a_plain_answer_has_choices_stop_cuts_and_usage(scripted):
    url, _ = scripted(["The answer is 42. END of it", "no stop in this one"])
    r = post(url, {"messages": MSG, "n": 2, "stop": ["END", "zzz"]})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == "scripted"
    assert [(c["index"], c["message"]["role"], c["message"]["content"], c["finish_reason"]) for c in body["choices"]] \
        == [(0, "assistant", "The answer is 42. ", "stop"), (1, "assistant", "no stop in this one", "length")]
    # prompt tokens once per request (not per choice), completion tokens summed over the choices
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 7 + 5, "total_tokens": 19}


# ---- streaming -----------------------------------------------------------------------------
def test_stream_sends_spec_chunks_per_choice_then_usage_then_done(scripted):
    url, _ = scripted(["The answer is 42. END of it", "no stop in this one"])
    r, events = stream(url, {"messages": MSG, "n": 2, "stop": "END", "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "[DONE]" and "[DONE]" not in events[:-1]
    chunks = events[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert {c["model"] for c in chunks} == {"scripted"}
    *choice_chunks, usage = chunks
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 7, "completion_tokens": 12,
                                                         "total_tokens": 19}
    assert all(c["usage"] is None for c in choice_chunks)  # include_usage: null on every chunk but the last
    want = {0: ("The answer is 42. ", "stop"), 1: ("no stop in this one", "length")}
    for i, (text, finish) in want.items():
        mine = [c["choices"][0] for c in choice_chunks if c["choices"][0]["index"] == i]
        assert all(len(c["choices"]) == 1 for c in choice_chunks)
        assert mine[0]["delta"] == {"role": "assistant", "content": ""} and mine[0]["finish_reason"] is None
        assert mine[-1]["delta"] == {} and mine[-1]["finish_reason"] == finish
        assert all(m["finish_reason"] is None for m in mine[:-1])
        deltas = [m["delta"]["content"] for m in mine[1:-1]]
        assert len(deltas) > 1 and all(deltas) and "".join(deltas) == text  # several deltas, joined = the answer
        assert all(set(m["delta"]) == {"content"} for m in mine[1:-1])


def test_stream_without_include_usage_has_no_usage_field(scripted):
    url, _ = scripted()
    _, events = stream(url, {"messages": MSG})
    assert events[-1] == "[DONE]" and all("usage" not in c for c in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "length"


def test_a_generator_failure_is_a_500_or_an_error_event_never_a_hang(scripted):
    url, _ = scripted(fail=True)
    r = post(url, {"messages": MSG})
    assert r.status_code == 500 and "the model fell over" in r.json()["error"]["message"]
    assert r.json()["error"]["type"] == "server_error"
    _, events = stream(url, {"messages": MSG})  # headers already sent: the error travels as the last event
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "the model fell over" in events[-1]["error"]["message"] and "[DONE]" not in events


# ---- bad input: 400 with an OpenAI error body naming the field -----------------------------
LONE_SURROGATE = b'{"messages": [{"role": "user", "content": "a\\ud800b"}]}'
BAD = [
    (LONE_SURROGATE, "messages[0].content"),
    (b'{"messages": [{"role": "user", "content": "\xed\xa0\x80"}]}', "messages[0].content"),  # a surrogate as raw bytes
    (b'{"messages": [{"role": "user", "content": "hi"}], "stop": ["\\udfff"]}', "stop"),
    (b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "a\\ud800"}]}]}',
     "messages[0].content[0].text"),
    ({"messages": [{"role": "tool", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "hi"}, {"content": "hi"}]}, "messages[1].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "assistant", "content": None}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content[0]"),
    ({"messages": ["hi"]}, "messages[0]"),
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({}, "messages"),
    ({"messages": MSG, "n": 0}, "n"),
    ({"messages": MSG, "n": 17}, "n"),
    ({"messages": MSG, "n": "2"}, "n"),
    ({"messages": MSG, "n": 2.0}, "n"),
    ({"messages": MSG, "max_completion_tokens": 0}, "max_completion_tokens"),
    ({"messages": MSG, "max_completion_tokens": 65}, "max_completion_tokens"),
    ({"messages": MSG, "max_tokens": "10"}, "max_tokens"),
    ({"messages": MSG, "seed": 1.5}, "seed"),
    ({"messages": MSG, "temperature": 3}, "temperature"),
    ({"messages": MSG, "temperature": "hot"}, "temperature"),
    ({"messages": MSG, "top_p": 0}, "top_p"),
    ({"messages": MSG, "stop": 5}, "stop"),
    ({"messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": MSG, "stream": "yes"}, "stream"),
    ({"messages": MSG, "stream_options": {"include_usage": True}}, "stream_options"),
    ({"messages": MSG, "stream": True, "stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
    ({"messages": MSG, "stream": True, "stream_options": []}, "stream_options"),
    ({"messages": MSG, "model": 3}, "model"),
    ({"messages": MSG, "logprobs": True}, "logprobs"),
    ({"messages": MSG, "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"messages": MSG, "response_format": {"type": "json_object"}}, "response_format"),
    ([MSG], None),
    (b"{not json", None),
    (b'{"messages": [' * 100000 + b']}' * 100000, None),  # nesting past the JSON parser's recursion
    (b'{"messages": "\xff\xfe"}', None),  # not UTF-8 at all
]


@pytest.mark.parametrize("body, param", BAD, ids=[f"{i}-{p}" for i, (_, p) in enumerate(BAD)])
def test_bad_input_is_a_400_naming_the_field_and_never_reaches_the_model(scripted, body, param):
    url, gen = scripted(max_body_bytes=1 << 21)
    r = post(url, body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param and err["message"].startswith("bad request")
    if param:
        assert f"'{param}'" in err["message"]
    assert gen.seen == []


def test_any_json_value_in_any_field_is_answered_200_or_400(scripted):
    url, _ = scripted()
    values = [None, True, False, 0, -1, 1.5, 10 ** 30, float("nan"), "", "x", "\ud800", [], [1], ["x"], {}, {"a": 1},
              [{"type": "text"}], {"include_usage": True}]
    bodies = []
    for v in values:
        bodies += [{"messages": MSG, key: v} for key in (
            "model", "n", "max_tokens", "max_completion_tokens", "seed", "temperature", "top_p", "stop", "stream",
            "stream_options", "logprobs", "top_logprobs", "tools", "functions", "response_format", "user")]
        bodies += [{"messages": v}, {"messages": [v]}, {"messages": [{"role": v, "content": "hi"}]},
                   {"messages": [{"role": "user", "content": v}]}, {"messages": [{"role": "user", "content": [v]}]},
                   {"messages": [{"role": "user", "content": [{"type": "text", "text": v}]}]},
                   {"messages": MSG, "stream": True, "stream_options": v},
                   {"messages": MSG, "stream": True, "stream_options": {"include_usage": v}}]
    with httpx.Client(timeout=60) as client:
        for body in bodies:
            data = json.dumps(body).encode()
            r = client.post(url + "/chat/completions", content=data, headers={"Content-Type": "application/json"})
            assert r.status_code in (200, 400), (body, r.status_code, r.text)
            if r.status_code == 400:
                assert r.json()["error"]["type"] == "invalid_request_error"


def test_an_oversize_body_is_refused_with_an_error_body(scripted):
    url, gen = scripted(max_body_bytes=1000)
    r = post(url, {"messages": [{"role": "user", "content": "x" * 2000}]})
    assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"
    assert "over the limit of 1000" in r.json()["error"]["message"] and gen.seen == []


def test_models_list_and_retrieve(scripted):
    url, _ = scripted()
    listed = httpx.get(url + "/models").json()
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == ["scripted"]
    assert {"id", "object", "created", "owned_by"} <= set(listed["data"][0])
    assert httpx.get(url + "/models/scripted").json()["id"] == "scripted"
    r = httpx.get(url + "/models/gpt-9")
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"
    assert httpx.get(url + "/nowhere").status_code == 404


# ---- the built-in model --------------------------------------------------------------------
@pytest.fixture(scope="module")
def builtin(tmp_path_factory):
    ck = tiny_checkpoint(str(tmp_path_factory.mktemp("serve") / "ck"))
    with serving(ck) as srv:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1"


def test_builtin_answers_with_usage_and_honours_max_completion_tokens(builtin):
    body = post(builtin, {"messages": MSG, "n": 2, "seed": 3, "max_tokens": 60, "max_completion_tokens": 4}).json()
    u = body["usage"]
    assert all(isinstance(u[k], int) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    assert u["prompt_tokens"] > 3 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert 2 <= u["completion_tokens"] <= 8  # 4 at most per choice
    assert body["model"].startswith("builtin:")
    longer = post(builtin, {"messages": MSG * 3, "max_completion_tokens": 1}).json()["usage"]["prompt_tokens"]
    assert longer > u["prompt_tokens"]


def test_builtin_developer_is_system_and_streaming_matches_the_plain_answer(builtin):
    ask = {"seed": 5, "max_completion_tokens": 12, "n": 2}
    system = post(builtin, {"messages": [{"role": "system", "content": "Be brief."}, *MSG], **ask}).json()
    dev = post(builtin, {"messages": [{"role": "developer", "content": "Be brief."}, *MSG], **ask}).json()
    assert [c["message"]["content"] for c in dev["choices"]] == [c["message"]["content"] for c in system["choices"]]
    _, events = stream(builtin, {"messages": [{"role": "developer", "content": "Be brief."}, *MSG], **ask,
                                 "stream_options": {"include_usage": True}})
    for i, c in enumerate(dev["choices"]):
        mine = [e["choices"][0] for e in events[:-2] if e["choices"][0]["index"] == i]
        assert "".join(m["delta"].get("content", "") for m in mine) == c["message"]["content"]
        assert mine[-1]["finish_reason"] == c["finish_reason"]
    assert events[-2]["usage"] == dev["usage"]


def test_builtin_stop_cuts_before_the_first_occurrence(builtin):
    ask = {"messages": MSG, "seed": 7, "max_completion_tokens": 30}
    text = post(builtin, ask).json()["choices"][0]["message"]["content"]
    assert len(text) >= 6, text
    stop = text[len(text) // 2:len(text) // 2 + 2]
    c = post(builtin, {**ask, "stop": [stop]}).json()["choices"][0]
    assert (c["message"]["content"], c["finish_reason"]) == (text[:text.index(stop)], "stop")
    _, events = stream(builtin, {**ask, "stop": stop})
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == text[:text.index(stop)]
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


def test_a_stream_carries_text_while_the_model_is_still_sampling(tmp_path):
    """Token by token, not after the fact: the model's 6th step waits until the client has read a
    content chunk; were the text sent only once generation ended, the client could not have."""
    ck = tiny_checkpoint(str(tmp_path / "ck"))
    client_has_text, order = threading.Event(), []
    with serving(ck) as srv:
        model, calls = srv.gen.model, [0]
        forward = model.forward

        def slow_forward(*a, **kw):
            calls[0] += 1
            if calls[0] == 6:
                order.append(("model waits at step 6", client_has_text.wait(30)))
            return forward(*a, **kw)

        model.forward = slow_forward
        url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
        with httpx.stream("POST", url + "/chat/completions", timeout=60,
                          json={"messages": MSG, "seed": 1, "max_completion_tokens": 20, "stream": True}) as r:
            content = []
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
                    if delta:
                        content.append(delta)
                        client_has_text.set()
    assert order == [("model waits at step 6", True)]
    assert len(content) >= 5, content  # a delta per sampled token, not one block
