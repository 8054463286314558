"""Named points where a test can SIGKILL a run (`CURATE_FAILPOINT=name[:n]`), to prove that a
kill at any phase leaves no partial version and that the rerun completes the same run.

Inert unless the variable is set; `name:n` fires on the n-th time the point is reached in
this process (e.g. `shard-written:2` after the second shard's marker)."""
from __future__ import annotations

import os
import signal

_seen: dict[str, int] = {}


def failpoint(name: str) -> None:
    spec = os.environ.get("CURATE_FAILPOINT")
    if not spec:
        return
    want, _, nth = spec.partition(":")
    if want != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
