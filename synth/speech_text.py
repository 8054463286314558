"""Text for speech: pick queries that read well aloud, and spell them as they are spoken.

A query is rejected only on real evidence: code needs code syntax (a dotted name, a call, an
underscore identifier, an assignment, an option flag ...), not a semicolon or an abbreviation;
math needs a formula, not one "minus" between numbers. What a reader fixes on the fly (an inline
or short list, a symbol, a unit, a date) is rewritten by `synth.spoken` and the rule names go
to `spoken_rewrites`. Measured against human labels by bench/bench_speakable.py.
The same `spoken_form` feeds the TTS engine and, through `wer_normalize`, both sides of the
WER, so "17" read as "seventeen" and transcribed as "17" is no error.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import re
import unicodedata

import pyarrow as pa
import pyarrow.compute as pc

from schemas.engine.stage import annotate, reject_where, stage
from schemas.tables import field
from synth.spoken import ambiguous_date, line_list_items, spoken, spoken_form, wer_normalize  # noqa: F401

MAX_LIST_ITEMS = 6

URL = re.compile(r"https?://|\bwww\.|\b[\w.+-]+@[\w-]+\.\w+|\b[\w-]+\.(?:com|org|net|io|biz|info|edu|gov|co|uk|de|fr|"
                 r"html?|php|aspx?)\b(?!\.\w)")

CODE = {  # name: pattern; any one is evidence a reader would have to pronounce code
    "rest_role": r":\w+(?::\w+)?:`",
    "backtick_code": r"`[^`\n]*[^\w\s`][^`\n]*`",
    "call": r"\b[A-Za-z_][A-Za-z0-9_]+\((?!s\))",
    "dotted_name": r"(?<![\w.])(?![A-Za-z]{1,2}\.[A-Za-z]{1,2}\b)[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]+"
                   r"|(?<![\w.])[A-Za-z_][A-Za-z0-9_]{2,}\.[a-z_]\b(?!\.)",
    "code_point": r"\bU\+[0-9A-F]{4,6}\b",
    "underscore_name": r"\b[A-Za-z0-9]+_[A-Za-z0-9_]*|\b__\w+|(?<![\w])_[A-Za-z]\w*",
    "operator": r"==|!=|<=|>=|->|=>|::|&&|\|\||<<|>>|\+=|-=|\*=|/=|\*\*|\+\+(?=\w)",
    "assignment": r"(?m)^\s*[A-Za-z_][\w.\[\]'\"]+\s*=\s*\S|\b[A-Za-z_]\w+=(?:[\w\[\"'{(-]|\s)",
    "keyword_line": r"(?m)^\s*(?:(?:def|class|elif|else|try|except|finally|while|with|if|for)\b[^\n]*:\s*$"
                    r"|(?:return|import|raise|yield|def|class)\s+\S|from\s+[\w.]+\s+import\b)",
    "subscript": r"[\w)\]>]\[[^\]\s]*\]|\[\]|\{\}|\(\)|\[\s*--?\w",
    "brace": r"[{}]",
    "option": r"(?<![\w-])--?[a-z][\w-]*",
    "path": r"(?<![\w.])(?:~|\.{1,2})?/(?:[\w.-]+/)+[\w.-]*|\w\\\\?\w",
    "file_name": r"\b[\w-]+\.(?:py|pyc|txt|cfg|ini|toml|json|ya?ml|xml|csv|tsv|gz|bz2|xz|zip|tar|whl|so|dll|dylib|"
                 r"exe|sh|bat|c|h|cpp|hpp|js|ts|rs|go|java|md|rst|log|dat|mo|po|pth|db|sqlite|o)\b",
    "prompt": r"(?m)^\s*(?:>>>|\$ )",
    "placeholder": r"</?[A-Za-z_][\w-]*>",
    "statement_end": r"\)\s*;",
}
CODE_RE = {k: re.compile(v) for k, v in CODE.items()}

MATH = {
    "equation_variable": r"(?<![\w.])[a-z]\s*=\s*[-−(\d]|[-−\d)]\s*=\s*[-−]?\s*\d*\s*\*?\s*[a-z]\b",
    "coefficient_variable": r"\d\s*\*\s*[a-z]\b|\b\d+[a-z]\b(?=\s*[-+*/=^])",
    "notation": r"[\^√∑∫∞≤≥≠±∂∆]|\\[a-z]+\{|\bd[A-Z]d[A-Z]\b",
    "parenthesised_arithmetic": r"\(\s*[-−]?\d[\d.]*(?:\s*[+*/×÷]\s*|\s+[-−]\s+)[-−(]?\d"
                                r"|\(\s*[-−]\d|\d\s*[-−+*/]\s*\(",
}
MATH_RE = {k: re.compile(v) for k, v in MATH.items()}
SIMPLE_FRACTION = re.compile(r"(?<![\d.)/])\d+/\d+(?![\d./(])")
BINARY_OP = re.compile(r"[\d)]\s*(?:[+*/×÷]|\s[-−]\s)\s*[-−(]?\s*\d")
ONSETS = re.compile(r"^(?:[bcdfgkpt][hlr]|s[chklmnptw]|[a-z]y|[a-z][aeiouy]|wr|sch|thr|chr|phr|str|spr|spl|scr)")


def _letter_soup(word: str) -> bool:
    """A lowercase "word" to be spelled out (wwsshw, nkcyqyz, oooeeo): a letter thrice in a row, no vowel,
    or y as the only vowel and not English-shaped."""
    if len(word) < 4 or not word.isalpha() or not word.islower():
        return False
    if re.search(r"(.)\1\1", word):  # no English word has a letter three times in a row
        return True
    if re.search(r"[aeiou]", word):
        return False
    return "y" not in word or word.count("y") > 1 or not ONSETS.match(word) or bool(re.search(r"(.)\1\1", word))


def code_evidence(text: str) -> str | None:
    """The first kind of code syntax found (None: no real code evidence)."""
    for name, rx in CODE_RE.items():
        if rx.search(text):
            return name
    return None


def math_evidence(text: str) -> str | None:
    for name, rx in MATH_RE.items():
        if rx.search(text):
            return name
    if len(BINARY_OP.findall(SIMPLE_FRACTION.sub("F", text))) >= 3:  # 5/2 is a number, not an operation
        return "operator_chain"
    if any(_letter_soup(w) for w in re.findall(r"[A-Za-z]+", text)):
        return "spelled_letters"
    return None


def is_table(text: str) -> bool:
    """Rows and columns: two or more piped rows, a grid/simple reST border, tab or comma columns."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if sum(bool(re.search(r"\S\s*\|\s*\S|^\s*\|", ln)) for ln in lines) >= 2:
        return True
    if any(re.match(r"^\s*(?:\+[-=+]{3,}\+|={2,}(?:\s+={2,})+|\|?\s*:?-{3,}:?\s*\|)", ln) for ln in lines):
        return True
    if sum(bool(re.search(r"\S\t+\S", ln)) for ln in lines) >= 2:
        return True
    csv = [ln.count(",") for ln in lines if ", " not in ln and "," in ln and " " not in ln.strip().split(",")[0]]
    return len(csv) >= 2 and len(set(csv)) == 1


