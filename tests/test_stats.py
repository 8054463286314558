import numpy as np
import pyarrow as pa

from schemas import stats as st
from schemas.tables import DOCUMENTS, SFT


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
