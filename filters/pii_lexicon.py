"""Common lowercase English words, to tell a name ("Hideki Suzuki") from capitalised ordinary
words ("Free Software", "Dear", "Address") where spaCy's small model has no opinion.

Built once from two Debian packages with no relation to the technical prose or the generated
names we evaluate on: the lowercase entries of `wamerican` (SCOWL's American English word list;
proper nouns there are capitalised, so "smith" is the trade, "Smith" is not listed) and every
word seen in lowercase at least three times in the `fortunes` collections (everyday chatter).
Shipped as `filters/data/english_lowercase.txt.gz`; rebuild with
    python filters/pii_lexicon.py bench/data/pii-src/root
"""
from __future__ import annotations

import functools
import gzip
import os
import re
import sys
from collections import Counter

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "english_lowercase.txt.gz")


@functools.lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    with gzip.open(PATH, "rt", encoding="utf-8") as f:
        return frozenset(w.strip() for w in f if w.strip())


def build(root: str, min_count: int = 3) -> list[str]:
    """Words from ROOT/usr/share/dict/american-english and ROOT/usr/share/games/fortunes/*."""
    with open(os.path.join(root, "usr/share/dict/american-english"), encoding="utf-8") as f:
        words = {w.strip() for w in f if re.fullmatch(r"[a-z]+", w.strip())}
    fortune_dir = os.path.join(root, "usr/share/games/fortunes")
    counts: Counter = Counter()
    for name in sorted(os.listdir(fortune_dir)):
        path = os.path.join(fortune_dir, name)
        if os.path.isfile(path) and "." not in name:
            text = open(path, encoding="utf-8", errors="replace").read()
            counts.update(re.findall(r"(?<![\w'])[a-z][a-z']*[a-z](?![\w'])", text))
    return sorted(words | {w for w, c in counts.items() if c >= min_count})


if __name__ == "__main__":
    words = build(sys.argv[1])
    with gzip.open(PATH, "wt", encoding="utf-8", compresslevel=9) as f:
        f.write("\n".join(words) + "\n")
    print(len(words), "words ->", PATH)
