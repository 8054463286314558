"""The closed loop at toy size, in process: tables and checkpoints tagged by round, lineage both
ways, a twin-free held-out set, a compute-matched control, and the same numbers on a rerun."""
import json

import pytest
from click.testing import CliRunner

from model import checkpoint
from pipelines.cli import main as curate
from pipelines.reasoning_loop import run_main
from schemas.store import Store
from test_ray import TOY_LOOP


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    wh = str(tmp_path_factory.mktemp("loop") / "wh")
    assert run_main(["--warehouse", wh, "--executor", "local", "--workers", "2", *TOY_LOOP]) == 0
    return wh, json.load(open(f"{wh}/_loop/loop-s0/record.json"))


def test_toy_loop_versions_and_lineage(toy):
    wh, record = toy
    assert [r["round"] for r in record["rounds"]] == [0, 1]
    r1 = record["rounds"][1]
    assert r1["loop"]["n"] == r1["control"]["n"] == record["heldout"]["n"] > 0
    assert r1["tokens"] > 0 and abs(r1["control_tokens"] - r1["tokens"]) <= 0.25 * r1["tokens"]  # compute-matched
    assert record["heldout"]["twins_in_training"] == 0
    ab = record["ablation"]
    assert ab["unfiltered_rows"] > ab["filtered_rows"]   # the filter removed slips
    # the row-matched arm: as many rows as the filtered data, wrong ones about in their unfiltered share
    assert ab["row_matched_rows"] == ab["filtered_rows"] and ab["row_matched"]["n"] == record["heldout"]["n"]
    assert ab["unfiltered_wrong_rows"] == ab["unfiltered_rows"] - ab["filtered_rows"]
    assert 0 < ab["row_matched_wrong_rows"] < ab["unfiltered_wrong_rows"]
    assert ab["row_matched_steps"] > 0 and {"paired_row_matched", "row_matched_vs_unfiltered"} <= set(ab)
    # the teacher ceiling: the loop's steps on the teacher's solutions to the round's fresh problems
    assert r1["ceiling"]["n"] == record["heldout"]["n"] and r1["ceiling_rows"] == ab["filtered_rows"] + 60
    assert abs(r1["ceiling_tokens"] - r1["tokens"]) <= 0.25 * r1["tokens"]   # compute-matched too
    assert r1["loop_vs_ceiling"]["diff"] == pytest.approx(r1["loop"]["accuracy"] - r1["ceiling"]["accuracy"])
    assert set(record["profile"]) >= {"tables", "training", "sampling", "evaluation"}
    store = Store(wh)
    # held-out problems never trained on
    pool = set(store.read_arrow("loop_problems@pool", columns=["id"]).column("id").to_pylist())
    held = set(store.read_arrow("loop_heldout@heldout", columns=["id"]).column("id").to_pylist())
    assert not pool & held
    for table, tags in (("loop_sft", {"sft-round-0", "sft-round-1"}), ("loop_preferences", {"dpo-round-1"}),
                        ("loop_ceiling_sft", {"ceiling-sft-round-1"}),
                        ("models", {"model-round-0", "model-round-1", "model-unfiltered", "control-round-1",
                                    "model-unfiltered-row-matched", "ceiling-round-1"})):
        assert tags <= set(store.table(table).metadata.refs), table
    # lineage both ways: the checkpoint names the table versions; the models table names the checkpoint
    models = store.read_arrow("models").to_pylist()
    final = [m for m in models if m["round"] == 1 and m["stage"] == "dpo"][0]
    meta = checkpoint.meta(final["path"])
    assert meta["id"] == final["id"] and any(t.startswith("loop_preferences@") for t in meta["trained_on"])
    assert store.properties("loop_sft@sft-round-1")["inputs"]["tables"][0].startswith("loop_reasoning@")
    res = CliRunner().invoke(curate, ["--warehouse", wh, "versions", "models"])
    assert res.exit_code == 0 and "model-round-1" in res.output
    ceiling = [m for m in models if m["stage"] == "ceiling"][0]
    assert any(t.startswith("loop_ceiling_sft@") for t in checkpoint.meta(ceiling["path"])["trained_on"])


