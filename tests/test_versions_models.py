"""`curate versions models` (issue 26): a tiny HF model imported, trained one step with
`curate train --local` and exported is listed as three model versions linked both ways (the
trained checkpoint from the import and on its table version; the export from the checkpoint),
registering is publish-once, and a model's overwritten files are flagged."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from pipelines.cli import main
from schemas.store import Store

pytest.importorskip("transformers")


def _tiny_hf_dir(root) -> str:
    from transformers import AutoModelForCausalLM, LlamaConfig

    from test_hf_format import COMMON, _bpe_tokenizer_dir

    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(LlamaConfig(**COMMON, tie_word_embeddings=True), dtype=torch.float32)
    path = str(root / "hf-in")
    hf.save_pretrained(path)
    _bpe_tokenizer_dir(path)
    return path


def _cli(*args: str) -> str:
    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def lineage(tmp_path_factory):
    """import → curate train --local (1 step) → export, all in one warehouse."""
    from test_train_ray import conversations, publish_table

    root = tmp_path_factory.mktemp("versions")
    wh = str(root / "wh")
    ref = publish_table(wh, conversations(12), parts=1)
    base, trained, export = str(root / "base"), str(root / "trained"), str(root / "export")
    imp = json.loads(_cli("--warehouse", wh, "model", "import", _tiny_hf_dir(root), base, "--json"))
    out = _cli("--warehouse", wh, "train", "--table", ref, "--init", base, "--out", trained, "--local", "--steps", "1",
               "--tokens-per-batch", "256", "--seq-len", "128", "--threads", "1", "--json")
    tr = json.loads(out[out.index("{"):])
    exp = json.loads(_cli("--warehouse", wh, "model", "export", trained, export, "--json"))
    return {"wh": wh, "ref": ref, "base": base, "trained": trained, "export": export, "import": imp, "train": tr,
            "exp": exp}


def test_import_train_export_are_three_model_versions_linked_both_ways(lineage):
    from model import checkpoint

    wh = lineage["wh"]
    vs = json.loads(_cli("--warehouse", wh, "versions", "models", "--json"))
    assert [v["kind"] for v in vs] == ["import", "checkpoint", "export"]
    imp, ck, ex = vs
    base_id, trained_id = checkpoint.meta(lineage["base"])["id"], checkpoint.meta(lineage["trained"])["id"]
    assert (imp["id"], imp["path"], imp["stage"]) == (base_id, lineage["base"], "import")
    assert imp["source"].endswith("hf-in") and imp["from"] is None and imp["trained_on"] == []
    assert (ck["id"], ck["path"], ck["trained_on"]) == (trained_id, lineage["trained"], [lineage["ref"]])
    assert ck["from"]["id"] == base_id and ck["from"]["path"] == lineage["base"]  # trained from the import
    assert (ex["id"], ex["path"], ex["from"]["id"]) == (trained_id, lineage["export"], trained_id)
    assert ex["trained_on"] == [lineage["ref"]]
    # the other way: what was derived from each
    assert [(d["kind"], d["id"]) for d in imp["derived"]] == [("checkpoint", trained_id)]
    assert [(d["kind"], d["path"]) for d in ck["derived"]] == [("export", lineage["export"])]
    assert ex["derived"] == [] and all(v["state"] == "ok" for v in vs)
    # each command said where it registered, and that is the version listed
    for v, said in zip(vs, (lineage["import"], lineage["train"], lineage["exp"]), strict=True):
        assert said["registered"] == f"models@{v['snapshot']}"
    text = _cli("--warehouse", wh, "versions", "models")
    assert "1 import, 1 checkpoint, 1 export" in text
    assert f"from        {base_id}  {lineage['base']}" in text
    assert f"derived     checkpoint {trained_id} (sft)  {lineage['trained']}" in text
    assert f"derived     export {trained_id} (export)  {lineage['export']}" in text
    assert f"trained on  {lineage['ref']}" in text
    # the table's own snapshots are still there
    assert "3 versions" in _cli("--warehouse", wh, "versions", "models", "--snapshots")


def test_registering_is_publish_once_and_overwritten_files_are_flagged(lineage, tmp_path):
    from model import checkpoint
    from model.hf_format import export_checkpoint
    from pipelines.model_registry import model_versions, register_checkpoint, register_export

    store = Store(lineage["wh"])
    first = model_versions(store)
    # registering the same models again returns the snapshots already made: nothing new
    assert register_checkpoint(store, lineage["base"], "import") == first[0]["snapshot"]
    assert register_export(store, lineage["trained"], lineage["export"]) == first[2]["snapshot"]
    assert len(store.versions("models")) == 3
    # the Python API registers nothing by itself (the commands do)
    export_checkpoint(lineage["base"], str(tmp_path / "elsewhere"))
    assert len(store.versions("models")) == 3
    # other weights saved over the trained checkpoint's path: that version's files are no longer it
    model, tok, _ = checkpoint.load(lineage["base"])
    with torch.no_grad():
        model.embed.weight.mul_(2)
    checkpoint.save(lineage["trained"], model, tok, step=0, train_config={}, trained_on=[])
    states = {v["kind"]: v["state"] for v in model_versions(store)}
    assert states == {"import": "ok", "checkpoint": "replaced", "export": "ok"}
    assert "[replaced]" in _cli("--warehouse", lineage["wh"], "versions", "models")


def test_versions_help_explains_the_models_view():
    text = _cli("versions", "--help")
    for words in ("curate versions models", "curate model", "trained from", "derived", "--snapshots"):
        assert words in text, words


def test_the_loops_rows_show_their_round_run_tags_and_parent(tmp_path):
    """Rows the loop registers (no path in their snapshot config, eval metrics in `metrics`) list
    with their round, run and tags, their parent comes from the checkpoint's own `init`, and an
    unregistered base they descend from is listed too."""
    import pyarrow as pa

    from model import checkpoint
    from model.config import ModelConfig
    from model.tokenizer import ChatTokenizer
    from model.transformer import Transformer
    from pipelines.derived import publish_derived
    from pipelines.reasoning_loop import MODELS

    tok = ChatTokenizer.train(["one two three four"] * 10, vocab_size=280)
    model = Transformer(ModelConfig(vocab_size=tok.vocab_size, dim=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=64))
    base, r0, r1 = str(tmp_path / "base"), str(tmp_path / "round0"), str(tmp_path / "round1")
    checkpoint.save(base, model, tok, step=0, train_config={}, trained_on=[], extra={"stage": "import"})
    for parent, child, step, table in ((base, r0, 5, "loop_sft@1"), (r0, r1, 9, "loop_sft@2")):
        loaded, _, _ = checkpoint.load(parent)  # each round trains from the last: its checkpoint says so
        with torch.no_grad():
            loaded.embed.weight.add_(0.01)
        checkpoint.save(child, loaded, tok, step=step, train_config={}, trained_on=[table])
    store = Store(str(tmp_path / "wh"))
    for path, rnd in ((r0, 0), (r1, 1)):
        m = checkpoint.meta(path)
        row = {"id": m["id"], "path": path, "round": rnd, "stage": "sft", "step": m["step"],
               "trained_on": m["trained_on"], "accuracy": 0.5, "metrics": json.dumps({"n": 4}), "run": "seed-0"}
        snap = publish_derived(store, "models", MODELS, pa.Table.from_pylist([row], schema=MODELS),
                               source=m["trained_on"][0], pipeline="reasoning_loop",
                               config={"checkpoint": m["id"], "stage": "sft", "run": "seed-0"}, rows_in=1, used=1,
                               reasons={}, unit="checkpoints", mode="append")
        store.tag(f"models@{snap}", f"model-round-{rnd}")
    text = _cli("--warehouse", str(tmp_path / "wh"), "versions", "models")
    # the base the loop imported without registering it is listed from its checkpoint.json
    assert "1 import, 2 checkpoints, 0 exports" in text and "not registered (from its checkpoint.json)" in text
    assert f"derived     checkpoint {checkpoint.meta(r0)['id']} (sft)  {r0}" in text
    assert "(sft, round 1, run seed-0, step 9)" in text and "tags: model-round-1" in text
    id0 = checkpoint.meta(r0)["id"]
    assert f"from        {id0}  {r0}" in text and f"derived     checkpoint {checkpoint.meta(r1)['id']}" in text
