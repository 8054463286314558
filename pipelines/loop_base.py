"""The closed loop from a pretrained base (issue 26): the base scored as is, the base after SFT on
verified teacher data (round 0), then rounds that sample the current model on fresh problems,
verify, and train on what is verified, against a compute-matched control, the teacher ceiling
(the loop's steps on the teacher's solutions to the same fresh problems: what a perfect sampler
would give) and the filtered-vs-unfiltered teacher ablation (plus its row-matched arm), as the
from-scratch loop does.

    python pipelines/loop_base.py --base smollm2 --seed 0            # one seed (see bench/README.md)
    python pipelines/reasoning_loop.py --base smollm2 ...            # the same, from the loop's CLI

Why a path of its own next to `pipelines/reasoning_loop.py`: a 135M model costs ~1 CPU-s per
sampled or scored problem and several per trained conversation, so a seed's budget (minutes of
CPU) buys hundreds of problems, not the from-scratch loop's 16,000. The round trips through Ray
tables that the toy loop makes per round cost more than its training here, so this path samples,
verifies and trains in process (`model.sampling`, `synth.verify`, `model.sft`) and writes one
JSON record per seed. Every model goes into the warehouse's `models` table as the from-scratch
loop's do (`--warehouse`, default `schemas.store.default_warehouse()`): the imported base, round
0, the ablation arms, each round's loop, control and ceiling checkpoints, and an HF export of the
last round's loop model at <out>/export, so `curate versions models` shows base → round 0 →
rounds → export with the control and ceiling chains beside it (tags `model-round-N`,
`control-round-N`, `ceiling-round-N`, ...; `seed-S-` before them with `--seeds`).

Everything the model sees goes through the base's own chat template: prompts (a system line
asking for 'The answer is N.' and the problem), teacher conversations, and SFT's assistant-only
loss mask (`TemplateTokenizer.encode_chat`); generation stops at the template's end-of-turn ids.

Problems are `synth.problems_multistep` (`--levels` operations over seven scenarios, by default 1-2,
numbers to 99):
held-out, teacher and every round's fresh problems are drawn from disjoint seeds, and every
teacher and fresh problem is checked against the held-out set by `filters.twins` (numbers and
operation cues) and by its numbers-and-answer key; a twin is redrawn, never trained on.

With `--workers 2` the control chain (the base's score, the ablation arms, the control and
ceiling rounds) runs in a second process beside the loop's chain (round-0 SFT, sampling, the
loop's rounds): each process has one thread and its own seeds, so the numbers are those of
`--workers 1`. The two talk in the from-scratch loop's typed messages (`pipelines/loop_side.py`:
checkpoint paths one way, results the other, each checked for its kind and round on arrival); a
failing control process sends its traceback, and it stops as soon as the loop's process is gone.
With `--workers 1` the same messages pass through a list. Each phase is timed in wall and CPU
seconds (`pipelines/loop_profile.py`, shared with the from-scratch loop).

`--train-workers N` (`--train-resources cpus:1`, per worker) runs every SFT step on N Ray Train
workers, the trainer `curate train` and the from-scratch loop's `--train-workers` use, so a seed's
training can take more cores or GPUs than its two processes have. Ray Train reads a table, so each
step's conversations become a version of `loop_train` in the run's warehouse (<out>/warehouse for a
config without one) with the data names (`teacher:filtered`, `verified:round1`, ...) as its
lineage, and the checkpoint's `trained_on` names that version, as its row in `models` does. It
packs the conversations in their `doc_key` order where the in-process trainer keeps the chain's
order, so its numbers differ from `--train-workers 0`'s as another packing order's would; given
the same order they agree up to float summation order (tests/test_loop_base.py). With `--workers 2`
each process starts its own embedded Ray at its first training step (as `train_ray` does where none
is up), or both join the cluster at RAY_ADDRESS; a run ends the Ray it started. The training
phase's CPU seconds then count the driver, not Ray's workers. With `--lora-rank` each worker trains
the same adapters (model/train_ray.py), merged into the checkpoint as in process.

`--reuse-checkpoints` reruns a seed in its directory keeping the checkpoints whose inputs are the
same: trained from the same weights (the init's id), with the same settings, on data of the same
names, in a directory whose last run drew and sampled the same problems (`REUSE_SAME`). A rerun with
one more round trains that round only (every checkpoint is still scored, and the sampling of
earlier rounds is repeated, so its CPU table is not a fresh run's).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import random
import shutil
import statistics as st
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

from pipelines.loop_integrity import HeldoutLeak
from pipelines.loop_profile import PhaseTimer
from pipelines.loop_side import Kind, Message

SYSTEM = "Solve the problem step by step. End with a line of the form 'The answer is N.'"


@dataclass(frozen=True)
class BaseLoopConfig:
    base: str = "smollm2"                  # HF directory, .gguf file, built-in checkpoint, or smollm2
    out: str = "runs/loop-base"            # this seed's directory (checkpoints, record.json)
    bases: str = ""                        # where imported bases are cached (default <out>/../bases)
    seed: int = 0
    rounds: int = 1
    levels: tuple[int, ...] = (1, 2)
    digits: int = 2
    eval_problems: int = 400               # paired SE ~1.8 points (128 gave ~2.7)
    teacher_problems: int = 160
    teacher_error_rate: float = 0.3
    sample_problems: int = 400             # defaults: configuration E of bench/README's SmolLM2 loop, the
    k: int = 4                             # one that beat its control on 3 of 3 seeds (a second round, F,
    temperature: float = 0.8               # did not add on seed 0)
    max_new_tokens: int = 64
    sft_steps: int = 60                    # round 0 near its plateau: shorter, the control's re-reading wins
    round_steps: int = 30
    tokens_per_batch: int = 1024
    seq_len: int = 512
    lr: float = 1e-4
    rft_lr: float = 3e-5                  # 1e-4 restarted AdamW hard: both arms fell below round 0
    ablation: str = "none"                # none | unfiltered | both (unfiltered and row-matched)
    ceiling: bool = True                  # the teacher-ceiling arm: +17% CPU a seed at these defaults (counted)
    lora_rank: int = 0                    # 0: full fine-tuning
    batch_size: int = 32
    threads: int = 1
    workers: int = 2
    quiet: bool = True
    keep_optimizer: bool = False
    warehouse: str = ""                   # register every model in its `models` table ("": none)
    tag_prefix: str = ""                  # before each model tag ("seed-S-" when seeds share a warehouse)
    train_workers: int = 0                # 0: SFT in this process; N: on N Ray Train workers (model/train_ray.py)
    train_resources: str = "cpus:1"       # per Ray Train worker, as `curate train --train-resources`
    reuse_checkpoints: bool = False       # keep an earlier run's checkpoints whose inputs are the same (`reused`)

    def __post_init__(self) -> None:
        """Settings that cannot run are refused here, in one line, before a seed starts."""
        from model.train_ray import parse_resources

        if self.train_workers < 0:
            raise ValueError(f"--train-workers must be 0 (train in process) or more, got {self.train_workers}")
        parse_resources(self.train_resources)  # its ValueError names --train-resources
        if self.train_workers and self.reuse_checkpoints:
            raise ValueError("--reuse-checkpoints with --train-workers: a Ray Train checkpoint names the loop_train "
                             "version it read, not the data, so it cannot be matched; reuse in-process runs only")

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> "BaseLoopConfig":
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in vars(a).items() if k in names and v is not None}
        d["levels"] = tuple(d.get("levels", cls.levels))
        return cls(**d)


def log(msg: str) -> None:
    print(f"[loop-base {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- problems -------------------------------------------------------------------------------
class Problems:
    """Held-out, teacher and fresh problems of one seed, twin-free against the held-out set."""

    def __init__(self, cfg: BaseLoopConfig):
        from filters.twins import TwinIndex
        from synth.problems_multistep import multistep_problems, structure_key

        self.cfg = cfg
        self.heldout = multistep_problems(cfg.eval_problems, seed=cfg.seed + 7919, levels=cfg.levels,
                                          digits=cfg.digits)
        self.protected = TwinIndex((f"heldout/{i}", p["problem"]) for i, p in enumerate(self.heldout))
        self.protected_keys = {structure_key(p) for p in self.heldout}
        self.seen = TwinIndex()
        self.redrawn = {"teacher": 0, "fresh": 0}
        self._fresh: dict[int, list[dict]] = {}  # round → its draw (a second draw would meet the first as twins)
        rng = random.Random(cfg.seed * 1_000_003 + 17)
        self.teacher = self._draw(rng, cfg.teacher_problems, cfg.teacher_error_rate, "teacher")

    def is_protected(self, p: dict) -> bool:
        from synth.problems_multistep import structure_key
        return self.protected.twin_of(p["problem"]) is not None or structure_key(p) in self.protected_keys

    def _draw(self, rng: random.Random, n: int, error_rate: float, kind: str) -> list[dict]:
        from synth.problems_multistep import multistep_problem

        out: list[dict] = []
        while len(out) < n:
            p = multistep_problem(rng, rng.choice(self.cfg.levels), error_rate, self.cfg.digits)
            if self.is_protected(p) or self.seen.twin_of(p["problem"]) is not None:
                self.redrawn[kind] += 1
                continue
            self.seen.add(f"{kind}/{len(out)}", p["problem"])
            out.append(p)
        return out

    def _fresh_rows(self, round_: int) -> list[dict]:
        """Round `round_`'s draw, once per process and rounds in order (a draw redraws twins of the
        earlier ones), so both processes draw the same problems: the loop samples them, the
        ceiling trains on the teacher's solutions to them."""
        for r in range(len(self._fresh) + 1, round_ + 1):
            rng = random.Random(self.cfg.seed * 1_000_003 + 1000 + r)
            self._fresh[r] = self._draw(rng, self.cfg.sample_problems, 0.0, "fresh")
        return self._fresh[round_]

    def fresh(self, round_: int) -> list[dict]:
        """`sample_problems` answer-only problems never seen in training and never held-out twins."""
        return [{k: p[k] for k in ("problem", "answer", "level", "source")} for p in self._fresh_rows(round_)]

    def fresh_solutions(self, round_: int) -> list[dict]:
        """The teacher's worked solutions to round `round_`'s fresh problems (drawn without errors)."""
        return self._fresh_rows(round_)

    def check(self, problems: list[dict], what: str) -> None:
        """Raise HeldoutLeak when any of `problems` is a held-out problem or its twin."""
        bad = [p["problem"] for p in problems if self.is_protected(p)]
        if bad:
            raise HeldoutLeak(f"{len(bad)} {what} problems are held-out twins, e.g. {bad[0]!r}")


