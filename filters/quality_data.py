"""Build the shipped labeled set for the quality classifier from text that installs offline.

    python -m filters.quality_data [--out filters/data/quality_labeled.jsonl.gz]

Labels, honestly: `hq` = prose paragraphs of the Python 3.11 documentation (Debian package
`python3.11-doc`, reST sources; PSF licence) — educational technical writing, the kind the
Phi reports keep. `lq` = jokes, quotes, chat logs and one-liners of the BSD fortune
collection (Debian `fortunes`, `fortunes-min`; public domain / BSD), grouped to document
length, plus incoherent word salad from Faker's English lorem provider (seeded). The
classifier therefore learns "educational prose vs. chatter and noise", not web quality in
general: train on your own labels for that (`curate train-classifier --help`).
The Debian packages are only downloaded and unpacked (`apt-get download`, `dpkg-deb -x`).
"""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import random
import re
import subprocess
import tempfile

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "quality_labeled.jsonl.gz")
PACKAGES = ["python3.11-doc", "fortunes", "fortunes-min"]
ROLE = re.compile(r":[a-z:+-]+:`!?~?([^`<]*?)(?:\s*<[^>]*>)?`")
LITERAL = re.compile(r"``([^`]*)``")
HEADING = re.compile(r"^([=\-~^*#+\"'`.])\1{2,}\s*$")


def unpack(debs_dir: str) -> str:
    root = os.path.join(debs_dir, "root")
    subprocess.run(["apt-get", "download", "-qq", *PACKAGES], cwd=debs_dir, check=True)
    for deb in glob.glob(os.path.join(debs_dir, "*.deb")):
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    return root


def rst_paragraphs(text: str) -> list[str]:
    """Prose paragraphs of a reST file: no directives, code blocks, tables or headings."""
    out: list[str] = []
    para: list[str] = []
    skip_indent = None
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_indent is not None:
            if stripped and indent <= skip_indent:
                skip_indent = None
            else:
                continue
        if stripped.startswith(".. ") or stripped.endswith("::") and not stripped.endswith(":::"):
            if para and stripped.endswith("::") and not stripped.startswith(".."):
                para.append(stripped[:-1])
            if para:
                out.append(" ".join(para))
                para = []
            skip_indent = indent
            continue
        if not stripped or HEADING.match(stripped) or stripped.startswith(("+", "|", "*", "-", ">>>")) or indent >= 3:
            if para:
                out.append(" ".join(para))
                para = []
            continue
        para.append(stripped)
    if para:
        out.append(" ".join(para))
    cleaned = []
    for p in out:
        p = LITERAL.sub(r"\1", ROLE.sub(r"\1", p)).replace("\\", "")
        if len(p) > 120 and p.count(" ") > 15:
            cleaned.append(p)
    return cleaned


def good_docs(root: str, rng: random.Random) -> list[str]:
    docs = []
    for path in sorted(glob.glob(f"{root}/usr/share/doc/python3.11/html/_sources/**/*.rst.txt", recursive=True)):
        if "/whatsnew/" in path or "/c-api/" in path:
            continue
        paras = rst_paragraphs(open(path, encoding="utf-8", errors="replace").read())
        i = 0
        while i < len(paras):
            k = rng.randint(1, 3)
            docs.append("\n\n".join(paras[i:i + k]))
            i += k
    return docs


def bad_docs(root: str, n: int, rng: random.Random) -> list[str]:
    from faker import Faker
    fortunes: list[str] = []
    for path in sorted(glob.glob(f"{root}/usr/share/games/fortunes/*")):
        if os.path.splitext(path)[1] or os.path.isdir(path):
            continue
        text = open(path, encoding="utf-8", errors="replace").read()
        fortunes += [f.strip() for f in text.split("\n%\n") if f.strip()]
    rng.shuffle(fortunes)
    docs: list[str] = []
    i = 0
    while len(docs) < int(n * 0.8) and i < len(fortunes):
        k = rng.randint(2, 8)
        docs.append("\n\n".join(fortunes[i:i + k]))
        i += k
    fake = Faker("en_US")
    fake.seed_instance(1234)
    while len(docs) < n:
        docs.append("\n\n".join(fake.paragraph(nb_sentences=rng.randint(3, 9)) for _ in range(rng.randint(1, 3))))
    return docs


def build(out: str = DEFAULT_OUT, per_label: int = 3000, seed: int = 0) -> dict[str, int]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = unpack(tmp)
        good = good_docs(root, rng)
        rng.shuffle(good)
        good = good[:per_label]
        bad = bad_docs(root, len(good), rng)
    rows = [{"text": t, "label": "hq", "source": "python3.11-doc"} for t in good] + \
           [{"text": t, "label": "lq", "source": "fortunes+faker"} for t in bad]
    rng.shuffle(rows)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=9) as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return {"hq": len(good), "lq": len(bad)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--per-label", type=int, default=3000)
    a = ap.parse_args()
    print(build(a.out, a.per_label), "->", a.out)
