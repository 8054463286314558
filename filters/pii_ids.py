"""Identifiers presidio's recognizers miss or do not have (issue 27), as spans:

- DATE_OF_BIRTH: a date (ISO, d/m/y, d.m.y, "March 14, 1987", "14 March 1987") right after a
  birth word in one of several languages (DOB, date of birth, born on, birthday, geb., né le,
  fecha de nacimiento, ...), or in a birth column/key of CSV, JSON or config;
- UK_NINO (HMRC's prefix and suffix rules), CA_SIN (Luhn), PASSPORT, and US_SSN written as nine
  bare digits: each needs its own words nearby (same line, before it) or a column/key named so;
- CRYPTO_WALLET: Bitcoin base58check (P2PKH/P2SH, double-SHA-256 checksum), bech32/bech32m
  (BIP-173/350 checksum), Ethereum `0x` + 40 hex digits (no context needed: the checksums or
  the exact shape are enough);
- e-mails written to dodge harvesters ("jane dot doe at example dot com", "j.doe [at] x [dot]
  org", "jdoe(at)example.com", "jdoe @ example.com"), ending in a known top-level domain;
- credit cards in dotted groups (Luhn) and IBANs in lower or mixed case (mod 97).
"""
from __future__ import annotations

import hashlib
import re

from presidio_analyzer import RecognizerResult

MONTHS = ("january|february|march|april|may|june|july|august|september|october|november|december"
          "|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec")
DATE = (rf"(?:\d{{4}}-\d{{1,2}}-\d{{1,2}}|\d{{1,2}}[/.\-]\d{{1,2}}[/.\-]\d{{2,4}}"
        rf"|(?i:(?:{MONTHS})\.?)\s\d{{1,2}}(?:st|nd|rd|th)?,?\s\d{{4}}"
        rf"|\d{{1,2}}(?:st|nd|rd|th)?\s(?:of\s)?(?i:(?:{MONTHS})\.?),?\s\d{{4}})")
DATE_RE = re.compile(rf"(?<![\w.\-/]){DATE}(?![\w/]|[.\-]\d)")
BIRTH = (r"d\.?o\.?b\.?|date[\s_-]?of[\s_-]?birth|birth[\s_-]?date|birthdate|birthday|born|b\.|geb\.|geboren"
         r"|geburtsdatum|n[ée]e?|date de naissance|fecha de nacimiento|nacid[oa]|data di nascita|nat[oa]"
         r"|data de nascimento|urodzon[ya]|data urodzenia|geboortedatum")
NINO = r"(?i:[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z])\s?\d{2}\s?\d{2}\s?\d{2}\s?(?i:[A-D])"
SIN9 = r"\d{3}[\s\-]?\d{3}[\s\-]?\d{3}"
# what may stand between a label and its value: quotes, colons, "is", "no.", "#"
LINK = r"""(?:[\s"'“”:=#(\[,.-]|\b(?:is|was|on|am|le|number|no|num|nr|n°|nº|of|the|my|your|her|his)\b\.?)*"""
KEYED = {
    "DATE_OF_BIRTH": (rf"(?i:(?<![\w])(?:{BIRTH})(?![\w]))", DATE),
    "UK_NINO": (r"(?i:national[\s_-]insurance(?:[\s_-](?:number|no))?|\bnino\b|\bni[\s_-]?(?:number|no|num)\b"
                r"|\bnin\b)", NINO),
    "CA_SIN": (r"(?i:social[\s_-]insurance(?:[\s_-]number)?|\bsin\b|\bnas\b|assurance[\s_-]sociale)", SIN9),
    "US_SSN": (r"(?i:\bssn\b#?|social[\s_-]security(?:[\s_-](?:number|no))?|\bss#)",
               r"\d{9}|\d{3}[\s.\-]\d{2}[\s.\-]\d{4}"),
    "PASSPORT": (r"(?i:passport(?:[\s_-]?(?:number|no|num|#))?|reisepass|passeport|pasaporte|passaporto)",
                 r"(?=[A-Z0-9]*\d{5})[A-Z0-9]{1,3}\d{5,8}[A-Z0-9]{0,2}|[A-Z]\d{7,8}|[CFGHJK][CFGHJKLMNPRTVWXYZ0-9]{8}"
                 r"|\d{2}[A-Z]{2}\d{5}"),
}
KEYED_RE = {t: (re.compile(k), re.compile(rf"(?<![\w\-]){v}(?![\w\-])")) for t, (k, v) in KEYED.items()}
GATES = {"DATE_OF_BIRTH": re.compile(rf"(?i:{BIRTH})"), "UK_NINO": re.compile(r"(?i)insurance|\bnin?o?\b|\bni[\s_-]"),
         "CA_SIN": re.compile(r"(?i)\bsin\b|insurance|\bnas\b|sociale"),
         "US_SSN": re.compile(r"(?i)ssn|social[\s_-]security|ss#"),
         "PASSPORT": re.compile(r"(?i)passport|reisepass|passeport|pasaporte|passaporto")}

