"""The whole recipe end to end at demo size, on one embedded Ray session (what `make demo` runs).

    python pipelines/flagship.py                     # ./warehouse, embedded Ray: 1 min on 2 idle cores, 4+ when shared
    python pipelines/flagship.py --warehouse /tmp/wh --speech-rows 8
    python pipelines/flagship.py --crawl crawl/*.warc.gz        # your own WARC/WET files in step 1

1. text curation from a crawl: the committed WARC sample (tests/data/crawl: Python documentation
   pages, man pages in seven other languages, redirects, images, a binary payload, spam URLs)
   → `documents` through URL filter, HTML extraction, language ID, Gopher heuristics, C4 lines,
   FineWeb rules (FineWeb's order), normalise, dedup, decontamination, fastText quality, presidio PII; every
   record kept or rejected with its reason, the summary shows how many each stage let through;
2. SFT from the curated documents → `sft_documents`: one pair per document, built
   deterministically (user: "Explain in a sentence or two: <its first sentence>",
   assistant: the first two sentences of its second paragraph; extracted web text has a
   paragraph per line);
3. speech SFT over those conversations → `speech_sft` (speakable selection, TTS over several
   voices, audio checks, Whisper ASR, WER filter);
4. the reasoning loop at toy size: teacher word problems → verifier-filtered SFT → the
   built-in model (`model-round-0`) → the reasoning-data pipeline with that model as the
   generator (rejection sampling, SFT rows, DPO pairs) → one RFT + DPO training round →
   `model-round-1`;
5. the next round's data: the reasoning-data pipeline alone with `model-round-1` as generator
   on 40 more teacher-pool problems, ones round 1 did not sample → `reasoning`, `cot_samples`,
   `reasoning_sft`, `preferences`;
6. a summary of every table version this run wrote: rows, rejects by reason, commands.

Each step is also its own script (text_curation.py, speech_sft.py, reasoning_loop.py,
reasoning_data.py); here they are called in-process so Ray starts once.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import pyarrow as pa

from schemas.engine.stage import annotate, reject_where, stage
from schemas.store import default_warehouse
from schemas.tables import MESSAGES

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_BULLET = re.compile(r"^[-*•] +")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRAWL_SAMPLE = os.path.join(REPO, "tests", "data", "crawl", "crawl-00000.warc.gz")


def summary_and_detail(text: str) -> tuple[str, str]:
    """The first sentence of a document's first paragraph (a docstring's summary line; a web
    page's lead, which is often a few sentences, too long a question to speak) and the first two
    sentences of the paragraph after it; "" where there is none. Paragraphs are separated by blank lines
    (docstrings, hard-wrapped text) or, in text without any, are its lines that end a sentence (the
    extractor writes one line per paragraph; headings and "Source code: Lib/x.py" lines stay in web
    text, as FineWeb's C4 step keeps lines without terminal punctuation, and are no question)."""
    text = text.strip()
    blocks = _BLANK_LINE.split(text) if _BLANK_LINE.search(text) else \
        [ln for ln in text.split("\n") if ln.rstrip().endswith((".", "!", "?"))]
    paras = [_BULLET.sub("", " ".join(p.split())) for p in blocks if p.strip()]  # a list item's "- " is no word
    if len(paras) < 2:
        return (paras[0] if paras else ""), ""
    return _SENTENCE_END.split(paras[0], maxsplit=1)[0], " ".join(_SENTENCE_END.split(paras[1], maxsplit=2)[:2])


@stage(adds=[pa.field("messages", MESSAGES)])
def explain_pair(batch: pa.Table) -> pa.Table:
    """A curated document → one conversation: its summary line asks, the next paragraph answers.

    Deterministic and honest (the answer is the document's own text, not a model's); a document
    of one paragraph is rejected as `single_paragraph`."""
    pairs = [summary_and_detail(t) for t in batch.column("text").to_pylist()]
    msgs = [[{"role": "user", "content": f"Explain in a sentence or two: {q}"},
             {"role": "assistant", "content": a}] for q, a in pairs]
    batch = annotate(batch, messages=pa.array(msgs, MESSAGES))
    return reject_where(batch, [not q or not a for q, a in pairs], "single_paragraph")


class Steps:
    """Runs the steps in order, one line per step with its elapsed time."""

    def __init__(self, args: argparse.Namespace):
        from schemas.store import Store
        self.args, self.wh = args, os.path.abspath(args.warehouse)
        os.makedirs(self.wh, exist_ok=True)
        self.store = Store(self.wh)
        self.before = self._snapshots()
        self.t0 = time.perf_counter()
        self.timings: list[tuple[str, float]] = []

    def _snapshots(self) -> dict[str, set[int]]:
        return {n: {v["snapshot_id"] for v in self.store.versions(n)} for n in self.store.tables()}

    def step(self, name: str, fn):
        n = len(self.timings) + 1
        say(f"[{n}/{STEP_COUNT}] {name} …")
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        self.timings.append((name, dt))
        say(f"[{n}/{STEP_COUNT}] {name}: done in {dt:.0f} s (total {time.perf_counter() - self.t0:.0f} s)")
        return out

    def common(self) -> list[str]:
        a = self.args
        argv = ["--warehouse", self.wh, "--executor", a.executor]
        if a.num_cpus:
            argv += ["--num-cpus", str(a.num_cpus)]
        return argv + (["--quiet"] if a.quiet else [])

    def pipeline(self, module: str, argv: list[str]):
        """`build(args)` + `run` of a pipeline script, as its `main` does, and a one-line result."""
        mod = importlib.import_module(f"pipelines.{module}")
        return self.pipeline_args(mod, mod.parser().parse_args(argv + self.common()))

    def pipeline_args(self, mod, args: argparse.Namespace):
        from pipelines.script import options
        from schemas.engine.runner import run
        pipeline, inputs = mod.build(args)
        res = run(pipeline, options(args, inputs))
        acc = res.accounting
        say(f"      {res.output}@{res.snapshot_id}: {acc['rows_in']} in, {acc['kept']} kept, "
            f"rejected {dict(acc['rejects_by_reason'])}")
        return res

    def text(self):
        """The crawl through the web stages and the usual chain (`--crawl`: the committed sample)."""
        return self.pipeline("text_curation", ["--input", *self.args.crawl, "--min-words", "20"])

    def sft(self, documents_ref: str):
        from schemas.engine.runner import Pipeline, RunOptions, run
        from schemas.tables import DOCUMENTS, SFT
        a = self.args
        # imported by module name so Ray workers unpickle the stage by reference (not `__main__`)
        pair = importlib.import_module("pipelines.flagship").explain_pair
        res = run(Pipeline("sft_from_documents", DOCUMENTS, SFT, [pair]),
                  RunOptions([documents_ref], "sft_documents", self.wh, executor=a.executor, num_cpus=a.num_cpus,
                             progress=not a.quiet))
        acc = res.accounting
        say(f"      sft_documents@{res.snapshot_id}: {acc['rows_in']} in, {acc['kept']} kept, "
            f"rejected {dict(acc['rejects_by_reason'])}")
        return res

    def speech(self, sft_ref: str):
        """TTS + ASR cost ~1 s a row on 2 cores: the first `--speech-rows` conversations by id."""
        from synth.problems import write_jsonl
        rows = self.store.read_arrow(sft_ref, columns=["id", "messages", "source"]).sort_by("id")
        rows = rows.slice(0, self.args.speech_rows).to_pylist()
        d = os.path.join(self.wh, "_inputs", "flagship", "speech")
        for f in (os.listdir(d) if os.path.isdir(d) else []):
            os.remove(os.path.join(d, f))
        convs = [{"messages": r["messages"], "source": r["source"], "source_ids": [r["id"]]} for r in rows]
        paths = [write_jsonl(convs[i::2], os.path.join(d, f"sft-{i}.jsonl")) for i in range(2)]
        return self.pipeline("speech_sft", ["--input", *paths, "--voices", *self.args.voices])

    def loop(self):
        from pipelines import reasoning_loop as rl
        a = self.args
        argv = ["--warehouse", self.wh, "--executor", a.executor, "--rounds", "1", "--no-ablation",
                "--run", "flagship", "--levels", "1", "--teacher-problems", str(a.train_problems),
                "--eval-problems", "40", "--dev-problems", "40", "--sample-problems", str(a.sample_problems),
                "--sft-steps", str(a.sft_steps), "--eval-every", str(max(1, a.sft_steps // 2)),
                "--round-tokens", str(20 * 2048), "--dpo", "--dpo-steps", "10", "--min-pairs", "1", "--k", "4",
                "--eval-k", "1"]
        if a.quiet:  # step bars on a terminal, a line every CURATE_PROGRESS_EVERY s elsewhere
            argv.append("--quiet")
        if a.num_cpus:
            argv += ["--num-cpus", str(a.num_cpus)]
        record = rl.Loop(rl.parser().parse_args(argv)).run()
        if not a.quiet:
            rl.print_table(record)
        return record

    def next_round(self, record: dict):
        """The reasoning-data pipeline on its own, with the newest model as generator, on the next
        slice of the teacher pool (problems round 1 did not sample; the full loop draws fresh ones):
        `reasoning`, `cot_samples`, `reasoning_sft`, `preferences` (round 2)."""
        from pipelines import reasoning_data as rd
        from synth.problems import write_jsonl
        n = self.args.sample_problems
        pool = self.store.read_arrow("loop_problems@pool").to_pylist()[n:2 * n]
        path = write_jsonl([{k: p[k] for k in ("problem", "answer", "level", "source")} for p in pool],
                           os.path.join(self.wh, "_inputs", "flagship", "round2-problems.jsonl"))
        argv = ["--input", path, "--generator", f"builtin:{record['final_checkpoint']}", "--k", "4",
                "--max-attempts", "1", "--max-tokens", "96", "--system", "", "--batch-size", "64", "--round", "2",
                "--seed", "2", "--tag", "round-2"] + self.common()
        args = rd.parser().parse_args(argv)
        res = self.pipeline_args(rd, args)
        snaps, counts = rd.publish_tables(self.store, f"{res.output}@{res.snapshot_id}", args)
        say(f"      {counts['samples']['samples']} samples, {counts['samples'].get('verdict:correct', 0)} correct → "
            f"{counts['sft']['rows']} SFT rows, {counts['pairs']['pairs']} DPO pairs")
        return snaps


STEP_COUNT = 5


def say(msg: str) -> None:
    print(msg, flush=True)


# tables in the order the steps write them; the rest (none today) follow alphabetically
ORDER = ["documents", "sft_documents", "speech_sft", "loop_heldout", "loop_problems", "loop_sft", "loop_sft_unfiltered",
         "models", "loop_reasoning", "loop_cot_samples", "loop_preferences", "reasoning", "cot_samples",
         "reasoning_sft", "preferences"]
LOOK = {
    "speech_sft": "stats speech_sft --png speech.png      # WER by voice, durations, rejects (open the PNG)",
    "preferences": "show preferences -n 2 -c prompt -c chosen -c rejected   # a DPO pair",
    "models": "show models -c round -c stage -c accuracy -c path      # checkpoints, held-out accuracy",
}


def stage_funnel(acc: dict) -> str:
    """'read 123 → 61, url_filter → 59, …': rows each stage of a pipeline run let through, from
    its accounting (which also holds the reasons per stage); "" for versions without stages."""
    stages = [s for s in acc.get("stages") or [] if s.get("stage") != "write"]
    if not stages:
        return ""
    first = stages[0]
    return ", ".join([f"{first['stage']} {first['rows_in']} → {first['rows_out']}",
                      *(f"{s['stage']} → {s['rows_out']}" for s in stages[1:])])


def summary(steps: Steps, record: dict | None) -> None:
    """Every table version this run wrote: rows, rejects by reason, and how to look at it."""
    store, before = steps.store, steps.before
    after = steps._snapshots()
    names = [n for n in ORDER if n in after] + sorted(n for n in after if n not in ORDER and not n.endswith("_rejects"))
    curate = "curate" + ("" if steps.wh == os.path.abspath(default_warehouse()) else f" --warehouse {steps.wh}")
    say("\n=== summary: table versions written by this run ===")
    look = [f"{curate} tables                       # every table, its versions and rows"]
    for name in names:
        new = [v for v in store.versions(name) if v["snapshot_id"] not in before.get(name, set())]
        for v in new:
            acc = store.properties(f"{name}@{v['snapshot_id']}").get("accounting") or {}
            reasons = sorted((acc.get("rejects_by_reason") or {}).items(), key=lambda kv: -kv[1])
            tags = f" [{', '.join(v['tags'])}]" if v["tags"] else ""
            line = f"{name}@{v['snapshot_id']}{tags}: {v['rows']} rows"
            if acc:
                unit = acc.get("unit", "rows")
                line += (f" ({acc['rows_in']} {unit} in, {acc['kept']} used" if unit != "rows" else
                         f" ({acc['rows_in']} in, {acc['kept']} kept")
                line += "; not kept: " + ", ".join(f"{k} {n}" for k, n in reasons) + ")" if reasons else ")"
            say(line)
            funnel = stage_funnel(acc)
            if funnel:
                say(f"  stages: {funnel}")
        if not new:
            continue
        look.append(f"{curate} stats {name}@{new[-1]['snapshot_id']}")
        for v in reversed(new):  # rejected rows are kept only by pipeline runs (derived tables count them)
            acc = store.properties(f"{name}@{v['snapshot_id']}").get("accounting") or {}
            top = sorted((acc.get("rejects_by_reason") or {}).items(), key=lambda kv: -kv[1])
            if top and "unit" not in acc and store.exists(f"{name}_rejects"):
                look.append(f"{curate} show {name}_rejects --where \"drop_reason == '{top[0][0]}'\" -n 3")
                break
        if name in LOOK:
            look.append(f"{curate} {LOOK[name]}")
    say("\nwhere to look next (after `. .venv/bin/activate`):")
    for cmd in look:
        say(f"  {cmd}")
    if record:
        say(f"  {os.path.dirname(record['loss_png'])}/: loss.png, accuracy.png, record.json of the loop")
    say("\nstep times: " + ", ".join(f"{n} {dt:.0f} s" for n, dt in steps.timings)
        + f"; total {time.perf_counter() - steps.t0:.0f} s")


def parser() -> argparse.ArgumentParser:
    from pipelines.script import DefaultsHelpFormatter
    from synth.tts import DEFAULT_VOICES
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter)
    p.add_argument("--warehouse", default=default_warehouse(), help="where every step's tables and models go")
    p.add_argument("--executor", choices=["ray", "local"], default="ray",
                   help="ray: embedded Ray, or the cluster in RAY_ADDRESS; local: in process, for debugging")
    p.add_argument("--crawl", nargs="+", default=[CRAWL_SAMPLE],
                   help="WARC/WET files (or globs) step 1 curates; default: the committed crawl sample")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for the embedded Ray")
    p.add_argument("--speech-rows", type=int, default=40, help="conversations voiced by TTS and checked by ASR")
    p.add_argument("--voices", nargs="+", default=DEFAULT_VOICES, help="TTS voices as engine:voice (as speech_sft.py)")
    p.add_argument("--train-problems", type=int, default=300, help="teacher word problems (loop round 0)")
    p.add_argument("--sample-problems", type=int, default=40, help="problems the built-in model samples (round 1)")
    p.add_argument("--sft-steps", type=int, default=60, help="round-0 SFT steps of the built-in model")
    p.add_argument("--quiet", action="store_true", help="no per-table reports or progress bars")
    return p


def run_main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    steps = Steps(args)
    if args.executor == "ray":
        from schemas.engine.raysession import RayStartFailed, init_ray
        try:
            init_ray(args.num_cpus)  # once: every step below joins this session
        except RayStartFailed as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    docs = steps.step("text curation → documents", steps.text)
    sft = steps.step("SFT pairs from documents → sft_documents", lambda: steps.sft(f"documents@{docs.snapshot_id}"))
    steps.step("speech SFT (TTS, ASR, WER) → speech_sft", lambda: steps.speech(f"sft_documents@{sft.snapshot_id}"))
    record = steps.step("reasoning loop: model round 0 → reasoning data → round 1", steps.loop)
    steps.step("next round's data: reasoning_data with model-round-1 → preferences", lambda: steps.next_round(record))
    summary(steps, record)
    return 0


if __name__ == "__main__":
    sys.exit(run_main())
