"""The loop from a pretrained base (pipelines/loop_base.py), end to end on a tiny Llama exported to
a Hugging Face directory with a ChatML template: the base is imported once, scored as is, trained
on the verified teacher data through its own template, sampled, verified and trained again
beside the compute-matched control and the ablation arms; and the multi-step problems it draws
keep exact answers and never meet a held-out twin."""
from __future__ import annotations

import json
import os
import random
import time

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


# ---- two processes = one; the teacher ceiling; every model registered ---------------------------
# a round 0 long enough that the tiny model verifies a few samples, so the loop's rounds differ from
# the control's (with nothing verified they train on the same data and are the same weights)
TINY = dict(rounds=2, levels=(1,), eval_problems=12, teacher_problems=64, sample_problems=24, k=8, max_new_tokens=40,
            sft_steps=80, round_steps=2, tokens_per_batch=512, lr=3e-3, rft_lr=1e-3, ablation="both", batch_size=16)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same seed in one process (Python API, no warehouse) and in two (the command line, with a
    warehouse: every model registered)."""
    from pipelines.loop_base import BaseLoopConfig, main, run

    root = tmp_path_factory.mktemp("loop-base")
    hf = _tiny_hf_base(str(root / "hf"))
    one_out = str(root / "one" / "seed-0")
    one = run(BaseLoopConfig(base=hf, out=one_out, workers=1, **TINY))
    wh, out = str(root / "wh"), str(root / "two" / "seed-0")
    flags = [x for k, v in TINY.items() if k != "levels"
             for x in ("--" + k.replace("_", "-"), str(v))] + ["--levels", "1"]
    assert main(["--base", hf, "--out", out, "--warehouse", wh, "--workers", "2", *flags]) == 0
    with open(os.path.join(out, "record.json")) as f:
        two = json.load(f)
    return {"one": one, "two": two, "wh": wh, "out": out, "hf": hf, "one_out": one_out}


def _numbers(rec: dict) -> dict:
    """What the run measured (not where or how long): every held-out outcome, loss and sampling count."""
    return {"base": rec["base"]["outcomes"], "round0": rec["round0"]["outcomes"],
            "arms": {k: (v["outcomes"], v["train"]["losses"]) for k, v in rec["ablation"].items()},
            **{arm: [(x["outcomes"], x["train"]["losses"]) for x in rec[arm]]
               for arm in ("loop", "control", "ceiling")},
            "sampling": [x["sampling"] for x in rec["loop"]], "round0_losses": rec["round0"]["train"]["losses"]}


def test_two_processes_give_the_numbers_of_one(two_runs):
    one, two = two_runs["one"], two_runs["two"]
    assert _numbers(one) == _numbers(two)
    assert one["loop"][0]["sampling"]["distinct_correct"] > 0  # the loop's data differ from the control's
    assert set(two["profile"]["control_process"]) >= {"training", "scoring"}


def test_the_ceiling_trains_on_the_teachers_solutions_to_the_loops_fresh_problems(two_runs):
    """Per round, from the last ceiling checkpoint, the loop's steps on the teacher data plus the
    teacher's solutions to every fresh problem drawn so far; scored and paired with the loop."""
    from model import checkpoint
    from pipelines.loop_base import report, table

    rec, out = two_runs["two"], two_runs["out"]
    filtered = rec["teacher"]["filtered_rows"]
    assert [(c["round"], c["solutions"], c["rows"]) for c in rec["ceiling"]] == [(1, 24, filtered + 24),
                                                                                (2, 48, filtered + 48)]
    for r, c in zip(rec["rounds"][1:], rec["ceiling"], strict=True):
        assert r["ceiling"] == c["accuracy"] and r["loop_vs_ceiling"] == c["paired"] and c["paired"]["n"] == 12
        assert c["train"]["steps"] == rec["loop"][r["round"] - 1]["train"]["steps"] == 2
    m2 = checkpoint.meta(os.path.join(out, "round2-ceiling"))
    assert m2["init"]["path"] == os.path.join(out, "round1-ceiling")
    assert m2["trained_on"] == ["teacher:filtered", "teacher:fresh-round1", "teacher:fresh-round2"]
    assert checkpoint.meta(os.path.join(out, "round1-ceiling"))["init"]["path"] == os.path.join(out, "round0-sft")
    assert "teacher ceiling" in report(rec) and "| teacher ceiling |" in table([rec])


