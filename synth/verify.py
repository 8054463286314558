"""Rule-based answer verification: extract the final answer, then decide equality.

Order matters for speed and safety: plain numbers (integers, decimals, fractions, with
commas, units or a currency sign) are compared exactly with `Fraction` in-process; only
what is left goes to math-verify (LaTeX and symbolic forms), which runs in a child process
under a hard wall-clock limit. math-verify's own timeout uses `signal.alarm` and works only
in a main thread; Ray runs stages in worker threads, and a pathological sympy simplification
can hang for minutes, so the child is killed and restarted instead. What the rules cannot
decide is `undecided` (for the model-based judge), never a guess; so is a completion with no
answer in it (the judge sees it with answer "(none)"), except an empty one, one cut off at the
token limit, or one that holds nothing that could write a numeric reference ("I have no idea.").

Forms decided in-process besides plain numbers: mixed numbers (`3\\frac{1}{2}`, `3 1/2`,
`-2\\frac{1}{3}` = -(2 + 1/3); an improper one, `2\\frac{3}{2}`, is undecided), the Unicode minus
and other Unicode maths (`normalize`), units inside LaTeX (`12 \\text{ m}^2`) and scale words
("79 million"), degrees, repeating decimals (`0.\\overline{3}`, `0.1666...`), infinity,
multiple-choice letters with or without their value, yes/no, "no solution" / `\\emptyset`,
inequalities against intervals, and roots joined by "or" against a set (`_compare_kinds`).

Extraction takes the last box, else the LAST stated answer (so a self-correction wins), else
a final formula or number only where the text reads as a solution: word salad that happens to
end in the right number is no answer. Numbers too long for `Fraction` compare as canonical
digit strings. Every pattern applied to model output is linear or runs on a bounded slice, so
a hostile 1 MB answer costs milliseconds in-process (`tests/test_verify.py`).
"""
from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

from synth.number_words import words_to_number

CORRECT, INCORRECT, UNDECIDED = "correct", "incorrect", "undecided"


@dataclass(frozen=True)
class Verdict:
    verdict: str
    verifier: str
    extracted: str | None


# ---- extraction ---------------------------------------------------------------------
# Every regex here runs on untrusted model output. Each is either anchored to a literal (so a
# failed start costs O(1)) with no nested or adjacent overlapping quantifiers, or it runs on a
# slice of bounded length (`_SPAN`, `_TAIL`, `_SHORT`): no input makes them super-linear.
_SPAN = 400      # a stated answer is at most this long
_TAIL = 600      # the fallback looks only at the end of a solution
_SHORT = 80      # `as_number` runs its patterns only on strings this short (or on plain digits)


