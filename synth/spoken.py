"""The spoken form of a query: how a reader says it, and which rewrites it took.

TTS reads this text and both sides of the WER are normalised through it, so every rule must be
what a listener accepts ("72°F" → "seventy two degrees Fahrenheit", "Elm St." → "Elm Street")
and stable when applied to an ASR transcript of the same words. Rules run in a fixed order,
each a small function over the text; `spoken` returns the names of those that changed it.
"""
from __future__ import annotations

import re
from typing import Callable

# ---- numbers --------------------------------------------------------------------------
DIGIT = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
MONTH_ABBR = {m[:3]: m for m in MONTHS} | {"Sept": "September"}
DENOMINATORS = {2: ("half", "halves"), 4: ("quarter", "quarters")}


def _clean(words: str) -> str:
    return words.replace("-", " ").replace(",", "")


def cardinal(n: int) -> str:
    from num2words import num2words
    return ("minus " if n < 0 else "") + _clean(num2words(abs(n)))


def ordinal(n: int) -> str:
    from num2words import num2words
    return _clean(num2words(n, to="ordinal"))


def year(n: int) -> str:
    from num2words import num2words
    return _clean(num2words(n, to="year")).replace("two thousand and ", "two thousand ")


def digits(s: str) -> str:
    """Digit by digit, "oh" for zero (house numbers with a leading zero, decimals' tails)."""
    return " ".join("oh" if c == "0" else DIGIT[int(c)] for c in s)


def number(whole: str, frac: str | None = None, sign: str = "") -> str:
    """"1,234.05" → one thousand two hundred and thirty four point zero five."""
    whole = whole.replace(",", "")
    words = digits(whole) if len(whole) > 1 and whole.startswith("0") else cardinal(int(whole))
    if frac:
        words += " point " + " ".join(DIGIT[int(c)] for c in frac)
    return ("minus " + words) if sign in ("-", "−") else words


def fraction(num: int, den: int) -> str:
    """1/4 → one quarter; 19/6 → nineteen sixths; 15/32842 → fifteen over thirty two thousand ..."""
    if den in DENOMINATORS or 3 <= den <= 10:
        one, many = DENOMINATORS.get(den, (ordinal(den), ordinal(den) + "s"))
        return f"{cardinal(num)} {one if abs(num) == 1 else many}"
    return f"{cardinal(num)} over {cardinal(den)}"


# ---- rules: each returns the new text ---------------------------------------------------
NUM = r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?"
SIGN = r"(?:(?<![\w.])([-−]))?"

ORDINAL_WORDS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth"}
LINE_ITEM = re.compile(r"^[ \t]*(?:([-*•+])|(\(?(\d{1,2}|[a-z]|#)[.)]))[ \t]+(\S.*)$")
INLINE_MARK = re.compile(r"(?:(?<=\s)|^)(?:\(?(\d{1,2}|[a-h])\)|(\d{1,2})\.(?=\s+[^\W\d]))\s+")  # 1) a) (1) 1.


def _join_items(intro: str, items: list[str], ordered: bool, outro: str = "") -> str:
    last = re.search(r"[.?!](?=\W*$)", items[-1])
    end = last.group(0) if last else "."
    items = [re.sub(r"[\s.;,:?!]+$", "", " ".join(it.split())) for it in items]
    if ordered:
        body = "; ".join(f"{ORDINAL_WORDS.get(i + 1, ordinal(i + 1))}, {it}" for i, it in enumerate(items))
    else:
        body = ", ".join(items[:-1]) + (", and " if len(items) > 2 else " and ") + items[-1]
    intro = intro.rstrip()
    return (intro + " " if intro else "") + body + end + (" " + outro if outro else "")


def line_list_items(text: str) -> tuple[str, list[str], bool, bool, str] | None:
    """(intro, items, ordered, nested, outro) of a list laid out one item a line, else None."""
    intro: list[str] = []
    items: list[str] = []
    outro: list[str] = []
    ordered, indents = False, set()
    for line in text.split("\n"):
        m = LINE_ITEM.match(line)
        if m and not outro:
            indents.add(len(line) - len(line.lstrip()))
            ordered = ordered or m.group(2) is not None
            items.append(m.group(4))
        elif items and not outro and line.strip() and line.startswith((" ", "\t")):
            items[-1] += " " + line.strip()  # an item's continuation line
        elif line.strip():
            (outro if items else intro).append(line.strip())
    if len(items) < 2:
        return None
    return " ".join(intro), items, ordered, len(indents) > 1, " ".join(outro)


