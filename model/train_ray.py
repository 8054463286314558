"""SFT on N workers through Ray Train (`TorchTrainer`, DDP or FSDP: gloo on CPU, NCCL on GPU).

The same global batches as one process (`model.sft.train_sft`), split across workers:

- Each worker reads its shard of the table (`ray.train.get_dataset_shard`; rows never reach the
  driver) and tokenizes it. The workers all-gather only (document key, length) pairs, so every
  worker knows the whole table's lengths in one order: documents sorted by `doc_key`, the order
  the one-process path sorts its conversations in.
- From the lengths, every worker computes the epoch's plan exactly as `model/packing.py` does
  in one process (`packed_plan`/`pad_plan`: BFD rows, shuffled with seed + epoch, batches by
  token budget): global batch k is the one-process batch k. Worker w takes rows w, w+N, ... of
  each batch (1/N of its token budget), and the documents of its rows reach it in one
  all-to-all per epoch from the workers that read them.
- The loss is `model.sft.token_loss` times its learned-token count (the batch's sum), divided by
  the GLOBAL count of learned tokens (all-reduced) and multiplied by N (DDP averages gradients):
  the gradient is the one-process batch's gradient, up to float summation order.
- Rank 0 writes a checkpoint (`model/checkpoint.py`: safetensors, optimizer + RNG state, the
  data position = the step, since the plan is a function of the step) and reports it with
  `ray.train.report(..., checkpoint=...)` into the run's storage (a warehouse path or s3://).
  On a worker failure Ray Train restarts the group (`FailureConfig(max_failures)`) and the
  workers resume from `ray.train.get_checkpoint()`; a rerun with the same run name resumes too.
- `strategy="fsdp"` (for a model that does not fit one device): FSDP2 (`fully_shard`) shards each
  transformer block and the root (embedding, tied head, final norm) over the workers, parameters,
  gradients and optimizer state alike. Its reduce-scatter averages gradients as DDP does, so the
  loss above (× N) holds unchanged, and `clip_grad_norm_` over the sharded (DTensor) gradients is the
  global norm. Checkpoints stay full ones: every worker takes part in gathering the weights and
  optimizer state to rank 0, which writes the same files as DDP; a resume loads them whole and
  shards them again, so a checkpoint of either strategy resumes under the other.
- `lora` (DDP only): every worker puts the same adapters on the frozen init (model/lora.py), DDP
  averages the adapters' gradients only, and a checkpoint holds what the in-process LoRA run
  writes: the merged weights (exportable as any checkpoint) and the adapters, from which a resume
  continues on the init's weights.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import torch

from model.config import TrainConfig
from model.packing import IGNORE, Batch, Docs, packed_batch, packed_plan, pad_plan, padded_batch

if TYPE_CHECKING:
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

    from model.lora import LoRAConfig
    from model.tokenizer import AnyTokenizer
    from model.transformer import Transformer
    from schemas.store import Store

Plan = tuple[list[list[list[int]]], bool, int]  # (batches of rows of document indices, packed?, row length)

HISTORY = "history.jsonl"
STRATEGIES = ("ddp", "fsdp")


# ---- the plan: a function of the table's lengths, the config and the epoch ------------------
def conversation(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def doc_key(conv: list[dict[str, Any]]) -> str:
    """The order every path trains in: a hash of the conversation (ties have equal content)."""
    return hashlib.sha256(json.dumps(conv, sort_keys=True).encode()).hexdigest()[:32]


def epoch_plan(lengths: list[int], cfg: TrainConfig, max_len: int, epoch: int) -> Plan:
    """(batches as lists of rows of global document indices, packed?, row length): the batches
    `model.sft.make_batches` builds in one process for this epoch."""
    if cfg.packing == "bfd":
        seq = min(cfg.seq_len, max_len)
        return packed_plan(lengths, seq, cfg.tokens_per_batch, cfg.seed + epoch), True, seq
    groups = pad_plan(lengths, max_len, cfg.tokens_per_batch, cfg.seed + epoch)
    return [[[i] for i in g] for g in groups], False, max_len


def plan_efficiency(lengths: list[int], batches: list[list[list[int]]], packed: bool, seq: int) -> float:
    """The non-pad share of the plan's tokens (what make_batches reports)."""
    real = total = 0
    for rows in batches:
        if packed:
            real += sum(min(lengths[i], seq) for r in rows for i in r)
            total += len(rows) * seq
        else:
            T = min(seq, max(lengths[r[0]] for r in rows))
            real += sum(min(lengths[r[0]], T) for r in rows)
            total += len(rows) * T
    return real / max(1, total)


