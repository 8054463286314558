"""The built-in trainer: packing masks, loss masking, DPO loss, resume, generation, serving."""
import json
import threading
import urllib.request

import pytest
import torch

from model import checkpoint
from model.config import ModelConfig, TrainConfig
from model.dpo import dpo_loss
from model.packing import IGNORE, pack_bfd, packed_batches
from model.sampling import generate
from model.sft import token_loss, train_sft
from model.tokenizer import ChatTokenizer
from model.transformer import Transformer, document_mask
from synth.problems import word_problems

PROBS = word_problems(300, seed=2)
CONVS = [[{"role": "user", "content": p["problem"]}, {"role": "assistant", "content": p["reference_cot"]}]
         for p in PROBS]


@pytest.fixture(scope="module")
def tok():
    return ChatTokenizer.train((m["content"] for c in CONVS for m in c), vocab_size=400)


def tiny(tok, **kw):
    torch.manual_seed(0)
    return Transformer(ModelConfig(vocab_size=tok.vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                                   ffn_dim=128, max_seq_len=256, rope_fraction=0.75, **kw))


def test_packed_documents_do_not_attend_across(tok):
    model = tiny(tok).eval()
    docs = [tok.encode_chat(c) for c in CONVS[:3]]
    batches, eff = packed_batches(docs, seq_len=200, tokens_per_batch=200, pad_id=tok.pad)
    b = batches[0]
    assert b.doc.max() >= 1, "several documents share the row"
    with torch.no_grad():
        packed = model(b.ids, b.pos, document_mask(b.doc))
        for d in range(int(b.doc.max()) + 1):
            sel = b.doc[0] == d
            alone = model(b.ids[:, sel])            # the document on its own, positions from 0
            torch.testing.assert_close(packed[:, sel], alone, atol=1e-5, rtol=1e-4)
        # without the document mask the second document does see the first: the check has teeth
        leaky = model(b.ids, b.pos)
        sel = b.doc[0] == 1
        assert not torch.allclose(leaky[:, sel], model(b.ids[:, sel]), atol=1e-4)
    m = document_mask(b.doc)[0, 0]
    i, j = torch.nonzero(m, as_tuple=True)
    assert bool(((b.doc[0, i] == b.doc[0, j]) & (j <= i) | (i == j)).all())
    assert 0.5 < eff <= 1.0


def test_every_digit_is_its_own_token_and_text_round_trips(tok, tmp_path):
    texts = ["19 - 15 = 4\nThe answer is 79/4.", "x  12345 a1b2 -7 3.14\n42", "Ünïcödé 2026, émoji 🙂 7"]
    for text in texts:
        ids = tok.encode(text)
        pieces = [tok.tok.id_to_token(i) for i in ids]
        assert all(sum(ch.isdigit() for ch in p) <= 1 for p in pieces), pieces
        assert tok.decode(ids) == text
    tok.save(str(tmp_path))
    assert ChatTokenizer.load(str(tmp_path)).encode(texts[1]) == tok.encode(texts[1])  # the split is saved too
    # a tokenizer trained with merged numbers (older checkpoints) keeps them when loaded
    merged = ChatTokenizer.train((m["content"] for c in CONVS for m in c), vocab_size=400, split_digits=False)
    (tmp_path / "merged").mkdir()
    merged.save(str(tmp_path / "merged"))
    loaded = ChatTokenizer.load(str(tmp_path / "merged"))
    assert [p for p, _ in loaded.tok.pre_tokenizer.pre_tokenize_str("has 1917")] == ["has", "Ġ1917"]
    assert [p for p, _ in tok.tok.pre_tokenizer.pre_tokenize_str("has 1917")] == ["has", "Ġ1", "9", "1", "7"]


def test_best_fit_decreasing_fills_rows():
    docs = [([0] * n, [True] * n) for n in (60, 50, 40, 30, 20, 10, 90)]
    rows = pack_bfd(docs, 100)
    sizes = sorted(sum(len(docs[i][0]) for i in r) for r in rows)
    assert sizes == [100, 100, 100] and sorted(i for r in rows for i in r) == list(range(7))


def test_loss_only_on_assistant_tokens(tok):
    msgs = [{"role": "user", "content": "Ava has 3 apples."}, {"role": "assistant", "content": "The answer is 3."}]
    ids, learn = tok.encode_chat(msgs)
    n_user = len(tok.encode("Ava has 3 apples.")) + 2          # <|user|> … <|end|>
    assert learn[:n_user] == [False] * n_user
    assert learn[n_user] is False and all(learn[n_user + 1:])  # <|assistant|> marker: no loss; reply + <|end|>: loss
    assert ids[-1] == tok.end
    batches, _ = packed_batches([(ids, learn)], seq_len=64, tokens_per_batch=64, pad_id=tok.pad)
    b = batches[0]
    targets = b.labels[b.labels != IGNORE].tolist()
    assert targets == ids[n_user + 1:]                          # exactly the reply and its <|end|>
    # changing the prompt's tokens' targets cannot change the loss: they are not counted
    model = tiny(tok)
    loss, n = token_loss(model, b)
    assert n == len(ids) - n_user - 1 and torch.isfinite(loss)