def test_a_rerun_with_one_more_round_trains_only_that_round_and_measures_the_same(two_runs, tmp_path):
    """`--reuse-checkpoints`: the two-round run's directory without its round-2 checkpoints (a one-round
    run of the same seed) run again for two rounds trains round 2 only, and every number equals the
    fresh two-round run's; a run that draws other problems in that directory reuses nothing."""
    import shutil

    from pipelines.loop_base import BaseLoopConfig, run

    out = str(tmp_path / "seed-0")
    shutil.copytree(two_runs["one_out"], out)
    for name in ("round2-loop", "round2-control", "round2-ceiling"):
        shutil.rmtree(os.path.join(out, name))
    hf = two_runs["hf"]
    rec = run(BaseLoopConfig(base=hf, out=out, workers=1, reuse_checkpoints=True, **TINY))
    assert _numbers(rec) == _numbers(two_runs["one"])
    def by_checkpoint(r: dict) -> dict:
        return {"round0": r["round0"]["train"], **{f"ablation-{k}": v["train"] for k, v in r["ablation"].items()},
                **{f"round{x['round']}-{arm}": x["train"] for arm in ("loop", "control", "ceiling") for x in r[arm]}}

    trained, fresh = by_checkpoint(rec), by_checkpoint(two_runs["one"])
    assert {k for k, t in trained.items() if not t.get("reused")} == {"round2-loop", "round2-control",
                                                                      "round2-ceiling"}
    summary = ("steps", "tokens", "final_loss", "conversations", "losses")  # a reused run's summary is its own
    assert {k: [t[f] for f in summary] for k, t in trained.items()} == \
        {k: [t[f] for f in summary] for k, t in fresh.items()}
    # another learning rate for the rounds: round 0 and the ablation arms stay, every round trains again
    rec = run(BaseLoopConfig(base=hf, out=out, workers=1, reuse_checkpoints=True, **{**TINY, "rft_lr": 5e-4}))
    assert rec["round0"]["train"].get("reused") and not any(x["train"].get("reused") for x in rec["loop"])
    # other teacher problems: the earlier checkpoints were trained on other data and are all trained again
    rec = run(BaseLoopConfig(base=hf, out=out, workers=1, reuse_checkpoints=True,
                             **{**TINY, "teacher_problems": 60, "rounds": 1, "ablation": "none", "ceiling": False}))
    assert not rec["round0"]["train"].get("reused") and not rec["loop"][0]["train"].get("reused")
    assert not os.path.exists(os.path.join(out, "round2-loop")) and not os.path.exists(os.path.join(out,
                                                                                                    "ablation-unfiltered"))


def test_a_round_draws_the_same_fresh_problems_whatever_was_asked_first(tmp_path):
    """The ceiling (control process) and the loop draw a round's problems independently: the same."""
    from pipelines.loop_base import BaseLoopConfig, Problems

    cfg = BaseLoopConfig(out=str(tmp_path), eval_problems=20, teacher_problems=10, sample_problems=16)
    a, b = Problems(cfg), Problems(cfg)
    in_order = [a.fresh(1), a.fresh(2)]
    assert b.fresh_solutions(2)[0]["problem"] == in_order[1][0]["problem"]
    assert [p["problem"] for p in b.fresh(1)] == [p["problem"] for p in in_order[0]]
    assert all(p["reference_cot"] for p in b.fresh_solutions(1))


def test_every_model_is_registered_with_its_lineage(two_runs):
    """base (import) → round 0 → round 1 loop → round 2 loop → export; the control and the ceiling
    chains beside it from round 0; the ablation arms from the base; tags as the from-scratch loop's."""
    from model import checkpoint
    from pipelines.model_registry import model_versions
    from schemas.store import Store

    rec, out, store = two_runs["two"], two_runs["out"], Store(two_runs["wh"])
    vs = model_versions(store)
    by_path = {v["path"]: v for v in vs}

    def path(name: str) -> str:
        return os.path.join(out, name)

    assert len(vs) == len(rec["models"]) == 11 and all(v["registered"] and v["state"] == "ok" for v in vs)
    base = by_path[rec["base_checkpoint"]]
    assert base["kind"] == "import" and base["stage"] == "import" and base["from"] is None
    parents = {"round0-sft": rec["base_checkpoint"], "ablation-unfiltered": rec["base_checkpoint"],
               "ablation-row_matched": rec["base_checkpoint"], "round1-loop": path("round0-sft"),
               "round2-loop": path("round1-loop"), "round1-control": path("round0-sft"),
               "round2-control": path("round1-control"), "round1-ceiling": path("round0-sft"),
               "round2-ceiling": path("round1-ceiling")}
    for name, parent in parents.items():
        v = by_path[path(name)]
        assert v["from"]["path"] == parent and v["from"]["id"] == checkpoint.meta(parent)["id"], name
        assert v["run"] == "loop-base-s0" and v["id"] == checkpoint.meta(path(name))["id"]
    export = by_path[path("export")]
    assert export["kind"] == "export" and export["id"] == by_path[path("round2-loop")]["id"]
    assert ("export", path("export")) in [(d["kind"], d["path"]) for d in by_path[path("round2-loop")]["derived"]]
    assert {d["path"] for d in base["derived"]} >= {path("round0-sft"), path("ablation-unfiltered")}
    stages = {name: by_path[path(name)]["stage"] for name in parents}
    assert stages["round2-control"] == "control" and stages["round2-ceiling"] == "ceiling"
    assert (by_path[path("round2-loop")]["round"], by_path[path("round2-loop")]["stage"]) == (2, "sft")
    tags = {t: v["path"] for v in vs for t in v["tags"]}
    assert tags == {"model-base": base["path"], "model-round-0": path("round0-sft"),
                    "model-unfiltered": path("ablation-unfiltered"),
                    "model-unfiltered-row-matched": path("ablation-row_matched"),
                    "model-round-1": path("round1-loop"), "model-round-2": path("round2-loop"),
                    "control-round-1": path("round1-control"), "control-round-2": path("round2-control"),
                    "ceiling-round-1": path("round1-ceiling"), "ceiling-round-2": path("round2-ceiling"),
                    "model-export": path("export")}