def test_the_row_matched_subsample_is_seeded_and_sized_like_the_filtered_data():
    from pipelines.loop_side import row_matched
    conv = lambda i: [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]
    unfiltered = [conv(i) for i in range(50)]
    filtered = unfiltered[:30]
    a, b, c = row_matched(filtered, unfiltered, 0), row_matched(filtered, unfiltered, 0), row_matched(filtered,
                                                                                                    unfiltered, 1)
    assert a == b != c and len(a) == 30 and all(x in unfiltered for x in a)
    assert len({str(x) for x in a}) == 30   # drawn without replacement
    assert 0 < sum(x not in filtered for x in a) < 20


@pytest.mark.slow  # minutes: `make test-slow` (run by .ci/run)
def test_same_seed_same_threads_same_numbers(toy):
    wh, first = toy
    assert run_main(["--warehouse", wh, "--executor", "local", "--run", "again", *TOY_LOOP]) == 0
    again = json.load(open(f"{wh}/_loop/again/record.json"))
    ids = lambda run: {m["stage"] + str(m["round"]): m["id"] for m in Store(wh).read_arrow("models").to_pylist()
                       if m["run"] == run}
    assert ids("loop-s0") == ids("again")                 # bit-identical weights, every checkpoint
    for a, b in zip(first["rounds"], again["rounds"], strict=True):
        assert a["loop"]["outcomes"] == b["loop"]["outcomes"] and a["control"]["outcomes"] == b["control"]["outcomes"]
        assert a["loop"].get("sampled") == b["loop"].get("sampled")


def _record(seed: int, rounds: list[tuple[list[int], list[int]]], ablation: tuple[list[int], list[int]]) -> dict:
    from synth.evaluate import paired
    out = []
    for i, (loop, ctrl) in enumerate(rounds):
        ev = lambda o: {"accuracy": sum(o) / len(o), "se": 0.01, "n": len(o), "by_level": {}, "outcomes": o}
        r = {"round": i, "loop": ev(loop), "control": ev(ctrl)}
        if i:
            r.update(gain=paired(loop, ctrl), vs_round0=paired(loop, rounds[0][0]))
        out.append(r)
    return {"seed": seed, "rounds": out, "ablation": {"paired": paired(*ablation)}}


def test_the_seed_summary_pairs_each_round_with_the_last_and_with_the_control():
    """Hand-made outcomes on 8 problems: the table's numbers are the paired differences, no more."""
    from pipelines.reasoning_loop import per_seed_lines, summarize
    r0 = [1, 0, 0, 0, 1, 0, 0, 0]
    a = _record(0, [(r0, r0), ([1, 1, 0, 0, 1, 0, 0, 0], r0), ([1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 1, 0, 0, 0])],
                (r0, [0] * 8))
    b = _record(1, [(r0, r0), ([1, 1, 1, 0, 1, 0, 0, 0], r0), ([1, 1, 1, 0, 1, 1, 0, 0], r0)], (r0, r0))
    rows = summarize([a, b])
    assert [r["round"] for r in rows] == [0, 1, 2] and "step_mean" not in rows[0]
    assert rows[1]["step_mean"] == pytest.approx((1 / 8 + 2 / 8) / 2)
    assert rows[2]["step_mean"] == pytest.approx((2 / 8 + 1 / 8) / 2)      # round 2 against round 1, per seed
    assert rows[2]["gain_mean"] == pytest.approx((2 / 8 + 3 / 8) / 2)
    assert rows[2]["vs_round0_mean"] == pytest.approx(3 / 8)
    lines = per_seed_lines([a, b]).splitlines()
    assert lines[0].startswith("seed 0: round 1: gain +0.125") and "ablation (filtered − unfiltered) +0.250" in lines[0]
    assert "ablation (filtered − unfiltered) +0.000 ± 0.000" in lines[1]


