"""A pipeline whose stage pauses per shard, so a test can kill it mid-run (a real SIGKILL)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pyarrow as pa

from filters.text_basic import length_filter, normalize_text
from pipelines.script import common_parser, main
from schemas.engine.runner import Pipeline
from schemas.engine.stage import stage
from schemas.tables import DOCUMENTS


@stage()
def pause(batch: pa.Table, seconds: float = 0.0) -> pa.Table:
    time.sleep(seconds)
    return batch


def build(args):
    stages = [normalize_text, pause.configure(seconds=args.pause), length_filter.configure(min_words=3)]
    return Pipeline("slow", DOCUMENTS, DOCUMENTS, stages), args.inputs


if __name__ == "__main__":
    p = common_parser("slow test pipeline", "slow_docs")
    p.add_argument("--pause", type=float, default=0.0)
    sys.exit(main(build, p))
