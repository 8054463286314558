"""Gopher (Rae et al. 2021) quality and repetition rules, plus C4-style boilerplate rules.

One pass per document computes every metric (stored in the `heuristics` struct so a user can
re-threshold without re-scoring); the first rule that fails names the `drop_reason`
(`gopher_*`, `c4_*`). Defaults are the published thresholds, as DataTrove uses them.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field as dc_field, fields as dc_fields

import pyarrow as pa

from schemas.engine import TaskStage, annotate, unknown_parameter
from schemas.tables import field

STOP_WORDS = frozenset(["the", "be", "to", "of", "and", "that", "have", "with"])
BULLETS = ("•", "●", "○", "■", "□", "▪", "▫", "–", "-", "*", "·")
WORD_RE = re.compile(r"\S+")
PUNCT_STRIP = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~“”‘’«»…"
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
TERMINAL = (".", "!", "?", '"', "'", "”", "’")

METRICS = ["words", "mean_word_length", "symbol_word_ratio", "bullet_lines_ratio", "ellipsis_lines_ratio",
           "alpha_words_ratio", "stop_words", "dup_line_frac", "dup_para_frac", "dup_line_char_frac",
           "dup_para_char_frac", "top_2gram", "top_3gram", "top_4gram", "dup_5gram", "dup_6gram", "dup_7gram",
           "dup_8gram", "dup_9gram", "dup_10gram", "terminal_lines_ratio", "policy_lines"]
HEURISTICS = pa.struct([(m, pa.float32()) for m in METRICS])


@dataclass
class GopherThresholds:
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3
    max_mean_word_length: float = 10
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2
    max_dup_line_frac: float = 0.3
    max_dup_para_frac: float = 0.3
    max_dup_line_char_frac: float = 0.2
    max_dup_para_char_frac: float = 0.2
    max_top_ngram: dict = dc_field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})
    max_dup_ngram: dict = dc_field(default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})
    # C4-style (Raffel et al. 2020), applied to whole documents rather than by deleting lines
    reject_lorem_ipsum: bool = True
    min_terminal_lines_ratio: float = 0.0   # C4 keeps only lines ending in punctuation; 0 = off
    max_policy_lines: int = 2


def _dup_fracs(parts: list[str]) -> tuple[float, float]:
    """Fraction of parts that repeat an earlier one, and of their characters."""
    if not parts:
        return 0.0, 0.0
    seen: set[str] = set()
    dup, dup_chars = 0, 0
    for p in parts:
        if p in seen:
            dup += 1
            dup_chars += len(p)
        else:
            seen.add(p)
    total_chars = sum(len(p) for p in parts) or 1
    return dup / len(parts), dup_chars / total_chars


def _top_ngram_frac(words: list[str], n: int, total_chars: int) -> float:
    """Characters in the most frequent n-gram's occurrences over all word characters."""
    if len(words) < n:
        return 0.0
    grams = Counter(zip(*[words[i:] for i in range(n)]))
    gram, count = grams.most_common(1)[0]
    if count < 2:
        return 0.0
    return sum(len(w) for w in gram) * count / total_chars


def _dup_ngram_frac(words: list[str], lengths: list[int], n: int, total_chars: int) -> float:
    """Characters in words covered by repeated n-grams (every occurrence after the first)."""
    if len(words) < n:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    covered_until = -1
    chars = 0
    for i, gram in enumerate(zip(*[words[k:] for k in range(n)])):
        if gram in seen:
            start = max(i, covered_until + 1)
            end = i + n - 1
            if start <= end:
                chars += sum(lengths[start:end + 1])
                covered_until = end
        else:
            seen.add(gram)
    return chars / total_chars


def score(text: str, t: GopherThresholds) -> tuple[dict[str, float], str | None, str | None]:
    """All metrics of one document, and the first failing rule (reason, detail)."""
    raw_words = WORD_RE.findall(text)
    words = [w.strip(PUNCT_STRIP).lower() for w in raw_words]
    words = [w for w in words if w]
    n = len(raw_words)
    lengths = [len(w) for w in words]
    total_chars = sum(lengths) or 1
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    m: dict[str, float] = {
        "words": n,
        "mean_word_length": (sum(lengths) / len(words)) if words else 0.0,
        "symbol_word_ratio": (text.count("#") + text.count("...") + text.count("…")) / max(n, 1),
        "bullet_lines_ratio": sum(ln.startswith(BULLETS) for ln in lines) / max(len(lines), 1),
        "ellipsis_lines_ratio": sum(ln.endswith(("...", "…")) for ln in lines) / max(len(lines), 1),
        "alpha_words_ratio": sum(any(c.isalpha() for c in w) for w in raw_words) / max(n, 1),
        "stop_words": sum(w in STOP_WORDS for w in words),
        "terminal_lines_ratio": sum(ln.endswith(TERMINAL) for ln in lines) / max(len(lines), 1),
        "policy_lines": sum(any(p in ln.lower() for p in POLICY) for ln in lines),
    }
    m["dup_line_frac"], m["dup_line_char_frac"] = _dup_fracs(lines)
    m["dup_para_frac"], m["dup_para_char_frac"] = _dup_fracs(paras)
    for k in (2, 3, 4):
        m[f"top_{k}gram"] = _top_ngram_frac(words, k, total_chars)
    for k in range(5, 11):
        m[f"dup_{k}gram"] = _dup_ngram_frac(words, lengths, k, total_chars)
    return m, *_first_failure(m, text, t)


