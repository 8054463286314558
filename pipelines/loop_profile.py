"""Phase timing shared by the loops (`pipelines/loop_bench.py`, `pipelines/loop_base.py`): wall and
CPU seconds per phase of one process.

Why CPU as well as wall: the machines these loops run on are shared and loaded, so wall time
measures the load as much as the work; CPU seconds (all threads of this process) measure the work.
Why a phase timed inside another counts once, in the inner phase: the from-scratch loop scores the
dev set while it trains, and that is evaluation, not training (the loop used to subtract it by hand).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


class PhaseTimer:
    """`with timer("training"): ...` adds the block's seconds to `wall["training"]` and
    `cpu["training"]` (rounded to 0.01 s), less what phases timed inside it took."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._inner: list[list[float]] = []  # per open phase: wall and CPU seconds of the phases inside it

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        w, c = time.perf_counter(), time.process_time()
        self._inner.append([0.0, 0.0])
        try:
            yield
        finally:
            inner_w, inner_c = self._inner.pop()
            dw, dc = time.perf_counter() - w, time.process_time() - c
            if self._inner:  # the enclosing phase does not count these seconds again
                self._inner[-1][0] += dw
                self._inner[-1][1] += dc
            self.wall[phase] = round(self.wall.get(phase, 0.0) + dw - inner_w, 2)
            self.cpu[phase] = round(self.cpu.get(phase, 0.0) + dc - inner_c, 2)

    def phases(self) -> dict[str, dict[str, float]]:
        """{phase: {"wall_s": ..., "cpu_s": ...}}, in the order the phases first ended."""
        return {k: {"wall_s": v, "cpu_s": self.cpu[k]} for k, v in self.wall.items()}