def test_the_last_rounds_export_loads_in_transformers_with_the_same_logits(two_runs):
    transformers = pytest.importorskip("transformers")
    from model import checkpoint

    out = two_runs["out"]
    hf = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(out, "export")).eval()
    ours, _, _ = checkpoint.load(os.path.join(out, "round2-loop"))
    ids = torch.randint(0, hf.config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids), atol=1e-4, rtol=0)


# ---- the control process talks in loop_side's typed messages --------------------------------------
def test_control_results_out_of_turn_are_an_error_not_a_result():
    """The loop reads the control chain's results in one order; a result in another slot raises."""
    from pipelines.loop_base import BaseLoopConfig, _InProcess, collect_control
    from pipelines.loop_side import Kind, SideProtocolError

    cfg = BaseLoopConfig(rounds=1, ceiling=False)
    sent = _InProcess()
    for kind, r, payload in ((Kind.SCORE, 0, {"accuracy": 0.1}), (Kind.ABLATION, 0, {}),
                             (Kind.EVAL, 0, {"accuracy": 0.2}), (Kind.CONTROL, 1, {"accuracy": 0.3}),
                             (Kind.EVAL, 1, {"accuracy": 0.4})):
        sent.from_control(kind, r, payload)
    out = collect_control(cfg, sent.receive)
    assert (out["base"]["accuracy"], out["round0"]["accuracy"], out["loop"][0]["accuracy"]) == (0.1, 0.2, 0.4)
    swapped = _InProcess()
    swapped.from_control(Kind.EVAL, 0, {})  # round 0's score where the base's was due
    with pytest.raises(SideProtocolError, match="eval for round 0 where score for round 0 was due"):
        collect_control(cfg, swapped.receive)
    ceiling_due = _InProcess()
    for kind, r in ((Kind.SCORE, 0), (Kind.ABLATION, 0), (Kind.EVAL, 0), (Kind.CONTROL, 1), (Kind.EVAL, 1)):
        ceiling_due.from_control(kind, r, {})
    with pytest.raises(SideProtocolError, match="where ceiling for round 1 was due"):
        collect_control(BaseLoopConfig(rounds=1), ceiling_due.receive)


def test_a_failing_control_process_sends_its_traceback(tmp_path):
    from pipelines.loop_base import BaseLoopConfig, _side_main
    from pipelines.loop_side import Kind, SideProcess, SideProtocolError

    cfg = BaseLoopConfig(out=str(tmp_path), eval_problems=12, teacher_problems=24)
    side = SideProcess(_side_main, (cfg, str(tmp_path / "no-such-checkpoint")))
    try:
        with pytest.raises(SideProtocolError, match="no-such-checkpoint"):
            side.receive(Kind.SCORE, 0)
    finally:
        side.close(failed=True)
    assert not side.proc.is_alive()


def _waits_for_round_0(path, inbox, outbox):
    """A control process waiting for the loop's round-0 checkpoint; writes what ended the wait."""
    from pipelines.loop_side import Kind, SideProtocolError, from_parent
    try:
        from_parent(inbox, Kind.BASE, 0, poll=0.2)
        what = "a message"
    except SideProtocolError as e:
        what = str(e)
    with open(path, "w") as f:
        f.write(what)


