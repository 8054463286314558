"""`curate train` on Ray Train (issue 26): N workers compute the one-process gradient, and a
killed worker's run resumes from its last checkpoint to the same result.

Fast: the sharded loss's gradient (2 simulated workers, normalised by the global learned-token
count) equals one process's, for packed and padded batches, from-scratch and imported models;
the plan's batches are the in-process trainer's own. Slow (`-m slow`, a 2-node local cluster):
2 CPU workers vs 1 worker vs the plain in-process trainer give the same loss curve, and a worker
SIGKILLed mid-run is survived with the same final weights. FSDP (`--strategy fsdp`): its full
checkpoint is DDP's format (fast, one process), and 2 sharded workers give DDP's curve and
weights and survive the same kill (slow). LoRA (`--lora-rank`): in process it trains the
adapters only and writes merged weights (fast); 2 workers give the in-process LoRA run's curve
and merged weights, and a killed LoRA run resumes from its adapters (slow)."""
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pytest
import torch

from model import checkpoint
from model.config import ModelConfig, TrainConfig
from model.packing import IGNORE
from model.sft import make_batches, token_loss
from model.train_ray import build_batch, conversation, doc_key, epoch_plan, shard_loss, worker_rows

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CURATE = os.path.join(os.path.dirname(sys.executable), "curate")
MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("messages", MESSAGES)])


def conversations(n: int = 64) -> list[list[dict]]:
    """Arithmetic questions and answers of varied lengths, some with a system prompt or two turns."""
    out = []
    for i in range(n):
        a, b = 7 * i + 3, 13 * i % 97
        conv = [{"role": "user", "content": f"What is {a} + {b}?" + " Show the steps." * (i % 4)},
                {"role": "assistant", "content": f"{a} + {b} = {a + b}." + f" Then {a + b} - {b} = {a}." * (i % 3)}]
        if i % 5 == 0:
            conv = [{"role": "system", "content": "Answer briefly."}] + conv
        if i % 7 == 0:
            conv += [{"role": "user", "content": "And twice that?"},
                     {"role": "assistant", "content": f"{2 * (a + b)}."}]
        out.append(conv)
    return out


def scratch_checkpoint(path: str, convs: list[list[dict]]) -> str:
    from model.tokenizer import ChatTokenizer
    from model.transformer import Transformer
    tok = ChatTokenizer.train([m["content"] for c in convs for m in c], vocab_size=300)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=tok.vocab_size, dim=48, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128,
                                    max_seq_len=128))
    checkpoint.save(path, model, tok, step=0, train_config={}, trained_on=[])
    return path


def publish_table(warehouse: str, convs: list[list[dict]], parts: int = 4) -> str:
    """The conversations as an SFT table of `parts` files (so Ray Data has blocks to split)."""
    from pipelines.derived import publish_derived
    from schemas.store import Store
    store = Store(warehouse)
    snap = None
    for p in range(parts):
        rows = convs[p::parts]
        table = pa.table({"id": [doc_key(c) for c in rows], "messages": rows}, schema=SCHEMA)
        snap = publish_derived(store, "sft_train", SCHEMA, table, source=f"test:{p}", pipeline="test",
                               config={"part": p}, rows_in=len(rows), used=len(rows), reasons={},
                               mode="append" if p else "overwrite")
    return f"sft_train@{snap}"


# ---- fast: the math -------------------------------------------------------------------------
def _grads(model) -> list[torch.Tensor]:
    return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def _imported_checkpoint(root) -> str:
    from test_hf_format import _make_family
    _, _, ckpt = _make_family("llama", root)
    return ckpt