def rewrite_line_list(text: str) -> str:
    got = line_list_items(text) if "\n" in text else None
    if not got or got[3]:
        return text
    intro, items, ordered, _, outro = got
    return _join_items(intro, items, ordered, outro)


def inline_list_items(text: str) -> tuple[str, list[str]] | None:
    """"Which: 1) a 2) b" → ("Which:", [a, b]) when the markers count up from 1 (or a)."""
    marks = list(INLINE_MARK.finditer(text))
    seq: list[re.Match[str]] = []
    for m in marks:
        key = m.group(1) or m.group(2)
        want = str(len(seq) + 1) if key.isdigit() else "abcdefgh"[len(seq)] if len(seq) < 8 else None
        if key == want and (not seq or (m.group(2) is None) == (seq[0].group(2) is None)):  # "1." goes with "2."
            seq.append(m)
    if len(seq) < 2:
        return None
    items = [text[m.end(): (seq[i + 1].start() if i + 1 < len(seq) else len(text))] for i, m in enumerate(seq)]
    return text[: seq[0].start()], items


def rewrite_inline_list(text: str) -> str:
    got = inline_list_items(text)
    if not got:
        return text
    intro, items = got
    return _join_items(intro, items, ordered=True)


def lone_markers(text: str) -> str:
    """An enumerator outside a list ("1) end of buffer") is said as an ordinal, never "one)";
    "(see 3)" closes a parenthesis and stays a number."""
    def say(m):
        before = text[:m.start()]
        if not m.group(0).startswith("(") and before.count("(") > before.count(")"):
            return m.group(0)
        n = int(m.group(1))
        return f"{ORDINAL_WORDS.get(n, ordinal(n))}, "
    return re.sub(r"(?<![\w(])\(?(\d{1,2})\)\s+", say, text)


def strip_markup(text: str) -> str:
    """Backticks around a single word and *emphasis* are written-only: drop the marks."""
    text = re.sub(r"``(\w+)``|`(\w+)`", lambda m: m.group(1) or m.group(2), text)
    return re.sub(r"(?<![\w*])\*{1,2}(\w[\w ]*?)\*{1,2}(?![\w*])", r"\1", text)


STREET_TYPES = {"St": "Street", "Dr": "Drive", "Ave": "Avenue", "Rd": "Road", "Blvd": "Boulevard", "Ln": "Lane",
                "Ct": "Court", "Pl": "Place", "Hwy": "Highway", "Pkwy": "Parkway", "Sq": "Square"}
TITLES = {"St": "Saint", "Dr": "Doctor", "Mr": "Mister", "Mrs": "Missus", "Ms": "Miz", "Prof": "Professor",
          "Mt": "Mount", "Ft": "Fort", "Gen": "General", "Capt": "Captain", "Sgt": "Sergeant", "Rev": "Reverend"}
PLAIN_ABBR = {
    "e.g.": "for example", "i.e.": "that is", "etc.": "et cetera", "vs.": "versus", "approx.": "approximately",
    "Apt.": "apartment", "Jr.": "junior", "Sr.": "senior", "Inc.": "incorporated", "Ltd.": "limited",
    "Dept.": "department", "Univ.": "university", "Fig.": "figure", "Vol.": "volume", "a.m.": "a m",
    "p.m.": "p m", "A.M.": "a m", "P.M.": "p m", "U.S.": "U S", "U.K.": "U K", "Ph.D.": "P H D",
}
ABBR_TOKEN = re.compile(r"\b(" + "|".join(sorted(set(STREET_TYPES) | set(TITLES), key=len, reverse=True)) + r")\.")


def _sentence_start(text: str, pos: int) -> bool:
    before = text[:pos].rstrip()
    return not before or before[-1] in ".!?:;\"'(\n"


