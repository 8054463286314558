import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas.engine.inputs import InputError, plan_file, plan_inputs, read_shard
from schemas.tables import DOCUMENTS


def _write_jsonl(path, docs, extra=b""):
    with open(path, "wb") as f:
        for d in docs:
            f.write(json.dumps(d).encode() + b"\n")
        f.write(extra)


@pytest.mark.parametrize("shard_bytes", [7, 64, 333, 10_000])
def test_byte_range_shards_read_every_line_exactly_once(tmp_path, shard_bytes):
    docs = [{"id": f"d{i}", "text": "word " * (i % 17 + 1)} for i in range(200)]
    path = tmp_path / "a.jsonl"
    _write_jsonl(path, docs)
    shards = plan_file(str(path), shard_bytes=shard_bytes)
    assert len({s.key for s in shards}) == len(shards)
    seen = []
    for s in shards:
        rows, rejects, n = read_shard(s, DOCUMENTS)
        assert rejects.num_rows == 0 and n == rows.num_rows
        seen += [ids[0] for ids in rows.column("source_ids").to_pylist()]
    assert seen == [d["id"] for d in docs]


def test_shard_keys_are_stable_across_plans(tmp_path):
    path = tmp_path / "a.jsonl"
    _write_jsonl(path, [{"text": "x y z"}] * 50)
    assert [s.key for s in plan_file(str(path), 100)] == [s.key for s in plan_file(str(path), 100)]


def test_bad_lines_become_rejects_with_reasons(tmp_path):
    path = tmp_path / "bad.jsonl"
    _write_jsonl(path, [{"text": "a good document here"}], extra=(
        b'{"text": "unterminated"\n'
        b'{"text": "caf\xe9"}\n'
        b'\n'
        b'[1, 2]\n'
        b'{"text": 5}\n'
        b'{"title": "no text"}\n'
        b'{"text": "extra fields", "lang": "en", "score": 0.5}\n'))
    (s,) = plan_file(str(path))
    rows, rejects, n = read_shard(s, DOCUMENTS)
    assert n == 7  # the blank line is not a row
    assert rows.num_rows + rejects.num_rows == n
    reasons = rejects.column("drop_reason").to_pylist()
    assert sorted(reasons) == sorted(["malformed_json", "invalid_utf8", "malformed_json",
                                      "wrong_type:text", "missing_value:text"])
    raws = rejects.column("raw").to_pylist()
    assert '{"text": "unterminated"' in raws and '{"text": "caf\\xe9"}' in raws
    details = " ".join(rejects.column("reject_detail").to_pylist())
    assert "bad.jsonl byte" in details
    assert json.loads(rows.column("meta")[1].as_py()) == {"lang": "en", "score": 0.5}


def test_empty_file_is_zero_rows_not_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    (s,) = plan_file(str(path))
    rows, rejects, n = read_shard(s, DOCUMENTS)
    assert (rows.num_rows, rejects.num_rows, n) == (0, 0, 0)


def test_gzip_jsonl(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write(b'{"text": "one two three"}\n{"text": "four five"}\n')
    (s,) = plan_file(str(path))
    rows, _, n = read_shard(s, DOCUMENTS)
    assert n == 2 and rows.column("text").to_pylist() == ["one two three", "four five"]


def test_parquet_with_wrong_column_type_rejects_every_row_with_clear_detail(tmp_path):
    path = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"text": pa.array([1, 2, 3], pa.int64())}), path)
    (s,) = plan_file(str(path))
    rows, rejects, n = read_shard(s, DOCUMENTS)
    assert rows.num_rows == 0 and rejects.num_rows == n == 3
    assert set(rejects.column("drop_reason").to_pylist()) == {"wrong_type:text"}
    detail = rejects.column("reject_detail")[0].as_py()
    assert "'text'" in detail and "int64" in detail and "wrong.parquet" in detail
    assert json.loads(rejects.column("raw")[0].as_py())["text"] == 1


def test_parquet_row_group_shards_and_source_ids(tmp_path):
    path = tmp_path / "ok.parquet"
    pq.write_table(pa.table({"text": [f"doc number {i}" for i in range(100)]}), path, row_group_size=10)
    shards = plan_file(str(path), shard_rows=25)
    assert len(shards) == 4
    got = []
    for s in shards:
        rows, rej, n = read_shard(s, DOCUMENTS)
        assert rej.num_rows == 0
        got += rows.column("source_ids").to_pylist()
    assert got == [[f"ok.parquet#{i}"] for i in range(100)]


def test_unreadable_parquet_fails_naming_the_file_never_a_silent_reject(tmp_path):
    from schemas.engine.inputs import UnreadableInput
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    (s,) = plan_file(str(path))
    with pytest.raises(UnreadableInput, match="broken.parquet"):
        read_shard(s, DOCUMENTS)


