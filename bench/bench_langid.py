"""Language ID candidates on text we did not write: translated Debian man pages in eight languages.

    python bench/bench_langid.py [--per-lang 60] [--backends py3langid cld2 lingua]

The set: section-1 man pages of `manpages-{de,fr,es,it,ru,pl,nl}` and English ones from
/usr/share/man/man1, rendered to text by `mandoc -Tutf8`; from each page the prose lines of
its body (indented lines, no option lists) are joined into snippets of 200-600 characters, at
most 2 per page, taken in page-name order until `--per-lang` snippets per language. The label is
the package's language; a snippet is used only if it holds 3 of that language's commonest words
(translated pages keep untranslated English paragraphs). Commands and options stay in the text,
as they do on the web. Speed: CPU seconds of detection alone
(model loading reported apart), the backends interleaved in 3 rounds, median.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from filters.language import BACKENDS, detect

LANGS = {"en": "/usr/share/man/man1", **{c: f"/usr/share/man/{c}/man1" for c in ("de", "fr", "es", "it", "ru",
                                                                                     "pl", "nl")}}


# A snippet counts for its page's language only if at least 3 of that language's commonest words
# are in it: translated pages keep untranslated English paragraphs, which would be mislabelled.
FUNCTION_WORDS = {
    "en": "the and is of to that with for", "de": "der die und ist nicht mit das von",
    "fr": "le la les et est des une pour", "es": "el la los y es del una para",
    "it": "il di che è per una del della", "ru": "и в не на что с по это",
    "pl": "i w nie na się jest z do", "nl": "de het en is van een niet op",
}


def labelled(lang: str, snippet: str) -> bool:
    words = set(re.findall(r"\w+", snippet.lower()))
    return len(words & set(FUNCTION_WORDS[lang].split())) >= 3


def snippets(path: str, most: int = 2) -> list[str]:
    out = subprocess.run(["mandoc", "-Tutf8", path], capture_output=True, check=False).stdout
    text = re.sub(r".\x08", "", out.decode("utf-8", "replace"))
    chunks, cur = [], []
    for line in text.splitlines()[2:-2]:
        s = line.strip()
        prose = line.startswith("       ") and not s.startswith("-") and len(s.split()) >= 4
        if prose:
            cur.append(s)
        if (not prose or sum(map(len, cur)) > 600) and cur:
            chunk = " ".join(cur)[:600]
            if len(chunk) >= 200:
                chunks.append(chunk)
            cur = []
        if len(chunks) >= most:
            break
    return chunks


def build_set(per_lang: int) -> list[tuple[str, str]]:
    data = []
    for lang, folder in LANGS.items():
        got = []
        for p in sorted(glob.glob(f"{folder}/*.1.gz")):
            got.extend(s for s in snippets(p) if labelled(lang, s))
            if len(got) >= per_lang:
                break
        data.extend((lang, s) for s in got[:per_lang])
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-lang", type=int, default=60)
    ap.add_argument("--backends", nargs="*", default=list(BACKENDS))
    a = ap.parse_args()
    data = build_set(a.per_lang)
    print(f"set: {len(data)} snippets, {dict(Counter(lang for lang, _ in data))}")
    load = {}
    for b in a.backends:
        t = time.process_time()
        detect("warm up the model", b)
        load[b] = time.process_time() - t
    cpu: dict[str, list[float]] = {b: [] for b in a.backends}
    preds: dict[str, list[tuple[str, float]]] = {}
    for r in range(3):
        for b in (a.backends[r % len(a.backends):] + a.backends[:r % len(a.backends)]):
            t = time.process_time()
            preds[b] = [detect(s, b) for _, s in data]
            cpu[b].append(time.process_time() - t)
    print("| backend | accuracy | accuracy at score ≥ 0.65 (kept share) | docs/CPU-s | load CPU-s | worst language |")
    print("|---|---|---|---|---|---|")
    for b in a.backends:
        ok = [p[0] == lang for (lang, _), p in zip(data, preds[b])]
        kept = [(p[0] == lang) for (lang, _), p in zip(data, preds[b]) if p[1] >= 0.65]
        per = {lang: sum(o for (lg, _), o in zip(data, ok) if lg == lang) / sum(lg == lang for lg, _ in data)
               for lang in LANGS}
        worst = min(per, key=per.get)
        med = sorted(cpu[b])[1]
        print(f"| {b} | {sum(ok) / len(ok):.3f} | {sum(kept) / max(len(kept), 1):.3f} ({len(kept) / len(ok):.2f}) "
              f"| {len(data) / med:,.0f} | {load[b]:.1f} | {worst} {per[worst]:.2f} |")
    for b in a.backends:
        errs = Counter((lang, p[0]) for (lang, _), p in zip(data, preds[b]) if p[0] != lang)
        print(b, "errors (true, predicted):", dict(errs.most_common(6)))


if __name__ == "__main__":
    main()
