"""The closed loop: teacher data → verifier-filtered SFT → the model samples → verify → RFT → DPO.

    python pipelines/reasoning_loop.py                    # default loop: tiny model, CPU, ~6 min on 2 cores
    python pipelines/reasoning_loop.py --rounds 1 --no-ablation --sft-steps 100   # a quick look
    ray job submit --address http://127.0.0.1:8275 --working-dir . -- python pipelines/reasoning_loop.py --warehouse /abs/warehouse

Round 0: programmatic word problems with worked solutions from a teacher that slips on
`--teacher-error-rate` of them → the rule verifier keeps the right ones (`sft-round-0`) →
tokenizer + SFT from scratch (`model-round-0`). Round r ≥ 1: the current model samples k CoTs
per training problem (the reasoning-data pipeline with `builtin:<checkpoint>`) → verify →
SFT on the correct ones mixed with the teacher data (rejection-sampling fine-tuning) → DPO
on correct-vs-incorrect pairs (`dpo-round-r`, `model-round-r`). Held-out problems (never
trained on: ids checked, 13-gram decontaminated) are scored after every SFT and DPO. The
ablation trains the same budget on the unfiltered teacher data.
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


class Loop:
    def __init__(self, args: argparse.Namespace):
        from model.runtime import setup

        self.args = args
        self.wh = os.path.abspath(args.warehouse)
        self.store = Store(self.wh)
        self.run_name = args.run or f"loop-s{args.seed}"
        self.out = os.path.join(self.wh, "_loop", self.run_name)
        os.makedirs(self.out, exist_ok=True)
        self.device, self.autocast = setup(args.threads, args.device)
        self.record: dict = {"run": self.run_name, "seed": args.seed, "config": vars(args), "rounds": [],
                             "device": str(self.device)}
        self.t0 = time.perf_counter()

    # ---- tables ---------------------------------------------------------------------
    def _run(self, pipeline, inputs: list[str], output: str, tag: str | None, mode: str = "overwrite"):
        from schemas.engine.runner import RunOptions, run
        res = run(pipeline, RunOptions(inputs=inputs, output=output, warehouse=self.wh, executor=self.args.executor,
                                       num_cpus=self.args.num_cpus, mode=mode, tag=tag, progress=False,
                                       shard_bytes=64 << 10))
        log(f"{output}@{tag or res.snapshot_id}: {res.accounting['rows_in']} in, {res.accounting['kept']} kept, "
            f"rejects {res.accounting['rejects_by_reason']}")
        return res

    def problems(self) -> tuple[str, list[dict]]:
        """Train pool (decontaminated against the held-out set) and the held-out set, as tables."""
        from filters.decontaminate import Decontaminator
        from pipelines.reasoning_data import check_problem
        from schemas.engine.runner import Pipeline
        from schemas.engine.stage import StageSpec
        from schemas.tables import PROBLEMS
        from synth.problems import word_problems, write_jsonl

        a = self.args
        d = os.path.join(self.out, "inputs")
        heldout = word_problems(a.eval_problems, seed=a.seed + 7919, levels=tuple(a.levels))
        eval_path = write_jsonl(heldout, os.path.join(d, "heldout.jsonl"))
        # a separate dev set picks between the SFT and DPO model of a round: the held-out set only scores
        self.dev = word_problems(a.dev_problems, seed=a.seed + 104729, levels=tuple(a.levels))
        dev_path = write_jsonl(self.dev, os.path.join(d, "dev.jsonl"))
        train = word_problems(a.train_problems, seed=a.seed, levels=tuple(a.levels), error_rate=a.teacher_error_rate)
        paths = [write_jsonl(train[i:i + 500], os.path.join(d, f"train-{i // 500:03d}.jsonl"))
                 for i in range(0, len(train), 500)]
        self._run(Pipeline("loop_heldout", PROBLEMS, PROBLEMS, [check_problem]), [eval_path], "loop_heldout", "heldout")
        decon = StageSpec(Decontaminator, {"benchmarks": [eval_path, dev_path], "n": 13, "column": "problem"})
        self._run(Pipeline("loop_problems", PROBLEMS, PROBLEMS, [check_problem, decon]), paths, "loop_problems", "pool")
        train_ids = set(self.store.read_arrow("loop_problems@pool", columns=["id"]).column("id").to_pylist())
        held = self.store.read_arrow("loop_heldout@heldout").to_pylist()
        overlap = train_ids & {p["id"] for p in held}
        assert not overlap, f"{len(overlap)} held-out problems are in the training pool"
        self.record["heldout"] = {"n": len(held), "id_overlap": 0, "table": "loop_heldout@heldout",
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
            refs[name] = f"{name}@{res.snapshot_id}"
        return refs

    def conversations(self, ref: str) -> list[list[dict]]:
        return [[{"role": m["role"], "content": m["content"]} for m in msgs]
                for msgs in self.store.read_arrow(ref, columns=["messages"]).column("messages").to_pylist()]

    # ---- models ---------------------------------------------------------------------
    def train(self, name: str, convs: list[list[dict]], trained_on: list[str], steps: int, lr: float,
              init: str | None = None, tok=None):
        from model import checkpoint
        from model.config import ModelConfig, TrainConfig
        from model.sft import train_sft
        from model.transformer import Transformer

        a = self.args
        if init:
            model, tok, _ = checkpoint.load(init, device=str(self.device))
        else:
            import torch
            torch.manual_seed(a.seed)
            model = Transformer(ModelConfig(vocab_size=tok.vocab_size, dim=a.dim, n_layers=a.layers, n_heads=a.heads,
                                            n_kv_heads=a.kv_heads, ffn_dim=a.ffn_dim, max_seq_len=a.max_seq_len,
                                            rope_fraction=a.rope_fraction)).to(self.device)
        cfg = TrainConfig(lr=lr, steps=steps, warmup_steps=min(30, steps // 10 + 1), tokens_per_batch=a.tokens_per_batch,
                          packing=a.packing, seq_len=a.seq_len, seed=a.seed)
        path = os.path.join(self.out, name)
        t = time.perf_counter()
        res = train_sft(model, tok, convs, cfg, path, trained_on, self.device, self.autocast, progress=not a.quiet)
        log(f"{name}: {steps} steps on {len(convs)} conversations, loss {res['final_loss']:.3f}, "
            f"{res['tokens_per_s'] or 0:.0f} tok/s, packing efficiency {res['packing_efficiency']:.2f}, "
            f"{time.perf_counter() - t:.0f} s")
        return model, tok, path, res

    def evaluate(self, model, tok, held: list[dict]) -> dict:
        from model.evaluate import evaluate
        return evaluate(model, tok, held, max_new_tokens=self.args.max_new_tokens)

    def register(self, path: str, round_: int, stage: str, ev: dict, tags: list[str]) -> int:
        """One row per checkpoint in the `models` table, tagged by round (lineage from the store side)."""
        from model import checkpoint
        from pipelines.derived import publish_derived

        m = checkpoint.meta(path)
        row = {"id": m["id"], "path": path, "round": round_, "stage": stage, "step": m["step"],
               "trained_on": m["trained_on"], "accuracy": ev["accuracy"], "metrics": json.dumps(ev),
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
    def sample(self, round_: int, ckpt: str) -> dict[str, str]:
        """The reasoning-data pipeline with the current model as generator, on a fresh slice of the pool."""
        from pipelines import reasoning_data as rd
        from pipelines.script import options
        from schemas.engine.runner import run

        a = self.args
        pool = self.store.read_arrow("loop_problems@pool").to_pylist()
        start = ((round_ - 1) * a.sample_problems) % max(1, len(pool))
        chunk = (pool + pool)[start:start + a.sample_problems]
        from synth.problems import write_jsonl
        paths = [write_jsonl([{k: p[k] for k in ("problem", "answer", "level", "source")} for p in chunk[i:i + 100]],
                             os.path.join(self.out, "inputs", f"round{round_}-{i // 100:03d}.jsonl"))
                 for i in range(0, len(chunk), 100)]
        argv = ["--input", *paths, "--warehouse", self.wh, "--output", "loop_reasoning", "--generator", f"builtin:{ckpt}",
                "--k", str(a.k), "--max-attempts", str(a.max_attempts), "--temperature", str(a.temperature),
                "--max-tokens", str(a.max_new_tokens), "--system", "", "--samples-table", "loop_cot_samples",
                "--sft-table", "loop_sft", "--pairs-table", "loop_preferences", "--round", str(round_),
                "--seed", str(a.seed + round_), "--batch-size", "64", "--executor", a.executor,
                "--tag", f"round-{round_}", "--quiet"]
        if a.num_cpus:
            argv += ["--num-cpus", str(a.num_cpus)]
        args = rd.parser().parse_args(argv)
        pipeline, inputs = rd.build(args)
        res = run(pipeline, options(args, inputs))
        snaps, counts = rd.publish_tables(self.store, f"loop_reasoning@{res.snapshot_id}", args)
        self.store.tag(f"loop_sft@{snaps['loop_sft']}", f"sft-round-{round_}", replace=True)
        self.store.tag(f"loop_preferences@{snaps['loop_preferences']}", f"dpo-round-{round_}", replace=True)
        log(f"round {round_} sampling: {counts['samples']['samples']} samples, "
            f"{counts['samples'].get('verdict:correct', 0)} correct, {counts['sft']['rows']} SFT rows, "
            f"{counts['pairs']['pairs']} pairs")
        return {"sft": f"loop_sft@sft-round-{round_}", "pairs": f"loop_preferences@dpo-round-{round_}",
                "counts": counts}

    def dpo(self, round_: int, init: str, pairs_ref: str, trained_on: list[str]):
        from model import checkpoint
        from model.config import TrainConfig
        from model.dpo import train_dpo

        a = self.args
        pairs = self.store.read_arrow(pairs_ref, columns=["prompt", "chosen", "rejected"]).to_pylist()
        n_held = max(1, len(pairs) // 10) if len(pairs) >= 10 else 0
        model, tok, _ = checkpoint.load(init, device=str(self.device))
        cfg = TrainConfig(beta=a.beta, dpo_lr=a.dpo_lr, dpo_steps=a.dpo_steps, pairs_per_batch=16, seed=a.seed,
                          rpo_alpha=a.rpo_alpha)
        path = os.path.join(self.out, f"round{round_}-dpo")
        res = train_dpo(model, tok, pairs[n_held:], pairs[:n_held], cfg, path, trained_on + [pairs_ref], self.device,
                        progress=not a.quiet)
        log(f"round {round_} DPO on {len(pairs) - n_held} pairs: held-out margin "
            f"{res['heldout_before'].get('reward_margin', 0):.3f} → {res['heldout_after'].get('reward_margin', 0):.3f}, "
            f"accuracy {res['heldout_before'].get('accuracy', 0):.2f} → {res['heldout_after'].get('accuracy', 0):.2f}")
        return model, tok, path, res

    def run(self) -> dict:
        from model.sft import plot_loss
        from model.tokenizer import ChatTokenizer

        a = self.args
        pool_ref, held = self.problems()
        teacher = self.teacher_tables()
        filtered, unfiltered = self.conversations(teacher["loop_sft"]), self.conversations(teacher["loop_sft_unfiltered"])
        tok = ChatTokenizer.train((m["content"] for c in unfiltered for m in c), vocab_size=a.vocab_size)
        histories = {}
        # round 0: the teacher's verifier-filtered data, from scratch
        model, tok, ck, res = self.train("round0-sft", filtered, [teacher["loop_sft"]], a.sft_steps, a.lr, tok=tok)
        histories["round 0 SFT (filtered)"] = res["history"]
        ev = self.evaluate(model, tok, held)
        self.register(ck, 0, "sft", ev, ["model-round-0"])
        rounds = [{"round": 0, "sft_rows": len(filtered), "after_sft": ev, "after_dpo": None,
                   "packing_efficiency": res["packing_efficiency"], "tokens_per_s": res["tokens_per_s"]}]
        log(f"round 0: held-out accuracy {ev['accuracy']:.3f} {ev['by_level']}")
        if not a.no_ablation:
            m_u, _, ck_u, res_u = self.train("ablation-unfiltered-sft", unfiltered, [teacher["loop_sft_unfiltered"]],
                                             a.sft_steps, a.lr, tok=tok)
            histories["round 0 SFT (unfiltered)"] = res_u["history"]
            ev_u = self.evaluate(m_u, tok, held)
            self.register(ck_u, 0, "sft-unfiltered", ev_u, ["model-unfiltered"])
            self.record["ablation"] = {"filtered": ev, "unfiltered": ev_u, "filtered_rows": len(filtered),
                                       "unfiltered_rows": len(unfiltered), "steps": a.sft_steps,
                                       "tokens_per_batch": a.tokens_per_batch}
            log(f"ablation: filtered {ev['accuracy']:.3f} vs unfiltered {ev_u['accuracy']:.3f}")
        current, trained = ck, [teacher["loop_sft"]]
        for r in range(1, a.rounds + 1):
            refs = self.sample(r, current)
            convs = self.conversations(refs["sft"])
            mix = convs + filtered[:max(len(convs), a.teacher_mix)]  # keep the teacher data in view: no forgetting
            model, tok, ck, res = self.train(f"round{r}-sft", mix, trained + [refs["sft"]], a.rft_steps, a.rft_lr,
                                             init=current)
            histories[f"round {r} SFT"] = res["history"]
            ev_sft = self.evaluate(model, tok, held)
            snap_sft = self.register(ck, r, "sft", ev_sft, [f"model-round-{r}-sft"])
            rec = {"round": r, "sft_rows": len(convs), "mix_rows": len(mix), "after_sft": ev_sft, "after_dpo": None,
                   "pairs": refs["counts"]["pairs"]["pairs"], "sampling": refs["counts"]["samples"]}
            current, trained, carried = ck, trained + [refs["sft"]], snap_sft
            if refs["counts"]["pairs"]["pairs"] >= a.min_pairs:
                dev_sft = self.evaluate(model, tok, self.dev)["accuracy"]
                model, tok, ck, dres = self.dpo(r, ck, refs["pairs"], trained)
                ev_dpo = self.evaluate(model, tok, held)
                dev_dpo = self.evaluate(model, tok, self.dev)["accuracy"]
                snap_dpo = self.register(ck, r, "dpo", ev_dpo, [f"model-round-{r}-dpo"])
                rec.update(after_dpo=ev_dpo, dpo={k: dres[k] for k in ("pairs", "heldout_before", "heldout_after")},
                           dev={"sft": dev_sft, "dpo": dev_dpo})
                if dev_dpo >= dev_sft or not a.keep_best:
                    current, trained, carried = ck, trained + [refs["pairs"]], snap_dpo
            rec["continues_from"] = "dpo" if current.endswith("-dpo") else "sft"
            self.store.tag(f"models@{carried}", f"model-round-{r}", replace=True)
            rounds.append(rec)
            log(f"round {r}: held-out accuracy after SFT {ev_sft['accuracy']:.3f}"
                + (f", after DPO {rec['after_dpo']['accuracy']:.3f}" if rec["after_dpo"] else ""))
        self.record["rounds"] = rounds
        self.record["final_checkpoint"] = current
        self.record["seconds"] = round(time.perf_counter() - self.t0, 1)
        self.record["loss_png"] = plot_loss(histories, os.path.join(self.out, "loss.png"))
        self.record["accuracy_png"] = plot_accuracy(self.record, os.path.join(self.out, "accuracy.png"))
        with open(os.path.join(self.out, "record.json"), "w") as f:
            json.dump(self.record, f, indent=1, default=str)
        return self.record


def plot_accuracy(record: dict, path: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs, ys, labels = [], [], []
    for r in record["rounds"]:
        for stage in ("after_sft", "after_dpo"):
            if r.get(stage):
                xs.append(len(xs))
                ys.append(r[stage]["accuracy"])
                labels.append(f"r{r['round']} {stage[6:]}")
    ax.plot(xs, ys, "o-", label="held-out accuracy (filtered data)")
    levels = sorted({k for r in record["rounds"] for k in r["after_sft"]["by_level"]})
    for lv in levels:  # by difficulty level, thinner
        ly = [r[st]["by_level"].get(lv) for r in record["rounds"] for st in ("after_sft", "after_dpo") if r.get(st)]
        ax.plot(xs, ly, ".--", lw=0.8, label=f"level {lv}")
    if record.get("ablation"):
        ax.axhline(record["ablation"]["unfiltered"]["accuracy"], color="grey", ls="--", label="round 0 on unfiltered data")
    ax.set_xticks(xs, labels)
    ax.set_ylabel("exact match")
    ax.legend(fontsize=7, loc="best", framealpha=0.6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_table(record: dict) -> None:
    from pipelines.report import _table, console
    rows = []
    for r in record["rounds"]:
        levels = sorted(r["after_sft"]["by_level"])
        for stage in ("after_sft", "after_dpo"):
            ev = r.get(stage)
            if ev:
                rows.append([f"round {r['round']}", stage[6:].upper(), f"{ev['accuracy']:.3f}",
                             " ".join(f"L{k}={ev['by_level'][k]:.2f}" for k in levels),
                             str(r.get("sft_rows", "")), str(r.get("pairs", ""))])
    if record.get("ablation"):
        ab = record["ablation"]
        rows.append(["ablation", "unfiltered SFT", f"{ab['unfiltered']['accuracy']:.3f}",
                     " ".join(f"L{k}={v:.2f}" for k, v in ab["unfiltered"]["by_level"].items()),
                     str(ab["unfiltered_rows"]), ""])
    console.print(_table(f"held-out exact match ({record['heldout']['n']} problems, seed {record['seed']}, "
                         f"{record['seconds']:.0f} s)", ["", "after", "accuracy", "by level", "SFT rows", "pairs"], rows))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--warehouse", default=default_warehouse())
    p.add_argument("--run", default=None, help="run name (checkpoints under <warehouse>/_loop/<run>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--executor", choices=["ray", "local"], default="ray")
    p.add_argument("--num-cpus", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads for training (default: all cores)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when present)")
    p.add_argument("--quiet", action="store_true")
    g = p.add_argument_group("data")
    g.add_argument("--train-problems", type=int, default=4000)
    g.add_argument("--eval-problems", type=int, default=300)
    g.add_argument("--dev-problems", type=int, default=150, help="dev set for choosing SFT vs DPO per round")
    g.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3])
    g.add_argument("--teacher-error-rate", type=float, default=0.3)
    g.add_argument("--no-ablation", action="store_true", help="skip training on unfiltered teacher data")
    g = p.add_argument_group("model")
    g.add_argument("--vocab-size", type=int, default=512)
    g.add_argument("--dim", type=int, default=128)
    g.add_argument("--layers", type=int, default=4)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--kv-heads", type=int, default=2)
    g.add_argument("--ffn-dim", type=int, default=352)
    g.add_argument("--max-seq-len", type=int, default=256)
    g.add_argument("--rope-fraction", type=float, default=0.75)
    g = p.add_argument_group("training")
    g.add_argument("--sft-steps", type=int, default=500)
    g.add_argument("--lr", type=float, default=3e-3)
    g.add_argument("--tokens-per-batch", type=int, default=4096)
    g.add_argument("--packing", choices=["bfd", "pad"], default="bfd")
    g.add_argument("--seq-len", type=int, default=128, help="packed row length")
    g.add_argument("--rft-steps", type=int, default=150)
    g.add_argument("--rft-lr", type=float, default=1e-3)
    g.add_argument("--teacher-mix", type=int, default=1000, help="teacher conversations mixed into each RFT round")
    g.add_argument("--dpo-steps", type=int, default=40)
    g.add_argument("--dpo-lr", type=float, default=1e-5,
                   help="higher rates lowered held-out accuracy of the tiny model (bench/README.md)")
    g.add_argument("--beta", type=float, default=0.1)
    g.add_argument("--rpo-alpha", type=float, default=1.0, help="weight of the chosen answer's NLL in the DPO loss")
    g.add_argument("--min-pairs", type=int, default=20, help="fewer pairs than this: skip DPO that round")
    g.add_argument("--no-keep-best", dest="keep_best", action="store_false",
                   help="always continue from the DPO model (default: from the SFT model when DPO scores lower "
                        "on the dev problems)")
    g = p.add_argument_group("sampling")
    g.add_argument("--sample-problems", type=int, default=600, help="training problems sampled per round")
    g.add_argument("--k", type=int, default=4)
    g.add_argument("--max-attempts", type=int, default=1)
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--max-new-tokens", type=int, default=96)
    return p


def run_main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    record = Loop(args).run()
    print_table(record)
    print(f"record: {os.path.join(os.path.abspath(args.warehouse), '_loop', record['run'], 'record.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main())
