"""Line-level rules for extracted web text: C4's line cleaner and FineWeb's document rules.

C4 (Raffel et al. 2020, as DataTrove's C4QualityFilter applies it) removes lines rather than
documents: a line without terminal punctuation, with fewer than `min_words_per_line` words, with
a word over `max_word_length` characters, mentioning javascript or a cookie/terms policy is cut;
a document with "lorem ipsum" or a curly bracket (code, templates) or under `min_sentences`
sentences after cleaning is dropped (`c4_lorem_ipsum`, `c4_curly_bracket`, `c4_too_few_sentences`).
The stage's defaults are C4's; FineWeb's recipe (DataTrove's examples/fineweb.py, and the web chain of
text_curation.py) runs it after the Gopher rules with `filter_no_terminal_punct=False`, so the lines
FineWeb's punctuation rule counts are still there.
FineWeb (Penedo et al. 2024) drops documents whose lines mostly lack terminal punctuation
(`fineweb_line_punct_ratio`), are mostly short (`fineweb_short_line_ratio`), repeat earlier lines
(`fineweb_char_dup_ratio`) or are list-like (`fineweb_list_ratio`: newlines per word). Counts and
ratios stay on the row (`c4_lines`, `fineweb`) so a user can re-threshold without re-scoring.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields as dc_fields

import pyarrow as pa

from schemas.engine.stage import TaskStage, annotate, unknown_parameter
from schemas.tables import field

END_PUNCTUATION = (".", "?", "!", '"', "'")
TERMINAL_PUNCTUATION = (".", "!", "?", "…", "。", "！", "？", "؟", "।", "॥", "።", "။", "｡", "．", "︒", "﹒",
                        '"', "'", "”", "’", "»", ":", ";")
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")

C4_COUNTS = ["lines", "kept", "too_long_word", "no_terminal_punct", "too_few_words", "javascript", "policy",
             "sentences"]
C4_STRUCT = pa.struct([(k, pa.int32()) for k in C4_COUNTS])
FINEWEB_METRICS = ["line_punct_ratio", "short_line_ratio", "char_dup_ratio", "list_ratio"]
FINEWEB_STRUCT = pa.struct([(k, pa.float32()) for k in FINEWEB_METRICS])


@dataclass
class C4Settings:
    min_words_per_line: int = 3
    max_word_length: int = 1000
    min_sentences: int = 5
    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True


def c4_clean(text: str, s: C4Settings) -> tuple[str, dict[str, int], str | None]:
    """(kept lines joined, counts, reason or None) of one document."""
    n = dict.fromkeys(C4_COUNTS, 0)
    kept = []
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        n["lines"] += 1
        words = line.split()
        if any(len(w) > s.max_word_length for w in words):
            n["too_long_word"] += 1
            continue
        if s.remove_citations:
            line = CITATION.sub("", line)
        if s.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith("...")):
            n["no_terminal_punct"] += 1
            continue
        if len(words) < s.min_words_per_line:
            n["too_few_words"] += 1
            continue
        low = line.lower()
        if s.filter_lorem_ipsum and "lorem ipsum" in low:
            return text, n, "c4_lorem_ipsum"
        if s.filter_javascript and "javascript" in low:
            n["javascript"] += 1
            continue
        if s.filter_curly_bracket and "{" in line:
            return text, n, "c4_curly_bracket"
        if s.filter_policy and any(p in low for p in POLICY):
            n["policy"] += 1
            continue
        n["sentences"] += max(len(SENTENCE_END.findall(line)), 1)
        kept.append(line)
    n["kept"] = len(kept)
    if n["sentences"] < s.min_sentences:
        return text, n, "c4_too_few_sentences"
    return "\n".join(kept), n, None


def _check(params: dict, settings_cls, extra: list[str]) -> None:
    problem = unknown_parameter(params, [*(f.name for f in dc_fields(settings_cls)), *extra])
    if problem:
        raise TypeError(problem)
    for k, v in params.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
            raise TypeError(f"{k} must not be negative, not {v}")


class C4LineFilter(TaskStage):
    """Stage: C4's line cleaner; the text becomes its kept lines, `c4_lines` counts what was cut."""
    name = "c4_lines"
    kind = "task"
    adds = [field("c4_lines", C4_STRUCT)]

    def __init__(self, column: str = "text", **settings):
        self.column, self.s = column, C4Settings(**settings)

    @classmethod
    def validate(cls, column: str = "text", **settings) -> None:
        _check(settings, C4Settings, [])

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts, counts, reasons = [], [], []
        for text in batch.column(self.column).to_pylist():
            cleaned, n, reason = c4_clean(text or "", self.s)
            texts.append(cleaned)
            counts.append(n)
            reasons.append(reason)
        batch = annotate(batch, **{self.column: pa.array(texts, pa.string()), "c4_lines": pa.array(counts, C4_STRUCT)})
        return annotate(batch, drop_reason=pa.array(reasons, pa.string()))

    def params(self) -> dict:
        return {"column": self.column, **asdict(self.s)}


