"""Issue 27: a copied or moved warehouse directory. Iceberg keeps absolute paths, so a `cp -r` copy
wrote its new data into the original's directory (where `curate gc --runs` on the original then
deleted it) and a moved one failed with a traceback. Now a warehouse knows where it was created,
is refused elsewhere in one line, and `curate warehouse relocate` makes it work where it is."""
import os
import shutil

import pytest
from click.testing import CliRunner

from helpers import corpus, run_demo
from pipelines.cli import main as cli
from schemas.store import OutsideWarehouse, Store, StoreError
from schemas.warehouse import MARKER, WarehouseMoved, outside


def _cli(*args):
    return CliRunner().invoke(cli, list(args))


def _files(root):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)


def _ids(store, ref):
    return sorted(store.read_arrow(ref, ["id"]).column("id").to_pylist())


def _one_line_error(res, *needles):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output
    for n in needles:
        assert n in res.output, res.output


def test_a_copy_is_refused_until_relocated_then_independent_of_the_original(tmp_path):
    src = corpus(tmp_path, limit=60)
    wh, copy = str(tmp_path / "wh"), str(tmp_path / "copy")
    run_demo(wh, src, tag="v1")
    run_demo(wh, src, min_words=12)
    shutil.copytree(wh, copy)
    before = {p: os.path.getmtime(p) for p in _files(wh)}

    with pytest.raises(WarehouseMoved, match="is a copy of"):
        Store(copy)
    _one_line_error(_cli("--warehouse", copy, "tables"), "is a copy of " + wh, "warehouse relocate")
    _one_line_error(_cli("--warehouse", copy, "gc", "docs", "--runs", "--older-than", "0s"), "warehouse relocate")
    with pytest.raises(StoreError):
        run_demo(copy, src, min_words=20)
    assert {p: os.path.getmtime(p) for p in _files(wh)} == before  # nothing written into the original

    res = _cli("--warehouse", copy, "warehouse", "relocate")
    assert res.exit_code == 0 and "relocated " + copy in res.output, res.output
    assert {p: os.path.getmtime(p) for p in _files(wh)} == before  # relocate writes only in the copy
    got, want = Store(copy), Store(wh)
    assert outside(got, copy) == []
    for table in ("docs", "docs_rejects"):
        assert [v["snapshot_id"] for v in got.versions(table)] == [v["snapshot_id"] for v in want.versions(table)]
        for v in want.versions(table):
            assert _ids(got, f"{table}@{v['snapshot_id']}") == _ids(want, f"{table}@{v['snapshot_id']}")
        assert _ids(got, f"{table}@v1") == _ids(want, f"{table}@v1")
    assert got.properties("docs")["run_id"] == want.properties("docs")["run_id"]  # lineage files found

    new = run_demo(copy, src, min_words=20)          # the copy's own new version, in its own directory
    store = Store(copy)
    assert all(p.removeprefix("file://").startswith(copy + "/")
               for p in store.files("docs").column("file_path").to_pylist())
    assert len(Store(wh).versions("docs")) == 2 and len(store.versions("docs")) == 3
    # gc on the original cannot touch what the copy published
    assert _cli("--warehouse", wh, "gc", "docs", "--runs", "--older-than", "0s").exit_code == 0
    assert Store(copy).read_arrow("docs").num_rows == new.accounting["kept"]
    assert _cli("--warehouse", copy, "warehouse", "relocate").output.startswith(copy + " is where it was created")


def test_a_moved_warehouse_is_one_line_then_relocated(tmp_path):
    src = corpus(tmp_path, limit=40)
    wh, moved = str(tmp_path / "wh"), str(tmp_path / "moved")
    first = run_demo(wh, src)
    os.rename(wh, moved)
    _one_line_error(_cli("--warehouse", moved, "tables"), f"created at {wh} and has moved", "warehouse relocate")
    _one_line_error(_cli("--warehouse", moved, "show", "docs"), "warehouse relocate")
    assert _cli("--warehouse", moved, "warehouse", "relocate").exit_code == 0
    store = Store(moved)
    assert store.snapshot("docs")[1].snapshot_id == first.snapshot_id
    assert store.read_arrow("docs").num_rows == first.accounting["kept"]
    again = run_demo(moved, src)                     # a new run of the same config: its own version
    assert again.snapshot_id != first.snapshot_id and len(Store(moved).versions("docs")) == 2
    assert not os.path.exists(wh)


