"""Rule-based answer verification: extract the final answer, then decide equality.

Order matters for speed and safety: plain numbers (integers, decimals, fractions, with
commas, units or a currency sign) are compared exactly with `Fraction` in-process; only
what is left goes to math-verify (LaTeX and symbolic forms), which runs in a child process
under a hard wall-clock limit. math-verify's own timeout uses `signal.alarm` and works only
in a main thread; Ray runs stages in worker threads, and a pathological sympy simplification
can hang for minutes, so the child is killed and restarted instead. What the rules cannot
decide is `undecided` (for the model-based judge), never a guess.
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

CORRECT, INCORRECT, UNDECIDED = "correct", "incorrect", "undecided"


@dataclass(frozen=True)
class Verdict:
    verdict: str
    verifier: str
    extracted: str | None


# ---- extraction ---------------------------------------------------------------------
def _last_boxed(text: str) -> str | None:
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, j = 1, i
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[i:j - 1].strip() if depth == 0 else None


_NUM = r"[-+]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?%?"
_ANSWER_IS = re.compile(r"(?:the\s+)?(?:final\s+)?answer\s*(?:is|:|=)\s*[:\s]*(.+)", re.I)
_HASHES = re.compile(r"####\s*(.+)")
_LAST_NUM = re.compile(_NUM)


def extract_answer(text: str | None) -> tuple[str | None, str]:
    """(answer, method): `\\boxed{}` first, then "The answer is …" / "####", then the last number."""
    if not text or not text.strip():
        return None, "empty"
    boxed = _last_boxed(text)
    if boxed:
        return boxed, "boxed"
    for rx, method in ((_ANSWER_IS, "answer_is"), (_HASHES, "hashes")):
        hits = [h.strip() for h in rx.findall(text) if h.strip()]
        if hits:
            ans = re.split(r"\.(?:\s|$)", hits[-1].splitlines()[0])[0].strip().strip("\"'*` ")  # to the sentence end
            ans = re.sub(r"^\$+|\$+$", "", ans).strip() if ans.count("$") != 1 else ans
            if "=" in ans and not ans.lstrip().startswith("="):  # "11 + 17 = 28" → the result
                ans = ans.rsplit("=", 1)[1].strip() or ans
            if ans:
                return ans, method
    nums = _LAST_NUM.findall(text)
    if nums:
        return nums[-1].strip(), "last_number"
    return None, "none"


# ---- numeric equality ---------------------------------------------------------------
_UNIT_WORDS = re.compile(r"\s*(?:[a-zA-Z]+\.?|°)(?:\s+[a-zA-Z]+)*\s*$")
_PLAIN = re.compile(r"^[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:/[-+]?\d+(?:\.\d+)?)?$")


def as_number(text: str | None) -> Fraction | None:
    """The exact value of a plainly written number, or None when it is not one.

    Accepts `1,234`, `-3.50`, `3/4`, `$12`, `40%` (as 0.4), `12 apples`, `\\frac{3}{4}`,
    `x = 5`; rejects anything with a second number or an operator (left to math-verify)."""
    if text is None:
        return None
    s = text.strip().replace("\\!", "").replace("\\,", "").replace("{,}", ",")
    s = re.sub(r"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\d?frac\{([^{}]+)\}\{([^{}]+)\}", r"\1/\2", s)
    s = re.sub(r"\\d?frac(\d)(\d)", r"\1/\2", s)
    s = re.sub(r"^\s*[a-zA-Z]\s*=\s*", "", s)          # "x = 5"
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "%").strip().rstrip(".")
    percent = s.endswith("%")
    s = s.rstrip("%").strip()
    s = _UNIT_WORDS.sub("", s).strip() if re.search(r"\d", s) else s
    s = s.replace(" ", "")
    if not s or not _PLAIN.match(s) or not re.search(r"\d", s):
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


def _as_latex(s: str) -> str:
    s = s.replace("**", "^")  # Python-style powers (DeepMind's answers): LaTeX reads `**` as noise
    return s if "$" in s else f"${s}$"


_FUNCS = {"sqrt", "sin", "cos", "tan", "log", "ln", "exp", "pi", "frac", "dfrac", "tfrac", "infty", "cdot",
          "times", "left", "right", "text", "mathrm", "boxed", "le", "ge", "leq", "geq", "pm", "circ"}
_WORD = re.compile(r"(?<![\\a-zA-Z])([a-zA-Z]{3,})")


def has_words(s: str) -> bool:
    """Prose in an answer ("banana", "no solution"): math-verify would read it as a product
    of single-letter symbols, so such answers are left to exact match or the judge."""
    s = re.sub(r"\\(?:text|mathrm|textbf)\{[^{}]*\}", "", s)
    return any(w.lower() not in _FUNCS for w in _WORD.findall(s))


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
        if truncated and method == "last_number":
            return Verdict(INCORRECT, "rule:truncated", pred)
        return self.compare(pred, reference)

    def compare(self, pred: str, reference: str) -> Verdict:
        a, b = as_number(pred), as_number(reference)
        if a is not None and b is not None:
            return Verdict(CORRECT if a == b else INCORRECT, "rule:numeric", pred)
        if _norm_text(pred) == _norm_text(reference):
            return Verdict(CORRECT, "rule:exact", pred)
        if has_words(pred) or has_words(reference):
            return Verdict(UNDECIDED, "rule:words", pred)
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