BTC_B58 = re.compile(r"(?<![\w])[13][1-9A-HJ-NP-Za-km-z]{25,34}(?![\w])")
BTC_BECH32 = re.compile(r"(?<![\w])(?:bc1|BC1|tb1)[ac-hj-np-z02-9AC-HJ-NP-Z02-9]{11,71}(?![\w])")
ETH = re.compile(r"(?<![\w])0x[0-9a-fA-F]{40}(?![\w])")
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

TLDS = ("com|org|net|edu|gov|mil|int|io|co|ai|app|dev|info|biz|me|uk|de|fr|es|it|nl|be|ch|at|pl|pt|se|no|dk|fi"
        "|ie|ca|au|nz|in|jp|cn|br|mx|ru|us|eu|tv|xyz|online|tech|email")
AT = r"(?:\s*[\[(<{]\s*(?i:at)\s*[\])>}]\s*|\s+(?:at|AT)\s+|\s+@\s*|\s*@\s+)"
DOT = r"(?:\s*[\[(<{]\s*(?i:dot)\s*[\])>}]\s*|\s+(?:dot|DOT)\s+|\.)"
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
OBF_EMAIL = re.compile(rf"(?<![\w.@])(?:[\w+\-]+(?:{DOT}[\w+\-]+)*){AT}{LABEL}(?:{DOT}{LABEL})*{DOT}(?i:{TLDS})"
                       r"(?![\w\-])")
# a dodge has at least one written-out or bracketed marker, or a spaced "@"
OBF_MARK = re.compile(r"(?i)[\[(<{]\s*(?:at|dot)\s*[\])>}]|\s(?:at|dot)\s|\s@|@\s")
OBF_GATE = re.compile(r"(?i)\bdot\b|[\[(<{]\s*at\s*[\])>}]|\s@|@\s|\sat\s")

CARD_DOTTED = re.compile(r"(?<![\d.])(?:\d{4}\.\d{4}\.\d{4}\.\d{4}|\d{4}\.\d{6}\.\d{5}|\d{4}\.\d{4}\.\d{4}\.\d{1,3})"
                         r"(?![\d]|\.\d)")
IBAN_ANY = re.compile(r"(?<![\w])[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]{4}){2,7}(?:[ ]?[A-Za-z0-9]{1,3})?(?![\w])")


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return total % 10 == 0


def valid_iban(v: str) -> bool:
    s = re.sub(r"\s", "", v).upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha():
        return False
    n = "".join(str(int(c, 36)) for c in s[4:] + s[:4])
    return int(n) % 97 == 1


def valid_nino(v: str) -> bool:
    s = re.sub(r"\s", "", v).upper()
    return s[:2] not in ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ")


def valid_sin(v: str) -> bool:
    d = re.sub(r"\D", "", v)
    return len(d) == 9 and d[0] not in "08" and luhn(d)


def valid_ssn(v: str) -> bool:
    d = re.sub(r"\D", "", v)
    return len(d) == 9 and d[:3] not in ("000", "666") and d[0] != "9" and d[3:5] != "00" and d[5:] != "0000"


def valid_b58check(v: str) -> bool:
    n = 0
    for c in v:
        n = n * 58 + B58.index(c)
    raw = n.to_bytes(25, "big") if n < 1 << 200 else b""
    if len(raw) != 25 or raw[0] not in (0, 5):
        return False
    return hashlib.sha256(hashlib.sha256(raw[:21]).digest()).digest()[:4] == raw[21:]