def _expand_abbr(text: str, m: re.Match) -> str:
    """St./Dr./... by context: after a street name → Street/Drive; before a name → Saint/Doctor."""
    abbr = m.group(1)
    prev = re.search(r"(\S+)\s+$", text[: m.start()])
    nxt = re.match(r"\s+(\S+)", text[m.end():])
    prev_word = prev.group(1) if prev else ""
    prev_is_name = prev is not None and bool(prev_word) and (
        prev_word[0].isupper() and not _sentence_start(text, prev.start(1)) or prev_word.isdigit())
    next_is_name = nxt is not None and nxt.group(1)[0].isupper()
    if abbr in STREET_TYPES and (prev_is_name or abbr not in TITLES):
        return STREET_TYPES[abbr]
    if abbr in TITLES and (next_is_name or abbr not in STREET_TYPES):
        return TITLES[abbr]
    return STREET_TYPES.get(abbr) or TITLES[abbr]


def abbreviations(text: str) -> str:
    for abbr, full in PLAIN_ABBR.items():
        text = re.sub(r"(?<![\w.])" + re.escape(abbr) + r"(?=\W|$)", full, text)
    text = re.sub(r"\bNo\.\s*(?=\d)", "number ", text)
    text = re.sub(r"#(?=\d)", "number ", text)
    text = re.sub(r"\b(" + "|".join(MONTH_ABBR) + r")\.?(?=\s+\d)", lambda m: MONTH_ABBR[m.group(1)], text)
    out, last = [], 0
    for m in ABBR_TOKEN.finditer(text):
        out += [text[last:m.start()], _expand_abbr(text, m)]
        last = m.end()
    return "".join(out) + text[last:]


SLASH_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b")


def ambiguous_date(text: str) -> str | None:
    """A slash date that reads two ways (03/04/2021: March 4 in the US, 3 April elsewhere), else None.

    Selection rejects such a query (`ambiguous_date`) rather than guess: the answer was written
    for one of the two dates. 14/03/2021 and 03/14/2021 are not ambiguous, nor is 03/03/2021."""
    for m in SLASH_DATE.finditer(text):
        a, b = int(m.group(1)), int(m.group(2))
        if 1 <= a <= 12 and 1 <= b <= 12 and a != b:
            return m.group(0)
    return None


def dates(text: str) -> str:
    """2021-03-14, 03/14/2021, 14/03/2021, March 14, 2021 and 14 March 2021 → March fourteenth, twenty twenty one.

    A slash date is month first unless the first field cannot be a month (14/03/2021: the
    fourteenth of March); one that reads both ways is month first here and rejected by selection
    (`ambiguous_date`)."""
    def mdy(mo: int, d: int, y: int) -> str:
        return f"{MONTHS[mo - 1]} {ordinal(d)}, {year(y)}"

    def iso(m):
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
        return mdy(mo, d, y) if 1 <= mo <= 12 and 1 <= d <= 31 else m.group(0)

    def slash(m):
        mo, d, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
        y += 2000 if y < 50 and len(m.group(3)) == 2 else 1900 if len(m.group(3)) == 2 else 0
        if 12 < mo <= 31 and 1 <= d <= 12:  # day first
            return f"the {ordinal(mo)} of {MONTHS[d - 1]}, {year(y)}"
        return mdy(mo, d, y) if 1 <= mo <= 12 and 1 <= d <= 31 else m.group(0)

    months = "|".join(MONTHS)
    text = re.sub(r"\b(\d{4})-(\d{2})-(\d{2})\b", iso, text)
    text = SLASH_DATE.sub(slash, text)
    def named(month: str, day: str, yr: str | None, day_first: bool) -> str:
        said = f"the {ordinal(int(day))} of {month}" if day_first else f"{month} {ordinal(int(day))}"
        return said + (f", {year(int(yr))}" if yr else "")

    text = re.sub(rf"\b({months})[ \t]+(\d{{1,2}})(?:st|nd|rd|th)?\b(,?[ \t]+(\d{{4}})\b)?",
                  lambda m: named(m.group(1), m.group(2), m.group(4), False), text)
    return re.sub(rf"(?<!number )\b(\d{{1,2}})(?:st|nd|rd|th)?[ \t]+({months})\b(,?[ \t]+(\d{{4}})\b)?",
                  lambda m: named(m.group(2), m.group(1), m.group(4), True), text)


