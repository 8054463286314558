"""Model versions in the store: the `models` table (one row per model, each published as its own
snapshot, as the loop's `register` does) holds imported bases (`curate model import`), trained
checkpoints (`curate train`, each round of the loop) and Hugging Face exports (`curate model
export`); `model_versions` turns its rows into a lineage graph readable both ways.

A checkpoint names where it came from in its checkpoint.json: `init` (the checkpoint it was
trained from, model/checkpoint.py), `trained_on` (table versions), `source` (an import's file).
The row copies that into its `metrics` JSON when registered, so the link survives the files.
Registering the same model at the same path again returns the snapshot already made (the
store's publish-once contract: the run id hashes the checkpoint id, stage, run and path)."""
from __future__ import annotations

import json
import os
from typing import Any

import pyarrow as pa

from schemas.store import Store

TABLE = "models"
EXPORT = "export"


def _schema() -> pa.Schema:
    from pipelines.loop_bench import MODELS  # the loop's table: one registry for every model
    return MODELS


def _publish(store: Store, row: dict[str, Any], source: str, pipeline: str) -> int:
    from pipelines.derived import publish_derived

    schema = _schema()
    full = {f.name: None for f in schema} | row
    return publish_derived(store, TABLE, schema, pa.Table.from_pylist([full], schema=schema), source=source,
                           pipeline=pipeline, config={"checkpoint": row["id"], "stage": row["stage"],
                                                      "run": row.get("run"), "path": row["path"]},
                           rows_in=1, used=1, reasons={}, unit="checkpoints", mode="append")


def register_checkpoint(store: Store, path: str, stage: str | None = None, run: str | None = None,
                        pipeline: str = "curate", round_: int | None = None, accuracy: float | None = None) -> int:
    """An imported or trained checkpoint at `path` as a row of `models`; returns its snapshot.
    A loop gives the round and held-out accuracy of its checkpoints (the table's own columns)."""
    from model import checkpoint

    path = os.path.abspath(path)
    m = checkpoint.meta(path)
    links = {k: m[k] for k in ("init", "source", "source_format", "lora") if m.get(k)}
    row = {"id": m["id"], "path": path, "stage": stage or m.get("stage") or "sft", "step": m.get("step"),
           "trained_on": m.get("trained_on") or [], "metrics": json.dumps(links, default=str), "run": run,
           "round": round_, "accuracy": accuracy}
    source = ",".join(m.get("trained_on") or []) or m.get("source") or (m.get("init") or {}).get("path") or path
    return _publish(store, row, source, pipeline)


def register_export(store: Store, ckpt: str, out: str) -> int:
    """A Hugging Face export of checkpoint `ckpt` at `out` as a row of `models` (stage `export`, the
    id of the checkpoint whose weights it holds)."""
    from model import checkpoint

    m = checkpoint.meta(ckpt)
    links = {"exported_from": {"path": os.path.abspath(ckpt), "id": m["id"], "stage": m.get("stage")}}
    row = {"id": m["id"], "path": os.path.abspath(out), "stage": EXPORT, "step": m.get("step"),
           "trained_on": m.get("trained_on") or [], "metrics": json.dumps(links)}
    return _publish(store, row, os.path.abspath(ckpt), "curate model export")


def _tags_by_model(store: Store) -> dict[tuple, tuple[int, list[str], int]]:
    """(checkpoint id, stage, run, path or None) → (snapshot, tags, order of publishing) from each
    append's config (snapshot ids are random: the order is the table's history)."""
    out: dict[tuple, tuple[int, list[str], int]] = {}
    for i, v in enumerate(store.versions(TABLE)):
        if v["operation"] != "append" or v.get("pending"):
            continue
        cfg = store.properties(f"{TABLE}@{v['snapshot_id']}").get("config") or {}
        key = (cfg.get("checkpoint"), cfg.get("stage"), cfg.get("run"), cfg.get("path"))
        out[key] = (v["snapshot_id"], v["tags"], i)
    return out


