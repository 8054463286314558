"""The loop's round driver: the problems and the teacher tables, round 0's SFT, then per round
fresh problems → samples from the current model → verified rows → SFT (and DPO when asked),
with the side chain (`pipelines/loop_side.py`) training the control and the ablation and scoring
the held-out set. Everything the run measures lands in one `LoopRecord`, written as record.json.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field

from pipelines import loop_side
from pipelines.loop_bench import Bench, conv_key, log
from pipelines.loop_config import LoopConfig
from pipelines.loop_integrity import check_disjoint_ids, check_no_twins
from pipelines.loop_report import plot_rounds


def unsure_problems(rows: list[dict]) -> set[str]:
    """Problems the sampling model solved in some of its samples but not all (pooled over repeats)."""
    tally: dict[str, list[int]] = {}
    for r in rows:
        t = tally.setdefault(r["problem"], [0, 0])
        t[0] += r["n_correct"]
        t[1] += r["n_samples"]
    return {p for p, (c, n) in tally.items() if 0 < c < n}


def weighted_mix(teacher: list[list[dict]], verified: dict[str, list[dict]],
                 copies: dict[str, int]) -> list[list[dict]]:
    """The round's training conversations: the teacher's, then each verified sample `copies` times
    (difficulty-aware rejection tuning, as in DART-Math: a problem the model solves only sometimes
    is where training moves greedy accuracy; one it always solves adds little)."""
    out = list(teacher)
    for key in sorted(verified):
        out.extend([verified[key]] * copies.get(key, 1))
    return out


@dataclass
class LoopRecord:
    """What a run measured (record.json). Each part is filled by one step: `heldout` by the
    problems, `fresh` by each round's draw, `ablation` and `rounds` by the collection of results,
    the rest at the end."""
    run: str
    seed: int
    config: dict
    device: str
    threads: int
    torch: str
    profile: dict[str, float]
    rounds: list[dict] = field(default_factory=list)
    heldout: dict = field(default_factory=dict)
    fresh: dict[str, dict] = field(default_factory=dict)
    ablation: dict | None = None
    profile_side: dict[str, float] = field(default_factory=dict)
    profile_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by phase (wall: `profile`)
    profile_side_cpu: dict[str, float] = field(default_factory=dict)
    final_checkpoint: str | None = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    loss_png: str | None = None
    accuracy_png: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.fresh:  # as before the split: no key for what the run did not do
            del d["fresh"]
        if self.ablation is None:
            del d["ablation"]
        return d


class Loop(Bench):
    """The round driver. Takes a `LoopConfig` (a parsed command line is converted once)."""

    def __init__(self, cfg: LoopConfig | argparse.Namespace):
        import torch

        cfg = cfg if isinstance(cfg, LoopConfig) else LoopConfig.from_args(cfg)
        super().__init__(cfg)
        self.record = LoopRecord(run=self.run_name, seed=cfg.seed, config=cfg.to_dict(), device=str(self.device),
                                 threads=torch.get_num_threads(), torch=torch.__version__, profile=self.profile,
                                 profile_cpu=self.profile_cpu)
        self.t0 = time.perf_counter()

    # ---- tables ---------------------------------------------------------------------
    def _run(self, pipeline, inputs: list[str], output: str, tag: str | None, mode: str = "overwrite"):
        from schemas.engine.runner import RunOptions, run
        res = run(pipeline, RunOptions(inputs=inputs, output=output, warehouse=self.wh, executor=self.cfg.executor,
                                       num_cpus=self.cfg.num_cpus, mode=mode, tag=tag, progress=False,
                                       shard_bytes=64 << 10))
        log(f"{output}@{tag or res.snapshot_id}: {res.accounting['rows_in']} in, {res.accounting['kept']} kept, "
            f"rejects {res.accounting['rejects_by_reason']}")
        return res

    def start_ray(self) -> None:
        """Start the embedded Ray session up front, so its cost shows in the profile on its own."""
        if self.cfg.executor == "ray":
            from schemas.engine.raysession import init_ray
            with self.timed("ray_start"):
                init_ray(self.cfg.num_cpus)

    def _teacher_pool(self) -> tuple[list[dict], int]:
        """`--teacher-problems` twin-free problems: level 1 has only ~1,700 distinct problems, and a
        1,000-problem held-out set covers a large share of them, so twins are redrawn."""
        import random

        from synth.problems import word_problem
        c = self.cfg
        rng, twins = random.Random(c.seed), 0
        train: list[dict] = []
        while len(train) < c.teacher_problems:
            p = word_problem(rng, rng.choice(c.levels), c.teacher_error_rate,
                             None if c.teacher_errors == "mixed" else {"arithmetic": 1.0})
            if self.protected.twin_of(p["problem"]):
                twins += 1
            else:
                train.append(p)
        return train, twins

    def problems(self) -> tuple[str, list[dict]]:
        """Teacher pool (decontaminated against held-out and dev: ids, 13-grams, twins) and the held-out set."""
        from filters.decontaminate import Decontaminator
        from filters.twins import TwinIndex
        from pipelines.reasoning_data import check_problem
        from schemas.engine.runner import Pipeline
        from schemas.engine.stage import StageSpec
        from schemas.tables import PROBLEMS
        from synth.problems import word_problems, write_jsonl

        c = self.cfg
        d = os.path.join(self.out, "inputs")
        heldout = word_problems(c.eval_problems, seed=c.seed + 7919, levels=tuple(c.levels))
        eval_path = write_jsonl(heldout, os.path.join(d, "heldout.jsonl"))
        # a separate dev set early-stops training and picks between models: the held-out set only scores
        self.dev = word_problems(c.dev_problems, seed=c.seed + 104729, levels=tuple(c.levels))
        dev_path = write_jsonl(self.dev, os.path.join(d, "dev.jsonl"))
        self.protected = TwinIndex([(f"heldout/{i}", p["problem"]) for i, p in enumerate(heldout)] +
                                   [(f"dev/{i}", p["problem"]) for i, p in enumerate(self.dev)])
        train, twins = self._teacher_pool()
        paths = [write_jsonl(train[i:i + 500], os.path.join(d, f"train-{i // 500:03d}.jsonl"))
                 for i in range(0, len(train), 500)]
        self._run(Pipeline("loop_heldout", PROBLEMS, PROBLEMS, [check_problem]), [eval_path], "loop_heldout", "heldout")
        decon = StageSpec(Decontaminator, {"benchmarks": [eval_path, dev_path], "n": 0, "column": "problem",
                                           "twins": True})
        self._run(Pipeline("loop_problems", PROBLEMS, PROBLEMS, [check_problem, decon]), paths, "loop_problems", "pool")
        pool = self.store.read_arrow("loop_problems@pool", columns=["id", "problem"]).to_pylist()
        held = self.store.read_arrow("loop_heldout@heldout").to_pylist()
        check_disjoint_ids((p["id"] for p in pool), (p["id"] for p in held), "the training pool")
        self.seen = TwinIndex((p["id"], p["problem"]) for p in pool)  # problems trained on, for fresh sampling
        self.record.heldout = {"n": len(held), "dev_n": len(self.dev), "id_overlap": 0,
                               "teacher_twins_redrawn": twins,
                               "teacher_levels": {str(lv): sum(p["level"] == lv for p in train) for lv in c.levels},
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
            p = Pipeline(f"teacher_sft{'' if filt else '_unfiltered'}", PROBLEMS, SFT,
                         [teacher_sft.configure(filter=filt)])
            res = self._run(p, ["loop_problems@pool"], name, tag)
            self.store.tag(f"{name}@{res.snapshot_id}", tag, replace=True)
            refs[name] = f"{name}@{tag}"
        return refs

    # ---- rounds ---------------------------------------------------------------------
    def fresh_problems(self, round_: int, pass_rates: dict[str, float]) -> list[dict]:
        """`--sample-problems` new problems: never twins of held-out/dev, new to training where the
        level's space allows; levels weighted by p(1-p) of the last pass rates (a curriculum: most
        weight where the model is right about half the time). Each keeps the teacher's (correct)
        worked solution for the ceiling arm; the loop samples them answer-only."""
        import random

        from synth.problems import word_problem

        c = self.cfg
        rng = random.Random(c.seed * 1_000_003 + round_)
        levels = list(c.levels)
        w = [pass_rates.get(str(lv), 0.5) * (1 - pass_rates.get(str(lv), 0.5)) + c.curriculum_floor for lv in levels]
        out: list[dict] = []
        skipped = {"heldout_or_dev_twin": 0, "seen": 0, "repeats_kept": 0}
        while len(out) < c.sample_problems:
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
                # the level's space is used up: a problem met before, not a held-out one
                skipped["repeats_kept"] += seen
                break
            else:
                continue
            self.seen.add(f"round{round_}/{len(out)}", p["problem"])
            out.append({k: p[k] for k in ("problem", "answer", "level", "source", "reference_cot")})
        self.record.fresh[str(round_)] = {"weights": dict(zip(map(str, levels), w, strict=True)), **skipped}
        return out

    def sample(self, round_: int, ckpt: str, problems: list[dict]) -> dict:
        """The reasoning-data pipeline with the current model as generator."""
        from pipelines import reasoning_data as rd
        from pipelines.script import options
        from schemas.engine.runner import run
        from synth.problems import write_jsonl

        c = self.cfg
        paths = [write_jsonl(problems[i:i + 250],
                             os.path.join(self.out, "inputs", f"round{round_}-{i // 250:03d}.jsonl"))
                 for i in range(0, len(problems), 250)]
        argv = ["--input", *paths, "--warehouse", self.wh, "--output", "loop_reasoning",
                "--generator", f"builtin:{ckpt}",
                "--k", str(c.k), "--max-attempts", "1", "--temperature", str(c.temperature),
                "--max-tokens", str(c.max_new_tokens), "--system", "", "--samples-table", "loop_cot_samples",
                "--sft-table", "loop_sft", "--pairs-table", "loop_preferences", "--round", str(round_),
                "--seed", str(c.seed * 1000 + round_), "--batch-size", "128", "--executor", c.executor,
                "--tag", f"round-{round_}", "--quiet", "--threads", str(c.threads or 1),
                "--cache", os.path.join(self.out, "generations.sqlite")]
        if c.num_cpus:
            argv += ["--num-cpus", str(c.num_cpus)]
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
            f"{counts['pairs']['pairs']} pairs; pass@{c.k} by level "
            f"{ {k: v['pass_at_k'] for k, v in sorted(by_level.items())} }")
        return {"sft": f"loop_sft@sft-round-{round_}", "pairs": f"loop_preferences@dpo-round-{round_}",
                "counts": counts, "by_level": by_level, "problems": ref, "per_problem": per}

    def dpo(self, round_: int, init: str, pairs_ref: str, trained_on: list[str]):
        from model import checkpoint
        from model.config import TrainConfig
        from model.dpo import train_dpo

        c = self.cfg
        pairs = self.store.read_arrow(pairs_ref, columns=["prompt", "chosen", "rejected"]).to_pylist()
        pairs.sort(key=lambda p: (p["prompt"], p["chosen"], p["rejected"]))
        n_held = max(1, len(pairs) // 10) if len(pairs) >= 10 else 0
        model, tok, _ = checkpoint.load(init, device=str(self.device))
        tcfg = TrainConfig(beta=c.beta, dpo_lr=c.dpo_lr, dpo_steps=c.dpo_steps, pairs_per_batch=16, seed=c.seed,
                           rpo_alpha=c.rpo_alpha)
        path = os.path.join(self.out, f"round{round_}-dpo")
        with self.timed("dpo"):
            res = train_dpo(model, tok, pairs[n_held:], pairs[:n_held], tcfg, path, trained_on + [pairs_ref],
                            self.device, progress=not c.quiet)
        for k in ("heldout_before", "heldout_after"):  # recorded as read: 0.025, not float32's 0.02500000037252903
            res[k] = {m: round(v, 4) if isinstance(v, float) else v for m, v in res[k].items()}
        before, after = res["heldout_before"], res["heldout_after"]
        log(f"round {round_} DPO on {len(pairs) - n_held} pairs: " + (
            f"held-out pair margin {before['reward_margin']:.3f} → {after['reward_margin']:.3f}, pair accuracy "
            f"{before['accuracy']:.2f} → {after['accuracy']:.2f} (pairs held out: {n_held})" if n_held else
            "no held-out pairs to score (one in ten is held out from 10 pairs on)"))
        return model, tok, path, res

    def run(self) -> dict:
        from model.tokenizer import ChatTokenizer
        c = self.cfg
        self.start_ray()
        with self.timed("tables"):
            _, self.held = self.problems()
            teacher = self.teacher_tables()
        filtered = self.conversations(teacher["loop_sft"])
        unfiltered = self.conversations(teacher["loop_sft_unfiltered"])
        tok = ChatTokenizer.train((m["content"] for conv in unfiltered for m in conv), vocab_size=c.vocab_size,
                                  split_digits=not c.bpe_digits)
        side: loop_side.SideChain
        if (c.workers or 1) > 1:  # ablation and control in a second process, beside round 0 and the loop's rounds
            side = loop_side.Worker(self, teacher, tok.save(self.out))
        else:
            side = loop_side.Inline(self, teacher, tok, filtered, unfiltered)
        try:
            rounds, final_ck, histories = self._rounds(side, teacher, filtered, tok)
        except BaseException:
            side.close(failed=True)
            raise
        side_profile = side.close()
        self.record.profile_side = side_profile.get("wall", {})
        self.record.profile_side_cpu = side_profile.get("cpu", {})
        return self._finish(rounds, final_ck, histories)

    def _teacher_solutions(self, r: int, drawn: list[dict]) -> str:
        """The teacher's worked solutions to round r's fresh problems, as a table (the ceiling arm's data)."""
        convs = [[{"role": "user", "content": p["problem"]}, {"role": "assistant", "content": p["reference_cot"]}]
                 for p in drawn]
        ref = self.publish_conversations("loop_ceiling_sft", convs, [f"word_problems:seed={self.cfg.seed}:round={r}"],
                                         f"ceiling-round-{r}")
        self.store.tag(ref, f"ceiling-sft-round-{r}", replace=True)
        return ref

    def _add_verified(self, sft_ref: str, unsure: set[str], verified: dict, copies: dict) -> int:
        """New verified samples into the pool, each weighted once, in the round it was first drawn."""
        n_unsure = 0
        for conv in self.conversations(sft_ref):
            key = conv_key(conv)
            if key not in verified:
                verified[key] = conv
                user = next(m["content"] for m in conv if m["role"] == "user")
                copies[key] = self.cfg.unsure_copies if user in unsure else 1
                n_unsure += user in unsure
        return n_unsure

    def _dpo_round(self, r: int, rec: dict, model, tok, loop_ck: str, refs: dict, trained: list[str]):
        """`--dpo`: the dev set picks SFT or DPO to sample the next round: scored here, not on the side."""
        from synth.evaluate import paired
        c = self.cfg
        ev = self.evaluate(model, tok, sampled=c.sampled_eval_at(r))
        rec["ev"] = ev
        if refs["counts"]["pairs"]["pairs"] >= c.min_pairs:
            m_d, _, ck_d, dres = self.dpo(r, loop_ck, refs["pairs"], trained)
            ev_d = self.evaluate(m_d, tok, sampled=False)
            rec.update(dpo=ev_d, dpo_ck=ck_d, dpo_pairs=dres["pairs"], dpo_vs_sft=paired(ev_d["outcomes"],
                                                                                      ev["outcomes"]),
                       dpo_heldout_pairs={k: dres[k] for k in ("heldout_before", "heldout_after")})
            if ev_d["dev"] > ev["dev"]:
                return ck_d, trained + [refs["pairs"]]
        return loop_ck, trained

    def _rounds(self, side: loop_side.SideChain, teacher: dict[str, str], filtered: list[list[dict]],
                tok) -> tuple[list, str, dict]:
        """Round 0, then each round's sampling and training; the held-out scores, the control and the
        ablation come from the side chain (with two workers, computed there meanwhile), read at the end."""
        c = self.cfg
        histories = {}
        # round 0: the teacher's verifier-filtered data, from scratch, to convergence on dev
        model, tok, base, res0 = self.train("round0-sft", filtered, [teacher["loop_sft"]], c.sft_steps, c.lr, tok=tok,
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
        steps = c.round_steps
        for r in range(1, c.rounds + 1):
            drawn = self.fresh_problems(r, pass_rates)
            if not c.no_ceiling:
                side.submit_ceiling(r, self._teacher_solutions(r, drawn))
            problems = [{k: p[k] for k in ("problem", "answer", "level", "source")} for p in drawn]
            refs = self.sample(r, loop_ck, problems)
            sampled.append(refs["problems"])
            pass_rates = {k: v["sample_accuracy"] for k, v in refs["by_level"].items()}
            n_unsure = self._add_verified(refs["sft"], unsure_problems(refs["per_problem"]), verified, copies)
            trained = trained + [refs["sft"]]
            mix = weighted_mix(filtered, verified, copies)
            init_loop = base if c.init == "base" else loop_ck
            model, tok, loop_ck, res = self.train(f"round{r}-sft", mix, trained, steps, c.rft_lr, init=init_loop)
            histories[f"round {r} loop"] = res["history"]
            rec = {"round": r, "sft_rows": refs["counts"]["sft"]["rows"], "verified_rows": len(verified),
                   "unsure_rows": n_unsure, "unsure_copies": c.unsure_copies, "mix_rows": len(mix), "steps": steps,
                   "tokens": res["tokens"], "sampling": refs["by_level"],
                   "pairs": refs["counts"]["pairs"]["pairs"], "init": c.init, "ck": loop_ck}
            if c.dpo:
                loop_ck, trained = self._dpo_round(r, rec, model, tok, loop_ck, refs, trained)
            else:
                side.submit_eval(r, loop_ck)
            rec["continues_from"] = "dpo" if loop_ck.endswith("-dpo") else "sft"
            chain.append(rec)
            log(f"round {r}: trained {steps} steps on {len(mix)} conversations ({len(verified)} verified samples, "
                f"{n_unsure} new from problems solved only sometimes)")
        final_sampled = self.sampled_checkpoint(loop_ck) if c.rounds and not c.dpo and c.eval_k > 1 else None
        # the held-out set against every problem in the tables trained on or sampled: no twin may be left
        from filters.twins import TwinIndex
        used = TwinIndex((str(i), t) for ref in ["loop_problems@pool", *sampled]
                         for i, t in enumerate(self.store.read_arrow(ref, columns=["problem"]).column("problem")
                                               .to_pylist()))
        self.record.heldout["twins_in_training"] = check_no_twins(self.held, used)
        return self._collect(side, chain, base, res0, filtered, histories, final_sampled), loop_ck, histories

    def _collect_ablation(self, ab: dict, ev0: dict, res0: dict, filtered: list) -> None:
        from synth.evaluate import paired
        ev_u = ab["ev"]
        rec = self.record.ablation = {
            "filtered": ev0, "unfiltered": ev_u, "filtered_rows": len(filtered), "unfiltered_rows": ab["rows"],
            "filtered_steps": res0["best_step"], "unfiltered_steps": ab["steps"],
            "tokens_per_batch": self.cfg.tokens_per_batch, "paired": paired(ev0["outcomes"], ev_u["outcomes"])}
        p = rec["paired"]
        log(f"ablation: filtered {ev0['accuracy']:.3f} vs unfiltered {ev_u['accuracy']:.3f} "
            f"(paired diff {p['diff']:+.3f} ± {p['se']:.3f})")
        if "row_matched" in ab:
            m = ab["row_matched"]
            rec.update(row_matched=m["ev"], row_matched_rows=m["rows"], row_matched_steps=m["steps"],
                       row_matched_wrong_rows=m["wrong_rows"], unfiltered_wrong_rows=ab["wrong_rows"],
                       paired_row_matched=paired(ev0["outcomes"], m["ev"]["outcomes"]),
                       row_matched_vs_unfiltered=paired(m["ev"]["outcomes"], ev_u["outcomes"]))
            q = rec["paired_row_matched"]
            log(f"ablation, row-matched: filtered {ev0['accuracy']:.3f} vs {m['rows']} unfiltered rows "
                f"({m['wrong_rows']} wrong) {m['ev']['accuracy']:.3f} (paired diff {q['diff']:+.3f} ± {q['se']:.3f})")

    def _collect(self, side: loop_side.SideChain, chain: list[dict], base: str, res0: dict, filtered: list,
                 histories: dict, final_sampled: dict | None) -> list[dict]:
        """Read the side chain's results in the order it sends them; register and tag the loop's models."""
        from synth.evaluate import paired

        c = self.cfg
        if not c.no_ablation:
            ab = side.ablation()
            histories["round 0 SFT (unfiltered)"] = ab["history"]
        ev0 = side.loop_eval(0)
        self.register(base, 0, "sft", ev0, ["model-round-0"])
        log(f"round 0: held-out {ev0['accuracy']:.3f} ± {ev0['se']:.3f} {ev0['by_level']}, dev {ev0['dev']:.3f}")
        rounds = [{"round": 0, "sft_rows": len(filtered), "loop": ev0, "control": ev0, "steps": res0["best_step"],
                   "dev_curve": res0["dev_curve"], "dev_by_level": res0["dev_by_level"],
                   "tokens_per_s": res0["tokens_per_s"]}]
        if not c.no_ablation:
            self._collect_ablation(ab, ev0, res0, filtered)
        for rec in chain:
            r = rec["round"]
            ctrl = side.control(r)
            ceil = None if c.no_ceiling else side.ceiling(r)
            ev = rec.pop("ev", None) or side.loop_eval(r)
            if r == c.rounds and final_sampled:
                ev["sampled"] = final_sampled
            snap = self.register(rec.pop("ck"), r, "sft", ev, [f"model-round-{r}-sft"])
            if rec.get("dpo"):
                snap_d = self.register(rec.pop("dpo_ck"), r, "dpo", rec["dpo"], [f"model-round-{r}-dpo"])
                snap = snap_d if rec["continues_from"] == "dpo" else snap
            self.store.tag(f"models@{snap}", f"model-round-{r}", replace=True)
            ev_c = ctrl["ev"]
            rec.update(loop=ev, control=ev_c, control_tokens=ctrl["tokens"],
                       gain=paired(ev["outcomes"], ev_c["outcomes"]), vs_round0=paired(ev["outcomes"], ev0["outcomes"]))
            if ceil:
                rec.update(ceiling=ceil["ev"], ceiling_tokens=ceil["tokens"], ceiling_rows=ceil["rows"],
                           loop_vs_ceiling=paired(ev["outcomes"], ceil["ev"]["outcomes"]),
                           ceiling_vs_control=paired(ceil["ev"]["outcomes"], ev_c["outcomes"]))
            rounds.append(rec)
            log(f"round {r}: loop {ev['accuracy']:.3f} ± {ev['se']:.3f}, control {ev_c['accuracy']:.3f} "
                f"± {ev_c['se']:.3f}, gain {rec['gain']['diff']:+.3f} ± {rec['gain']['se']:.3f} (paired)"
                + (f", teacher ceiling {ceil['ev']['accuracy']:.3f}" if ceil else "")
                + (f", DPO {rec['dpo']['accuracy']:.3f}" if rec.get("dpo") else ""))
        return rounds

    def _finish(self, rounds: list, final_ck: str, histories: dict) -> dict:
        import resource

        from model.sft import plot_loss
        rec = self.record
        rec.rounds = rounds
        rec.final_checkpoint = final_ck
        rec.seconds = round(time.perf_counter() - self.t0, 1)
        # CPU of this process and the side worker (joined by now): what the run costs, whatever the wall time
        cpu = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        rec.cpu_seconds = round(sum(u.ru_utime + u.ru_stime for u in cpu), 1)
        rec.loss_png = plot_loss(histories, os.path.join(self.out, "loss.png"))
        out = rec.to_dict()
        rec.accuracy_png = out["accuracy_png"] = plot_rounds([out], os.path.join(self.out, "accuracy.png"))
        with open(os.path.join(self.out, "record.json"), "w") as f:
            json.dump(out, f, indent=1, default=str)
        return out