@pytest.mark.parametrize("source,packing", [("scratch", "bfd"), ("scratch", "pad"), ("imported", "bfd")])
def test_the_sharded_loss_has_the_one_process_gradient(tmp_path, source, packing):
    """Two simulated workers, each with every other row of the global batch, their losses over
    the GLOBAL learned-token count (× 2, since DDP averages): the averaged gradient is the
    one-process gradient of the same batch, and the summed losses its loss. The plan's batches
    are exactly `make_batches`' (the in-process trainer's), so the global batch is the same."""
    convs = sorted(conversations(40), key=doc_key)
    ckpt = scratch_checkpoint(str(tmp_path / "init"), convs) if source == "scratch" else _imported_checkpoint(tmp_path)
    model, tok, _ = checkpoint.load(ckpt)
    cfg = TrainConfig(tokens_per_batch=512 if packing == "bfd" else 600, seq_len=128, packing=packing, seed=3)
    docs = [tok.encode_chat(conversation(c)) for c in convs]
    lengths = [len(d[0]) for d in docs]
    for epoch in (0, 1):
        batches, packed, seq = epoch_plan(lengths, cfg, model.cfg.max_seq_len, epoch)
        ref, _ = make_batches(tok, convs, cfg, model.cfg.max_seq_len, epoch)
        assert len(batches) == len(ref)
        for rows, b in zip(batches, ref):
            mine = build_batch(docs, rows, packed, seq, tok.pad)
            for k in ("ids", "labels", "pos", "doc"):
                assert torch.equal(getattr(mine, k), getattr(b, k)), k

    batches, packed, seq = epoch_plan(lengths, cfg, model.cfg.max_seq_len, 0)
    k = max(range(len(batches)), key=lambda i: len(batches[i]))  # a full batch (the last may be short)
    rows = batches[k]
    assert len(rows) >= 2
    full = build_batch(docs, rows, packed, seq, tok.pad)
    model.zero_grad()
    loss, n = token_loss(model, full)
    loss.backward()
    one = _grads(model)

    world = 2
    parts = [build_batch(docs, worker_rows(rows, w, world), packed, seq, tok.pad) for w in range(world)]
    counts = [int((p.labels != IGNORE).sum()) for p in parts]
    assert sum(counts) == n and all(counts)            # the global count is the all-reduce of the local ones
    assert min(counts) / max(counts) > 0.25             # each worker has its share of the batch
    summed = [torch.zeros_like(g) for g in one]
    total = 0.0
    for p in parts:
        model.zero_grad()
        out, local_sum, _ = shard_loss(model, p, sum(counts), world)
        out.backward()
        summed = [s + g for s, g in zip(summed, _grads(model))]
        total += float(local_sum)
    sharded = [s / world for s in summed]              # DDP's average of the workers' gradients
    assert abs(total / sum(counts) - loss.item()) <= 1e-5 * loss.item()
    for a, b in zip(one, sharded):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    # normalising by the local counts instead (the mistake this guards against) is not the same gradient
    wrong = [torch.zeros_like(g) for g in one]
    for p, c in zip(parts, counts):
        model.zero_grad()
        out, _, _ = shard_loss(model, p, c * world, world)
        out.backward()
        wrong = [s + g / world for s, g in zip(wrong, _grads(model))]
    if counts[0] != counts[1]:
        assert max(float((a - b).abs().max()) for a, b in zip(one, wrong)) > 1e-4


def test_a_worker_without_rows_still_steps_with_nothing_to_learn():
    """A batch with fewer rows than workers: the row-less worker runs a one-token batch that
    contributes no loss and a zero gradient (DDP needs every worker's backward)."""
    b = build_batch({}, [], True, 64, 0)
    assert b.ids.shape == (1, 1) and int((b.labels != IGNORE).sum()) == 0 and b.real_tokens == 0
    assert worker_rows([[1], [2], [3]], 1, 2) == [[2]] and worker_rows([[1]], 1, 2) == []


def test_train_resources_parse_and_refuse():
    from model.train_ray import parse_resources
    assert parse_resources("cpus:2,gpus:0.5") == {"cpus": 2.0, "gpus": 0.5}
    for bad in ("cpu:1", "cpus:x", "cpus:-1", "cpus:0,gpus:0"):
        with pytest.raises(ValueError, match="--train-resources"):
            parse_resources(bad)