def _parent_of(row: dict[str, Any], links: dict[str, Any]) -> dict[str, Any] | None:
    """What a model was made from: an export's checkpoint; a trained checkpoint's init (from the
    row, else from its checkpoint.json when the loop registered it without)."""
    if row["stage"] == EXPORT:
        return links.get("exported_from")
    if links.get("init"):
        return links["init"]
    try:
        from model import checkpoint
        return checkpoint.meta(row["path"]).get("init")
    except (OSError, ValueError, TypeError):
        return None


def _state(row: dict[str, Any]) -> str:
    """Whether the files are still there and still this model (a path can be overwritten)."""
    path = row["path"] or ""
    if not os.path.isdir(path):
        return "gone"
    if row["stage"] == EXPORT:
        return "ok" if os.path.exists(os.path.join(path, "config.json")) else "gone"
    try:
        with open(os.path.join(path, "checkpoint.json")) as f:
            return "ok" if json.load(f).get("id") == row["id"] else "replaced"
    except (OSError, ValueError):
        return "gone"


def _entry(row: dict[str, Any], links: dict[str, Any], snap: int | None, tags: list[str], order: int) -> dict:
    kind = "export" if row["stage"] == EXPORT else "import" if row["stage"] == "import" else "checkpoint"
    return {"key": f"{kind}:{row['path']}", "kind": kind, "id": row["id"], "stage": row["stage"],
            "round": row.get("round"), "run": row.get("run"), "step": row["step"], "path": row["path"],
            "snapshot": snap, "registered": snap is not None, "tags": tags, "trained_on": row["trained_on"] or [],
            "source": links.get("source"), "from": _parent_of(row, links), "state": _state(row), "derived": [],
            "order": order}


def _unregistered_ancestors(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The checkpoints registered models were trained from that no one registered (a base the loop
    imported through the Python API), read from their checkpoint.json while it is still theirs."""
    from model import checkpoint

    known = {r["id"] for r in out if r["kind"] != "export"}
    todo, added = [r["from"] for r in out if r["from"]], []
    while todo:
        p = todo.pop()
        if p.get("id") in known or not p.get("path"):
            continue
        try:
            m = checkpoint.meta(p["path"])
        except (OSError, ValueError):
            continue
        if m.get("id") != p["id"]:
            continue
        known.add(p["id"])
        row = {"id": m["id"], "path": p["path"], "stage": m.get("stage") or "sft", "step": m.get("step"),
               "trained_on": m.get("trained_on") or []}
        e = _entry(row, {k: m[k] for k in ("init", "source") if m.get(k)}, None, [], -1)
        added.append(e)
        if e["from"]:
            todo.append(e["from"])
    return added[::-1]  # the oldest ancestor first


def model_versions(store: Store) -> list[dict[str, Any]]:
    """Every registered model, oldest first, with `from` (its parent checkpoint), `trained_on` and
    `derived` (the models made from it: later checkpoints and exports). A parent checkpoint nobody
    registered is listed too (`registered: False`), from its own checkpoint.json."""
    if not store.exists(TABLE):
        return []
    tags = _tags_by_model(store)
    out = []
    for row in store.read_arrow(TABLE).to_pylist():
        links = json.loads(row["metrics"] or "{}") if (row["metrics"] or "").startswith("{") else {}
        snap, tg, order = (tags.get((row["id"], row["stage"], row["run"], row["path"]))
                           or tags.get((row["id"], row["stage"], row["run"], None)) or (None, [], -1))
        out.append(_entry(row, links, snap, tg, order))
    out.sort(key=lambda r: r["order"])
    out = _unregistered_ancestors(out) + out
    by_id: dict[str, list[dict]] = {}
    for r in out:
        r.pop("order")
        if r["kind"] != "export":
            by_id.setdefault(r["id"], []).append(r)
    for r in out:
        parent_id = (r["from"] or {}).get("id")
        if parent_id is None:  # no parent: nothing to link
            continue
        for p in by_id.get(parent_id, []):
            if p is not r:
                p["derived"].append({"kind": r["kind"], "id": r["id"], "stage": r["stage"], "path": r["path"],
                                     "snapshot": r["snapshot"]})
    return out
