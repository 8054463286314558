"""English number words to an exact value ("twelve", "minus five", "three quarters",
"two and a half", "one hundred and five", "zero point seven five"), for the answer verifier.

Strict: every word must be a number word, or the text is not a number (None); bounded to a
few dozen words, so hostile input costs nothing."""
from __future__ import annotations

from fractions import Fraction

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
_SCALES = {"thousand": 10 ** 3, "million": 10 ** 6, "billion": 10 ** 9, "trillion": 10 ** 12}
_DENOMS = {"half": 2, "halves": 2, "third": 3, "quarter": 4, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
           "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "hundredth": 100, "thousandth": 1000}
_DENOMS.update({w + "s": d for w, d in list(_DENOMS.items()) if not w.endswith("s") and w != "half"})
_MAX_WORDS = 40


def _integer(words: list[str]) -> int | None:
    """A cardinal in words (no "and" left), or None."""
    if not words:
        return None
    total, current, seen, last = 0, 0, False, ""  # last: "unit", "ten" or "" (after a scale)
    for w in words:
        if w in _UNITS:
            if last == "unit" or (last == "ten" and _UNITS[w] > 9):  # "one two", "twenty twelve"
                return None
            current += _UNITS[w]
            last = "unit"
        elif w in _TENS:
            if last:
                return None
            current += _TENS[w]
            last = "ten"
        elif w == "hundred":
            current = (current or 1) * 100
            last = ""
        elif w in _SCALES:
            total += (current or 1) * _SCALES[w]
            current, last = 0, ""
        elif w in ("a", "an") and not seen:
            current, last = 1, "unit"
        else:
            return None
        seen = True
    if words in (["a"], ["an"]):  # an article is not a number
        return None
    return total + current


def words_to_number(text: str) -> Fraction | None:
    """The value of `text` written in English number words, or None."""
    words = text.lower().replace("-", " ").replace(",", " ").split()
    if not words or len(words) > _MAX_WORDS:
        return None
    sign = 1
    if words[0] in ("minus", "negative"):
        sign, words = -1, words[1:]
    if "point" in words:  # "zero point seven five"
        i = words.index("point")
        whole = _integer([w for w in words[:i] if w != "and"]) if words[:i] else 0
        digits = [_UNITS.get(w) for w in words[i + 1:]]
        if whole is None or not digits or any(d is None or d > 9 for d in digits):
            return None
        return sign * (whole + Fraction("0." + "".join(map(str, digits))))
    if words and words[-1] in _DENOMS:  # "three quarters", "two and a half", "a third"
        den = _DENOMS[words[-1]]
        head = words[:-1]
        whole = 0
        if "and" in head:
            i = len(head) - 1 - head[::-1].index("and")
            whole = _integer(head[:i])
            head = head[i + 1:]
            if whole is None:
                return None
        num = 1 if head in ([], ["a"], ["an"]) else _integer(head)
        if num is None or (num > 1 and not words[-1].endswith("s")):  # "three quarter" is not a number
            return None
        return sign * (whole + Fraction(num, den))
    value = _integer([w for w in words if w != "and"])
    if value is None or words[0] == "and" or words[-1] == "and":
        return None
    return sign * Fraction(value)
