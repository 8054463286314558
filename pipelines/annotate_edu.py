"""Educational-value grades: an LLM grades documents with an additive 0-5 rubric → an `edu_grades` table.

    python pipelines/annotate_edu.py --executor local --sample 40 --generator smollm2 --few-shot --max-tokens 8
    python pipelines/annotate_edu.py --input documents --sample 20000 \
        --generator openai:http://gpu-box:8000/v1#Qwen2.5-7B-Instruct
    curate annotate ...                                    # the same, from the CLI
    curate train-classifier --input edu_grades --label-column edu_score --threshold 3

Flow (the Phi-3 / FineWeb-Edu recipe's labeling step): documents (any table or file with
`text`; `--sample N` draws a fixed, seeded sample first) → normalise → grade with the rubric of
`synth.edu_grading` through the generator's cache → publish the graded rows (prompt, raw
reply, score, grader id, rubric id) and, in `<output>_rejects`, the rows whose reply had no
readable score (`grade_failed`, reply kept) or whose request failed (`generation_failed`).
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

from filters.text_basic import normalize_text
from pipelines.script import common_parser, options, run_and_report
from schemas.engine.runner import Pipeline
from schemas.engine.stage import StageSpec
from schemas.filesystem import work_dir
from schemas.tables import DOCUMENTS, EDU_GRADES
from synth.edu_grading import RUBRIC, RUBRIC_NAME, TEMPLATE, EduGrader


def sample_inputs(inputs: list[str], n: int, seed: int, warehouse: str, origin: dict | None = None) -> list[str]:
    """A fixed sample of `n` documents, chosen by a seeded hash of their text (independent of
    file order and sharding), written once as JSONL under WAREHOUSE/_inputs/annotate/.
    `origin` receives what it was drawn from (table@snapshot or file fingerprints) for lineage."""
    import heapq
    import json

    from schemas.engine.inputs import plan_inputs, read_shard
    from schemas.ids import row_id
    from schemas.store import Store

    def keyed():
        for shard in shards:
            table, _, _ = read_shard(shard, DOCUMENTS)
            for r in table.select([c for c in ("text", "source", "meta") if c in table.column_names]).to_pylist():
                if r.get("text"):
                    total[0] += 1
                    yield row_id("edu-sample", seed, r["text"]), r

    total = [0]
    shards = plan_inputs(inputs, Store(warehouse))
    best = heapq.nsmallest(n, keyed(), key=lambda kr: kr[0])  # memory: the sample, not the corpus
    if origin is not None:
        origin.update(inputs=inputs, n=n, seed=seed, of=total[0],
                      drawn_from=sorted({s.fingerprint if s.kind == "table" else f"{s.path}:{s.fingerprint}"
                                         for s in shards}))
    chosen = [r for _, r in best]
    key = row_id(json.dumps([k for k, _ in best]))[:16]
    path = os.path.join(work_dir(warehouse), "_inputs", "annotate", f"sample-{n}-seed{seed}-{key}.jsonl")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            for r in chosen:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    print(f"sample: {len(chosen)} of {total[0]} documents → {path}", file=sys.stderr)
    return [path]


def grader_params(args) -> dict:
    template = open(args.prompt_file, encoding="utf-8").read() if args.prompt_file else TEMPLATE
    return {"generator": args.generator, "max_chars": args.max_chars, "temperature": args.temperature,
            "max_tokens": args.max_tokens, "seed": args.seed, "template": template, "rubric": RUBRIC,
            "rubric_name": args.rubric_name, "few_shot": args.few_shot,
            "cache": args.cache or os.path.join(work_dir(args.warehouse), "_cache", "generations.sqlite"),
            "threads": args.threads, "batch_size": args.batch_size, "request_timeout_s": args.request_timeout,
            "retries": args.retries, "concurrency": args.concurrency}


def build(args):
    inputs = args.inputs
    if not inputs:
        from pipelines.demo_corpus import write_text_curation_corpus
        corpus = os.path.join(work_dir(args.warehouse), "_demo_input_text")
        write_text_curation_corpus(corpus)
        inputs = [corpus]
    if args.sample:
        args.sample_origin = {}
        inputs = sample_inputs(inputs, args.sample, args.seed, args.warehouse, args.sample_origin)
    stages = [normalize_text, StageSpec(EduGrader, grader_params(args))]
    return Pipeline("annotate_edu", DOCUMENTS, EDU_GRADES, stages), inputs


def parser():
    p = common_parser(__doc__.splitlines()[0], default_output="edu_grades")
    p.set_defaults(shard_mb=0.25)  # ~100 documents a shard: progress and resume granularity
    g = p.add_argument_group("grading")
    g.add_argument("--generator", default="smollm2",
                   help="openai:<base_url>[#model] | hf:<dir>[#file.gguf] | smollm2 | builtin:<checkpoint>")
    g.add_argument("--sample", type=int, default=0, help="grade a fixed seeded sample of N documents (0 = all)")
    g.add_argument("--max-chars", type=int, default=3000, help="document characters shown to the grader")
    g.add_argument("--prompt-file", default=None,
                   help="prompt template with {rubric} and {document} (default: synth/edu_grading.py TEMPLATE)")
    g.add_argument("--few-shot", action="store_true",
                   help="worked examples as earlier chat turns, score line only (for small local graders)")
    g.add_argument("--rubric-name", default=RUBRIC_NAME, help="name recorded with the template's hash")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (reproducible grades)")
    g.add_argument("--max-tokens", type=int, default=256, help="reply budget (justification + score line)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed and sample seed")
    g.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: 1 under Ray)")
    g.add_argument("--batch-size", type=int, default=8, help="sequences per local generation batch")
    g.add_argument("--concurrency", type=int, default=8, help="HTTP requests in flight")
    g.add_argument("--request-timeout", type=float, default=120.0, help="seconds per HTTP request")
    g.add_argument("--retries", type=int, default=2, help="HTTP retries (timeouts, 429, 5xx)")
    g.add_argument("--cache", default=None, help="generation cache (default: <warehouse>/_cache/generations.sqlite)")
    return p


def run_main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    pipeline, inputs = build(args)
    opts = options(args, inputs)
    if getattr(args, "sample_origin", None):
        opts.extra_config["sample"] = args.sample_origin   # lineage: what the sample file was drawn from
    return run_and_report(pipeline, opts, quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(run_main())
