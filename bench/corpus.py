"""The benchmark corpus: N documents of ~2 KB built from text that installs offline.

    python bench/corpus.py --docs 100000 --out bench/data/corpus-100k

Paragraphs of the Python 3.11 documentation (Debian python3.11-doc) joined into ~2 KB
documents (70%), groups of fortunes (15%, noisy chatter), Faker word salad (5%), exact copies
(5%) and lightly edited copies (5%) of earlier documents; 10% of documents carry a line of
Faker PII. The paragraphs repeat across documents in new combinations, so the corpus is not
100k unique texts of the web: it exercises every stage at realistic lengths and mixes.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from filters.quality_data import rst_paragraphs, unpack


def sources() -> tuple[list[str], list[str]]:
    import glob
    with tempfile.TemporaryDirectory() as tmp:
        root = unpack(tmp)
        paras = []
        for path in sorted(glob.glob(f"{root}/usr/share/doc/python3.11/html/_sources/**/*.rst.txt", recursive=True)):
            paras += rst_paragraphs(open(path, encoding="utf-8", errors="replace").read())
        fortunes = []
        for path in sorted(glob.glob(f"{root}/usr/share/games/fortunes/*")):
            if not os.path.splitext(path)[1] and os.path.isfile(path):
                text = open(path, encoding="utf-8", errors="replace").read()
                fortunes += [f.strip() for f in text.split("\n%\n") if f.strip()]
    return paras, fortunes


def build(n: int, out: str, per_file: int = 10_000, seed: int = 0) -> dict:
    from faker import Faker
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    paras, fortunes = sources()
    os.makedirs(out, exist_ok=True)
    docs: list[str] = []
    kinds: dict[str, int] = {}
    for _ in range(n):
        r = rng.random()
        if r < 0.70 or len(docs) < 100:
            kind, parts, size = "prose", [], 0
            while size < rng.randint(1500, 2600):
                p = paras[rng.randrange(len(paras))]
                parts.append(p)
                size += len(p)
            text = "\n\n".join(parts)
        elif r < 0.85:
            kind = "fortunes"
            text = "\n\n".join(fortunes[rng.randrange(len(fortunes))] for _ in range(rng.randint(4, 12)))
        elif r < 0.90:
            kind = "salad"
            text = "\n\n".join(fake.paragraph(nb_sentences=rng.randint(8, 14)) for _ in range(rng.randint(2, 4)))
        elif r < 0.95:
            kind, text = "exact_copy", docs[rng.randrange(len(docs))]
        else:
            kind = "near_copy"
            w = docs[rng.randrange(len(docs))].split(" ")
            for _ in range(3):
                k = rng.randrange(len(w))
                w[k] = w[k] + " " + fake.word()
            text = " ".join(w)
        if rng.random() < 0.10:
            text += (f"\n\nContact {fake.name()} at {fake.email()} or {fake.phone_number()}; "
                     f"card {fake.credit_card_number()}.")
        docs.append(text)
        kinds[kind] = kinds.get(kind, 0) + 1
    for f in range(0, n, per_file):
        with open(os.path.join(out, f"part-{f // per_file:04d}.jsonl"), "w", encoding="utf-8") as fh:
            for i in range(f, min(f + per_file, n)):
                fh.write(json.dumps({"id": f"doc-{i}", "text": docs[i]}, ensure_ascii=False) + "\n")
    return {"docs": n, "kinds": kinds, "mean_chars": sum(map(len, docs)) / n}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--out", default="bench/data/corpus-100k")
    a = ap.parse_args()
    print(json.dumps(build(a.docs, a.out)))