def worker_rows(rows: list[list[int]], rank: int, world: int) -> list[list[int]]:
    """This worker's part of a global batch: every world-th row (1/N of the token budget)."""
    return rows[rank::world]


def build_batch(docs: Docs, rows: list[list[int]], packed: bool, seq: int, pad_id: int) -> Batch:
    """The tensors of this worker's rows; a one-token batch with nothing to learn when it has
    none (DDP needs every worker's backward)."""
    if not rows:
        one = torch.tensor([[pad_id]])
        return Batch(one, torch.full_like(one, IGNORE), torch.zeros_like(one), torch.full_like(one, -1), packed=False)
    if packed:
        return packed_batch(docs, rows, seq, pad_id)
    return padded_batch(docs, [r[0] for r in rows], seq, pad_id)


def shard_loss(model: torch.nn.Module, batch: Batch, global_learned: int,
               world: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(loss to back-propagate, this shard's loss sum, its learned tokens). `token_loss` is the
    one-process loss (a mean over the batch's learned tokens); times its count it is the shard's
    sum, and over the global count it is the shard's share of the global mean. DDP averages the
    workers' gradients, hence × world: the sum of shares' gradients is the one-process gradient."""
    from model.sft import token_loss
    mean, n = token_loss(model, batch)
    total = mean * n
    return total * (world / max(1, global_learned)), total.detach(), n


# ---- the worker ------------------------------------------------------------------------------
def _dist() -> ModuleType | None:
    import torch.distributed as dist
    return dist if dist.is_available() and dist.is_initialized() else None


def _all_gather(obj: Any, world: int) -> list[Any]:
    dist = _dist()
    if world == 1 or dist is None:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _all_reduce(values: list[float], world: int, device: torch.device) -> list[float]:
    dist = _dist()
    if world == 1 or dist is None:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    reduced: list[float] = t.tolist()
    return reduced


def exchange(mine: dict[int, tuple[list[int], list[bool]]], holder: list[int], lengths: list[int],
             need: list[set[int]], rank: int, world: int,
             device: torch.device) -> dict[int, tuple[list[int], list[bool]]]:
    """The documents this worker's rows need, from the workers that read them: one
    all-to-all of (token id · 2 + learned) per epoch. Sizes come from the plan, not a message."""
    if world == 1:
        return {g: mine[g] for g in need[0]}
    dist = _dist()
    assert dist is not None, "several workers without torch.distributed initialised"
    send: list[int] = []
    in_splits: list[int] = []
    for v in range(world):
        n = 0
        for g in sorted(g for g in need[v] if holder[g] == rank):
            ids, learn = mine[g]
            send.extend(t * 2 + int(b) for t, b in zip(ids, learn))
            n += len(ids)
        in_splits.append(n)
    sources = [sorted(g for g in need[rank] if holder[g] == u) for u in range(world)]
    out_splits = [sum(lengths[g] for g in gs) for gs in sources]
    out = torch.empty(sum(out_splits), dtype=torch.long, device=device)
    dist.all_to_all_single(out, torch.tensor(send, dtype=torch.long, device=device), out_splits, in_splits)
    flat, pos = out.cpu().tolist(), 0
    docs: dict[int, tuple[list[int], list[bool]]] = {}
    for gs in sources:
        for g in gs:
            chunk = flat[pos:pos + lengths[g]]
            pos += lengths[g]
            docs[g] = ([x >> 1 for x in chunk], [bool(x & 1) for x in chunk])
    return docs


def check_strategy(strategy: str, workers: int, lora: bool = False) -> None:
    """Refused before Ray starts: FSDP shards over Ray Train workers, and the in-process trainer
    (0 workers) has none to shard over; LoRA's adapters are a few MB, so they are not sharded."""
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy: '{strategy}' is not one of {', '.join(STRATEGIES)}")
    if strategy == "fsdp" and workers < 1:
        raise ValueError("--strategy fsdp shards over Ray Train workers; --local / --train-workers 0 trains in "
                         "one process")
    if strategy == "fsdp" and lora:
        raise ValueError("--strategy fsdp with --lora-rank: LoRA trains adapters on a frozen model that every "
                         "worker holds whole; use --strategy ddp")


def shard(model: Transformer, device: torch.device, world: int) -> None:
    """FSDP2 over all workers: each block is its own unit (its parameters are gathered for its
    forward and backward only, then freed), the root holds the rest (the tied embedding and head
    share one parameter, so they must be in one unit). The parameters may still be on the CPU:
    `fully_shard` moves each unit to the mesh's device as it shards it, so a model that does not
    fit one device is never whole on it."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if device.type == "cuda":
        torch.cuda.set_device(device)
    mesh = init_device_mesh(device.type, (world,))
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


class FullState:
    """The sharded optimizer as `model/checkpoint.py` sees a plain one, so that FSDP's checkpoints
    are DDP's: `state_dict()` is the full state keyed by parameter index (torch's own format:
    indices run over the param groups in order), `load_state_dict()` takes that format back and
    shards it. `gather()` is a collective: every worker calls it, rank 0 gets the state."""

    def __init__(self, model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        self.model, self.opt = model, opt
        self.full: dict[str, Any] = {}
        names = {id(p): n for n, p in model.named_parameters()}  # a tied parameter once, by its first name
        self.order = [names[id(p)] for g in opt.param_groups for p in g["params"]]

    def _options(self, cpu_offload: bool = False) -> Any:
        from torch.distributed.checkpoint.state_dict import StateDictOptions
        return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload)

    def gather(self) -> dict[str, torch.Tensor]:
        """(the full model state on rank 0, {} elsewhere); the optimizer's is kept for state_dict()."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict
        options = self._options(cpu_offload=True)
        weights = cast(dict[str, torch.Tensor], get_model_state_dict(self.model, options=options))
        named = cast(dict[str, Any], get_optimizer_state_dict(self.model, self.opt, options=options))
        index = {n: i for i, n in enumerate(self.order)}
        self.full = {"state": {index[n]: v for n, v in named.get("state", {}).items()},
                     "param_groups": [{**g, "params": [index[n] for n in g["params"]]}
                                      for g in named.get("param_groups", [])]}
        return weights

    def state_dict(self) -> dict[str, Any]:
        return self.full

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict
        named = {"state": {self.order[i]: v for i, v in state["state"].items()},
                 "param_groups": [{**g, "params": [self.order[i] for i in g["params"]]}
                                  for g in state["param_groups"]]}
        set_optimizer_state_dict(self.model, self.opt, optim_state_dict=cast(Any, named), options=self._options())


def _pause_for_test(pause: dict[str, Any] | None, rank: int, done: int) -> None:
    """Test hook (tests/test_train_ray.py): the chosen worker writes its pid after the chosen
    step and waits until the test has marked the kill (so the kill lands mid-run, after a
    checkpoint); after the restart the marker is there and it goes on."""
    if not pause or pause["rank"] != rank or pause["step"] != done:
        return
    import ray.train
    ray.train.get_all_reported_checkpoints(timeout_s=300)  # the controller has the last checkpoint (a worker's
    # queued report dies with it: killed before the controller polled it, the run resumes from the one before)
    path = os.path.join(pause["dir"], f"rank{rank}.pid")
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)  # whole or absent
    marker = os.path.join(pause["dir"], "kill.marker")
    deadline = time.time() + pause.get("timeout", 300)
    while not os.path.exists(marker) and time.time() < deadline:
        time.sleep(0.05)


def _restore(d: str, opt: torch.optim.Optimizer | FullState,
             meta: dict[str, Any]) -> tuple[int, list[dict[str, Any]], list[int]]:
    """(step to resume at, the loss history up to it, the steps this run resumed at so far)."""
    from model import checkpoint
    start = checkpoint.load_optimizer(d, opt) or 0  # type: ignore[arg-type]  # FullState: the same two methods
    history = []
    if os.path.exists(os.path.join(d, HISTORY)):
        with open(os.path.join(d, HISTORY)) as f:
            history = [json.loads(line) for line in f if line.strip()]
    return start, [r for r in history if r["step"] <= start], list(meta.get("resumed_from", [])) + [start]


def _start(config: dict[str, Any], cfg: TrainConfig, device: torch.device, world: int, sharded: bool,
           ckpt: Any) -> tuple[Transformer, AnyTokenizer, dict[str, Any], torch.optim.Optimizer, FullState | None,
                               tuple[int, list[dict[str, Any]], list[int]], dict[str, Any]]:
    """The model (sharded or whole on `device`), its optimizer, where the run's last checkpoint
    left off (step 0 without one), and what a LoRA run's checkpoints record ({} otherwise)."""
    import contextlib

    from model import checkpoint
    from model.lora import LoRAConfig
    from model.sft import attach_lora, optimizer_for, resume_weights

    model, tok, init_meta = checkpoint.load(config["init"], device="cpu")
    if config.get("lora"):  # the adapters' random init as train_sft draws it: seeded after the model is built
        torch.manual_seed(cfg.seed)
    lora_extra = attach_lora(model, LoRAConfig.from_dict(config["lora"]) if config.get("lora") else None)
    if not sharded:
        model = model.to(device)  # FSDP moves each unit as it shards it (see `shard`)
    resume: tuple[int, list[dict[str, Any]], list[int]] = (0, [], [])
    with ckpt.as_directory() if ckpt is not None else contextlib.nullcontext(None) as d:
        if d is not None:  # whole weights (or LoRA's adapters), before sharding: every worker slices its own shard
            meta = checkpoint.meta(d)
            resume_weights(d, model, lora_extra, torch.device("cpu") if sharded else device)
        if sharded:
            shard(model, device, world)  # before the optimizer: FSDP replaces the parameters with shards
        opt = optimizer_for(model, cfg.lr, cfg.weight_decay)
        full = FullState(model, opt) if sharded else None
        if d is not None:
            resume = _restore(d, full or opt, meta)
    return model, tok, init_meta, opt, full, resume, lora_extra


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train's per-worker function."""
    import ray
    import ray.train
    import ray.train.torch
    from torch.distributed.tensor import DTensor

    from model import checkpoint
    from model.sft import lora_checkpoint_files, lr_at

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = TrainConfig.from_dict(config["train_config"])
    torch.set_num_threads(max(1, int(config.get("threads") or 1)))  # Ray workers start with 1 and keep it
    device = ray.train.torch.get_device()
    autocast = None
    if device.type == "cuda" and (cfg.dtype or "bfloat16") == "bfloat16" and torch.cuda.is_bf16_supported():
        autocast = torch.bfloat16
    torch.manual_seed(cfg.seed)

    strategy = config.get("strategy", "ddp")
    sharded = strategy == "fsdp" and world > 1
    ckpt = ray.train.get_checkpoint()
    model, tok, init_meta, opt, full, (start, history, resumed_from), lora_extra = _start(config, cfg, device, world,
                                                                                          sharded, ckpt)
    if rank == 0:
        whole = " (one worker: nothing to shard, the weights stay whole)" if strategy == "fsdp" and not sharded else ""
        print(f"curate train: {world} worker(s), {strategy}{whole}, "
              + (f"resuming at step {start}" if ckpt is not None else "from step 0"), flush=True)
    net = model if sharded or world == 1 else ray.train.torch.prepare_model(model, move_to_device=False)

    # this worker's shard: tokenized here, never sent to the driver
    mine_local: list[tuple[str, tuple[list[int], list[bool]]]] = []
    for tbl in ray.train.get_dataset_shard("train").iter_batches(batch_size=512, batch_format="pyarrow"):
        for msgs in tbl.column("messages").to_pylist():
            conv = conversation(msgs)
            mine_local.append((doc_key(conv), tok.encode_chat(conv)))
    metas = _all_gather([(k, len(d[0])) for k, d in mine_local], world)
    order = sorted((k, r, i) for r, m in enumerate(metas) for i, (k, _) in enumerate(m))
    if len(order) != config["rows"]:  # the shards together are the version, row for row
        raise ValueError(f"the workers read {len(order):,} rows of {config['trained_on'][0]}; its metadata says "
                         f"{config['rows']:,}")
    lengths = [metas[r][i][1] for _, r, i in order]
    holder = [r for _, r, _ in order]
    mine = {g: mine_local[i][1] for g, (_, r, i) in enumerate(order) if r == rank}
    del mine_local

    max_len = model.cfg.max_seq_len
    plan0 = epoch_plan(lengths, cfg, max_len, 0)
    efficiency = plan_efficiency(lengths, *plan0)
    n_per_epoch = len(plan0[0])
    nodes = _all_gather(ray.get_runtime_context().get_node_id(), world)
    plans: dict[int, Plan] = {}
    docs: dict[int, tuple[list[int], list[bool]]] = {}
    net.train()
    tokens_seen, t0 = 0, time.perf_counter()
    for step in range(start, cfg.steps):
        epoch, k = divmod(step, n_per_epoch)
        if epoch not in plans:  # the epoch's plan (the same on every worker) and this worker's documents
            batches, packed, seq = plan0 if epoch == 0 else epoch_plan(lengths, cfg, max_len, epoch)
            plans = {epoch: (batches, packed, seq)}
            need = [{i for rows in batches for r in worker_rows(rows, v, world) for i in r} for v in range(world)]
            docs = exchange(mine, holder, lengths, need, rank, world, device)
        batches, packed, seq = plans[epoch]
        batch = build_batch(docs, worker_rows(batches[k], rank, world), packed, seq, tok.pad).to(device)
        lr = lr_at(step, cfg, cfg.lr, cfg.steps)
        for g in opt.param_groups:
            g["lr"] = lr
        local_learned = int((batch.labels != IGNORE).sum())
        global_learned, global_real = _all_reduce([local_learned, batch.real_tokens], world, device)
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            loss, local_sum, _ = shard_loss(net, batch, int(global_learned), world)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if isinstance(gnorm, DTensor):  # FSDP: the global norm, as a replicated DTensor
            gnorm = gnorm.full_tensor()
        opt.step()
        (global_sum,) = _all_reduce([float(local_sum)], world, device)
        tokens_seen += int(global_real)
        rec = {"step": step + 1, "loss": global_sum / max(1, global_learned), "lr": lr,
               "grad_norm": round(float(gnorm), 6), "tokens": int(global_real),
               "tokens_per_s": round(tokens_seen / (time.perf_counter() - t0), 1)}
        history.append(rec)
        done = step + 1
        if (cfg.save_every and done % cfg.save_every == 0) or done == cfg.steps:
            metrics = {"step": done, "loss": rec["loss"], "tokens_per_s": rec["tokens_per_s"]}
            weights = full.gather() if full is not None else None  # every worker: a collective
            if rank == 0:
                tmp = tempfile.mkdtemp(prefix="curate-train-")
                try:
                    d = os.path.join(tmp, "checkpoint")
                    extra = {"stage": "sft", "trainer": "ray-train", "train_workers": world, "strategy": strategy,
                             "sharded": sharded,  # fsdp on one worker runs whole: the record says so
                             "train_resources": config["train_resources"], "train_nodes": sorted(set(nodes)),
                             "data_position": {"step": done, "epoch": epoch, "batch": k + 1,
                                               "batches_per_epoch": n_per_epoch, "documents": len(lengths)},
                             "resumed_from": resumed_from, "init": {"path": config["init"], "id": init_meta.get("id"),
                                                                     "trained_on": init_meta.get("trained_on", [])},
                             "run": config.get("run_name"), **lora_extra}
                    files = lora_checkpoint_files(model, lora_extra) if lora_extra else {"state": weights}
                    checkpoint.save(d, model, tok, step=done, train_config=cfg.to_dict(),
                                    trained_on=config["trained_on"],
                                    metrics={"loss": rec["loss"], "packing_efficiency": round(efficiency, 4)},
                                    optimizer=full or opt, extra=extra, **files)  # type: ignore[arg-type]
                    with open(os.path.join(d, HISTORY), "w") as f:
                        f.writelines(json.dumps(r) + "\n" for r in history)
                    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            else:
                ray.train.report(metrics)
        _pause_for_test(config.get("pause"), rank, done)


# ---- the driver ------------------------------------------------------------------------------
def parse_resources(text: str) -> dict[str, float]:
    """`cpus:1,gpus:0` → {"cpus": 1.0, "gpus": 0.0}."""
    out = {"cpus": 1.0, "gpus": 0.0}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition(":")
        if not sep or key not in out:
            raise ValueError(f"--train-resources: '{part}' is not cpus:N or gpus:N")
        try:
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"--train-resources: '{value}' in '{part}' is not a number") from None
        if out[key] < 0:
            raise ValueError(f"--train-resources: '{part}' is negative")
    if out["cpus"] <= 0 and out["gpus"] <= 0:
        raise ValueError("--train-resources: a worker needs a CPU or a GPU")
    return out


