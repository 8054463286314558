"""The loop from a pretrained base (pipelines/loop_base.py), end to end on a tiny Llama exported to
a Hugging Face directory with a ChatML template: the base is imported once, scored as is, trained
on the verified teacher data through its own template, sampled, verified and trained again
beside the compute-matched control and the ablation arms; and the multi-step problems it draws
keep exact answers and never meet a held-out twin."""
from __future__ import annotations

import os
import random

import pytest
import torch

from filters.twins import canonical
from synth.problems_multistep import multistep_problem, multistep_problems, structure_key
from synth.verify import CORRECT, RuleVerifier
from test_hf_format import CHATML, _bpe_tokenizer_dir


def _tiny_hf_base(directory: str) -> str:
    """A random 2-layer Llama with a byte-level BPE trained on the problems' own text."""
    transformers = pytest.importorskip("transformers")
    rows = multistep_problems(200, seed=5, error_rate=0.3)
    os.makedirs(directory, exist_ok=True)
    _bpe_tokenizer_dir(directory, vocab=400,
                       corpus=[r["problem"] + "\n" + r["reference_cot"] for r in rows] + ["system user assistant"] * 5)
    from tokenizers import Tokenizer
    vocab_size = Tokenizer.from_file(os.path.join(directory, "tokenizer.json")).get_vocab_size()
    cfg = transformers.LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=512, pad_token_id=0, bos_token_id=None, eos_token_id=2,
                                   tie_word_embeddings=True)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(directory)
    return directory


def test_multistep_answers_are_exact_and_wrong_teacher_solutions_are_caught():
    """Every clean worked solution reaches the stated answer; with an error rate the verifier
    rejects about that share, and the problems themselves do not depend on the error rate."""
    v = RuleVerifier(use_math_verify=False)
    clean = multistep_problems(400, seed=3)
    assert all(v(r["reference_cot"], r["answer"]).verdict == CORRECT for r in clean)
    assert all(int(r["answer"]) > 0 and r["level"] in (2, 3, 4) for r in clean)
    noisy = multistep_problems(400, seed=3, error_rate=0.3)
    assert [r["problem"] for r in noisy] == [r["problem"] for r in clean]
    wrong = sum(v(r["reference_cot"], r["answer"]).verdict != CORRECT for r in noisy)
    assert 80 <= wrong <= 160, wrong
    assert len({r["problem"].split(".")[0].split()[-1] for r in clean}) >= 5  # several scenarios


def test_the_problem_space_is_large_enough_that_twins_are_rare():
    """Fresh draws rarely share a twin key with a 300-problem held-out set (the toy level 1 had
    ~80% of fresh draws redrawn), so rounds can keep drawing new problems."""
    held = multistep_problems(300, seed=11)
    keys, structs = {canonical(p["problem"]) for p in held}, {structure_key(p) for p in held}
    rng = random.Random(12)
    draws = [multistep_problem(rng, 3) for _ in range(2000)]
    twins = sum(canonical(p["problem"]) in keys or structure_key(p) in structs for p in draws)
    assert twins < 40, twins


def test_a_retold_problem_is_caught_as_a_held_out_twin(tmp_path):
    from pipelines.loop_base import BaseLoopConfig, HeldoutLeak, Problems

    data = Problems(BaseLoopConfig(out=str(tmp_path), eval_problems=50, teacher_problems=30))
    held = data.heldout[0]
    retold = dict(held, problem=held["problem"].replace(held["problem"].split()[0], "Zed"))
    with pytest.raises(HeldoutLeak):
        data.check([retold], "test")
    data.check(data.teacher + data.fresh(1), "drawn")  # what the loop draws passes
    assert not {structure_key(p) for p in data.teacher} & {structure_key(p) for p in data.heldout}


@pytest.mark.parametrize("workers,lora_rank", [(1, 4), (2, 0)])
def test_the_base_loop_runs_end_to_end_through_the_chat_template(tmp_path, workers, lora_rank):
    """In one process with LoRA (merged into each round's checkpoint) and in two with full fine-tuning."""
    from model import checkpoint
    from pipelines.loop_base import SYSTEM, BaseLoopConfig, run

    hf = _tiny_hf_base(str(tmp_path / "hf"))
    out = str(tmp_path / "run" / "seed-0")
    cfg = BaseLoopConfig(base=hf, out=out, rounds=1, eval_problems=12, teacher_problems=24, sample_problems=8, k=2,
                         max_new_tokens=24, sft_steps=4, round_steps=2, tokens_per_batch=512, lr=3e-3, rft_lr=1e-3,
                         ablation="both", workers=workers, batch_size=16, lora_rank=lora_rank)
    rec = run(cfg)
    assert os.path.exists(os.path.join(str(tmp_path / "run" / "bases"), "hf", "checkpoint.json"))  # imported once
    assert [r["round"] for r in rec["rounds"]] == [0, 1]
    assert rec["heldout"]["n"] == 12 and len(rec["base"]["outcomes"]) == 12
    assert set(rec["ablation"]) == {"unfiltered", "row_matched"}
    assert rec["ablation"]["row_matched"]["rows"] == rec["teacher"]["filtered_rows"]
    assert rec["teacher"]["filtered_rows"] < rec["teacher"]["unfiltered_rows"] == 24
    assert rec["loop"][0]["sampling"]["samples"] == 16
    g = rec["rounds"][1]["gain"]
    assert g["n"] == 12 and rec["rounds"][1]["control"] == rec["control"][0]["accuracy"]
    # the training steps ran on the template's assistant tokens and lowered the loss
    r0 = rec["round0"]["train"]
    assert r0["steps"] == 4 and r0["losses"][-1] < r0["losses"][0]
    model, tok, meta = checkpoint.load(os.path.join(out, "round1-loop"))
    assert meta["step"] == 2 and "verified:round1" in meta["trained_on"]
    assert tok.chat_template == CHATML and tok.stop_ids == [2]
    ids, learn = tok.encode_chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "1 + 1?"},
                                  {"role": "assistant", "content": "The answer is 2."}])
    assert tok.decode([i for i, m in zip(ids, learn) if m]).strip() == "The answer is 2."
    assert not os.path.exists(os.path.join(out, "round1-loop", "optimizer.pt"))
    assert os.path.exists(os.path.join(out, "round1-loop", "adapters.safetensors")) == bool(lora_rank)
    phases = {k for part in rec["profile"].values() for k in part}
    assert {"training", "scoring", "sampling"} <= phases
    if workers == 2:  # the loop's process samples and trains; the other scores and trains the control
        assert "scoring" not in rec["profile"]["loop_process"] and "sampling" not in rec["profile"]["control_process"]
