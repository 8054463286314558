"""What the loop and its side chain share: one process's seeded torch setup, the warehouse, and
the model steps both run (SFT with dev-set model choice, held-out and dev scoring, registering a
checkpoint in the `models` table). The round driver (`pipelines/loop_rounds.py`) and the side
chain (`pipelines/loop_side.py`) each hold a `Bench`; with two workers each process has its own,
built from the same `LoopConfig`, so both seed and score exactly as one process would.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, TypedDict

import pyarrow as pa

from pipelines.loop_config import LoopConfig
from pipelines.loop_profile import PhaseTimer
from schemas.store import Store
from schemas.tables import MESSAGES, field, schema

MODELS = schema([
    field("id", pa.string(), required=True), field("path", pa.string()), field("round", pa.int32(), stats="category"),
    field("stage", pa.string(), stats="category"), field("step", pa.int32()),
    field("trained_on", pa.list_(pa.string())),
    field("accuracy", pa.float32(), stats="hist:0:1:20"), field("metrics", pa.string()), field("run", pa.string()),
], id_fields=["id", "stage", "run"])
# conversations the loop trains on that no pipeline wrote: a round's mix (for Ray Train, which reads
# a table version) and the teacher's solutions to a round's fresh problems (the ceiling arm)
LOOP_TRAIN = schema([field("id", pa.string(), required=True), field("messages", MESSAGES, required=True)],
                    id_fields=["messages"])


def publish_conversations(store: Store, table: str, convs: list[list[dict]], source: list[str], *, run: str,
                          what: str, pipeline: str) -> str:
    """`convs` as one version of `table` (replacing the last) with `source` as its lineage; returns
    its `table@snapshot` ref. The same conversations for the same run and purpose publish once."""
    import hashlib

    from model.train_ray import doc_key
    from pipelines.derived import publish_derived
    keys = [doc_key(c) for c in convs]
    digest = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
    snap = publish_derived(store, table, LOOP_TRAIN, pa.table({"id": keys, "messages": convs}),
                           source=",".join(source), pipeline=pipeline,
                           config={"run": run, "what": what, "content": digest},
                           rows_in=len(convs), used=len(convs), reasons={}, unit="conversations")
    return f"{table}@{snap}"


def train_on_ray(store: Store, convs: list[list[dict]], trained_on: list[str], init: str, path: str, tcfg, *,
                 workers: int, resources: str, threads: int | None, run: str, what: str,
                 pipeline: str, lora=None) -> tuple[str, dict[str, Any]]:
    """A loop's SFT step through Ray Train (model/train_ray.py, what `curate train` runs): Ray Train
    reads a table version, so `convs` become one version of `loop_train` (lineage: `trained_on`, the
    data they came from) and the checkpoint at `path` is trained on it. Returns (that version's
    ref, train_ray's summary). `lora` (a LoRAConfig): adapters on the frozen init, merged in the checkpoint."""
    from model.train_ray import parse_resources, train_ray
    ref = publish_conversations(store, "loop_train", convs, trained_on, run=run, what=what, pipeline=pipeline)
    return ref, train_ray(store, ref, init, path, tcfg, workers=workers, resources=parse_resources(resources),
                          threads=threads, lora=lora)


class BestDev(TypedDict):
    """With `early_stop`, what `Bench.train` keeps of the dev scores so far."""
    acc: float
    step: int
    state: dict[str, Any] | None  # the best step's weights (a detached copy)
    bad: int  # scores since the best that were not better
    curve: list[tuple[int, float]]  # (step, dev accuracy)
    by_level: dict | None


def log(msg: str) -> None:
    print(f"[loop {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def conv_key(c: list[dict]) -> str:
    return json.dumps(c, sort_keys=True)


class Bench:
    """One process's half of the loop: reproducible on one machine and thread count (seeds
    everywhere, deterministic kernels). `held` and `dev` are set by whoever built the problems."""

    def __init__(self, cfg: LoopConfig):
        import random

        import numpy as np
        import torch

        from model.runtime import setup

        self.cfg = cfg
        self.wh = os.path.abspath(cfg.warehouse)
        self.store = Store(self.wh)
        self.run_name = cfg.run or f"loop-s{cfg.seed}"
        self.out = os.path.join(self.wh, "_loop", self.run_name)
        os.makedirs(self.out, exist_ok=True)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        self.device, self.autocast = setup(cfg.threads, cfg.device)
        self.timer = PhaseTimer()
        self.profile = self.timer.wall      # wall seconds by phase
        self.profile_cpu = self.timer.cpu   # CPU seconds of this process by phase
        self.held: list[dict] = []
        self.dev: list[dict] = []

    def timed(self, phase: str):
        """Context manager adding the wall and CPU seconds of a block to `profile[phase]` and
        `profile_cpu[phase]`; a phase timed inside it (dev scoring while training) counts in its own."""
        return self.timer(phase)

    def conversations(self, ref: str) -> list[list[dict]]:
        """A table's conversations in a fixed order (whatever order the executor wrote them in)."""
        convs = [[{"role": m["role"], "content": m["content"]} for m in msgs]
                 for msgs in self.store.read_arrow(ref, columns=["messages"]).column("messages").to_pylist()]
        return sorted(convs, key=conv_key)

    def publish_conversations(self, table: str, convs: list[list[dict]], source: list[str], what: str) -> str:
        """`convs` as one version of `table` (replacing the last); returns its `table@snapshot` ref."""
        return publish_conversations(self.store, table, convs, source, run=self.run_name, what=what,
                                     pipeline="reasoning_loop")

    # ---- training -------------------------------------------------------------------
    def _new_model(self, tok):
        import torch

        from model.config import ModelConfig
        from model.transformer import Transformer
        c = self.cfg
        torch.manual_seed(c.seed)
        return Transformer(ModelConfig(vocab_size=tok.vocab_size, dim=c.dim, n_layers=c.layers, n_heads=c.heads,
                                       n_kv_heads=c.kv_heads, ffn_dim=c.ffn_dim, max_seq_len=c.max_seq_len,
                                       rope_fraction=c.rope_fraction)).to(self.device)

    def _reused(self, name: str, path: str, cfg, trained_on: list[str]):
        """`--reuse-checkpoints`: the same run, data and settings give the same weights (reproducible);
        only a from-scratch round 0 is reused, so no init."""
        from model import checkpoint
        from model.sft import final_loss, read_metrics
        meta = checkpoint.same_inputs(path, cfg.to_dict(), trained_on)
        if meta is None:
            return None
        model, tok, _ = checkpoint.load(path, device=str(self.device))
        log(f"{name}: reused {path} (step {meta['step']})")
        losses = [h["loss"] for h in read_metrics(path)]
        return model, tok, path, {"steps": meta["step"], "best_step": meta["step"], "history": [],
                                  "dev_curve": meta["metrics"].get("dev_curve", []), "tokens": None,
                                  "tokens_per_s": None,
                                  "final_loss": final_loss(losses) if losses else meta["metrics"].get("loss"),
                                  "dev_by_level": meta["metrics"].get("dev_by_level"), "reused": True}

    def train(self, name: str, convs: list[list[dict]], trained_on: list[str], steps: int, lr: float,
              init: str | None = None, tok=None, early_stop: bool = False):
        """SFT from `init` (or from scratch); with `early_stop` the dev set is scored every
        `--eval-every` steps and the best weights are kept. By default training runs all `steps`:
        one dev score over 300 problems has an SE of ~2.5 points, so a stop after `--patience` worse
        scores once ended seed 1's round 0 at a noisy peak 600 steps early (held-out 0.246 against
        0.336 when run to the end). With `--patience N` it stops, but never before `--min-steps`:
        dev accuracy sits near zero for the first few hundred steps."""
        from model import checkpoint
        from model.config import TrainConfig
        from model.sft import train_sft

        c = self.cfg
        if init:
            model, tok, _ = checkpoint.load(init, device=str(self.device))
        else:
            model = self._new_model(tok)
        tpb = c.round_tokens_per_batch if init else c.tokens_per_batch
        tcfg = TrainConfig(lr=lr, steps=steps, warmup_steps=min(30, steps // 10 + 1), tokens_per_batch=tpb,
                           packing=c.packing, seq_len=c.seq_len, seed=c.seed)
        path = os.path.join(self.out, name)
        if init and c.train_workers:
            return self._train_ray(name, convs, trained_on, tcfg, init, path)
        if c.reuse_checkpoints and init is None:
            reused = self._reused(name, path, tcfg, trained_on)
            if reused:
                return reused
        best: BestDev = {"acc": -1.0, "step": 0, "state": None, "bad": 0, "curve": [], "by_level": None}

        def on_step(rec: dict) -> bool:
            every = c.eval_every * (1 if rec["step"] >= c.min_steps else 4)  # before it can stop: a coarser curve
            if not early_stop or rec["step"] % every:
                return False
            with self.timed("evaluation"):  # counted as evaluation, not training
                ev = self.evaluate_dev(model, tok)
            acc = ev["accuracy"]
            model.train()
            best["curve"].append((rec["step"], round(acc, 4)))
            if acc > best["acc"]:
                best["acc"], best["step"], best["bad"], best["by_level"] = acc, rec["step"], 0, ev["by_level"]
                best["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                best["bad"] += 1
            return 0 < c.patience <= best["bad"] and rec["step"] >= c.min_steps

        t = time.perf_counter()
        with self.timed("training"):
            res = train_sft(model, tok, convs, tcfg, path, trained_on, self.device, self.autocast, resume=False,
                            progress=not c.quiet, on_step=on_step)
            if early_stop and best["state"] is not None and best["step"] != res["steps"]:
                model.load_state_dict(best["state"])
                checkpoint.save(path, model, tok, step=best["step"], train_config=tcfg.to_dict(),
                                trained_on=trained_on, metrics={"dev_accuracy": best["acc"], "dev_curve": best["curve"],
                                                                "dev_by_level": best["by_level"]},
                                extra={"stage": "sft"})
        res["best_step"] = best["step"] if early_stop and best["state"] is not None else res["steps"]
        res["dev_curve"] = best["curve"]
        res["dev_by_level"] = best["by_level"]
        res["tokens_trained"] = res["tokens"]
        log(f"{name}: {res['steps']} steps on {len(convs)} conversations (kept step {res['best_step']}), "
            f"loss {res['final_loss']:.3f}, {res['tokens_per_s'] or 0:.0f} tok/s, {time.perf_counter() - t:.0f} s"
            + (f", dev {best['curve']}" if early_stop else ""))
        return model, tok, path, res

    def _train_ray(self, name: str, convs: list[list[dict]], trained_on: list[str], tcfg, init: str, path: str):
        """`--train-workers N`: the same SFT through Ray Train (model/train_ray.py, what `curate
        train` runs): the conversations become one version of `loop_train` (lineage: the tables they
        came from), the workers read their shards of it and train from `init` with the same config."""
        from model import checkpoint

        c = self.cfg
        assert c.train_workers, "train() takes this path only with --train-workers"
        t = time.perf_counter()
        with self.timed("training"):
            ref, out = train_on_ray(self.store, convs, trained_on, init, path, tcfg, workers=c.train_workers,
                                    resources=c.train_resources, threads=c.threads, run=self.run_name, what=name,
                                    pipeline="reasoning_loop")
        model, tok, _ = checkpoint.load(path, device=str(self.device))
        hist = out["history"]
        res = {"steps": out["steps"], "best_step": out["steps"], "history": hist, "final_loss": out["final_loss"],
               "tokens": sum(h["tokens"] for h in hist), "tokens_per_s": hist[-1]["tokens_per_s"] if hist else None,
               "dev_curve": [], "dev_by_level": None, "train_workers": out["train_workers"], "ray_run": out["run"],
               "trained_table": ref}
        res["tokens_trained"] = res["tokens"]
        log(f"{name}: {res['steps']} steps on {len(convs)} conversations on {c.train_workers} Ray Train worker(s) "
            f"({ref}), loss {res['final_loss']:.3f}, {time.perf_counter() - t:.0f} s")
        return model, tok, path, res

    # ---- scoring --------------------------------------------------------------------
    def evaluate(self, model, tok, sampled: bool = True) -> dict:
        """Held-out greedy pass@1 (+ SE, outcomes), pass@k / maj@k; dev greedy accuracy."""
        from synth.evaluate import evaluate
        with self.timed("evaluation"):
            ev = evaluate(model, tok, self.held, max_new_tokens=self.cfg.max_new_tokens)
            ev["dev"] = self.evaluate_dev(model, tok)["accuracy"]
        if sampled and self.cfg.eval_k > 1:
            ev["sampled"] = self.evaluate_sampled(model, tok)
        return ev

    def evaluate_sampled(self, model, tok) -> dict:
        """pass@k / maj@k on the held-out set (`--eval-k` samples a problem)."""
        from synth.evaluate import evaluate_sampled
        c = self.cfg
        with self.timed("evaluation"):
            return evaluate_sampled(model, tok, self.held, c.eval_k, c.temperature, seed=c.seed,
                                    max_new_tokens=c.max_new_tokens)

    def evaluate_dev(self, model, tok) -> dict:
        """Greedy accuracy on the dev set (early stopping, model choice, the curriculum); the caller times it."""
        from synth.evaluate import evaluate
        return evaluate(model, tok, self.dev, max_new_tokens=self.cfg.max_new_tokens)

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