def run_name(out: str, trained_on: list[str], init_id: str | None, cfg: TrainConfig,
             lora: dict[str, Any] | None = None) -> str:
    """The same command (table version, init, settings, adapters) → the same run, which resumes."""
    key: list[Any] = [trained_on, init_id, cfg.to_dict()] + ([lora] if lora else [])
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return f"{os.path.basename(os.path.abspath(out))}-{h}"


class _AllRows:
    """Ray Train's DataConfig splits with equal=True, which drops up to N-1 rows to even the
    shards; every row is trained on here (the plan balances the batches, not the shards)."""

    @staticmethod
    def make() -> Any:
        from ray.train import DataConfig

        class AllRows(DataConfig):
            def configure(self, datasets: dict[str, Any], world_size: int, worker_handles: Any,
                          worker_node_ids: Any, **kwargs: Any) -> list[dict[str, Any]]:
                output: list[dict[str, Any]] = [{} for _ in range(world_size)]
                for name, ds in datasets.items():
                    ds = ds.copy(ds)
                    ds.context.execution_options = self._resolve_execution_options(name)
                    hints = worker_node_ids if self._enable_shard_locality else None
                    for i, split in enumerate(ds.streaming_split(world_size, equal=False, locality_hints=hints)):
                        output[i][name] = split
                return output

        return AllRows()