def test_dpo_loss_matches_hand_computation():
    pc, pr = torch.tensor([-10.0, -5.0]), torch.tensor([-12.0, -4.0])
    rc, rr = torch.tensor([-11.0, -5.0]), torch.tensor([-11.0, -5.0])
    loss, cr, rj = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # pair 0: 0.5*((−10+11) − (−12+11)) = 1.0 → −log σ(1) = 0.31326; pair 1: 0.5*(0 − 1) = −0.5 → 0.97408
    torch.testing.assert_close(loss, torch.tensor([0.313262, 0.974077]), atol=1e-5, rtol=0)
    torch.testing.assert_close(cr - rj, torch.tensor([1.0, -0.5]))


def test_resume_gives_the_same_next_step(tok, tmp_path):
    cfg = TrainConfig(steps=6, warmup_steps=2, tokens_per_batch=512, seq_len=128, lr=3e-3)
    dev = torch.device("cpu")
    full = train_sft(tiny(tok), tok, CONVS[:80], cfg, str(tmp_path / "a"), ["t@1"], dev, progress=False)
    part = train_sft(tiny(tok), tok, CONVS[:80], cfg, str(tmp_path / "b"), ["t@1"], dev, progress=False, stop_after=3)
    assert part["history"][-1]["step"] == 3 and checkpoint.meta(str(tmp_path / "b"))["step"] == 3
    resumed = train_sft(tiny(tok), tok, CONVS[:80], cfg, str(tmp_path / "b"), ["t@1"], dev, progress=False)
    assert resumed["start_step"] == 3
    assert [r["loss"] for r in resumed["history"]] == pytest.approx([r["loss"] for r in full["history"][3:]], abs=1e-5)
    m = checkpoint.meta(str(tmp_path / "b"))
    assert m["trained_on"] == ["t@1"] and m["step"] == 6 and len(m["id"]) == 16


def test_a_checkpoint_stands_for_a_rerun_only_when_every_input_is_the_same(tok, tmp_path):
    """`same_inputs` (the loops' `--reuse-checkpoints`): another init, setting or data name retrains."""
    cfg = TrainConfig(steps=2, warmup_steps=1, tokens_per_batch=512, seq_len=128, lr=3e-3).to_dict()
    dev = torch.device("cpu")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    checkpoint.save(a, tiny(tok), tok, step=0, train_config={}, trained_on=[])
    other = tiny(tok)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    checkpoint.save(b, other, tok, step=0, train_config={}, trained_on=[])
    assert checkpoint.meta(a)["id"] != checkpoint.meta(b)["id"]
    scratch, tuned = str(tmp_path / "scratch"), str(tmp_path / "tuned")
    train_sft(tiny(tok), tok, CONVS[:20], TrainConfig.from_dict(cfg), scratch, ["t@1"], dev, progress=False)
    model, _, _ = checkpoint.load(a)
    train_sft(model, tok, CONVS[:20], TrainConfig.from_dict(cfg), tuned, ["t@1"], dev, progress=False)
    assert checkpoint.same_inputs(scratch, cfg, ["t@1"])["step"] == 2
    assert checkpoint.same_inputs(tuned, cfg, ["t@1"], init=a)["init"]["id"] == checkpoint.meta(a)["id"]
    for what, args in (("no checkpoint", (str(tmp_path / "none"), cfg, ["t@1"], None)),
                       ("other settings", (tuned, {**cfg, "lr": 1e-3}, ["t@1"], a)),
                       ("other data", (tuned, cfg, ["t@2"], a)),
                       ("other init", (tuned, cfg, ["t@1"], b)),
                       ("an init where none was", (scratch, cfg, ["t@1"], a)),
                       ("no init where one was", (tuned, cfg, ["t@1"], None))):
        assert checkpoint.same_inputs(*args) is None, what


def test_generation_stops_at_end_token(tok):
    model = tiny(tok)
    with torch.no_grad():  # make <|end|> the most likely next token everywhere
        model.head.weight.data[tok.end] += 5.0 * model.head.weight.data.norm(dim=1).max()
    prompts = [tok.encode_chat([{"role": "user", "content": "Hi"}], add_generation_prompt=True)[0],
               tok.encode_chat([{"role": "user", "content": "A longer question here"}], add_generation_prompt=True)[0]]
    out = generate(model, prompts, max_new_tokens=20, stop_id=tok.end, pad_id=tok.pad)
    assert out == [([], "stop"), ([], "stop")]
    free = tiny(tok)
    res = generate(free, prompts, max_new_tokens=7, stop_id=tok.end, pad_id=tok.pad, temperature=1.0, seed=3)
    for ids, reason in res:
        assert tok.end not in ids and (reason == "stop" or len(ids) == 7)