_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\{")


def _boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every balanced `\\boxed{…}` / `\\fbox{…}`, in order (one pass)."""
    out: list[tuple[int, int, str]] = []
    pos = 0
    for m in _BOX_OPEN.finditer(text):
        if m.start() < pos:  # inside the previous box
            continue
        depth, j = 1, m.end()
        while j < len(text) and depth:
            c = text[j]
            depth += (c == "{") - (c == "}")
            j += 1
        if depth:
            return out
        out.append((m.start(), j, text[m.end():j - 1].strip()))
        pos = j
    return out


def _unwrap_box(c: str) -> str:
    """`\\boxed{\\boxed{3}}` → `3`."""
    for _ in range(5):
        inner = _boxed_spans(c) if c.startswith(("\\boxed{", "\\fbox{")) else []
        if len(inner) != 1 or inner[0][1] != len(c):
            break
        c = inner[0][2]
    return c


_BOX_JOIN = re.compile(r"(?:[\s$,.;&]|and|\\quad|\\qquad|\\text\{\s*and\s*\}|\\[][()])*")


def _last_boxed(text: str) -> str | None:
    """The last boxed answer; boxes separated only by "and" / commas ("\\boxed{-2} and \\boxed{1}")
    are one answer, a list."""
    spans = _boxed_spans(text)
    if not spans:
        return None
    group = [spans[-1]]  # built backwards, at most 20 boxes
    for prev in reversed(spans[-20:-1]):
        gap = text[prev[1]:group[-1][0]]
        if len(gap) > 40 or not _BOX_JOIN.fullmatch(gap):
            break
        group.append(prev)
    parts = [_unwrap_box(c) for _, _, c in reversed(group) if c]
    return ", ".join(parts) if parts else None


# A stated answer: "The (final) answer is", "Answer:", "####", and self-corrections ("…;
# actually it is 7", "Correction: …"); the LAST one in the text wins.
_CUE = re.compile(r"\banswers?\b[ \t]*(?:is|are|:|=|would be|should be)(?![A-Za-z])|####"
                  r"|\bactually,?[ \t]+(?:it|that|this)(?:[ \t]+is|'s|[ \t]+should[ \t]+be)(?![A-Za-z])"
                  r"|\bcorrection[ \t]*:", re.I)
_SENT_END = re.compile(r"(?P<ell>(?<=\d)(?:\.\.\.|…)\.?(?=\s|$))|(?<!\b[A-E])\.(?=\s|$)"
                       r"|(?<=\b[A-E])\.(?=\s*$|\s+[^-\d\s$])"  # "C. 107": a choice and its value
                       r"|(?<!\\);\s|\n|,?\s+(?:I hope|which|since|because|so that|but)\b"
                       r"|\s+(?=(?:(?:Let me|Let's|Let us|I'll|I will|I should|To)\s+(?:double[- ]?check|verify|check)"
                       r"|Verification|Double[- ]?check)\b)", re.I)
_FULL_STOP = re.compile(r"\.(?=\s|$)|\n")
_LONG_STATED = re.compile(r"[ \t:*$]*([-+]?\d[\d,]*(?:\.\d+)?)(?=[\s.$*]|$)")
_DISPLAY = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))
_SIMPLE_LHS = re.compile(r"\s*\\?[A-Za-z]{1,8}(?:_\{?\w{1,8}\}?)?(?:\([^()=]{0,20}\))?\s*")
_CONNECT = re.compile(r"(?:\\in|\\approx|≈)(?![A-Za-z])")


_CHECK = re.compile(r"\b(?:(?:let me|let's|let us|I should|I'll|I will|we can|to)\s+(?:double[- ]?check|verify|check)"
                    r"|verification|double[- ]?check(?:ing)?)\b", re.I)
_QUALIFIER = re.compile(r"^(?:indeed|still|also|clearly|definitely|therefore|thus|then|now|simply|just)\s+", re.I)
_NOT_AN_ANSWER = re.compile(r"(?:(?:indeed|also|now|still)\s+)?(?:correct|right|verified|confirmed|consistent|valid"
                            r"|accurate|wrong|incorrect|as follows|below|above|the same|unchanged)", re.I)


def _strip_markup(ans: str) -> str:
    # "0.333...": a repeating decimal, not a full stop
    ellipsis = re.search(r"\d(?:\.\.\.|…)\.?$", ans.strip().strip("\"'*` $").strip())
    ans = _strip_markup_inner(ans)
    return ans + "..." if ellipsis and not ans.endswith("...") else ans


def _strip_markup_inner(ans: str) -> str:
    ans = ans.strip().strip("\"'*` ").strip()
    if ans.count("$") != 1:
        ans = ans.strip("$").strip()
    for a, b in _DISPLAY[1:3]:
        if ans.startswith(a) and ans.endswith(b):
            ans = ans[len(a):-len(b)].strip()
    return ans.rstrip(".,;:").strip()


_YES_NO_LEAD = re.compile(r"[*\s]*(?:\$?\\(?:text|textbf|mathrm)\{\s*)?(yes|no|true|false)\b(?!\s+[A-Za-z])", re.I)
_DISJUNCTION = re.compile(r"(?<![A-Za-z\\])or(?![A-Za-z])|\\text\{\s*or\s*\}|\\(?:vee|lor)(?![A-Za-z])")


def _final_value(ans: str) -> str:
    """`x = 5` → `5`, `a = 1 + 1 = 2` → `2`, `x \\in [0, 1)` → `[0, 1)`, `1/3 \\approx 0.33` → `1/3`;
    an equation (`2x + y = 1`) stays whole for math-verify."""
    m = _CONNECT.search(ans)
    if m and ("approx" in m.group() or "≈" in m.group()) and not _SIMPLE_LHS.fullmatch(ans[:m.start()]):
        ans = ans[:m.start()].strip()  # "1/3 \approx 0.33": the exact form
    elif m:
        ans = ans[m.end():].strip()    # "x \in [0, 1)", "x \approx 11"
    if ans.count("=") > 1 and (_DISJUNCTION.search(ans) or re.search(r"(?<![A-Za-z\\])and(?![A-Za-z])", ans)):
        # "x = 2 or x = 3", "x = 2 and x = 3": the roots, kept whole
        return ans.replace("$", "").strip()
    items = _top_level_split(ans) if "," in ans and "=" in ans else None
    if items and sum("=" in x for x in items) > 1:  # "a = 1, b = 2": a list of equations, kept whole
        return ans
    if "=" in ans and not ans.lstrip().startswith("="):
        parts = _top_level_split(ans, "=", keep_empty=True) or [ans]
        if len(parts) > 2 or _SIMPLE_LHS.fullmatch(parts[0]):
            ans = parts[-1].strip() or ans
    return re.sub(r"^([-+])\s+(?=[\d\\(])", r"\1", ans)  # "- 5" → "-5"


def _stated(text: str) -> tuple[str | None, str]:
    """The last non-empty stated answer (a cue with nothing after it, as a model cut off right
    after "The answer is", falls back to the one before it)."""
    cues = deque(_CUE.finditer(text), maxlen=20)  # not a list of every cue: a long list slows the GC
    for last in reversed(cues):
        ans, method = _stated_at(text, last)
        if ans:
            return ans, method
    return None, "cue" if cues else "none"


def _stated_at(text: str, last: re.Match) -> tuple[str | None, str]:
    method = "hashes" if last.group() == "####" else "answer_is"
    m = _LONG_STATED.match(text, last.end())
    if m and len(m.group(1)) > _SPAN:  # a number longer than the span: take all of its digits
        return m.group(1), method
    rest = text[last.end():last.end() + _SPAN].lstrip(" \t:*")
    for a, b in _DISPLAY[:2]:  # a display block: its content, across lines
        if rest.lstrip().startswith(a):
            body = rest.lstrip()[len(a):]
            j = body.find(b)
            if j >= 0:
                return _final_value(_strip_markup(body[:j])) or None, method
    rest = rest.lstrip()
    m = _YES_NO_LEAD.match(rest)
    if m:  # "yes, it is possible": the verdict word, not the last word of its reason
        return m.group(1).lower(), method
    m = _SENT_END.search(rest)
    ans = _strip_markup(rest[:m.start()] + ("..." if m.group("ell") else "") if m else rest)
    ans = _QUALIFIER.sub("", ans)  # "is indeed 7"
    if _NOT_AN_ANSWER.fullmatch(ans):  # "Yes, the answer is correct." after the answer: not one
        return None, method
    if has_words(ans) and as_number(ans) is None:
        # "The volume of $ABCD$ is 120", "the number Priya has, which is 18": after the last "is"
        end = _FULL_STOP.search(rest)
        sentence = rest[:end.start()] if end else rest
        i, i_are = sentence.rfind(" is "), sentence.rfind(" are ")
        k = max(i + 4 if i >= 0 else -1, i_are + 5 if i_are >= 0 else -1)
        if k >= 0:
            after = sentence[k:]
            m = _SENT_END.search(after)
            ans = _strip_markup(after[:m.start()] if m else after)
    return (_final_value(ans) or None), method


_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:[.,]\d+)*")
_MATHY = re.compile(r"[\w\\{}()\[\].,+\-*/^=<>|!%$€£°']+")
_MATH_WORDS = {"sqrt", "pi", "sin", "cos", "tan", "log", "ln", "exp", "frac", "dfrac", "tfrac", "cdot", "times",
               "infty", "left", "right", "pm", "circ", "in", "cup", "cap", "le", "ge", "leq", "geq", "neq", "mod", "or"}
_CUE_WORDS = {"answer", "answer:", "is", "are", "=", "equals", "so", "get", "gives", "obtain", "obtained",
              "got", "yields", "find", "be", "total", "therefore", "thus", "hence", "makes", "result", "then",
              "have", "has", "left", "is:", "are:", ":", "to", "now"}
_EQUALITY = {"=", "equals", "is", "are", "answer", "answer:", "is:", "are:"}  # enough without work shown
_WORK = re.compile(r"\d\s*(?:[-+*/×=]|\\times|\\cdot)\s*[\d(]")


def _mathy(tok: str) -> bool:
    if not _MATHY.fullmatch(tok):
        return False
    return all(len(w) < 2 or w.lower() in _MATH_WORDS for w in re.findall(r"[A-Za-z]+", tok))


def _shows_work(text: str, cue: bool) -> bool:
    """A stated-answer cue, two numbers or a computation near the end: a solution, not salad."""
    end = text[-4 * _TAIL:]
    return cue or len(_NUMBER.findall(end)) >= 2 or _WORK.search(end) is not None


def _fallback(text: str, cue: bool = False) -> tuple[str | None, str]:
    """No box, no stated answer: the whole text when it is an answer by itself; else the last
    math segment or trailing formula of the final sentence, only when the text looks like a
    solution (work shown, and a cue such as "so" / "=" / "is" right before the formula) —
    word salad that happens to end in the right number is no answer."""
    whole = _strip_markup(text)
    m = _YES_NO_LEAD.match(whole)
    if m and len(whole) <= 200 and "\n" not in whole:  # "No, since 7 is prime."
        return m.group(1).lower(), "yes_no"
    if len(whole) <= _SHORT and _is_empty(whole):  # "There is no solution"
        return whole, "whole"
    if len(whole) <= _SHORT and "\n" not in whole and (as_number(whole) is not None
                                                       or all(_mathy(t) for t in whole.split())):
        return _final_value(whole), "whole"
    tail = text[-_TAIL:].rstrip()
    # the last $…$ / \(…\) / \[…\] segment, when nothing but punctuation or a few words follows it
    for a, b in _DISPLAY:
        j = tail.rfind(b)
        i = tail.rfind(a, 0, j) if j >= 0 else -1
        if i >= 0 and j > i + len(a):
            after = tail[j + len(b):]
            if len(after) <= 40 and not re.search(r"\d", after):
                seg = _final_value(_strip_markup(tail[i + len(a):j]))
                k2 = tail.rfind(b, 0, i) if a != b else tail.rfind(a, 0, i - 1)
                i2 = tail.rfind(a, 0, k2) if k2 > 0 else -1
                if i2 >= 0 and re.fullmatch(r"\s*(?:or|and|\\text\{\s*or\s*\})\s*", tail[k2 + len(b):i]):
                    # "$x=2$ or $x=3$": both roots, not the last one
                    seg = _strip_markup(tail[i2 + len(a):k2]) + " or " + _strip_markup(tail[i + len(a):j])
                    i = i2
                words = tail[:i].split()
                before = words[-1].lower() if words else ""
                cued = before in _CUE_WORDS or before.endswith((",", ":"))
                # a lone number needs a cue right before it and work shown (salad ends in numbers);
                # a formula, or a text that is nothing but the segment, is an answer by itself
                if seg and (len(text) - len(tail) + i < 3 or number_key(seg) is None
                            or (cued and (before in _EQUALITY or _shows_work(text, cue)))):
                    return seg, "last_math"
            break
    line = next((ln for ln in reversed(tail.splitlines()) if re.search(r"\d", ln)), "")
    toks = line.rstrip(" .!").split()
    while toks and not _mathy(toks[-1]) and len(toks) > 1 and len(line) - len(" ".join(toks)) < 30:
        toks.pop()  # trailing unit words: "42 apples", "15 square units"
    k = len(toks)
    while k and _mathy(toks[k - 1]):
        k -= 1
    formula = " ".join(toks[k:]).strip(",")
    if not formula or not re.search(r"\d", formula):
        return None, "none"
    before = toks[k - 1].lower() if k else ""
    if (before in _CUE_WORDS or before.endswith((",", ":"))) \
            and ("=" in formula or before in _EQUALITY or _shows_work(text, cue)):
        return _final_value(formula), "last_number"
    return None, "none"


# Characters models write for what the rules (and math-verify) read in LaTeX / ASCII: the
# Unicode minus and dashes used as one, ∞, ≤, ≥, ∅, π, vulgar fractions ("3½" is 3 1/2),
# and the spaces used as thousands separators. One `str.translate`: linear.
_UNICODE = str.maketrans({
    "\u2212": "-", "\u2012": "-", "\ufe63": "-", "\uff0d": "-", "\u2010": "-", "\u2011": "-",
    "\u221e": "\\infty ", "\u2264": "\\le ", "\u2266": "\\le ", "\u2a7d": "\\le ", "\u2265": "\\ge ",
    "\u2267": "\\ge ", "\u2a7e": "\\ge ", "\u2260": "\\neq ", "\u2205": "\\emptyset ", "\u03c0": "\\pi ",
    "\u222a": "\\cup ", "\u2229": "\\cap ", "\u2208": "\\in ", "\u00b7": "\\cdot ", "\u2044": "/",
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2007": " ",
    "\u00bd": " 1/2", "\u2153": " 1/3", "\u2154": " 2/3", "\u00bc": " 1/4", "\u00be": " 3/4", "\u2155": " 1/5",
    "\u2156": " 2/5", "\u2157": " 3/5", "\u2158": " 4/5", "\u2159": " 1/6", "\u215a": " 5/6", "\u215b": " 1/8",
    "\u215c": " 3/8", "\u215d": " 5/8", "\u215e": " 7/8",
})


def normalize(text: str) -> str:
    """Unicode forms as the ASCII / LaTeX the rules read (`−7` → `-7`, `∞` → `\\infty`)."""
    return text.translate(_UNICODE)


def extract_answer(text: str | None) -> tuple[str | None, str]:
    """(answer, method): `\\boxed{}` first, then the last stated answer ("The answer is …",
    "####", "actually it is …"), then a plausible final formula or number."""
    if not text or not text.strip():
        return None, "empty"
    text = normalize(text)
    boxed = _last_boxed(text)
    if boxed:
        return _final_value(boxed), "boxed"
    ans, method = _stated(text)
    if ans:
        return ans, method
    tail = len(text) - 2 * _TAIL
    whole = _fallback(text, cue=method == "cue")
    check = _CHECK.search(text, max(0, tail))
    if check and check.start() > 0:  # "So the total is $164$. To verify: 164 - 68 = 96. Good."
        ans, how = _fallback(text[:check.start()], cue=method == "cue")
        # the answer before the check, when the check restates it (a check reuses its answer;
        # a text that goes on to a new result after "checking" keeps its last result)
        if ans and ans != whole[0] and (whole[0] is None or re.search(
                rf"(?<![\d.]){re.escape(ans)}(?![\d.])", text[check.end():check.end() + _TAIL])):
            return ans, how
    return whole


# ---- numeric equality ---------------------------------------------------------------
_PLAIN = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:/[-+]?\d+(?:\.\d+)?)?")
_SPACED_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?: \d{3})+(?:\.\d+)?")
_SCI = re.compile(r"([-+]?\d+(?:\.\d+)?)\s*(?:\\times|\\cdot|×|\*|x)\s*10\s*(?:\^|\*\*)\s*\{?\s*([-+]?\d{1,4})\s*\}?"
                  r"|([-+]?\d+(?:\.\d+)?)[eE]\+?(-?\d{1,4})")
_LONG = re.compile(r"[-+]?\d+(?:\.\d+)?")
_PERCENT_WORDS = re.compile(r"\s*(?:%|percent(?:age)?|per cent|pct)\s*$", re.I)
_DECIMAL_COMMA = re.compile(r"([-+]?\d+),(\d+)")
_FRACTION_DIGITS = 4000  # int() refuses longer digit strings; longer plain decimals compare as text
_DEGREES = re.compile(r"(?:\{\})?\^\s*\{?\s*\\circ\s*\}?|°|\\degree(?![A-Za-z])")
_TEXT_UNIT = re.compile(r"\\(?:text|mathrm|textbf|textrm|mbox|textnormal|operatorname)\{([^{}]*)\}"
                        r"(?:\s*\^\s*\{?\s*[23]\s*\}?|[²³])?")
_UNIT_TOKEN = re.compile(r"[A-Za-z]+\.?|(?:m|cm|mm|km|dm|ft|in|yd|mi|units?|meters?|metres?|feet|inch(?:es)?)"
                         r"(?:\^\{?[23]\}?|[²³])|[A-Za-z]{1,6}/[A-Za-z]{1,6}(?:\^\{?2\}?|²)?")
_NOT_UNITS = set("abcdeijknpqrtuvwxyz")  # "2 x" is 2x, "3 i" is 3i, "2 \\mathrm{e}" is 2e: variables, not units
_FRACTION_WORDS = {"half", "halves", "third", "thirds", "quarter", "quarters", "fourth", "fourths", "fifth", "fifths",
                   "sixth", "sixths", "eighth", "eighths", "tenth", "tenths", "hundredth", "hundredths",
                   "thousandth", "thousandths", "millionth", "millionths"}
_SCALE_WORDS = {"hundred": 100, "hundreds": 100, "thousand": 10 ** 3, "thousands": 10 ** 3, "million": 10 ** 6,
                "millions": 10 ** 6, "billion": 10 ** 9, "billions": 10 ** 9, "trillion": 10 ** 12, "dozen": 12}
_MIXED = re.compile(r"([-+]?)(\d+) +(\d+)/(\d+)")
_REPEATING_BAR = re.compile(r"\s*([-+]?)\s*(\d*)\.(\d*)\s*\\(?:overline|bar|dot)\s*\{?\s*(\d+)\s*\}?\s*")
_REPEATING_DOTS = re.compile(r"\s*([-+]?)\s*(\d*)\.(\d+)\s*(?:\.\.\.|\\[lc]?dots|…)\s*\.?\s*")


def _repeating(s: str) -> Fraction | None:
    """`0.\\overline{3}`, `0.1\\overline{6}`, `0.333...`, `0.1666...` as exact fractions (a
    "..." with no repeating block, `3.14159...`, is no exact number: None)."""
    m = _REPEATING_BAR.fullmatch(s)
    if m:
        sign, whole, nonrep, block = m.groups()
    else:
        m = _REPEATING_DOTS.fullmatch(s)
        if not m or len(m.group(3)) > 40:
            return None
        sign, whole, digits = m.groups()
        found = None
        for i in range(len(digits)):   # the earliest start, then the shortest block, that repeats to the end
            tail = digits[i:]
            for size in range(1, len(tail) // 2 + 1):
                if (tail[:size] * (len(tail) // size + 1))[:len(tail)] == tail and len(tail) >= max(3, 2 * size):
                    found = (digits[:i], tail[:size])
                    break
            if found:
                break
        if not found:
            return None
        nonrep, block = found
    k, r = len(nonrep), len(block)
    value = Fraction(int(whole or 0)) + Fraction(int(nonrep or 0), 10 ** k) \
        + Fraction(int(block), 10 ** k * (10 ** r - 1))
    return -value if sign == "-" else value


def _canonical_decimal(s: str) -> tuple[str, str, str]:
    sign = "-" if s.startswith("-") else ""
    whole, _, frac = s.lstrip("+-").partition(".")
    whole, frac = whole.lstrip("0"), frac.rstrip("0")
    return ("" if not (whole or frac) else sign), whole, frac


def number_key(text: str | None) -> Fraction | tuple | None:
    """An exact, comparable value of a plainly written number (a `Fraction`, or for numbers too
    long for one the canonical decimal digits), or None when the text is not a single number."""
    if text is None:
        return None
    s = text.strip()
    if len(s) > _SHORT:  # only a long plain number is a number here
        s = s.strip("$ ").rstrip(".").replace(",", "")
        if len(s) > 2_000_000 or not _LONG.fullmatch(s):
            return None
        if len(s) <= _FRACTION_DIGITS:
            return Fraction(s)
        return _canonical_decimal(s)
    return as_number(text)


def as_number(text: str | None) -> Fraction | None:  # noqa: C901  (a branch per written form)
    """The exact value of a plainly written number, or None when it is not one.

    Accepts `1,234`, `-3.50`, `- 5`, `3/4`, `$12`, `40%` (as 0.4), `28 percent`, `12 apples`,
    `\\frac{3}{4}`, `x = 5`, `3.2 \\times 10^{5}`, `3.2e5`, `twelve`, `three quarters`; rejects
    anything with a second number or an operator (left to math-verify)."""
    if text is None:
        return None
    s = text.strip()
    if len(s) > _SHORT:
        key = number_key(s)
        return key if isinstance(key, Fraction) else None
    s = normalize(s).replace("\\!", "").replace("\\,", "").replace("{,}", ",")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("\\ ", " ").replace("~", " ").replace("\\;", " ").replace("\\quad", " ")
    s = _DEGREES.sub(" ", s)                                  # 30^\circ, 30°: the number of degrees
    s = _TEXT_UNIT.sub(r" \1 ", s)                             # "12 \text{ m}^2": the power goes with the unit
    s = re.sub(r"\\[dtc]?frac\{([^{}]+)\}\{([^{}]+)\}", r" \1/\2", s)  # "3\frac{1}{2}" is 3 1/2, not 31/2
    s = re.sub(r"\\[dtc]?frac(\d)(\d)", r" \1/\2", s)
    s = re.sub(r"^\s*[a-zA-Z]\s*=\s*", "", s)          # "x = 5"
    s = s.replace("\\$", "").replace("$", "").replace("€", "").replace("£", "").replace("\\%", "%")
    repeating = _repeating(s)
    if repeating is not None:
        return repeating
    s = s.strip().rstrip(".").strip()
    m = _PERCENT_WORDS.search(s)
    percent = m is not None
    if m:
        s = s[:m.start()]
    if not re.search(r"\d", s):
        value = words_to_number(s)
        toks = s.split()
        for cut in (1, 2):  # "twelve apples"
            if value is None and len(toks) > cut:
                value = words_to_number(" ".join(toks[:-cut]))
        return None if value is None else (value / 100 if percent else value)
    toks = s.split()
    scale = 1
    while len(toks) > 1 and (_UNIT_TOKEN.fullmatch(toks[-1]) or toks[-1].replace(".", "").isalpha()) \
            and toks[-1] not in _NOT_UNITS:  # units: "12 apples", "15 cm", "3 km/h", "5 cm^2"
        word = toks.pop().lower().rstrip(".")
        if word in _FRACTION_WORDS:  # "5 hundredths", "3 quarters" (of a dollar, or 3/4?): no plain number
            return None
        scale *= _SCALE_WORDS.get(word, 1)  # "12 thousand" is 12000, not 12
    s = " ".join(toks).strip()
    s = re.sub(r"^([-+])\s+", r"\1", s)
    m = _MIXED.fullmatch(s)
    if m:  # a mixed number: "3 1/2" (and "3\frac{1}{2}") is 3 + 1/2; "-2 1/3" is -(2 + 1/3)
        whole, num, den = int(m.group(2)), int(m.group(3)), int(m.group(4))
        if not 0 < num < den:  # "2 3/2" is no mixed number: a product? Not decidable here
            return None
        value = (whole + Fraction(num, den)) * (-1 if m.group(1) == "-" else 1) * scale
        return value / 100 if percent else value
    if scale != 1:
        value = as_number(s)
        return None if value is None else value * scale / (100 if percent else 1)
    m = _SCI.fullmatch(s)
    if m:
        mant, exp = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        value = Fraction(mant) * Fraction(10) ** int(exp)
        return value / 100 if percent else value
    s = re.sub(r"^([-+])\s+", r"\1", s)
    s = re.sub(r"\s*/\s*", "/", s)
    m = _DECIMAL_COMMA.fullmatch(s)  # "1,22", "0,111", "1000,99": a decimal comma, not thousands
    if m and (len(m.group(2)) != 3 or m.group(1).lstrip("+-") == "0" or len(m.group(1).lstrip("+-")) > 3):
        s = f"{m.group(1)}.{m.group(2)}"
    if _SPACED_THOUSANDS.fullmatch(s):
        s = s.replace(" ", "")
    if not s or " " in s or not _PLAIN.fullmatch(s) or not re.search(r"\d", s):
        return None
    try:
        if "/" in s:
            top, bottom = s.split("/")
            value = Fraction(top.replace(",", "")) / Fraction(bottom)
        else:
            value = Fraction(s.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None
    return value / 100 if percent else value


# ---- math-verify under a hard time limit --------------------------------------------
def _child_loop() -> None:  # pragma: no cover - runs in the child process
    """`python -m synth.verify`: JSON lines [gold, pred] in, true/false/null out."""
    import json
    import logging
    import sys

    from math_verify import parse, verify
    logging.disable(logging.WARNING)  # "timeout is disabled" on every call: the parent enforces it
    print('"ready"', flush=True)
    for line in sys.stdin:
        gold, pred = json.loads(line)
        try:
            g = parse(_as_latex(gold), parsing_timeout=None)
            p = parse(_as_latex(pred), parsing_timeout=None)
            parsed = all(any(not isinstance(x, str) for x in side) for side in (g, p))  # not just the raw text
            out = bool(verify(g, p, timeout_seconds=None)) if parsed else None
        except Exception:  # noqa: BLE001 - anything math-verify cannot handle is "cannot decide"
            out = None
        print(json.dumps(out), flush=True)


_PY_NAMES = {"sqrt", "exp", "log", "ln", "sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan", "sinh",
             "cosh", "tanh", "factorial", "binomial", "Abs", "Min", "Max", "floor", "ceiling", "pi", "oo", "E", "I",
             "Rational", "theta", "alpha", "beta", "gamma", "lambda_", "mu", "sigma", "phi", "omega"}
_PY_EXPR = re.compile(r"[A-Za-z0-9_\s+\-*/^(),.]{1,400}")
_PY_CALL = re.compile(r"[A-Za-z]{2,}\(|\*\*")


def _python_syntax_latex(s: str) -> str | None:
    """A sympy/Python-syntax answer (`log(x)/log(2)`, `binomial(n, k)`, `2*x**2`, DeepMind's
    form) as LaTeX, which math-verify reads (as LaTeX, `log(x)` is l·o·g·x). Only for text made
    of known names, single letters and numbers: `parse_expr` evaluates, so nothing else reaches it."""
    if "\\" in s or "$" in s or "__" in s or not _PY_EXPR.fullmatch(s) or not _PY_CALL.search(s):
        return None
    if re.search(r"\.(?!\d)|(?<!\d)\.", s):  # a dot outside a decimal number (attribute access)
        return None
    if any(len(w) > 1 and w not in _PY_NAMES for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", s)):
        return None
    import sympy
    from sympy.parsing.sympy_parser import parse_expr
    try:
        return sympy.latex(parse_expr(s.replace("^", "**"), evaluate=False))
    except Exception:  # noqa: BLE001 - not valid Python syntax after all: the plain route
        return None


def _as_latex(s: str) -> str:
    tex = _python_syntax_latex(s)
    if tex is not None:
        return f"${tex}$"
    s = s.replace("**", "^")  # Python-style powers (DeepMind's answers): LaTeX reads `**` as noise
    return s if "$" in s else f"${s}$"


_FUNCS = {"binomial", "factorial", "binom", "min", "max", "abs", "floor", "ceiling", "sec", "csc", "cot",
          "asin", "acos", "atan", "sinh", "cosh", "tanh", "arcsin", "arccos", "arctan", "pmatrix", "bmatrix",
          "vmatrix", "matrix", "array", "sqrt", "sin", "cos", "tan", "log", "ln", "exp", "pi", "frac", "dfrac",
          "tfrac", "infty", "cdot", "times", "left", "right", "text", "mathrm", "boxed", "le", "ge", "leq",
          "geq", "pm", "circ"}
_WORD = re.compile(r"(?<![\\a-zA-Z])([a-zA-Z]{3,})")
_OR = re.compile(r"(?<![\\a-zA-Z])or(?![a-zA-Z])")  # "5 or 6": a hedge, not an answer


def has_words(s: str) -> bool:
    """Prose in an answer ("banana", "no solution"): math-verify would read it as a product
    of single-letter symbols, so such answers are left to exact match or the judge."""
    s = re.sub(r"\\(?:text|mathrm|textbf)\{[^{}]*\}", "", s)
    return any(w.lower() not in _FUNCS for w in _WORD.findall(s)) or _OR.search(s) is not None


class MathVerify:
    """math-verify in a child process (a plain subprocess: no fork of a threaded parent, no
    re-import of the caller's `__main__`); a call that overruns `timeout_s` kills it, and the
    next call starts a fresh one."""

    def __init__(self, timeout_s: float = 5.0):
        self.timeout_s = timeout_s
        self._proc: subprocess.Popen[str] | None = None
        self.timeouts = 0

    def _start(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
        self._proc = subprocess.Popen([sys.executable, "-m", "synth.verify"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, bufsize=1, env=env, cwd=root)
        if self._readline(120) != '"ready"':  # importing sympy takes seconds on a busy machine
            self.close()
            raise RuntimeError("math-verify child process did not start")

    def _readline(self, timeout: float) -> str | None:
        assert self._proc is not None and self._proc.stdout is not None  # started with stdout=PIPE
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        return self._proc.stdout.readline().strip() if ready else None

    def __call__(self, gold: str, pred: str) -> bool | None:
        """True / False, or None when math-verify cannot parse a side or runs out of time."""
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        assert self._proc is not None and self._proc.stdin is not None  # _start set it, stdin=PIPE
        try:
            self._proc.stdin.write(json.dumps([gold, pred]) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.close()
            return None
        line = self._readline(self.timeout_s)
        if not line:  # timed out (or the child died): kill it; the next call restarts it
            self.timeouts += line is None
            self.close()
            return None
        return json.loads(line)

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._proc = None

    def __del__(self):  # pragma: no cover
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


_NUMBER_WORD = re.compile(r"\b(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen"
                          r"|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty"
                          r"|seventy|eighty|ninety|hundred|thousand|million|billion|trillion|dozen|half|halves|third"
                          r"|quarter|fourth|fifth|sixth|seventh|eighth|ninth|tenth|none|nothing|nil|nought|naught"
                          r"|once|twice|thrice|double|triple|single|pair|couple|score|gross|infinit[ey]|pi)s?\b", re.I)
_ROMAN = re.compile(r"\b[IVXLCDM]+\b")


def _roman(s: str) -> int | None:
    vals = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    for i, c in enumerate(s):
        v = vals[c]
        total += -v if i + 1 < len(s) and vals[s[i + 1]] > v else v
    return total


def _cannot_state(completion: str, reference: str) -> bool:
    """True when nothing in the completion could write a numeric reference's value: no digit,
    no number word, no maths markup, no Roman numeral of that value ("I have no idea."). Such a
    text is wrong whatever a judge reads into it; anything else without an answer is undecided."""
    ref = number_key(_strip_markup(normalize(reference)))
    if ref is None or len(completion) > 100_000:
        return False
    if any(c.isnumeric() for c in completion) or re.search(r"[\\$^=π√∞]", completion) \
            or _NUMBER_WORD.search(completion):
        return False
    return not any(_roman(r) == ref for r in _ROMAN.findall(completion)[:1000])


def _norm_text(s: str) -> str:
    s = re.sub(r"\\(?:text|mathrm)\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"(?<=\d)\s+(?=\d)", "|", s)  # "3 1/2" is not "31/2", "1 2" not "12"
    return re.sub(r"[\s$.]+", "", s).lower()


_EXPLICIT = ("boxed", "answer_is", "hashes")


def _comparable(key):
    """An integer `Fraction` as canonical digits, when the other side is a long decimal."""
    if isinstance(key, Fraction) and key.denominator == 1:
        return _canonical_decimal(str(key.numerator))
    return key


def _is_collection(s: str) -> bool:
    return s[:1] in "([{" or s.startswith("\\{")


def _top_level_split(s: str, sep: str = ",", keep_empty: bool = False) -> list[str] | None:
    """`a, b, c` → [a, b, c] when the separators are outside brackets (else None)."""
    depth = 0
    parts: list[str] = []
    cur: list[str] = []
    for c in s:
        depth += (c in "([{") - (c in ")]}")
        if c == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur).strip())
    return parts if len(parts) > 1 and (keep_empty or all(parts)) else None


def _compare_lists(pred: str, reference: str) -> str | None:
    """Bare comma lists of numbers: the same numbers in the same order are correct, other
    numbers incorrect; the same numbers in another order is undecided (a sorted sequence and a
    set of roots read the same without the question). None when these are not number lists."""
    if len(pred) > 4 * _SPAN or len(reference) > 4 * _SPAN or _is_collection(reference):
        return None
    as_set = pred.startswith("\\{") and pred.endswith("\\}")
    p = _top_level_split(pred[2:-2] if as_set else pred)
    r = _top_level_split(reference)
    if p is None or r is None:
        return None
    pv, rv = [number_key(x) for x in p], [number_key(x) for x in r]
    if any(v is None or isinstance(v, tuple) for v in pv + rv):
        return None
    if pv == rv:
        return CORRECT
    if sorted(pv) == sorted(rv):  # type: ignore[type-var]  # Fractions only (checked above); as a set: no order
        return CORRECT if as_set else UNDECIDED
    return INCORRECT


# ---- answers that are not one number: choices, yes/no, no solution, infinity, intervals, roots
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|textrm|mbox|textnormal|mathbf)\{([^{}]*)\}")
_CHOICE = re.compile(r"(?:option|choice)?\s*(?:\(([A-E])\)|([A-E])(?:\)|[.:](?=\s|$)|(?=\s|$)))\s*(.*)", re.I | re.S)
_YES_NO = re.compile(r"(yes|no|true|false)(?:\s*[,.;:!]\s*(.*))?", re.I | re.S)
_EMPTY = re.compile(r"\\(?:emptyset|varnothing)|\\\{\s*\\\}|\{\s*\}|(?:the\s+)?empty\s+set"
                    r"|(?:there\s+(?:is|are)\s+)?no\s+(?:real\s+)?(?:solutions?|roots?|real\s+numbers?)", re.I)
_INFINITY = re.compile(r"([-+]?)\s*(?:\\infty|oo|inf|infinity|positive\s+infinity|(negative\s+infinity))", re.I)
_INEQ_OPS = {"<": ("<", False), ">": (">", False), "\\lt": ("<", False), "\\gt": (">", False),
             "\\le": ("<", True), "\\leq": ("<", True), "\\leqslant": ("<", True), "<=": ("<", True),
             "\\ge": (">", True), "\\geq": (">", True), "\\geqslant": (">", True), ">=": (">", True)}
_INEQ_OP = re.compile(r"<=|>=|<|>|\\(?:leqslant|geqslant|leq|geq|le|ge|lt|gt)(?![A-Za-z])")
_INTERVAL = re.compile(r"\s*([(\[])\s*([^,()\[\]]{1,40}),\s*([^,()\[\]]{1,40})([)\]])\s*")
_UNION = re.compile(r"\\cup(?![A-Za-z])|(?<![A-Za-z])U(?![A-Za-z])|(?<![A-Za-z\\])or(?![A-Za-z])|\\text\{\s*or\s*\}")
_VAR = re.compile(r"\\?[A-Za-z]{1,6}(?:_\{?\w{1,4}\}?)?")


def _plain(s: str) -> str:
    """The answer without text wrappers, bold and math delimiters, for the word-level forms."""
    s = _TEXT_WRAP.sub(r"\1", _TEXT_WRAP.sub(r"\1", normalize(s)))
    return s.replace("$", "").replace("**", "").strip().rstrip(".").strip()


def _choice(s: str) -> tuple[str, str] | None:
    """A multiple-choice answer: `(B)`, `B`, `(B) 12`, `B) 12`, `B. 12`, `\\text{(B)} 12` → (letter, value)."""
    m = _CHOICE.fullmatch(_plain(s))
    if not m:
        return None
    letter = (m.group(1) or m.group(2)).upper()
    if m.group(2) and not (m.group(2).isupper()):  # "b" alone is a variable, not a choice
        return None
    value = m.group(3).strip()
    if re.search(r"\([A-Ea-e]\)|(?<![A-Za-z])[A-E]\)|(?<![A-Za-z\\])or(?![A-Za-z])", value):
        return letter, "?"  # "(A) or (B)", "A) 5 B) 6": a hedge, never its first letter
    return letter, value


def _yes_no(s: str) -> str | None:
    m = _YES_NO.fullmatch(_plain(s))
    if not m:
        return None
    word = {"true": "yes", "false": "no"}.get(m.group(1).lower(), m.group(1).lower())
    other = "no" if word == "yes" else "yes"
    if m.group(2) and re.search(rf"\b(?:{other}|not)\b", m.group(2), re.I):  # "yes, or rather no"
        return None
    return word


def _is_empty(s: str) -> bool:
    return _EMPTY.fullmatch(_plain(s).replace("\\left", "").replace("\\right", "")) is not None


def _infinity(s: str) -> int | None:
    m = _INFINITY.fullmatch(_plain(s))
    if not m:
        return None
    return -1 if m.group(1) == "-" or m.group(2) else 1


def _endpoint(s: str) -> Fraction | tuple | None:
    """A finite endpoint (`Fraction`), ("inf", ±1) for ±infinity, or None."""
    inf = _infinity(s)
    if inf is not None:
        return ("inf", inf)
    return as_number(s)


def _intervals(s: str) -> list | None:  # noqa: C901  (interval and inequality notations)
    """Interval notation (`[2, 5)`, `(-\\infty, 1) \\cup (2, \\infty)`) or inequalities in one
    variable (`2 \\le x < 5`, `x > 3`, `x < 1 or x > 2`) as a sorted list of
    (low, low closed, high, high closed), ±infinity as ("inf", ±1); None when it is neither
    or an endpoint is not a plain number."""
    s = _plain(s).replace("\\left", "").replace("\\right", "")
    if len(s) > _SPAN:
        return None
    s = re.sub(r"^\s*\\?[A-Za-z]{1,6}\s*\\in\s*", "", s)
    out, var = [], None
    for part in _UNION.split(s):
        m = _INTERVAL.fullmatch(part)
        if m:
            lo, hi = _endpoint(m.group(2)), _endpoint(m.group(3))
            if lo is None or hi is None:
                return None
            out.append((lo, m.group(1) == "[", hi, m.group(4) == "]"))
            continue
        pieces = _INEQ_OP.split(part)
        ops = [_INEQ_OPS[o] for o in _INEQ_OP.findall(part)]
        if len(ops) not in (1, 2) or len(pieces) != len(ops) + 1:
            return None
        pieces = [x.strip() for x in pieces]
        if len(ops) == 2:
            if ops[0][0] != ops[1][0] or not _VAR.fullmatch(pieces[1]):
                return None
            v = pieces[1]
            a, b = _endpoint(pieces[0]), _endpoint(pieces[2])
            if a is None or b is None:
                return None
            if ops[0][0] == ">":  # 5 > x >= 2
                a, b, ops = b, a, ops[::-1]
            out.append((a, ops[0][1], b, ops[1][1]))
        else:
            (op, closed), = ops
            if _VAR.fullmatch(pieces[0]) and not _VAR.fullmatch(pieces[1]):
                v, bound = pieces[0], _endpoint(pieces[1])
            elif _VAR.fullmatch(pieces[1]) and not _VAR.fullmatch(pieces[0]):
                v, bound, op = pieces[1], _endpoint(pieces[0]), "<" if op == ">" else ">"
            else:
                return None
            if bound is None or isinstance(bound, tuple):
                return None
            out.append((bound, closed, ("inf", 1), False) if op == ">" else (("inf", -1), False, bound, closed))
        if var is not None and v != var:
            return None
        var = v
    if any(_order(x) > _order(y) for x, _, y, _ in out):
        return None
    merged: list[tuple[object, bool, object, bool]] = []  # a union as its canonical parts: (1, 2] ∪ (2, 3) is (1, 3)
    for lo, lc, hi, hc in sorted(out, key=lambda t: (_order(t[0]), not t[1])):
        if merged:
            plo, plc, phi, phc = merged[-1]
            if _order(lo) < _order(phi) or (lo == phi and (lc or phc)):
                if _order(hi) > _order(phi) or (hi == phi and hc):
                    merged[-1] = (plo, plc, hi, hc if hi != phi else hc or phc)
                continue
        merged.append((lo, lc, hi, hc))
    return merged


def _order(e) -> tuple:
    """An interval endpoint as a sortable key: -infinity < every number < +infinity."""
    return (e[1], 0) if isinstance(e, tuple) else (0, e)


def _roots(s: str) -> list | None:
    """A disjunction of values of one variable: `x = 2 or x = 3`, `x = 2, x = 3`, `2 or 3`,
    `x=2 \\text{ or } x=3`, `x = 2 and x = 3` → the value strings; None otherwise."""
    s = _plain(s) if "\\text" in s or "$" in s else s
    if len(s) > _SPAN:
        return None
    disj = _DISJUNCTION.search(s) is not None
    items = re.split(r"(?<![A-Za-z\\])(?:or|and)(?![A-Za-z])|\\text\{\s*(?:or|and)\s*\}"
                     r"|\\(?:vee|lor|quad|qquad)(?![A-Za-z])|;", s)
    out, var, assigned = [], None, 0
    for item in items:
        for x in (_top_level_split(item) or [item]):
            x = x.strip().strip(",").strip()
            if not x:
                continue
            if "=" in x:
                lhs, _, rhs = x.partition("=")
                if not _VAR.fullmatch(lhs.strip()) or (var is not None and lhs.strip() != var) or "=" in rhs:
                    return None
                var, x = lhs.strip(), rhs.strip()
                assigned += 1
            out.append(x)
    if len(out) < 2 or not (disj or assigned == len(out)):
        return None
    return out


def _set_values(s: str) -> list | None:
    """A reference set or list: `\\{2, 3\\}`, `{2,3}`, `2, 3`, or roots as above."""
    t = _plain(s) if "\\text" in s or "$" in s else s.strip()
    for a, b in (("\\{", "\\}"), ("\\left\\{", "\\right\\}"), ("{", "}")):
        if t.startswith(a) and t.endswith(b):
            return _top_level_split(t[len(a):-len(b)]) or [t[len(a):-len(b)].strip()]
    if not _is_collection(t):
        items = _top_level_split(t)
        if items:
            return items
    return _roots(s)


def _compare_kinds(pred: str, reference: str) -> str | None:  # noqa: C901  (a branch per answer kind)
    """Choices, yes/no, no solution, infinity, intervals and inequalities, roots joined by
    "or": a verdict, or None when neither side is such an answer."""
    pc, rc = _choice(pred), _choice(reference)
    if rc is not None and (pc is not None or not rc[1]):
        if pc is None:
            return UNDECIDED  # "12" for "(B)": the options are not known here
        if "?" in (pc[1], rc[1]):
            return UNDECIDED
        same_value = bool(pc[1] and rc[1]) and _values_equal(pc[1], rc[1])
        if pc[0] == rc[0]:  # the same letter: correct unless both give values that differ (then the values decide)
            return CORRECT if not (pc[1] and rc[1]) or same_value is True else None
        return UNDECIDED if same_value else INCORRECT  # "(C) 12" for "(B) 12": which one is mislabelled?
    if pc is not None and not pc[1] and number_key(reference) is not None:
        return UNDECIDED  # "(B)" for "12": the options are not known here
    if pc is not None and pc[1] and (rc is not None or number_key(reference) is not None):
        v = _values_equal(pc[1], rc[1] if rc else reference)  # "(B) 12" for "12"
        return None if v is None else (CORRECT if v else INCORRECT)
    if rc is not None and rc[1]:
        v = _values_equal(pred, rc[1])  # "12" for "(B) 12"
        if v is not None:
            return CORRECT if v else INCORRECT
    py, ry = _yes_no(pred), _yes_no(reference)
    if py is not None and ry is not None:
        return CORRECT if py == ry else INCORRECT
    pe, re_ = _is_empty(pred), _is_empty(reference)
    if pe and re_:
        return CORRECT
    if pe or re_:  # "no solution" against a number or a set of numbers, and the reverse
        other = reference if pe else pred
        if number_key(other) is not None or _infinity(other) is not None or _intervals(other) \
                or all(number_key(x) is not None for x in (_set_values(other) or [None])):
            return INCORRECT
        return None
    pi, ri = _infinity(pred), _infinity(reference)
    if pi is not None and ri is not None:
        return CORRECT if pi == ri else INCORRECT
    if (pi is not None and number_key(reference) is not None) or (ri is not None and number_key(pred) is not None):
        return INCORRECT
    piv, riv = _intervals(pred), _intervals(reference)
    if piv is not None and riv is not None and (_INEQ_OP.search(pred) or _INEQ_OP.search(reference)
                                               or "\\cup" in pred + reference):
        return CORRECT if piv == riv else INCORRECT
    roots = _roots(pred)
    if roots is not None:
        ref = _set_values(reference)
        pv = [number_key(x) for x in roots]
        rv = [number_key(x) for x in ref] if ref else [number_key(reference)]
        if any(v is None or isinstance(v, tuple) for v in pv + rv):
            return None
        if len(rv) == 1 and len(set(pv)) > 1:
            return UNDECIDED  # "5 or 6" for "5": a hedge
        return CORRECT if set(pv) == set(rv) else INCORRECT
    return None


def _values_equal(a: str, b: str) -> bool | None:
    x, y = number_key(a), number_key(b)
    if x is not None and y is not None and isinstance(x, Fraction) and isinstance(y, Fraction):
        return x == y
    if _norm_text(a) == _norm_text(b):
        return True
    return None


_MATHRM_CONST = re.compile(r"\\(?:mathrm|text|operatorname)\{\s*([ei])\s*\}")
_MIXED_TEX = re.compile(r"(?<![\w.^_}])(\d+)\s*\\[dtc]?frac\s*(?:\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}|(\d)(\d))"
                        r"|(?<![\w.^_}/])(\d+) +(\d+)\s*/\s*(\d+)(?![\d.])")


def _mixed_for_math_verify(s: str) -> str | None:
    """`3\\frac{1}{2}` → `(3+\\frac{1}{2})` inside a larger formula (so `-2\\frac13` is -(2+1/3));
    None when a digit is followed by an improper fraction (`2\\frac{3}{2}`: mixed or product?)."""
    bad = False

    def sub(m):
        nonlocal bad
        whole = m.group(1) or m.group(6)
        num, den = (m.group(2), m.group(3)) if m.group(2) else (m.group(4), m.group(5)) if m.group(4) \
            else (m.group(7), m.group(8))
        if not 0 < int(num) < int(den):
            bad = True
        return f"({whole}+\\frac{{{num}}}{{{den}}})"
    out = _MIXED_TEX.sub(sub, s) if "/" in s or "frac" in s else s
    return None if bad else out


class RuleVerifier:
    """Exact / numeric equality first, then math-verify under a time limit."""

    def __init__(self, timeout_s: float = 5.0, use_math_verify: bool = True):
        self.math_verify = MathVerify(timeout_s) if use_math_verify else None

    def __call__(self, completion: str | None, reference: str, truncated: bool = False) -> Verdict:
        """`truncated`: the generator hit its token limit; then only an explicit final answer
        counts (the last number of a cut-off solution is an intermediate result, not an answer)."""
        pred, method = extract_answer(completion)
        if pred is None:
            if truncated:  # cut off before any answer: the generator ran out of tokens
                return Verdict(INCORRECT, "rule:truncated", None)
            if method == "empty" or _cannot_state(completion or "", reference):
                return Verdict(INCORRECT, f"rule:no_answer:{method}", None)
            return Verdict(UNDECIDED, f"rule:no_answer:{method}", None)  # for the judge
        if truncated and method not in _EXPLICIT:
            return Verdict(INCORRECT, "rule:truncated", pred)
        return self.compare(pred, reference)

    def compare(self, pred: str, reference: str) -> Verdict:
        pred, reference = normalize(pred), _strip_markup(normalize(reference))
        kind = _compare_kinds(pred, reference) if len(pred) <= _SPAN and len(reference) <= _SPAN else None
        if kind is not None:
            return Verdict(kind, "rule:form", pred)
        a, b = number_key(pred), number_key(reference)
        if a is not None and b is not None:
            if isinstance(a, tuple) or isinstance(b, tuple):
                a, b = _comparable(a), _comparable(b)
            if isinstance(a, tuple) != isinstance(b, tuple):  # a long decimal against a short fraction
                return Verdict(UNDECIDED, "rule:numeric_long", pred)
            if a != b and _PERCENT_WORDS.search(reference) and not _PERCENT_WORDS.search(pred) \
                    and isinstance(a, Fraction) and a == b * 100:  # "28" for a reference of "28%"
                a = b
            return Verdict(CORRECT if a == b else INCORRECT, "rule:numeric", pred)
        if _norm_text(pred) == _norm_text(reference):
            return Verdict(CORRECT, "rule:exact", pred)
        listed = _compare_lists(pred, reference)
        if listed is not None:
            return Verdict(listed, "rule:list", pred)
        if has_words(pred) or has_words(reference):
            return Verdict(UNDECIDED, "rule:words", pred)
        if len(pred) > 4 * _SPAN or len(reference) > 4 * _SPAN:
            return Verdict(UNDECIDED, "rule:too_long", pred)
        if self.math_verify is not None:
            # math-verify drops `\\mathrm{…}^2` as a unit, even `\\mathrm{e}^2` (2e² read as 2):
            # the constant goes as itself
            mp, mr = (_mixed_for_math_verify(_MATHRM_CONST.sub(r"\1", x)) for x in (pred, reference))
            if mp is None or mr is None:
                return Verdict(UNDECIDED, "rule:mixed_or_product", pred)
            ok = self.math_verify(mr, mp)
            if ok is not None:
                return Verdict(CORRECT if ok else INCORRECT, "rule:math_verify", pred)
            return Verdict(UNDECIDED, "rule:math_verify_failed", pred)
        return Verdict(UNDECIDED, "rule:no_rule", pred)

    def close(self) -> None:
        if self.math_verify is not None:
            self.math_verify.close()


if __name__ == "__main__":
    _child_loop()
