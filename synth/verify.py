"""Rule-based answer verification: extract the final answer, then decide equality.

Order matters for speed and safety: plain numbers (integers, decimals, fractions, with
commas, units or a currency sign) are compared exactly with `Fraction` in-process; only
what is left goes to math-verify (LaTeX and symbolic forms), which runs in a child process
under a hard wall-clock limit. math-verify's own timeout uses `signal.alarm` and works only
in a main thread; Ray runs stages in worker threads, and a pathological sympy simplification
can hang for minutes, so the child is killed and restarted instead. What the rules cannot
decide is `undecided` (for the model-based judge), never a guess.

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
    out, pos = [], 0
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
_SENT_END = re.compile(r"\.(?=\s|$)|(?<!\\);\s|\n|,?\s+(?:I hope|which|since|because|so that|but)\b", re.I)
_FULL_STOP = re.compile(r"\.(?=\s|$)|\n")
_LONG_STATED = re.compile(r"[ \t:*$]*([-+]?\d[\d,]*(?:\.\d+)?)(?=[\s.$*]|$)")
_DISPLAY = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))
_SIMPLE_LHS = re.compile(r"\s*\\?[A-Za-z]{1,8}(?:_\{?\w{1,8}\}?)?(?:\([^()=]{0,20}\))?\s*")
_CONNECT = re.compile(r"(?:\\in|\\approx|≈)(?![A-Za-z])")


def _strip_markup(ans: str) -> str:
    ans = ans.strip().strip("\"'*` ").strip()
    if ans.count("$") != 1:
        ans = ans.strip("$").strip()
    for a, b in _DISPLAY[1:3]:
        if ans.startswith(a) and ans.endswith(b):
            ans = ans[len(a):-len(b)].strip()
    return ans.rstrip(".,;:").strip()


def _final_value(ans: str) -> str:
    """`x = 5` → `5`, `a = 1 + 1 = 2` → `2`, `x \\in [0, 1)` → `[0, 1)`, `1/3 \\approx 0.33` → `1/3`;
    an equation (`2x + y = 1`) stays whole for math-verify."""
    m = _CONNECT.search(ans)
    if m and ("approx" in m.group() or "≈" in m.group()) and not _SIMPLE_LHS.fullmatch(ans[:m.start()]):
        ans = ans[:m.start()].strip()  # "1/3 \approx 0.33": the exact form
    elif m:
        ans = ans[m.end():].strip()    # "x \in [0, 1)", "x \approx 11"
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
    cues = list(_CUE.finditer(text))
    for last in reversed(cues[-20:]):
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
    m = _SENT_END.search(rest)
    ans = _strip_markup(rest[:m.start()] if m else rest)
    if has_words(ans):  # "The volume of $ABCD$ is 120", "the number Priya has, which is 18": after the last "is"
        end = _FULL_STOP.search(rest)
        sentence = rest[:end.start()] if end else rest
        i, a = sentence.rfind(" is "), sentence.rfind(" are ")
        k = max(i + 4 if i >= 0 else -1, a + 5 if a >= 0 else -1)
        if k >= 0:
            after = sentence[k:]
            m = _SENT_END.search(after)
            ans = _strip_markup(after[:m.start()] if m else after)
    return (_final_value(ans) or None), method


_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:[.,]\d+)*")
_MATHY = re.compile(r"[\w\\{}()\[\].,+\-*/^=<>|!%$€£°']+")
_MATH_WORDS = {"sqrt", "pi", "sin", "cos", "tan", "log", "ln", "exp", "frac", "dfrac", "tfrac", "cdot", "times",
               "infty", "left", "right", "pm", "circ", "in", "cup", "cap", "le", "ge", "leq", "geq", "neq", "mod"}
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


def extract_answer(text: str | None) -> tuple[str | None, str]:
    """(answer, method): `\\boxed{}` first, then the last stated answer ("The answer is …",
    "####", "actually it is …"), then a plausible final formula or number."""
    if not text or not text.strip():
        return None, "empty"
    boxed = _last_boxed(text)
    if boxed:
        return _final_value(boxed), "boxed"
    ans, method = _stated(text)
    if ans:
        return ans, method
    return _fallback(text, cue=method == "cue")


# ---- numeric equality ---------------------------------------------------------------
_PLAIN = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:/[-+]?\d+(?:\.\d+)?)?")
_SPACED_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?: \d{3})+(?:\.\d+)?")
_SCI = re.compile(r"([-+]?\d+(?:\.\d+)?)\s*(?:\\times|\\cdot|×|\*|x)\s*10\s*(?:\^|\*\*)\s*\{?\s*([-+]?\d{1,4})\s*\}?"
                  r"|([-+]?\d+(?:\.\d+)?)[eE]\+?(-?\d{1,4})")
_LONG = re.compile(r"[-+]?\d+(?:\.\d+)?")
_PERCENT_WORDS = re.compile(r"\s*(?:%|percent(?:age)?|per cent|pct)\s*$", re.I)
_DECIMAL_COMMA = re.compile(r"([-+]?\d+),(\d+)")
_FRACTION_DIGITS = 4000  # int() refuses longer digit strings; longer plain decimals compare as text


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


def as_number(text: str | None) -> Fraction | None:
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
    s = s.replace("\\!", "").replace("\\,", "").replace("{,}", ",").replace("\\left", "").replace("\\right", "")
    s = re.sub(r"\\(?:text|mathrm|textbf|mbox|textnormal)\{([^{}]*)\}", r" \1 ", s)
    s = re.sub(r"\\[dtc]?frac\{([^{}]+)\}\{([^{}]+)\}", r"\1/\2", s)
    s = re.sub(r"\\[dtc]?frac(\d)(\d)", r"\1/\2", s)
    s = re.sub(r"^\s*[a-zA-Z]\s*=\s*", "", s)          # "x = 5"
    s = s.replace("\\$", "").replace("$", "").replace("€", "").replace("£", "").replace("\\%", "%")
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
    while len(toks) > 1 and toks[-1].replace(".", "").isalpha():  # units: "12 apples", "15 cm"
        toks.pop()
    s = " ".join(toks).strip()
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
            num, den = s.split("/")
            value = Fraction(num.replace(",", "")) / Fraction(den)
        else:
            value = Fraction(s.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None
    return value / 100 if percent else value


# ---- math-verify under a hard time limit --------------------------------------------
def _child_loop() -> None:  # pragma: no cover - runs in the child process
    """`python -m synth.verify`: JSON lines [gold, pred] in, true/false/null out."""
    import json
    import sys

    import logging

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
        self._proc: subprocess.Popen | None = None
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
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        return self._proc.stdout.readline().strip() if ready else None

    def __call__(self, gold: str, pred: str) -> bool | None:
        """True / False, or None when math-verify cannot parse a side or runs out of time."""
        if self._proc is None or self._proc.poll() is not None:
            self._start()
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


def _norm_text(s: str) -> str:
    s = re.sub(r"\\(?:text|mathrm)\{([^{}]*)\}", r"\1", s)
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
    depth, parts, cur = 0, [], []
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
    if sorted(pv) == sorted(rv):  # written as a set, it claims no order
        return CORRECT if as_set else UNDECIDED
    return INCORRECT


class RuleVerifier:
    """Exact / numeric equality first, then math-verify under a time limit."""

    def __init__(self, timeout_s: float = 5.0, use_math_verify: bool = True):
        self.math_verify = MathVerify(timeout_s) if use_math_verify else None

    def __call__(self, completion: str | None, reference: str, truncated: bool = False) -> Verdict:
        """`truncated`: the generator hit its token limit; then only an explicit final answer
        counts (the last number of a cut-off solution is an intermediate result, not an answer)."""
        pred, method = extract_answer(completion)
        if pred is None:
            return Verdict(INCORRECT, f"rule:no_answer:{method}", None)
        if truncated and method not in _EXPLICIT:
            return Verdict(INCORRECT, "rule:truncated", pred)
        return self.compare(pred, reference)

    def compare(self, pred: str, reference: str) -> Verdict:
        reference = _strip_markup(reference)
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
            ok = self.math_verify(reference, pred)
            if ok is not None:
                return Verdict(CORRECT if ok else INCORRECT, "rule:math_verify", pred)
            return Verdict(UNDECIDED, "rule:math_verify_failed", pred)
        return Verdict(UNDECIDED, "rule:no_rule", pred)

    def close(self) -> None:
        if self.math_verify is not None:
            self.math_verify.close()


if __name__ == "__main__":
    _child_loop()
