"""Quality classifier: train a fastText model on labeled text, then score documents with it.

The model is a versioned artifact: a directory named by the model file's sha256, holding
`model.bin` and `card.json` (training data hash and counts, parameters, held-out metrics).
Every table it scores records that hash in its lineage. Training is cached by (data, params),
so the demo's first run trains and later runs reuse the same artifact.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.stage import ModelStage, annotate, reject_where
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
            rows = zip(t.column(text_column).to_pylist(), t.column(label_column).to_pylist())
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


def evaluate(model, rows: list[tuple[str, str]], positive: str, threshold: float = 0.5) -> dict[str, Any]:
    tp = fp = fn = tn = 0
    for text, label in rows:
        p = positive_prob(model, text, positive)
        pred, gold = p >= threshold, label == positive
        tp += pred and gold
        fp += pred and not gold
        fn += (not pred) and gold
        tn += (not pred) and not gold
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4),
            "accuracy": round((tp + tn) / max(len(rows), 1), 4), "n": len(rows),
            "tp": tp, "fp": fp, "fn": fn, "tn": tn, "threshold": threshold, "positive": positive}


def positive_prob(model, text: str, positive: str) -> float:
    return _prob(*model.predict(prep(text), k=-1), f"__label__{positive}")


def _prob(labels: tuple[str, ...], probs, label: str) -> float:
    """Probability of `label` among fastText's (labels, probs), best first."""
    for lab, p in zip(labels, probs):
        if lab == label:
            return float(p)
    return 0.0


def train(rows: list[tuple[str, str]], out_root: str, positive: str = "hq", valid_frac: float = 0.1,
          source: str = "", **params: Any) -> Artifact:
    """Train on all rows but a held-out split (by text hash), report P/R/F1 on it, save by hash."""
    import fasttext

    params = {**DEFAULT_PARAMS, **params}
    labels = sorted({lab for _, lab in rows})
    if positive not in labels or len(labels) < 2:
        raise ValueError(f"need at least two labels including '{positive}', got {labels}")
    data_hash = hashlib.sha256(json.dumps(sorted(rows)).encode()).hexdigest()[:16]
    key = hashlib.sha256(json.dumps([data_hash, params, positive, valid_frac], sort_keys=True).encode()).hexdigest()[:16]
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
            "data_hash": data_hash, "train_rows": len(train_rows), "valid_rows": len(valid_rows),
            "train_seconds": round(seconds, 2), "metrics": evaluate(model, valid_rows, positive),
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
    """Stage: `quality_score` = P(positive label); rows under `threshold` are `low_quality`."""
    name = "quality"
    adds = [field("quality_score", pa.float32(), stats="hist:0:1:20")]

    def __init__(self, model_path: str, threshold: float = 0.5, positive: str = "hq", column: str = "text"):
        import fasttext
        self.model = fasttext.load_model(model_path)
        self.threshold, self.positive, self.column = threshold, positive, column
        self.label = f"__label__{positive}"

    def __call__(self, batch: pa.Table) -> pa.Table:
        predict, label = self.model.predict, self.label
        scores = []
        for text in batch.column(self.column).to_pylist():  # per-doc predict beats list predict
            scores.append(_prob(*predict(prep(text or ""), k=-1), label))
        arr = pa.array(scores, pa.float32())
        low = pc.less(arr, self.threshold)
        batch = annotate(batch, quality_score=arr)
        return reject_where(batch, low, "low_quality", pc.binary_join_element_wise(
            pc.cast(pc.round(arr, 3), pa.string()), pa.scalar(f" < {self.threshold}"), ""))

    @classmethod
    def model_info(cls, model_path: str, **params: Any) -> dict[str, Any]:
        card_path = os.path.join(os.path.dirname(model_path), "card.json")
        card = json.load(open(card_path)) if os.path.exists(card_path) else {}
        return {"kind": "fasttext", "path": model_path, "sha256": card.get("sha256") or sha256_file(model_path),
                "trained_on": card.get("source"), "data_hash": card.get("data_hash"),
                "valid_metrics": card.get("metrics")}
