import json
import math
import os
import re
import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from helpers import jsonl, run_demo
from pipelines import report
from pipelines.cli import main as cli
from schemas import stats as st
from schemas.tables import DOCUMENTS, SFT, field


def test_log_hist_percentiles_are_close_to_exact():
    rng = np.random.default_rng(0)
    v = rng.lognormal(6, 1, 20_000).round()
    h = st.log_hist(v)
    for q in (0.05, 0.5, 0.95):
        exact = np.quantile(v, q)
        assert abs(st.log_hist_percentile(h, q) - exact) / exact < 0.06


def test_merged_shard_stats_equal_stats_of_the_whole():
    rng = np.random.default_rng(1)
    texts = [" ".join(["w"] * int(n)) for n in rng.integers(1, 500, 3000)]
    whole = st.table_stats(pa.table({"text": texts}), DOCUMENTS)
    parts = [st.table_stats(pa.table({"text": texts[i:i + 700]}), DOCUMENTS) for i in range(0, 3000, 700)]
    merged = st.merge_all(parts)
    assert merged["rows"] == whole["rows"] == 3000
    assert merged["columns"]["text"]["words"]["bins"] == whole["columns"]["text"]["words"]["bins"]
    assert merged["columns"]["text"]["chars"]["max"] == whole["columns"]["text"]["chars"]["max"]


def test_fixed_hist_category_and_messages():
    h = st.fixed_hist(np.array([0.0, 0.5, 0.99, 1.5, np.nan]), 0, 1, 10)
    assert sum(h["counts"]) == 4 and h["above"] == 1
    col = st.column_stats(pa.chunked_array([["a", "b", "a", None]]), "category")
    assert col["values"] == {"a": 2, "b": 1} and col["nulls"] == 1
    msgs = pa.array([[{"role": "user", "content": "one two"}, {"role": "assistant", "content": "three"}]],
                    SFT.field("messages").type)
    s = st.table_stats(pa.table({"messages": msgs}), SFT)
    assert s["columns"]["messages"]["words"]["sum"] == 3
    assert s["columns"]["messages"]["chars"]["sum"] == len("one two") + len("three")


def test_compact_keeps_top_categories():
    values = {f"v{i}": i + 1 for i in range(200)}
    c = st.compact({"rows": 1, "columns": {"x": {"values": values}}})
    assert len(c["columns"]["x"]["values"]) == st.TOP_CATEGORIES + 1
    assert sum(c["columns"]["x"]["values"].values()) == sum(values.values())


def test_grouped_histograms_merge_by_group():
    schema = pa.schema([pa.field("wer", pa.float32(), metadata={"curate.stats": "hist:0:1:10@voice"}),
                        pa.field("voice", pa.string())])
    a = st.table_stats(pa.table({"wer": [0.0, 0.5], "voice": ["x", "y"]}, schema=schema), schema)
    b = st.table_stats(pa.table({"wer": [0.05, 0.95], "voice": ["x", "z"]}, schema=schema), schema)
    m = st.merge_all([a, b])["columns"]["wer"]
    assert {k: sum(h["counts"]) for k, h in m["hist_by"].items()} == {"x": 2, "y": 1, "z": 1}
    assert sum(m["hist"]["counts"]) == 4
    assert st.fixed_hist_percentile(m["hist_by"]["x"], 0.5) < 0.1


# ---- quantiles: exact when small, sketched with a stated rank error ----------------------


def _rank_error(data: np.ndarray, v: float, q: float) -> float:
    """How far q lies outside the ranks v holds in data (0 when v is a right answer)."""
    lo, hi = (data < v).mean(), (data <= v).mean()
    return 0.0 if lo <= q <= hi else min(abs(q - lo), abs(q - hi))


@pytest.mark.parametrize("values", [[], [7.0], [0.0] * 150, [-0.0, 0.0, -0.0], [1, 2, 3, 4],
                                    list(np.linspace(-5, 5, st.SKETCH_K))])