def test_early_stopping_never_ends_round_0_before_min_steps(tmp_path):
    """Dev accuracy is flat near zero early on: patience alone once stopped an ablation at step 200."""
    from model.tokenizer import ChatTokenizer
    from pipelines.reasoning_loop import Loop, parser
    from synth.problems import word_problems
    probs = word_problems(40, seed=3, levels=(1,))
    convs = [[{"role": "user", "content": p["problem"]}, {"role": "assistant", "content": p["reference_cot"]}]
             for p in probs]
    tok = ChatTokenizer.train((m["content"] for c in convs for m in c), vocab_size=300)
    args = parser().parse_args(["--warehouse", str(tmp_path / "wh"), "--threads", "1", "--quiet", "--dim", "32",
                                "--layers", "1", "--heads", "2", "--kv-heads", "1", "--ffn-dim", "64",
                                "--tokens-per-batch", "512", "--eval-every", "2", "--patience", "1",
                                "--max-new-tokens", "8", "--min-steps", "10"])
    loop = Loop(args)
    loop.dev = probs[:4]
    _, _, _, res = loop.train("r0", convs, ["t@1"], steps=14, lr=3e-3, tok=tok, early_stop=True)
    # scored every 4 × --eval-every before --min-steps (it cannot stop there), every --eval-every after
    assert res["steps"] >= 10 and [s for s, _ in res["dev_curve"]][:2] == [8, 10]


def test_a_dev_dip_does_not_end_round_0_and_the_best_dev_step_is_kept(tmp_path):
    """One dev score over 300 problems has an SE of ~2.5 points: a peak followed by dips once ended a
    seed's round 0 600 steps early. By default round 0 runs every step and keeps the peak's weights."""
    import torch

    from model import checkpoint
    from model.tokenizer import ChatTokenizer
    from pipelines.reasoning_loop import Loop, parser
    from synth.problems import word_problems
    probs = word_problems(40, seed=3, levels=(1,))
    convs = [[{"role": "user", "content": p["problem"]}, {"role": "assistant", "content": p["reference_cot"]}]
             for p in probs]
    tok = ChatTokenizer.train((m["content"] for c in convs for m in c), vocab_size=300)
    args = parser().parse_args(["--warehouse", str(tmp_path / "wh"), "--threads", "1", "--quiet", "--dim", "32",
                                "--layers", "1", "--heads", "2", "--kv-heads", "1", "--ffn-dim", "64",
                                "--tokens-per-batch", "512", "--eval-every", "2", "--max-new-tokens", "8",
                                "--min-steps", "4"])
    assert args.patience == 0
    loop = Loop(args)
    # the dev signal as a noisy run saw it: a peak at step 8, then four scores below it
    scores = iter([0.10, 0.20, 0.30, 0.25, 0.20, 0.20, 0.25, 0.28])
    at_peak = {}

    def scripted_dev(model, tok):
        acc = next(scores)
        if acc == 0.30:
            at_peak.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        return {"accuracy": acc, "by_level": {}}
    loop.evaluate_dev = scripted_dev
    model, _, path, res = loop.train("r0", convs, ["t@1"], steps=16, lr=3e-3, tok=tok, early_stop=True)
    assert res["steps"] == 16 and [s for s, _ in res["dev_curve"]] == [4, 6, 8, 10, 12, 14, 16]
    assert res["best_step"] == 8
    assert all(torch.equal(v, at_peak[k]) for k, v in model.state_dict().items())
    assert checkpoint.meta(path)["step"] == 8  # the saved checkpoint is the peak, not the last step


def _without_dpo(argv: list[str]) -> list[str]:
    out, skip = [], False
    for x in argv:
        if skip:
            skip = False
            continue
        if x in ("--dpo-steps", "--min-pairs", "--rounds"):
            skip = True
        elif x != "--dpo":
            out.append(x)
    return out


