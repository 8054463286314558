"""Who made a table version: run ids, config hashes, the code commit."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from schemas.ids import row_id

REPO_ROOT = Path(__file__).resolve().parents[1]


def config_hash(config: dict[str, Any]) -> str:
    return row_id(json.dumps(config, sort_keys=True, default=str))[:16]


def git_commit() -> str:
    """HEAD of the code's checkout (`+dirty` when it has changes); env CURATE_GIT_COMMIT wins.

    Under `ray job submit` the uploaded working dir has no .git: set CURATE_GIT_COMMIT there.
    """
    if os.environ.get("CURATE_GIT_COMMIT"):
        return os.environ["CURATE_GIT_COMMIT"]
    try:
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