def test_small_columns_have_exact_quantiles(values):
    h = st.fixed_hist(np.array(values, dtype=np.float64), 0, 1, 20)
    d = st.describe(h, (0.1, 0.5, 0.9))
    if not values:
        assert d["p50"] is None and d["count"] == 0 and st.rank_error(h) == 0
        return
    for q in (0.1, 0.5, 0.9):
        assert d[f"p{round(q * 100)}"] == pytest.approx(float(np.quantile(values, q)), abs=1e-6)
    assert d["rank_error"] == 0 and st.fmt_error(d["rank_error"]) == "exact"
    assert all(math.copysign(1, v) > 0 for v in (d["min"], d["max"], d["p50"]) if v == 0)  # no -0.0


def test_all_zero_wer_has_p50_zero_not_a_bin_midpoint():
    schema = pa.schema([field("wer", pa.float32(), stats="hist:0:1:20@voice"), field("voice", pa.string())])
    s = st.table_stats(pa.table({"wer": [0.0] * 9 + [-0.0], "voice": ["piper:joe"] * 10}, schema=schema), schema)
    h = s["columns"]["wer"]["hist_by"]["piper:joe"]
    assert st.quantile(h, 0.5) == 0 and st.quantile(h, 0.9) == 0 and st.fmt_num(st.quantile(h, 0.5)) == "0"


def test_nan_and_inf_are_counted_apart_not_mixed_in():
    h = st.fixed_hist(np.array([0.2, np.nan, np.inf, -np.inf, 0.4]), 0, 1, 10)
    assert h["count"] == 2 and h["nonfinite"] == 3 and h["sum"] == pytest.approx(0.6)
    assert st.quantile(h, 0.5) == pytest.approx(0.3)
    tot = st.column_stats(pa.chunked_array([[1.0, float("nan"), 2.0, None]]), "sum")["total"]
    assert tot["sum"] == 3.0 and tot["nonfinite"] == 1
    m = st.merge_all([{"rows": 1, "columns": {"x": {"hist": h}}}] * 2)["columns"]["x"]["hist"]
    assert m["nonfinite"] == 6 and m["count"] == 4


@pytest.mark.parametrize("order", ["random", "sorted", "reversed", "few_distinct"])
def test_merged_sketches_stay_within_their_stated_rank_error(order):
    rng = np.random.default_rng(3)
    v = rng.lognormal(0, 2, 60_000)
    v = {"random": v, "sorted": np.sort(v), "reversed": np.sort(v)[::-1],
         "few_distinct": rng.integers(0, 5, 60_000).astype(float)}[order]
    cuts = np.sort(rng.choice(np.arange(1, v.size), 40, replace=False))  # 41 shards of uneven size
    parts = [st.Quantiles().update(p) for p in np.split(v, cuts)]
    merged = parts[0]
    for p in parts[1:]:
        merged = merged.merge(p)
    data = v.astype(np.float32)  # the sketch keeps float32, as the columns it summarises
    bound = merged.rank_error()
    assert merged.n == v.size and 0 < bound < 0.02
    assert sum(len(lv) * 2 ** h for h, lv in enumerate(merged.levels)) == v.size  # weight is conserved
    worst = max(_rank_error(data, merged.quantile(q), q) for q in np.linspace(0.01, 0.99, 99))
    assert worst <= bound, (worst, bound)


def test_sketches_are_deterministic_and_compact():
    v = np.random.default_rng(4).normal(size=200_000)
    a, b = st.Quantiles().update(v).to_json(), st.Quantiles().update(v).to_json()
    assert a == b
    assert len(json.dumps(a)) < 4_000  # ≤ ~600 float32 values, whatever the row count
    back = st.Quantiles.from_json(json.loads(json.dumps(a)))
    assert back.quantile(0.5) == st.Quantiles.from_json(a).quantile(0.5)


def test_merged_shard_quantiles_equal_whole_when_small():
    texts = [" ".join(["w"] * n) for n in range(1, 120)]
    whole = st.table_stats(pa.table({"text": texts}), DOCUMENTS)["columns"]["text"]["words"]
    merged = st.merge_all([st.table_stats(pa.table({"text": texts[i:i + 17]}), DOCUMENTS)
                           for i in range(0, len(texts), 17)])["columns"]["text"]["words"]
    for q in (0.05, 0.5, 0.95):
        assert st.quantile(merged, q) == st.quantile(whole, q) == pytest.approx(np.quantile(range(1, 120), q))


