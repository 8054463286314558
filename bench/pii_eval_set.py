"""A labeled PII evaluation set, generated deterministically, and its scorer.

    python bench/pii_eval_set.py --docs 1500 --out bench/data/pii-eval.jsonl

Positives are Faker values from many locales (names, street addresses, e-mails, phones, cards,
SSNs, IBANs, IPs) placed at known offsets in varied templates (letters, forms, CSV rows, log
lines, chat). They sit inside real text that ships offline and that we wrote no rules for: prose
paragraphs of the Python 3.11 documentation (Debian python3.11-doc, `bench/data/pii-src`, made by
`bench/corpus.py`'s unpack) or, without it, the standard library's docstrings; chunks of the
standard library's own source code; plus generated hard negatives no PII detector should fire on
(log lines with timestamps, durations, hashes and versions, dates in many formats, years in
prose next to long order numbers, UUIDs). One document in four has no PII at all.

Names: every Faker locale with a Latin-script name provider we could find, plus romanised
Japanese/Chinese names; non-Latin scripts are out of scope for an English NER model and left out.
"""
from __future__ import annotations

import glob
import os
import random
import re
import sys
from collections import Counter, defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from schemas.stats import wilson

DOCS_SRC = os.path.join(ROOT, "bench/data/pii-src/root/usr/share/doc/python3.11/html/_sources")