def test_curate_train_local_trains_in_process_and_refuses_bad_settings_in_one_line(tmp_path):
    """`--local` runs the plain trainer on the table version (no Ray) and records the version it
    trained on; settings that cannot work end with one `error:` line, exit 2, before Ray starts."""
    from click.testing import CliRunner

    from pipelines.cli import main
    convs = conversations(24)
    wh = str(tmp_path / "wh")
    ref = publish_table(wh, convs, parts=2)
    init = scratch_checkpoint(str(tmp_path / "init"), convs)
    base = ["--warehouse", wh, "train", "--table", ref, "--init", init, "--out", str(tmp_path / "out"),
            "--steps", "3", "--tokens-per-batch", "512", "--seq-len", "128"]
    res = CliRunner().invoke(main, base + ["--local", "--threads", "1", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["steps"] == 3 and summary["train_workers"] == 0
    meta = checkpoint.meta(str(tmp_path / "out"))
    assert meta["trained_on"] == [ref] and meta["step"] == 3
    for extra, words in ((["--train-workers", "5"], "fewer than 5 workers"),
                         (["--train-resources", "gpu:1"], "--train-resources"),
                         (["--train-workers", "-1"], "--train-workers"),
                         (["--strategy", "zero"], "--strategy: 'zero' is not one of ddp, fsdp"),
                         (["--strategy", "fsdp", "--local"], "--strategy fsdp shards over Ray Train workers"),
                         (["--strategy", "fsdp", "--train-workers", "0"], "--strategy fsdp shards"),
                         (["--strategy", "fsdp", "--train-workers", "2", "--lora-rank", "4"],
                          "--strategy fsdp with --lora-rank"),
                         (["--lora-rank", "-1"], "--lora-rank must be 0"),
                         (["--lora-rank", "2", "--lora-targets", "q,x"], "LoRA targets must be among")):
        res = CliRunner().invoke(main, base + extra)
        assert res.exit_code == 2 and words in res.output and "Traceback" not in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1, res.output


def test_an_fsdp_checkpoint_is_a_ddp_checkpoint(tmp_path):
    """`FullState`, between FSDP's sharded optimizer and model/checkpoint.py: the gathered weights
    and optimizer state are what the plain model and AdamW hold after the same steps, in torch's
    index-keyed format (so `checkpoint.load_optimizer` and a DDP resume read them), and that
    format resumes to the plain run's weights whichever strategy wrote it and whichever reads it. One
    process (a 1-worker mesh): the format, not the sharding, is under test here; the 2-worker
    run is the slow test's. The tied embedding is one parameter in both."""
    import torch.distributed as dist

    from model.sft import optimizer_for
    from model.train_ray import FullState, shard
    convs = sorted(conversations(16), key=doc_key)
    ckpt = scratch_checkpoint(str(tmp_path / "init"), convs)
    cfg = TrainConfig(tokens_per_batch=512, seq_len=128, seed=3)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        model, tok, _ = checkpoint.load(ckpt)
        batches, _ = make_batches(tok, convs, cfg, model.cfg.max_seq_len)
        plain, plain_opt = model, optimizer_for(model, 3e-3, 0.1)
        sharded, _, _ = checkpoint.load(ckpt)
        shard(sharded, torch.device("cpu"), 1)
        opt = optimizer_for(sharded, 3e-3, 0.1)

        def step(m, o, batch):
            o.zero_grad()
            token_loss(m, batch)[0].backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 0.05)   # < the norm: clipping acts
            o.step()

        for b in batches[:2]:
            step(plain, plain_opt, b)
            step(sharded, opt, b)
        full = FullState(sharded, opt)
        weights = full.gather()
        assert weights.keys() == plain.state_dict().keys()
        for k, v in plain.state_dict().items():
            torch.testing.assert_close(weights[k], v, rtol=1e-5, atol=1e-7)
        mine, ref = full.state_dict(), plain_opt.state_dict()
        assert mine["param_groups"] == ref["param_groups"] and mine["state"].keys() == ref["state"].keys()
        for i, st in ref["state"].items():
            for k, v in st.items():
                torch.testing.assert_close(mine["state"][i][k], v, rtol=1e-5, atol=1e-8)

        checkpoint.save(str(tmp_path / "fsdp"), sharded, tok, step=2, train_config={}, trained_on=[],
                        optimizer=full, state=weights)          # what rank 0 writes under fsdp
        checkpoint.save(str(tmp_path / "ddp"), plain, tok, step=2, train_config={}, trained_on=[],
                        optimizer=plain_opt)                    # and under ddp
        # each resumes under either strategy: the whole model as `curate model export` reads it, then
        # sharded or not, and the optimizer state through checkpoint.load_optimizer
        resumed = []
        for saved, sharding in (("fsdp", True), ("fsdp", False), ("ddp", True)):
            again, _, _ = checkpoint.load(str(tmp_path / saved))
            if sharding:
                shard(again, torch.device("cpu"), 1)
            again_opt = optimizer_for(again, 3e-3, 0.1)
            target = FullState(again, again_opt) if sharding else again_opt
            assert checkpoint.load_optimizer(str(tmp_path / saved), target) == 2
            resumed.append((again, again_opt, sharding))
        for b in batches[2:4]:
            step(plain, plain_opt, b)
            for again, again_opt, _ in resumed:
                step(again, again_opt, b)
        for again, again_opt, sharding in resumed:
            got = FullState(again, again_opt).gather() if sharding else again.state_dict()
            for k, v in plain.state_dict().items():
                torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-7)
    finally:
        dist.destroy_process_group()


