"""Quality classifier: train a fastText model on labeled text, then score documents with it.

The model is a versioned artifact: a directory named by the model file's sha256, holding
`model.bin` and `card.json` (training data hash and counts, parameters, held-out metrics).
Every table it scores records that hash in its lineage. Training is cached by (data, params),
so the demo's first run trains and later runs reuse the same artifact. Labels may also be LLM
grades (`edu_grades`, `pipelines/annotate_edu.py`): binarised at a grade threshold, or one
class per grade, whose score is then P(grade >= threshold).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from schemas.engine.stage import ModelStage, annotate, reject_where
from schemas.stats import wilson
from schemas.tables import field

SHIPPED_SET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "quality_labeled.jsonl.gz")
DEFAULT_PARAMS = {"epoch": 10, "lr": 0.5, "wordNgrams": 2, "dim": 32, "bucket": 200_000, "minCount": 2,
                  "loss": "softmax", "thread": 1, "seed": 0}  # one thread: the same data gives the same model


def prep(text: str) -> str:
    """The same normalisation at training and prediction time: lower case, one line (fastText
    splits words on whitespace itself; a newline would end the example)."""
    return text.lower().replace("\n", " ")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_labeled(source: str, text_column: str = "text", label_column: str = "label",
                 warehouse: str | None = None) -> list[tuple[str, str]]:
    """(text, label) pairs from JSONL(.gz), Parquet, or a store table `name[@version]`."""
    if os.path.exists(source):
        if source.endswith(".parquet"):
            import pyarrow.parquet as pq
            t = pq.read_table(source, columns=[text_column, label_column])
            rows: Iterable[tuple[Any, Any]] = zip(t.column(text_column).to_pylist(), t.column(label_column).to_pylist())
        else:
            opener = gzip.open if source.endswith(".gz") else open
            with opener(source, "rt", encoding="utf-8") as f:
                recs = [json.loads(line) for line in f if line.strip()]
            rows = ((r.get(text_column), r.get(label_column)) for r in recs)
    else:
        from schemas.store import Store
        t = Store(warehouse).read_arrow(source, [text_column, label_column])
        rows = zip(t.column(text_column).to_pylist(), t.column(label_column).to_pylist())
    return [(t, str(lab)) for t, lab in rows if t and lab is not None]


def _is_valid(text: str, valid_frac: float) -> bool:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF < valid_frac


@dataclass
class Artifact:
    path: str       # model.bin
    sha256: str
    card: dict[str, Any]


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def evaluate(model, rows: list[tuple[str, str]], positive: str | list[str], threshold: float = 0.5,
             multiclass: bool = False) -> dict[str, Any]:
    """Agreement with held-out labels. Always: the binary view, P(any positive label) >= threshold
    against "gold label is positive" (precision/recall/F1, accuracy, macro-F1 of the two
    classes). Multi-class (grades): `accuracy`/`macro_f1` are over the exact grade (argmax),
    the binary view moves to `binary_accuracy`, and `mae` is |expected grade - gold grade|."""
    positives = [positive] if isinstance(positive, str) else list(positive)
    tp = fp = fn = tn = 0
    exact, abs_err = 0, 0.0
    per: dict[str, dict[str, int]] = {}
    for text, label in rows:
        labels, probs = model.predict(prep(text), k=-1)
        p = sum(float(q) for lab, q in zip(labels, probs) if lab[len("__label__"):] in positives)
        pred, gold = p >= threshold, label in positives
        tp += pred and gold
        fp += pred and not gold
        fn += (not pred) and gold
        tn += (not pred) and not gold
        if multiclass:
            top = labels[0][len("__label__"):] if labels else ""
            exact += top == label
            for lab, d in ((label, "gold"), (top, "pred")):
                per.setdefault(lab, {"gold": 0, "pred": 0, "hit": 0})[d] += 1
            per[label]["hit"] += top == label
            abs_err += abs(sum(int(lab[len("__label__"):]) * float(q) for lab, q in zip(labels, probs)) - int(label))
    n = len(rows)
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    binary_acc = (tp + tn) / max(n, 1)
    out = {"precision": round(prec, 4), "recall": round(rec, 4), "f1": round(_f1(tp, fp, fn), 4),
           "accuracy": round(binary_acc, 4), "accuracy_ci95": wilson(tp + tn, n),
           "macro_f1": round((_f1(tp, fp, fn) + _f1(tn, fn, fp)) / 2, 4), "n": n,
           "tp": tp, "fp": fp, "fn": fn, "tn": tn, "threshold": threshold, "positive": ",".join(positives)}
    if multiclass:
        f1s = [_f1(c["hit"], c["pred"] - c["hit"], c["gold"] - c["hit"]) for c in per.values()]
        out.update(binary_accuracy=out["accuracy"], binary_macro_f1=out["macro_f1"],
                   accuracy=round(exact / max(n, 1), 4), accuracy_ci95=wilson(exact, n),
                   macro_f1=round(sum(f1s) / max(len(f1s), 1), 4), mae=round(abs_err / max(n, 1), 4),
                   per_grade={k: per[k] for k in sorted(per)})
    return out


def positive_prob(model, text: str, positive: str) -> float:
    labels, probs = model.predict(prep(text), k=-1)
    return _prob(labels, probs, f"__label__{positive}")


def _prob(labels: tuple[str, ...], probs, label: str) -> float:
    """Probability of `label` among fastText's (labels, probs), best first."""
    for lab, p in zip(labels, probs):
        if lab == label:
            return float(p)
    return 0.0


