"""`curate warehouse relocate|info`: a local warehouse that was copied or moved (schemas/warehouse.py
does the work; this is its command line)."""
from __future__ import annotations

import json
import os
import sys

import click


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


def _local(ctx: click.Context) -> str:
    if ctx.obj.get("catalog"):
        _fail("a warehouse with a shared catalog (--catalog / CURATE_CATALOG) lives where its catalog says; "
              "relocate is for a local warehouse directory with its SQLite catalog")
    return os.path.abspath(ctx.obj["warehouse"].removeprefix("file://"))


@click.group("warehouse")
def warehouse_group() -> None:
    """Where a local warehouse lives: where it was created, and relocating a copy or a moved one."""


@warehouse_group.command()
@click.option("--json", "as_json", is_flag=True, help="what was rewritten, as JSON")
@click.pass_context
def relocate(ctx: click.Context, as_json: bool) -> None:
    """Make the warehouse at --warehouse use its own directory after a copy or a move: rewrites the
    SQLite catalog, every table's metadata, manifest lists, manifests and run markers from the
    location it was created at to this one (only files in this directory; the original of a copy
    is not touched, and the copy becomes a warehouse of its own). Safe to rerun if interrupted."""
    from schemas.store import Store, StoreError
    from schemas.warehouse import outside, relocate as do_relocate
    wh = _local(ctx)
    try:
        result = do_relocate(wh)
        left = outside(Store(wh), wh)
    except StoreError as e:
        _fail(str(e))
    if left:
        _fail(f"relocated, but {len(left)} paths of {wh}'s versions still lie outside it (first: {left[0]})")
    if as_json:
        click.echo(json.dumps(result, indent=2))
    elif result["from"] is None:
        click.echo(f"{wh} is where it was created: nothing to relocate")
    else:
        click.echo(f"relocated {wh} from {result['from']}: {result['metadata']} metadata files, "
                   f"{result['manifest_lists']} manifest lists, {result['manifests']} manifests, "
                   f"{result['markers']} run markers, {result['catalog_rows']} catalog rows rewritten")


@warehouse_group.command()
@click.pass_context
def info(ctx: click.Context) -> None:
    """Where the warehouse was created, its id, and whether it is there now."""
    from schemas.warehouse import _same_place, catalog_origin, read_marker
    wh = _local(ctx)
    try:
        marker = read_marker(wh) or {}
        origin = marker.get("location") or catalog_origin(wh) or wh
    except Exception as e:  # noqa: BLE001  a damaged marker or catalog, whatever raised: one line, no traceback
        _fail(str(e))
    click.echo(json.dumps({"warehouse": wh, **marker, "in_place": _same_place(origin, wh)},
                          indent=2))
