"""Text for speech: pick queries that read well aloud, and spell them as they are spoken.

The same `spoken_form` feeds the TTS engine and, through `wer_normalize`, both sides of the
WER, so "17" read as "seventeen" and transcribed as "17" is no error.
"""
from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.stage import annotate, reject_where, stage
from schemas.tables import field

ABBREVIATIONS = {"e.g.": "for example", "i.e.": "that is", "etc.": "et cetera", "vs.": "versus",
                 "Dr.": "doctor", "Mr.": "mister", "Mrs.": "missus", "Ms.": "miz", "St.": "saint",
                 "approx.": "approximately", "No.": "number"}
SYMBOLS = {"%": " percent", "&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "°": " degrees",
           "€": " euros", "£": " pounds"}
ENGLISH_WORDS = frozenset("the a an is are were what how why when where who which do does did can could "
                          "would should will i you we they it of to on for and or with my your this that".split())  # not "was", "in": German too
CODE = re.compile(r"`|[{};]|==|!=|=>|->|\(\)|\bdef |\bimport |</?\w+>|\w+\.\w+\(|\$\w|::")
MATH = re.compile(r"[\\^∑∫√≤≥≠±∞]|\b\d+\s*[a-z]\s*[+\-*/^]|[a-z]\s*=\s*-?\d|\b\w\s*\^\s*\d")
URL = re.compile(r"https?://|www\.|\b[\w.-]+@[\w-]+\.\w+|\b\w+\.(com|org|net|io|html?)\b")
LIST_LINE = re.compile(r"^\s*([-*•]|\d+[.)])\s+", re.M)
NUMBER = re.compile(r"(?<![\w.])(\$|£|€)?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(st|nd|rd|th|%)?(?![\w])")


def _number_words(m: re.Match) -> str:
    from num2words import num2words
    cur, whole, frac, suffix = m.group(1), m.group(2).replace(",", ""), m.group(3), m.group(4)
    n = int(whole)
    if suffix in ("st", "nd", "rd", "th"):
        return num2words(n, to="ordinal")
    if frac:
        words = num2words(float(whole + frac))
    elif not cur and 1100 <= n <= 2099 and len(whole) == 4 and not suffix:
        words = num2words(n, to="year")
    else:
        words = num2words(n)
    words = words.replace("-", " ").replace(",", "")
    if cur:
        words += {"$": " dollars", "£": " pounds", "€": " euros"}[cur]
    if suffix == "%":
        words += " percent"
    return words


def spoken_form(text: str) -> str:
    """Numbers, currency, symbols and common abbreviations as words; whitespace collapsed."""
    for abbr, full in ABBREVIATIONS.items():
        text = text.replace(abbr, full)
    text = NUMBER.sub(_number_words, text)
    for sym, word in SYMBOLS.items():
        text = text.replace(sym, word)
    return " ".join(text.split())


def wer_normalize(text: str) -> str:
    """Shared by reference and hypothesis: spoken form, lower case, no punctuation."""
    text = spoken_form(text).lower().replace("-", " ")
    text = re.sub(r"[^\w\s']", " ", text)
    return " ".join(w.strip("'") for w in text.split() if w.strip("'"))


def speakable_reason(query: str, min_words: int, max_words: int) -> str | None:
    """Why a query would not read well aloud (None: it would)."""
    if LIST_LINE.search(query) and query.count("\n") >= 1:
        return "unspeakable:list"
    if "|" in query:
        return "unspeakable:table"
    if URL.search(query):
        return "unspeakable:url"
    if CODE.search(query):
        return "unspeakable:code"
    if MATH.search(query):
        return "unspeakable:math"
    letters = [c for c in query if c.isalpha()]
    if letters and sum(c.isascii() for c in letters) / len(letters) < 0.9:
        return "non_english"
    words = query.split()
    if len(words) < min_words:
        return "query_too_short"
    if len(words) > max_words:
        return "query_too_long"
    if len(words) >= 4 and not any(w.lower().strip("?.,!") in ENGLISH_WORDS for w in words):
        return "non_english"
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


@stage(adds=[field("text", pa.string(), stats="text")])
def select_speakable(batch: pa.Table, min_words: int = 3, max_words: int = 40) -> pa.Table:
    """Reject queries that read badly aloud; `text` is the spoken form of those kept."""
    queries = batch.column("query").to_pylist()
    reasons = [speakable_reason(q or "", min_words, max_words) for q in queries]
    batch = annotate(batch, text=pa.array([spoken_form(q or "") for q in queries], pa.string()))
    for r in sorted({r for r in reasons if r}):
        batch = reject_where(batch, [x == r for x in reasons], r)
    return batch


@stage(adds=[field("prompt", pa.string()), field("sample", pa.string(), stats="text")])
def format_speech_sample(batch: pa.Table, prompt: str = "") -> pa.Table:
    """Phi-4-multimodal's format; an empty task prompt makes it spoken-query QA (SQQA)."""
    answers = batch.column("answer")
    sample = pc.binary_join_element_wise(f"<|user|><audio>{prompt}<|end|><|assistant|>", answers, "<|end|>", "")
    return annotate(batch, prompt=pa.array([prompt] * batch.num_rows, pa.string()), sample=sample)