def valid_bech32(v: str) -> bool:
    if v != v.lower() and v != v.upper():
        return False
    v = v.lower()
    hrp, _, data = v.rpartition("1")
    if not hrp or len(data) < 6 or any(c not in BECH32 for c in data):
        return False
    gen = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3]
    chk = 1
    for x in [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + [BECH32.index(c) for c in data]:
        b = chk >> 25
        chk = (chk & 0x1ffffff) << 5 ^ x
        for i in range(5):
            chk ^= gen[i] if (b >> i) & 1 else 0
    return chk in (1, 0x2bc830a3)        # bech32, bech32m


VALID = {"UK_NINO": valid_nino, "CA_SIN": valid_sin, "US_SSN": valid_ssn}


def _line_bounds(text: str, pos: int) -> tuple[int, int]:
    s = text.rfind("\n", 0, pos) + 1
    e = text.find("\n", pos)
    return s, len(text) if e < 0 else e


def _keyed_columns(text: str, key_re: re.Pattern) -> list[tuple[int, int]]:
    """(start, end) of the cells under a CSV header cell that matches `key_re`."""
    out = []
    pos = 0
    lines = text.split("\n")
    offsets = []
    for ln in lines:
        offsets.append(pos)
        pos += len(ln) + 1
    for i, ln in enumerate(lines):
        if "," not in ln and "\t" not in ln and ";" not in ln:
            continue
        sep = "," if "," in ln else "\t" if "\t" in ln else ";"
        cells = ln.split(sep)
        cols = [k for k, c in enumerate(cells) if key_re.search(c.strip().strip('"'))]
        if not cols or any(ch.isdigit() for ch in ln):
            continue
        cell = re.compile(rf'"(?:[^"]|"")*"|[^{sep}"]*')
        for j in range(i + 1, min(len(lines), i + 200)):
            row, spans, k = lines[j], [], 0
            while k <= len(row):                      # cells, quoted ones with separators inside
                m = cell.match(row, k)
                assert m is not None  # the unquoted branch matches the empty string too
                spans.append((m.start(), m.end()))
                k = m.end() + 1
            if len(spans) != len(cells):
                break
            for c in cols:
                out.append((offsets[j] + spans[c][0], offsets[j] + spans[c][1]))
    return out


def keyed_ids(text: str, entities: list[str]) -> list[RecognizerResult]:
    """Context-bound identifiers: a value of the type's shape (and checksum) after one of its
    label words on the same line (at most ~30 characters of linking words and punctuation
    between), or in a CSV column whose header names it."""
    out = []
    for t, (key_re, val_re) in KEYED_RE.items():
        if t not in entities or not GATES[t].search(text):
            continue
        valid = VALID.get(t)
        for k in key_re.finditer(text):
            _, le = _line_bounds(text, k.end())
            window = text[k.end():min(le, k.end() + 48)]
            link = re.match(LINK, window)
            skip = link.end() if link else 0
            m = (DATE_RE if t == "DATE_OF_BIRTH" else val_re).match(window, skip)
            if m and (valid is None or valid(m.group())):
                out.append(RecognizerResult(t, k.end() + m.start(), k.end() + m.end(), 0.8))
        if "," in text or "\t" in text:
            for a, b in _keyed_columns(text, key_re):
                cell = text[a:b].strip().strip('"')
                if not cell:
                    continue
                m = (DATE_RE if t == "DATE_OF_BIRTH" else val_re).fullmatch(cell)
                if m and (valid is None or valid(cell)):
                    s = text.index(cell, a)
                    out.append(RecognizerResult(t, s, s + len(cell), 0.8))
    return out


def wallets(text: str) -> list[RecognizerResult]:
    out = []
    if "0x" in text:
        out += [RecognizerResult("CRYPTO_WALLET", m.start(), m.end(), 0.8) for m in ETH.finditer(text)]
    for m in BTC_B58.finditer(text):
        try:
            ok = valid_b58check(m.group())
        except (ValueError, OverflowError):
            ok = False
        if ok:
            out.append(RecognizerResult("CRYPTO_WALLET", m.start(), m.end(), 0.9))
    if "bc1" in text or "BC1" in text or "tb1" in text:
        out += [RecognizerResult("CRYPTO_WALLET", m.start(), m.end(), 0.9) for m in BTC_BECH32.finditer(text)
                if valid_bech32(m.group())]
    return out


def obfuscated_emails(text: str) -> list[RecognizerResult]:
    if not OBF_GATE.search(text):
        return []
    return [RecognizerResult("EMAIL_ADDRESS", m.start(), m.end(), 0.7) for m in OBF_EMAIL.finditer(text)
            if OBF_MARK.search(m.group()) and "\n" not in m.group()]


def cards_and_ibans(text: str) -> list[RecognizerResult]:
    out = []
    if "." in text:
        out += [RecognizerResult("CREDIT_CARD", m.start(), m.end(), 0.8) for m in CARD_DOTTED.finditer(text)
                if luhn(m.group().replace(".", ""))]
    for m in IBAN_ANY.finditer(text):
        v = m.group()
        if v == v.upper():
            continue                       # presidio's own recognizer has the upper-case forms
        while not valid_iban(v) and " " in v:
            v = v.rsplit(" ", 1)[0]        # the last group may be a word after a compact IBAN
        if valid_iban(v):
            # mod 97 is strong evidence: outranks a card-shaped run of its digit groups
            out.append(RecognizerResult("IBAN_CODE", m.start(), m.start() + len(v), 1.0))
    return out


ENTITIES = ["DATE_OF_BIRTH", "UK_NINO", "CA_SIN", "PASSPORT", "CRYPTO_WALLET"]


def find_ids(text: str, entities: list[str]) -> list[RecognizerResult]:
    """Every span of the types above that `entities` asks for (plus the extra forms of EMAIL,
    CREDIT_CARD, IBAN_CODE and US_SSN when those are asked for)."""
    out = keyed_ids(text, entities)
    if "CRYPTO_WALLET" in entities:
        out += wallets(text)
    if "EMAIL_ADDRESS" in entities:
        out += obfuscated_emails(text)
    if "CREDIT_CARD" in entities or "IBAN_CODE" in entities:
        out += [r for r in cards_and_ibans(text) if r.entity_type in entities]
    return out
