"""LoRA (model/lora.py): adapters train while the base stays frozen, merge exactly into a plain
checkpoint that exports to transformers with the same logits, and a LoRA run resumes exactly."""
from __future__ import annotations

import copy
import os

import pytest
import torch

from model import checkpoint, lora
from model.config import ModelConfig, TrainConfig
from model.dpo import train_dpo
from model.lora import LoRAConfig
from model.sft import train_sft
from model.tokenizer import ChatTokenizer
from model.transformer import Transformer
from synth.problems import word_problems

CONVS = [[{"role": "user", "content": p["problem"]}, {"role": "assistant", "content": p["reference_cot"]}]
         for p in word_problems(120, seed=5)]
ALL = lora.ATTENTION + lora.MLP
DEV = torch.device("cpu")


@pytest.fixture(scope="module")
def tok():
    return ChatTokenizer.train((m["content"] for c in CONVS for m in c), vocab_size=400)


def tiny(tok, fraction: float = 1.0) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(vocab_size=tok.vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                                   ffn_dim=128, max_seq_len=256, rope_fraction=fraction))


def _random_adapters(model: Transformer) -> None:
    """B starts at zero (the adapted model is its base); draw it, or a merge would be trivially exact."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize("fraction", [1.0, 0.75])  # exported as Llama and as Phi-3 (fused qkv, gate_up)
def test_merge_is_exact_and_the_export_loads_in_transformers_with_the_same_logits(tok, tmp_path, fraction):
    from transformers import AutoModelForCausalLM

    from model.hf_format import export_checkpoint

    model = lora.apply(tiny(tok, fraction), LoRAConfig(rank=4, alpha=8, targets=ALL))
    _random_adapters(model)
    model.eval()
    ids = torch.randint(0, tok.vocab_size, (3, 70), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        adapted = model(ids)
        base = tiny(tok, fraction).eval()(ids)
        merged = lora.merge(copy.deepcopy(model)).eval()
        assert not lora.adapted(merged) and set(merged.state_dict()) == set(tiny(tok).state_dict())
        assert (adapted - base).abs().max() > 1e-2  # the adapters change the model...
        assert (merged(ids) - adapted).abs().max() <= 1e-5  # ...and the merge keeps the change
    ckpt, out = str(tmp_path / "ckpt"), str(tmp_path / "hf")
    checkpoint.save(ckpt, merged, tok, step=1, train_config={}, trained_on=["t@1"])
    export_checkpoint(ckpt, out)
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        assert (hf(ids).logits - merged(ids)).abs().max() <= 1e-5


def test_lora_sft_trains_only_the_adapters_and_saves_a_plain_merged_checkpoint(tok, tmp_path):
    base = tiny(tok)
    cfg = TrainConfig(steps=30, warmup_steps=3, tokens_per_batch=512, seq_len=128, lr=1e-2)
    model = tiny(tok)
    res = train_sft(model, tok, CONVS, cfg, str(tmp_path / "a"), ["t@1"], DEV, progress=False,
                    lora=LoRAConfig(rank=8, alpha=16))
    assert res["final_loss"] < res["history"][0]["loss"] - 0.15, res["final_loss"]  # a random base: it learns slowly
    assert not lora.adapted(model) and all(p.requires_grad for p in model.parameters())
    after, before = model.state_dict(), base.state_dict()
    for k in before:  # only the adapted attention projections moved
        assert torch.equal(after[k], before[k]) == (not k.endswith(("q.weight", "k.weight", "v.weight", "o.weight"))), k
    saved, _, meta = checkpoint.load(str(tmp_path / "a"))  # a plain checkpoint: loads with no LoRA code
    for k, v in saved.state_dict().items():
        assert torch.equal(v, after[k]), k
    assert meta["lora"]["rank"] == 8 and meta["lora"]["base"] == lora.fingerprint(base)
    # 2 layers × r·(in + out) each: q, o 64→64; k, v 64→32
    assert meta["lora"]["trainable_params"] == 2 * 8 * (2 * (64 + 64) + 2 * (64 + 32))
    assert os.path.exists(str(tmp_path / "a" / lora.ADAPTERS))


def test_a_lora_run_resumes_to_the_same_weights_and_refuses_another_base(tok, tmp_path):
    cfg = TrainConfig(steps=6, warmup_steps=2, tokens_per_batch=512, seq_len=128, lr=1e-2)
    cfg_lora = LoRAConfig(rank=4, alpha=8, dropout=0.1, targets=ALL)  # dropout: the RNG state resumes too
    full = tiny(tok)
    train_sft(full, tok, CONVS, cfg, str(tmp_path / "a"), ["t@1"], DEV, progress=False, lora=cfg_lora)
    part = tiny(tok)
    train_sft(part, tok, CONVS, cfg, str(tmp_path / "b"), ["t@1"], DEV, progress=False, lora=cfg_lora, stop_after=3)
    assert checkpoint.meta(str(tmp_path / "b"))["step"] == 3
    resumed = tiny(tok)
    res = train_sft(resumed, tok, CONVS, cfg, str(tmp_path / "b"), ["t@1"], DEV, progress=False, lora=cfg_lora)
    assert res["start_step"] == 3
    for (k, a), (_, b) in zip(sorted(full.state_dict().items()), sorted(resumed.state_dict().items()), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=k)
    other = tiny(tok)
    with torch.no_grad():
        other.embed.weight.add_(1e-3)
    with pytest.raises(ValueError, match="trained on base"):
        train_sft(other, tok, CONVS, cfg, str(tmp_path / "b"), ["t@1"], DEV, progress=False, lora=cfg_lora)
    with pytest.raises(ValueError, match="holds a LoRA run"):
        train_sft(tiny(tok), tok, CONVS, cfg, str(tmp_path / "b"), ["t@1"], DEV, progress=False)


def test_lora_dpo_moves_only_the_adapted_weights_and_returns_the_merged_model(tok, tmp_path):
    pairs = [{"prompt": c[0]["content"], "chosen": c[1]["content"], "rejected": c[1]["content"][:-3] + "99."}
             for c in CONVS[:8]]
    model, base = tiny(tok), tiny(tok)
    res = train_dpo(model, tok, pairs, pairs[:4], TrainConfig(dpo_steps=4, pairs_per_batch=4, dpo_lr=1e-2),
                    str(tmp_path / "dpo"), ["p@1"], DEV, progress=False, lora=LoRAConfig(rank=2, targets=("v", "down")))
    assert res["heldout_after"]["reward_margin"] > res["heldout_before"]["reward_margin"]
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, base.state_dict()[k])}
    assert moved == {f"blocks.{i}.{m}" for i in range(2) for m in ("attn.v.weight", "mlp.down.weight")}
    assert checkpoint.meta(str(tmp_path / "dpo"))["lora"]["targets"] == ["v", "down"]


def test_a_bad_lora_config_is_refused():
    with pytest.raises(ValueError, match="targets"):
        LoRAConfig(targets=("qkv",))
    with pytest.raises(ValueError, match="rank"):
        LoRAConfig(rank=0)