def test_truncated_parquet_with_known_rows_names_them(tmp_path):
    from schemas.engine.inputs import UnreadableInput
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": [f"row {i} " * 20 for i in range(3000)]}), path, row_group_size=1000)
    (s,) = plan_file(str(path))
    assert s.rows == 3000
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + data[-2000:])  # damaged pages, a footer that still parses
    with pytest.raises(UnreadableInput) as e:
        read_shard(s, DOCUMENTS)
    assert e.value.expected_rows == 3000 and "t.parquet" in str(e.value)


def test_truncated_gzip_jsonl_fails_instead_of_losing_its_tail(tmp_path):
    import gzip

    from schemas.engine.inputs import UnreadableInput
    path = tmp_path / "d.jsonl.gz"
    with gzip.open(path, "wb") as f:
        for i in range(5000):
            f.write(json.dumps({"text": f"line {i} " * 10}).encode() + b"\n")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    (s,) = plan_file(str(path))
    with pytest.raises(UnreadableInput, match="d.jsonl.gz"):
        read_shard(s, DOCUMENTS)


def test_numbers_are_answers_but_not_documents(tmp_path):
    from schemas.tables import PROBLEMS
    path = tmp_path / "p.jsonl"
    path.write_text('{"problem": "2+2?", "answer": 4}\n{"problem": "half?", "answer": 0.5}\n'
                    '{"problem": "bool?", "answer": true}\n{"text": 7}\n')
    (s,) = plan_file(str(path))
    rows, rej, n = read_shard(s, PROBLEMS)
    assert rows.column("answer").to_pylist() == ["4", "0.5"]
    assert sorted(rej.column("drop_reason").to_pylist()) == ["missing_value:problem", "wrong_type:answer"]
    rows, rej, n = read_shard(s, DOCUMENTS)
    assert "wrong_type:text" in rej.column("drop_reason").to_pylist()


def test_a_bare_null_line_keeps_its_raw_text(tmp_path):
    path = tmp_path / "n.jsonl"
    path.write_text('null\n{"text": "fine"}\n')
    (s,) = plan_file(str(path))
    rows, rej, n = read_shard(s, DOCUMENTS)
    assert n == 2 and rows.num_rows == 1 and rej.column("raw").to_pylist() == ["null"]


def test_unknown_inputs_are_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="matches no file"):
        plan_inputs([str(tmp_path / "nope.jsonl")])
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(InputError, match="unknown input format"):
        plan_inputs([str(tmp_path / "x.csv")])


def _hostile_lines(tmp_path):
    """Issue 27: lines that once ended the run (a RecursionError, a surrogate Arrow refused)."""
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b'{"text": "a good document here"}\n'
                     + b"[" * 100_000 + b"]" * 100_000 + b"\n"                       # the parser's stack
                     + b'{"text": "x", "m": ' + b"[" * 150 + b"]" * 150 + b"}\n"      # parses, too deep to keep
                     + b'{"text": "lone \\ud800 surrogate"}\n'
                     + b'{"text": "ok", "extra": {"k": ["\\udfff"]}}\n'
                     + b'{"\\ud800": 1, "text": "a surrogate key"}\n'
                     + b'{"text": "a pair \\ud83d\\ude00 is one character", "m": ' + b"[" * 99 + b"]" * 99 + b"}\n")
    return path


def test_too_deep_json_and_lone_surrogates_are_rejects_not_a_failed_run(tmp_path, warehouse):
    from helpers import run_demo
    (s,) = plan_file(str(_hostile_lines(tmp_path)))
    rows, rej, n = read_shard(s, DOCUMENTS)
    assert n == 7 and rows.num_rows == 2
    assert rows.column("text").to_pylist() == ["a good document here", "a pair \U0001F600 is one character"]
    assert rej.column("drop_reason").to_pylist() == (["malformed_json:too_deep"] * 2
                                                    + ["invalid_utf8:lone_surrogate"] * 3)
    details = rej.column("reject_detail").to_pylist()
    assert "hostile.jsonl byte 33: " in details[0] and "\\ud800 in 'text'" in details[2]
    assert "\\udfff in 'extra.k[0]'" in details[3]
    assert rej.column("raw").to_pylist()[2] == '{"text": "lone \\ud800 surrogate"}'  # kept verbatim
    # The whole run: rows and rejects written as Parquet, counts add up.
    r = run_demo(warehouse, str(tmp_path / "hostile.jsonl"), min_words=1)
    assert (r.accounting["rows_in"], r.accounting["kept"]) == (7, 2)
    assert r.accounting["rejects_by_reason"] == {"malformed_json:too_deep": 2, "invalid_utf8:lone_surrogate": 3}