def test_strategy_is_checked_before_training():
    from model.train_ray import check_strategy
    check_strategy("ddp", 0)
    check_strategy("fsdp", 1)
    check_strategy("ddp", 2, lora=True)
    for strategy, workers, lora in (("FSDP", 2, False), ("zero", 2, False), ("fsdp", 0, False), ("fsdp", 2, True)):
        with pytest.raises(ValueError, match="--strategy"):
            check_strategy(strategy, workers, lora)


def _differs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> set[str]:
    return {k for k in a if not torch.equal(a[k], b[k])}


def test_curate_train_local_with_lora_trains_the_adapters_and_writes_merged_weights(tmp_path):
    """`--lora-rank 4 --lora-targets q,v`: only the q and v projections' merged weights move (the
    frozen rest is the init's, bit for bit), the adapters are saved beside them, and the
    checkpoint loads as a plain one (what `curate model export` reads)."""
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from pipelines.cli import main
    convs = conversations(24)
    wh = str(tmp_path / "wh")
    ref = publish_table(wh, convs, parts=2)
    init = scratch_checkpoint(str(tmp_path / "init"), convs)
    out = str(tmp_path / "out")
    res = CliRunner().invoke(main, ["--warehouse", wh, "train", "--table", ref, "--init", init, "--out", out,
                                    "--steps", "3", "--tokens-per-batch", "512", "--seq-len", "128", "--lr", "1e-2",
                                    "--local", "--threads", "1", "--lora-rank", "4", "--lora-targets", "q,v"])
    assert res.exit_code == 0, res.output
    meta = checkpoint.meta(out)
    assert meta["lora"]["rank"] == 4 and meta["lora"]["alpha"] == 8.0 and meta["lora"]["targets"] == ["q", "v"]
    assert os.path.exists(os.path.join(out, "adapters.safetensors"))
    before = load_file(os.path.join(init, "model.safetensors"))
    after = load_file(os.path.join(out, "model.safetensors"))
    assert before.keys() == after.keys()
    moved = _differs(before, after)
    assert moved and all(k.endswith((".q.weight", ".v.weight")) for k in moved), sorted(moved)
    model, _, _ = checkpoint.load(out)   # merged: no adapter modules left
    assert not any("lora" in k for k in model.state_dict())


# ---- slow: on a 2-node local cluster ---------------------------------------------------------
STEPS, SAVE_EVERY = 12, 4
TRAIN_ARGS = ["--steps", str(STEPS), "--save-every", str(SAVE_EVERY), "--lr", "3e-3", "--warmup-steps", "3",
              "--tokens-per-batch", "512", "--seq-len", "128", "--seed", "1"]


