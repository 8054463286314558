"""The closed loop: teacher data → verifier-filtered SFT → the model solves fresh problems → verify
→ train on what it got right (STaR / ReST-EM), measured against a compute-matched control.

    python pipelines/reasoning_loop.py                         # one seed: 4 rounds, 2 processes (see bench/README.md)
    python pipelines/reasoning_loop.py --seeds 0 1 2 --jobs 3 --executor local --threads 1   # table + curve over seeds
    python pipelines/reasoning_loop.py --rounds 1 --no-ablation --sft-steps 200 --eval-problems 200   # a quick look
    ray job submit --address http://127.0.0.1:8275 --working-dir . -- python pipelines/reasoning_loop.py --warehouse /abs/warehouse

Round 0: `--teacher-problems` word problems with worked solutions from a teacher that is wrong on
`--teacher-error-rate` of them (`--teacher-errors`: how) → the rule verifier keeps the right ones (`sft-round-0`) → tokenizer +
SFT from scratch for `--sft-steps`, keeping the best step on a dev set (`model-round-0`). Round r ≥ 1: `--sample-problems`
fresh problems with an answer but no solution, levels weighted by the last pass rates (a
curriculum), k samples each from the current model (the reasoning-data pipeline with
`builtin:<checkpoint>`) → verify → SFT on the teacher data plus every verified sample so far,
continuing from the last round's model (`--init last`) or from round 0's (`--init base`, ReST-EM).
The control spends the
same training tokens per round on the teacher data only (with `--workers 2` it, the ablation and
the held-out scoring run in a second process, `pipelines/loop_side.py`): the loop's gain is loop − control,
paired on the same held-out problems. Held-out and dev problems are never trained on: every
training and sampled problem is checked against them by id and by a canonical form
(numbers + operations, names and items ignored: `filters/twins.py`). DPO on the round's
correct-vs-incorrect pairs is opt-in (`--dpo`; it did not raise greedy accuracy, bench/README.md).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import pyarrow as pa  # noqa: E402

from schemas.store import Store, default_warehouse  # noqa: E402
from schemas.tables import field, schema  # noqa: E402

MODELS = schema([
    field("id", pa.string(), required=True), field("path", pa.string()), field("round", pa.int32(), stats="category"),
    field("stage", pa.string(), stats="category"), field("step", pa.int32()), field("trained_on", pa.list_(pa.string())),
    field("accuracy", pa.float32(), stats="hist:0:1:20"), field("metrics", pa.string()), field("run", pa.string()),
], id_fields=["id", "stage", "run"])


def log(msg: str) -> None:
    print(f"[loop {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def conv_key(c: list[dict]) -> str:
    return json.dumps(c, sort_keys=True)


def unsure_problems(rows: list[dict]) -> set[str]:
    """Problems the sampling model solved in some of its samples but not all (pooled over repeats)."""
    tally: dict[str, list[int]] = {}
    for r in rows:
        t = tally.setdefault(r["problem"], [0, 0])
        t[0] += r["n_correct"]
        t[1] += r["n_samples"]
    return {p for p, (c, n) in tally.items() if 0 < c < n}


def weighted_mix(teacher: list[list[dict]], verified: dict[str, list[dict]], copies: dict[str, int]) -> list[list[dict]]:
    """The round's training conversations: the teacher's, then each verified sample `copies` times
    (difficulty-aware rejection tuning, as in DART-Math: a problem the model solves only sometimes
    is where training moves greedy accuracy; one it always solves adds little)."""
    out = list(teacher)
    for key in sorted(verified):
        out.extend([verified[key]] * copies.get(key, 1))
    return out


class Loop:
    def __init__(self, args: argparse.Namespace):
        import random

        import numpy as np
        import torch

        from model.runtime import setup

        self.args = args
        self.wh = os.path.abspath(args.warehouse)
        self.store = Store(self.wh)
        self.run_name = args.run or f"loop-s{args.seed}"
        self.out = os.path.join(self.wh, "_loop", self.run_name)
        os.makedirs(self.out, exist_ok=True)
        # reproducible on one machine and thread count: seeds everywhere, deterministic kernels
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        self.device, self.autocast = setup(args.threads, args.device)
        self.record: dict = {"run": self.run_name, "seed": args.seed, "config": vars(args), "rounds": [],
                             "device": str(self.device), "threads": torch.get_num_threads(),
                             "torch": torch.__version__, "profile": {}}
        self.t0 = time.perf_counter()

    def timed(self, phase: str):
        """Context manager adding the wall time of a block to record['profile'][phase]."""
        import contextlib

        @contextlib.contextmanager
        def cm():
            t = time.perf_counter()
            try:
                yield
            finally:
                prof = self.record["profile"]
                prof[phase] = round(prof.get(phase, 0.0) + time.perf_counter() - t, 2)
        return cm()

    # ---- tables ---------------------------------------------------------------------
    def _run(self, pipeline, inputs: list[str], output: str, tag: str | None, mode: str = "overwrite"):
        from schemas.engine.runner import RunOptions, run
        res = run(pipeline, RunOptions(inputs=inputs, output=output, warehouse=self.wh, executor=self.args.executor,
                                       num_cpus=self.args.num_cpus, mode=mode, tag=tag, progress=False,
                                       shard_bytes=64 << 10))
        log(f"{output}@{tag or res.snapshot_id}: {res.accounting['rows_in']} in, {res.accounting['kept']} kept, "
            f"rejects {res.accounting['rejects_by_reason']}")
        return res

    def start_ray(self) -> None:
        """Start the embedded Ray session up front, so its cost shows in the profile on its own."""
        if self.args.executor == "ray":
            from schemas.engine.raysession import init_ray
            with self.timed("ray_start"):
                init_ray(self.args.num_cpus)

    def problems(self) -> tuple[str, list[dict]]:
        """Teacher pool (decontaminated against held-out and dev: ids, 13-grams, twins) and the held-out set."""
        from filters.decontaminate import Decontaminator
        from filters.twins import TwinIndex
        from pipelines.reasoning_data import check_problem
        from schemas.engine.runner import Pipeline
        from schemas.engine.stage import StageSpec
        from schemas.tables import PROBLEMS
        import random

        from synth.problems import word_problem, word_problems, write_jsonl

        a = self.args
        d = os.path.join(self.out, "inputs")
        heldout = word_problems(a.eval_problems, seed=a.seed + 7919, levels=tuple(a.levels))
        eval_path = write_jsonl(heldout, os.path.join(d, "heldout.jsonl"))
        # a separate dev set early-stops training and picks between models: the held-out set only scores
        self.dev = word_problems(a.dev_problems, seed=a.seed + 104729, levels=tuple(a.levels))
        dev_path = write_jsonl(self.dev, os.path.join(d, "dev.jsonl"))
        self.protected = TwinIndex([(f"heldout/{i}", p["problem"]) for i, p in enumerate(heldout)] +
                                   [(f"dev/{i}", p["problem"]) for i, p in enumerate(self.dev)])
        # draw until `--teacher-problems` are twin-free: level 1 has only ~1,700 distinct problems, and
        # a 1,000-problem held-out set covers a large share of them
        rng, train, twins = random.Random(a.seed), [], 0
        while len(train) < a.teacher_problems:
            p = word_problem(rng, rng.choice(a.levels), a.teacher_error_rate,
                             None if a.teacher_errors == "mixed" else {"arithmetic": 1.0})
            if self.protected.twin_of(p["problem"]):
                twins += 1
            else:
                train.append(p)
        paths = [write_jsonl(train[i:i + 500], os.path.join(d, f"train-{i // 500:03d}.jsonl"))
                 for i in range(0, len(train), 500)]
        self._run(Pipeline("loop_heldout", PROBLEMS, PROBLEMS, [check_problem]), [eval_path], "loop_heldout", "heldout")
        decon = StageSpec(Decontaminator, {"benchmarks": [eval_path, dev_path], "n": 0, "column": "problem",
                                           "twins": True})
        self._run(Pipeline("loop_problems", PROBLEMS, PROBLEMS, [check_problem, decon]), paths, "loop_problems", "pool")
        pool = self.store.read_arrow("loop_problems@pool", columns=["id", "problem"]).to_pylist()
        held = self.store.read_arrow("loop_heldout@heldout").to_pylist()
        overlap = {p["id"] for p in pool} & {p["id"] for p in held}
        assert not overlap, f"{len(overlap)} held-out problems are in the training pool"
        self.seen = TwinIndex((p["id"], p["problem"]) for p in pool)  # problems trained on, for fresh sampling
        self.record["heldout"] = {"n": len(held), "dev_n": len(self.dev), "id_overlap": 0,
                                  "teacher_twins_redrawn": twins,
                                  "teacher_levels": {str(lv): sum(p["level"] == lv for p in train) for lv in a.levels},
                                  "table": "loop_heldout@heldout",
                                  "decontaminated_train_rows": self.store.properties("loop_problems@pool")[
                                      "accounting"]["rejects_by_reason"].get("contaminated", 0)}
        return "loop_problems@pool", held

    def teacher_tables(self) -> dict[str, str]:
        from schemas.engine.runner import Pipeline
        from schemas.tables import PROBLEMS, SFT
        from synth.teacher import teacher_sft

        refs = {}
        for name, filt, tag in (("loop_sft", True, "sft-round-0"), ("loop_sft_unfiltered", False, "sft-unfiltered")):
            p = Pipeline(f"teacher_sft{'' if filt else '_unfiltered'}", PROBLEMS, SFT, [teacher_sft.configure(filter=filt)])
            res = self._run(p, ["loop_problems@pool"], name, tag)
            self.store.tag(f"{name}@{res.snapshot_id}", tag, replace=True)
            refs[name] = f"{name}@{tag}"
        return refs

    def conversations(self, ref: str) -> list[list[dict]]:
        """A table's conversations in a fixed order (whatever order the executor wrote them in)."""
        convs = [[{"role": m["role"], "content": m["content"]} for m in msgs]
                 for msgs in self.store.read_arrow(ref, columns=["messages"]).column("messages").to_pylist()]
        return sorted(convs, key=conv_key)

    # ---- models ---------------------------------------------------------------------
    def train(self, name: str, convs: list[list[dict]], trained_on: list[str], steps: int, lr: float,
              init: str | None = None, tok=None, early_stop: bool = False):
        """SFT from `init` (or from scratch); with `early_stop` the dev set is scored every
        `--eval-every` steps and the best weights are kept. By default training runs all `steps`:
        one dev score over 300 problems has an SE of ~2.5 points, so a stop after `--patience` worse
        scores once ended seed 1's round 0 at a noisy peak 600 steps early (held-out 0.246 against
        0.336 when run to the end). With `--patience N` it stops, but never before `--min-steps`:
        dev accuracy sits near zero for the first few hundred steps."""
        import torch

        from model import checkpoint
        from model.config import ModelConfig, TrainConfig
        from model.sft import train_sft
        from model.transformer import Transformer

        a = self.args
        if init:
            model, tok, _ = checkpoint.load(init, device=str(self.device))
        else:
            torch.manual_seed(a.seed)
            model = Transformer(ModelConfig(vocab_size=tok.vocab_size, dim=a.dim, n_layers=a.layers, n_heads=a.heads,
                                            n_kv_heads=a.kv_heads, ffn_dim=a.ffn_dim, max_seq_len=a.max_seq_len,
                                            rope_fraction=a.rope_fraction)).to(self.device)
        tpb = a.round_tokens_per_batch if init else a.tokens_per_batch
        cfg = TrainConfig(lr=lr, steps=steps, warmup_steps=min(30, steps // 10 + 1), tokens_per_batch=tpb,
                          packing=a.packing, seq_len=a.seq_len, seed=a.seed)
        path = os.path.join(self.out, name)
        if a.reuse_checkpoints and init is None and os.path.exists(os.path.join(path, "checkpoint.json")):
            meta = checkpoint.meta(path)  # the same run, data and settings: the same weights (reproducible)
            if meta["train_config"] == cfg.to_dict() and meta["trained_on"] == trained_on:
                model, tok, _ = checkpoint.load(path, device=str(self.device))
                log(f"{name}: reused {path} (step {meta['step']})")
                return model, tok, path, {"steps": meta["step"], "best_step": meta["step"], "history": [],
                                          "dev_curve": meta["metrics"].get("dev_curve", []), "tokens": None,
                                          "tokens_per_s": None, "final_loss": meta["metrics"].get("loss"),
                                          "dev_by_level": meta["metrics"].get("dev_by_level"), "reused": True}
        best = {"acc": -1.0, "step": 0, "state": None, "bad": 0, "curve": [], "eval_s": 0.0, "by_level": None}

        def on_step(rec: dict) -> bool:
            every = a.eval_every * (1 if rec["step"] >= a.min_steps else 4)  # before it can stop: a coarser curve
            if not early_stop or rec["step"] % every:
                return False
            t_eval = time.perf_counter()
            with self.timed("evaluation"):
                ev = self.evaluate_dev(model, tok)
            acc = ev["accuracy"]
            best["eval_s"] += time.perf_counter() - t_eval  # counted as evaluation, not training
            model.train()
            best["curve"].append((rec["step"], round(acc, 4)))
            if acc > best["acc"]:
                best.update(acc=acc, step=rec["step"], bad=0, by_level=ev["by_level"],
                            state={k: v.detach().clone() for k, v in model.state_dict().items()})
            else:
                best["bad"] += 1
            return 0 < a.patience <= best["bad"] and rec["step"] >= a.min_steps

        t = time.perf_counter()
        with self.timed("training"):
            res = train_sft(model, tok, convs, cfg, path, trained_on, self.device, self.autocast, resume=False,
                            progress=not a.quiet, on_step=on_step)
            if early_stop and best["state"] is not None and best["step"] != res["steps"]:
                model.load_state_dict(best["state"])
                checkpoint.save(path, model, tok, step=best["step"], train_config=cfg.to_dict(), trained_on=trained_on,
                                metrics={"dev_accuracy": best["acc"], "dev_curve": best["curve"],
                                         "dev_by_level": best["by_level"]}, extra={"stage": "sft"})
        self.record["profile"]["training"] = round(self.record["profile"]["training"] - best["eval_s"], 2)
        res["best_step"] = best["step"] if early_stop and best["state"] is not None else res["steps"]
        res["dev_curve"] = best["curve"]
        res["dev_by_level"] = best["by_level"]
        res["tokens_trained"] = res["tokens"]
        log(f"{name}: {res['steps']} steps on {len(convs)} conversations (kept step {res['best_step']}), "
            f"loss {res['final_loss']:.3f}, {res['tokens_per_s'] or 0:.0f} tok/s, {time.perf_counter() - t:.0f} s"
            + (f", dev {best['curve']}" if early_stop else ""))
        return model, tok, path, res

    def evaluate(self, model, tok, sampled: bool = True) -> dict:
        """Held-out greedy pass@1 (+ SE, outcomes), pass@k / maj@k; dev greedy accuracy."""
        from synth.evaluate import evaluate
        a = self.args
        with self.timed("evaluation"):
            ev = evaluate(model, tok, self.held, max_new_tokens=a.max_new_tokens)
            ev["dev"] = self.evaluate_dev(model, tok)["accuracy"]
        if sampled and a.eval_k > 1:
            ev["sampled"] = self.evaluate_sampled(model, tok)
        return ev

    def evaluate_sampled(self, model, tok) -> dict:
        """pass@k / maj@k on the held-out set (`--eval-k` samples a problem)."""
        from synth.evaluate import evaluate_sampled
        a = self.args
        with self.timed("evaluation"):
            return evaluate_sampled(model, tok, self.held, a.eval_k, a.temperature, seed=a.seed,
                                    max_new_tokens=a.max_new_tokens)

    def evaluate_dev(self, model, tok) -> dict:
        """Greedy accuracy on the dev set (early stopping, model choice, the curriculum); the caller times it."""
        from synth.evaluate import evaluate
        return evaluate(model, tok, self.dev, max_new_tokens=self.args.max_new_tokens)

    def sampled_eval_at(self, r: int) -> bool:
        """pass@k / maj@k at round 0 and the last round only: each costs `--eval-k` greedy scorings."""
        return r in (0, self.args.rounds)

    def evaluate_checkpoint(self, path: str, r: int) -> dict:
        """The loop's round-r checkpoint as saved, scored like `evaluate`, pass@k at round 0 only:
        the last round's the main process scores meanwhile (`sampled_checkpoint`), else it would
        be the run's tail, one process busy and the other waiting."""
        from model import checkpoint
        model, tok, _ = checkpoint.load(path, device=str(self.device))
        return self.evaluate(model, tok, sampled=r == 0)

    def sampled_checkpoint(self, path: str) -> dict:
        """pass@k / maj@k of the checkpoint as saved (the last round's, on the main process)."""
        from model import checkpoint
        model, tok, _ = checkpoint.load(path, device=str(self.device))
        return self.evaluate_sampled(model, tok)

    def register(self, path: str, round_: int, stage: str, ev: dict, tags: list[str]) -> int:
        """One row per checkpoint in the `models` table, tagged by round (lineage from the store side)."""
        from model import checkpoint
        from pipelines.derived import publish_derived

        m = checkpoint.meta(path)
        metrics = {k: v for k, v in ev.items() if k != "outcomes"}
        row = {"id": m["id"], "path": path, "round": round_, "stage": stage, "step": m["step"],
               "trained_on": m["trained_on"], "accuracy": ev["accuracy"], "metrics": json.dumps(metrics),
               "run": self.run_name}
        table = pa.Table.from_pylist([row], schema=MODELS)
        snap = publish_derived(self.store, "models", MODELS, table, source=",".join(m["trained_on"]),
                               pipeline="reasoning_loop",
                               config={"checkpoint": m["id"], "stage": stage, "run": self.run_name},
                               rows_in=1, used=1, reasons={}, unit="checkpoints", mode="append")
        for t in tags:
            self.store.tag(f"models@{snap}", t, replace=True)
        return snap

    # ---- rounds ---------------------------------------------------------------------
    def fresh_problems(self, round_: int, pass_rates: dict[str, float]) -> list[dict]:
        """`--sample-problems` new answer-only problems: never twins of held-out/dev, new to training
        where the level's space allows; levels weighted by p(1-p) of the last pass rates (a
        curriculum: most weight where the model is right about half the time)."""
        import random

        from synth.problems import word_problem

        a = self.args
        rng = random.Random(a.seed * 1_000_003 + round_)
        levels = list(a.levels)
        w = [pass_rates.get(str(lv), 0.5) * (1 - pass_rates.get(str(lv), 0.5)) + a.curriculum_floor for lv in levels]
        out, skipped = [], {"heldout_or_dev_twin": 0, "seen": 0, "repeats_kept": 0}
        while len(out) < a.sample_problems:
            lv = rng.choices(levels, weights=w)[0]
            for attempt in range(20):
                p = word_problem(rng, lv)
                if self.protected.twin_of(p["problem"]):
                    skipped["heldout_or_dev_twin"] += 1
                    continue
                seen = self.seen.twin_of(p["problem"]) is not None
                if seen and attempt < 19:
                    skipped["seen"] += 1
                    continue
                skipped["repeats_kept"] += seen  # the level's space is used up: a problem met before, not a held-out one
                break
            else:
                continue
            self.seen.add(f"round{round_}/{len(out)}", p["problem"])
            out.append({k: p[k] for k in ("problem", "answer", "level", "source")})
        self.record.setdefault("fresh", {})[str(round_)] = {"weights": dict(zip(map(str, levels), w)), **skipped}
        return out

    def sample(self, round_: int, ckpt: str, problems: list[dict]) -> dict:
        """The reasoning-data pipeline with the current model as generator."""
        from pipelines import reasoning_data as rd
        from schemas.engine.runner import run
        from pipelines.script import options
        from synth.problems import write_jsonl

        a = self.args
        paths = [write_jsonl(problems[i:i + 250], os.path.join(self.out, "inputs", f"round{round_}-{i // 250:03d}.jsonl"))
                 for i in range(0, len(problems), 250)]
        argv = ["--input", *paths, "--warehouse", self.wh, "--output", "loop_reasoning", "--generator", f"builtin:{ckpt}",
                "--k", str(a.k), "--max-attempts", "1", "--temperature", str(a.temperature),
                "--max-tokens", str(a.max_new_tokens), "--system", "", "--samples-table", "loop_cot_samples",
                "--sft-table", "loop_sft", "--pairs-table", "loop_preferences", "--round", str(round_),
                "--seed", str(a.seed * 1000 + round_), "--batch-size", "128", "--executor", a.executor,
                "--tag", f"round-{round_}", "--quiet", "--threads", str(a.threads or 1),
                "--cache", os.path.join(self.out, "generations.sqlite")]
        if a.num_cpus:
            argv += ["--num-cpus", str(a.num_cpus)]
        args = rd.parser().parse_args(argv)
        pipeline, inputs = rd.build(args)
        with self.timed("sampling"):
            res = run(pipeline, options(args, inputs))
        ref = f"loop_reasoning@{res.snapshot_id}"
        snaps, counts = rd.publish_tables(self.store, ref, args)
        self.store.tag(f"loop_sft@{snaps['loop_sft']}", f"sft-round-{round_}", replace=True)
        self.store.tag(f"loop_preferences@{snaps['loop_preferences']}", f"dpo-round-{round_}", replace=True)
        per = self.store.read_arrow(ref, columns=["problem", "level", "n_samples", "n_correct"]).to_pylist()
        by_level: dict[str, dict] = {}
        for r in per:
            d = by_level.setdefault(str(r["level"]), {"problems": 0, "solved": 0, "samples": 0, "correct": 0})
            d["problems"] += 1
            d["solved"] += r["n_correct"] > 0
            d["samples"] += r["n_samples"]
            d["correct"] += r["n_correct"]
        for d in by_level.values():
            d["pass_at_k"] = round(d["solved"] / d["problems"], 4)
            d["sample_accuracy"] = round(d["correct"] / max(1, d["samples"]), 4)
        log(f"round {round_} sampling: {counts['samples']['samples']} samples, "
            f"{counts['samples'].get('verdict:correct', 0)} correct, {counts['sft']['rows']} SFT rows, "
            f"{counts['pairs']['pairs']} pairs; pass@{a.k} by level "
            f"{ {k: v['pass_at_k'] for k, v in sorted(by_level.items())} }")
        return {"sft": f"loop_sft@sft-round-{round_}", "pairs": f"loop_preferences@dpo-round-{round_}",
                "counts": counts, "by_level": by_level, "problems": ref, "per_problem": per}

    def dpo(self, round_: int, init: str, pairs_ref: str, trained_on: list[str]):
        from model import checkpoint
        from model.config import TrainConfig
        from model.dpo import train_dpo

        a = self.args
        pairs = self.store.read_arrow(pairs_ref, columns=["prompt", "chosen", "rejected"]).to_pylist()
        pairs.sort(key=lambda p: (p["prompt"], p["chosen"], p["rejected"]))
        n_held = max(1, len(pairs) // 10) if len(pairs) >= 10 else 0
        model, tok, _ = checkpoint.load(init, device=str(self.device))
        cfg = TrainConfig(beta=a.beta, dpo_lr=a.dpo_lr, dpo_steps=a.dpo_steps, pairs_per_batch=16, seed=a.seed,
                          rpo_alpha=a.rpo_alpha)
        path = os.path.join(self.out, f"round{round_}-dpo")
        with self.timed("dpo"):
            res = train_dpo(model, tok, pairs[n_held:], pairs[:n_held], cfg, path, trained_on + [pairs_ref],
                            self.device, progress=not a.quiet)
        for k in ("heldout_before", "heldout_after"):  # recorded as read: 0.025, not float32's 0.02500000037252903
            res[k] = {m: round(v, 4) if isinstance(v, float) else v for m, v in res[k].items()}
        before, after = res["heldout_before"], res["heldout_after"]
        log(f"round {round_} DPO on {len(pairs) - n_held} pairs: " + (
            f"held-out pair margin {before['reward_margin']:.3f} → {after['reward_margin']:.3f}, pair accuracy "
            f"{before['accuracy']:.2f} → {after['accuracy']:.2f} (pairs held out: {n_held})" if n_held else
            "no held-out pairs to score (one in ten is held out from 10 pairs on)"))
        return model, tok, path, res

    def ablation(self, unfiltered: list[list[dict]], teacher: dict[str, str], tok) -> dict:
        """Round 0 again on the unfiltered teacher data (wrong solutions included), the same way."""
        a = self.args
        m_u, _, ck_u, res_u = self.train("ablation-unfiltered-sft", unfiltered, [teacher["loop_sft_unfiltered"]],
                                         a.sft_steps, a.lr, tok=tok, early_stop=True)
        ev_u = self.evaluate(m_u, tok, sampled=False)
        self.register(ck_u, 0, "sft-unfiltered", ev_u, ["model-unfiltered"])
        return {"ev": ev_u, "steps": res_u["best_step"], "rows": len(unfiltered), "history": res_u["history"]}

    def round_steps(self) -> int:
        """Training steps of every round ≥ 1, the loop's and the control's alike (compute-matched)."""
        return max(1, self.args.round_tokens // self.args.round_tokens_per_batch)

    def control_round(self, r: int, filtered: list[list[dict]], teacher: dict[str, str], init: str) -> dict:
        """The control's round r: the loop's training tokens, spent on the teacher data only."""
        m_c, tok, ck, res_c = self.train(f"round{r}-control", filtered, [teacher["loop_sft"]], self.round_steps(),
                                         self.args.rft_lr, init=init)
        ev_c = self.evaluate(m_c, tok, sampled=False)  # pass@k / maj@k for the loop only: a third less evaluation
        self.register(ck, r, "control", ev_c, [f"control-round-{r}"])
        return {"ev": ev_c, "tokens": res_c["tokens"], "ck": ck}

    def run(self) -> dict:
        from model.tokenizer import ChatTokenizer
        from pipelines import loop_side
        a = self.args
        self.start_ray()
        with self.timed("tables"):
            _, self.held = self.problems()
            teacher = self.teacher_tables()
        filtered, unfiltered = self.conversations(teacher["loop_sft"]), self.conversations(teacher["loop_sft_unfiltered"])
        tok = ChatTokenizer.train((m["content"] for c in unfiltered for m in c), vocab_size=a.vocab_size,
                                  split_digits=not a.bpe_digits)
        if (a.workers or 1) > 1:  # ablation and control in a second process, beside round 0 and the loop's rounds
            side = loop_side.Worker(self, teacher, tok.save(self.out))
        else:
            side = loop_side.Inline(self, teacher, tok, filtered, unfiltered)
        try:
            rounds, final_ck, histories = self._rounds(side, teacher, filtered, tok)
        except BaseException:
            side.close(failed=True)
            raise
        self.record["profile_side"] = side.close()
        return self._finish(rounds, final_ck, histories)

    def _rounds(self, side, teacher: dict[str, str], filtered: list[list[dict]], tok) -> tuple[list, str, dict]:
        """Round 0, then each round's sampling and training; the held-out scores, the control and the
        ablation come from the side chain (with two workers, computed there meanwhile), read at the end."""
        from synth.evaluate import paired

        a = self.args
        histories = {}
        # round 0: the teacher's verifier-filtered data, from scratch, to convergence on dev
        model, tok, base, res0 = self.train("round0-sft", filtered, [teacher["loop_sft"]], a.sft_steps, a.lr, tok=tok,
                                            early_stop=True)
        histories["round 0 SFT (filtered)"] = res0["history"]
        side.start_controls(base)
        loop_ck, trained, chain = base, [teacher["loop_sft"]], []
        verified: dict[str, list[dict]] = {}
        copies: dict[str, int] = {}  # a verified sample's weight in the mix, set in the round it was first drawn
        sampled: list[str] = []  # the problem tables each round sampled
        # the curriculum follows the dev set: held-out problems only score
        pass_rates = res0["dev_by_level"]
        if not pass_rates:  # a reused checkpoint, or round 0 too short to be scored on dev
            with self.timed("evaluation"):
                pass_rates = self.evaluate_dev(model, tok)["by_level"]
        steps = self.round_steps()
        for r in range(1, a.rounds + 1):
            problems = self.fresh_problems(r, pass_rates)
            refs = self.sample(r, loop_ck, problems)
            sampled.append(refs["problems"])
            pass_rates = {k: v["sample_accuracy"] for k, v in refs["by_level"].items()}
            unsure = unsure_problems(refs["per_problem"])
            n_unsure = 0
            for c in self.conversations(refs["sft"]):
                key = conv_key(c)
                if key not in verified:
                    verified[key] = c
                    user = next(m["content"] for m in c if m["role"] == "user")
                    copies[key] = a.unsure_copies if user in unsure else 1
                    n_unsure += user in unsure
            trained = trained + [refs["sft"]]
            mix = weighted_mix(filtered, verified, copies)
            init_loop = base if a.init == "base" else loop_ck
            model, tok, loop_ck, res = self.train(f"round{r}-sft", mix, trained, steps, a.rft_lr, init=init_loop)
            histories[f"round {r} loop"] = res["history"]
            rec = {"round": r, "sft_rows": refs["counts"]["sft"]["rows"], "verified_rows": len(verified),
                   "unsure_rows": n_unsure, "unsure_copies": a.unsure_copies, "mix_rows": len(mix), "steps": steps,
                   "tokens": res["tokens"], "sampling": refs["by_level"],
                   "pairs": refs["counts"]["pairs"]["pairs"], "init": a.init, "ck": loop_ck}
            if a.dpo:  # the dev set picks SFT or DPO to sample the next round: scored here, not on the side
                ev = self.evaluate(model, tok, sampled=self.sampled_eval_at(r))
                rec["ev"] = ev
                if refs["counts"]["pairs"]["pairs"] >= a.min_pairs:
                    m_d, _, ck_d, dres = self.dpo(r, loop_ck, refs["pairs"], trained)
                    ev_d = self.evaluate(m_d, tok, sampled=False)
                    rec.update(dpo=ev_d, dpo_ck=ck_d, dpo_pairs=dres["pairs"], dpo_vs_sft=paired(ev_d["outcomes"],
                                                                                              ev["outcomes"]),
                               dpo_heldout_pairs={k: dres[k] for k in ("heldout_before", "heldout_after")})
                    if ev_d["dev"] > ev["dev"]:
                        loop_ck, trained = ck_d, trained + [refs["pairs"]]
            else:
                side.submit_eval(r, loop_ck)
            rec["continues_from"] = "dpo" if loop_ck.endswith("-dpo") else "sft"
            chain.append(rec)
            log(f"round {r}: trained {steps} steps on {len(mix)} conversations ({len(verified)} verified samples, "
                f"{n_unsure} new from problems solved only sometimes)")
        final_sampled = self.sampled_checkpoint(loop_ck) if a.rounds and not a.dpo and a.eval_k > 1 else None
        # the held-out set against every problem in the tables trained on or sampled: no twin may be left
        from filters.twins import TwinIndex
        used = TwinIndex((str(i), t) for ref in ["loop_problems@pool", *sampled]
                         for i, t in enumerate(self.store.read_arrow(ref, columns=["problem"]).column("problem")
                                               .to_pylist()))
        self.record["heldout"]["twins_in_training"] = sum(used.twin_of(p["problem"]) is not None for p in self.held)
        assert self.record["heldout"]["twins_in_training"] == 0, self.record["heldout"]
        return self._collect(side, chain, base, res0, filtered, histories, final_sampled), loop_ck, histories

    def _collect(self, side, chain: list[dict], base: str, res0: dict, filtered: list, histories: dict,
                 final_sampled: dict | None) -> list[dict]:
        """Read the side chain's results in the order it sends them; register and tag the loop's models."""
        from synth.evaluate import paired

        a = self.args
        if not a.no_ablation:
            ab = side.ablation()
            histories["round 0 SFT (unfiltered)"] = ab["history"]
        ev0 = side.loop_eval(0)
        self.register(base, 0, "sft", ev0, ["model-round-0"])
        log(f"round 0: held-out {ev0['accuracy']:.3f} ± {ev0['se']:.3f} {ev0['by_level']}, dev {ev0['dev']:.3f}")
        rounds = [{"round": 0, "sft_rows": len(filtered), "loop": ev0, "control": ev0, "steps": res0["best_step"],
                   "dev_curve": res0["dev_curve"], "dev_by_level": res0["dev_by_level"],
                   "tokens_per_s": res0["tokens_per_s"]}]
        if not a.no_ablation:
            ev_u = ab["ev"]
            self.record["ablation"] = {"filtered": ev0, "unfiltered": ev_u, "filtered_rows": len(filtered),
                                       "unfiltered_rows": ab["rows"], "filtered_steps": res0["best_step"],
                                       "unfiltered_steps": ab["steps"], "tokens_per_batch": a.tokens_per_batch,
                                       "paired": paired(ev0["outcomes"], ev_u["outcomes"])}
            log(f"ablation: filtered {ev0['accuracy']:.3f} vs unfiltered {ev_u['accuracy']:.3f} "
                f"(paired diff {self.record['ablation']['paired']['diff']:+.3f} ± {self.record['ablation']['paired']['se']:.3f})")
        for rec in chain:
            r = rec["round"]
            ctrl = side.control(r)
            ev = rec.pop("ev", None) or side.loop_eval(r)
            if r == a.rounds and final_sampled:
                ev["sampled"] = final_sampled
            snap = self.register(rec.pop("ck"), r, "sft", ev, [f"model-round-{r}-sft"])
            if rec.get("dpo"):
                snap_d = self.register(rec.pop("dpo_ck"), r, "dpo", rec["dpo"], [f"model-round-{r}-dpo"])
                snap = snap_d if rec["continues_from"] == "dpo" else snap
            self.store.tag(f"models@{snap}", f"model-round-{r}", replace=True)
            ev_c = ctrl["ev"]
            rec.update(loop=ev, control=ev_c, control_tokens=ctrl["tokens"], gain=paired(ev["outcomes"], ev_c["outcomes"]),
                       vs_round0=paired(ev["outcomes"], ev0["outcomes"]))
            rounds.append(rec)
            log(f"round {r}: loop {ev['accuracy']:.3f} ± {ev['se']:.3f}, control {ev_c['accuracy']:.3f} "
                f"± {ev_c['se']:.3f}, gain {rec['gain']['diff']:+.3f} ± {rec['gain']['se']:.3f} (paired)"
                + (f", DPO {rec['dpo']['accuracy']:.3f}" if rec.get("dpo") else ""))
        return rounds

    def _finish(self, rounds: list, final_ck: str, histories: dict) -> dict:
        import resource

        from model.sft import plot_loss
        self.record["rounds"] = rounds
        self.record["final_checkpoint"] = final_ck
        self.record["seconds"] = round(time.perf_counter() - self.t0, 1)
        # CPU of this process and the side worker (joined by now): what the run costs, whatever the wall time
        cpu = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        self.record["cpu_seconds"] = round(sum(u.ru_utime + u.ru_stime for u in cpu), 1)
        self.record["loss_png"] = plot_loss(histories, os.path.join(self.out, "loss.png"))
        self.record["accuracy_png"] = plot_rounds([self.record], os.path.join(self.out, "accuracy.png"))
        with open(os.path.join(self.out, "record.json"), "w") as f:
            json.dump(self.record, f, indent=1, default=str)
        return self.record


# ---- reporting ------------------------------------------------------------------------
def summarize(records: list[dict]) -> list[dict]:
    """Per round over seeds: loop and control mean ± sd, the gain (loop − control) mean ± sd and
    its mean paired standard error; the loop's step over its last round (paired, same problems);
    pass@k and maj@k of the loop."""
    import statistics as st

    from synth.evaluate import paired

    sd = lambda xs: st.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
    out = []
    for i in range(min(len(r["rounds"]) for r in records)):
        rs = [r["rounds"][i] for r in records]
        loop, ctrl = [x["loop"]["accuracy"] for x in rs], [x["control"]["accuracy"] for x in rs]
        gain = [x["gain"]["diff"] if "gain" in x else 0.0 for x in rs]
        row = {"round": i, "seeds": len(rs), "loop_mean": st.mean(loop), "loop_sd": sd(loop), "control_mean": st.mean(ctrl),
               "control_sd": sd(ctrl), "gain_mean": st.mean(gain), "gain_sd": sd(gain),
               "gain_se": st.mean([x["gain"]["se"] for x in rs]) if i else 0.0,
               "heldout_se": st.mean([x["loop"]["se"] for x in rs]), "n": rs[0]["loop"]["n"],
               "vs_round0_mean": st.mean([x["vs_round0"]["diff"] if i else 0.0 for x in rs])}
        if i:  # this round's loop against the last round's, paired on the same problems
            steps = [paired(r["rounds"][i]["loop"]["outcomes"], r["rounds"][i - 1]["loop"]["outcomes"]) for r in records]
            row.update(step_mean=st.mean(x["diff"] for x in steps), step_sd=sd([x["diff"] for x in steps]),
                       step_se=st.mean(x["se"] for x in steps))
        smp = [x["loop"].get("sampled") for x in rs]
        if all(smp):
            row.update(k=smp[0]["k"], pass_at_k=st.mean(s["pass_at_k"] for s in smp),
                       maj_at_k=st.mean(s["maj_at_k"] for s in smp))
        dpo = [x["dpo_vs_sft"]["diff"] for x in rs if x.get("dpo_vs_sft")]
        if dpo:
            row["dpo_minus_sft"] = st.mean(dpo)
        out.append(row)
    return out


def plot_rounds(records: list[dict], path: str) -> str:
    """Left: held-out greedy accuracy per round, loop vs control, mean over seeds with sd bars (one
    seed: its standard error). Right: the gain (loop − control) per seed with its paired ±2 SE, the
    number the loop is judged by: seeds differ more in level than in gain, so the left bars overlap
    while every seed's gain clears zero."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = summarize(records)
    xs = [r["round"] for r in rows]
    one = len(records) == 1
    err = lambda key: [r["heldout_se"] if one else r[f"{key}_sd"] for r in rows]  # noqa: E731
    fig, (ax, gx) = plt.subplots(1, 2, figsize=(11, 3.9), gridspec_kw={"width_ratios": [3, 2]})
    ax.errorbar(xs, [r["loop_mean"] for r in rows], yerr=err("loop"), fmt="o-", capsize=4,
                label="loop (teacher + verified self-samples)")
    ax.errorbar([x + 0.04 for x in xs], [r["control_mean"] for r in rows], yerr=err("control"), fmt="s--", capsize=4,
                label="control (same tokens, teacher data only)")
    if all(r.get("pass_at_k") is not None for r in rows):
        ax.plot(xs, [r["pass_at_k"] for r in rows], ":", color="grey", label=f"loop pass@{rows[0]['k']}")
    ab = [r["ablation"]["unfiltered"]["accuracy"] for r in records if r.get("ablation", {}).get("unfiltered")]
    if ab:
        ax.axhline(sum(ab) / len(ab), color="red", lw=0.8, ls="-.", label="round 0 on unfiltered teacher data")
    ax.set_xticks(xs, [f"round {x}" for x in xs])
    ax.set_ylabel("held-out exact match (twin-free)")
    ax.set_title(f"{len(records)} seed(s), n={rows[0]['n']} held-out problems; bars: "
                 + ("±1 SE" if one else "±1 sd over seeds"), fontsize=9)
    ax.legend(fontsize=7, loc="best", framealpha=0.6)
    later = xs[1:]
    for j, rec in enumerate(records):
        g = [rec["rounds"][i]["gain"] for i in later]
        gx.errorbar([x + 0.06 * (j - (len(records) - 1) / 2) for x in later], [p["diff"] for p in g],
                    yerr=[2 * p["se"] for p in g], fmt="o-", capsize=3, lw=1, ms=4, label=f"seed {rec['seed']}")
    gx.axhline(0, color="black", lw=0.8)
    gx.set_xticks(later, [f"round {x}" for x in later])
    gx.set_ylabel("gain = loop − control")
    gx.set_title("paired on the same problems; bars: ±2 SE", fontsize=9)
    gx.legend(fontsize=7, loc="upper left", framealpha=0.6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_table(record: dict) -> None:
    from pipelines.report import _table, console
    rows = []
    for r in record["rounds"]:
        lp, ct = r["loop"], r["control"]
        s = lp.get("sampled") or {}
        rows.append([f"round {r['round']}", f"{lp['accuracy']:.3f} ± {lp['se']:.3f}",
                     f"{ct['accuracy']:.3f}" if r["round"] else "",
                     f"{r['gain']['diff']:+.3f} ± {r['gain']['se']:.3f}" if r["round"] else "",
                     f"{s.get('pass_at_k', 0):.3f} / {s.get('maj_at_k', 0):.3f}" if s else "",
                     " ".join(f"L{k}={v:.2f}" for k, v in lp["by_level"].items()),
                     str(r.get("verified_rows", r["sft_rows"])),
                     f"{r['dpo']['accuracy']:.3f}" if r.get("dpo") else ""])
    if record.get("ablation"):
        ab = record["ablation"]
        rows.append(["ablation", f"{ab['unfiltered']['accuracy']:.3f} ± {ab['unfiltered']['se']:.3f}", "",
                     f"{ab['paired']['diff']:+.3f} ± {ab['paired']['se']:.3f}", "",
                     " ".join(f"L{k}={v:.2f}" for k, v in ab["unfiltered"]["by_level"].items()),
                     str(ab["unfiltered_rows"]), ""])
    k = record["config"]["eval_k"]
    console.print(_table(f"held-out exact match ({record['heldout']['n']} twin-free problems, seed {record['seed']}, "
                         f"{record['seconds']:.0f} s; ± = standard error; gain = loop − control, paired; ablation: "
                         f"unfiltered teacher data, gain = filtered − unfiltered)",
                         ["", "loop pass@1", "control", "gain", f"pass@{k} / maj@{k}", "by level", "rows", "DPO"], rows))


def print_summary(rows: list[dict]) -> None:
    from pipelines.report import _table, console
    out = []
    for r in rows:
        out.append([f"round {r['round']}", f"{r['loop_mean']:.3f} ± {r['loop_sd']:.3f}",
                    f"{r['control_mean']:.3f} ± {r['control_sd']:.3f}",
                    f"{r['gain_mean']:+.3f} ± {r['gain_sd']:.3f}" if r["round"] else "",
                    f"{r['gain_se']:.3f}" if r["round"] else "",
                    f"{r['step_mean']:+.3f} ± {r['step_sd']:.3f} ({r['step_se']:.3f})" if r["round"] else "",
                    f"{r['vs_round0_mean']:+.3f}" if r["round"] else "",
                    f"{r['pass_at_k']:.3f} / {r['maj_at_k']:.3f}" if r.get("pass_at_k") is not None else ""])
    console.print(_table(f"{rows[0]['seeds']} seeds, {rows[0]['n']} twin-free held-out problems each "
                         "(mean ± sd over seeds; SE = mean paired standard error of the gain)",
                         ["", "loop", "control", "gain (loop − control)", "SE", "loop − last round (SE)",
                          "loop − round 0",
                          f"loop pass@{rows[0].get('k', '')} / maj"], out))


def per_seed_lines(records: list[dict]) -> str:
    """Per seed, each paired difference with its z (difference / SE): whether it holds on every seed."""
    from synth.evaluate import paired

    def z(p: dict) -> str:
        return f"{p['diff']:+.3f} ± {p['se']:.3f} " + (f"({p['diff'] / p['se']:.1f} SE)" if p["se"] else "(no variance)")

    lines = []
    for rec in records:
        rs = rec["rounds"]
        parts = [f"round {r['round']}: gain {z(r['gain'])}, step "
                 f"{z(paired(r['loop']['outcomes'], rs[i]['loop']['outcomes']))}" for i, r in enumerate(rs[1:])]
        if rec.get("ablation"):
            parts.append(f"ablation (filtered − unfiltered) {z(rec['ablation']['paired'])}")
        lines.append(f"seed {rec['seed']}: " + "; ".join(parts))
    return "\n".join(lines)


def run_seeds(argv: list[str], args: argparse.Namespace) -> int:
    """Each seed in its own process and warehouse (<warehouse>/seed-S), `--jobs` at a time; then the table and plot."""
    import subprocess

    rest, skip = [], False
    for x in argv:  # argv without --seeds/--jobs/--warehouse and their values
        if skip and not x.startswith("--"):
            continue
        skip = x in ("--seeds", "--jobs", "--warehouse")
        if not skip:
            rest.append(x)
    if args.workers is None:
        rest += ["--workers", "1"]  # the seeds already share the cores
    wh = os.path.abspath(args.warehouse)
    procs, records, failed = [], [], []
    pending = list(args.seeds)
    while pending or procs:
        while pending and len(procs) < args.jobs:
            s = pending.pop(0)
            cmd = [sys.executable, os.path.abspath(__file__), *rest, "--seed", str(s), "--warehouse", f"{wh}/seed-{s}"]
            log(f"seed {s}: {' '.join(cmd[1:])}")
            procs.append((s, subprocess.Popen(cmd)))
        s, p = procs.pop(0)
        if p.wait() != 0:
            failed.append(s)
    for s in args.seeds:
        path = f"{wh}/seed-{s}/_loop/{args.run or f'loop-s{s}'}/record.json"
        if os.path.exists(path) and s not in failed:
            records.append(json.load(open(path)))
    if failed or not records:
        log(f"seeds failed: {failed}")
        return 1
    rows = summarize(records)
    print_summary(rows)
    print(per_seed_lines(records))
    out = os.path.join(wh, "_loop")
    os.makedirs(out, exist_ok=True)
    png = plot_rounds(records, os.path.join(out, "seeds.png"))
    with open(os.path.join(out, "seeds.json"), "w") as f:
        json.dump({"seeds": list(args.seeds), "rounds": rows, "records": [os.path.join(wh, f"seed-{s}")
                                                                          for s in args.seeds]}, f, indent=1)
    print(f"summary: {os.path.join(out, 'seeds.json')}  plot: {png}")
    return 0


def parser() -> argparse.ArgumentParser:
    from pipelines.script import DefaultsHelpFormatter  # `(default: X)` once, and not for None
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter)
    p.add_argument("--warehouse", default=default_warehouse())
    p.add_argument("--run", default=None, help="run name (checkpoints under <warehouse>/_loop/<run>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="run these seeds (each in <warehouse>/seed-S) and print the table over them")
    p.add_argument("--jobs", type=int, default=1, help="seeds run at once with --seeds")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--executor", choices=["ray", "local"], default="ray")
    p.add_argument("--num-cpus", type=int, default=None)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per process (default: the cores shared among --workers); results are "
                        "reproducible for one thread count")
    p.add_argument("--workers", type=int, choices=[1, 2], default=None,
                   help="2: the ablation, the control and the held-out scoring run in a second process beside the "
                        "loop (same numbers, less wall time); default 2 on a CPU with 2+ cores, else 1 (1 under --seeds)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when present)")
    p.add_argument("--quiet", action="store_true")
    g = p.add_argument_group("data")
    g.add_argument("--teacher-problems", type=int, default=2000, help="problems with a worked teacher solution (round 0)")
    g.add_argument("--eval-problems", type=int, default=1000, help="held-out problems (SE ≈ 1.5 points at 1,000)")
    g.add_argument("--dev-problems", type=int, default=300, help="dev set: early stopping and model choice")
    g.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3])
    g.add_argument("--teacher-error-rate", type=float, default=0.3, help="share of wrong worked solutions")
    g.add_argument("--teacher-errors", choices=["mixed", "arithmetic"], default="mixed",
                   help="how a wrong solution goes wrong: 'mixed' in the shares of real wrong chains of thought "
                        "(slip 8%%, wrong number 16%%, missing step 22%%, misread sentence 54%%: Wei et al. 2022, "
                        "app. D.2), or arithmetic slips only")
    g.add_argument("--no-ablation", action="store_true", help="skip training on unfiltered teacher data")
    g = p.add_argument_group("model")
    g.add_argument("--vocab-size", type=int, default=512)
    g.add_argument("--bpe-digits", action="store_true",
                   help="let BPE merge digits into number tokens (default: one token per digit)")
    g.add_argument("--dim", type=int, default=128)
    g.add_argument("--layers", type=int, default=4)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--kv-heads", type=int, default=2)
    g.add_argument("--ffn-dim", type=int, default=352)
    g.add_argument("--max-seq-len", type=int, default=256)
    g.add_argument("--rope-fraction", type=float, default=0.75)
    g = p.add_argument_group("training")
    g.add_argument("--sft-steps", type=int, default=3200, help="round 0 and the ablation: training steps (the best dev step is kept)")
    g.add_argument("--eval-every", type=int, default=100, help="round 0: dev scoring interval (steps)")
    g.add_argument("--patience", type=int, default=0,
                   help="round 0 and the ablation: 0 (default) trains all --sft-steps and keeps the best dev step; N "
                        "stops after N dev scores without a gain (a dev score's SE is ~2.5 points: patience 3 once "
                        "stopped a round 0 at a noisy peak, 0.09 below the same seed trained to the end)")
    g.add_argument("--min-steps", type=int, default=1600,
                   help="round 0 and the ablation: dev scores are 4× sparser before this step, and --patience N never "
                        "stops training before it (at 1,024 tokens a step the dev curve sits near zero to ~1,100 "
                        "steps; at 800 patience stopped one ablation at step 900)")
    g.add_argument("--lr", type=float, default=3e-3)
    g.add_argument("--tokens-per-batch", type=int, default=1024,
                   help="round 0 and the ablation (from scratch): tokens per optimizer step")
    g.add_argument("--round-tokens-per-batch", type=int, default=2048,
                   help="rounds ≥ 1, loop and control alike: tokens per optimizer step")
    g.add_argument("--packing", choices=["bfd", "pad"], default="pad")
    g.add_argument("--seq-len", type=int, default=128, help="packed row length")
    g.add_argument("--round-tokens", type=int, default=600_000,
                   help="training tokens per round, the same for the loop and the control")
    g.add_argument("--rft-lr", type=float, default=1e-3)
    g.add_argument("--init", choices=["base", "last"], default="last",
                   help="each round continues from the last round's model, or retrains from round 0's (ReST-EM); "
                        "'last' beat its control by +5.5 points at round 3, 'base' by +3.4 (merged-digit tokens, "
                        "bench/README.md)")
    g.add_argument("--reuse-checkpoints", action="store_true",
                   help="a from-scratch checkpoint (round 0, ablation) already in this run's directory with the "
                        "same settings and data is loaded, not retrained (to try round-1+ variants on one round 0)")
    g.add_argument("--dpo", action="store_true", help="DPO after each round's SFT (kept only where dev improves)")
    g.add_argument("--dpo-steps", type=int, default=40)
    g.add_argument("--dpo-lr", type=float, default=1e-5)
    g.add_argument("--beta", type=float, default=0.1)
    g.add_argument("--rpo-alpha", type=float, default=1.0, help="weight of the chosen answer's NLL in the DPO loss")
    g.add_argument("--min-pairs", type=int, default=20, help="fewer pairs than this: skip DPO that round")
    g = p.add_argument_group("sampling")
    g.add_argument("--sample-problems", type=int, default=4000, help="fresh answer-only problems per round")
    g.add_argument("--k", type=int, default=2, help="samples per problem per round")
    g.add_argument("--unsure-copies", type=int, default=1,
                   help="times a verified sample is trained on when its problem was solved by some of its k "
                        "samples but not all (1: every sample once)")
    g.add_argument("--curriculum-floor", type=float, default=0.05,
                   help="level weight = p(1-p) of the last pass rate + this floor")
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--max-new-tokens", type=int, default=96)
    g.add_argument("--eval-k", type=int, default=4,
                   help="held-out samples per problem for pass@k / maj@k at round 0 and the last round (1: off)")
    return p


def resolve_workers(args: argparse.Namespace) -> None:
    """Two processes on a CPU with two or more cores (one on a GPU, where they would share it), and
    the cores split between them: the default's numbers are then those of `--threads 1` on 2 cores."""
    import torch
    cores = os.cpu_count() or 1
    gpu = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if args.workers is None:
        args.workers = 1 if gpu or cores < 2 else 2
    if args.threads is None and not gpu:
        args.threads = int(os.environ.get("CURATE_THREADS", 0)) or max(1, cores // args.workers)


def run_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    args = p.parse_args(argv)
    if args.unsure_copies < 1:  # 0 or less would drop verified samples from training without a word
        p.error(f"--unsure-copies must be at least 1, got {args.unsure_copies}")
    if args.patience < 0:
        p.error(f"--patience must be 0 (train all --sft-steps) or more, got {args.patience}")
    if args.seeds:
        return run_seeds(argv, args)
    resolve_workers(args)
    from schemas.engine.raysession import RayStartFailed
    try:
        record = Loop(args).run()
    except RayStartFailed as e:  # the loop starts Ray first, before any work
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_table(record)
    prof = record["profile"]
    by_phase = lambda p: ", ".join(f"{k} {v:.0f}" for k, v in sorted(p.items(), key=lambda kv: -kv[1]))  # noqa: E731
    print(f"wall time by phase (s): {by_phase(prof)}"
          + (f"; side worker (ablation, control, held-out scoring): {by_phase(record['profile_side'])}" if record.get("profile_side") else "")
          + f"; total {record['seconds']:.0f} s wall, {record['cpu_seconds']:.0f} s CPU ({args.workers} process"
          + ("es" if args.workers > 1 else "") + f" × {record['threads']} thread{'s' if record['threads'] > 1 else ''})")
    print(f"record: {os.path.join(os.path.abspath(args.warehouse), '_loop', record['run'], 'record.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main())