def grade_labels(rows: list[tuple[str, str]], threshold: int | None = None, multiclass: bool = False,
                 positive: str = "hq") -> list[tuple[str, str]]:
    """Integer grades (e.g. `edu_score` 0-5) as fastText labels: one label per grade
    (`multiclass`), or `positive` for grade >= threshold and `lq` (or `not_<positive>`) below."""
    negative = "lq" if positive == "hq" else f"not_{positive}"
    if threshold is None and not multiclass:
        raise ValueError("grade_labels needs a threshold unless multiclass")
    cut = float("inf") if threshold is None else threshold  # unused when multiclass
    out = []
    for text, label in rows:
        try:
            g = float(label)
        except ValueError:
            raise ValueError(f"grade labels must be integers, got {label!r}") from None
        if g != int(g):
            raise ValueError(f"grade labels must be integers, got {label!r}")
        out.append((text, str(int(g)) if multiclass else positive if g >= cut else negative))
    return out


def train(rows: list[tuple[str, str]], out_root: str, positive: str = "hq", valid_frac: float = 0.1,
          source: str = "", multiclass: bool = False, grade_threshold: int | None = None, **params: Any) -> Artifact:
    """Train on all rows but a held-out split (by text hash), report agreement on it, save by hash.

    Binary: the score is P(`positive`). Multi-class over grades: the score is P(grade >=
    `grade_threshold`), the summed probability of those grades' labels (the card lists them
    as `positive_labels`, which `QualityClassifier` reads)."""
    import fasttext

    params = {**DEFAULT_PARAMS, **params}
    labels = sorted({lab for _, lab in rows})
    if multiclass:
        grade_threshold = 3 if grade_threshold is None else grade_threshold
        positives = [lab for lab in labels if int(lab) >= grade_threshold]
        if len(labels) < 2 or not positives:
            raise ValueError(f"need at least two grades, one of them >= {grade_threshold}, got {labels}")
    else:
        positives = [positive]
        if positive not in labels or len(labels) < 2:
            raise ValueError(f"need at least two labels including '{positive}', got {labels}")
    data_hash = hashlib.sha256(json.dumps(sorted(rows)).encode()).hexdigest()[:16]
    key = hashlib.sha256(json.dumps([data_hash, params, positives, valid_frac, multiclass],
                                    sort_keys=True).encode()).hexdigest()[:16]
    index = os.path.join(out_root, "by-config", f"{key}.json")
    if os.path.exists(index):  # same data and parameters: reuse
        with open(index) as f:
            cached = json.load(f)
        if os.path.exists(cached["path"]):
            return Artifact(cached["path"], cached["sha256"], cached["card"])
    train_rows = [r for r in rows if not _is_valid(r[0], valid_frac)]
    valid_rows = [r for r in rows if _is_valid(r[0], valid_frac)]
    os.makedirs(out_root, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=out_root, delete=False, encoding="utf-8") as f:
        for text, label in train_rows:
            f.write(f"__label__{label} {prep(text)}\n")
        tmp = f.name
    try:
        model = fasttext.train_supervised(input=tmp, verbose=0, **params)
    finally:
        os.unlink(tmp)
    seconds = time.perf_counter() - t0
    tmp_model = os.path.join(out_root, f".model-{key}.bin")
    model.save_model(tmp_model)
    sha = sha256_file(tmp_model)
    final_dir = os.path.join(out_root, sha[:16])
    os.makedirs(final_dir, exist_ok=True)
    path = os.path.join(final_dir, "model.bin")
    os.replace(tmp_model, path)
    card = {"sha256": sha, "labels": labels, "positive": positive, "params": params, "source": source,
            "mode": "multiclass" if multiclass else "binary", "positive_labels": positives,
            "grade_threshold": grade_threshold,
            "data_hash": data_hash, "train_rows": len(train_rows), "valid_rows": len(valid_rows),
            "train_seconds": round(seconds, 2),
            "metrics": evaluate(model, valid_rows, positives, multiclass=multiclass),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with open(os.path.join(final_dir, "card.json"), "w") as f:
        json.dump(card, f, indent=2)
    os.makedirs(os.path.dirname(index), exist_ok=True)
    with open(index, "w") as f:
        json.dump({"path": path, "sha256": sha, "card": card}, f)
    return Artifact(path, sha, card)


def default_model(warehouse: str) -> Artifact:
    """The classifier trained on the shipped labeled set (trained once, then reused)."""
    rows = load_labeled(SHIPPED_SET)
    return train(rows, os.path.join(os.path.abspath(warehouse), "_models", "quality"),
                 source="filters/data/quality_labeled.jsonl.gz (python3.11-doc vs fortunes+faker)")


class QualityClassifier(ModelStage):
    """Stage: `quality_score` = P(positive label) — the card's `positive_labels` when it lists
    them (a multi-class grade model: P(grade >= its threshold)); under `threshold` is `low_quality`."""
    name = "quality"
    adds = [field("quality_score", pa.float32(), stats="hist:0:1:20")]

    def __init__(self, model_path: str, threshold: float = 0.5, positive: str = "hq", column: str = "text"):
        import fasttext
        self.model = fasttext.load_model(model_path)
        self.threshold, self.positive, self.column = threshold, positive, column
        # A model trained on grades lists its positive labels (grades >= its threshold) in its card.
        card_path = os.path.join(os.path.dirname(model_path), "card.json")
        card = json.load(open(card_path)) if os.path.exists(card_path) else {}
        self.labels = {f"__label__{lab}" for lab in card.get("positive_labels") or [positive]}

    def __call__(self, batch: pa.Table) -> pa.Table:
        predict, wanted = self.model.predict, self.labels
        scores = []
        for text in batch.column(self.column).to_pylist():  # per-doc predict beats list predict
            labels, probs = predict(prep(text or ""), k=-1)
            scores.append(sum(float(p) for lab, p in zip(labels, probs) if lab in wanted))
        arr = pa.array(scores, pa.float32())
        low = pc.less(arr, self.threshold)
        batch = annotate(batch, quality_score=arr)
        return reject_where(batch, low, "low_quality", pc.binary_join_element_wise(
            pc.cast(pc.round(arr, 3), pa.string()), pa.scalar(f" < {self.threshold}"), ""))

    @classmethod
    def model_info(cls, model_path: str, **params: Any) -> dict[str, Any]:  # type: ignore[override]  # its own parameters, bound by StageSpec
        card_path = os.path.join(os.path.dirname(model_path), "card.json")
        card = json.load(open(card_path)) if os.path.exists(card_path) else {}
        return {"kind": "fasttext", "path": model_path, "sha256": card.get("sha256") or sha256_file(model_path),
                "trained_on": card.get("source"), "data_hash": card.get("data_hash"),
                "mode": card.get("mode", "binary"), "positive_labels": card.get("positive_labels"),
                "valid_metrics": card.get("metrics")}