def messages(problem: str, answer: str | None = None) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": problem}]
    return msgs + ([{"role": "assistant", "content": answer}] if answer is not None else [])


def teacher_conversations(rows: list[dict], filtered: bool) -> list[list[dict]]:
    """The teacher's worked solutions as conversations; `filtered` keeps those the verifier passes."""
    from synth.verify import CORRECT, RuleVerifier

    v = RuleVerifier(use_math_verify=False)
    return [messages(p["problem"], p["reference_cot"]) for p in rows
            if not filtered or v(p["reference_cot"], p["answer"]).verdict == CORRECT]


# ---- models ---------------------------------------------------------------------------------
def resolve_base(cfg: BaseLoopConfig) -> str:
    """A built-in checkpoint directory for `cfg.base`, importing an HF directory / GGUF / `smollm2`
    once into the bases cache (an import is ~20 CPU-s and 540 MB; every seed reuses it)."""
    from model.hf_format import import_checkpoint

    if os.path.exists(os.path.join(cfg.base, "checkpoint.json")):
        return os.path.abspath(cfg.base)
    cache = cfg.bases or os.path.join(os.path.dirname(os.path.abspath(cfg.out)), "bases")
    name = os.path.basename(os.path.normpath(cfg.base)).replace(".gguf", "")
    path = os.path.join(cache, name)
    if not os.path.exists(os.path.join(path, "checkpoint.json")):
        log(f"importing {cfg.base} → {path}")
        import_checkpoint(cfg.base, path)
    return path


def score(model, tok, problems: list[dict], cfg: BaseLoopConfig) -> dict:
    """Greedy exact match on `problems` with the template's prompt (held-out scoring)."""
    from synth.evaluate import evaluate
    return evaluate(model, tok, problems, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, system=SYSTEM)


