"""Keep a synthetic utterance only if the audio is sound and ASR hears what was meant.

Audio checks first (empty, silent, clipped, a duration implausible for the number of words),
then WER per utterance with jiwer, after the same normaliser on reference and hypothesis, and a
second WER against the original query through an independent written-form normaliser that
catches a wrong spoken rewrite (`rewrite_mismatch`), which the first cannot see.
"""
from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from schemas.engine.stage import annotate, reject_where, stage
from schemas.tables import field
from synth.audio import decode
from synth.speech_text import wer_normalize


def audio_problem(audio_bytes: bytes | None, words: int, min_wps: float, max_wps: float,
                  silence_rms: float, clip_frac: float) -> tuple[str | None, str | None]:
    if not audio_bytes:
        return "empty_audio", None
    try:
        x, sr = decode(audio_bytes)
    except Exception as e:  # noqa: BLE001 - anything soundfile cannot read
        return "bad_audio", f"{type(e).__name__}: {e}"[:200]
    if x.size == 0:
        return "empty_audio", None
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    if rms < silence_rms:
        return "silent_audio", f"rms {rms:.5f}"
    clipped = float(np.mean(np.abs(x) >= 0.999))
    if clipped > clip_frac:
        return "clipped_audio", f"{clipped:.2%} of samples at full scale"
    seconds = x.size / sr
    wps = words / seconds if seconds else float("inf")
    if not (min_wps <= wps <= max_wps):
        return "implausible_duration", f"{words} words in {seconds:.2f} s"
    return None, None


def utterance_wer(reference: str, hypothesis: str) -> float | None:
    """WER of one utterance; None where the reference is empty (jiwer would count insertions)."""
    import jiwer
    ref, hyp = wer_normalize(reference or ""), wer_normalize(hypothesis or "")
    if not ref:
        return None
    if not hyp:
        return 1.0
    return float(jiwer.wer(ref, hyp))


# ---- written form: a check of the spoken rewrite that does not go through it -------------------
# `wer` compares the transcript with the spoken form through `wer_normalize`, which applies the
# same rewriter to both sides: a wrong rewrite (a year read as a cardinal) is heard back exactly
# and scores 0. `written_normalize` maps the ORIGINAL query and the transcript to one canonical
# written form with its own rules (numbers as digits through a words-to-number parser, case and
# punctuation folded, units and symbols as singular words): a rewrite that changed what the query
# says shows up as `wer_written`. It shares no rule or table with synth.spoken.
W_ONES = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
W_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
W_SCALES = {"thousand": 10 ** 3, "million": 10 ** 6, "billion": 10 ** 9, "trillion": 10 ** 12}
W_ORDINALS = {w: i for i, w in enumerate(
    "zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
    "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth".split())} | {
    w: 10 * i for i, w in enumerate("twentieth thirtieth fortieth fiftieth sixtieth seventieth eightieth "
                                    "ninetieth".split(), 2)}
W_DENOMINATORS = {"half": 2, "halves": 2, "quarter": 4, "quarters": 4} | {
    w + "s": W_ORDINALS[w] for w in "third fourth fifth sixth seventh eighth ninth tenth".split()}
W_DECADES = {"tens": 10} | {w[:-1] + "ies": v for w, v in W_TENS.items()}  # nineties
W_MONTHS = ("january february march april may june july august september october november "
            "december").split()
W_YEAR_BEFORE = set("in since by until till from during year years between circa around before after early late "
                    "mid".split()) | set(W_MONTHS)
W_UNITS = {  # written after a number → the singular word (plural words fold to singular below)
    "km/h": "kilometer per hour", "mph": "mile per hour", "m/s": "meter per second", "km": "kilometer",
    "cm": "centimeter", "mm": "millimeter", "m": "meter", "mi": "mile", "ft": "foot",
    "kg": "kilogram", "g": "gram", "mg": "milligram", "lb": "pound", "lbs": "pound", "oz": "ounce",
    "ml": "milliliter", "mL": "milliliter", "l": "liter", "L": "liter", "h": "hour", "hr": "hour",
    "hrs": "hour", "min": "minute", "mins": "minute",
    "s": "second", "sec": "second", "ms": "millisecond", "KB": "kilobyte", "MB": "megabyte", "GB": "gigabyte",
    "TB": "terabyte", "Hz": "hertz", "kHz": "kilohertz", "MHz": "megahertz", "GHz": "gigahertz", "W": "watt",
    "kW": "kilowatt", "kWh": "kilowatt hour", "V": "volt", "mAh": "milliamp hour",
}
W_SQUARE_UNITS = {"km²": "square kilometer", "m²": "square meter", "cm²": "square centimeter",
                  "mm²": "square millimeter", "ft²": "square foot", "m³": "cubic meter", "cm³": "cubic centimeter"}