@pytest.mark.slow  # minutes: `make test-slow` (run by .ci/run)
@pytest.mark.timeout(2400)  # two toy loops with every arm: the default 900 s ran out at load average 14
def test_two_workers_give_the_same_numbers_as_one(tmp_path):
    """The ablation, the control and the held-out scoring in a second process: every checkpoint and
    outcome as in one process (two rounds: the side's messages interleave control and evaluation)."""
    wh = str(tmp_path / "wh")
    argv = ["--warehouse", wh, "--executor", "local", "--rounds", "2", *_without_dpo(TOY_LOOP)]
    assert run_main([*argv, "--run", "two", "--workers", "2"]) == 0
    assert run_main([*argv, "--run", "one", "--workers", "1"]) == 0
    one, two = (json.load(open(f"{wh}/_loop/{r}/record.json")) for r in ("one", "two"))
    ids = lambda run: {m["stage"] + str(m["round"]): m["id"] for m in Store(wh).read_arrow("models").to_pylist()
                       if m["run"] == run}
    # round 0, unfiltered, row-matched unfiltered, and loop, control, ceiling × 2
    assert ids("one") == ids("two") and len(ids("one")) == 9
    assert one["ablation"]["paired"] == two["ablation"]["paired"]
    assert one["ablation"]["paired_row_matched"] == two["ablation"]["paired_row_matched"]
    assert [r["round"] for r in two["rounds"]] == [0, 1, 2]
    for a, b in zip(one["rounds"], two["rounds"], strict=True):
        assert a["loop"]["outcomes"] == b["loop"]["outcomes"] and a["control"]["outcomes"] == b["control"]["outcomes"]
        assert a["loop"].get("sampled") == b["loop"].get("sampled")
        assert a.get("ceiling", {}).get("outcomes") == b.get("ceiling", {}).get("outcomes")
    # pass@k at round 0 and the last round only; the last round's is scored by the main process
    assert [bool(r["loop"].get("sampled")) for r in two["rounds"]] == [True, False, True]
    assert two["rounds"][-1]["loop"]["sampled"]["k"] == 2
    assert set(two["profile_side"]) >= {"training", "evaluation"} and not one["profile_side"]
    assert two["config"]["workers"] == 2 and one["config"]["workers"] == 1 and one["threads"] == two["threads"] == 1
    assert one["cpu_seconds"] > 0 and two["cpu_seconds"] > 0
    tags = set(Store(wh).table("models").metadata.refs)
    assert {"model-round-0", "model-round-1", "model-round-2", "control-round-2", "model-unfiltered"} <= tags


def _dies(*args):
    import os
    os._exit(3)


def _side_bench(tmp_path):
    """What a Worker needs of the loop's Bench (its config, held-out and dev sets), without a model."""
    import types

    from pipelines.loop_config import LoopConfig
    from pipelines.reasoning_loop import parser
    cfg = LoopConfig.from_args(parser().parse_args(["--warehouse", str(tmp_path), "--rounds", "1", "--threads", "1",
                                                    "--device", "cpu"]))
    return types.SimpleNamespace(cfg=cfg, held=[], dev=[])


@pytest.mark.parametrize("target", ["dies", "raises"])
def test_a_side_worker_that_dies_or_fails_fails_the_run_with_its_reason(tmp_path, target):
    """Killed (no message) or failing (its traceback comes back): the main process raises, never waits."""
    from pipelines.loop_side import SideProtocolError, Worker, _side_main
    target = _dies if target == "dies" else _side_main   # _side_main fails to load a missing tokenizer
    w = Worker(_side_bench(tmp_path), {}, str(tmp_path / "tokenizer.json"), target=target)
    with pytest.raises(SideProtocolError) as e:
        w.ablation()
    assert ("exit code 3" in str(e.value)) if target is _dies else ("ChatTokenizer.load" in str(e.value)), str(e.value)
    w.close(failed=True)
    assert not w.proc.is_alive()