def test_rows_that_stop_early_leave_the_batch_without_changing_the_others(tok):
    """Generation drops finished rows from the batch: each row still gets what it gets alone."""
    model = tiny(tok).eval()
    with torch.no_grad():  # <|end|> likely enough that rows stop at different steps
        model.head.weight.data[tok.end] += 0.6 * model.head.weight.data.norm(dim=1).max()
    prompts = [tok.encode_chat([{"role": "user", "content": p["problem"]}], add_generation_prompt=True)[0]
               for p in PROBS[:12]]
    together = generate(model, prompts, max_new_tokens=24, stop_id=tok.end, pad_id=tok.pad)
    alone = [generate(model, [p], max_new_tokens=24, stop_id=tok.end, pad_id=tok.pad)[0] for p in prompts]
    assert together == alone
    assert len({len(ids) for ids, _ in together}) > 2 and {r for _, r in together} == {"stop", "length"}


def test_kv_cache_matches_full_recompute(tok):
    model = tiny(tok).eval()
    p = tok.encode_chat([{"role": "user", "content": PROBS[0]["problem"]}], add_generation_prompt=True)[0]
    (ids, _), = generate(model, [p], max_new_tokens=8, stop_id=-1, pad_id=tok.pad)
    seq = list(p)
    with torch.no_grad():
        for _ in range(8):
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    assert ids == seq[len(p):]


def test_top_p_keeps_the_same_tokens_as_sorting_the_whole_vocabulary():
    """The short cuts (the 64, then the 1,024 largest) and the full sort agree, peaked rows and flat
    ones alike (a flat row needs more than the head to reach p: the full sort is the fallback)."""
    from model.sampling import _top_p

    def by_sort(probs, p):
        sorted_p, idx = probs.sort(-1, descending=True)
        return torch.zeros_like(probs).scatter(-1, idx, sorted_p * (sorted_p.cumsum(-1) - sorted_p < p))

    g = torch.Generator().manual_seed(0)
    for scale, vocab in ((8.0, 512), (3.0, 512), (0.1, 512), (1.5, 4096), (0.05, 4096)):  # peaked → flat;
        probs = torch.softmax(scale * torch.randn(32, vocab, generator=g), -1)         # 4096: the wider head
        for p in (0.5, 0.9, 0.95):
            got = _top_p(probs, p)
            assert torch.equal(got, by_sort(probs, p))
            kept = got.sum(-1)
            assert bool((kept >= p - 1e-6).all())  # the mass reaches p ...
            smallest = torch.where(got > 0, got, torch.inf).min(-1).values
            assert bool((kept - smallest < p).all())  # ... and without its smallest token it would not


def test_a_sampled_completion_depends_only_on_its_own_request(tok, tmp_path):
    """Each row samples from its own seed: the same request gives the same text alone, in any
    batch size, in any order, and when the cache already held its neighbours (a second Ray
    actor generated them first). One seed per batch broke all four."""
    from model.generator_api import Request, Sampling
    from model.sampling import BuiltinGenerator

    checkpoint.save(str(tmp_path / "ck"), tiny(tok), tok, step=0, train_config={}, trained_on=[])
    reqs = [Request([{"role": "user", "content": p["problem"]}],
                    Sampling(temperature=0.0 if i % 5 == 0 else 0.8, top_p=1.0 if i % 3 else 0.9,
                             max_tokens=6 + i % 7, seed=1000 * i + j))
            for i, p in enumerate(PROBS[:10]) for j in range(2)]

    def texts(batch_size, order, cache=None):
        g = BuiltinGenerator(str(tmp_path / "ck"), cache=cache, batch_size=batch_size, threads=1)
        got = g.generate([reqs[i] for i in order])
        return {i: (c.text, c.finish_reason, c.tokens) for i, c in zip(order, got)}

    ref = texts(4, range(len(reqs)))
    assert len({t for t, _, _ in ref.values()}) > len(reqs) // 2  # the samples do differ
    assert all(n <= r.sampling.max_tokens for r, (_, _, n) in zip(reqs, ref.values()))
    assert ref[0] == ref[1] and ref[10] == ref[11]  # greedy (problems 0 and 5): the seed does not matter
    order = list(range(len(reqs)))[::-1]
    assert texts(7, order) == ref
    assert {i: texts(1, [i])[i] for i in range(len(reqs))} == ref
    cache = str(tmp_path / "c.sqlite")
    texts(3, [1, 4, 9, 15], cache)                       # another actor got to these first
    assert texts(4, range(len(reqs)), cache) == ref


def test_serve_is_openai_compatible(tok, tmp_path):
    from model.serve import make_server
    from synth.generator_backends import OpenAIGenerator, Request, Sampling

    checkpoint.save(str(tmp_path / "ck"), tiny(tok), tok, step=0, train_config={}, trained_on=[])
    srv = make_server(str(tmp_path / "ck"), port=0, threads=1)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    try:
        models = json.load(urllib.request.urlopen(url + "/models"))
        assert models["data"][0]["id"].startswith("builtin:")
        gen = OpenAIGenerator(url, "builtin")
        out = gen.generate([Request([{"role": "user", "content": "Ava has 3 apples."}],
                                    Sampling(max_tokens=5, seed=s)) for s in range(2)])
        assert all(c.error is None and c.finish_reason in ("stop", "length") for c in out)
    finally:
        srv.shutdown()