W_MONEY = {"$": "dollar", "€": "euro", "£": "pound", "¥": "yen"}
W_SYMBOLS = {"%": " percent ", "°c": " degree celsius ", "°f": " degree fahrenheit ", "°k": " degree kelvin ",
             "°": " degree ", "&": " and ", "+": " plus ", "=": " equals ", "×": " times ", "÷": " divided by ",
             "±": " plus or minus ", "≈": " about ", "~": " about ", "→": " to ", "@": " at ", "−": " minus ",
             "½": " 1/2 ", "¼": " 1/4 ", "¾": " 3/4 ", "²": " squared ", "³": " cubed "}
W_FOLD = {  # a written abbreviation and its spoken word are one token; plurals are singular
    "doctor": "dr", "drive": "dr", "street": "st", "saint": "st", "mister": "mr", "missus": "mrs", "miz": "ms",
    "avenue": "ave", "road": "rd", "mount": "mt", "professor": "prof", "number": "no", "versus": "vs",
    "v": "version", "apartment": "apt", "feet": "foot", "inches": "inch", "pence": "penny", "yen": "yen",
    "hertz": "hertz",
    "o'clock": "", "oclock": "", "and": "", "sept": "september",
} | {m[:3]: m for m in W_MONTHS}
W_PHRASES = {"for example": "eg", "that is": "ie", "et cetera": "etc", "per cent": "percent"}


def _w_plural(word: str) -> str:
    if word in W_FOLD:
        return W_FOLD[word]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss") and word[:-1] in _W_SINGULAR:
        return word[:-1]
    return word


_W_SINGULAR = ({w.split()[-1] for w in W_UNITS.values()} | set(W_MONEY.values())
               | {"degree", "cent", "percent", "dollar", "euro", "pound", "year", "day", "week", "month"})