def _first_failure(m: dict[str, float], text: str, t: GopherThresholds) -> tuple[str | None, str | None]:
    checks: list[tuple[str, bool, str | None]] = [
        ("gopher_too_few_words", m["words"] < t.min_words, f"{m['words']:.0f} < {t.min_words}"),
        ("gopher_too_many_words", m["words"] > t.max_words, f"{m['words']:.0f} > {t.max_words}"),
        ("gopher_mean_word_length", not t.min_mean_word_length <= m["mean_word_length"] <= t.max_mean_word_length,
         f"{m['mean_word_length']:.2f}"),
        ("gopher_symbol_ratio", m["symbol_word_ratio"] > t.max_symbol_word_ratio, f"{m['symbol_word_ratio']:.3f}"),
        ("gopher_bullet_lines", m["bullet_lines_ratio"] > t.max_bullet_lines_ratio, f"{m['bullet_lines_ratio']:.3f}"),
        ("gopher_ellipsis_lines", m["ellipsis_lines_ratio"] > t.max_ellipsis_lines_ratio,
         f"{m['ellipsis_lines_ratio']:.3f}"),
        ("gopher_non_alpha_words", m["alpha_words_ratio"] < t.min_alpha_words_ratio, f"{m['alpha_words_ratio']:.3f}"),
        ("gopher_stop_words", m["stop_words"] < t.min_stop_words, f"{m['stop_words']:.0f} < {t.min_stop_words}"),
        ("gopher_dup_lines", m["dup_line_frac"] > t.max_dup_line_frac, f"{m['dup_line_frac']:.3f}"),
        ("gopher_dup_paragraphs", m["dup_para_frac"] > t.max_dup_para_frac, f"{m['dup_para_frac']:.3f}"),
        ("gopher_dup_line_chars", m["dup_line_char_frac"] > t.max_dup_line_char_frac, f"{m['dup_line_char_frac']:.3f}"),
        ("gopher_dup_paragraph_chars", m["dup_para_char_frac"] > t.max_dup_para_char_frac,
         f"{m['dup_para_char_frac']:.3f}"),
    ]
    checks += [(f"gopher_top_{k}gram", m[f"top_{k}gram"] > v, f"{m[f'top_{k}gram']:.3f}")
               for k, v in sorted(t.max_top_ngram.items())]
    checks += [(f"gopher_dup_{k}gram", m[f"dup_{k}gram"] > v, f"{m[f'dup_{k}gram']:.3f}")
               for k, v in sorted(t.max_dup_ngram.items())]
    checks += [
        ("c4_lorem_ipsum", t.reject_lorem_ipsum and "lorem ipsum" in text.lower(), None),
        ("c4_terminal_punctuation", m["terminal_lines_ratio"] < t.min_terminal_lines_ratio,
         f"{m['terminal_lines_ratio']:.3f}"),
        ("c4_policy_lines", m["policy_lines"] > t.max_policy_lines, f"{m['policy_lines']:.0f}"),
    ]
    for reason, failed, detail in checks:
        if failed:
            return reason, detail
    return None, None


class GopherFilter(TaskStage):
    """Stage: scores every row with all heuristics; the first failing rule is its drop_reason."""
    name = "heuristics"
    adds = [field("heuristics", HEURISTICS)]

    def __init__(self, column: str = "text", **thresholds):
        self.column = column
        self.t = GopherThresholds(**thresholds)

    @classmethod
    def validate(cls, column: str = "text", **thresholds) -> None:
        """Checked when the pipeline is built: a misspelt threshold names itself there."""
        problem = unknown_parameter(thresholds, ["column", *(f.name for f in dc_fields(GopherThresholds))])
        if problem:
            raise TypeError(problem)

    def __call__(self, batch: pa.Table) -> pa.Table:
        metrics, reasons, details = [], [], []
        for text in batch.column(self.column).to_pylist():
            m, reason, detail = score(text or "", self.t)
            metrics.append(m)
            reasons.append(reason)
            details.append(detail)
        batch = annotate(batch, heuristics=pa.array(metrics, HEURISTICS))
        return annotate(batch, drop_reason=pa.array(reasons, pa.string()),
                        reject_detail=pa.array(details, pa.string()))

    def params(self) -> dict:
        return {"column": self.column, **asdict(self.t)}
