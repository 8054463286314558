"""Named points where a test can SIGKILL a run (`CURATE_FAILPOINT=name[:n]`), to prove that a
kill at any phase leaves no partial version and that the rerun completes the same run.

Inert unless the variable is set; `name:n` fires on the n-th time the point is reached in
this process (e.g. `shard-written:2` after the second shard's marker). `name:wait=PATH` pauses
there instead: it creates `PATH.reached` and waits until PATH exists, so a test can commit
another run in between (two live processes interleaved at a known point)."""
from __future__ import annotations

import os
import signal
import time

_seen: dict[str, int] = {}


def failpoint(name: str) -> None:
    spec = os.environ.get("CURATE_FAILPOINT")
    if not spec:
        return
    want, _, nth = spec.partition(":")
    if want != name:
        return
    if nth.startswith("wait="):
        path = nth[len("wait="):]
        open(path + ".reached", "w").close()
        while not os.path.exists(path):
            time.sleep(0.05)
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