def read_messages(store: Store, t: Table, snap: Snapshot) -> tuple[Any, int]:
    """The version's `messages` column as a Ray Dataset over its Parquet files (the files the
    snapshot's metadata lists, with their row counts checked when read). Not `Store.read_ray`:
    Ray's Iceberg datasource holds the pyiceberg table, which does not pickle, and Ray Train
    sends its datasets to the controller actor."""
    import ray.data

    from schemas import filesystem as fsys
    tasks = list(t.scan(snapshot_id=snap.snapshot_id).plan_files())
    if not tasks:
        raise ValueError(f"{t.name()[-1]}@{snap.snapshot_id} has no rows")
    if any(task.delete_files for task in tasks):
        raise ValueError(f"{t.name()[-1]}@{snap.snapshot_id} has delete files: not supported for training")
    fs, _ = fsys.filesystem(tasks[0].file.file_path)
    paths = [fsys.filesystem(task.file.file_path)[1] for task in tasks]
    rows = sum(task.file.record_count for task in tasks)
    return ray.data.read_parquet(paths, columns=["messages"], filesystem=fs), rows


def train_ray(store: Store, ref: str, init: str, out: str, cfg: TrainConfig, *, workers: int,
              resources: dict[str, float], storage: str | None = None, max_failures: int = 2,
              placement: str = "PACK", threads: int | None = None, strategy: str = "ddp",
              pause: dict[str, Any] | None = None, name: str | None = None,
              lora: LoRAConfig | None = None) -> dict[str, Any]:
    """Train on `workers` Ray Train workers (`strategy` ddp or fsdp; `lora`: adapters on the frozen
    init, ddp only); the last checkpoint lands in `out`. Returns a summary."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from model import checkpoint
    from schemas import filesystem as fsys
    from schemas.engine.raysession import init_ray

    check_strategy(strategy, workers, lora is not None)
    t, snap = store.snapshot(ref)
    table = ref.partition("@")[0]
    trained_on = [f"{table}@{snap.snapshot_id}"]
    init = os.path.abspath(init)
    init_meta = checkpoint.meta(init)
    if not os.environ.get("RAY_ADDRESS") and not ray.is_initialized():
        need = int(workers * max(resources["cpus"], 0) + 0.999) + 1  # + a CPU for reading the table
        init_ray(num_cpus=max(os.cpu_count() or 1, need))
    ds, rows = read_messages(store, t, snap)
    have = ray.cluster_resources()
    if resources["gpus"] > 0 and have.get("GPU", 0) < resources["gpus"]:
        raise ValueError(f"--train-resources asks {resources['gpus']:g} GPU per worker and the Ray cluster has "
                         f"{have.get('GPU', 0):g}")
    if workers * resources["cpus"] > have.get("CPU", 0):
        raise ValueError(f"{workers} workers × {resources['cpus']:g} CPUs is more than the Ray cluster's "
                         f"{have.get('CPU', 0):g} CPUs")
    name = name or run_name(out, trained_on, init_meta.get("id"), cfg, lora.to_dict() if lora else None)
    root = storage or os.path.join(fsys.work_dir(store.location), "_train")
    storage_fs = None
    if fsys.is_remote(root):
        storage_fs, root = fsys.filesystem(root)
    else:
        root = os.path.abspath(root.removeprefix("file://"))
    use_gpu = resources["gpus"] > 0
    per_worker = {"CPU": resources["cpus"]} | ({"GPU": resources["gpus"]} if use_gpu else {})
    config = {"train_config": cfg.to_dict(), "init": init, "trained_on": trained_on,
              "train_resources": {"cpus": resources["cpus"], "gpus": resources["gpus"]},
              "threads": threads or max(1, int(resources["cpus"])), "run_name": name, "pause": pause,
              "rows": rows, "strategy": strategy, "lora": lora.to_dict() if lora else None}
    trainer = TorchTrainer(
        train_loop, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=per_worker,
                                     placement_strategy=placement.upper()),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name=name, storage_path=root, storage_filesystem=storage_fs,
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
        datasets={"train": ds}, dataset_config=_AllRows.make())
    t0 = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - t0
    if result.checkpoint is None:
        raise RuntimeError(f"run {name} reported no checkpoint")
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".ckpt-")
    result.checkpoint.to_directory(tmp)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.replace(tmp, out)
    from model.sft import final_loss, metrics_path

    meta = checkpoint.meta(out)
    with open(os.path.join(out, HISTORY)) as f:
        history = [json.loads(line) for line in f if line.strip()]
    log_path = metrics_path(out)
    shutil.copyfile(os.path.join(out, HISTORY), log_path)
    return {"checkpoint": os.path.abspath(out), "run": name, "storage": os.path.join(root, name) if not storage_fs
            else storage, "steps": meta["step"],
            "final_loss": final_loss([h["loss"] for h in history]) if history else None,
            "history": history, "train_workers": meta.get("train_workers"),
            "train_resources": meta.get("train_resources"), "train_nodes": meta.get("train_nodes"),
            "strategy": meta.get("strategy"), "sharded": meta.get("sharded"), "lora": meta.get("lora"),
            "resumed_from": meta.get("resumed_from", []),
            "trained_on": meta["trained_on"], "seconds": round(seconds, 2), "metrics_log": log_path}


def train_local(store: Store, ref: str, init: str, out: str, cfg: TrainConfig,
                threads: int | None = None, lora: LoRAConfig | None = None) -> dict[str, Any]:
    """The in-process trainer (`model.sft.train_sft`) on the same table, in the same order."""
    from model import checkpoint, runtime
    from model.sft import train_sft

    t, snap = store.snapshot(ref)
    table = ref.partition("@")[0]
    trained_on = [f"{table}@{snap.snapshot_id}"]
    device, autocast = runtime.setup(threads or cfg.threads, cfg.device, cfg.dtype)
    model, tok, _ = checkpoint.load(init, device=str(device))
    convs = [conversation(m) for m in store.read_arrow(f"{table}@{snap.snapshot_id}", columns=["messages"])
             .column("messages").to_pylist()]
    convs.sort(key=doc_key)
    t0 = time.perf_counter()
    res = train_sft(model, tok, convs, cfg, out, trained_on, device, autocast, resume=True, progress=False, lora=lora)
    res.update(checkpoint=os.path.abspath(out), trained_on=trained_on, train_workers=0,
               seconds=round(time.perf_counter() - t0, 2))
    return res