def test_validate_names_too_deep_and_surrogate_lines_without_a_traceback(tmp_path):
    from click.testing import CliRunner

    from pipelines.cli import main as cli
    res = CliRunner().invoke(cli, ["validate", str(_hostile_lines(tmp_path)), "--schema", "documents"])
    assert res.exit_code == 1 and isinstance(res.exception, (SystemExit, type(None))), res.output
    assert "malformed_json:too_deep: hostile.jsonl row 2" in res.output
    assert "invalid_utf8:lone_surrogate: hostile.jsonl row 4" in res.output
    assert "2 of 7 rows fit schema 'documents'" in res.output and "Traceback" not in res.output


def _not_utf8(values: list[bytes]) -> pa.Array:
    """A string array holding bytes that are not UTF-8 (pyarrow checks nothing; Parquet keeps it)."""
    offsets = [0]
    for v in values:
        offsets.append(offsets[-1] + len(v))
    return pa.Array.from_buffers(pa.string(), len(values), [None, pa.array(offsets, pa.int32()).buffers()[1],
                                                             pa.py_buffer(b"".join(values))])


def test_parquet_text_that_is_not_utf8_is_a_reject_not_a_failed_run(tmp_path, warehouse):
    from click.testing import CliRunner

    from helpers import run_demo
    from pipelines.cli import main as cli
    text = _not_utf8([b"a fine document here", b"bad \xff\xfe bytes", b"another fine one", b"fine text"])
    tags = pa.ListArray.from_arrays(pa.array([0, 1, 2, 3, 4], pa.int32()), _not_utf8([b"a", b"b", b"c", b"\xc3("]))
    path = str(tmp_path / "t.parquet")
    pq.write_table(pa.table({"text": text, "tags": tags}), path)
    (s,) = plan_file(path)
    rows, rej, n = read_shard(s, DOCUMENTS)
    assert n == 4 and rows.num_rows == 2
    assert [ids[0] for ids in rows.column("source_ids").to_pylist()] == ["t.parquet#0", "t.parquet#2"]
    assert rej.column("drop_reason").to_pylist() == ["invalid_utf8"] * 2
    assert rej.column("reject_detail").to_pylist() == ["row 1 in t.parquet: 'text' is not UTF-8",
                                                       "row 3 in t.parquet: 'tags' is not UTF-8"]
    assert json.loads(rej.column("raw")[0].as_py()) == {"text": "bad \\xff\\xfe bytes", "tags": ["b"]}
    r = run_demo(warehouse, path, min_words=1)
    acc = r.accounting
    assert (acc["rows_in"], acc["kept"], acc["rejects_by_reason"]) == (4, 2, {"invalid_utf8": 2})
    res = CliRunner().invoke(cli, ["validate", path, "--schema", "documents"])
    assert "invalid_utf8: t.parquet row 2 (index 1): 'text' is not UTF-8" in res.output and res.exit_code == 1


def test_an_integer_too_long_for_python_or_arrow_is_a_reject_or_text_not_a_failed_run(tmp_path):
    path = tmp_path / "n.jsonl"
    path.write_bytes(b'{"text": "fine"}\n'
                     + b'{"text": "x", "n": 1' + b"0" * 5000 + b'}\n'            # over int_max_str_digits
                     + b'{"text": "y", "big": 123456789012345678901234567890}\n')  # over int64: kept as text
    (s,) = plan_file(str(path))
    rows, rej, n = read_shard(s, DOCUMENTS)
    assert n == 3 and rows.num_rows == 2 and rej.column("drop_reason").to_pylist() == ["malformed_json:number_too_long"]
    assert "n.jsonl byte 17: Exceeds the limit (4300 digits)" in rej.column("reject_detail")[0].as_py()
    assert json.loads(rows.column("meta")[1].as_py()) == {"big": "123456789012345678901234567890"}


def test_a_meta_that_is_not_json_beside_extra_fields_is_kept_as_given(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"text": "one", "meta": "not json", "lang": "en"}\n'
                     b'{"text": "two", "meta": "' + b"[" * 100_000 + b'", "lang": "de"}\n'
                     b'{"text": "three", "meta": "{\\"a\\": 1}", "lang": "fr"}\n')
    (s,) = plan_file(str(path))
    rows, rej, n = read_shard(s, DOCUMENTS)
    assert n == 3 and rows.num_rows == 3 and rej.num_rows == 0
    metas = [json.loads(m) for m in rows.column("meta").to_pylist()]
    assert metas[0] == {"meta": "not json", "lang": "en"} and metas[1]["meta"].startswith("[[[")
    assert metas[2] == {"a": 1, "lang": "fr"}


def test_a_string_where_a_list_is_expected_is_a_reject_not_split_into_characters(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_text('{"text": "one", "source_ids": "doc-7"}\n{"text": "two", "source_ids": ["doc-8"]}\n')
    (s,) = plan_file(str(path))
    rows, rej, n = read_shard(s, DOCUMENTS)
    assert rows.column("source_ids").to_pylist() == [["doc-8"]]
    assert rej.column("drop_reason").to_pylist() == ["wrong_type:source_ids"]
    assert "'source_ids' is str, expected list<item: string>" in rej.column("reject_detail")[0].as_py()