def is_unspeakable_list(text: str) -> bool:
    """A list laid out one item a line that does not read as a sentence: nested, or too many items."""
    got = line_list_items(text) if "\n" in text else None
    return got is not None and (got[3] or len(got[1]) > MAX_LIST_ITEMS)


# ---- language: stop words of spaCy's language data (read from its files: no spaCy import) ----
LANGS = ("de", "fr", "es", "it", "pt", "nl", "pl", "cs", "la", "sv", "da", "ro", "tr", "id", "ca", "fi", "hu")


@functools.cache
def stop_words(lang: str) -> frozenset[str]:
    spec = importlib.util.find_spec("spacy")
    path = os.path.join(os.path.dirname(spec.origin), "lang", lang, "stop_words.py") if spec and spec.origin else ""
    mod_spec = importlib.util.spec_from_file_location(f"_stop_words_{lang}", path) if os.path.exists(path) else None
    if mod_spec is None or mod_spec.loader is None:  # a spaCy without this language: no votes from it
        return frozenset()
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return frozenset(w.lower() for w in mod.STOP_WORDS)


def _is_latin(c: str) -> bool:
    return unicodedata.name(c, "").startswith("LATIN")


def is_non_english(text: str) -> bool:
    """Another script, many accented letters, or more function words of one other language than of English."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    if sum(not _is_latin(c) for c in letters) / len(letters) > 0.3:
        return True
    if sum(not c.isascii() for c in letters) / len(letters) >= 0.1:
        return True
    words = [w.lower() for w in re.findall(r"[^\W\d_]+", text)]
    en_stop = stop_words("en")
    for lang in LANGS:  # a word that is a function word in both languages counts for neither
        other = stop_words(lang)
        en = len({w for w in words if w in en_stop and w not in other})
        foreign = len({w for w in words if w in other and w not in en_stop and len(w) > 1})
        if foreign > en and foreign >= 2 or en == 0 and foreign >= 1 and len(words) >= 3:
            return True
    return False


def speakable_reason(query: str, min_words: int, max_words: int) -> str | None:
    """Why a query would not read well aloud (None: it would, after `spoken`'s rewrites)."""
    if is_table(query):
        return "unspeakable:table"
    if is_unspeakable_list(query):
        return "unspeakable:list"
    if URL.search(query):
        return "unspeakable:url"
    if code_evidence(query):
        return "unspeakable:code"
    if math_evidence(query):
        return "unspeakable:math"
    if ambiguous_date(query):  # 03/04/2021: March 4 or 3 April? the answer assumed one of them
        return "ambiguous_date"
    if is_non_english(query):
        return "non_english"
    words = query.split()
    if len(words) < min_words:
        return "query_too_short"
    if len(words) > max_words:
        return "query_too_long"
    return None


@stage(adds=[field("query", pa.string()), field("answer", pa.string())])
def extract_turns(batch: pa.Table) -> pa.Table:
    """The first user turn (the query to speak) and the assistant turn after it (the label)."""
    queries, answers = [], []
    for msgs in batch.column("messages").to_pylist():
        q = a = None
        for i, m in enumerate(msgs or []):
            if m.get("role") == "user" and q is None:
                q = m.get("content")
                nxt = (msgs[i + 1:] or [{}])[0]
                a = nxt.get("content") if nxt.get("role") == "assistant" else None
        queries.append(q)
        answers.append(a)
    batch = annotate(batch, query=pa.array(queries, pa.string()), answer=pa.array(answers, pa.string()))
    batch = reject_where(batch, [not q or not q.strip() for q in queries], "no_user_turn")
    return reject_where(batch, [not a or not a.strip() for a in answers], "no_answer")


@stage(adds=[field("text", pa.string(), stats="text"),
             field("spoken_rewrites", pa.list_(pa.string()),
                   doc="rules that rewrote the query into its spoken form (list, unit, currency, ...)")])
def select_speakable(batch: pa.Table, min_words: int = 3, max_words: int = 40) -> pa.Table:
    """Reject queries that read badly aloud; `text` is the spoken form, `spoken_rewrites` how it was made."""
    queries = batch.column("query").to_pylist()
    reasons = [speakable_reason(q or "", min_words, max_words) for q in queries]
    said = [spoken(q or "") for q in queries]
    batch = annotate(batch, text=pa.array([s for s, _ in said], pa.string()),
                     spoken_rewrites=pa.array([r for _, r in said], pa.list_(pa.string())))
    for r in sorted({r for r in reasons if r}):
        batch = reject_where(batch, [x == r for x in reasons], r)
    return batch


@stage(adds=[field("prompt", pa.string()), field("sample", pa.string(), stats="text")])
def format_speech_sample(batch: pa.Table, prompt: str = "") -> pa.Table:
    """Phi-4-multimodal's format; an empty task prompt makes it spoken-query QA (SQQA)."""
    answers = batch.column("answer")
    sample = pc.binary_join_element_wise(f"<|user|><audio>{prompt}<|end|><|assistant|>", answers, "<|end|>", "")
    return annotate(batch, prompt=pa.array([prompt] * batch.num_rows, pa.string()), sample=sample)


@stage()
def mark_duplicate_ids(batch: pa.Table, fields: tuple[str, ...] = ("text", "answer")) -> pa.Table:
    """Rows that would become the same `speech_sft` row are `duplicate_id` here, before TTS and ASR.

    The output id hashes text, voice, engine and answer, and the voice is picked from the text
    (`synth.tts.pick`), so equal text and answer make equal ids: the writer would keep the first
    and reject the others as `duplicate_id` after paying TTS and ASR for them. Like the writer,
    within the batch (a function stage gets the whole shard): the first occurrence goes on."""
    cols = [batch.column(f).to_pylist() for f in fields]
    first: dict[tuple, int] = {}
    dup = [first.setdefault(key, i) != i for i, key in enumerate(zip(*cols))]
    if not any(dup):
        return batch
    keys = list(zip(*cols))
    what = ", ".join(fields)
    detail = [f"exact duplicate ({what}) of an earlier row of this shard (row {first[keys[i]]} of "
              f"{batch.num_rows} here); rejected before TTS" if d else None for i, d in enumerate(dup)]
    return reject_where(batch, dup, "duplicate_id", detail)
