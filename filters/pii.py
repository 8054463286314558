"""PII: detect with presidio's recognizers (+ street addresses) and spaCy NER, then redact with
typed placeholders or drop the row.

Detection (`filters/pii_detect.py`) runs each recognizer only where a cheap gate says it could
match and spaCy only around capitalised-word runs, so its cost follows the PII-like parts of a
document, not its length. Dropped rows leave the stage with every detected entity redacted too,
so a rejects table never holds the card number that got them dropped; `pii_entities` keeps
types, offsets and scores, never the text. `redact_strings` does the same for any strings the
runner persists (rejected rows of other stages), and `redact_json` for the input's extra keys
that rows carry in `meta` (an author's e-mail in a JSONL line is persisted with the row).

Defaults: PERSON (also in lower case / ALL CAPS, `filters/pii_names.py`), street ADDRESS, e-mail
(also obfuscated: "jane dot doe at example dot com"), phone, card, IBAN, IP, SSN and URL (with a
scheme or `www.`); DATE_OF_BIRTH, UK_NINO, CA_SIN, PASSPORT and CRYPTO_WALLET (`filters/pii_ids.py`);
secrets (API keys and tokens by issuer, JWT, PRIVATE_KEY, URL_PASSWORD, PASSWORD:
`filters/secrets.py`, detect-secrets' rules), each redacted as its own `<TYPE>`. LOCATION is
opt-in (`entities=`): a city or country alone is not personal data, and
spaCy's small model tags `Windows` and `Python` as places; addresses are found whole. A famous
person's full name is redacted like anyone's: telling public figures apart needs a knowledge
base we do not ship, and the cost is asymmetric (a redacted "Isaac Newton" vs a leaked private
name); eponyms with one surname ("Newton's method") are never tagged (a PERSON needs two name
words).
"""
from __future__ import annotations

import json
import re
from typing import Any

import pyarrow as pa

from filters import pii_detect
from filters.pii_detect import (
    DEFAULT_SPACY_MODEL,
    NER_ENTITIES,
    Detector,
    load_spacy,
    offline_tldextract,
    resolve_overlaps,
)
from schemas.engine import ModelStage, annotate, reject_where
from schemas.tables import field

__all__ = ["PiiScrubber", "redact", "DEFAULT_SPACY_MODEL", "PATTERN_ENTITIES", "NER_ENTITIES",
           "offline_tldextract", "resolve_overlaps"]
PATTERN_ENTITIES = [e for e in pii_detect.PATTERN_ENTITIES if e != "ADDRESS"]   # presidio's own recognizers
DEFAULT_ENTITIES = pii_detect.PATTERN_ENTITIES + pii_detect.ID_ENTITIES + pii_detect.SECRET_ENTITIES + ["PERSON"]
DEFAULT_THRESHOLDS = {"PHONE_NUMBER": 0.4,  # presidio scores a phone without context words 0.4
                      "URL": 0.6}           # a scheme or quotes; bare `a.b` is mostly code attributes
JSON_ESCAPE = re.compile(r'\\[nrtbf"\\/]')
PII_ENTITY = pa.struct([("type", pa.string()), ("start", pa.int32()), ("end", pa.int32()), ("score", pa.float32())])


def redact(text: str, spans: list[Any]) -> str:
    """`text` with each (non-overlapping, sorted) span replaced by `<TYPE>`."""
    out, pos = [], 0
    for r in spans:
        out += [text[pos:r.start], f"<{r.entity_type}>"]
        pos = r.end
    return "".join(out) + text[pos:]


