"""The loop's side chain: the filtered-vs-unfiltered ablation, the compute-matched control and
the held-out evaluation of the loop's checkpoints.

None of it feeds the loop (the control trains on teacher data only; the curriculum follows the
dev set and the sampling step, never the held-out scores), so with two workers it runs in a
second process while the main one samples and trains: on two cores the wall time drops by about
the side chain's share, and every number stays the same (each process keeps the thread count,
seeds and data order a single process would use, and evaluates the checkpoint as saved).
`Inline` runs the same steps in this process, each when its result is asked for.
"""
from __future__ import annotations

import queue
import traceback


class Inline:
    """The side chain in this process, each step run when its result is asked for."""

    def __init__(self, loop, teacher: dict[str, str], tok, filtered: list, unfiltered: list):
        self.loop, self.teacher, self.tok = loop, teacher, tok
        self.filtered, self.unfiltered = filtered, unfiltered
        self.base = self.ck = None
        self.checkpoints: dict[int, str] = {}

    def start_controls(self, base: str) -> None:
        self.base = self.ck = self.checkpoints[0] = base

    def submit_eval(self, r: int, path: str) -> None:
        self.checkpoints[r] = path

    def ablation(self) -> dict:
        return self.loop.ablation(self.unfiltered, self.teacher, self.tok)

    def loop_eval(self, r: int) -> dict:
        return self.loop.evaluate_checkpoint(self.checkpoints[r], r)

    def control(self, r: int) -> dict:
        init = self.base if self.loop.args.init == "base" else self.ck
        res = self.loop.control_round(r, self.filtered, self.teacher, init)
        self.ck = res["ck"]
        return res

    def close(self, failed: bool = False) -> dict:
        return {}


def _side_main(args, held, dev, teacher, tok_path, inbox, outbox) -> None:
    """The second process: the ablation beside round 0; once round 0 is in, its evaluation, then
    per round the control and the loop checkpoint's evaluation (in the order the main one reads)."""
    try:
        from model.tokenizer import ChatTokenizer
        from pipelines.reasoning_loop import Loop

        loop = Loop(args)
        loop.held, loop.dev = held, dev
        side = Inline(loop, teacher, ChatTokenizer.load(tok_path), loop.conversations(teacher["loop_sft"]),
                      loop.conversations(teacher["loop_sft_unfiltered"]))
        if not args.no_ablation:
            outbox.put(("ablation", side.ablation()))
        _, _, base = inbox.get()  # round 0's checkpoint; if the main process fails, it terminates this one
        side.start_controls(base)
        outbox.put(("eval", side.loop_eval(0)))
        for r in range(1, args.rounds + 1):
            outbox.put(("control", side.control(r)))
            if not args.dpo:  # with DPO the main process scores its SFT model itself (dev picks SFT or DPO)
                _, r_in, path = inbox.get()
                assert r_in == r, (r_in, r)
                side.submit_eval(r, path)
                outbox.put(("eval", side.loop_eval(r)))
        outbox.put(("done", loop.record["profile"]))
    except BaseException:
        outbox.put(("error", traceback.format_exc()))
        raise SystemExit(1)


class Worker:
    """The side chain in a spawned process; requests go in and results come back in order."""

    def __init__(self, loop, teacher: dict[str, str], tok_path: str, target=_side_main):
        import multiprocessing as mp
        ctx = mp.get_context("spawn")  # no forked torch/Ray state in the child
        self.inbox, self.outbox = ctx.Queue(), ctx.Queue()
        self.proc = ctx.Process(target=target, name="loop-side", daemon=True,
                                args=(loop.args, loop.held, loop.dev, teacher, tok_path, self.inbox, self.outbox))
        self.proc.start()

    def _get(self, kind: str):
        while True:
            try:
                msg = self.outbox.get(timeout=2)
            except queue.Empty:
                if self.proc.is_alive():
                    continue
                try:  # it may have written its last message just before exiting
                    msg = self.outbox.get(timeout=1)
                except queue.Empty:
                    raise RuntimeError(f"the loop's side worker (ablation, control, evaluation) died with exit code "
                                       f"{self.proc.exitcode} before sending its {kind} result") from None
            if msg[0] == "error":
                raise RuntimeError("the loop's side worker (ablation, control, evaluation) failed:\n" + msg[1])
            if msg[0] != kind:
                raise RuntimeError(f"the loop's side worker sent {msg[0]!r} where {kind!r} was due")
            return msg[1]

    def start_controls(self, base: str) -> None:
        self.inbox.put(("base", 0, base))

    def submit_eval(self, r: int, path: str) -> None:
        self.inbox.put(("eval", r, path))

    def ablation(self) -> dict:
        return self._get("ablation")

    def loop_eval(self, r: int) -> dict:
        return self._get("eval")

    def control(self, r: int) -> dict:
        return self._get("control")

    def close(self, failed: bool = False) -> dict:
        """The side's wall-time profile; on failure, stop it (it must not outlive the run)."""
        if failed:
            self.proc.terminate()
            self.proc.join(10)
            return {}
        profile = self._get("done")
        self.proc.join(60)
        return profile