TYPES = ["PERSON", "ADDRESS", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS"]
NAME_LOCALES = ["en_US", "en_GB", "en_IN", "en_IE", "de_DE", "de_AT", "fr_FR", "es_ES", "es_MX", "it_IT", "pt_BR",
                "pt_PT", "nl_NL", "pl_PL", "tr_TR", "vi_VN", "cs_CZ", "sv_SE", "da_DK", "no_NO", "fi_FI", "ro_RO",
                "hu_HU", "id_ID", "yo_NG", "zu_ZA", "ga_IE", "sk_SK", "hr_HR", "ja_JP*", "zh_CN*"]
ADDRESS_LOCALES = ["en_US", "en_US", "en_US", "en_GB", "en_CA", "en_AU", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL"]
PHONE_LOCALES = ["en_US", "en_US", "en_GB", "en_CA", "en_AU", "en_IN", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL",
                 "pt_BR", "pl_PL"]
IBAN_LOCALES = ["de_DE", "fr_FR", "en_GB", "es_ES", "it_IT", "nl_NL", "pl_PL", "pt_PT", "fi_FI", "sv_SE"]
CARD_TYPES = ["visa", "visa16", "mastercard", "amex", "discover", "jcb", "diners"]

TEMPLATES = [
    "Please contact {PERSON} at {EMAIL_ADDRESS} or by phone on {PHONE_NUMBER}.",
    "Dear {PERSON},\nthank you for your order. It will be shipped to {ADDRESS}.",
    "{PERSON} wrote: I moved last month, my new address is {ADDRESS}, call me on {PHONE_NUMBER}",
    "The refund goes to card {CREDIT_CARD}; the account IBAN is {IBAN_CODE}.",
    "Login attempts from {IP_ADDRESS} were blocked after three failures.",
    "Employee {PERSON}, SSN {US_SSN}, asked us to update the payroll record.",
    "Name: {PERSON}\nAddress: {ADDRESS}\nPhone: {PHONE_NUMBER}\nEmail: {EMAIL_ADDRESS}",
    "{PERSON},{EMAIL_ADDRESS},{PHONE_NUMBER}",
    "2024-03-{D2} 12:04:{D2} INFO auth: user {EMAIL_ADDRESS} logged in from {IP_ADDRESS}",
    "Wire the deposit to IBAN {IBAN_CODE} (beneficiary {PERSON}) before Friday.",
    "Payment declined for {CREDIT_CARD}, expiry 0{D1}/2{D1}. Customer: {PERSON}.",
    "Ship to: {ADDRESS}",
    "I met {PERSON} and {PERSON} at the conference; both said the talk was too long.",
    "Our new office is at {ADDRESS}. Visitors should ask for {PERSON} at reception.",
    "Send the signed form to {ADDRESS} no later than June {D2}.",
    "[{D2}:{D2}] <{PERSON}> my number is {PHONE_NUMBER}, text me",
    "SSN: {US_SSN}   DOB: 19{D2}-0{D1}-1{D1}",
    "Thanks to {PERSON} for reviewing the patch and to {PERSON} for testing it on Windows.",
    "Card number {CREDIT_CARD} was charged twice on order 88{D2}{D2}{D2}1.",
    "sshd[{D2}{D2}]: Accepted publickey for deploy from {IP_ADDRESS} port 5{D2}{D2} ssh2",
    "Mail {EMAIL_ADDRESS} if the build breaks; on-call this week is {PERSON} ({PHONE_NUMBER}).",
    "Return address: {ADDRESS}",
    "The tenant, {PERSON}, lives at {ADDRESS} since 20{D2}.",
    "Account holder {PERSON}; IBAN {IBAN_CODE}; reference INV-20{D2}-{D2}{D2}.",
    "Reach our support line at {PHONE_NUMBER} between 9 and 17, or write to {EMAIL_ADDRESS}.",
    "Client {IP_ADDRESS} - - [12/Mar/2024:10:{D2}:{D2} +0000] \"GET /index.html HTTP/1.1\" 200 5{D2}{D2}",
    "According to {PERSON}, the results were reproduced in 20{D2} by an independent team.",
    "Applicant: {PERSON} | SSN {US_SSN} | Tel. {PHONE_NUMBER}",
]

NEGATIVE_LINES = [
    "2024-0{D1}-{D2} 1{D1}:{D2}:{D2},{D2}{D1} WARNING worker-{D1} retrying task {HEX} after {D2}.{D1} s",
    "Released version {D1}.{D2}.{D1} on 20{D2}-0{D1}-1{D1}; see the changelog for build {D2}{D2}{D2}{D2}{D2}.",
    "In 19{D2} the committee met again, and by 20{D2} the standard had been revised twice.",
    "Order 4{D2}{D2}{D2}{D2}{D2}{D2} shipped on 1{D1}/0{D1}/20{D2} in {D1} parcels weighing {D2}.{D1} kg.",
    "Request {UUID} finished in {D2}{D2} ms with status 200 (cache hit ratio 0.{D2}).",
    "The population grew from {D1},{D2}{D1},{D2}{D1} in 19{D2} to {D1},{D2}{D1},{D2}{D1} in 20{D2}.",
    "commit {HEX}{HEX}{HEX}{HEX}{HEX} Author date: {D2} Mar 20{D2} 1{D1}:{D2}:{D2}",
    "Python 3.{D1}.{D1} was released in October 20{D2}; upgrade from 2.{D1}.{D2} before 20{D2}.",
    "Chapter {D1}, pages {D2}{D1}-{D2}{D2}{D1}, was written between 17{D2} and 18{D2}.",
    "pid={D2}{D2}{D1} uid=10{D2} gid=10{D2} rss={D2}{D2}{D2}{D2} kB vsz={D2}{D2}{D2}{D2}{D2}{D2} kB",
    "Table 3 lists {D2} runs; the median of {D2}{D2}.{D1} ms was measured on 20{D2}-1{D1}-0{D1}.",
    "ISBN 978-{D1}-{D2}{D2}-{D2}{D2}{D2}{D2}-{D1}, first printed in 19{D2}.",
]


class Fakers:
    """One seeded Faker per locale (so adding a locale does not shift the others' values)."""

    def __init__(self, seed: int):
        self.seed, self.cache = seed, {}

    def __call__(self, locale: str):
        if locale not in self.cache:
            from faker import Faker
            f = Faker(locale)
            f.seed_instance(self.seed * 1000 + sum(map(ord, locale)))
            self.cache[locale] = f
        return self.cache[locale]


def fake_value(kind: str, fakers: Fakers, rng: random.Random) -> tuple[str, str]:  # noqa: C901  (a branch per entity type)
    """(value, locale) of one entity."""
    if kind == "PERSON":
        loc = rng.choice(NAME_LOCALES)
        if loc.endswith("*"):
            f = fakers(loc[:-1])
            return f"{f.first_romanized_name()} {f.last_romanized_name()}", loc[:-1]
        f = fakers(loc)
        r = rng.random()
        v = f.name() if r < 0.5 else f"{f.first_name()} {f.last_name()}" if r < 0.9 else \
            f"{f.last_name()}, {f.first_name()}"
        return v, loc
    if kind == "ADDRESS":
        loc = rng.choice(ADDRESS_LOCALES)
        f = fakers(loc)
        r = rng.random()
        if loc == "en_US" and r < 0.1:
            return f"P.O. Box {rng.randint(1, 9999)}, {f.city()}, {f.state_abbr()} {f.postcode()}", loc
        if r < 0.25:
            return f.street_address(), loc
        return f.address().replace("\n", rng.choice([", ", "\n", ", ", " "])), loc
    if kind == "EMAIL_ADDRESS":
        loc = rng.choice(NAME_LOCALES).rstrip("*")
        return rng.choice([fakers(loc).email, fakers(loc).company_email, fakers(loc).free_email])(), loc
    if kind == "PHONE_NUMBER":
        loc = rng.choice(PHONE_LOCALES)
        return fakers(loc).phone_number(), loc
    if kind == "CREDIT_CARD":
        num = fakers("en_US").credit_card_number(rng.choice(CARD_TYPES))
        r = rng.random()
        if r < 0.3:
            groups = [4, 6, 5] if len(num) == 15 else [4, 6, 4] if len(num) == 14 else [4] * (len(num) // 4)
            parts, i = [], 0
            for g in groups:
                parts.append(num[i:i + g])
                i += g
            if i < len(num):
                parts.append(num[i:])
            num = (" " if r < 0.2 else "-").join(parts)
        return num, "en_US"
    if kind == "US_SSN":
        v = fakers("en_US").ssn()
        return (v.replace("-", " ") if rng.random() < 0.15 else v), "en_US"
    if kind == "IBAN_CODE":
        loc = rng.choice(IBAN_LOCALES)
        v = fakers(loc).iban()
        if rng.random() < 0.3:
            v = " ".join(v[i:i + 4] for i in range(0, len(v), 4))
        return v, loc
    if kind == "IP_ADDRESS":
        f = fakers("en_US")
        r = rng.random()
        return (f.ipv4_public() if r < 0.5 else f.ipv4_private() if r < 0.75 else f.ipv6()), "en_US"
    raise KeyError(kind)


def fill(template: str, fakers: Fakers, rng: random.Random, gold: list, offset: int) -> str:
    """The template with values; gold spans (type, start, end, locale) appended at `offset`."""
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out += template[pos:m.start()]
        kind = m.group(1)
        if kind == "D1":
            value = str(rng.randint(1, 9))
        elif kind == "D2":
            value = f"{rng.randint(10, 59)}"
        elif kind == "HEX":
            value = f"{rng.getrandbits(32):08x}"
        elif kind == "UUID":
            value = "-".join(f"{rng.getrandbits(b * 4):0{b}x}" for b in (8, 4, 4, 4, 12))
        else:
            value, loc = fake_value(kind, fakers, rng)
            gold.append((kind, offset + len(out), offset + len(out) + len(value), loc))
        out += value
        pos = m.end()
    return out + template[pos:]


def prose_paragraphs(limit_files: int | None = None) -> tuple[list[str], str]:
    """Python-docs paragraphs (Debian python3.11-doc) if unpacked, else stdlib docstrings."""
    # the release notes, acknowledgements and licence credit real people by name: not negatives
    files = [f for f in sorted(glob.glob(f"{DOCS_SRC}/**/*.rst.txt", recursive=True))
             if not re.search(r"whatsnew/|acks|license|copyright|about|bugs", f)][:limit_files]
    paras: list[str] = []
    if files:
        from filters.quality_data import rst_paragraphs
        for path in files:
            paras += rst_paragraphs(open(path, encoding="utf-8", errors="replace").read())
        source = "python3.11-doc"
    else:
        from pipelines.demo_corpus import docstrings
        paras = [p for d in docstrings() for p in d["text"].split("\n\n")]
        source = "stdlib-docstrings"
    # sources we wrote no rules for, minus their few real e-mail credits and author lines
    credit = re.compile(r"(?i)author|copyright|contributed|patch(?:ed)? by|thanks|written by|maintain"
                        r"|\bby [A-Z][a-z]+ [A-Z]")
    keep = [p for p in paras if 80 <= len(p) <= 1200 and "@" not in p and not credit.search(p)]
    return keep, source


def code_chunks() -> list[str]:
    """Chunks of standard-library source code: identifiers, numbers and literals galore."""
    import argparse as m1
    import decimal as m5
    import fractions as m2
    import inspect
    import ipaddress as m3
    import textwrap as m4
    out = []
    for mod in (m1, m2, m3, m4, m5):
        lines = [ln for ln in inspect.getsource(mod).splitlines() if "@" not in ln and "Author" not in ln]
        for i in range(0, len(lines) - 12, 12):
            chunk = "\n".join(lines[i:i + 12]).strip()
            if len(chunk) > 120:
                out.append(chunk)
    return out


def build(n_docs: int, seed: int = 0, target_chars: int = 2000, limit_files: int | None = None) -> dict:
    """{'docs': [{'text', 'gold': [(type, start, end, locale)]}], 'source': ...}, ~target_chars each."""
    rng = random.Random(seed)
    fakers = Fakers(seed)
    paras, source = prose_paragraphs(limit_files)
    code = code_chunks()
    docs = []
    for i in range(n_docs):
        parts: list[str] = []
        n_len = 0
        while n_len < target_chars:
            r = rng.random()
            p = rng.choice(code) if r < 0.12 else fill(rng.choice(NEGATIVE_LINES), fakers, rng, [], 0) \
                if r < 0.25 else rng.choice(paras)
            parts.append(p)
            n_len += len(p) + 2
        n_pii = 0 if i % 4 == 3 else rng.choice([1, 1, 2, 2, 3])
        slots = sorted(rng.sample(range(len(parts) + 1), min(n_pii, len(parts) + 1)))
        text, gold = "", []
        for j in range(len(parts) + 1):
            if j in slots:
                text += fill(rng.choice(TEMPLATES), fakers, rng, gold, len(text)) + "\n\n"
            if j < len(parts):
                text += parts[j] + "\n\n"
        docs.append({"text": text.rstrip() + "\n", "gold": gold})
    return {"docs": docs, "source": source, "seed": seed}


def score(predictions: list[list[tuple[str, int, int]]], docs: list[dict], types: list[str] = TYPES) -> dict:
    """Per type: precision (a prediction overlaps a gold span of its type), recall (a gold span
    is overlapped by a prediction of its type), character coverage of gold spans by predictions
    of their type, Wilson 95% intervals, and recall per locale."""
    tp_p, n_p, tp_g, n_g = Counter(), Counter(), Counter(), Counter()
    chars_g, chars_cov = Counter(), Counter()
    by_loc: dict[str, Counter] = defaultdict(Counter)
    fps: dict[str, Counter] = defaultdict(Counter)
    misses: dict[str, list] = defaultdict(list)
    for preds, doc in zip(predictions, docs):
        gold, text = doc["gold"], doc["text"]
        for t, s, e in preds:
            n_p[t] += 1
            hit = any(g[0] == t and s < g[2] and e > g[1] for g in gold)
            tp_p[t] += hit
            if not hit:
                fps[t][text[s:e]] += 1
        for t, s, e, loc in gold:
            n_g[t] += 1
            same = [(ps, pe) for pt, ps, pe in preds if pt == t and ps < e and pe > s]
            tp_g[t] += bool(same)
            by_loc[t][(loc, "n")] += 1
            by_loc[t][(loc, "hit")] += bool(same)
            covered = set()
            for ps, pe in same:
                covered.update(range(max(ps, s), min(pe, e)))
            chars_g[t] += sum(not text[k].isspace() and text[k] not in ",." for k in range(s, e))
            chars_cov[t] += sum(not text[k].isspace() and text[k] not in ",." for k in covered)
            if not same and len(misses[t]) < 15:
                misses[t].append(text[s:e])
    out = {}
    for t in sorted(set(n_p) | set(n_g), key=lambda x: (x not in types, x)):
        row = {"gold": n_g[t], "predicted": n_p[t]}
        if n_p[t]:
            row["precision"] = tp_p[t] / n_p[t]
            row["precision_ci"] = wilson(tp_p[t], n_p[t])
        if n_g[t]:
            row["recall"] = tp_g[t] / n_g[t]
            row["recall_ci"] = wilson(tp_g[t], n_g[t])
            row["char_coverage"] = chars_cov[t] / max(1, chars_g[t])
            locs = sorted({k[0] for k in by_loc[t]})
            row["recall_by_locale"] = {lc: [by_loc[t][(lc, "hit")], by_loc[t][(lc, "n")]] for lc in locs}
            row["misses"] = misses[t]
        row["top_false_positives"] = fps[t].most_common(10)
        out[t] = row
    return out


def format_table(results: dict[str, dict], types: list[str] = TYPES) -> str:
    """Markdown rows: type, P [CI], R [CI], coverage, gold, predicted, for each system."""
    names = list(results)
    head = "| type | " + " | ".join(f"{n} P [95% CI] | {n} R [95% CI]" for n in names) + " | gold |"
    lines = [head, "|" + "---|" * (2 * len(names) + 2)]
    f = lambda v, ci: "-" if v is None else f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    for t in types:
        cells = []
        gold = 0
        for n in names:
            r = results[n].get(t, {})
            gold = r.get("gold", gold)
            cells += [f(r.get("precision"), r.get("precision_ci")), f(r.get("recall"), r.get("recall_ci"))]
        lines.append(f"| {t} | " + " | ".join(cells) + f" | {gold} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse
    import json
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/data/pii-eval.jsonl"))
    a = ap.parse_args()
    s = build(a.docs, a.seed)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as fh:
        for d in s["docs"]:
            fh.write(json.dumps(d) + "\n")
    c = Counter(g[0] for d in s["docs"] for g in d["gold"])
    print(f"{len(s['docs'])} docs from {s['source']}, {sum(c.values())} spans: {dict(c)}")
