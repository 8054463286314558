"""Speakable selection against human labels (tests/data/speakable_queries*.jsonl).

    python bench/bench_speakable.py              # the working tree's synth/speech_text.py
    python bench/bench_speakable.py --rev d4d833f # the same sets through an older revision (git show)

The sets: speakable_queries.jsonl, 485 queries drawn from text the rules were not written for (seeded samples): the
Harvard sentences (Debian r-cran-stringr), sentences, bullet lists and tables of the Python 3.11
docs (python3.11-doc, reST roles rendered as a reader sees them), English, Italian, Portuguese,
German, Spanish, Russian and Esperanto fortunes (Debian fortunes*), man-page NAME/SYNOPSIS/
DESCRIPTION lines, stdlib code and comment lines, DeepMind mathematics_dataset questions, Faker
URLs, e-mails, street addresses, prices, dates, times, tables and lists, Faker sentences in 12
locales, inline and multi-line lists of Harvard sentences, and one- or two-word stringr words.
It was labeled before any rule was written, and the rules were then developed against it.
speakable_queries_heldout.jsonl: 170 more queries from the same sources (other seeds, no text of
the first set), labeled by the same guideline after the rules were written and before they were
run on it; its first score is in bench/README.md (a few general fixes followed, see there).

Labeling guideline (one labeler, every row read; `reason` is the first that applies in this order,
other reasons that also apply are in `also`, and a prediction of any of them counts as agreement):
- speakable (reason null): a person reads it aloud as a natural query or statement after the
  conversions any reader makes: numbers, money, units, dates, times, common abbreviations, a
  plain symbol (&, %, +), a single identifier word (NodeType, ``None``), a simple fraction, one or
  two arithmetic operations on numbers, and a list of at most 6 flat items read "first, ...;
  second, ..." (inline "1) a 2) b" or one item per line). Semicolons, quotes, attributions
  ("-- Oscar Wilde") and line breaks of verse do not matter.
- unspeakable:table: rows and columns (pipes, grid or simple reST tables, tab or comma rows).
- unspeakable:list: a list that does not read as a sentence: more than 6 items or nested items.
- unspeakable:url: a URL, bare domain name or e-mail address (message ids included).
- unspeakable:code: reading it needs programming syntax said aloud: dotted names, calls with
  parentheses, underscores in identifiers, assignments, command-line options, file names with
  extensions, code statements (`if x is Y:`), reST roles around code, interactive prompts.
- unspeakable:math: formulas: variables in equations, parentheses, chains of three or more
  operations, exponents, letter sequences to be spelled (`wwwwssh`).
- non_english: mostly another language (Latin lorem ipsum included).
- query_too_short / query_too_long: fewer than 3 / more than 40 whitespace-separated words (the
  pipeline's defaults); the labeler counts, this is not a judgement.

Reported: binary agreement (speakable or not) and class agreement with Wilson 95% intervals,
per-class precision and recall, the confusion of disagreements. Results: bench/results/speakable.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from schemas.stats import wilson

DATA = os.path.join(ROOT, "tests", "data", "speakable_queries.jsonl")
HELDOUT = os.path.join(ROOT, "tests", "data", "speakable_queries_heldout.jsonl")


def load_module(rev: str | None):
    """synth/speech_text.py of the working tree, or at a git revision."""
    if not rev:
        import synth.speech_text as mod
        return mod
    src = subprocess.run(["git", "show", f"{rev}:synth/speech_text.py"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    path = os.path.join(tempfile.mkdtemp(), "speech_text_rev.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("speech_text_rev", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def listen(rows: list[dict], mod, voice: str) -> dict:
    """TTS of the spoken form, Whisper-tiny back, WER with the module's own normaliser on both sides.

    Only rows the module keeps whose spoken form differs from the text (numbers, units, lists ...):
    the check that a listener (here: ASR) hears what the rewrite meant.
    """
    import jiwer

    from synth.asr import WhisperASR
    from synth.audio import audio_struct, resample
    from synth.tts import load_voice
    speak, asr = load_voice(voice), WhisperASR()
    picked = [r["text"] for r in rows if mod.speakable_reason(r["text"], 3, 40) is None
              and mod.spoken_form(r["text"]) != " ".join(r["text"].split())]
    wers = []
    for text in picked:
        x, sr = speak(mod.spoken_form(text))
        hyp = asr.transcribe(audio_struct(resample(x, sr))["bytes"])
        ref_n, hyp_n = mod.wer_normalize(text), mod.wer_normalize(hyp)
        wers.append(float(jiwer.wer(ref_n, hyp_n)) if hyp_n else 1.0)
    wers.sort()
    return {"voice": voice, "utterances": len(wers), "wer_mean": round(sum(wers) / max(1, len(wers)), 4),
            "wer_median": wers[len(wers) // 2] if wers else None,
            "kept_at_0.2": round(sum(w <= 0.2 for w in wers) / max(1, len(wers)), 3)}


def evaluate(rows: list[dict], reason_fn) -> dict:
    n = len(rows)
    preds = [reason_fn(r["text"], 3, 40) for r in rows]
    binary = sum((p is None) == r["speakable"] for p, r in zip(preds, rows))
    exact = [p == r["reason"] or (p is not None and p in r["also"]) for p, r in zip(preds, rows)]
    classes = sorted({r["reason"] or "speakable" for r in rows} | {p or "speakable" for p in preds})
    per = {}
    for c in classes:
        gold = [c == (r["reason"] or "speakable") or c in r["also"] for r in rows]
        pred = [c == (p or "speakable") for p in preds]
        tp = sum(g and p for g, p in zip(gold, pred))
        tp_main = sum(c == (r["reason"] or "speakable") and e and p
                      for r, e, p in zip(rows, exact, pred))
        main = sum(c == (r["reason"] or "speakable") for r in rows)
        per[c] = {"labeled": main, "predicted": sum(pred),
                  "precision": round(tp / sum(pred), 3) if sum(pred) else None,
                  "recall": round(tp_main / main, 3) if main else None}
    wrong = Counter((r["reason"] or "speakable", p or "speakable") for p, r, e in zip(preds, rows, exact) if not e)
    return {"n": n, "binary_agreement": round(binary / n, 4), "binary_ci95": [round(x, 4) for x in wilson(binary, n)],
            "class_agreement": round(sum(exact) / n, 4), "class_ci95": [round(x, 4) for x in wilson(sum(exact), n)],
            "per_class": per, "disagreements": {f"{g} -> {p}": k for (g, p), k in wrong.most_common()},
            "examples": [{"id": r["id"], "label": r["reason"], "predicted": p, "text": r["text"][:120]}
                         for p, r, e in zip(preds, rows, exact) if not e]}


def report(name: str, res: dict, show: int) -> None:
    print(f"{name}: n={res['n']}  binary agreement {res['binary_agreement']:.3f} "
          f"(95% CI {res['binary_ci95'][0]:.3f}-{res['binary_ci95'][1]:.3f})  class agreement "
          f"{res['class_agreement']:.3f} (95% CI {res['class_ci95'][0]:.3f}-{res['class_ci95'][1]:.3f})")
    print(f"  {'class':20s} {'labeled':>7s} {'predicted':>9s} {'precision':>9s} {'recall':>7s}")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    for c, s in res["per_class"].items():
        print(f"  {c:20s} {s['labeled']:7d} {s['predicted']:9d} {fmt(s['precision']):>9s} {fmt(s['recall']):>7s}")
    for k, v in res["disagreements"].items():
        print(f"    {v:3d}  {k}")
    for e in res["examples"][:show]:
        print(f"    #{e['id']} {e['label']} -> {e['predicted']}: {e['text']!r}")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", help="evaluate synth/speech_text.py at this git revision instead")
    ap.add_argument("--data", nargs="+", default=[DATA, HELDOUT])
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "speakable.json"))
    ap.add_argument("--show", type=int, default=20, help="disagreements to print per set")
    ap.add_argument("--listen", metavar="VOICE", help="also TTS+ASR the rewritten speakable rows (e.g. flite:slt)")
    args = ap.parse_args(argv)
    mod = load_module(args.rev)
    reason_fn = mod.speakable_reason
    sets = {os.path.basename(p): [json.loads(line) for line in open(p, encoding="utf-8") if line.strip()]
            for p in args.data}
    if len(sets) > 1:
        sets["all"] = [r for rows in list(sets.values()) for r in rows]
    out = {"revision": args.rev or "working tree", "sets": {}}
    for name, rows in sets.items():
        res = evaluate(rows, reason_fn)
        out["sets"][name] = res
        report(f"{out['revision']} | {name}", res, 0 if name == "all" else args.show)
    if args.listen:
        out["listen"] = listen(sets.get("all") or next(iter(sets.values())), mod, args.listen)
        print("listen:", out["listen"])
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
