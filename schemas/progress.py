"""Progress where users look: a tqdm bar on a terminal, a plain line every N seconds elsewhere.

A bar redraws itself with carriage returns: on a terminal that is one line, in a file or in
`ray job logs` it is a line per update (megabytes of them for a training run). Anywhere else
than a terminal this prints one self-contained line every `CURATE_PROGRESS_EVERY` seconds
(default 15; 0 turns the lines off) with what is done of the total, the caller's fields (rows
kept and rejected, loss), the rate and the ETA, and a last line when it ends; a background
thread prints them even while nothing finishes (a shard can take minutes).

    bar = progress(total=40, desc="speech_sft: shards", unit="shard")
    bar.update(1); bar.set_postfix(kept=12, rejected=3); bar.close()

`CURATE_PROGRESS=1` forces the bar anywhere, `CURATE_PROGRESS=0` turns progress off.
The object answers tqdm's `update`, `set_postfix` and `close` in every mode, so callers never
ask which one they got.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable, Mapping, TextIO

EVERY_ENV = "CURATE_PROGRESS_EVERY"
FORCE_ENV = "CURATE_PROGRESS"
DEFAULT_EVERY = 15.0


def every_seconds(env: Mapping[str, str] | None = None) -> float:
    """Seconds between progress lines off a terminal (`CURATE_PROGRESS_EVERY`; 0: no lines)."""
    raw = (os.environ if env is None else env).get(EVERY_ENV, "").strip()
    if not raw:
        return DEFAULT_EVERY
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{EVERY_ENV}={raw!r}: expected seconds between progress lines (0 = none)") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{EVERY_ENV}={raw!r}: expected seconds between progress lines (0 = none)")
    return value


def mode(stream: TextIO | None = None, env: Mapping[str, str] | None = None) -> str:
    """"bar" on a terminal (or with CURATE_PROGRESS=1), "off" with CURATE_PROGRESS=0 or
    CURATE_PROGRESS_EVERY=0 off a terminal, "lines" otherwise."""
    env = os.environ if env is None else env
    stream = sys.stderr if stream is None else stream
    forced = env.get(FORCE_ENV, "").strip()
    if forced == "0":
        return "off"
    if forced == "1" or _isatty(stream):
        return "bar"
    return "lines" if every_seconds(env) > 0 else "off"


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real file
        return False


class NoProgress:
    """What `progress` returns when progress is off: every call does nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **fields: Any) -> None:
        pass

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass


class Lines:
    """tqdm's interface, printed as a plain line at most every `every` seconds.

    `clock` and `thread=False` make it testable without waiting: the caller (or a test) calls
    `tick()`; with `thread=True` a daemon thread calls it every `every` seconds until `close`."""

    def __init__(self, total: int | None, initial: int = 0, desc: str = "", unit: str = "it",
                 every: float = DEFAULT_EVERY, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, thread: bool = True):
        self.total, self.n, self.desc, self.unit, self.every = total, initial, desc, unit, every
        self.stream = stream
        self.clock = clock
        self.fields: dict[str, Any] = {}
        self.printed = 0
        self._initial = initial
        self._t0 = self._last = clock()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = None
        if thread and every > 0:
            self._thread = threading.Thread(target=self._run, name=f"progress:{desc}", daemon=True)
            self._thread.start()

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.n += n
        self.tick()

    def set_postfix(self, **fields: Any) -> None:
        with self._lock:
            self.fields = dict(fields)

    def tick(self) -> None:
        """Print a line if `every` seconds have passed since the last one (or the start)."""
        with self._lock:
            now = self.clock()
            if self._closed.is_set() or now - self._last < self.every:
                return
            self._last = now
            self._print(self.line(now))

    def close(self) -> None:
        """A last line with the totals, if any line was printed (a short run stays quiet)."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            if self.printed:
                self._print(self.line(self.clock(), final=True))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1)

    def line(self, now: float, final: bool = False) -> str:
        """`desc: n/total units (pct%), fields, rate, elapsed, ETA` (no ETA on the last line)."""
        elapsed = max(0.0, now - self._t0)
        done = self.n - self._initial
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.total:
            head = f"{self.n}/{self.total} {self.unit}s ({100 * self.n / self.total:.0f}%)"
        else:
            head = f"{self.n} {self.unit}s"
        parts = [f"{self.desc}: {head}" if self.desc else head]
        parts += [f"{k}={v}" for k, v in self.fields.items()]
        parts.append(rate_text(rate, self.unit) if done else f"no {self.unit} done yet")
        parts.append(f"elapsed {clock_time(elapsed)}")
        if self.total and done and rate > 0 and not final:
            parts.append(f"ETA {clock_time(max(0, self.total - self.n) / rate)}")
        return ", ".join(parts)

    def _print(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        print(text, file=stream, flush=True)
        self.printed += 1

    def _run(self) -> None:
        while not self._closed.wait(self.every):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - progress must never break the run (a closed stream)
                return


def rate_text(rate: float, unit: str) -> str:
    if rate >= 1 or rate == 0:
        return f"{rate:.1f} {unit}s/s"
    return f"{1 / rate:.1f} s/{unit}"


def clock_time(seconds: float) -> str:
    """12 s, 3m05s, 1h02m."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress(total: int | None, initial: int = 0, desc: str = "", unit: str = "it", leave: bool = True,
             stream: TextIO | None = None, env: Mapping[str, str] | None = None,
             clock: Callable[[], float] = time.monotonic, thread: bool = True):
    """A bar on a terminal, `Lines` elsewhere, `NoProgress` when turned off (see the module doc)."""
    how = mode(stream, env)
    if how == "off":
        return NoProgress()
    if how == "lines":
        return Lines(total, initial, desc, unit, every=every_seconds(env), stream=stream, clock=clock, thread=thread)
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave,
                file=stream if stream is not None else sys.stderr)
