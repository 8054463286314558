"""The loop's side chain: the filtered-vs-unfiltered ablation (with its row-matched arm), the
compute-matched control, the teacher ceiling and the held-out evaluation of the loop's checkpoints.

None of it feeds the loop (the control and the ceiling train on teacher data only; the curriculum follows the
dev set and the sampling step, never the held-out scores), so with two workers it runs in a
second process while the main one samples and trains: on two cores the wall time drops by about
the side chain's share, and every number stays the same (each process keeps the thread count,
seeds and data order a single process would use, and evaluates the checkpoint as saved).

`SideChain` is the interface the round driver uses; `Inline` runs each step in this process
when its result is asked for, `Worker` in a spawned process that talks in typed `Message`s
(a kind and a round each, checked on arrival, so a message out of turn is an error, not a
silent mix-up). That process and its protocol (`SideProcess`, `from_parent`) also carry the
control chain of the loop from a pretrained base (`pipelines/loop_base.py`).
"""
from __future__ import annotations

import enum
import queue
import traceback
from dataclasses import dataclass
from typing import Any, Protocol

from pipelines.loop_bench import Bench
from pipelines.loop_config import LoopConfig


class SideChain(Protocol):
    """What the round driver asks of the side chain: `start_controls(round 0's checkpoint)`, and
    per round r ≥ 1 `submit_ceiling(r, table of the teacher's solutions)` (unless --no-ceiling) and
    `submit_eval(r, checkpoint)` (not with DPO); then it reads `ablation` (once, unless
    --no-ablation), `loop_eval(0)`, and per round `control(r)`, `ceiling(r)`, `loop_eval(r)`;
    finally `close`, which returns the side process's profile ({"wall": ..., "cpu": ...} seconds
    by phase; empty in process, where the main profile has it all)."""

    def start_controls(self, base: str) -> None: ...

    def submit_ceiling(self, r: int, ref: str) -> None: ...

    def submit_eval(self, r: int, path: str) -> None: ...

    def ablation(self) -> dict: ...

    def loop_eval(self, r: int) -> dict: ...

    def control(self, r: int) -> dict: ...

    def ceiling(self, r: int) -> dict: ...

    def close(self, failed: bool = False) -> dict: ...


class SideProtocolError(RuntimeError):
    """The side worker died, failed, or sent a message other than the one due."""


# ---- the side chain's steps -----------------------------------------------------------
def row_matched(filtered: list[list[dict]], unfiltered: list[list[dict]], seed: int) -> list[list[dict]]:
    """The unfiltered teacher data subsampled to the filtered row count (a seeded draw, in the
    usual order): wrong solutions in their unfiltered share, at the filtered data's quantity."""
    import random

    from pipelines.loop_bench import conv_key
    return sorted(random.Random(seed).sample(unfiltered, len(filtered)), key=conv_key)


def ablation(bench: Bench, unfiltered: list[list[dict]], teacher: dict[str, str], tok,
             filtered: list[list[dict]] | None = None) -> dict:
    """Round 0 again on the unfiltered teacher data (wrong solutions included), the same way; and,
    given `filtered` (unless --no-row-matched), on a row-matched subsample of it, so the filter's
    effect on quality is not confounded with the extra rows it removes."""
    from pipelines.loop_bench import conv_key
    c = bench.cfg
    m_u, _, ck_u, res_u = bench.train("ablation-unfiltered-sft", unfiltered, [teacher["loop_sft_unfiltered"]],
                                      c.sft_steps, c.lr, tok=tok, early_stop=True)
    ev_u = bench.evaluate(m_u, tok, sampled=False)
    bench.register(ck_u, 0, "sft-unfiltered", ev_u, ["model-unfiltered"])
    out = {"ev": ev_u, "steps": res_u["best_step"], "rows": len(unfiltered), "history": res_u["history"]}
    if filtered is None or c.no_row_matched:
        return out
    right = {conv_key(x) for x in filtered}
    sub = row_matched(filtered, unfiltered, c.seed)
    m_m, _, ck_m, res_m = bench.train("ablation-rowmatched-sft", sub, [teacher["loop_sft_unfiltered"]],
                                      c.sft_steps, c.lr, tok=tok, early_stop=True)
    ev_m = bench.evaluate(m_m, tok, sampled=False)
    bench.register(ck_m, 0, "sft-unfiltered-row-matched", ev_m, ["model-unfiltered-row-matched"])
    out["row_matched"] = {"ev": ev_m, "steps": res_m["best_step"], "rows": len(sub), "history": res_m["history"],
                          "wrong_rows": sum(conv_key(x) not in right for x in sub)}
    out["wrong_rows"] = sum(conv_key(x) not in right for x in unfiltered)
    return out


def control_round(bench: Bench, r: int, filtered: list[list[dict]], teacher: dict[str, str], init: str) -> dict:
    """The control's round r: the loop's training tokens, spent on the teacher data only."""
    c = bench.cfg
    m_c, tok, ck, res_c = bench.train(f"round{r}-control", filtered, [teacher["loop_sft"]], c.round_steps,
                                      c.rft_lr, init=init)
    ev_c = bench.evaluate(m_c, tok, sampled=False)  # pass@k / maj@k for the loop only: a third less evaluation
    bench.register(ck, r, "control", ev_c, [f"control-round-{r}"])
    return {"ev": ev_c, "tokens": res_c["tokens"], "ck": ck}


