"""What every pipeline script shares: its command line, Ray start-up, and the closing report."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from schemas.engine.runner import Pipeline, RunOptions, run
from schemas.store import catalog_options, default_warehouse


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's `(default: X)` after an option's help, once: not where the help already says its
    default in words, and not for a default of None, '' or a flag's False (which say nothing). A
    number's 0 is printed: `0 in (None, False)` is true in Python, so the test is by identity."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default is None or action.default is False or action.default == "":
            return text
        return super()._get_help_string(action) or ""


def common_parser(description: str, default_output: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=DefaultsHelpFormatter)
    p.add_argument("--input", nargs="+", dest="inputs",
                   help="JSONL/Parquet files, directories, globs, or store tables `name[@version]`")
    p.add_argument("--output", default=default_output, help="table to publish")
    p.add_argument("--warehouse", default=default_warehouse(),
                   help="local warehouse directory (env CURATE_WAREHOUSE), or with --catalog an s3:// URI")
    p.add_argument("--catalog", default=None,
                   help="shared catalog: a URI (postgresql+psycopg://USER@HOST:PORT/DB) or JSON of pyiceberg "
                        "catalog properties; default env CURATE_CATALOG, else SQLite in the warehouse directory")
    p.add_argument("--executor", choices=["ray", "local"], default="ray",
                   help="ray: embedded Ray, or the cluster in RAY_ADDRESS (ray job submit); "
                        "local: in-process, for debugging")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for an embedded Ray")
    p.add_argument("--mode", choices=["overwrite", "append"], default="overwrite",
                   help="the new version holds only this run's rows, or adds them to the current ones")
    p.add_argument("--tag", default=None, help="name the new version (e.g. demo-v1)")
    p.add_argument("--shard-mb", type=float, default=64, help="JSONL bytes per input shard")
    p.add_argument("--shard-rows", type=int, default=100_000, help="Parquet rows per input shard")
    p.add_argument("--allow-empty", action="store_true",
                   help="publish an empty version when every row is rejected (default: leave the table as it was)")
    p.add_argument("--on-unreadable", choices=["fail", "record"], default="fail",
                   help="an input file that cannot be read (or holds other rows than its metadata says): "
                        "fail the run naming it, or record its rows as lost in the accounting and go on")
    p.add_argument("--raw-rejects", action="store_true",
                   help="persist rejected rows verbatim even where a privacy stage (PII) would redact them; "
                        "recorded in lineage")
    p.add_argument("--error-budget", type=float, default=0.5,
                   help="share of a batch a stage may fail on (those rows become error: rejects) before the "
                        "run fails as a broken stage; out-of-memory and missing libraries always fail it")
    p.add_argument("--resources", action="append", metavar="STAGE=KEY:VALUE,...",
                   help="per-stage resources, repeatable: cpus, gpus (fractional), actors (N or MIN-MAX), "
                        "batch (rows per call), e.g. asr=gpus:0.5,actors:1-4; or a JSON file "
                        "{stage: {key: value}}; recorded in lineage")
    p.add_argument("--fuse", choices=["resources", "none", "all"], default="resources",
                   help="operators: one per run of adjacent stages with the same resources (resources), "
                        "strictly one per stage (none), or the whole chain in one (all: the old shard-chain "
                        "executor)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or report")
    return p


def options(args: argparse.Namespace, inputs: list[str]) -> RunOptions:
    return RunOptions(inputs=inputs, output=args.output, warehouse=args.warehouse,
                      catalog=catalog_options(getattr(args, "catalog", None), args.warehouse),
                      executor=args.executor, num_cpus=args.num_cpus, mode=args.mode, tag=args.tag,
                      shard_bytes=int(args.shard_mb * (1 << 20)), shard_rows=args.shard_rows,
                      progress=not args.quiet, allow_empty=args.allow_empty,
                      on_unreadable=args.on_unreadable, raw_rejects=args.raw_rejects,
                      error_budget=args.error_budget, resources=_resources(args.resources), fuse=args.fuse)


def _resources(items: list[str] | None) -> dict:
    from schemas.engine.stage import parse_resources
    try:
        return parse_resources(items)
    except ValueError as e:  # a usage error: one line and exit 2, as argparse's own
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def run_and_report(pipeline: Pipeline, opts: RunOptions, quiet: bool = False) -> int:
    from pipelines import report
    from schemas.engine.inputs import InputError, UnreadableInput
    from schemas.engine.raysession import RayStartFailed
    from schemas.engine.runner import NothingKept, RunInProgress, StorageFull
    from schemas.engine.stage import StageFailed
    from schemas.store import Store, StoreError

    try:
        result = run(pipeline, opts)
    except (InputError, NothingKept, UnreadableInput, RunInProgress, StorageFull, StoreError, StageFailed,
            RayStartFailed, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not quiet:
        store = Store(opts.warehouse, opts.catalog)
        report.print_run(result)
        report.print_stats(store, f"{result.output}@{result.snapshot_id}")
    else:
        print(f"published {result.output}@{result.snapshot_id} run={result.run_id} "
              f"kept={result.accounting['kept']} rejected={result.accounting['rejected']} "
              f"shards: {result.processed_shards} processed, {result.resumed_shards} resumed")
    return 0


def main(build: Callable[[argparse.Namespace], tuple[Pipeline, list[str]]], parser: argparse.ArgumentParser,
         argv: list[str] | None = None) -> int:
    args = parser.parse_args(argv)
    from schemas.store import StoreError
    try:  # before build: it may read the store; exported so Ray workers reach the same storage
        catalog_options(args.catalog, args.warehouse)
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from schemas.engine.stage import StageConfigError
    try:  # stage parameters are checked as the pipeline is built: a typo stops here, before Ray
        pipeline, inputs = build(args)
    except StageConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run_and_report(pipeline, options(args, inputs), quiet=args.quiet)