@pytest.fixture(scope="module")
def cluster():
    from localcluster import LocalCluster
    c = LocalCluster(f"/tmp/rtr{os.getpid()}", object_store_mb=200)
    # Ray's memory monitor kills workers when the MACHINE is over 95% used; on a shared test
    # machine other processes' memory then kills this test's workers (the kernel's OOM killer stays)
    c.env["RAY_memory_monitor_refresh_ms"] = "0"
    # Ray Train gives a worker group 60 s to start; on a loaded 2-core machine starting two workers
    # (each imports torch) can take longer, and the run then retries until the test's timeout
    c.env["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = "600"
    try:
        c.start_head(num_cpus=2)
        c.add_node("cpu", num_cpus=2)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_ray")
    convs = conversations(64)
    wh = str(root / "warehouse")
    ref = publish_table(wh, convs)
    init = scratch_checkpoint(str(root / "init"), convs)
    return {"root": root, "warehouse": wh, "ref": ref, "init": init}


def curate_train(cluster, setup, out: str, *extra: str) -> dict:
    env = {**cluster.env, "RAY_ADDRESS": cluster.address}
    cmd = [CURATE, "--warehouse", setup["warehouse"], "train", "--table", setup["ref"], "--init", setup["init"],
           "--out", out, *TRAIN_ARGS, *extra, "--json"]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    return json.loads(res.stdout)   # --json: the summary is all of stdout (Ray's forwarded logs go to stderr)


@pytest.fixture(scope="module")
def runs(cluster, setup):
    """The uninterrupted runs: 2 workers (one per node), 1 worker, the in-process trainer, and 2
    workers (one per node) with the model sharded (FSDP)."""
    root = setup["root"]
    two = curate_train(cluster, setup, str(root / "two"), "--train-workers", "2", "--placement", "spread")
    one = curate_train(cluster, setup, str(root / "one"), "--train-workers", "1")
    local = curate_train(cluster, setup, str(root / "local"), "--local", "--threads", "1")
    fsdp = curate_train(cluster, setup, str(root / "fsdp"), "--train-workers", "2", "--placement", "spread",
                        "--strategy", "fsdp")
    lora = curate_train(cluster, setup, str(root / "lora"), "--train-workers", "2", "--placement", "spread",
                        *LORA_ARGS)
    lora_local = curate_train(cluster, setup, str(root / "lora-local"), "--local", "--threads", "1", *LORA_ARGS)
    return {"two": two, "one": one, "local": local, "fsdp": fsdp, "lora": lora, "lora_local": lora_local}


LORA_ARGS = ("--lora-rank", "4", "--lora-targets", "q,v,gate")


def _curve(ckpt: str) -> list[float]:
    with open(os.path.join(ckpt, "history.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f]


def _local_curve(summary: dict) -> list[float]:
    with open(summary["metrics_log"]) as f:
        return [json.loads(line)["loss"] for line in f]


@pytest.mark.slow
@pytest.mark.ray
def test_two_workers_give_the_one_worker_and_in_process_loss_curve(runs, cluster):
    """Same global batches and seed: 2 CPU workers on two nodes, 1 worker and the plain trainer
    give the same loss at every step, within 1e-4 relative. Why that bound: the workers run the
    same rows as one process and differ only in float32 summation order (each worker sums half
    the rows' gradients, gloo adds the halves), ~1e-7 relative per step, which 12 AdamW steps
    grow to ~1e-6; normalising by each worker's own token count instead of the global one moves
    the curve by ~1e-3 from step 2 on (the fast test checks that gradient directly)."""
    two, one, local = runs["two"], runs["one"], runs["local"]
    assert two["train_workers"] == 2 and one["train_workers"] == 1
    assert len(two["train_nodes"]) == 2 and set(two["train_nodes"]) <= {n.node_id for n in cluster.nodes}
    assert two["train_resources"] == {"cpus": 1.0, "gpus": 0.0}
    a, b = _curve(two["checkpoint"]), _curve(one["checkpoint"])
    c = [round(x, 5) for x in _local_curve(local)]     # train_sft logs losses to 5 places
    assert len(a) == len(b) == len(c) == STEPS
    assert a[-1] < a[0] * 0.9                          # it learns
    for step, (x, y, z) in enumerate(zip(a, b, c), 1):
        assert abs(x - y) <= 1e-4 * abs(y), (step, x, y)
        assert abs(x - z) <= 1e-4 * abs(z) + 1e-5, (step, x, z)
    meta = checkpoint.meta(two["checkpoint"])
    assert meta["trained_on"] == [two["trained_on"][0]] and meta["trained_on"][0].startswith("sft_train@")
    assert meta["data_position"]["step"] == STEPS and meta["resumed_from"] == []
    assert meta["train_workers"] == 2 and meta["trainer"] == "ray-train"
    assert meta["strategy"] == two["strategy"] == "ddp"


def _history(ckpt: str) -> list[dict]:
    with open(os.path.join(ckpt, "history.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
@pytest.mark.ray
def test_fsdp_gives_the_ddp_loss_curve_and_a_full_checkpoint_of_the_same_weights(runs, cluster):
    """2 workers with the model sharded (FSDP2, one unit per block + the root) train on the same
    batches as DDP and 1 worker: the same loss and clipped global gradient norm at every step
    within 1e-4 relative (the same bound and reason as above: only the float summation order
    differs, here of the reduce-scatter), and rank 0's checkpoint is a full one that
    `checkpoint.load` reads (as `curate model export` does) with DDP's weights. The norm is above
    grad_clip (1.0) at every step, so clipping acts; a shard's own norm (~1/sqrt(2) of the global
    one) in its place would fail the grad_norm check and clip by a different factor."""
    fsdp, two, one = runs["fsdp"], runs["two"], runs["one"]
    assert fsdp["strategy"] == "fsdp" and fsdp["train_workers"] == 2 and len(fsdp["train_nodes"]) == 2
    a, b, c = _history(fsdp["checkpoint"]), _history(two["checkpoint"]), _history(one["checkpoint"])
    assert len(a) == len(b) == STEPS and a[-1]["loss"] < a[0]["loss"] * 0.9
    for x, y, z in zip(a, b, c):
        assert x["step"] == y["step"] and x["tokens"] == y["tokens"]
        assert abs(x["loss"] - y["loss"]) <= 1e-4 * abs(y["loss"]), (x, y)
        assert abs(x["loss"] - z["loss"]) <= 1e-4 * abs(z["loss"]), (x, z)
        assert abs(x["grad_norm"] - y["grad_norm"]) <= 1e-4 * y["grad_norm"] + 1e-6, (x, y)
    meta = checkpoint.meta(fsdp["checkpoint"])
    assert meta["strategy"] == "fsdp" and meta["sharded"] is True and meta["step"] == STEPS
    assert meta["data_position"]["step"] == STEPS and checkpoint.meta(two["checkpoint"])["sharded"] is False
    model, _, _ = checkpoint.load(fsdp["checkpoint"])
    ref, _, _ = checkpoint.load(two["checkpoint"])
    assert model.state_dict().keys() == ref.state_dict().keys()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=1e-4, atol=1e-5)
    state = torch.load(os.path.join(fsdp["checkpoint"], "optimizer.pt"), weights_only=True)
    plain = torch.load(os.path.join(two["checkpoint"], "optimizer.pt"), weights_only=True)
    assert state["step"] == STEPS and state["optimizer"]["param_groups"] == plain["optimizer"]["param_groups"]
    assert state["optimizer"]["state"].keys() == plain["optimizer"]["state"].keys()


@pytest.mark.slow
@pytest.mark.ray
def test_lora_on_two_workers_gives_the_in_process_lora_curve_and_merged_weights(runs, setup):
    """LoRA on Ray Train: 2 workers (one per node) train the same adapters as the in-process LoRA
    trainer, within the bound above; both checkpoints hold merged weights where only the adapted
    layers (q, v, gate) moved from the init, and the adapters beside them."""
    from safetensors.torch import load_file
    lora, local = runs["lora"], runs["lora_local"]
    assert lora["lora"]["rank"] == 4 and lora["train_workers"] == 2 and len(lora["train_nodes"]) == 2
    a, c = _curve(lora["checkpoint"]), [round(x, 5) for x in _local_curve(local)]
    assert len(a) == len(c) == STEPS   # (12 steps of rank-4 adapters barely move the loss: `moved` checks they train)
    for step, (x, z) in enumerate(zip(a, c), 1):
        assert abs(x - z) <= 1e-4 * abs(z) + 1e-5, (step, x, z)
    init = load_file(os.path.join(setup["init"], "model.safetensors"))
    wa = load_file(os.path.join(lora["checkpoint"], "model.safetensors"))
    wb = load_file(os.path.join(local["checkpoint"], "model.safetensors"))
    moved = _differs(init, wa)
    assert moved and all(k.endswith((".q.weight", ".v.weight", ".gate.weight")) for k in moved), sorted(moved)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)
    aa = load_file(os.path.join(lora["checkpoint"], "adapters.safetensors"))
    ab = load_file(os.path.join(local["checkpoint"], "adapters.safetensors"))
    assert aa.keys() == ab.keys() and aa
    meta = checkpoint.meta(lora["checkpoint"])
    assert meta["lora"]["targets"] == ["q", "v", "gate"] and meta["strategy"] == "ddp" and meta["sharded"] is False


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "lora"])
def test_a_killed_worker_resumes_from_the_last_checkpoint_with_the_same_result(runs, cluster, setup, tmp_path,
                                                                               strategy):
    """Worker 1 is SIGKILLed after step 6 (its last checkpoint is step 4): Ray Train restarts the
    group, the workers resume from step 4's checkpoint, and the run ends with the uninterrupted
    run's loss curve and weights. Under FSDP the full checkpoint's weights and optimizer state
    are sharded again on the restarted workers; under LoRA the adapters are loaded again on the
    init's weights (the merged ones would add the adapters twice)."""
    from safetensors.torch import load_file
    pause = {"rank": 1, "step": 6, "dir": str(tmp_path)}
    out = str(tmp_path / f"resumed-{strategy}")  # the run name comes from it: one run per strategy (a rerun
    # under the other strategy would resume this one's finished run: the strategy is not part of the name)
    code = ("import json, sys; from model.config import TrainConfig; from model.train_ray import train_ray; "
            "from schemas.store import Store; a = json.loads(sys.argv[1]); "
            "from model.lora import LoRAConfig; lora = LoRAConfig(**a['lora']) if a['lora'] else None; "
            "r = train_ray(Store(a['wh']), a['ref'], a['init'], a['out'], TrainConfig(**a['cfg']), workers=2, "
            "resources={'cpus': 1.0, 'gpus': 0.0}, placement='SPREAD', pause=a['pause'], strategy=a['strategy'], "
            "lora=lora); "
            "r.pop('history'); "
            "open(a['result'], 'w').write(json.dumps(r))")
    cfg = {"steps": STEPS, "save_every": SAVE_EVERY, "lr": 3e-3, "warmup_steps": 3, "tokens_per_batch": 512,
           "seq_len": 128, "seed": 1}
    arg = json.dumps({"wh": setup["warehouse"], "ref": setup["ref"], "init": setup["init"], "out": out, "cfg": cfg,
                      "pause": pause, "result": str(tmp_path / "result.json"),
                      "strategy": "ddp" if strategy == "lora" else strategy,
                      "lora": {"rank": 4, "alpha": 8.0, "targets": ["q", "v", "gate"]} if strategy == "lora" else None})
    env = {**cluster.env, "RAY_ADDRESS": cluster.address}
    proc = subprocess.Popen([sys.executable, "-c", code, arg], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        pid_file = os.path.join(str(tmp_path), "rank1.pid")
        deadline = time.time() + 400
        while not os.path.exists(pid_file) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert os.path.exists(pid_file), proc.communicate()[1][-3000:] if proc.poll() is not None else "no pid"
        pid = int(open(pid_file).read())
        open(os.path.join(str(tmp_path), "kill.marker"), "w").close()   # the restarted worker goes on
        os.kill(pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-4000:]
    with open(tmp_path / "result.json") as f:   # a file: Ray's driver may print worker logs on stdout at any time
        res = json.load(f)
    assert res["resumed_from"] == [4], res              # the last checkpoint before the kill
    assert res["strategy"] == ("ddp" if strategy == "lora" else strategy)
    ref = runs[{"ddp": "two", "fsdp": "fsdp", "lora": "lora"}[strategy]]
    a, b = _curve(res["checkpoint"]), _curve(ref["checkpoint"])
    assert len(a) == STEPS
    for x, y in zip(a, b):
        assert abs(x - y) <= 1e-4 * abs(y), (a, b)
    wa, wb = load_file(os.path.join(res["checkpoint"], "model.safetensors")), \
        load_file(os.path.join(ref["checkpoint"], "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)