def ceiling_round(bench: Bench, r: int, filtered: list[list[dict]], teacher: dict[str, str],
                  solutions: list[str], init: str) -> dict:
    """The teacher ceiling's round r: the loop's steps on the teacher data plus the teacher's
    worked solutions to every fresh problem the loop drew in rounds 1..r (where the loop has only
    its own verified samples): what the loop would reach with a perfect sampler."""
    c = bench.cfg
    mix = list(filtered) + [conv for ref in solutions for conv in bench.conversations(ref)]
    m_t, tok, ck, res_t = bench.train(f"round{r}-ceiling", mix, [teacher["loop_sft"], *solutions], c.round_steps,
                                      c.rft_lr, init=init)
    ev_t = bench.evaluate(m_t, tok, sampled=False)
    bench.register(ck, r, "ceiling", ev_t, [f"ceiling-round-{r}"])
    return {"ev": ev_t, "tokens": res_t["tokens"], "rows": len(mix), "ck": ck}


class Inline:
    """The side chain in this process, each step run when its result is asked for."""

    def __init__(self, bench: Bench, teacher: dict[str, str], tok, filtered: list, unfiltered: list):
        self.bench, self.teacher, self.tok = bench, teacher, tok
        self.filtered, self.unfiltered = filtered, unfiltered
        self.base: str | None = None  # round 0's checkpoint, from start_controls
        self.ck: str | None = None  # the control's latest checkpoint
        self.ceiling_ck: str | None = None  # the ceiling's latest checkpoint
        self.checkpoints: dict[int, str] = {}
        self.solutions: dict[int, str] = {}

    def start_controls(self, base: str) -> None:
        self.base = self.ck = self.ceiling_ck = self.checkpoints[0] = base

    def submit_ceiling(self, r: int, ref: str) -> None:
        self.solutions[r] = ref

    def submit_eval(self, r: int, path: str) -> None:
        self.checkpoints[r] = path

    def ablation(self) -> dict:
        return ablation(self.bench, self.unfiltered, self.teacher, self.tok, self.filtered)

    def loop_eval(self, r: int) -> dict:
        return self.bench.evaluate_checkpoint(self.checkpoints[r], r)

    def control(self, r: int) -> dict:
        init = self.base if self.bench.cfg.init == "base" else self.ck
        assert init is not None, "start_controls comes first"
        res = control_round(self.bench, r, self.filtered, self.teacher, init)
        self.ck = res["ck"]
        return res

    def ceiling(self, r: int) -> dict:
        init = self.base if self.bench.cfg.init == "base" else self.ceiling_ck
        assert init is not None, "start_controls comes first"
        res = ceiling_round(self.bench, r, self.filtered, self.teacher, [self.solutions[i] for i in range(1, r + 1)],
                            init)
        self.ceiling_ck = res["ck"]
        return res

    def close(self, failed: bool = False) -> dict:
        return {}


# ---- the second process -----------------------------------------------------------------
class Kind(enum.Enum):
    # main → side
    BASE = "base"              # round 0's checkpoint: the controls start from it
    SOLUTIONS = "solutions"    # the table of the teacher's solutions to round r's fresh problems
    CHECKPOINT = "checkpoint"  # the loop's round-r checkpoint, to score
    # side → main
    ABLATION = "ablation"
    EVAL = "eval"
    CONTROL = "control"
    CEILING = "ceiling"
    SCORE = "score"            # the pretrained base as is (the loop from a base, pipelines/loop_base.py)
    DONE = "done"              # payload: the side's profile, {"wall": ..., "cpu": ...} seconds by phase
    ERROR = "error"            # payload: the side's traceback


@dataclass(frozen=True)
class Message:
    kind: Kind
    round: int = 0
    payload: Any = None


def expect(msg: Message, kind: Kind, r: int) -> Any:
    """`msg`'s payload if it is the message due (`kind` for round `r`): an ERROR or a message out
    of turn raises, in both loops' side protocols (`pipelines/loop_base.py` checks its in-process
    list with it too)."""
    if msg.kind is Kind.ERROR:
        raise SideProtocolError("the loop's side worker (ablation, control, evaluation) failed:\n" + msg.payload)
    if (msg.kind, msg.round) != (kind, r):
        raise SideProtocolError(f"the loop's side worker got/sent {msg.kind.value} for round {msg.round} where "
                                f"{kind.value} for round {r} was due")
    return msg.payload


def from_parent(inbox, kind: Kind, r: int, poll: float = 2.0) -> Any:
    """In the side process: the main process's next message, which must be `kind` for round `r`.
    Raises as soon as the main process is gone (SIGKILLed before it could terminate this one),
    so the side never waits as an orphan."""
    import multiprocessing as mp

    parent = mp.parent_process()
    while True:
        try:
            return expect(inbox.get(timeout=poll), kind, r)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                raise SideProtocolError(f"the loop's main process ended before sending {kind.value} for round "
                                        f"{r}") from None