def _clock(h: int, mi: str, ampm: str, after: str) -> str | None:
    if h > 24 or int(mi) > 59:
        return None
    if mi == "00":
        words = cardinal(h) if ampm else f"{cardinal(h)} o'clock" if h <= 12 else f"{cardinal(h)} hundred"
    else:
        words = f"{cardinal(h)} {'oh ' + DIGIT[int(mi[1])] if mi[0] == '0' else cardinal(int(mi))}"
    if ampm:
        words += " " + " ".join(ampm.lower().replace(".", ""))
        if ampm.endswith(".") and re.match(r"\s+[A-Z]|\s*$", after):
            words += "."  # "p.m." also ended the sentence
    return words


def times(text: str) -> str:
    """10:30 → ten thirty; 9:05 → nine oh five; 7:00 pm and 7pm → seven p m; 14:00 → fourteen hundred."""
    ampm = r"(?:\s*([AaPp]\.[Mm]\.|[AaPp][Mm])(?!\w))"
    text = re.sub(r"\b(\d{1,2}):(\d{2})(?::\d{2})?" + ampm + "?", lambda m: _clock(
        int(m.group(1)), m.group(2), m.group(3) or "", m.string[m.end():]) or m.group(0), text)
    return re.sub(r"\b(\d{1,2})" + ampm, lambda m: _clock(
        int(m.group(1)), "00", m.group(2), m.string[m.end():]) or m.group(0), text)


UNITS = {  # symbol: (singular, plural); matched only right after a number
    "km/h": ("kilometer per hour", "kilometers per hour"), "mph": ("mile per hour", "miles per hour"),
    "m/s": ("meter per second", "meters per second"), "km": ("kilometer", "kilometers"),
    "cm": ("centimeter", "centimeters"), "mm": ("millimeter", "millimeters"), "m": ("meter", "meters"),
    "mi": ("mile", "miles"), "ft": ("foot", "feet"), "in.": ("inch", "inches"),
    "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"), "mg": ("milligram", "milligrams"),
    "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"), "oz": ("ounce", "ounces"),
    "ml": ("milliliter", "milliliters"), "mL": ("milliliter", "milliliters"), "L": ("liter", "liters"),
    "l": ("liter", "liters"), "h": ("hour", "hours"), "hr": ("hour", "hours"), "hrs": ("hour", "hours"),
    "min": ("minute", "minutes"), "mins": ("minute", "minutes"), "sec": ("second", "seconds"),
    "ms": ("millisecond", "milliseconds"), "KB": ("kilobyte", "kilobytes"), "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"), "TB": ("terabyte", "terabytes"), "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"), "MHz": ("megahertz", "megahertz"), "GHz": ("gigahertz", "gigahertz"),
    "W": ("watt", "watts"), "kW": ("kilowatt", "kilowatts"), "kWh": ("kilowatt hour", "kilowatt hours"),
    "V": ("volt", "volts"), "mAh": ("milliamp hour", "milliamp hours"),
    "sq ft": ("square foot", "square feet"), "km²": ("square kilometer", "square kilometers"),
    "m²": ("square meter", "square meters"), "cm²": ("square centimeter", "square centimeters"),
    "mm²": ("square millimeter", "square millimeters"), "ft²": ("square foot", "square feet"),
    "m³": ("cubic meter", "cubic meters"), "cm³": ("cubic centimeter", "cubic centimeters"),
}
UNIT_RE = re.compile(SIGN + NUM + r"[ \u00a0]?(" + "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))
                     + r")(?![\w²])")
TEMP_RE = re.compile(SIGN + NUM + r"\s?°\s?([CFK])?(?!\w)")
CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"), "€": ("euro", "euros", "cent", "cents"),
            "£": ("pound", "pounds", "penny", "pence"), "¥": ("yen", "yen", "", "")}
SCALE = r"(?:\s+(thousand|million|billion|trillion))?"
CURRENCY_RE = re.compile(SIGN + r"([$€£¥])\s?" + NUM + SCALE + r"(?![\w])")