def _sends_out_of_turn(cfg, held, dev, teacher, tok_path, inbox, outbox):
    from pipelines.loop_side import Kind, Message
    outbox.put(Message(Kind.EVAL, 0, {"accuracy": 0.5}))   # the evaluation where the ablation was due
    inbox.get()   # wait to be terminated


def test_a_side_message_out_of_turn_is_an_error_not_a_result(tmp_path):
    """Messages carry their kind and round: the ablation's slot never takes an evaluation's result."""
    from pipelines.loop_side import Kind, Message, SideProtocolError, Worker, expect
    w = Worker(_side_bench(tmp_path), {}, "", target=_sends_out_of_turn)
    try:
        with pytest.raises(SideProtocolError, match="eval for round 0 where ablation for round 0 was due"):
            w.ablation()
    finally:
        w.close(failed=True)
    assert expect(Message(Kind.CONTROL, 2, "x"), Kind.CONTROL, 2) == "x"
    with pytest.raises(SideProtocolError, match="for round 1 where control for round 2"):
        expect(Message(Kind.CONTROL, 1, "x"), Kind.CONTROL, 2)


def test_both_side_chains_implement_the_interface_the_driver_uses():
    from pipelines.loop_side import Inline, SideChain, Worker
    wanted = {n for n in vars(SideChain) if not n.startswith("_")}
    assert wanted == {"start_controls", "submit_ceiling", "submit_eval", "ablation", "loop_eval", "control", "ceiling",
                      "close"}
    for impl in (Inline, Worker):
        assert wanted <= set(vars(impl)), (impl, wanted - set(vars(impl)))


def test_the_config_has_one_typed_frozen_field_per_flag():
    """Every parser destination is a LoopConfig field and back (a new flag cannot be forgotten in
    one of them), lists become tuples, and the config cannot be changed after it is built."""
    import dataclasses

    from pipelines.loop_config import LoopConfig
    from pipelines.reasoning_loop import parser
    args = parser().parse_args(["--levels", "1", "2", "--seed", "3"])
    cfg = LoopConfig.from_args(args)
    assert {f.name for f in dataclasses.fields(LoopConfig)} == set(vars(args))
    assert cfg.levels == (1, 2) and cfg.seed == 3 and cfg.to_dict()["levels"] == [1, 2]
    assert list(cfg.to_dict()) == list(vars(args))   # record.json's config, in the parser's order
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 4
    args.extra = 1
    with pytest.raises(TypeError, match="unknown \\['extra'\\]"):
        LoopConfig.from_args(args)


def test_a_heldout_leak_raises_a_named_error_even_under_python_O(tmp_path):
    """The checks are not asserts: `python -O` keeps them."""
    import subprocess
    import sys

    from filters.twins import TwinIndex
    from pipelines.loop_integrity import HeldoutLeak, check_disjoint_ids, check_no_twins
    with pytest.raises(HeldoutLeak, match="1 held-out problems are in the training pool"):
        check_disjoint_ids(["a", "b"], ["b", "c"], "the training pool")
    check_disjoint_ids(["a"], ["c"], "the training pool")
    held = [{"problem": "Ann has 3 apples. She buys 4 more. How many apples does Ann have now?"}]
    twin = TwinIndex([("x", "Bob has 3 pears. He buys 4 more. How many pears does Bob have now?")])
    other = TwinIndex([("y", "Bob has 5 pears. He buys 4 more. How many pears does Bob have now?")])
    with pytest.raises(HeldoutLeak, match="1 held-out problems have a twin"):
        check_no_twins(held, twin)
    assert check_no_twins(held, other) == 0
    code = ("from pipelines.loop_integrity import HeldoutLeak, check_disjoint_ids\n"
            "try:\n    check_disjoint_ids(['a'], ['a'], 'x')\nexcept HeldoutLeak:\n    print('raised')")
    res = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert res.stdout.strip() == "raised", res.stderr


