"""Twin detection for word problems: a canonical form that keeps the numbers and the operation
cues of each sentence and drops everything else (names, items, filler).

13-gram decontamination misses "twins": the same numbers and operations told about another
person and other things ("Ava has 5 apples. Ava gets 3 more apples." vs "Ben has 5 cards. Ben
gets 3 more cards."). A model that has trained on one scores the other by recall, not by
reasoning, so a held-out set must be free of them. The key is a sorted multiset of
per-sentence signatures, so reordering sentences does not hide a twin either (the key is
coarser than the problem: it may also join two problems that differ only in sentence order,
which errs on the side of calling a problem contaminated).
"""
from __future__ import annotations

import re
from typing import Iterable

# words that say which operation a sentence performs; names and items are never among them
OPERATION_CUES = frozenset("""
more fewer less than away gives gets gave got buys bought sells sold loses lost finds found eats ate
keeps kept only half twice double doubles doubled triple triples tripled times each per every pack packs
box boxes bag bags total plus minus divided split shares share left remain remains altogether
""".split())
SENTENCE = re.compile(r"(?<=[.!?])\s+")
TOKEN = re.compile(r"\d+(?:[./]\d+)*|[a-z]+")


def sentence_signature(tokens: list[str], entities: frozenset[str] = frozenset()) -> str:
    """The numbers and operation cues of one sentence's tokens, in order."""
    return " ".join(t for t in tokens if t[0].isdigit() or (t in OPERATION_CUES and t not in entities))


def canonical(text: str) -> str:
    """Order-free key of a problem: its non-empty sentence signatures, sorted. A cue word found in
    every sentence is the problem's entity (items called "gives"), not an operation: it is dropped."""
    sentences = [TOKEN.findall(s.lower()) for s in SENTENCE.split((text or "").strip())]
    entities = frozenset(set.intersection(*(set(t) for t in sentences))) if len(sentences) > 1 else frozenset()
    sigs = (sentence_signature(t, entities) for t in sentences)
    return "|".join(sorted(s for s in sigs if s))


class TwinIndex:
    """The canonical keys of a set of problems; `twin_of(text)` names the first one sharing a key."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()):
        self.keys: dict[str, str] = {}
        for item, text in items:
            self.add(item, text)

    def add(self, item: str, text: str) -> None:
        key = canonical(text)
        if key:
            self.keys.setdefault(key, item)

    def twin_of(self, text: str) -> str | None:
        key = canonical(text)
        return self.keys.get(key) if key else None

    def __len__(self) -> int:
        return len(self.keys)