def _is_one(whole: str, frac: str | None) -> bool:
    return whole == "1" and not frac


def units(text: str) -> str:
    def unit(m):
        sign, whole, frac, u = m.group(1) or "", m.group(2), m.group(3), m.group(4)
        one, many = UNITS[u]
        return f"{number(whole, frac, sign)} {one if _is_one(whole, frac) else many}"
    return UNIT_RE.sub(unit, text)


def temperatures(text: str) -> str:
    def temp(m):
        sign, whole, frac, scale = m.group(1) or "", m.group(2), m.group(3), m.group(4)
        deg = "degree" if _is_one(whole, frac) else "degrees"
        name = {"C": " Celsius", "F": " Fahrenheit", "K": " Kelvin"}.get(scale or "", "")
        return f"{number(whole, frac, sign)} {deg}{name}"
    return TEMP_RE.sub(temp, text)


def currency(text: str) -> str:
    def money(m):
        sign, sym, whole, frac, scale = m.group(1) or "", m.group(2), m.group(3), m.group(4), m.group(5)
        one, many, cent, cents = CURRENCY[sym]
        if scale:
            return f"{number(whole, frac, sign)} {scale} {many}"
        words = f"{number(whole, None, sign)} {one if _is_one(whole, None) else many}"
        if frac and len(frac) == 2 and cent and int(frac):
            words += f" and {cardinal(int(frac))} {cent if frac == '01' else cents}"
        elif frac and not (len(frac) == 2 and cent):
            words = f"{number(whole, frac, sign)} {many}"
        return words
    return CURRENCY_RE.sub(money, text)


VERSION_RE = re.compile(r"\b(?:(Python|Windows|version|Version|v|release|macOS|OSX|OS X|iOS|Android|Java|PHP|Perl|Ruby|"
                        r"Linux|Ubuntu|Debian|HTTP|IPv)\s?)(\d+(?:\.\d+)+|\d+\.x)\b|\b(\d+\.\d+\.\d+(?:\.\d+)*)\b")


def versions(text: str) -> str:
    """Python 3.11 → Python three point eleven; 2.6.4 → two point six point four."""
    def ver(m):
        name, v = (m.group(1), m.group(2)) if m.group(2) else (None, m.group(3))
        parts = [("x" if p == "x" else digits(p) if len(p) > 1 and p.startswith("0") else cardinal(int(p)))
                 for p in v.split(".")]
        said = " point ".join(parts)
        return (("version " if name == "v" else name + " ") if name else "") + said
    return VERSION_RE.sub(ver, text)


SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")


def powers(text: str) -> str:
    """x² → x squared, mc² → m c squared (a short letter name is spelled), 2³ → 2 cubed, 10⁶ → 10 to the
    power of 6 (the number is said later); units with a square (5 m²) are the unit rule's."""
    def power(m):
        base, exp = m.group(1), m.group(2).translate(SUPERSCRIPT)
        if base and base.isalpha():
            base = " ".join(base)
        said = {"2": "squared", "3": "cubed"}.get(exp, f"to the power of {exp}")
        return f"{base} {said}" if base else f" {said}"
    return re.sub(r"(?<![A-Za-z])([A-Za-z]{1,3}|\d+(?:\.\d+)?|)([⁰¹²³⁴⁵⁶⁷⁸⁹]+)", power, text)


def slash_names(text: str) -> str:
    """HTTP/2 → H T T P two, PS/2, HTTP/1.1: a name and its version, not a division or a fraction."""
    def name(m):
        letters = " ".join(m.group(1)) if len(m.group(1)) <= 5 else m.group(1)
        return f"{letters} {' point '.join(number(p) for p in m.group(2).split('.'))}"
    return re.sub(r"\b([A-Z]{2,})/(\d+(?:\.\d+)*)(?![\w/]|\.\d)", name, text)