def test_fmt_num_never_prints_negative_zero():
    assert [st.fmt_num(x) for x in (-0.0, -0.0004, 0.0, 1e9, float("inf"), float("nan"))] == \
        ["0", "-0.0004", "0", "1,000,000,000", "inf", "nan"]
    assert st.fmt_num(-1e-9 * 0) == "0" and st.fmt_num(-0.4) == "-0.4"


# ---- reports --------------------------------------------------------------------------
def _speech_like(n_reasons: int = 30) -> dict:
    """A report's data for 2–4 s clips over 8 voices, one voice always perfect, many reject reasons."""
    schema = pa.schema([field("duration_s", pa.float32(), stats="sum,hist:0:30:30"),
                        field("wer", pa.float32(), stats="hist:0:1:20@voice"), field("voice", pa.string())])
    rng = np.random.default_rng(5)
    voices = [f"voice-{i}" for i in range(8)]
    t = pa.table({"duration_s": rng.uniform(2, 4, 400).astype(np.float32),
                  "wer": np.where(np.arange(400) % 8 == 0, 0.0, rng.uniform(0, 0.6, 400)).astype(np.float32),
                  "voice": [voices[i % 8] for i in range(400)]}, schema=schema)
    kept_mask = pc.less_equal(t.column("wer"), 0.3)
    kept, rej = t.filter(kept_mask), t.filter(pc.invert(kept_mask))
    reasons = {f"reason_{i:02d}": 30 - i for i in range(n_reasons)}
    acc = {"rows_in": 400 + sum(reasons.values()), "kept": kept.num_rows,
           "rejected": rej.num_rows + sum(reasons.values()),
           "stages": [{"stage": "read", "rows_in": 400 + sum(reasons.values()), "rows_out": 400,
                       "rejected": sum(reasons.values()), "reasons": reasons},
                      {"stage": "wer_filter", "rows_in": 400, "rows_out": kept.num_rows, "rejected": rej.num_rows,
                       "reasons": {"high_wer": rej.num_rows}}],
           "rejects_by_reason": {**reasons, "high_wer": rej.num_rows}}
    ks, rs = st.table_stats(kept, schema), st.table_stats(rej, schema)
    return {"table": "speech_sft", "snapshot_id": 1, "rows": kept.num_rows, "files": 1, "bytes": 1000,
            "run_id": "r", "pipeline": "speech_sft", "git_commit": "c", "role": "output", "tags": [],
            "accounting": acc, "content": st.compact(ks), "content_scored": st.compact(st.merge_all([ks, rs])),
            "columns": [], "shards": [], "_rejects_content": st.compact(rs)}


def test_group_table_of_a_rejects_table_has_no_kept_share():
    data = _speech_like()
    title, head, rows = report.group_rows(data, "wer")
    assert "kept %" in head and sum(r[1] for r in rows) == 400 and sum(r[2] for r in rows) == data["rows"]
    perfect = next(r for r in rows if r[0] == "voice-0")
    assert perfect[4] == 0 and perfect[7] == "exact"  # p50 of all-zero WER is 0, stated exact
    rejects = dict(data, role="rejects", content=data["_rejects_content"], content_scored=None)
    title, head, rows = report.group_rows(rejects, "wer")
    assert "kept" not in head and "kept %" not in head and "rejected rows" in head
    assert not any(r[1] == 0 for r in rows)


def test_top_n_never_drops_a_reason():
    reasons = {f"r{i}": i + 1 for i in range(40)}
    items = report.top_n(reasons)
    assert len(items) == report.TOP_N + 1 and items[-1][0] == "other (25 more)"
    assert sum(v for _, v in items) == sum(reasons.values())
    assert report.top_n({"a": 1, "b": 1}) == [("a", 1), ("b", 1)]


def test_figure_fits_axes_uses_small_multiples_and_shows_accounting(tmp_path):
    data = _speech_like()
    fig = report.figure(data)
    axes = {ax.get_title(): ax for ax in fig.get_axes() if ax.get_title()}
    dur = axes["duration_s"]
    assert 0.5 <= dur.get_xlim()[0] and dur.get_xlim()[1] <= 5.5  # not 0–30 s for 2–4 s clips
    acc = next(ax for t, ax in axes.items() if t.startswith("accounting"))
    assert [t.get_text() for t in acc.get_yticklabels()] == ["wer_filter", "read"]
    rej = next(ax for t, ax in axes.items() if t.startswith("rejects by reason (31 reasons"))
    labels = [t.get_text() for t in rej.get_yticklabels()]
    assert len(labels) == report.TOP_N + 1 and any(lb.startswith("other (16 more)") for lb in labels)
    small = [t for t in axes if t.startswith("voice-")]
    assert len(small) == 8  # one panel per voice, not eight overlaid curves
    report.write_png(data, str(tmp_path / "r.png"))
    assert os.path.getsize(tmp_path / "r.png") > 20_000


