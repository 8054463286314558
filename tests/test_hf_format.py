"""Pretrained checkpoints in and out, held against the reference implementation: every supported
family, built as a tiny random model from a transformers config, imports with logits equal to
transformers' (fp32, 1e-4) on short, long and left-padded batched prompts, generates the same
greedy tokens, and exports back to a directory transformers loads with the same logits. SmolLM2
(the real GGUF) runs the same checks in the slow suite."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from model import checkpoint
from model.config import ModelConfig
from model.hf_format import UnsupportedModel, config_from_hf, export_checkpoint, import_checkpoint
from model.hf_tokenizer import TemplateError, TemplateTokenizer
from model.sampling import generate
from model.tokenizer import ChatTokenizer
from model.transformer import Transformer

transformers = pytest.importorskip("transformers")
ATOL = 1e-4
CHATML = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\n"
          "You are helpful.<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CONVERSATION = [{"role": "system", "content": "Answer in one line."},
                {"role": "user", "content": "What is 12 + 30?"},
                {"role": "assistant", "content": "12 + 30 = 42."},
                {"role": "user", "content": "And twice that, in words?"},
                {"role": "assistant", "content": "Eighty-four."}]


def _bpe_tokenizer_dir(directory: str, vocab: int = 300, corpus: list[str] | None = None) -> None:
    """A small byte-level BPE with ChatML specials, saved as HF tokenizer files (trained on `corpus`,
    by default this file's conversation)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    if corpus is None:
        corpus = [m["content"] for m in CONVERSATION] * 20 + ["system user assistant helpful answer words"] * 20
    tok.train_from_iterator(corpus, trainer)
    tok.save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "chat_template": CHATML, "eos_token": "<|im_end|>",
                   "pad_token": "<|endoftext|>", "bos_token": None}, f)
    with open(os.path.join(directory, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": 2, "pad_token_id": 0}, f)


COMMON = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, bos_token_id=None, eos_token_id=2)


def _configs():
    from transformers import LlamaConfig, Phi3Config, Qwen2Config

    short = [1.0 + 0.15 * i for i in range(6)]
    return {
        "llama": LlamaConfig(**COMMON, tie_word_embeddings=True),
        "llama3-rope": LlamaConfig(**COMMON, tie_word_embeddings=False, rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
        "qwen2": Qwen2Config(**COMMON, tie_word_embeddings=False),
        "phi3": Phi3Config(**COMMON, partial_rotary_factor=0.75, tie_word_embeddings=False),
        "phi4-longrope": Phi3Config(**COMMON, partial_rotary_factor=0.75, tie_word_embeddings=True,
                                    original_max_position_embeddings=128, rope_parameters={
                                        "rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
                                        "short_factor": short, "long_factor": [2 * s for s in short]}),
    }


FAMILIES = list(_configs())


def _make_family(name: str, root) -> tuple:
    """(transformers model, HF dir, imported checkpoint dir) for one family, under root."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(_configs()[name], dtype=torch.float32).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.1)  # biases and norms too: a zero bias would hide a missing one
    hf_dir, ckpt = str(root / "hf"), str(root / "ckpt")
    hf.save_pretrained(hf_dir)
    _bpe_tokenizer_dir(hf_dir)
    if name == "qwen2":  # transformers 5 gives qwen2 its own pre-tokenizer: save the files it makes
        from transformers import AutoTokenizer
        AutoTokenizer.from_pretrained(hf_dir).save_pretrained(hf_dir)
    import_checkpoint(hf_dir, ckpt)
    return hf, hf_dir, ckpt


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    """(name, transformers model, HF dir, imported checkpoint dir) for one family."""
    return (request.param, *_make_family(request.param, tmp_path_factory.mktemp(request.param)))


def _left_padded(prompts: list[list[int]], pad: int):
    T = max(map(len, prompts))
    ids = torch.full((len(prompts), T), pad)
    att = torch.zeros((len(prompts), T), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, T - len(p):], att[i, T - len(p):] = torch.tensor(p), 1
    return ids, att


def test_logits_equal_transformers_short_long_and_padded(family):
    name, hf, _, ckpt = family
    ours, _, _ = checkpoint.load(ckpt)
    ours.eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        # 250 > Llama 3's original context (64): the scaled band matters. A longrope model is capped
        # at its original context (its short factors; transformers switches to the long ones past it)
        assert ours.cfg.max_seq_len == (128 if name == "phi4-longrope" else 256)
        for T in (3, 120, min(250, ours.cfg.max_seq_len)):
            ids = torch.randint(0, 300, (2, T), generator=g)
            torch.testing.assert_close(ours(ids), hf(ids).logits, atol=ATOL, rtol=0)
        prompts = [torch.randint(3, 300, (n,), generator=g).tolist() for n in (5, 17, 40)]
        ids, att = _left_padded(prompts, 0)
        pos = (att.cumsum(-1) - 1).clamp(min=0)
        T = ids.shape[1]
        tri = torch.ones(T, T, dtype=torch.bool).tril()[None]
        mask = (tri & att.bool()[:, None, :]) | torch.eye(T, dtype=torch.bool)
        mine = ours(ids, pos, mask[:, None])
        theirs = hf(ids, attention_mask=att, position_ids=pos).logits
        real = att.bool()
        torch.testing.assert_close(mine[real], theirs[real], atol=ATOL, rtol=0)


def test_greedy_generation_is_identical_token_for_token(family):
    name, hf, hf_dir, ckpt = family
    ours, tok, _ = checkpoint.load(ckpt)
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(3, 300, (n,), generator=g).tolist() for n in (4, 11, 30)]
    mine = generate(ours, prompts, max_new_tokens=20, stop_id=tok.stop_ids, pad_id=tok.pad)
    ids, att = _left_padded(prompts, 0)
    out = hf.generate(ids, attention_mask=att, max_new_tokens=20, do_sample=False, eos_token_id=tok.stop_ids,
                      pad_token_id=0)
    for i, (toks, reason) in enumerate(mine):
        theirs = out[i, ids.shape[1]:].tolist()
        if reason == "stop":
            theirs = theirs[:theirs.index(2)]
        assert toks == theirs[:len(toks)] and len(toks) == len(theirs), (name, i)


def test_export_loads_in_transformers_with_identical_logits_and_reimports_exactly(family, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name, _, _, ckpt = family
    out = str(tmp_path / "export")
    info = export_checkpoint(ckpt, out)
    assert sorted(os.listdir(out)) == ["README.md", "config.json", "generation_config.json", "model.safetensors",
                                      "tokenizer.json", "tokenizer_config.json"]
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    ours, tok, _ = checkpoint.load(ckpt)
    ids = torch.randint(0, 300, (2, 60), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, ours(ids), atol=ATOL, rtol=0)
    hf_tok = AutoTokenizer.from_pretrained(out)
    rendered = hf_tok.apply_chat_template(CONVERSATION[:4], add_generation_prompt=True, tokenize=True)
    rendered = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
    assert list(rendered) == tok.encode_chat(CONVERSATION[:4], add_generation_prompt=True)[0]
    again = str(tmp_path / "again")
    import_checkpoint(out, again)
    back, _, _ = checkpoint.load(again)
    assert back.cfg == ours.cfg, info
    for (k, a), (_, b) in zip(sorted(back.state_dict().items()), sorted(ours.state_dict().items())):
        assert torch.equal(a, b), k


def test_the_assistant_mask_is_the_templates_replies_with_their_end_of_turn(tmp_path):
    from transformers import AutoTokenizer

    _bpe_tokenizer_dir(str(tmp_path))
    tok = TemplateTokenizer.load(str(tmp_path))
    ids, learn = tok.encode_chat(CONVERSATION)
    reference = AutoTokenizer.from_pretrained(str(tmp_path)).apply_chat_template(CONVERSATION, tokenize=True)
    reference = reference["input_ids"] if hasattr(reference, "keys") else reference
    assert ids == list(reference)
    learned = tok.tok.decode([i for i, keep in zip(ids, learn) if keep], skip_special_tokens=False)
    assert learned == "12 + 30 = 42.<|im_end|>Eighty-four.<|im_end|>"
    # the default system prompt the template injects, the user turns and the role headers are never learned
    no_system = CONVERSATION[1:3]
    ids, learn = tok.encode_chat(no_system)
    assert "You are helpful" in tok.decode(ids)
    assert tok.tok.decode([i for i, k in zip(ids, learn) if k], skip_special_tokens=False) == "12 + 30 = 42.<|im_end|>"


def test_a_template_that_rewrites_earlier_turns_is_refused_not_masked_wrongly(tmp_path):
    _bpe_tokenizer_dir(str(tmp_path))
    cfg = json.load(open(tmp_path / "tokenizer_config.json"))
    # drops every assistant turn but the last (as templates that strip earlier reasoning do)
    cfg["chat_template"] = ("{% for m in messages %}{% if m['role'] != 'assistant' or loop.last %}"
                            "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
                            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    json.dump(cfg, open(tmp_path / "tokenizer_config.json", "w"))
    with pytest.raises(TemplateError, match="prefix-stable"):
        TemplateTokenizer.load(str(tmp_path)).encode_chat(CONVERSATION)


def test_a_from_scratch_checkpoint_exports_to_transformers_and_serves_as_hf_generator(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from model.generator_api import Request, Sampling
    from model.sampling import BuiltinGenerator
    from synth.generator_backends import make_generator

    tok = ChatTokenizer.train([m["content"] for m in CONVERSATION] * 30, vocab_size=300)
    for fraction in (1.0, 0.75):  # whole-head RoPE exports as Llama, partial as Phi-3
        torch.manual_seed(0)
        model = Transformer(ModelConfig(vocab_size=tok.vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                                        ffn_dim=128, max_seq_len=128, rope_fraction=fraction))
        ckpt, out = str(tmp_path / f"ckpt{fraction}"), str(tmp_path / f"hf{fraction}")
        checkpoint.save(ckpt, model, tok, step=7, train_config={}, trained_on=["loop_sft@123"])
        info = export_checkpoint(ckpt, out)
        assert info["architecture"] == ("LlamaForCausalLM" if fraction == 1.0 else "Phi3ForCausalLM")
        assert "loop_sft@123" in open(os.path.join(out, "README.md")).read()
        hf = AutoModelForCausalLM.from_pretrained(out).eval()
        ids = torch.randint(0, tok.vocab_size, (2, 50), generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            torch.testing.assert_close(hf(ids).logits, model.eval()(ids), atol=ATOL, rtol=0)
        rendered = AutoTokenizer.from_pretrained(out).apply_chat_template(CONVERSATION[1:4], add_generation_prompt=True,
                                                                          tokenize=True)
        rendered = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
        assert list(rendered) == tok.encode_chat(CONVERSATION[1:4], add_generation_prompt=True)[0]
    # `hf:<exported dir>` is a generator for the reasoning-data pipeline, and it says what the model says
    req = [Request([{"role": "user", "content": "What is 12 + 30?"}], Sampling(temperature=0.0, max_tokens=12))]
    theirs = make_generator(f"hf:{out}").generate(req)[0]
    mine = BuiltinGenerator(ckpt).generate(req)[0]
    assert theirs.error is None and theirs.text == mine.text


@pytest.mark.parametrize("patch, words", [
    ({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}, "GPT2LMHeadModel is not supported"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "'yarn' is not supported"),
    ({"mlp_bias": True}, "biased projections"),
    ({"hidden_act": "gelu"}, "'gelu' is not supported"),
])
def test_unsupported_checkpoints_are_refused_in_one_line(patch, words):
    hf = {"architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
          "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 32, **patch}
    with pytest.raises(UnsupportedModel, match=words) as e:
        config_from_hf(hf)
    assert "\n" not in str(e.value)


def test_the_cli_imports_and_exports_and_refuses_in_one_line(tmp_path):
    from pipelines.cli import main

    _, hf_dir, _ = _make_family("qwen2", tmp_path)
    r = CliRunner().invoke(main, ["model", "import", hf_dir, str(tmp_path / "c"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["family"] == "qwen2"
    r = CliRunner().invoke(main, ["model", "export", str(tmp_path / "c"), str(tmp_path / "e")])
    assert r.exit_code == 0 and "Qwen2ForCausalLM" in r.output
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    bad = tmp_path / "bad"
    bad.mkdir()
    json.dump({**cfg, "architectures": ["MambaForCausalLM"]}, open(bad / "config.json", "w"))
    r = CliRunner().invoke(main, ["model", "import", str(bad), str(tmp_path / "x")])
    assert r.exit_code == 2 and r.output.strip().count("\n") == 0 and "MambaForCausalLM is not supported" in r.output


# ---- the real model (slow: de-quantising the GGUF takes ~45 s on 2 cores) -----------------------

@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from model.hf_format import smollm2_gguf

    gguf = smollm2_gguf()
    ckpt = str(tmp_path_factory.mktemp("smol") / "ckpt")
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "model", "import", "smollm2", ckpt],
                       capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert r.returncode == 0 and "imported llama (134.5M parameters, from gguf)" in r.stdout, r.stderr[-2000:]
    d, name = os.path.dirname(gguf), os.path.basename(gguf)
    hf = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32).eval()
    return ckpt, hf, AutoTokenizer.from_pretrained(d, gguf_file=name)


@pytest.mark.slow
def test_smollm2_imports_exactly_and_round_trips_through_an_hf_export(smollm2, tmp_path):
    from transformers import AutoModelForCausalLM

    ckpt, hf, hf_tok = smollm2
    ours, tok, _ = checkpoint.load(ckpt)
    ours.eval()
    chats = [[{"role": "user", "content": "Hi"}],
             CONVERSATION[:4],
             [{"role": "user", "content": "Summarise: " + open(__file__).read()[:3000]}]]
    prompts = [tok.encode_chat(c, add_generation_prompt=True)[0] for c in chats]
    for c, p in zip(chats, prompts):
        ref = hf_tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True)
        assert list(ref["input_ids"] if hasattr(ref, "keys") else ref) == p
        with torch.no_grad():
            torch.testing.assert_close(ours(torch.tensor([p])), hf(torch.tensor([p])).logits, atol=ATOL, rtol=0)
    ids, att = _left_padded(prompts[:2], tok.pad)
    out = hf.generate(ids, attention_mask=att, max_new_tokens=24, do_sample=False, eos_token_id=tok.stop_ids,
                      pad_token_id=tok.pad)
    mine = generate(ours, prompts[:2], max_new_tokens=24, stop_id=tok.stop_ids, pad_id=tok.pad)
    for i, (toks, reason) in enumerate(mine):
        theirs = out[i, ids.shape[1]:].tolist()
        theirs = theirs[:theirs.index(tok.stop_ids[0])] if reason == "stop" else theirs
        assert toks == theirs
    out_dir = str(tmp_path / "hf")
    export_checkpoint(ckpt, out_dir)
    reloaded = AutoModelForCausalLM.from_pretrained(out_dir).eval()
    with torch.no_grad():
        p = torch.tensor([prompts[1]])
        assert torch.equal(reloaded(p).logits, ours(p))


def test_an_imported_model_fine_tunes_on_its_template_and_samples_to_its_end_of_turn(tmp_path):
    """SFT, DPO and the generator run on an imported checkpoint with its own tokenizer: the loss
    falls on the assistant tokens, the saved checkpoint keeps the tokenizer files, and sampling
    stops at the template's end-of-turn id."""
    from model.config import TrainConfig
    from model.dpo import train_dpo
    from model.generator_api import Request, Sampling
    from model.sampling import BuiltinGenerator
    from model.sft import train_sft

    _, _, ckpt = _make_family("llama", tmp_path)
    model, tok, _ = checkpoint.load(ckpt)
    with torch.no_grad():  # the parity fixture draws norm weights near 0; a trainable start has them at 1
        for n, p in model.named_parameters():
            if n.endswith(("n1.weight", "n2.weight")) or n == "norm.weight":
                p.fill_(1.0)
    convs = [CONVERSATION[1:3], CONVERSATION] * 8
    cfg = TrainConfig(lr=3e-3, steps=40, warmup_steps=3, tokens_per_batch=512, seq_len=128, log_every=100)
    out = str(tmp_path / "sft")
    res = train_sft(model, tok, convs, cfg, out, ["t@1"], torch.device("cpu"), progress=False)
    first, last = res["history"][0]["loss"], res["final_loss"]
    assert last < first / 2, (first, last)
    assert {"tokenizer.json", "tokenizer_config.json", "generation_config.json"} <= set(os.listdir(out))
    pairs = [{"prompt": "What is 12 + 30?", "chosen": "12 + 30 = 42.", "rejected": "12 + 30 = 41."}] * 4
    res = train_dpo(model, tok, pairs, [], TrainConfig(dpo_steps=3, pairs_per_batch=2), str(tmp_path / "dpo"),
                    ["p@1"], torch.device("cpu"), progress=False)
    assert len(res["history"]) == 3
    gen = BuiltinGenerator(out)
    assert gen.tok.stop_ids == [2]
    c = gen.generate([Request(CONVERSATION[1:2], Sampling(temperature=0.0, max_tokens=40))])[0]
    assert c.error is None and c.finish_reason == "stop" and c.text.strip() == "12 + 30 = 42.", c
