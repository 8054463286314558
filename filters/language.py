"""Language identification: which language a document is in, and how sure the model is.

Every row gets `language` (ISO 639-1, `un` when undecided) and `language_score` (0-1); rows
whose language is not one of `languages`, or whose score is under `min_score`, are dropped as
`language:<code>` (DataTrove's LanguageFilter rule, its 0.65 default). With `keep_uncertain` only
rows the model is `min_score` sure are in another language are dropped: short text (a spoken
query of eight words) rarely reaches the score in any language, so the speech pipeline's English
check (pipelines/speech_sft.py, after synth.speech_text's function-word rule) keeps what the model
cannot tell and drops what it is sure of. The models ship inside
their PyPI packages, nothing is downloaded: py3langid (the default: langid.py's 97-language
naive Bayes model, numpy only), pycld2 (Chrome's CLD2) and lingua (n-gram models; the most
accurate on short text but slow to load). bench/README.md "Language identification" compares
them on man-page text in eight languages.
"""
from __future__ import annotations

import functools

import pyarrow as pa

from schemas.engine.stage import TaskStage, annotate, unknown_parameter
from schemas.tables import field

BACKENDS = ("py3langid", "cld2", "lingua")
MAX_CHARS = 10_000  # the start of a long document decides; its language rarely changes after that


@functools.lru_cache(maxsize=None)
def _py3langid():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


@functools.lru_cache(maxsize=None)
def _lingua():
    from lingua import LanguageDetectorBuilder
    return LanguageDetectorBuilder.from_all_languages().build()


def _clean(text: str) -> str:
    return " ".join(text[:MAX_CHARS].split())


def detect(text: str, backend: str = "py3langid") -> tuple[str, float]:
    """(ISO 639-1 code, score in 0-1) of one text; ("un", 0.0) when the model cannot tell."""
    text = _clean(text or "")
    if not text:
        return "un", 0.0
    if backend == "py3langid":
        code, prob = _py3langid().classify(text)
        return code, float(prob)
    if backend == "cld2":
        import pycld2
        printable = "".join(c for c in text if c.isprintable())  # cld2 refuses control characters
        try:
            reliable, _, details = pycld2.detect(printable)
        except pycld2.error:
            return "un", 0.0
        code, percent = details[0][1], details[0][2]
        return ("un", 0.0) if code in ("un", "xx") else (code.split("-")[0], percent / 100 if reliable else 0.0)
    if backend == "lingua":
        values = _lingua().compute_language_confidence_values(text)
        if not values or values[0].value <= 0:
            return "un", 0.0
        return values[0].language.iso_code_639_1.name.lower(), float(values[0].value)
    raise ValueError(f"unknown language backend {backend!r} ({', '.join(BACKENDS)})")


class LanguageId(TaskStage):
    """Stage: `language` and `language_score` on every row; other languages are `language:<code>`."""
    name = "language"
    kind = "task"
    adds = [field("language", pa.string(), stats="category"),
            field("language_score", pa.float32(), stats="hist:0:1:20")]

    def __init__(self, languages: list[str] | None = None, min_score: float = 0.65, backend: str = "py3langid",
                 column: str = "text", keep_uncertain: bool = False):
        self.languages = None if languages is None else [c.lower() for c in languages]
        self.min_score, self.backend, self.column = min_score, backend, column
        self.keep_uncertain = keep_uncertain

    @classmethod
    def validate(cls, **params) -> None:
        problem = unknown_parameter(params, ["languages", "min_score", "backend", "column", "keep_uncertain"])
        if problem:
            raise TypeError(problem)
        if params.get("backend", "py3langid") not in BACKENDS:
            raise TypeError(f"backend must be one of {', '.join(BACKENDS)}, not {params['backend']!r}")
        if not 0 <= params.get("min_score", 0.65) <= 1:
            raise TypeError(f"min_score must be in [0, 1], not {params['min_score']}")
        langs = params.get("languages")
        if langs is not None and (isinstance(langs, str) or not all(isinstance(c, str) and c for c in langs)):
            raise TypeError(f"languages must be a list of ISO 639-1 codes, not {langs!r}")

    @classmethod
    def model_info(cls, backend: str = "py3langid", **_params) -> dict:
        from importlib.metadata import version
        package = {"py3langid": "py3langid", "cld2": "pycld2", "lingua": "lingua-language-detector"}[backend]
        return {"language_id": backend, "package": package, "version": version(package), "max_chars": MAX_CHARS}

    def __call__(self, batch: pa.Table) -> pa.Table:
        codes, scores, reasons, details = [], [], [], []
        for text in batch.column(self.column).to_pylist():
            code, score = detect(text, self.backend)
            codes.append(code)
            scores.append(score)
            listed = self.languages is None or code in self.languages
            kept = listed or score < self.min_score if self.keep_uncertain else listed and score >= self.min_score
            reasons.append(None if kept else f"language:{code}")
            details.append(None if kept else f"{code} {score:.3f}")
        batch = annotate(batch, language=pa.array(codes, pa.string()), language_score=pa.array(scores, pa.float32()))
        return annotate(batch, drop_reason=pa.array(reasons, pa.string()), reject_detail=pa.array(details, pa.string()))

    def params(self) -> dict:
        return {"languages": self.languages, "min_score": self.min_score, "backend": self.backend,
                "column": self.column, "keep_uncertain": self.keep_uncertain}
