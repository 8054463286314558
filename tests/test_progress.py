"""Progress: a bar on a terminal, a plain line every N seconds elsewhere (schemas/progress.py),
for the runner's shards and the trainers' steps. A fake clock: no test waits."""
import io

import pytest

from schemas import progress as sp


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_mode_bar_on_a_terminal_lines_elsewhere_and_the_switches():
    assert sp.mode(Tty(), {}) == "bar"
    assert sp.mode(io.StringIO(), {}) == "lines"
    assert sp.mode(io.StringIO(), {"CURATE_PROGRESS": "1"}) == "bar"       # forced, as before
    assert sp.mode(Tty(), {"CURATE_PROGRESS": "0"}) == "off"
    assert sp.mode(io.StringIO(), {"CURATE_PROGRESS_EVERY": "0"}) == "off"
    assert sp.every_seconds({}) == sp.DEFAULT_EVERY == 15
    assert sp.every_seconds({"CURATE_PROGRESS_EVERY": "2.5"}) == 2.5
    for bad in ("soon", "-1", "inf", "nan"):
        with pytest.raises(ValueError, match="CURATE_PROGRESS_EVERY"):
            sp.every_seconds({"CURATE_PROGRESS_EVERY": bad})


def test_progress_picks_the_kind():
    from tqdm import tqdm
    bar = sp.progress(3, stream=Tty(), env={})
    assert isinstance(bar, tqdm)
    bar.close()
    assert isinstance(sp.progress(3, stream=io.StringIO(), env={}, thread=False), sp.Lines)
    assert isinstance(sp.progress(3, stream=io.StringIO(), env={"CURATE_PROGRESS_EVERY": "0"}), sp.NoProgress)


def test_lines_at_most_every_n_seconds_with_counts_rate_and_eta():
    out, clock = io.StringIO(), Clock()
    p = sp.Lines(4, desc="speech_sft", unit="shard", every=15, stream=out, clock=clock, thread=False)
    clock.t += 14
    p.tick()
    assert out.getvalue() == ""                          # not yet 15 s
    clock.t += 1
    p.tick()                                             # nothing done yet: no rate, no ETA
    assert out.getvalue() == "speech_sft: 0/4 shards (0%), no shard done yet, elapsed 15 s\n"
    clock.t += 5
    p.set_postfix(kept=7, rejected=3)
    p.update(1)                                          # 5 s after the last line: no line
    assert out.getvalue().count("\n") == 1
    clock.t += 10                                        # 30 s, 1 of 4: 30 s/shard, 90 s left
    p.tick()
    assert out.getvalue().splitlines()[-1] == ("speech_sft: 1/4 shards (25%), kept=7, rejected=3, "
                                               "30.0 s/shard, elapsed 30 s, ETA 1m30s")
    clock.t += 1
    p.update(3)
    p.close()
    assert out.getvalue().splitlines()[-1] == ("speech_sft: 4/4 shards (100%), kept=7, rejected=3, "
                                               "7.8 s/shard, elapsed 31 s")
    p.tick()
    p.close()                                            # closed: nothing more
    assert out.getvalue().count("\n") == 3


def test_a_short_run_prints_nothing_and_a_fast_one_a_rate():
    out, clock = io.StringIO(), Clock()
    p = sp.Lines(100, unit="step", every=15, stream=out, clock=clock, thread=False)
    clock.t += 3
    p.update(50)
    p.close()
    assert out.getvalue() == ""                          # under 15 s: no line at all
    p = sp.Lines(100, initial=40, desc="sft", unit="step", every=15, stream=out, clock=clock, thread=False)
    clock.t += 20
    p.update(40)                                         # resumed at 40: the rate counts this run only
    assert out.getvalue() == "sft: 80/100 steps (80%), 2.0 steps/s, elapsed 20 s, ETA 10 s\n"


def test_the_thread_prints_while_nothing_finishes():
    """The runner's shards can take minutes: the line comes from a thread, not from updates."""
    import threading
    out = io.StringIO()
    printed = threading.Event()

    class Stream(io.StringIO):
        def write(self, s):
            out.write(s)
            printed.set()
            return len(s)

    p = sp.Lines(2, desc="x", unit="shard", every=0.01, stream=Stream())
    try:
        assert printed.wait(30)
    finally:
        p.close()
    assert out.getvalue().startswith("x: 0/2 shards (0%), no shard done yet, elapsed")
    assert not p._thread.is_alive()


def test_clock_time():
    assert [sp.clock_time(s) for s in (0, 12.4, 60, 185, 3725)] == ["0 s", "12 s", "1m00s", "3m05s", "1h02m"]


def test_runner_prints_lines_off_a_terminal(tmp_path, warehouse, monkeypatch, capsys):
    """A run whose stderr is a file (a `ray job submit` log) gets progress lines without any setting."""
    from helpers import corpus, demo_pipeline
    from schemas.engine.runner import RunOptions, run
    clock = Clock()

    class Stepping(sp.Lines):
        def __init__(self, *a, **kw):
            super().__init__(*a, **{**kw, "clock": clock, "thread": False})

        def update(self, n=1):
            clock.t += 20                                # every shard "takes" 20 s
            super().update(n)

    monkeypatch.delenv("CURATE_PROGRESS", raising=False)
    monkeypatch.delenv("CURATE_PROGRESS_EVERY", raising=False)
    monkeypatch.setattr(sp, "Lines", Stepping)
    r = run(demo_pipeline(), RunOptions([corpus(tmp_path, n_files=2, limit=40)], "docs", warehouse,
                                        executor="local", shard_rows=20))
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("demo: ")]
    shards = r.accounting["shards"]
    assert shards >= 2 and len(lines) == shards + 1     # one per 20 s update, and the last one
    acc = r.accounting
    assert lines[-1] == (f"demo: {shards}/{shards} shards (100%), kept={acc['kept']}, "
                         f"rejected={acc['rejected']}, 20.0 s/shard, elapsed {sp.clock_time(20 * shards)}")
    assert "ETA" in lines[0] and "\r" not in "".join(lines)


def test_trainer_steps_print_lines_not_a_bar_off_a_terminal(monkeypatch, capsys):
    from model.sft import step_bar
    monkeypatch.delenv("CURATE_PROGRESS", raising=False)
    bar = step_bar(True, 100, 0, "sft")
    assert isinstance(bar, sp.Lines) and bar._thread is None  # each update prints when one is due
    bar.close()
    assert step_bar(False, 100, 0, "sft") is None
    monkeypatch.setenv("CURATE_PROGRESS", "1")
    from tqdm import tqdm
    bar = step_bar(True, 100, 0, "sft")
    assert isinstance(bar, tqdm)
    bar.close()