def variables(text: str) -> str:
    """A coefficient and a one-letter variable (3y, 2x) are said apart: three y; a minus between math
    operands is "minus" (3y − 7, a - 4; a Unicode minus always is), never a dash or a hyphen."""
    text = re.sub(r"(?<![\w.])(\d+)([a-rt-z])\b(?!['’.]\w)", r"\1 \2", text)
    operand_l = r"(?:(?<=[\d)])|(?<=(?<![\w'’])[a-zA-Z]))"
    operand_r = r"(?=[\d(]|[a-zA-Z](?![\w'’]))"
    text = re.sub(operand_l + r"\s*−\s*" + operand_r, " minus ", text)
    return re.sub(r"(?:(?<=\d)|(?<=\d [a-z]))\s+-\s+" + operand_r + r"|" + operand_l + r"\s+-\s+(?=\d)",
                  " minus ", text)


def decades(text: str) -> str:
    """The 1990s → the nineteen nineties; 1900s → nineteen hundreds; 2010s → twenty tens."""
    def decade(m):
        said = year(int(m.group(1)))
        return said[:-1] + "ies" if said.endswith("y") else said + "s"
    return re.sub(r"(?<![\w.'’])(1[1-9]\d0|20\d0)s\b", decade, text)


def _model_number(n: str) -> str:
    """A model number is said in pairs: 150 → one fifty, 747 → seven forty seven, 101 → one oh one."""
    if len(n) == 3 and n[0] != "0" and n[1:] != "00":
        return f"{DIGIT[int(n[0])]} {'oh ' + DIGIT[int(n[2])] if n[1] == '0' else cardinal(int(n[1:]))}"
    return number(n)


def names_with_digits(text: str) -> str:
    """A capital letter and a number make a name: F-150 → F one fifty, Galaxy S23 → S twenty three,
    B-52, A4, I-95; a number and a capital letter too: 3M → three M, 5G → five G."""
    text = re.sub(r"(?<![\w\-/.])([A-Z])-?(\d{1,3})(?![\w/]|[.,]\d)",
                  lambda m: f"{m.group(1)} {_model_number(m.group(2))}", text)
    return re.sub(r"(?<![\w.])(\d+)([A-Z])\b(?!['’.]\w)", lambda m: f"{number(m.group(1))} {m.group(2)}", text)


def percents(text: str) -> str:
    return re.sub(SIGN + NUM + r"\s?%", lambda m: number(m.group(2), m.group(3), m.group(1) or "") + " percent", text)


def ranges(text: str) -> str:
    """1990-1995 → nineteen ninety to nineteen ninety five; 10–20 → ten to twenty (no spaces round the dash)."""
    def rng(m):
        a, b = m.group(1), m.group(2)
        say = lambda s: year(int(s)) if len(s) == 4 and 1100 <= int(s) <= 2099 else number(s)
        return f"{say(a)} to {say(b)}"
    return re.sub(r"(?<![\w.\-/:])(\d+)[-–](\d+)(?![\w\-/:]|\.\d)", rng, text)


def fractions(text: str) -> str:
    return re.sub(SIGN + r"(?<![\w./])(\d+)/(\d+)(?![\w/])",
                  lambda m: ("minus " if m.group(1) else "") + fraction(int(m.group(2)), int(m.group(3))), text)


OPS = {"+": "plus", "-": "minus", "−": "minus", "*": "times", "×": "times", "x": "times", "÷": "divided by",
       "/": "divided by", "=": "equals"}


def operators(text: str) -> str:
    """Arithmetic between numbers: 3 + 4 = 7 → 3 plus 4 equals 7 (numbers are said later)."""
    pat = re.compile(r"(?<=[\d)])\s*([+*×÷=])\s*(?=[-−]?[\d(])|(?<=[\d)])\s+([-−/x])\s+(?=[-−]?[\d(])")
    prev = None
    while prev != text:
        prev, text = text, pat.sub(lambda m: f" {OPS[m.group(1) or m.group(2)]} ", text)
    return text


def ordinals(text: str) -> str:
    return re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: ordinal(int(m.group(1))), text)


YEAR_CONTEXT = re.compile(r"\b(?:in|since|by|until|till|from|during|year|years|between|circa|around|before|after|"
                          r"early|late|mid|"
                          r"spring|summer|autumn|fall|winter|of (?:January|February|March|April|May|June|July|"
                          r"August|September|October|November|December))\s*$", re.I)