def test_a_wer_at_the_threshold_is_binned_with_the_rows_it_keeps():
    """`wer <= 0.2` keeps a WER of exactly 0.2 (float32 0.2 is 0.20000000298 widened): with bins that
    hold their upper edge it is in the bar ending at 0.2, not in the one starting there."""
    schema = pa.schema([field("wer", pa.float32(), stats="hist:0:1:20:right@voice"), field("voice", pa.string())])
    t = pa.table({"wer": [0.0, 0.2, 0.2, 0.25, 1.5], "voice": ["a", "a", "b", "b", "b"]}, schema=schema)
    s = st.merge_all([st.table_stats(t.slice(0, 2), schema), st.table_stats(t.slice(2), schema)])["columns"]["wer"]
    h = s["hist"]
    assert h["closed"] == "right" and h["counts"][0] == 1 and h["counts"][3] == 2 and h["counts"][4] == 1
    assert h["counts"][19] == 1 and h["above"] == 1  # 1.5 is counted in the last bin, and as above
    assert s["hist_by"]["b"]["counts"][3] == 1 and s["hist_by"]["b"]["closed"] == "right"
    assert st.fixed_hist(np.array([0.2]), 0, 1, 20)["counts"][4] == 1  # the default still holds the lower edge
    from filters.wer import wer_filter
    from schemas.tables import SPEECH_SFT
    assert SPEECH_SFT.field("wer").metadata[b"curate.stats"].endswith(b":right")
    assert wer_filter.adds[0].metadata[b"curate.stats"] == b"hist:0:1:20:right@voice"


def _threshold_figure_data() -> dict:
    data = _speech_like()
    schema = pa.schema([field("wer", pa.float32(), stats="hist:0:1:20:right@voice"), field("voice", pa.string())])
    kept = pa.table({"wer": [0.0, 0.1, 0.3, 0.3], "voice": ["voice-0", "voice-1", "voice-1", "voice-2"]}, schema=schema)
    rej = pa.table({"wer": [0.35, 0.6], "voice": ["voice-1", "voice-2"]}, schema=schema)
    ks, rs = st.table_stats(kept, schema), st.table_stats(rej, schema)
    data["content"]["columns"]["wer"] = ks["columns"]["wer"]
    data["content_scored"]["columns"]["wer"] = st.merge_all([ks, rs])["columns"]["wer"]
    data["thresholds"] = {"wer": {"param": "max_wer", "value": 0.3, "kept": "<="}}
    return data


def test_the_wer_plot_draws_the_threshold_and_colours_bars_by_the_side_kept(tmp_path):
    fig = report.figure(_threshold_figure_data())
    fig.canvas.draw()
    axes = {ax.get_title(): ax for ax in fig.get_axes() if ax.get_title()}
    wer = axes["wer: every scored row (kept and rejected)"]
    assert any(list(ln.get_xdata()) == [0.3, 0.3] for ln in wer.get_lines())  # the threshold, vertical
    patches = {p.get_label(): p for p in wer.patches}
    kept_vals, edges = patches["kept (wer ≤ 0.3)"].get_data()[:2]
    rej_vals = patches["rejected"].get_data()[0]
    i = int(np.argmin(np.abs(edges - 0.3)))  # the bar ending at 0.3 holds both 0.3 rows, as kept
    assert kept_vals[i - 1] == 2 and rej_vals[i - 1] == 0
    assert sum(kept_vals) == 4 and sum(rej_vals) == 2 and all(v == 0 for v, e in zip(kept_vals, edges[1:]) if e > 0.31)
    assert wer.get_xlabel() == "wer" and wer.get_ylabel() == "rows"
    # per-voice panels: labelled axes, the threshold drawn in each
    small = [ax for t, ax in axes.items() if t.startswith("voice-")]
    assert all(any(list(ln.get_xdata()) == [0.3, 0.3] for ln in ax.get_lines()) for ax in small)
    assert small and all(ax.get_xlabel() == "wer" for ax in small) and small[0].get_ylabel() == "rows"
    # log axes: round numbers written out, not 6×10¹ mathtext, and no two labels on top of each other
    for title in ("text: chars per row", "text: words per row"):
        ax = next((a for t, a in axes.items() if t == title), None)
        if ax is None:
            continue
        labels = [lb for lb in ax.get_xticklabels() if lb.get_text() and ax.get_xlim()[0] <= lb.get_position()[0]
                  <= ax.get_xlim()[1]]
        assert labels and not any("$" in lb.get_text() or "times" in lb.get_text() for lb in labels)
        boxes = sorted((lb.get_window_extent() for lb in labels), key=lambda b: b.x0)
        assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:])), [lb.get_text() for lb in labels]
    report.write_png(_threshold_figure_data(), str(tmp_path / "t.png"))