def test_the_loop_modules_form_no_import_cycle():
    """pipelines/loop_*.py and reasoning_loop.py import one way (lazy imports count): the command
    line imports the parts, no part imports the command line, and the parts form no cycle."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "pipelines"
    mods = {p.stem: p for p in [*root.glob("loop_*.py"), root / "reasoning_loop.py"]}
    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "pipelines":
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipelines."):
                deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("pipelines.")}
        graph[name] = deps & set(mods)
    assert {"loop_side", "loop_rounds", "loop_config"} <= set(graph)
    assert not [m for m, deps in graph.items() if "reasoning_loop" in deps], graph
    done, stack = set(), []

    def visit(m):
        assert m not in stack, f"import cycle: {' -> '.join(stack[stack.index(m):] + [m])}"
        if m in done:
            return
        stack.append(m)
        for d in sorted(graph[m]):
            visit(d)
        stack.pop()
        done.add(m)
    for m in sorted(graph):
        visit(m)


def test_a_sample_from_a_problem_solved_only_sometimes_weighs_more_in_the_mix():
    """Repeats of a problem in one round are pooled: 1 of 2 and 2 of 2 make 3 of 4, an unsure problem;
    never solved or always solved is not unsure. The mix keeps the teacher rows once and in front."""
    from pipelines.reasoning_loop import conv_key, unsure_problems, weighted_mix
    rows = [{"problem": "a", "n_correct": 1, "n_samples": 2}, {"problem": "b", "n_correct": 2, "n_samples": 2},
            {"problem": "c", "n_correct": 0, "n_samples": 2}, {"problem": "b", "n_correct": 2, "n_samples": 2},
            {"problem": "d", "n_correct": 1, "n_samples": 2}, {"problem": "d", "n_correct": 2, "n_samples": 2}]
    assert unsure_problems(rows) == {"a", "d"}
    conv = lambda p, s: [{"role": "user", "content": p}, {"role": "assistant", "content": s}]
    teacher = [conv("t", "x")]
    verified = {conv_key(c): c for c in (conv("b", "2"), conv("a", "1"), conv("b", "two"))}
    copies = {conv_key(conv("a", "1")): 3}
    mix = weighted_mix(teacher, verified, copies)
    assert mix[0] == teacher[0] and len(mix) == 1 + 3 + 1 + 1
    assert sum(c == conv("a", "1") for c in mix) == 3 and sum(c == conv("b", "2") for c in mix) == 1
    assert weighted_mix(teacher, verified, {}) == teacher + sorted(verified.values(), key=conv_key)  # the old mix


@pytest.mark.parametrize("flag, n, says", [("--unsure-copies", "0", "--unsure-copies must be at least 1"),
                                            ("--unsure-copies", "-1", "--unsure-copies must be at least 1"),
                                            ("--patience", "-1", "--patience must be 0"),
                                            ("--train-workers", "0", "--train-workers must be at least 1")])
def test_a_meaningless_count_is_refused_before_anything_runs(tmp_path, flag, n, says, capsys):
    """Zero copies would take verified samples out of training silently, and a negative patience
    would pass for 'off': usage errors instead."""
    with pytest.raises(SystemExit) as e:
        run_main(["--warehouse", str(tmp_path / "wh"), flag, n])
    assert e.value.code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "wh").exists()


def _tiny_checkpoint(tmp_path, extra_args=()):
    """A Loop over a one-layer model and a checkpoint of it after two steps (seconds)."""
    from model.tokenizer import ChatTokenizer
    from pipelines.reasoning_loop import Loop, parser
    from synth.problems import word_problems
    probs = word_problems(12, seed=3, levels=(1,))
    convs = [[{"role": "user", "content": p["problem"]}, {"role": "assistant", "content": p["reference_cot"]}]
             for p in probs]
    tok = ChatTokenizer.train((m["content"] for c in convs for m in c), vocab_size=300)
    args = parser().parse_args(["--warehouse", str(tmp_path / "wh"), "--threads", "1", "--quiet", "--dim", "32",
                                "--layers", "1", "--heads", "2", "--kv-heads", "1", "--ffn-dim", "64",
                                "--tokens-per-batch", "512", "--dpo-steps", "2", *extra_args])
    loop = Loop(args)
    _, _, path, _ = loop.train("r0", convs, ["t@1"], steps=2, lr=3e-3, tok=tok, early_stop=False)
    return loop, path, probs


@pytest.mark.parametrize("n_pairs", [4, 12])
def test_the_dpo_line_says_when_there_is_no_held_out_split_and_rounds_what_it_records(tmp_path, capsys, n_pairs):
    """Fewer than 10 pairs hold none out: the line says so instead of 'margin 0.000 → 0.000'; the
    held-out pair metrics are recorded to 4 places, not as float32 widened (0.02500000037252903)."""
    import pyarrow as pa
    loop, path, probs = _tiny_checkpoint(tmp_path)
    pairs = pa.table({"prompt": [p["problem"] for p in probs[:n_pairs]],
                      "chosen": [f"The answer is {p['answer']}." for p in probs[:n_pairs]],
                      "rejected": [f"The answer is {p['answer']}1." for p in probs[:n_pairs]]})

    class Pairs:
        def read_arrow(self, ref, columns=None):
            return pairs.select(columns)
    loop.store = Pairs()
    capsys.readouterr()
    _, _, _, res = loop.dpo(1, path, "loop_preferences@dpo-round-1", ["t@1"])
    line = next(x for x in capsys.readouterr().err.splitlines() if "DPO on" in x)
    if n_pairs < 10:
        assert f"DPO on {n_pairs} pairs: no held-out pairs" in line and "0.000 → 0.000" not in line
        assert res["heldout_before"] == res["heldout_after"] == {}
    else:
        assert "DPO on 11 pairs: held-out pair margin" in line and "(pairs held out: 1)" in line
        for k in ("heldout_before", "heldout_after"):
            floats = [v for v in res[k].values() if isinstance(v, float)]
            assert floats and all(v == round(v, 4) for v in floats), res[k]


def test_curate_show_prints_a_float32_accuracy_as_written(tmp_path):
    """The models table keeps accuracy as float32: 1/40 reads back as 0.02500000037252903 unless shown
    as the shortest decimal that reads back the same."""
    import pyarrow as pa

    from pipelines.derived import publish_derived
    from pipelines.reasoning_loop import MODELS
    wh = str(tmp_path / "wh")
    row = {"id": "m", "path": "/x", "round": 1, "stage": "sft", "step": 2, "trained_on": ["t@1"],
           "accuracy": 1 / 40, "metrics": "{}", "run": "r"}
    publish_derived(Store(wh), "models", MODELS, pa.Table.from_pylist([row], schema=MODELS), source="t@1",
                    pipeline="reasoning_loop", config={}, rows_in=1, used=1, reasons={}, unit="checkpoints")
    res = CliRunner().invoke(curate, ["--warehouse", wh, "show", "models", "-c", "accuracy", "--json"])
    assert res.exit_code == 0 and json.loads(res.output) == {"accuracy": 0.025}, res.output
    res = CliRunner().invoke(curate, ["--warehouse", wh, "show", "models", "-c", "accuracy"])
    assert "accuracy: 0.025" in res.output and "0.0250000" not in res.output


def test_train_workers_with_a_second_process_or_bad_resources_is_refused(tmp_path, capsys):
    for extra, says in ((["--workers", "2"], "--train-workers runs with --workers 1"),
                        (["--train-resources", "cpus:x"], "is not a number")):
        with pytest.raises(SystemExit) as e:
            run_main(["--warehouse", str(tmp_path / "wh"), "--train-workers", "1", *extra])
        assert e.value.code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "wh").exists()


@pytest.mark.slow   # starts an embedded Ray and Ray Train (a minute)
@pytest.mark.ray
def test_train_workers_1_gives_the_in_process_loss_curve(tmp_path):
    """`--train-workers 1`: a round's SFT through Ray Train (model/train_ray.py, as `curate train`)
    has the in-process trainer's loss at every step, within tests/test_train_ray.py's tolerance
    (1e-4 relative, + 1e-5 since train_sft logs 5 places), given the conversations in the order
    Ray Train trains them (by doc_key), the same token count, and lineage to the table it read."""
    import dataclasses

    import ray

    from model.train_ray import doc_key
    loop, path, probs = _tiny_checkpoint(tmp_path, ["--round-tokens-per-batch", "256"])
    convs = sorted(([{"role": "user", "content": p["problem"]}, {"role": "assistant", "content": p["reference_cot"]}]
                    for p in probs), key=doc_key)
    convs += convs[:3]   # a mix repeats rows (--unsure-copies): duplicates train as in process
    convs.sort(key=doc_key)
    try:
        _, _, _, local = loop.train("round1-local", convs, ["t@1"], steps=6, lr=1e-3, init=path)
        loop.cfg = dataclasses.replace(loop.cfg, train_workers=1)
        _, _, ck, on_ray = loop.train("round1-ray", convs, ["t@1"], steps=6, lr=1e-3, init=path)
    finally:
        ray.shutdown()
    a, b = [h["loss"] for h in on_ray["history"]], [h["loss"] for h in local["history"]]
    assert len(a) == len(b) == 6 and b[-1] < b[0]
    for step, (x, y) in enumerate(zip(a, b, strict=True), 1):
        assert abs(x - y) <= 1e-4 * abs(y) + 1e-5, (step, x, y)
    assert on_ray["tokens"] == local["tokens"] > 0
    meta = checkpoint.meta(ck)
    assert meta["trainer"] == "ray-train" and meta["train_workers"] == 1
    assert meta["trained_on"] == [on_ray["trained_table"]] and on_ray["trained_table"].startswith("loop_train@")
    assert Store(str(tmp_path / "wh")).read_arrow(on_ray["trained_table"]).num_rows == len(convs)


def test_the_round_0_arms_summary_over_seeds_pairs_each_arm_per_seed():
    """Hand-made outcomes on 8 problems, two seeds: each arm's mean accuracy, each paired
    difference's mean and sd over seeds, and per seed the difference in SE units."""
    from pipelines.loop_report import ablation_summary
    from synth.evaluate import paired

    def rec(seed, filt, unf, rm):
        ev = lambda o: {"accuracy": sum(o) / len(o), "n": len(o), "outcomes": o}
        return {"seed": seed, "ablation": {
            "filtered": ev(filt), "unfiltered": ev(unf), "row_matched": ev(rm), "filtered_rows": 70,
            "unfiltered_rows": 100, "row_matched_rows": 70, "paired": paired(filt, unf),
            "paired_row_matched": paired(filt, rm), "row_matched_vs_unfiltered": paired(rm, unf)}}
    f = [1, 1, 1, 1, 0, 0, 0, 0]
    s = ablation_summary([rec(0, f, [1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]),
                          rec(1, f, [1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0])])
    assert s["seeds"] == [0, 1] and s["n"] == 8
    assert s["arms"]["row-matched"]["mean"] == pytest.approx((3 / 8 + 2 / 8) / 2)
    assert s["arms"]["unfiltered"]["rows"] == 100
    d = s["diffs"]["filtered − unfiltered"]
    assert d["mean"] == pytest.approx((2 / 8 - 2 / 8) / 2) and d["sd"] == pytest.approx(0.3535534, rel=1e-6)
    assert s["diffs"]["filtered − row-matched unfiltered"]["mean"] == pytest.approx((1 / 8 + 2 / 8) / 2)
    assert len(s["diffs"]["row-matched − all unfiltered"]["z"]) == 2
    assert ablation_summary([{"seed": 0, "rounds": []}]) == {}