def sample_verified(model, tok, problems: list[dict], cfg: BaseLoopConfig, round_: int) -> tuple[list, dict]:
    """k samples per problem at the loop's temperature, each from its own seed; the verified ones
    (a stated answer equal to the known one, not cut off) as conversations, and counts."""
    from model.sampling import generate
    from synth.verify import CORRECT, RuleVerifier

    v = RuleVerifier(use_math_verify=False)
    jobs = [(i, j) for i in range(len(problems)) for j in range(cfg.k)]
    prompts = {i: tok.encode_chat(messages(p["problem"]), add_generation_prompt=True)[0]
               for i, p in enumerate(problems)}
    convs, seen, solved = [], set(), set()
    n_ok, tokens = 0, 0
    for s in range(0, len(jobs), cfg.batch_size):
        chunk = jobs[s:s + cfg.batch_size]
        seeds = [(cfg.seed << 40) + (round_ << 24) + i * cfg.k + j for i, j in chunk]
        outs = generate(model, [prompts[i] for i, _ in chunk], max_new_tokens=cfg.max_new_tokens,
                        stop_id=tok.stop_ids, pad_id=tok.pad, temperature=cfg.temperature, top_p=1.0, seed=seeds)
        for (i, _), (ids, reason) in zip(chunk, outs):
            tokens += len(ids)
            text = tok.decode(ids).strip()
            if reason != "stop" or v(text, problems[i]["answer"]).verdict != CORRECT:
                continue
            n_ok += 1
            solved.add(i)
            if (i, text) not in seen:  # the same solution twice teaches nothing new
                seen.add((i, text))
                convs.append(messages(problems[i]["problem"], text))
    stats = {"problems": len(problems), "samples": len(jobs), "correct": n_ok, "distinct_correct": len(convs),
             "solved": len(solved), "sample_accuracy": round(n_ok / max(1, len(jobs)), 4),
             "pass_at_k": round(len(solved) / max(1, len(problems)), 4), "tokens": tokens}
    return convs, stats


def run_name(cfg: BaseLoopConfig) -> str:
    return f"loop-base-s{cfg.seed}"


