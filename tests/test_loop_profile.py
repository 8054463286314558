"""The loops' phase timer (pipelines/loop_profile.py): wall and CPU seconds per phase, a phase
timed inside another counted once (in the inner one), shared by the from-scratch loop's Bench."""
from __future__ import annotations

import time


def _burn(cpu_s: float) -> None:
    end = time.process_time() + cpu_s
    while time.process_time() < end:
        pass


def test_a_nested_phase_counts_once_in_wall_and_cpu():
    from pipelines.loop_profile import PhaseTimer

    t = PhaseTimer()
    w0, c0 = time.perf_counter(), time.process_time()
    with t("training"):
        _burn(0.05)
        with t("evaluation"):
            _burn(0.15)
        _burn(0.05)
    with t("evaluation"):  # a phase adds up over its blocks
        _burn(0.05)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    assert list(t.phases()) == ["evaluation", "training"]  # the order the phases first ended in
    assert t.cpu["evaluation"] >= 0.19 and 0.09 <= t.cpu["training"] < t.cpu["evaluation"]
    assert abs(t.cpu["training"] + t.cpu["evaluation"] - cpu) <= 0.03  # every second once (0.01 s rounding each)
    # wall: counted once means the phases never add up to more than the time that passed (twice
    # would add the nested 0.15 s again); how much less depends on the scheduler, so no bound there
    assert t.wall["training"] + t.wall["evaluation"] <= wall + 0.02
    assert t.phases()["evaluation"] == {"wall_s": t.wall["evaluation"], "cpu_s": t.cpu["evaluation"]}


def test_a_failing_block_is_still_timed_and_the_nesting_unwinds():
    from pipelines.loop_profile import PhaseTimer

    t = PhaseTimer()
    try:
        with t("training"):
            with t("evaluation"):
                _burn(0.02)
                raise ValueError("boom")
    except ValueError:
        pass
    with t("sampling"):
        _burn(0.02)
    assert set(t.cpu) == {"training", "evaluation", "sampling"} and t.cpu["sampling"] >= 0.02
    assert not t._inner  # nothing left open: the next phase is top-level


def test_the_from_scratch_loops_bench_times_wall_and_cpu(tmp_path):
    """`Bench.timed` is the shared timer: `profile` (wall, the record's existing key) and
    `profile_cpu` by phase, dev scoring inside training counted as evaluation."""
    from pipelines.loop_bench import Bench
    from pipelines.loop_config import LoopConfig
    from pipelines.reasoning_loop import parser

    cfg = LoopConfig.from_args(parser().parse_args(["--warehouse", str(tmp_path), "--rounds", "1", "--threads", "1",
                                                    "--device", "cpu"]))
    bench = Bench(cfg)
    with bench.timed("training"):
        with bench.timed("evaluation"):
            _burn(0.05)
    assert bench.profile is bench.timer.wall and bench.profile_cpu is bench.timer.cpu
    assert bench.profile_cpu["evaluation"] >= 0.05 > bench.profile_cpu["training"]
    assert set(bench.profile) == set(bench.profile_cpu) == {"training", "evaluation"}