def test_log_axes_label_round_numbers_without_overlap():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for lo, hi in ((57, 130), (3, 12), (1, 10_000), (50, 1000), (0.5, 7)):
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        report._log_axis(ax)
        fig.canvas.draw()
        labels = [lb for lb in ax.get_xticklabels() if lb.get_text()]
        assert 2 <= len(labels) <= 6 and not any("$" in lb.get_text() for lb in labels), (lo, hi)
        boxes = sorted((lb.get_window_extent() for lb in labels), key=lambda b: b.x0)
        assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:])), (lo, hi, [lb.get_text() for lb in labels])
        plt.close(fig)


def test_scores_above_the_histogram_range_are_said_plainly():
    """fastText probabilities come out a hair above 1.0: the title says what the count is."""
    h = st.fixed_hist(np.array([0.2, 0.9, 1.00001, 1.00002], np.float32), 0, 1, 20)
    text = report.out_of_range(h)
    assert text == "; 2 above 1 (max 1.00002) in the last bin", text
    tiny = st.fixed_hist(np.array([1.0000001], np.float32), 0, 1, 20)  # float32's next value after 1
    assert report.out_of_range(tiny) == "; 1 above 1 (max 1.0000001) in the last bin"  # not "(max 1)"
    with report.console.capture() as cap:
        report.print_content({"columns": {"quality_score": {"hist": h}}}, None,
                             {"thresholds": {"quality_score": {"param": "threshold", "value": 0.5, "kept": ">="}}})
    out = " ".join(cap.get().split())  # the title wraps at the table's width
    assert "quality_score histogram (4 rows; 2 above 1 (max 1.00002) in the last bin; kept: quality_score ≥ 0.5)" in out
    assert "above 2)" not in out
    assert report.thresholds({"stages": [{"name": "wer_filter", "params": {"max_wer": 0.1}},
                                         {"name": "quality", "params": {"threshold": 0.4, "model_path": "m"}}]}) == {
        "wer": {"param": "max_wer", "value": 0.1, "kept": "<="},
        "quality_score": {"param": "threshold", "value": 0.4, "kept": ">="}}


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(_chromium() is None, reason="no chromium (apt-get install -y chromium)")
def test_html_report_renders_in_headless_chromium(tmp_path):
    from PIL import Image
    data = _speech_like()
    page = report.write_html(data, str(tmp_path / "r.html"))
    text = open(page).read()
    for ident in ("summary", "plots", "accounting", "rejects", "groups-wer", "columns"):
        assert f'id="{ident}"' in text or f"id={ident}" in text, ident
    assert "reason_29" in text  # the HTML table lists every reason, not only the plotted top
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2400",
                    f"file://{page}"], check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape[0] >= 2000 and img.std() > 10  # not a blank page
    assert (img < 128).mean() > 0.01  # text and plots drawn