def train(init: str, convs: list[list[dict]], out: str, steps: int, lr: float, cfg: BaseLoopConfig,
          trained_on: list[str]) -> tuple[object, object, dict]:
    """SFT of the checkpoint at `init` on `convs` (assistant-only loss through the template) for
    `steps` steps of `tokens_per_batch` packed tokens; returns the model, tokenizer and summary."""
    import torch

    from model import checkpoint
    from model.config import TrainConfig
    from model.sft import train_sft

    tcfg = TrainConfig(lr=lr, steps=steps, warmup_steps=max(1, steps // 10), tokens_per_batch=cfg.tokens_per_batch,
                       packing="bfd", seq_len=cfg.seq_len, seed=cfg.seed)
    lora = None
    if cfg.lora_rank:
        from model.lora import LoRAConfig
        lora = LoRAConfig(rank=cfg.lora_rank, alpha=2.0 * cfg.lora_rank)
    if cfg.train_workers:
        return train_on_ray(init, convs, out, tcfg, cfg, trained_on, lora)
    if cfg.reuse_checkpoints:
        reused = reused_checkpoint(init, out, tcfg.to_dict(), trained_on, len(convs))
        if reused is not None:
            return reused
    model, tok, _ = checkpoint.load(init)
    res = train_sft(model, tok, convs, tcfg, out, trained_on, torch.device("cpu"), resume=False,
                    progress=not cfg.quiet, lora=lora)
    if not cfg.keep_optimizer and os.path.exists(os.path.join(out, "optimizer.pt")):
        os.remove(os.path.join(out, "optimizer.pt"))  # 1 GB a checkpoint; nothing here resumes
    summary = {"steps": res["steps"], "tokens": res["tokens"], "final_loss": round(res["final_loss"], 4),
               "conversations": len(convs), "losses": [h["loss"] for h in res["history"]]}
    return model, tok, summary


# what a checkpoint's data and sampled rows depend on besides its init, settings and data names:
# `--reuse-checkpoints` keeps an earlier run's checkpoints only when these are all the same
REUSE_SAME = ("seed", "levels", "digits", "eval_problems", "teacher_problems", "teacher_error_rate", "sample_problems",
              "k", "temperature", "max_new_tokens", "batch_size", "threads", "lora_rank")


def reusable_run(cfg: BaseLoopConfig) -> bool:
    """Whether the seed directory's last run drew the same problems and sampled them the same way
    (its config.json against `REUSE_SAME`): only then can its checkpoints stand for this run's."""
    path = os.path.join(cfg.out, "config.json")
    if not cfg.reuse_checkpoints or not os.path.exists(path):
        return False
    with open(path) as f:
        last = json.load(f)
    now = json.loads(json.dumps(asdict(cfg)))  # tuples as lists, as config.json has them
    return all(last.get(k) == now[k] for k in REUSE_SAME)


def reused_checkpoint(init: str, out: str, train_config: dict, trained_on: list[str],
                      conversations: int) -> tuple | None:
    """The checkpoint already at `out`, with its training summary, when training it again would
    give the same weights (`checkpoint.same_inputs`; what the data names hold is fixed by
    `reusable_run`). None otherwise. A one-seed rerun with one more round then costs the new round
    only; the held-out scores are computed again all the same."""
    from model import checkpoint
    from model.sft import final_loss, read_metrics

    meta = checkpoint.same_inputs(out, train_config, trained_on, init)
    if meta is None:
        return None
    model, tok, _ = checkpoint.load(out)
    hist = read_metrics(out)
    log(f"{os.path.basename(os.path.normpath(out))}: reused (id {meta['id']}, step {meta['step']})")
    losses = [h["loss"] for h in hist]
    return model, tok, {"steps": meta["step"], "tokens": sum(h.get("tokens", 0) for h in hist),
                        "final_loss": round(final_loss(losses), 4) if losses else meta["metrics"].get("loss"),
                        "conversations": conversations, "losses": losses, "reused": True}


def train_warehouse(cfg: BaseLoopConfig) -> str:
    """Where `--train-workers` publishes what it trains on: the run's warehouse, else one of the seed's own."""
    return os.path.abspath(cfg.warehouse or os.path.join(cfg.out, "warehouse"))


def train_on_ray(init: str, convs: list[list[dict]], out: str, tcfg, cfg: BaseLoopConfig,
                 trained_on: list[str], lora=None) -> tuple[object, object, dict]:
    """`train` on `cfg.train_workers` Ray Train workers, as the from-scratch loop's `--train-workers`
    and `curate train` do: the conversations become a version of `loop_train` whose lineage names
    `trained_on`, and the checkpoint's `trained_on` names that version. Ray Train packs the
    conversations in their `doc_key` order, not the order the chain assembled them in; given that
    order it computes the in-process trainer's steps (tests/test_loop_base.py). Ray Train's own
    copies of the run (2 checkpoints with optimizer state, ~1.6 GB each for SmolLM2) go with
    `optimizer.pt` unless `--keep-optimizer`: nothing here resumes."""
    from model import checkpoint
    from pipelines.loop_bench import train_on_ray as on_ray
    from schemas.store import Store

    ref, res = on_ray(Store(train_warehouse(cfg)), convs, trained_on, init, out, tcfg, workers=cfg.train_workers,
                      resources=cfg.train_resources, threads=cfg.threads, run=run_name(cfg),
                      what=os.path.basename(os.path.normpath(out)), pipeline="loop_base", lora=lora)
    if not cfg.keep_optimizer:
        os.remove(os.path.join(out, "optimizer.pt"))
        if os.path.isdir(res["storage"]):
            shutil.rmtree(res["storage"])
    model, tok, _ = checkpoint.load(out)
    hist = res["history"]
    summary = {"steps": res["steps"], "tokens": sum(h["tokens"] for h in hist),
               "final_loss": round(res["final_loss"], 4), "conversations": len(convs),
               "losses": [round(h["loss"], 5) for h in hist],  # to train_sft's 5 places
               "trained_table": ref, "train_workers": res["train_workers"]}
    return model, tok, summary


def load(path: str):
    from model import checkpoint
    model, tok, _ = checkpoint.load(path)
    return model, tok


def _strip(ev: dict) -> dict:
    return {k: ev[k] for k in ("accuracy", "se", "n", "by_level", "outcomes")}


# ---- the two chains -------------------------------------------------------------------------
class Chain:
    """What one process of a seed runs: the loop's chain, the control chain, or (one worker) both in turn."""

    def __init__(self, cfg: BaseLoopConfig, base_ck: str):
        import torch

        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        self.cfg, self.base_ck = cfg, base_ck
        self.prof = PhaseTimer()
        self.data = Problems(cfg)
        self.data.check(self.data.teacher, "teacher")
        self.filtered = teacher_conversations(self.data.teacher, filtered=True)
        self.unfiltered = teacher_conversations(self.data.teacher, filtered=False)

    def path(self, name: str) -> str:
        return os.path.join(self.cfg.out, name)

    def train(self, name: str, init: str, convs: list, steps: int, lr: float, trained_on: list[str]):
        with self.prof("training"):
            model, tok, res = train(init, convs, self.path(name), steps, lr, self.cfg, trained_on)
        log(f"{name}: {res['steps']} steps on {len(convs)} conversations, loss {res['final_loss']:.3f}")
        return model, tok, res

    def score(self, name: str, model, tok) -> dict:
        with self.prof("scoring"):
            ev = score(model, tok, self.data.heldout, self.cfg)
        log(f"{name}: held-out {ev['accuracy']:.3f} ± {ev['se']:.3f} {ev['by_level']}")
        return _strip(ev)

    def control_chain(self, send: Callable[[Kind, int, Any], None], receive: Callable[[Kind, int], Any]) -> None:
        """The scoring and control side, each result sent as it is ready (`send(kind, round,
        result)`): the base as is (SCORE), the ablation arms from the base with round 0's steps
        (ABLATION, one message), round 0's checkpoint scored once the loop sends its path (EVAL 0),
        then per round the control (the loop's steps and tokens per step on the verified teacher
        data only: CONTROL r), the teacher ceiling (CEILING r) and the loop's checkpoint of the
        round (EVAL r). Nothing here feeds the loop, so it can run beside it."""
        cfg = self.cfg
        model, tok = load(self.base_ck)
        send(Kind.SCORE, 0, self.score("base", model, tok))
        del model
        arms: dict[str, dict] = {}
        for arm in {"none": [], "unfiltered": ["unfiltered"], "both": ["unfiltered", "row_matched"]}[cfg.ablation]:
            convs = self.unfiltered
            if arm == "row_matched":  # quantity held fixed: the unfiltered data subsampled to the filtered count
                convs = random.Random(cfg.seed).sample(self.unfiltered, len(self.filtered))
            model, tok, res = self.train(f"ablation-{arm}", self.base_ck, convs, cfg.sft_steps, cfg.lr,
                                         [f"teacher:{arm}"])
            arms[arm] = {**self.score(f"ablation {arm}", model, tok), "rows": len(convs), "train": res}
            del model
        send(Kind.ABLATION, 0, arms)
        send(Kind.EVAL, 0, self.score_checkpoint("round 0", receive(Kind.BASE, 0)))
        ck = self.path("round0-sft")
        solutions: list[list[dict]] = []  # the teacher's solutions to the fresh problems so far (the ceiling's)
        for r in range(1, cfg.rounds + 1):
            model, tok, res = self.train(f"round{r}-control", ck, self.filtered, cfg.round_steps, cfg.rft_lr,
                                         ["teacher:filtered"])
            send(Kind.CONTROL, r, {"round": r, **self.score(f"round {r} control", model, tok), "train": res})
            ck = self.path(f"round{r}-control")
            del model
            if cfg.ceiling:
                send(Kind.CEILING, r, self.ceiling_round(r, solutions))
            send(Kind.EVAL, r, {"round": r, **self.score_checkpoint(f"round {r} loop", receive(Kind.CHECKPOINT, r))})

    def ceiling_round(self, r: int, solutions: list[list[dict]]) -> dict:
        """The teacher ceiling's round r: from its round r-1 checkpoint (round 0's for round 1), the
        loop's steps and learning rate on the teacher data plus the teacher's verified solutions to
        every fresh problem the loop drew in rounds 1..r (where the loop has its own verified
        samples of them): what the loop would reach with a perfect sampler. `solutions` grows."""
        cfg = self.cfg
        rows = self.data.fresh_solutions(r)
        self.data.check(rows, f"round {r} ceiling")
        solutions += teacher_conversations(rows, filtered=True)
        mix = self.filtered + solutions
        init = self.path(f"round{r - 1}-ceiling" if r > 1 else "round0-sft")
        model, tok, res = self.train(f"round{r}-ceiling", init, mix, cfg.round_steps, cfg.rft_lr,
                                     ["teacher:filtered"] + [f"teacher:fresh-round{i}" for i in range(1, r + 1)])
        ev = self.score(f"round {r} ceiling", model, tok)
        return {"round": r, **ev, "rows": len(mix), "solutions": len(solutions), "train": res}

    def score_checkpoint(self, label: str, path: str) -> dict:
        """Score a checkpoint of the loop's chain as saved."""
        model, tok = load(path)
        return self.score(label, model, tok)

    def loop_chain(self, send: Callable[[Kind, int, Any], None]) -> dict:
        """Round 0 (the base after SFT on the verified teacher data), then per round: sample the
        current model on fresh problems, verify, train on the teacher data plus every verified
        sample so far, continuing from the last round's model. Scoring is the other chain's: each
        checkpoint's path is sent to it once written (BASE for round 0, CHECKPOINT r)."""
        cfg = self.cfg
        out: dict[str, Any] = {"rounds": []}
        model, tok, res = self.train("round0-sft", self.base_ck, self.filtered, cfg.sft_steps, cfg.lr,
                                     ["teacher:filtered"])
        out["round0"] = {"train": res, "rows": len(self.filtered)}
        ck, verified = self.path("round0-sft"), []
        send(Kind.BASE, 0, ck)
        for r in range(1, cfg.rounds + 1):
            problems = self.data.fresh(r)
            self.data.check(problems, f"round {r}")
            with self.prof("sampling"):
                convs, stats = sample_verified(model, tok, problems, cfg, r)
            log(f"round {r} sampling: {stats}")
            verified += convs
            del model
            mix = self.filtered + verified
            model, tok, res = self.train(f"round{r}-loop", ck, mix, cfg.round_steps, cfg.rft_lr,
                                         ["teacher:filtered"] + [f"verified:round{i}" for i in range(1, r + 1)])
            out["rounds"].append({"round": r, "sampling": stats, "verified_rows": len(verified), "mix_rows": len(mix),
                                  "train": res})
            ck = self.path(f"round{r}-loop")
            send(Kind.CHECKPOINT, r, ck)
        return out


def collect_control(cfg: BaseLoopConfig, receive: Callable[[Kind, int], Any]) -> dict:
    """The control chain's results, read in the order it sends them (a result out of turn raises
    `SideProtocolError`): the base, the ablation arms, round 0, then per round the control, the
    ceiling and the loop's score."""
    out: dict[str, Any] = {"base": receive(Kind.SCORE, 0)}
    out.update({f"ablation_{arm}": v for arm, v in receive(Kind.ABLATION, 0).items()})
    out["round0"] = receive(Kind.EVAL, 0)
    out["control"], out["ceiling"], out["loop"] = [], [], []
    for r in range(1, cfg.rounds + 1):
        out["control"].append(receive(Kind.CONTROL, r))
        if cfg.ceiling:
            out["ceiling"].append(receive(Kind.CEILING, r))
        out["loop"].append(receive(Kind.EVAL, r))
    return out


def _side_main(cfg: BaseLoopConfig, base_ck: str, inbox, outbox) -> None:
    """The second process: the control chain, each result a message to the loop's process (which
    reads them in order at the end); its profile last (DONE). A failure goes back as ERROR with
    its traceback; the loop process's death ends this one at its next wait for a checkpoint."""
    import traceback

    from pipelines.loop_side import from_parent

    try:
        chain = Chain(cfg, base_ck)
        chain.control_chain(lambda kind, r, payload: outbox.put(Message(kind, r, payload)),
                            lambda kind, r: from_parent(inbox, kind, r))
        outbox.put(Message(Kind.DONE, 0, chain.prof.phases()))
    except BaseException:  # noqa: BLE001  anything, even KeyboardInterrupt, goes back to the loop as ERROR
        outbox.put(Message(Kind.ERROR, 0, traceback.format_exc()))
        raise SystemExit(1) from None


class _InProcess:
    """`--workers 1`: the control chain after the loop's, in this process, through the same
    messages (a list here), so both ways read the results in one order and check it."""

    def __init__(self) -> None:
        self.sent: dict[int, str] = {}  # round → the loop's checkpoint
        self.results: list[Message] = []

    def from_loop(self, kind: Kind, r: int, path: Any) -> None:
        self.sent[r] = path

    def to_control(self, kind: Kind, r: int) -> Any:
        return self.sent[r]

    def from_control(self, kind: Kind, r: int, payload: Any) -> None:
        self.results.append(Message(kind, r, payload))

    def receive(self, kind: Kind, r: int) -> Any:
        from pipelines.loop_side import expect
        return expect(self.results.pop(0), kind, r)


def _write(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=str)
    os.replace(tmp, path)


def _ray_up(cfg: BaseLoopConfig) -> bool:
    if not cfg.train_workers:
        return False
    import ray
    return ray.is_initialized()


def run(cfg: BaseLoopConfig) -> dict:
    """One seed: both chains (in two processes with `workers` 2), then the record."""
    from pipelines.loop_side import SideProcess

    t0, c0 = time.perf_counter(), time.process_time()
    os.makedirs(cfg.out, exist_ok=True)
    base_ck = resolve_base(cfg)
    keep = reusable_run(cfg)  # then its checkpoints stay, and each is reused only where its inputs match
    if cfg.reuse_checkpoints and not keep:
        log(f"--reuse-checkpoints: {cfg.out} holds no run with the same problems and sampling; training everything")
        cfg = replace(cfg, reuse_checkpoints=False)
    for stale in glob.glob(os.path.join(cfg.out, "round*")) + glob.glob(os.path.join(cfg.out, "ablation-*")) + \
            glob.glob(os.path.join(cfg.out, "*.json")) + glob.glob(os.path.join(cfg.out, "export")):
        if keep and os.path.basename(stale).startswith(("round", "ablation-")):
            continue
        if stale != os.path.join(cfg.out, "config.json"):  # a rerun must not score the last run's checkpoints
            if os.path.isdir(stale):
                shutil.rmtree(stale)
            else:
                os.remove(stale)
    _write(os.path.join(cfg.out, "config.json"), asdict(cfg))
    side = SideProcess(_side_main, (cfg, base_ck)) if cfg.workers > 1 else None
    inline = _InProcess()
    chain = Chain(cfg, base_ck)
    ray_was_up = _ray_up(cfg)
    try:
        loop = chain.loop_chain(inline.from_loop if side is None else side.send)
        if side is None:
            chain.control_chain(inline.from_control, inline.to_control)
            ctrl = {**collect_control(cfg, inline.receive), "profile": {}}
        else:
            ctrl = collect_control(cfg, side.receive)
            ctrl["profile"] = side.close()  # joined: its CPU counts in RUSAGE_CHILDREN below
    except BaseException:
        if side is not None:
            side.close(failed=True)  # it must not outlive the run
        raise
    finally:
        if cfg.train_workers and not ray_was_up:
            import ray
            ray.shutdown()  # the embedded Ray this run's training started: its workers must not outlive the run
    record = _record(cfg, chain, base_ck, loop, ctrl)
    if cfg.warehouse:
        with chain.prof("registry"):
            record["models"] = register_models(cfg, base_ck, record)
    import resource
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    record["profile"] = {"loop_process": chain.prof.phases(), "control_process": ctrl.get("profile", {})}
    record["wall_s"] = round(time.perf_counter() - t0, 1)
    record["cpu_s"] = round(time.process_time() - c0 + children.ru_utime + children.ru_stime, 1)
    _write(os.path.join(cfg.out, "record.json"), record)
    return record


def _record(cfg: BaseLoopConfig, chain: Chain, base_ck: str, loop: dict, ctrl: dict) -> dict:
    """The seed's record from both chains' results: per round the loop against the control (the
    gain) and against the teacher ceiling, all paired on the held-out problems."""
    from synth.evaluate import paired

    base, r0 = ctrl["base"], {**ctrl["round0"], **loop["round0"]}
    rounds = [{"round": 0, "loop": r0["accuracy"], "control": r0["accuracy"], "loop_se": r0["se"]}]
    loop_rounds = [{**lp, **ev} for lp, ev in zip(loop["rounds"], ctrl["loop"])]
    ceilings = {c["round"]: c for c in ctrl.get("ceiling", [])}
    for lp, ct in zip(loop_rounds, ctrl["control"]):
        row = {"round": lp["round"], "loop": lp["accuracy"], "control": ct["accuracy"], "loop_se": lp["se"],
               "gain": paired(lp["outcomes"], ct["outcomes"]),
               "vs_round0": paired(lp["outcomes"], r0["outcomes"]), "sampling": lp["sampling"],
               "verified_rows": lp["verified_rows"]}
        ceil = ceilings.get(lp["round"])
        if ceil:
            ceil["paired"] = paired(lp["outcomes"], ceil["outcomes"])  # loop − ceiling
            row.update(ceiling=ceil["accuracy"], loop_vs_ceiling=ceil["paired"],
                       ceiling_vs_control=paired(ceil["outcomes"], ct["outcomes"]))
        rounds.append(row)
    return {"seed": cfg.seed, "config": asdict(cfg), "base_checkpoint": base_ck,
              "heldout": {"n": len(chain.data.heldout), "twins_redrawn": chain.data.redrawn},
              "teacher": {"problems": len(chain.data.teacher), "filtered_rows": len(chain.filtered),
                          "unfiltered_rows": len(chain.unfiltered)},
              "base": base, "round0": r0, "base_to_round0": paired(r0["outcomes"], base["outcomes"]),
            "rounds": rounds, "loop": loop_rounds, "control": ctrl["control"], "ceiling": list(ceilings.values()),
            "ablation": {k[len("ablation_"):]: {**v, "filtered_minus_arm": paired(r0["outcomes"], v["outcomes"])}
                         for k, v in ctrl.items() if k.startswith("ablation_")}}


def register_models(cfg: BaseLoopConfig, base_ck: str, record: dict) -> dict[str, int]:
    """Every model of the seed as a row of the warehouse's `models` table (`curate versions models`
    shows the lineage both ways, from each checkpoint's `init`): the imported base, round 0, the
    ablation arms, each round's loop, control and ceiling checkpoints, and an HF export of the last
    round's loop model at <out>/export. Tagged as the from-scratch loop tags its models, after
    `tag_prefix`. Returns {tag: snapshot}."""
    from model.hf_format import export_checkpoint
    from pipelines.model_registry import register_checkpoint, register_export
    from schemas.store import Store

    store = Store(os.path.abspath(cfg.warehouse))
    snaps = {"model-base": register_checkpoint(store, base_ck, pipeline="curate model import")}  # its own stage
    arms = {"unfiltered": "unfiltered", "row_matched": "unfiltered-row-matched"}
    models = [("model-round-0", "round0-sft", "sft", 0, record["round0"]["accuracy"])]
    models += [(f"model-{arms[a]}", f"ablation-{a}", f"sft-{arms[a]}", 0, v["accuracy"])
               for a, v in record["ablation"].items()]
    for r in record["rounds"][1:]:
        i = r["round"]
        models += [(f"model-round-{i}", f"round{i}-loop", "sft", i, r["loop"]),
                   (f"control-round-{i}", f"round{i}-control", "control", i, r["control"])]
        if "ceiling" in r:
            models.append((f"ceiling-round-{i}", f"round{i}-ceiling", "ceiling", i, r["ceiling"]))
    for tag, name, stage, round_, acc in models:
        snaps[tag] = register_checkpoint(store, os.path.join(cfg.out, name), stage, run=run_name(cfg),
                                         pipeline="loop_base", round_=round_, accuracy=acc)
    last = os.path.join(cfg.out, f"round{cfg.rounds}-loop" if cfg.rounds else "round0-sft")
    export = export_checkpoint(last, os.path.join(cfg.out, "export"))["export"]
    snaps["model-export"] = register_export(store, last, export)
    for tag, snap in snaps.items():
        store.tag(f"models@{snap}", cfg.tag_prefix + tag, replace=True)
    log(f"registered {len(snaps)} models in {cfg.warehouse} (models table), export at {export}")
    return snaps


def report(record: dict) -> str:
    lines = [f"seed {record['seed']}: base {record['base']['accuracy']:.3f} ± {record['base']['se']:.3f}, "
             f"round 0 {record['round0']['accuracy']:.3f} ± {record['round0']['se']:.3f} "
             f"(n={record['heldout']['n']})"]
    for r in record["rounds"][1:]:
        g = r["gain"]
        lines.append(f"  round {r['round']}: loop {r['loop']:.3f}, control {r['control']:.3f}, gain {g['diff']:+.3f} ± "
                     f"{g['se']:.3f} ({g['diff'] / g['se'] if g['se'] else 0:.1f} SE); sampled "
                     f"{r['sampling']['correct']}/{r['sampling']['samples']} correct")
        if "ceiling" in r:
            c = r["loop_vs_ceiling"]
            lines.append(f"    teacher ceiling {r['ceiling']:.3f}: loop − ceiling {c['diff']:+.3f} ± {c['se']:.3f}")
    for arm, v in record["ablation"].items():
        p = v["filtered_minus_arm"]
        lines.append(f"  ablation {arm} ({v['rows']} rows): {v['accuracy']:.3f}; filtered − {arm} {p['diff']:+.3f} ± "
                     f"{p['se']:.3f}")
    prof: dict[str, float] = {}
    for part in record["profile"].values():
        for k, v in part.items():
            prof[k] = prof.get(k, 0.0) + v["cpu_s"]
    by = sorted(prof.items(), key=lambda kv: -kv[1])
    lines.append("  CPU-s by phase: " + ", ".join(f"{k} {v:.0f}" for k, v in by)
                 + f"; total {record['cpu_s']:.0f} CPU-s, {record['wall_s']:.0f} s wall")
    return "\n".join(lines)


# ---- reporting over seeds ------------------------------------------------------------------
def _sd(xs: list[float]) -> float:
    return st.stdev(xs) if len(xs) > 1 else 0.0


def _pm(xs: list[float]) -> str:
    return f"{st.mean(xs):.3f} ± {_sd(xs):.3f}"


def _ceiling_table(records: list[dict], n_rounds: int) -> list[str]:
    """Per round, the teacher ceiling (the loop's steps on the teacher's solutions to the loop's own
    fresh problems) and how far the loop is from it, over the seeds that ran it."""
    rows = []
    for i in range(1, n_rounds):
        rs = [r["rounds"][i] for r in records if "ceiling" in r["rounds"][i]]
        if rs:
            gaps, se = [x["loop_vs_ceiling"]["diff"] for x in rs], st.mean(x["loop_vs_ceiling"]["se"] for x in rs)
            rows.append(f"| round {i} | {len(rs)} | {_pm([x['ceiling'] for x in rs])} | "
                        f"{_pm([x['loop'] for x in rs])} | {st.mean(gaps):+.3f} ± {_sd(gaps):.3f} | {se:.3f} |")
    if not rows:
        return []
    return ["", "| teacher ceiling | seeds | ceiling | loop | loop − ceiling | mean paired SE |",
            "|---|---:|---:|---:|---:|---:|", *rows]


def table(records: list[dict]) -> str:
    """Markdown over seeds: the per-round table over seeds, the per-seed gains, the arms and the profile."""
    n_rounds = min(len(r["rounds"]) for r in records)
    out = [f"{len(records)} seed(s) ({', '.join(str(r['seed']) for r in records)}), "
           f"{records[0]['heldout']['n']} held-out problems each; mean ± sd over seeds", "",
           "| | loop | control | gain (loop − control) | mean paired SE |", "|---|---:|---:|---:|---:|",
           f"| base as is | {_pm([r['base']['accuracy'] for r in records])} | | | |"]
    for i in range(n_rounds):
        rs = [r["rounds"][i] for r in records]
        if i == 0:
            out.append(f"| round 0 (base + teacher SFT) | {_pm([x['loop'] for x in rs])} | | | |")
            continue
        gains = [x["gain"]["diff"] for x in rs]
        out.append(f"| round {i} | {_pm([x['loop'] for x in rs])} | {_pm([x['control'] for x in rs])} | "
                   f"{st.mean(gains):+.3f} ± {_sd(gains):.3f} | {st.mean(x['gain']['se'] for x in rs):.3f} |")
    later = range(1, n_rounds)
    out += ["", "| seed | base | round 0 | " + " | ".join(f"round {i}: verified / samples | loop − round 0 ± SE | "
                                                        f"gain ± SE (z)" for i in later)
            + " | goal (last round ≥ 2 SE) |", "|---" * (3 * len(later) + 4) + "|"]
    for r in records:
        gains = [r["rounds"][i]["gain"] for i in later]
        cells = [f"{r['rounds'][i]['sampling']['distinct_correct']} / {r['rounds'][i]['sampling']['samples']} | "
                 f"{r['rounds'][i]['vs_round0']['diff']:+.3f} ± {r['rounds'][i]['vs_round0']['se']:.3f} | "
                 f"{g['diff']:+.3f} ± {g['se']:.3f} ({g['diff'] / g['se'] if g['se'] else 0:.1f})"
                 for i, g in zip(later, gains)]
        met = bool(gains) and gains[-1]["se"] > 0 and gains[-1]["diff"] >= 2 * gains[-1]["se"]
        out.append(f"| {r['seed']} | {r['base']['accuracy']:.3f} | {r['round0']['accuracy']:.3f} | " + " | ".join(cells)
                   + f" | {'met' if met else 'not met'} |")
    out += _ceiling_table(records, n_rounds)
    arms = sorted({a for r in records for a in r.get("ablation", {})})
    if arms:
        out += ["", "| teacher data at round 0 | rows | held-out | filtered − arm (paired) |", "|---|---:|---:|---:|",
                f"| filtered (verified) | {st.mean(r['teacher']['filtered_rows'] for r in records):.0f} | "
                f"{_pm([r['round0']['accuracy'] for r in records])} | |"]
        for a in arms:
            vs = [r["ablation"][a] for r in records if a in r.get("ablation", {})]
            out.append(f"| {a} | {st.mean(v['rows'] for v in vs):.0f} | {_pm([v['accuracy'] for v in vs])} | "
                       f"{_pm([v['filtered_minus_arm']['diff'] for v in vs])} (SE "
                       f"{st.mean(v['filtered_minus_arm']['se'] for v in vs):.3f}) |")
    prof: dict[str, list[float]] = {}
    for r in records:
        seen: dict[str, float] = {}
        for part in r["profile"].values():
            for k, v in part.items():
                seen[k] = seen.get(k, 0.0) + v["cpu_s"]
        for k, v in seen.items():
            prof.setdefault(k, []).append(v)
    total = [r["cpu_s"] for r in records]
    out += ["", "| phase | CPU-s per seed (mean ± sd) | share |", "|---|---:|---:|"]
    for k, v in sorted(prof.items(), key=lambda kv: -st.mean(kv[1])):
        out.append(f"| {k} | {st.mean(v):.0f} ± {_sd(v):.0f} | {st.mean(v) / st.mean(total):.0%} |")
    out.append(f"| total (both processes, incl. loading) | {st.mean(total):.0f} ± {_sd(total):.0f} | |")
    out.append(f"| wall | {st.mean(r['wall_s'] for r in records):.0f} s | |")
    return "\n".join(out)


# What each of BaseLoopConfig's numbers does, for --help (the formatter prints its default beside it).
FLAG_HELP = {
    "digits": "digits of the problems' numbers (the second difficulty knob)",
    "eval_problems": "held-out problems per seed, scored for every model (paired SE ~1.8 points at 400)",
    "teacher_problems": "problems with a teacher's worked solution (round 0's data before the verifier)",
    "teacher_error_rate": "share of the teacher's solutions that go wrong at one step (the verifier must catch them)",
    "sample_problems": "fresh problems a round, each sampled --k times from the current model",
    "k": "samples per fresh problem",
    "temperature": "sampling temperature of the rounds (held-out scoring is greedy)",
    "max_new_tokens": "tokens a sample or a held-out answer may take before it is cut off",
    "sft_steps": "round 0 and the ablation arms: SFT steps from the base on the teacher data",
    "round_steps": "steps of each round, the same for the loop, the control and the ceiling",
    "tokens_per_batch": "packed tokens per optimizer step",
    "seq_len": "packed row length in tokens",
    "lr": "round 0's peak learning rate (AdamW: warm-up over the first tenth of the steps, then cosine decay)",
    "rft_lr": "the rounds' peak learning rate",
    "lora_rank": "0: full fine-tuning; N: LoRA adapters of rank N, merged into each checkpoint",
    "batch_size": "prompts per generation batch (sampling and scoring)",
}


def parser() -> argparse.ArgumentParser:
    """A flag's default is BaseLoopConfig's (one source), printed by the scripts' formatter; flags
    whose default is a rule rather than a value (None) say it in words."""
    from pipelines.script import DefaultsHelpFormatter

    d = BaseLoopConfig  # a frozen dataclass: its class attributes are the defaults
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "),
                                formatter_class=DefaultsHelpFormatter,
                                epilog="Configuration E of bench/README.md is the default; see there for the "
                                       "measured tables and their commands.")
    p.add_argument("--base", default=d.base,
                   help="HF directory, .gguf file, built-in checkpoint, or smollm2 (the shipped SmolLM2-135M-Instruct)")
    p.add_argument("--out", default=None, help="this seed's directory (default <warehouse>/_loop/base/seed-S)")
    p.add_argument("--warehouse", default=None, help="without --out: runs go under <warehouse>/_loop/base")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="run these seeds one at a time (each <out>/seed-S), then print the table over them")
    p.add_argument("--bases", default=None, help="imported bases cache (default <out>/../bases)")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="draws the held-out, teacher and fresh problems and seeds training and sampling")
    p.add_argument("--rounds", type=int, default=d.rounds,
                   help="rounds after round 0 (a second did not help: bench/README.md, configuration F)")
    p.add_argument("--levels", type=int, nargs="+", default=None,
                   help=f"operations per problem, drawn uniformly (default: {' '.join(map(str, d.levels))})")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch threads per process; the numbers are reproducible for one thread count")
    p.add_argument("--workers", type=int, choices=[1, 2], default=d.workers,
                   help="2: the control chain (the base's score, ablation arms, control and ceiling rounds) runs "
                        "in a second process beside the loop's, with the same numbers")
    p.add_argument("--ablation", choices=["none", "unfiltered", "both"], default=d.ablation,
                   help="the teacher-data ablation: round 0 on all teacher rows (unfiltered), and also on "
                        "unfiltered rows subsampled to the filtered count (both)")
    p.add_argument("--ceiling", action=argparse.BooleanOptionalAction, default=None,
                   help="the teacher-ceiling arm: the loop's steps on the teacher's solutions to the same fresh "
                        "problems (default on)")
    p.add_argument("--tag-prefix", default=None, help="before each model's tag (--seeds: seed-S-)")
    p.add_argument("--train-workers", type=int, default=None,
                   help="each SFT on N Ray Train workers (model/train_ray.py, as `curate train`); 0: in this process "
                        "(default)")
    p.add_argument("--train-resources", default=None, help="per Ray Train worker, e.g. cpus:1,gpus:0 (default cpus:1)")
    p.add_argument("--reuse-checkpoints", action="store_true", default=None,
                   help="keep this seed's checkpoints from an earlier run that drew and sampled the same problems, "
                        "and skip each training whose init, settings and data are the same (e.g. a second run with "
                        "one more round trains only that round); every checkpoint is scored again")
    p.add_argument("--verbose", dest="quiet", action="store_false", default=None,
                   help="progress bars and per-step logs (default: one line per phase)")
    for f in fields(BaseLoopConfig):  # every other number of the config is a flag of its own name
        if f.name in FLAG_HELP:
            p.add_argument("--" + f.name.replace("_", "-"), type=int if f.type == "int" else float,
                           default=f.default, help=FLAG_HELP[f.name])
    return p