def numbers(text: str) -> str:
    """Whatever numbers are left: a year after "in", "since", ... as a year, others as cardinals
    ("the divisor of 1323" is not "thirteen twenty three"); a sign before a number is minus."""
    last_year = [-1]  # where the last number said as a year ended: "in 1991, 1995 and 2003" are all years
    yr = r"(?:1[1-9]\d\d|20\d\d)"
    listed = {n.start() + m.start() for m in re.finditer(  # three or more in a list are years ("of 1929, 1973
        rf"(?<![\w.,]){yr}(?:(?:,\s*|,?\s+(?:and|or)\s+){yr}){{2,}}(?![\w]|\.\d)", text)  # and 2008")
        for n in re.finditer(yr, m.group(0))}

    def num(m):
        sign, whole, frac = m.group(1) or "", m.group(2), m.group(3)
        if (not frac and not sign and len(whole) == 4 and 1100 <= int(whole) <= 2099
                and (YEAR_CONTEXT.search(m.string[:m.start()]) or m.start(2) in listed
                     or last_year[0] >= 0 and re.fullmatch(r"\s*(?:,|,?\s*(?:and|or|to|through|nor))\s*",
                                                           m.string[last_year[0]:m.start()]))):
            last_year[0] = m.end()
            return year(int(whole))
        return number(whole, frac, sign)
    return re.sub(SIGN + r"(?<![\w.])" + NUM + r"(?![\w]|\.\d)", num, text)


SYMBOLS = {
    "&": " and ", "%": " percent", "+": " plus ", "=": " equals ", "@": " at ", "°": " degrees", "€": " euros",
    "£": " pounds", "$": " dollars", "×": " times ", "±": " plus or minus ", "~": " about ", "≈": " about ",
    "→": " to ", "½": " one half", "¼": " one quarter", "¾": " three quarters", "−": " minus ",
}


def symbols(text: str) -> str:
    for sym, word in SYMBOLS.items():
        text = text.replace(sym, word)
    return text


RULES: list[tuple[str, Callable[[str], str]]] = [
    ("list", rewrite_line_list), ("inline_list", rewrite_inline_list), ("list_marker", lone_markers),
    ("markup", strip_markup),
    ("time", times), ("abbreviation", abbreviations), ("date", dates), ("temperature", temperatures),
    ("currency", currency), ("percent", percents), ("slash_name", slash_names), ("version", versions),
    ("unit", units), ("decade", decades), ("name_number", names_with_digits), ("power", powers),
    ("variable", variables), ("range", ranges), ("fraction", fractions), ("operator", operators),
    ("ordinal", ordinals), ("number", numbers), ("symbol", symbols),
]


def spoken(text: str) -> tuple[str, list[str]]:
    """The spoken form and the names of the rules that changed the text, in order."""
    fired = []
    for name, rule in RULES:
        new = rule(text)
        if new != text:
            fired.append(name)
            text = new
    return re.sub(r"\s+([,.;:?!])(?=\s|$)", r"\1", " ".join(text.split())), fired


def spoken_form(text: str) -> str:
    """Numbers, money, units, dates, times, symbols, abbreviations and lists as a reader says them."""
    return spoken(text)[0]


ASR_CLOCK = re.compile(r"\b(\d{1,2})\.(\d{2})(?=\s*[AaPp]\.?\s?[Mm]\b)|(?<=\bat )(\d{1,2})\.(\d{2})\b(?!\.\d)")


def wer_normalize(text: str) -> str:
    """Shared by reference and hypothesis: spoken form, lower case, no punctuation.

    Whisper writes clock times with a dot ("7.27pm", "at 11.34"): read as times, not decimals.
    """
    text = ASR_CLOCK.sub(lambda m: f"{m.group(1) or m.group(3)}:{m.group(2) or m.group(4)}", text)
    text = re.sub(r"\b(\d{1,2}(?::\d{2})?)([AaPp])\.?\s?([Mm])\b\.?", r"\1 \2\3", text)
    text = spoken_form(text).lower().replace("-", " ")
    text = re.sub(r"[^\w\s']", " ", text)
    return " ".join(w.strip("'") for w in text.split() if w.strip("'"))
