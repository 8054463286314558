r"""Reasoning data: CoT rejection sampling with verifiers, resampling, SFT rows and DPO pairs.

    python pipelines/reasoning_data.py      # 20 one-step word problems, SmolLM2, k=4 (~3.5 min on 2 cores)
    python pipelines/reasoning_data.py --input problems.jsonl --generator openai:http://localhost:8000/v1#my-model
    ray job submit --address http://127.0.0.1:8275 --working-dir . -- \
        python pipelines/reasoning_data.py --warehouse /abs/warehouse

Flow (Phi-4-Mini's recipe): problems (any table or file with `problem` and `answer`) → k
samples per problem with distinct seeds → rule verifier (numeric / exact / math-verify
under a time limit) → LLM judge where the rules cannot decide (`--judge`) → resample the
unsolved up to `--max-attempts` → publish four versioned tables: the problems with their
samples and pass rates (`--output`), every CoT sample with its verdict, SFT rows from the
correct ones (identical answers once), and preference pairs (correct = chosen, incorrect =
rejected) in TRL's prompt/chosen/rejected columns.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import pyarrow as pa

from pipelines.script import common_parser, options
from schemas.engine.runner import Pipeline
from schemas.engine.stage import StageSpec, reject_where, stage
from schemas.filesystem import work_dir
from schemas.tables import PROBLEMS
from synth.cot_sampling import SYSTEM, CoTSampler
from synth.problems import iter_sources, write_jsonl


@stage()
def check_problem(batch: pa.Table, max_chars: int = 4000) -> pa.Table:
    """Problems the sampler cannot use: empty text, an empty answer, a problem too long to prompt."""
    import pyarrow.compute as pc
    problem = pc.utf8_trim_whitespace(batch.column("problem"))
    answer = pc.utf8_trim_whitespace(batch.column("answer"))
    batch = reject_where(batch, pc.equal(pc.utf8_length(problem), 0), "empty_problem")
    batch = reject_where(batch, pc.equal(pc.utf8_length(answer), 0), "no_answer")
    return reject_where(batch, pc.greater(pc.utf8_length(problem), max_chars), "problem_too_long")


def default_inputs(args) -> list[str]:
    """Generate the problem file(s) once per source spec and seed; shards of ~50 problems."""
    rows = list(iter_sources(args.sources, args.seed, args.teacher_error_rate))
    d = os.path.join(work_dir(args.warehouse), "_inputs", "reasoning",
                     f"{'_'.join(s.replace(':', '') for s in args.sources)}-seed{args.seed}")
    paths = []
    for i in range(0, len(rows), args.problems_per_file):
        name = os.path.join(d, f"problems-{i // args.problems_per_file:04d}.jsonl")
        paths.append(write_jsonl(rows[i:i + args.problems_per_file], name))
    return paths


def sampler_params(args) -> dict:
    return {"generator": args.generator, "k": args.k, "max_attempts": args.max_attempts,
            "temperature": args.temperature, "top_p": args.top_p, "max_tokens": args.max_tokens,
            "seed": args.seed, "system": args.system, "judge": args.judge, "verify_timeout_s": args.verify_timeout,
            "cache": args.cache or os.path.join(work_dir(args.warehouse), "_cache", "generations.sqlite"),
            "threads": args.threads, "batch_size": args.batch_size, "request_timeout_s": args.request_timeout,
            "retries": args.retries}


def generation_progress(summaries: list[dict], seconds: float) -> dict[str, str]:
    """Progress-bar fields from the shards finished so far: samples/s and the pass rate."""
    cols = [s.get("stats", {}).get("columns", {}) for s in summaries]
    total = lambda name: sum(((c.get(name) or {}).get("total") or {}).get("sum") or 0 for c in cols)
    n, ok = total("n_samples"), total("n_correct")
    return {"samples/s": f"{n / max(seconds, 1e-9):.2f}", "pass": f"{ok / n:.1%}" if n else "-"}


def build(args):
    inputs = args.inputs or default_inputs(args)
    stages = [check_problem, StageSpec(CoTSampler, sampler_params(args))]
    return Pipeline("reasoning_data", PROBLEMS, PROBLEMS, stages, progress=generation_progress), inputs


def empty_pairs_warning(pairs: dict[str, int], table: str, snapshot) -> str | None:
    """Why a run published no preference pair, or None when it has some."""
    if pairs.get("pairs", 0):
        return None
    none_ok = pairs.get("prompts_without_pair:no_correct", 0)
    none_bad = pairs.get("prompts_without_pair:no_incorrect", 0)
    return (f"warning: {table}@{snapshot} is empty: no prompt had both a correct and an incorrect sample "
            f"({none_ok} of {pairs.get('prompts', 0)} prompts had no correct sample, {none_bad} no incorrect one); "
            "try easier problems (--sources word:N:1), more samples (--k) or a stronger --generator")


def publish_tables(store, source_ref: str, args) -> tuple[dict[str, int], dict[str, dict]]:
    """The CoT, SFT and preference tables derived from one version of the sampled problems."""
    from pipelines.derived import publish_derived
    from schemas.tables import SFT
    from synth.reasoning_tables import COT_TABLE, PREFERENCE_TABLE, cot_samples, preference_pairs, sft_rows

    problems = store.read_arrow(source_ref)
    props = store.properties(source_ref)
    common = {"source": source_ref, "pipeline": "reasoning_data", "mode": args.mode, "tag": args.tag,
              "extra": {"models": props.get("models", {}), "round": args.round}}
    samples, c1 = cot_samples(problems, args.round)
    sft, c2 = sft_rows(samples, args.system)  # the conversation as it was generated, system prompt included
    pairs, c3 = preference_pairs(samples, args.max_pairs_per_prompt or None, args.seed, args.system)
    not_used = lambda c, prefix: {k[len(prefix):]: v for k, v in c.items() if k.startswith(prefix)}
    out = {
        args.samples_table: publish_derived(
            store, args.samples_table, COT_TABLE, samples, config={"round": args.round}, unit="samples",
            rows_in=c1["samples"], used=c1["rows"], reasons={"generation_error": c1["generation_errors"]},
            counts=c1, **common),
        args.sft_table: publish_derived(
            store, args.sft_table, SFT, sft, config={"dedup": "per-problem normalised text"}, unit="samples",
            rows_in=c2["samples"], used=c2["rows"],
            reasons={**not_used(c2, "not_used:"), "duplicate_answer": c2.get("duplicate_answer", 0)},
            counts=c2, **common),
        args.pairs_table: publish_derived(
            store, args.pairs_table, PREFERENCE_TABLE, pairs,
            config={"max_pairs_per_prompt": args.max_pairs_per_prompt},
            unit="prompts", rows_in=c3.get("prompts", 0), used=c3.get("prompts_with_pairs", 0),
            reasons=not_used(c3, "prompts_without_pair:"), counts=c3, **common),
    }
    return out, {"samples": c1, "sft": c2, "pairs": c3}


def parser():
    p = common_parser(__doc__.splitlines()[0], default_output="reasoning")
    p.set_defaults(shard_mb=0.05)
    g = p.add_argument_group("problems (when no --input)")
    g.add_argument("--sources", nargs="+", default=["word:20:1"],
                   help="word:N[:levels] (programmatic word problems with worked solutions), mathematics:N[:levels] "
                        "(DeepMind); levels 1-3, e.g. word:150:1,2 (default: word:20:1, one-step word problems, "
                        "the level SmolLM2-135M partly solves)")
    g.add_argument("--teacher-error-rate", type=float, default=0.0,
                   help="share of word-problem reference solutions that go wrong at one step")
    g.add_argument("--problems-per-file", type=int, default=5,
                   help="problems per generated input file (= shard; the progress bar moves per shard)")
    g = p.add_argument_group("sampling")
    g.add_argument("--generator", default="smollm2",
                   help="smollm2 | hf:<dir>[#file.gguf] | openai:<base_url>[#model] | builtin:<checkpoint>")
    g.add_argument("--k", type=int, default=4, help="samples per problem per attempt")
    g.add_argument("--max-attempts", type=int, default=2, help="attempts for problems with no correct sample")
    g.add_argument("--temperature", type=float, default=0.8, help="sampling temperature")
    g.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling: the smallest token set with this mass")
    g.add_argument("--max-tokens", type=int, default=96,
                   help="tokens a sample may take; a sample cut off here is verified as truncated")
    g.add_argument("--seed", type=int, default=0, help="draws the problems and the samples' seeds")
    g.add_argument("--system", default=SYSTEM, help="system prompt ('' for none)")
    g.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: 1 under Ray)")
    g.add_argument("--batch-size", type=int, default=16, help="sequences per local generation batch")
    g.add_argument("--request-timeout", type=float, default=120.0, help="seconds per HTTP request")
    g.add_argument("--retries", type=int, default=2, help="HTTP retries (timeouts, 429, 5xx)")
    g.add_argument("--cache", default=None, help="generation cache (default: <warehouse>/_cache/generations.sqlite)")
    g = p.add_argument_group("verification")
    g.add_argument("--judge", default=None,
                   help="LLM judge for answers the rules cannot decide: a generator spec, or 'same'")
    g.add_argument("--verify-timeout", type=float, default=5.0, help="seconds per math-verify call")
    g = p.add_argument_group("output tables")
    g.add_argument("--samples-table", default="cot_samples", help="every sample with its verdict and reason")
    g.add_argument("--sft-table", default="reasoning_sft", help="the verified samples as SFT conversations")
    g.add_argument("--pairs-table", default="preferences",
                   help="DPO pairs: a correct sample chosen, an incorrect one rejected")
    g.add_argument("--max-pairs-per-prompt", type=int, default=4, help="0 = all correct×incorrect pairs")
    g.add_argument("--round", type=int, default=0, help="loop round recorded with every table")
    return p


def run_main(argv: list[str] | None = None) -> int:
    from pipelines import report
    from schemas.engine.inputs import InputError
    from schemas.engine.raysession import RayStartFailed
    from schemas.engine.runner import NothingKept, run
    from schemas.store import Store

    args = parser().parse_args(argv)
    pipeline, inputs = build(args)
    opts = options(args, inputs)
    try:
        result = run(pipeline, opts)
    except (InputError, NothingKept, RayStartFailed) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    store = Store(opts.warehouse, opts.catalog)
    snaps, counts = publish_tables(store, f"{result.output}@{result.snapshot_id}", args)
    # The empty version is still published: it is this run's result (its counts say why), and
    # keeping an older, non-empty version current would pair it with problems it did not come from.
    warning = empty_pairs_warning(counts["pairs"], args.pairs_table, snaps[args.pairs_table])
    if warning:
        print(warning, file=sys.stderr)
    if args.quiet:
        print(f"published {result.output}@{result.snapshot_id} " +
              " ".join(f"{k}@{v}" for k, v in snaps.items()))
        return 0
    report.print_run(result)
    report.print_stats(store, f"{result.output}@{result.snapshot_id}")
    report.print_reasoning(counts, snaps)
    return 0


if __name__ == "__main__":
    sys.exit(run_main())