def _side_main(cfg: LoopConfig, held, dev, teacher, tok_path, inbox, outbox) -> None:
    """The second process: the ablation beside round 0; once round 0 is in, its evaluation, then
    per round the control, the teacher ceiling and the loop checkpoint's evaluation (in the order
    the main one reads)."""
    try:
        from model.tokenizer import ChatTokenizer

        bench = Bench(cfg)
        bench.held, bench.dev = held, dev
        side = Inline(bench, teacher, ChatTokenizer.load(tok_path), bench.conversations(teacher["loop_sft"]),
                      bench.conversations(teacher["loop_sft_unfiltered"]))
        if not cfg.no_ablation:
            outbox.put(Message(Kind.ABLATION, 0, side.ablation()))
        side.start_controls(from_parent(inbox, Kind.BASE, 0))  # if the main process fails, it terminates this one
        outbox.put(Message(Kind.EVAL, 0, side.loop_eval(0)))
        for r in range(1, cfg.rounds + 1):
            outbox.put(Message(Kind.CONTROL, r, side.control(r)))
            if not cfg.no_ceiling:
                side.submit_ceiling(r, from_parent(inbox, Kind.SOLUTIONS, r))
                outbox.put(Message(Kind.CEILING, r, side.ceiling(r)))
            if not cfg.dpo:  # with DPO the main process scores its SFT model itself (dev picks SFT or DPO)
                side.submit_eval(r, from_parent(inbox, Kind.CHECKPOINT, r))
                outbox.put(Message(Kind.EVAL, r, side.loop_eval(r)))
        outbox.put(Message(Kind.DONE, 0, {"wall": bench.profile, "cpu": bench.profile_cpu}))
    except BaseException:  # noqa: BLE001  anything, even KeyboardInterrupt, goes back to the driver as ERROR
        outbox.put(Message(Kind.ERROR, 0, traceback.format_exc()))
        raise SystemExit(1) from None


class SideProcess:
    """A spawned process running `target(*args, inbox, outbox)` that talks in typed `Message`s:
    `send` puts a request in its inbox, `receive` takes its next result, which must be the one due;
    a side that dies or fails raises `SideProtocolError` instead of a wait. Both loops' second
    processes are one (the from-scratch loop's `Worker`, `pipelines/loop_base.py`'s control chain)."""

    def __init__(self, target, args: tuple):
        import multiprocessing as mp
        ctx = mp.get_context("spawn")  # no forked torch/Ray state in the child
        self.inbox, self.outbox = ctx.Queue(), ctx.Queue()
        self.proc = ctx.Process(target=target, name="loop-side", daemon=True, args=(*args, self.inbox, self.outbox))
        self.proc.start()

    def send(self, kind: Kind, r: int, payload: Any = None) -> None:
        self.inbox.put(Message(kind, r, payload))

    def receive(self, kind: Kind, r: int) -> Any:
        return self._get(kind, r)

    def _get(self, kind: Kind, r: int) -> Any:
        while True:
            try:
                msg = self.outbox.get(timeout=2)
            except queue.Empty:
                if self.proc.is_alive():
                    continue
                try:  # it may have written its last message just before exiting
                    msg = self.outbox.get(timeout=1)
                except queue.Empty:
                    raise SideProtocolError(
                        f"the loop's side worker (ablation, control, evaluation) died with exit code "
                        f"{self.proc.exitcode} before sending its {kind.value} result") from None
            return expect(msg, kind, r)

    def close(self, failed: bool = False) -> dict:
        """The side's profile (its DONE message); on failure, stop it (it must not outlive the run)."""
        if failed:
            self.proc.terminate()
            self.proc.join(10)
            return {}
        profile = self._get(Kind.DONE, 0)
        self.proc.join(60)
        return profile


class Worker(SideProcess):
    """The from-scratch loop's side chain in a spawned process; requests go in and results come back in order."""

    def __init__(self, bench: Bench, teacher: dict[str, str], tok_path: str, target=_side_main):
        super().__init__(target, (bench.cfg, bench.held, bench.dev, teacher, tok_path))

    def start_controls(self, base: str) -> None:
        self.inbox.put(Message(Kind.BASE, 0, base))

    def submit_ceiling(self, r: int, ref: str) -> None:
        self.inbox.put(Message(Kind.SOLUTIONS, r, ref))

    def submit_eval(self, r: int, path: str) -> None:
        self.inbox.put(Message(Kind.CHECKPOINT, r, path))

    def ablation(self) -> dict:
        return self._get(Kind.ABLATION, 0)

    def loop_eval(self, r: int) -> dict:
        return self._get(Kind.EVAL, r)

    def control(self, r: int) -> dict:
        return self._get(Kind.CONTROL, r)

    def ceiling(self, r: int) -> dict:
        return self._get(Kind.CEILING, r)

    def close(self, failed: bool = False) -> dict:
        """The side's profile ({"wall": ..., "cpu": ...}); on failure, stop it."""
        return super().close(failed)