# ---- the store end to end: nested columns, string bounds, duplicates, diff, validate ---
def test_duplicate_inputs_are_rejected_and_diff_counts_distinct_ids(tmp_path, warehouse):
    docs = [{"text": f"document number {i} has enough words to pass the filter"} for i in range(12)]
    src = jsonl(tmp_path / "in.jsonl", docs + docs[:5] + docs[:1])  # 6 exact duplicates, one three times
    r = run_demo(warehouse, str(src))
    acc = r.accounting
    assert acc["kept"] == 12 and acc["rejects_by_reason"]["duplicate_id"] == 6
    write = next(s for s in acc["stages"] if s["stage"] == "write")
    assert write["rows_in"] == 18 and write["rejected"] == 6
    from schemas.store import Store
    rej = Store(warehouse).read_arrow("docs_rejects").to_pylist()
    assert all(r_["text"] and r_["reject_stage"] == "write" for r_ in rej if r_["drop_reason"] == "duplicate_id")
    src2 = jsonl(tmp_path / "in2.jsonl",
                 docs[2:] + docs[2:4] + [{"text": "a brand new document with many words in it"}])
    run_demo(warehouse, str(src2))
    out = CliRunner().invoke(cli, ["--warehouse", warehouse, "diff", "docs@" + str(r.snapshot_id), "docs", "--json"])
    assert out.exit_code == 0, out.output
    ids = json.loads(out.output)["ids"]
    assert (ids["added"], ids["removed"], ids["distinct"]) == (1, 2, [12, 11])


def test_stats_cli_hides_truncated_text_bounds_and_explains_nested_columns(tmp_path, warehouse):
    long = "Which day of the week comes after Tuesday and before Thursday"
    src = jsonl(tmp_path / "in.jsonl", [{"text": f"{long} number {i}", "source_ids": ["a", "b"]} for i in range(5)])
    run_demo(warehouse, str(src))
    res = CliRunner().invoke(cli, ["--warehouse", warehouse, "stats", "docs", "--json"])
    data = json.loads(res.output)
    cols = {c["column"]: c for c in data["columns"]}
    assert cols["text"]["min"] is None and cols["text"]["kind"] == "text"
    assert cols["source_ids"]["kind"] == "nested" and cols["source_ids"]["nulls"] == 0
    assert cols["source_ids"]["values"] == 5
    text = CliRunner().invoke(cli, ["--warehouse", warehouse, "stats", "docs"], env={"COLUMNS": "200"}).output
    assert long[:16] not in text and "Which day of th" not in text  # no truncated prefixes shown as values
    assert not re.search(r"[\s│]-0(\.0)?[\s│]", text)  # no negative zero in any cell
    versions = CliRunner().invoke(cli, ["--warehouse", warehouse, "versions", "docs"]).output
    assert "1 version " in versions and "1 versions" not in versions


def test_validate_names_rows_not_only_byte_offsets(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"text": "fine row"}\n\n{"text": null}\n{broken\n{"text": "ok"}\n')
    out = CliRunner().invoke(cli, ["validate", str(path), "--schema", "documents"]).output
    assert "x.jsonl row 2 (line 3, byte 22): 'text' is null" in out
    assert "x.jsonl row 3 (line 4, byte 37)" in out and "2 of 4 rows" in out
    pq_path = tmp_path / "y.parquet"
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"text": ["a", None, "b", None]}), pq_path, row_group_size=1)
    out = CliRunner().invoke(cli, ["validate", str(pq_path), "--schema", "documents"]).output
    assert "y.parquet row 2 (index 1)" in out and "y.parquet row 4 (index 3)" in out


def test_large_columns_state_their_rank_error_and_stay_small():
    rng = np.random.default_rng(6)
    parts = [st.table_stats(pa.table({"text": [" ".join(["w"] * int(n)) for n in rng.integers(1, 400, 2000)]}),
                            DOCUMENTS) for _ in range(10)]
    content = st.compact(st.merge_all(parts))
    assert len(json.dumps(content)) < 8_000  # 20,000 rows: two sketches of ≤ ~600 float32 values each
    rows = report.length_rows(content)
    assert [r[-1] for r in rows] == ["±1.3% rank"] * 2 and rows[0][1] == 20_000
    p = st.percentiles(content)["text.words"]
    assert p["rank_error"] == pytest.approx(0.0133, abs=1e-4) and 150 < p["p50"] < 250
    both = st.column_stats(pa.chunked_array([[1.0, 2.0]]), "sum,hist:0:10:10")
    assert "q" not in both["total"] and "q" in both["hist"]  # one sketch per column, not two