def _w_written(text: str) -> str:
    """Written notation → words and digits: dates, times, money, units, symbols, signs and ranges."""
    t = text.replace("’", "'").replace("–", "-").replace("—", " ").replace("\u00a0", " ")
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)  # 1,234
    t = re.sub(r"(?<=\d)(st|nd|rd|th)\b", "", t)  # 21st
    t = re.sub(r"\b(\d{4})-(\d{2})-(\d{2})\b", lambda m: f" {W_MONTHS[int(m.group(2)) - 1]} {int(m.group(3))} "
               f"{m.group(1)} " if 1 <= int(m.group(2)) <= 12 else m.group(0), t)

    def slash_date(m):
        a, b, y = int(m.group(1)), int(m.group(2)), m.group(3)
        y = y if len(y) == 4 else str((2000 if int(y) < 50 else 1900) + int(y))
        mo, d = (b, a) if a > 12 else (a, b)
        return f" {W_MONTHS[mo - 1]} {d} {y} " if 1 <= mo <= 12 and 1 <= d <= 31 else m.group(0)
    t = re.sub(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b", slash_date, t)
    t = re.sub(r"\b(\d{1,2}):(\d{2})(?::\d{2})?\b", lambda m: f" {int(m.group(1))} "
               + ("" if m.group(2) == "00" else m.group(2)) + " ", t)
    t = re.sub(r"\b(\d{1,2}(?:\s|))([ap])\.?m\.?(?!\w)", r"\1 \2m ", t, flags=re.I)

    def money(m):
        sign, sym, whole, frac, scale = m.group(1) or "", m.group(2), m.group(3), m.group(4), m.group(5)
        unit = W_MONEY[sym]
        if scale or not frac or len(frac) != 2 or sym == "¥":
            return f" {sign}{whole}{'.' + frac if frac else ''} {scale or ''} {unit} "
        cents = "" if int(frac) == 0 else f" {int(frac)} {'penny' if sym == '£' else 'cent'}"
        return f" {sign}{whole} {unit}{cents} "
    t = re.sub(r"(-?)([$€£¥])\s?(\d+)(?:\.(\d+))?(?:\s+(thousand|million|billion|trillion)\b)?", money, t)
    t = re.sub(r"(?<=\d)\s?(" + "|".join(re.escape(u) for u in W_SQUARE_UNITS) + ")",
               lambda m: " " + W_SQUARE_UNITS[m.group(1)] + " ", t)
    t = re.sub(r"(?<=\d)(?<!\d{3}0)\s?(" + "|".join(re.escape(u) for u in sorted(W_UNITS, key=len, reverse=True))
               + r")(?![\w/²³])", lambda m: " " + W_UNITS[m.group(1)] + " ", t)  # case matters: 3M, 5 m
    t = re.sub(r"(?<=\d)\.(?=[a-z])(?!x\b)", ". ", t, flags=re.I)  # "1.Paris"
    t = t.lower()
    t = re.sub(r"\b(?:[a-z]\.){2,}", lambda m: m.group(0).replace(".", "") + " ", t)  # e.g., u.s., a.m.
    for sym, word in W_SYMBOLS.items():
        t = t.replace(sym, word)
    t = re.sub(r"[⁰¹⁴⁵⁶⁷⁸⁹]+", lambda m: " to the power of " + m.group(0).translate(
        str.maketrans("⁰¹⁴⁵⁶⁷⁸⁹", "01456789")) + " ", t)
    t = re.sub(r"#(?=\d)", " number ", t)
    t = re.sub(r"\b(" + "|".join(W_MONTHS) + r")\s+0(?=\d\b)", r"\1 ", t)  # june 01
    t = re.sub(r"(?<=\d)\.x\b", " point x", t)  # 2.x
    t = re.sub(r"\bv(?=\d)", " version ", t)
    t = re.sub(r"(?<=\d)(?=[a-z])(?!s\b)|(?<=[a-z])(?=\d)", " ", t)  # 3y, mc2, http/2 → 3 y; 1990s stays
    t = re.sub(r"(?<=\d)-(?=\d)", " to ", t)  # 1990-1995, pages 10-20
    t = re.sub(r"(?:(?<=[\d)])|(?<=\b[a-z]))\s+-\s+(?=[\d(-]|[a-z]\b)", " minus ", t)  # 3 y - 7, 4 - -2
    t = re.sub(r"(?:(?<=^)|(?<=[\s(]))-(?=\d)", " minus ", t)  # -5
    t = re.sub(r"(?<=\d)\s*\*\s*(?=[\d(-]|minus)|(?<=\d)\s+x\s+(?=\d)", " times ", t)
    t = re.sub(r"(?<=\d)\s+/\s+(?=\d)", " divided by ", t)  # 100 / 4 (1/4 is a fraction)
    if re.search(r"(?:^|\s)\(?a\)\s.*\s\(?b\)\s", t):  # a) red b) blue: letter markers count like 1) 2)
        t = re.sub(r"(?:(?<=\s)|^)\(?([a-h])\)(?=\s)", lambda m: f" {ord(m.group(1)) - 96} ", t)
    return t


def _w_tokens(text: str) -> list[str]:
    """Lower-case words, numbers (3.14, 2.0.1, 1/2) and "," for a boundary a number may not cross."""
    t = re.sub(r"(?<!\d)/|/(?!\d)", " ", text)
    out = []
    for tok in re.findall(r"\d{3}0s\b|\d+(?:[./]\d+)*|[a-z]+(?:'[a-z]+)*|[,.;:!?()\n]", t):
        out.append("," if not tok[0].isalnum() else tok)
    return _w_join_letters(out)


def _w_join_letters(toks: list[str]) -> list[str]:
    """A run of single letters is one word: "h t t p" and "http", "a m" and "am", "m c" and "mc"."""
    out, i = [], 0
    while i < len(toks):
        j = i
        while j < len(toks) and len(toks[j]) == 1 and toks[j].isalpha():
            j += 1
        if j - i >= 2:
            out.append("".join(toks[i:j]))
            i = j
        else:
            out.append(toks[i])
            i += 1
    return out


def _w_cardinal(toks: list[str], i: int) -> tuple[int, int, set[str]] | None:
    """(value, next index, parts used) of the number words from toks[i], or None."""
    total = cur = 0
    last, parts, j = None, set(), i
    while j < len(toks):
        w = toks[j]
        if w in W_ONES and w != "zero" or w == "zero" and last is None:
            v = W_ONES[w]
            if last in ("ones", "teen") or last == "tens" and v >= 10:
                break
            cur, last = cur + v, "ones" if v < 10 else "teen"
        elif w in W_TENS:
            if last in ("ones", "teen", "tens"):
                break
            cur, last = cur + W_TENS[w], "tens"
        elif w == "hundred" and last in ("ones", "teen", "tens") and cur < 100:
            cur, last = cur * 100, "hundred"
            parts.add("hundred")
        elif w in W_SCALES and last in ("ones", "teen", "tens", "hundred"):
            total, cur, last = total + cur * W_SCALES[w], 0, "scale"
            parts.add(w)
        elif w == "and" and last in ("hundred", "scale") and j + 1 < len(toks) and (
                toks[j + 1] in W_ONES or toks[j + 1] in W_TENS):
            last = "and"
        else:
            break
        j += 1
    if last in (None, "and"):
        return None
    return total + cur, j, parts


def _w_digit_run(toks: list[str], i: int) -> tuple[str, int] | None:
    """"oh oh four two" → 0042, "oh five" (after nine) → 05: digit by digit, led by a zero."""
    if toks[i] not in ("oh", "zero") or i + 1 >= len(toks) or not (
            toks[i + 1] == "oh" or toks[i + 1] in W_ONES and W_ONES[toks[i + 1]] <= 9):
        return None
    j, s = i, ""
    while j < len(toks) and (toks[j] == "oh" or toks[j] in W_ONES and W_ONES[toks[j]] <= 9):
        s += "0" if toks[j] == "oh" else str(W_ONES[toks[j]])
        j += 1
    return s, j


def _w_year_context(out: list[str], years: list[bool]) -> bool:
    """A year is expected here: after "in", "since", a month, a day of a month, or in a list of years."""
    prev = [w for w in out[-3:] if w != ","]
    if not prev:
        return False
    if prev[-1] in W_YEAR_BEFORE or len(prev) >= 2 and prev[-2] in W_MONTHS and prev[-1].isdigit():
        return True
    k = len(out) - 1
    while k >= 0 and out[k] in (",", "and", "or", "to", "through", "nor"):
        k -= 1
    return k < len(out) - 1 and k >= 0 and years[k]


def _w_numbers(toks: list[str]) -> list[str]:  # noqa: C901  (one scan over spoken-number forms, sharing its state)
    out, years, i = [], [], 0

    def emit(tok, is_year=False):
        out.append(tok)
        years.append(is_year)
    while i < len(toks):
        run = _w_digit_run(toks, i)
        card = None if run else _w_cardinal(toks, i)
        if run:
            emit(run[0])
            i = run[1]
            continue
        if card is None:
            w = toks[i]
            if w in W_ORDINALS:
                emit(str(W_ORDINALS[w]))
            elif re.fullmatch(r"\d{4}", w):
                emit(w, _w_year_context(out, years) and 1100 <= int(w) <= 2099)
            else:
                emit(w)
            i += 1
            continue
        v, j, parts = card
        ctx = _w_year_context(out, years)
        if (10 <= v <= 20 and j < len(toks) and (toks[j] in W_DECADES or toks[j] == "hundreds")
                and toks[j - 1] not in W_TENS):
            emit(f"{v * 100 + W_DECADES.get(toks[j], 0)}s")  # nineteen nineties, nineteen hundreds
            i = j + 1
            continue
        if 1 <= v <= 9 and j == i + 1 and out and len(out[-1]) == 1 and out[-1].isalpha() and j < len(toks):
            nxt = _w_digit_run(toks, j) if toks[j] == "oh" else _w_cardinal(toks, j)
            if nxt and (len(nxt) == 2 and len(nxt[0]) == 2 or len(nxt) == 3 and 10 <= nxt[0] <= 99 and not nxt[2]):
                emit(str(v * 100 + int(nxt[0])))  # a model number in pairs: f one fifty, a three eighty
                i = nxt[1]
                continue
        if not ctx and 1100 <= v <= 2099 and "hundred" in parts and "thousand" in parts:
            k, items = j, 1  # three or more such numbers in a list are years (as the rewriter reads them)
            while k + 1 < len(toks) and toks[k] in (",", "and", "or"):
                nxt = _w_cardinal(toks, k + 1 + (toks[k + 1] == "and"))
                if not (nxt and 1100 <= nxt[0] <= 2099):
                    break
                k, items = nxt[1], items + 1
            ctx = items >= 3
        # year-style: "nineteen ninety one", "twenty twenty one", "nineteen oh five"
        if 10 <= v <= 20 and "hundred" not in parts and j < len(toks) and (ctx or toks[j - 1] not in W_TENS):
            nxt = _w_digit_run(toks, j) if toks[j] == "oh" else None
            nxt_card = None if nxt else _w_cardinal(toks, j)
            tail = (int(nxt[0]), nxt[1]) if nxt and len(nxt[0]) == 2 else (
                (nxt_card[0], nxt_card[1]) if nxt_card and 10 <= nxt_card[0] <= 99 and not nxt_card[2] else None)
            ranged = tail and tail[1] + 1 < len(toks) and toks[tail[1]] in ("to", "and", "or", ",") and \
                (toks[tail[1] + 1] in W_ONES or toks[tail[1] + 1] in W_TENS)
            clock = tail and tail[1] < len(toks) and toks[tail[1]] in ("am", "pm", "o'clock")  # ten ten pm
            if tail and not clock and (ctx or ranged or out and out[-1] in ("to",) and years and any(years[-2:])):
                emit(str(v * 100 + tail[0]), True)
                i = tail[1]
                continue
        if ctx and 1100 <= v <= 2099 and "hundred" in parts and "thousand" in parts:
            # a year read as a cardinal ("one thousand nine hundred and ninety one"): not a year's words
            for w in toks[i:j]:
                emit(w, True)
            years[-1] = True
            i = j
            continue
        s = str(v)
        while j + 1 < len(toks) and toks[j] == "point":  # 3.14, 3.11, 2.0.1
            nc = _w_cardinal(toks, j + 1)
            if toks[j + 1] == "oh" or toks[j + 1] in W_ONES and W_ONES[toks[j + 1]] <= 9:
                k, d = j + 1, ""
                while k < len(toks) and (toks[k] in W_ONES and W_ONES[toks[k]] <= 9 or toks[k] == "oh"):
                    d += "0" if toks[k] == "oh" else str(W_ONES[toks[k]])
                    k += 1
                s, j = s + "." + d, k
            elif nc:
                s, j = s + "." + str(nc[0]), nc[1]
            else:
                break
        if "." not in s and j < len(toks):
            w = toks[j]
            if w in W_ORDINALS and 1 <= W_ORDINALS[w] <= 9 and v % 10 == 0 and 20 <= v % 100:
                s, j = str(v + W_ORDINALS[w]), j + 1  # twenty first
            elif w in W_DENOMINATORS or w in W_ORDINALS and v == 1 and W_ORDINALS[w] >= 3:
                s, j = f"{v}/{W_DENOMINATORS.get(w) or W_ORDINALS[w]}", j + 1  # one half, nineteen sixths
            elif w == "over" and j + 1 < len(toks) and _w_cardinal(toks, j + 1):
                den = _w_cardinal(toks, j + 1)
                assert den is not None  # the elif just parsed it
                s, j = f"{v}/{den[0]}", den[1]
        emit(s, ctx and s.isdigit() and 1100 <= v <= 2099)
        i = j
    return out


def written_normalize(text: str) -> str:
    """The canonical written form of a query or a transcript: lower case, no punctuation, numbers as
    digits ("one thousand two hundred and thirty four" and "1,234" → 1234; "nineteen ninety one" → 1991
    where a year is expected, where a year read as "one thousand nine hundred ..." stays words), dates as
    "march 14 2021", units and money as singular words after the number, abbreviations folded."""
    t = _w_written(text or "")
    for phrase, short in W_PHRASES.items():
        t = re.sub(r"\b" + phrase + r"\b", short, t)
    toks = _w_numbers(_w_tokens(t))
    out: list[str] = []
    i = 0
    while i < len(toks):  # the 14 of march / 14 march → march 14
        if i + 2 < len(toks) and toks[i].isdigit() and toks[i + 1] == "of" and toks[i + 2] in W_MONTHS:
            if out and out[-1] == "the":
                out.pop()
            out += [toks[i + 2], toks[i]]
            i += 3
        elif (i + 1 < len(toks) and toks[i].isdigit() and int(toks[i]) <= 31 and toks[i + 1] in W_MONTHS
              and not (out and out[-1] == "no") and not (i + 2 < len(toks) and toks[i + 2].isdigit()
                                                         and int(toks[i + 2]) <= 31)):
            if out and out[-1] == "the":
                out.pop()
            out += [toks[i + 1], toks[i]]
            i += 2
        else:
            out.append(toks[i])
            i += 1
    return " ".join(w for w in (_w_plural(t) for t in out if t != ",") if w)


def written_wer(original: str, hypothesis: str) -> float | None:
    """WER of a transcript against the ORIGINAL written query, both through `written_normalize`."""
    import jiwer
    ref, hyp = written_normalize(original or ""), written_normalize(hypothesis or "")
    if not ref:
        return None
    if not hyp:
        return 1.0
    return float(jiwer.wer(ref, hyp))


@stage(adds=[])
def check_audio(batch: pa.Table, min_words_per_s: float = 0.7, max_words_per_s: float = 6.0,
                silence_rms: float = 0.003, max_clipped: float = 0.002) -> pa.Table:
    """Reject audio that is empty, undecodable, silent, clipped, or too short/long for its text."""
    out = [audio_problem((a or {}).get("bytes"), len(wer_normalize(t or "").split()), min_words_per_s,
                         max_words_per_s, silence_rms, max_clipped)
           for a, t in zip(batch.column("audio").to_pylist(), batch.column("text").to_pylist())]
    for reason in sorted({r for r, _ in out if r}):
        batch = reject_where(batch, [r == reason for r, _ in out], reason,
                             [d if r == reason else None for r, d in out])
    return batch


@stage(adds=[field("wer", pa.float32(), stats="hist:0:1:20:right@voice"),  # a bar ends at max_wer
             field("wer_written", pa.float32(), stats="hist:0:1:20:right",
                   doc="WER of the transcript against the original query, both in canonical written form")])
def wer_filter(batch: pa.Table, max_wer: float = 0.2, max_wer_written: float = 0.25) -> pa.Table:
    """`wer` of the transcript against the spoken text; above `max_wer` is `high_wer`.

    `wer_written` scores the same transcript against the ORIGINAL query (the `query` column)
    through `written_normalize`, which does not use the spoken rewriter: a row ASR heard right
    (`wer` <= `max_wer`) whose rewrite changed what the query says (`wer_written` >
    `max_wer_written`, a year read as "one thousand nine hundred ...") is `rewrite_mismatch`.
    Without a `query` column the check is skipped (`wer_written` null)."""
    texts, hyps = batch.column("text").to_pylist(), batch.column("asr_text").to_pylist()
    wers = [utterance_wer(r, h) for r, h in zip(texts, hyps)]
    queries = batch.column("query").to_pylist() if "query" in batch.column_names else [None] * batch.num_rows
    written = [written_wer(q, h) if q else None for q, h in zip(queries, hyps)]
    batch = annotate(batch, wer=pa.array(wers, pa.float32()), wer_written=pa.array(written, pa.float32()))
    batch = reject_where(batch, [w is None for w in wers], "empty_reference")
    batch = reject_where(batch, [w is not None and w > max_wer for w in wers], "high_wer",
                         [f"{w:.3f} > {max_wer}" if w is not None else None for w in wers])
    mismatch = [w is not None and ww is not None and ww > max_wer_written for w, ww in zip(wers, written)]
    return reject_where(batch, mismatch, "rewrite_mismatch", [
        f"written-form WER {ww:.3f} > {max_wer_written} (spoken-form WER {w:.3f}): "
        f"{written_normalize(q)!r} vs {written_normalize(h)!r}"[:300] if m else None
        for m, w, ww, q, h in zip(mismatch, wers, written, queries, hyps)])
