import json

import pyarrow as pa
import pytest

from schemas.ids import row_id, table_ids
from schemas.tables import DOCUMENTS, PREFERENCES, SFT, SPEECH_SFT, TABLES, id_fields, rejects_schema
from schemas.validate import SchemaError, conform, validate


def test_row_id_is_content_only_and_unambiguous():
    assert row_id("abc") == row_id("abc")
    assert row_id("ab", "c") != row_id("a", "bc")
    assert len(row_id("x")) == 64
    msgs = [{"role": "user", "content": "hi"}]
    assert row_id(msgs) == row_id([{"content": "hi", "role": "user"}])  # key order does not matter


def test_table_ids_match_row_id():
    t = pa.table({"text": ["a", "b"]})
    assert table_ids(t, ["text"]).to_pylist() == [row_id("a"), row_id("b")]


def test_schemas_follow_trainer_conventions():
    assert "messages" in SFT.names and id_fields(SFT) == ["messages"]
    assert {"prompt", "chosen", "rejected"} <= set(PREFERENCES.names)
    audio = SPEECH_SFT.field("audio").type
    assert [audio.field(i).name for i in range(audio.num_fields)] == ["bytes", "path", "sampling_rate"]
    for name, s in TABLES.items():
        assert s.names[0] == "id" and not s.field("id").nullable, name
        assert "source_ids" in s.names, name


def test_rejects_schema_is_all_nullable_but_reason():
    r = rejects_schema(DOCUMENTS)
    assert all(f.nullable for f in r if f.name != "drop_reason")
    assert not r.field("drop_reason").nullable
    assert {"reject_stage", "reject_detail", "raw"} <= set(r.names)


def test_validate_names_column_and_row():
    t = pa.table({"text": ["fine", None, "ok"], "source": ["a", "b", "c"]})
    with pytest.raises(SchemaError) as e:
        validate(t, DOCUMENTS)
    assert e.value.column == "text" and e.value.row == 1
    assert "text" in str(e.value)


def test_validate_wrong_type_names_column():
    t = pa.table({"text": pa.array([1, 2], pa.int64())})
    with pytest.raises(SchemaError) as e:
        validate(t, DOCUMENTS, where="x.parquet")
    assert e.value.column == "text"
    assert "int64" in str(e.value) and "x.parquet" in str(e.value)


def test_conform_folds_unknown_columns_into_meta_and_keeps_every_row():
    t = pa.table({"text": ["a", None], "lang": ["en", "de"]})
    c = conform(t, DOCUMENTS)
    assert c.table.num_rows + c.rejects.num_rows == 2
    assert json.loads(c.table.column("meta")[0].as_py()) == {"lang": "en"}
    assert c.rejects.column("drop_reason").to_pylist() == ["missing_value:text"]
    assert json.loads(c.rejects.column("raw")[0].as_py())["lang"] == "de"


def test_conform_missing_required_column_rejects_all_rows_with_reason():
    t = pa.table({"body": ["a", "b"]})
    c = conform(t, DOCUMENTS, where="in.parquet")
    assert c.table.num_rows == 0 and c.rejects.num_rows == 2
    assert set(c.rejects.column("drop_reason").to_pylist()) == {"missing_column:text"}