@dataclass
class FineWebSettings:
    min_line_punct_ratio: float = 0.12
    line_punct_exclude_zero: bool = False
    max_short_line_ratio: float = 0.67
    short_line_length: int = 30
    max_char_dup_ratio: float = 0.01
    max_list_ratio: float = 0.3


def fineweb_score(text: str, s: FineWebSettings) -> tuple[dict[str, float], str | None, str | None]:
    """FineWeb's metrics of one document and its first failing rule (reason, detail)."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    m = dict.fromkeys(FINEWEB_METRICS, 0.0)
    if not lines:
        return m, "fineweb_empty", None
    m["line_punct_ratio"] = sum(ln.endswith(TERMINAL_PUNCTUATION) for ln in lines) / len(lines)
    m["short_line_ratio"] = sum(len(ln) <= s.short_line_length for ln in lines) / len(lines)
    seen, dup_chars = set(), 0
    for ln in lines:
        if ln in seen:
            dup_chars += len(ln)
        seen.add(ln)
    m["char_dup_ratio"] = dup_chars / max(len(text.replace("\n", "")), 1)
    m["list_ratio"] = text.count("\n") / max(len(text.split()), 1)
    if m["line_punct_ratio"] <= s.min_line_punct_ratio and not (m["line_punct_ratio"] == 0
                                                                and s.line_punct_exclude_zero):
        return m, "fineweb_line_punct_ratio", f"{m['line_punct_ratio']:.3f}"
    if m["short_line_ratio"] >= s.max_short_line_ratio:
        return m, "fineweb_short_line_ratio", f"{m['short_line_ratio']:.3f}"
    if m["char_dup_ratio"] >= s.max_char_dup_ratio:
        return m, "fineweb_char_dup_ratio", f"{m['char_dup_ratio']:.3f}"
    if m["list_ratio"] > s.max_list_ratio:
        return m, "fineweb_list_ratio", f"{m['list_ratio']:.3f}"
    return m, None, None


class FineWebFilter(TaskStage):
    """Stage: FineWeb's four document rules; the metrics stay on the row as `fineweb`."""
    name = "fineweb"
    kind = "task"
    adds = [field("fineweb", FINEWEB_STRUCT)]

    def __init__(self, column: str = "text", **settings):
        self.column, self.s = column, FineWebSettings(**settings)

    @classmethod
    def validate(cls, column: str = "text", **settings) -> None:
        _check(settings, FineWebSettings, [])

    def __call__(self, batch: pa.Table) -> pa.Table:
        metrics, reasons, details = [], [], []
        for text in batch.column(self.column).to_pylist():
            m, reason, detail = fineweb_score(text or "", self.s)
            metrics.append(m)
            reasons.append(reason)
            details.append(detail)
        batch = annotate(batch, fineweb=pa.array(metrics, FINEWEB_STRUCT))
        return annotate(batch, drop_reason=pa.array(reasons, pa.string()), reject_detail=pa.array(details, pa.string()))

    def params(self) -> dict:
        return {"column": self.column, **asdict(self.s)}
