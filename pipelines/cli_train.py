"""`curate train`: SFT of the built-in trainer on a table version, on N Ray Train workers
(model/train_ray.py) or in this process (`--local`, or `--train-workers 0`: model.sft.train_sft)."""
from __future__ import annotations

import contextlib
import json
import sys

import click


@click.command("train")
@click.option("--table", "ref", required=True, help="the SFT table version to train on, TABLE@TAG or TABLE@SNAPSHOT "
              "(its `messages` column)")
@click.option("--init", "init", required=True, type=click.Path(exists=True, file_okay=False),
              help="the checkpoint to start from: from scratch or imported (`curate model import`); a path every "
                   "Ray node sees")
@click.option("--out", "out", required=True, help="where the trained checkpoint is written")
@click.option("--train-workers", "workers", type=int, default=1, show_default=True,
              help="Ray Train workers (--strategy; gloo on CPU, NCCL on GPU); 0 trains in this process")
@click.option("--train-resources", "resources", default="cpus:1,gpus:0", show_default=True,
              help="per worker: cpus:N,gpus:N")
@click.option("--strategy", default="ddp", show_default=True, metavar="[ddp|fsdp]",
              help="ddp: every worker holds the whole model; fsdp: the weights, gradients and optimizer state are "
                   "sharded over the workers (FSDP2, per transformer block), for a model that does not fit one "
                   "device. Same batches and loss; checkpoints are full either way, so either resumes the other")
@click.option("--lora-rank", type=int, default=0, show_default=True,
              help="train rank-N LoRA adapters on the frozen --init instead of every weight (0: full fine-tuning); "
                   "the checkpoint holds the merged weights (exportable) and the adapters. In process or with ddp")
@click.option("--lora-alpha", type=float, default=None, help="LoRA scale numerator (default: 2 × rank)")
@click.option("--lora-targets", default="q,k,v,o", show_default=True,
              help="the linear layers adapted, among q,k,v,o (attention) and gate,up,down (MLP)")
@click.option("--local", is_flag=True, help="train in this process (the plain trainer), without Ray")
@click.option("--steps", type=int, default=600, show_default=True, help="optimizer steps (cycling over the table)")
@click.option("--lr", type=float, default=3e-3, show_default=True,
              help="peak learning rate (AdamW, linear warm-up then cosine decay)")
@click.option("--warmup-steps", type=int, default=30, show_default=True, help="steps of the warm-up to --lr")
@click.option("--tokens-per-batch", type=int, default=2048, show_default=True,
              help="the GLOBAL batch's token budget; each of N workers gets 1/N of it")
@click.option("--seq-len", type=int, default=256, show_default=True, help="packed row length")
@click.option("--packing", type=click.Choice(["bfd", "pad"]), default="bfd", show_default=True,
              help="bfd: best-fit-decreasing packing with document masks; pad: length buckets")
@click.option("--seed", type=int, default=0, show_default=True, help="initialisation and data order")
@click.option("--save-every", type=int, default=50, show_default=True,
              help="checkpoint every N steps (a failed worker's run resumes from the last)")
@click.option("--max-failures", type=int, default=2, show_default=True,
              help="worker-group restarts Ray Train allows before the run fails")
@click.option("--storage", default=None,
              help="Ray Train's storage for the run's checkpoints (default: WAREHOUSE/_train; "
              "a path every node sees, or s3://)")
@click.option("--placement", type=click.Choice(["pack", "spread"]), default="pack", show_default=True,
              help="workers on as few nodes as possible, or one per node")
@click.option("--threads", type=int, default=None, help="torch threads per worker (default: its CPUs)")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@click.pass_context
def train_cmd(ctx, ref, init, out, workers, resources, strategy, lora_rank, lora_alpha, lora_targets, local, steps, lr,
              warmup_steps, tokens_per_batch, seq_len, packing, seed, save_every, max_failures, storage, placement,
              threads, as_json):
    """Supervised fine-tuning of a built-in checkpoint on a table version, on N Ray Train workers.

    The global batches are the in-process trainer's (the same packing, masks and loss), split
    across the workers; checkpoints go to Ray Train's storage in the warehouse and a failed or
    rerun run resumes from the last one. The checkpoint records trained_on, train_workers,
    train_resources and strategy (and, with --lora-rank, the adapters' settings)."""
    from model.config import TrainConfig
    from model.lora import LoRAConfig
    from model.train_ray import check_strategy, parse_resources, train_local, train_ray
    from schemas.store import Store

    if workers < 0:
        _fail("--train-workers must be 0 or more")
    if lora_rank < 0:
        _fail("--lora-rank must be 0 (full fine-tuning) or more")
    try:
        res = parse_resources(resources)
        check_strategy(strategy, 0 if local else workers, lora_rank > 0)
        lora = LoRAConfig(rank=lora_rank, alpha=lora_alpha or 2.0 * lora_rank,
                          targets=tuple(t.strip() for t in lora_targets.split(",") if t.strip())) if lora_rank else None
    except ValueError as e:
        _fail(str(e))
    cfg = TrainConfig(lr=lr, steps=steps, warmup_steps=warmup_steps, tokens_per_batch=tokens_per_batch,
                      packing=packing, seq_len=seq_len, seed=seed, save_every=save_every, threads=threads)
    if packing == "bfd" and workers > max(1, tokens_per_batch // seq_len):
        _fail(f"--tokens-per-batch {tokens_per_batch} holds {max(1, tokens_per_batch // seq_len)} rows of "
              f"--seq-len {seq_len}: fewer than {workers} workers")
    store = Store(ctx.obj["warehouse"], ctx.obj["catalog"])
    if local or workers == 0:
        summary = train_local(store, ref, init, out, cfg, threads, lora=lora)
    else:
        # Ray's driver prints what workers and raylets log (e.g. its worker-startup warning) on this
        # process's stdout from a background thread, at any time until Ray shuts down: with --json
        # that text goes to stderr and Ray is shut down before the summary, so stdout is one document.
        import ray
        with contextlib.redirect_stdout(sys.stderr if as_json else sys.stdout):
            try:
                summary = train_ray(store, ref, init, out, cfg, workers=workers, resources=res, storage=storage,
                                    max_failures=max_failures, placement=placement, threads=threads,
                                    strategy=strategy, lora=lora)
            except ValueError as e:
                _fail(str(e))
            finally:
                if as_json:
                    ray.shutdown()
    summary.pop("history", None)
    from pipelines.model_registry import register_checkpoint  # `curate versions models` lists it, from --init
    snap = register_checkpoint(store, summary["checkpoint"], "sft", run=summary.get("run"), pipeline="curate train")
    summary["registered"] = f"models@{snap}"
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
    else:
        how = summary.get("strategy") if summary.get("sharded") or summary.get("strategy") != "fsdp" else \
            "fsdp, unsharded on one worker"
        where = (f"on {summary['train_workers']} Ray Train worker(s) ({how})"
                 if summary.get("train_workers") else "in process")
        loss = summary.get("final_loss")
        click.echo(f"trained {summary['trained_on'][0]} for {summary['steps']} steps {where}, loss "
                   f"{loss if loss is None else round(loss, 4)} → {summary['checkpoint']} ({summary['seconds']} s), "
                   f"registered as {summary['registered']}")


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)