def test_a_copy_made_before_markers_existed_is_recognised_by_its_catalog(tmp_path):
    src = corpus(tmp_path, limit=40)
    wh, copy = str(tmp_path / "wh"), str(tmp_path / "copy")
    run_demo(wh, src)
    os.remove(os.path.join(wh, MARKER))              # a warehouse from before this change
    shutil.copytree(wh, copy)
    assert Store(wh).read_arrow("docs").num_rows > 0  # the original is marked where it is
    assert os.path.exists(os.path.join(wh, MARKER))
    with pytest.raises(WarehouseMoved, match="warehouse relocate"):
        Store(copy)
    assert _cli("--warehouse", copy, "warehouse", "relocate").exit_code == 0
    assert outside(Store(copy), copy) == []


def test_an_interrupted_relocate_is_finished_by_running_it_again(tmp_path, monkeypatch):
    import schemas.warehouse as whmod
    src = corpus(tmp_path, limit=40)
    wh, copy = str(tmp_path / "wh"), str(tmp_path / "copy")
    run_demo(wh, src)
    shutil.copytree(wh, copy)
    real = whmod._rewrite_catalog

    def killed(*a, **k):
        raise OSError("killed after the metadata, before the catalog")
    monkeypatch.setattr(whmod, "_rewrite_catalog", killed)
    with pytest.raises(OSError):
        whmod.relocate(copy)
    monkeypatch.setattr(whmod, "_rewrite_catalog", real)
    with pytest.raises(WarehouseMoved):              # still refused: the marker moves last
        Store(copy)
    assert whmod.relocate(copy)["from"] == wh
    assert outside(Store(copy), copy) == []
    assert Store(copy).read_arrow("docs").num_rows == Store(wh).read_arrow("docs").num_rows


def test_a_relocated_copy_resumes_a_killed_run_from_its_own_shards(tmp_path, monkeypatch):
    """The run markers name their shard files by absolute path: relocated, they name the copy's."""
    src = corpus(tmp_path, limit=40)
    wh, copy = str(tmp_path / "wh"), str(tmp_path / "copy")
    monkeypatch.setattr(Store, "publish", lambda self, *a, **k: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError):
        run_demo(wh, src)
    monkeypatch.undo()
    shutil.copytree(wh, copy)
    assert _cli("--warehouse", copy, "warehouse", "relocate").exit_code == 0
    r = run_demo(copy, src)
    assert (r.resumed_shards, r.processed_shards) == (4, 0)
    for table in ("docs", "docs_rejects"):
        assert all(p.startswith(f"file://{copy}/") for p in Store(copy).files(table).column("file_path").to_pylist())
    assert Store(wh).versions("docs") == []


def test_gc_never_deletes_outside_its_warehouse(tmp_path, warehouse):
    src = corpus(tmp_path, limit=40)
    run_demo(warehouse, src)
    store = Store(warehouse)
    # a table registered at a location outside the warehouse: gc refuses it
    elsewhere = tmp_path / "elsewhere"
    store.catalog.create_table("curate.foreign", schema=store.table("docs").schema(), location=f"file://{elsewhere}")
    (elsewhere / "metadata").mkdir(parents=True, exist_ok=True)
    stray = elsewhere / "metadata" / "not-ours.metadata.json"
    stray.write_text("x")
    os.utime(stray, (1, 1))
    with pytest.raises(OutsideWarehouse, match="outside this warehouse"):
        store.sweep("foreign", older_than_s=0, runs=True)
    _one_line_error(_cli("--warehouse", warehouse, "gc", "foreign", "--runs", "--older-than", "0s"),
                    "outside this warehouse")
    assert stray.exists()
    # a link inside the table's data directory pointing out of the warehouse: not followed to delete
    outer = tmp_path / "outer"
    outer.mkdir()
    victim = outer / "victim.parquet"
    victim.write_text("x")
    os.utime(victim, (1, 1))
    data = store.table("docs").location().removeprefix("file://") + "/data"
    os.symlink(outer, os.path.join(data, "run-linked-0"))
    res = _cli("--warehouse", warehouse, "gc", "docs", "--runs", "--older-than", "0s")
    assert res.exit_code == 0, res.output
    assert victim.exists()
    assert Store(warehouse).read_arrow("docs").num_rows > 0