class PiiScrubber(ModelStage):
    """Stage: `pii_entities` found, `pii_action` taken (none | redacted | dropped).

    `policy` maps entity type to `redact` (replace with `<TYPE>`) or `drop` (reject the row as
    `pii:<TYPE>`, its text redacted all the same); unlisted types are redacted.
    """
    name = "pii"
    redacts = True  # rejects are persisted too: the executor passes them through redact_strings
    adds = [field("pii_entities", pa.list_(PII_ENTITY)), field("pii_action", pa.string(), stats="category")]

    def __init__(self, policy: dict[str, str] | None = None, score_threshold: float | dict[str, float] = 0.5,
                 spacy_model: str | None = DEFAULT_SPACY_MODEL, column: str = "text", batch_size: int = 64,
                 entities: list[str] | None = None, max_chars: int = 100_000,
                 carried: tuple[str, ...] = ("meta",)):
        nlp = load_spacy(spacy_model)
        self.has_ner = nlp is not None
        self.entities = [e for e in (entities or DEFAULT_ENTITIES) if self.has_ner or e not in NER_ENTITIES]
        self.policy = policy or {}
        if isinstance(score_threshold, dict):
            default = score_threshold.get("default", 0.5)
            thresholds = {**DEFAULT_THRESHOLDS, **{k: v for k, v in score_threshold.items() if k != "default"}}
        else:
            default = score_threshold
            thresholds = {**{e: score_threshold for e in self.entities}, **DEFAULT_THRESHOLDS}
        self.detector = Detector(self.entities, nlp, batch_size, thresholds, default)
        self.column, self.max_chars = column, max_chars
        # Columns carried through from the input (`meta`: the input's extra JSON keys, e.g. an
        # author's e-mail) are persisted with the row, so they are redacted like rejects are.
        self.carried = [c for c in carried if c != column]

    def analyze(self, texts: list[str]) -> list[list[Any]]:
        """Resolved presidio `RecognizerResult`s per text; long texts are analysed in windows
        (spaCy needs ~1 GB per 100k characters) and their offsets mapped back."""
        pieces = [(i, off, chunk) for i, t in enumerate(texts) for off, chunk in _windows(t or "", self.max_chars)]
        results: list[list[Any]] = [[] for _ in texts]
        for (i, off, _), res in zip(pieces, self.detector.detect([c for _, _, c in pieces])):
            for r in res:
                r.start, r.end = r.start + off, r.end + off
            results[i] += res
        return results

    def redact_strings(self, values: list[str | None]) -> list[str | None]:
        """Every entity found (any type, whatever the policy) replaced by `<TYPE>`; None stays.

        Raw input lines are often JSON: detection sees their two-character escapes (`\\n`,
        `\\"`) as the whitespace they stand for, so "Dear Jane Smith,\\nJohn Doe" still shows
        two names; offsets are unchanged and the original string is what gets redacted."""
        present = [(i, v) for i, v in enumerate(values) if v]
        out = list(values)
        probes = [JSON_ESCAPE.sub(_unescape, v) for _, v in present]
        for (i, v), res in zip(present, self.analyze(probes)):
            out[i] = redact(v, res)
        return out

    def redact_json(self, values: list[str | None]) -> list[str | None]:
        """JSON objects with every string leaf (keys stay) through `redact_strings`, re-serialised
        only where something was found, so a span never cuts the JSON; a value that is not JSON
        is redacted as a string."""
        docs: list[Any] = []
        leaves: list[str | None] = []
        for v in values:
            try:
                doc = json.loads(v) if v else None
            except ValueError:
                doc = None
            docs.append(doc)
            if doc is not None:
                _walk(doc, leaves.append)
        redacted = iter(self.redact_strings(leaves))
        plain = self.redact_strings([v if doc is None else None for v, doc in zip(values, docs)])
        out: list[str | None] = []
        for v, doc, p in zip(values, docs, plain):
            if doc is None:  # not JSON (or empty, or None: redact_strings leaves those as they are)
                out.append(p)
                continue
            new_doc = _walk(doc, None, lambda _leaf: next(redacted))
            out.append(json.dumps(new_doc, ensure_ascii=False) if new_doc != doc else v)
        return out

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = [t or "" for t in batch.column(self.column).to_pylist()]
        results = self.analyze(texts)
        new_texts, entities, actions, drops = [], [], [], []
        for text, res in zip(texts, results):
            entities.append([{"type": r.entity_type, "start": r.start, "end": r.end, "score": r.score} for r in res])
            dropping = sorted({r.entity_type for r in res if self.policy.get(r.entity_type) == "drop"})
            drops.append(f"pii:{dropping[0]}" if dropping else None)
            new_texts.append(redact(text, res) if res else text)
            actions.append("dropped" if dropping else "redacted" if res else "none")
        changed = {}
        for name in self.carried:
            if name in batch.column_names and pa.types.is_string(batch.column(name).type):
                values = batch.column(name).to_pylist()
                changed[name] = self.redact_json(values)
                actions = [a if a != "none" or old == new else "redacted"
                           for a, old, new in zip(actions, values, changed[name])]
        batch = annotate(batch, **{self.column: pa.array(new_texts, pa.string()),
                                   **{k: pa.array(v, pa.string()) for k, v in changed.items()},
                                   "pii_entities": pa.array(entities, pa.list_(PII_ENTITY)),
                                   "pii_action": pa.array(actions, pa.string())})
        for reason in sorted({d for d in drops if d}):
            batch = reject_where(batch, [d == reason for d in drops], reason)
        return batch

    @classmethod
    def model_info(cls, spacy_model: str | None = DEFAULT_SPACY_MODEL, **params: Any) -> dict[str, Any]:
        import hashlib
        import importlib.metadata as md

        from filters.pii_lexicon import PATH as LEXICON
        info = {"kind": "presidio", "presidio_analyzer": md.version("presidio-analyzer"), "spacy_model": spacy_model,
                "entities": params.get("entities") or DEFAULT_ENTITIES,
                "name_lexicon_sha256": hashlib.sha256(open(LEXICON, "rb").read()).hexdigest(),
                "detect_secrets": md.version("detect-secrets"), "names": md.version("names")}
        try:
            info["spacy_model_version"] = md.version((spacy_model or "").replace("_", "-"))
        except (md.PackageNotFoundError, ValueError):  # ValueError: no model ('' = patterns only)
            info["spacy_model_version"] = None
        return info


def _walk(doc: Any, visit: Any = None, swap: Any = None) -> Any:
    """Visit (or replace, with `swap`) a JSON document's string leaves in a fixed order."""
    if isinstance(doc, str):
        if visit is not None:
            visit(doc)
        return swap(doc) if swap is not None else doc
    if isinstance(doc, dict):
        return {k: _walk(v, visit, swap) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_walk(v, visit, swap) for v in doc]
    return doc


def _unescape(m: re.Match) -> str:
    """A JSON escape as two characters of the whitespace it stands for."""
    return " \n" if m.group() in ("\\n", "\\r") else "  "


def _windows(text: str, size: int) -> list[tuple[int, str]]:
    """(offset, piece) windows of at most `size` characters, cut at whitespace where possible."""
    if len(text) <= size:
        return [(0, text)]
    out, start = [], 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            cut = text.rfind(" ", start + size // 2, end)
            end = cut + 1 if cut > 0 else end
        out.append((start, text[start:end]))
        start = end
    return out