def test_the_control_process_ends_when_the_loop_process_is_killed(tmp_path):
    """The loop's process dies without a word (os._exit: no clean-up, as SIGKILL): the control
    process waiting for its checkpoint stops instead of waiting as an orphan."""
    import subprocess
    import sys

    said = tmp_path / "said"
    here = os.path.dirname(os.path.abspath(__file__))
    code = ("import os, sys; sys.path[:0] = [%r, %r]\n"
            "from pipelines.loop_side import SideProcess\n"
            "from test_loop_base import _waits_for_round_0\n"
            "if __name__ == '__main__':\n"
            "    side = SideProcess(_waits_for_round_0, (%r,))\n"
            "    print(side.proc.pid, flush=True)\n"
            "    os._exit(9)\n") % (here, os.path.dirname(here), str(said))
    script = tmp_path / "loop_process.py"
    script.write_text(code)
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 9, res.stderr
    pid = int(res.stdout.split()[0])
    for _ in range(600):  # polls; no bound on how long it takes is asserted
        if said.exists() and not _alive(pid):
            break
        time.sleep(0.5)
    assert said.read_text().startswith("the loop's main process ended before sending base for round 0")
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


# ---- --train-workers: the SFT steps on Ray Train --------------------------------------------------
def test_train_worker_settings_that_cannot_run_are_refused_when_the_config_is_built(tmp_path, capsys):
    """Negative workers, an unreadable --train-resources, and reusing checkpoints of Ray Train (which
    name a loop_train version, not the data) end at the config, in one line, before a seed."""
    from pipelines.loop_base import BaseLoopConfig, main

    for kw, says in (({"train_workers": -1}, "--train-workers must be 0"),
                     ({"train_workers": 1, "train_resources": "cpus:x"}, "--train-resources: 'x'"),
                     ({"train_workers": 1, "reuse_checkpoints": True}, "--reuse-checkpoints with --train-workers")):
        with pytest.raises(ValueError, match=says):
            BaseLoopConfig(**kw)
    assert BaseLoopConfig(train_workers=2, lora_rank=4).lora_rank == 4  # LoRA on Ray Train (tests/test_train_ray.py)
    wh = tmp_path / "wh"
    for flags, says in ((["--train-workers", "-1"], "--train-workers must be 0"),
                        (["--train-workers", "2", "--reuse-checkpoints"], "cannot be matched")):
        with pytest.raises(SystemExit) as e:
            main(["--warehouse", str(wh), "--out", str(tmp_path / "out"), *flags])
        err = capsys.readouterr().err
        assert e.value.code == 2 and says in err and "Traceback" not in err, err
    assert not wh.exists() and not (tmp_path / "out").exists()


# one round, every arm but the row-matched one: round 0, the unfiltered arm, and round 1's loop,
# control and ceiling are the five trainings compared
ON_RAY = dict(TINY, rounds=1, ablation="unfiltered")
TRAINED = ("round0-sft", "ablation-unfiltered", "round1-loop", "round1-control", "round1-ceiling")


@pytest.fixture(scope="module")
def ray_runs(tmp_path_factory):
    """The same seed trained in process (one process, each step given its conversations in the
    `doc_key` order Ray Train packs them in) and on one Ray Train worker per step from the command
    line, in two processes (each with its own embedded Ray) with a warehouse: every model registered."""
    import pipelines.loop_base as lb
    from model.train_ray import doc_key

    root = tmp_path_factory.mktemp("loop-base-ray")
    hf = _tiny_hf_base(str(root / "hf"))
    in_doc_key_order = lb.train

    def train(init, convs, *args):
        return in_doc_key_order(init, sorted(convs, key=doc_key), *args)

    lb.train = train
    try:
        local = lb.run(lb.BaseLoopConfig(base=hf, out=str(root / "local" / "seed-0"), workers=1, **ON_RAY))
    finally:
        lb.train = in_doc_key_order
    wh, out = str(root / "wh"), str(root / "ray" / "seed-0")
    flags = [x for k, v in ON_RAY.items() if k != "levels"
             for x in ("--" + k.replace("_", "-"), str(v))] + ["--levels", "1"]
    assert lb.main(["--base", hf, "--out", out, "--warehouse", wh, "--workers", "2", "--train-workers", "1",
                    *flags]) == 0
    with open(os.path.join(out, "record.json")) as f:
        on_ray = json.load(f)
    return {"local": local, "ray": on_ray, "wh": wh, "out": out, "local_out": str(root / "local" / "seed-0")}