def run_seeds(argv: list[str], seeds: list[int], root: str, warehouse: str) -> int:
    """Each seed in its own processes, one seed at a time (a seed already has both cores), then the table."""
    import subprocess

    rest, skip = [], False
    for x in argv:  # argv without --seeds/--out/--warehouse and their values
        if skip and not x.startswith("--"):
            continue
        skip = x in ("--seeds", "--out", "--warehouse", "--seed", "--tag-prefix")
        if not skip:
            rest.append(x)
    records = []
    for s in seeds:
        d = os.path.join(root, f"seed-{s}")
        cmd = [sys.executable, os.path.abspath(__file__), *rest, "--seed", str(s), "--out", d, "--warehouse",
               warehouse, "--tag-prefix", f"seed-{s}-"]  # the seeds' models share the warehouse's tags
        log(f"seed {s}: {' '.join(cmd[1:])}")
        if subprocess.call(cmd) == 0:
            records.append(json.load(open(os.path.join(d, "record.json"))))
    if not records:
        return 1
    print(table(records))
    return 0 if len(records) == len(seeds) else 1


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    p = parser()
    a = p.parse_args(argv)
    try:
        BaseLoopConfig.from_args(a)  # settings that cannot run end here, before any seed starts
    except ValueError as e:
        p.error(str(e))
    from schemas.store import default_warehouse
    a.warehouse = os.path.abspath(a.warehouse or default_warehouse())  # where the models are registered
    root = os.path.join(a.warehouse, "_loop", "base")
    if a.seeds:
        return run_seeds(list(sys.argv[1:] if argv is None else argv), a.seeds, a.out or root, a.warehouse)
    if a.out is None:
        a.out = os.path.join(root, f"seed-{a.seed}")
    cfg = BaseLoopConfig.from_args(a)
    record = run(cfg)
    print(report(record))
    print(f"record: {os.path.join(os.path.abspath(cfg.out), 'record.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
