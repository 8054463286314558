"""`--help` is the first thing a user reads: every option of every pipeline script and of `curate`
says what it does, and the defaults it prints are the ones a run uses.

The scripts are found from the source (every `pipelines/*.py` with a `parser()`), so a new
script or flag without help fails here rather than in a user's terminal."""
import argparse
import ast
import dataclasses
import importlib
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _scripts() -> list[str]:
    out = []
    for path in sorted((ROOT / "pipelines").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.FunctionDef) and n.name == "parser" for n in tree.body):
            out.append(f"pipelines.{path.stem}")
    return out


def _silent(parser: argparse.ArgumentParser) -> list[str]:
    """Options with no help text, subcommands included."""
    out = []
    for action in parser._actions:  # argparse has no public walk over its options
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += _silent(sub)
        elif action.option_strings and action.dest != "help" and not (action.help or "").strip():
            out.append(action.option_strings[-1])
    return out


def test_the_scripts_are_found():
    assert {"pipelines.reasoning_loop", "pipelines.loop_base", "pipelines.text_curation",
            "pipelines.speech_sft", "pipelines.reasoning_data", "pipelines.flagship"} <= set(_scripts())


@pytest.mark.parametrize("module", _scripts())
def test_every_script_option_says_what_it_does(module):
    p = importlib.import_module(module).parser()
    assert _silent(p) == [], f"{module}: options without help"
    # the description is a whole sentence, not a docstring's first line cut mid-sentence
    assert (p.description or "").rstrip().endswith("."), p.description
    p.format_help()  # a stray % in a help string fails here, not when a user asks


def _click_silent(cmd: click.Command, name: str) -> list[str]:
    out = [] if (cmd.help or cmd.short_help) else [f"{name} (the command)"]
    out += [f"{name} {p.opts[-1]}" for p in cmd.params if isinstance(p, click.Option) and not p.help]
    if isinstance(cmd, click.Group):
        for sub_name, sub in cmd.commands.items():
            out += _click_silent(sub, f"{name} {sub_name}")
    return out


def test_every_curate_command_and_option_says_what_it_does():
    from pipelines.cli import main
    assert _click_silent(main, "curate") == []


def test_loop_base_help_prints_the_defaults_a_run_uses():
    """Its flags take BaseLoopConfig's defaults; the help must print the config's values, and a run
    with no flags must get exactly BaseLoopConfig()."""
    from pipelines.loop_base import FLAG_HELP, BaseLoopConfig, parser

    p = parser()
    assert BaseLoopConfig.from_args(p.parse_args([])) == BaseLoopConfig()
    defaults = BaseLoopConfig()
    numbers = [f.name for f in dataclasses.fields(BaseLoopConfig) if f.type in ("int", "float")]
    flags = {a.dest: a for a in p._actions}
    assert set(FLAG_HELP) <= set(numbers)
    for name in numbers:  # every number of the config can be set from the command line
        assert name in flags, f"--{name.replace('_', '-')} is not a flag"
    fmt = p._get_formatter()  # the help as printed, the formatter's `(default: X)` included
    for name in FLAG_HELP:
        assert fmt._expand_help(flags[name]).endswith(f"(default: {getattr(defaults, name)})"), name
    text = " ".join(p.format_help().split())
    assert f"(default: {defaults.sft_steps})" in text and f"(default: {' '.join(map(str, defaults.levels))})" in text
    changed = BaseLoopConfig.from_args(p.parse_args(["--sft-steps", "7", "--rft-lr", "1e-5", "--levels", "3"]))
    assert (changed.sft_steps, changed.rft_lr, changed.levels) == (7, 1e-5, (3,))