@pytest.mark.slow   # two embedded Rays and five Ray Train runs (minutes on 2 cores)
@pytest.mark.ray
def test_train_workers_1_trains_every_checkpoint_to_the_in_process_weights(ray_runs):
    """Every checkpoint of the Ray Train run equals the in-process run's within 2e-5 absolute per
    weight (weights up to ~1.1), the loss at every step within tests/test_train_ray.py's 1e-4
    relative + 1e-5. Why that bound: one worker runs the in-process batches in the same order and
    differs only in how the loss is normalised (the batch's sum over the global learned-token count
    instead of its mean), at most an ulp per gradient, which round 0's 80 AdamW steps at lr 3e-3
    could carry into the weights; on a 2-core x86 machine the weights came out bit for bit equal.
    The loop then samples and verifies the same rows, so round 1 trains on the same data."""
    from safetensors.torch import load_file

    from model import checkpoint

    local, on_ray, out = ray_runs["local"], ray_runs["ray"], ray_runs["out"]
    for name in TRAINED:
        a, b = load_file(os.path.join(out, name, "model.safetensors")), \
            load_file(os.path.join(ray_runs["local_out"], name, "model.safetensors"))
        assert a.keys() == b.keys()
        worst = max(float((a[k] - b[k]).abs().max()) for k in a)
        assert worst <= 2e-5, (name, worst)
        meta = checkpoint.meta(os.path.join(out, name))
        assert meta["trainer"] == "ray-train" and meta["train_workers"] == 1, name
        assert not os.path.exists(os.path.join(out, name, "optimizer.pt")), name
    trains = [on_ray["round0"]["train"], on_ray["ablation"]["unfiltered"]["train"], on_ray["loop"][0]["train"],
              on_ray["control"][0]["train"], on_ray["ceiling"][0]["train"]]
    mine = [local["round0"]["train"], local["ablation"]["unfiltered"]["train"], local["loop"][0]["train"],
            local["control"][0]["train"], local["ceiling"][0]["train"]]
    for name, x, y in zip(TRAINED, trains, mine, strict=True):
        assert (x["steps"], x["tokens"], x["conversations"]) == (y["steps"], y["tokens"], y["conversations"]), name
        for step, (p, q) in enumerate(zip(x["losses"], y["losses"], strict=True), 1):
            assert abs(p - q) <= 1e-4 * abs(q) + 1e-5, (name, step, p, q)
    assert on_ray["loop"][0]["sampling"] == local["loop"][0]["sampling"]
    assert local["loop"][0]["sampling"]["distinct_correct"] > 0  # round 1's loop data differ from the control's


@pytest.mark.slow
@pytest.mark.ray
def test_train_workers_registers_models_trained_on_loop_train_versions(ray_runs):
    """Each trained checkpoint's `trained_on` (and its `models` row) names the `loop_train` version
    it was trained on, whose lineage names the data (teacher:filtered, verified:round1, ...); the
    parents are the in-process run's; Ray Train's own copies of the runs are gone, and so is Ray."""
    import ray

    from model import checkpoint
    from pipelines.model_registry import model_versions
    from schemas.store import Store

    rec, out, store = ray_runs["ray"], ray_runs["out"], Store(ray_runs["wh"])
    by_path = {v["path"]: v for v in model_versions(store)}
    assert len(by_path) == len(rec["models"]) == 7 and all(v["state"] == "ok" for v in by_path.values())
    data = {"round0-sft": "teacher:filtered", "ablation-unfiltered": "teacher:unfiltered",
            "round1-loop": "teacher:filtered,verified:round1", "round1-control": "teacher:filtered",
            "round1-ceiling": "teacher:filtered,teacher:fresh-round1"}
    parents = {"round0-sft": rec["base_checkpoint"], "ablation-unfiltered": rec["base_checkpoint"],
               "round1-loop": os.path.join(out, "round0-sft"), "round1-control": os.path.join(out, "round0-sft"),
               "round1-ceiling": os.path.join(out, "round0-sft")}
    tables = set()
    for name in TRAINED:
        v, meta = by_path[os.path.join(out, name)], checkpoint.meta(os.path.join(out, name))
        (ref,) = v["trained_on"]
        assert ref.startswith("loop_train@") and meta["trained_on"] == [ref], (name, ref)
        assert store.properties(ref)["inputs"]["tables"] == [data[name]], name
        assert v["from"]["path"] == parents[name] and v["from"]["id"] == checkpoint.meta(parents[name])["id"], name
        tables.add(ref)
    assert len(tables) == len(TRAINED)
    assert rec["loop"][0]["train"]["trained_table"] == by_path[os.path.join(out, "round1-loop")]["trained_on"][0]
    assert os.listdir(os.path.join(ray_runs["wh"], "_train")) == []
    assert not ray.is_initialized()
