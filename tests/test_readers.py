import gzip
import json

import pytest

from featx.data import open_input
from featx.errors import FeatxError
from tests.conftest import write_lines


def read_all(source):
    summary = source.scan()
    return summary, list(source.records(summary))


def test_csv_with_quotes_commas_and_string_labels(tmp_path):
    path = write_lines(tmp_path / "x.csv", ['id,text,label', '7,"hello, world",pos', '9,"say ""hi""",neg'])
    summary, records = read_all(open_input(path, id_column="id"))
    assert summary.classes == ("neg", "pos") and summary.id_kind == "int"
    assert [(r.id, r.text, r.label) for r in records] == [(7, "hello, world", 1), (9, 'say "hi"', 0)]


def test_tsv_without_header_and_crlf(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_bytes(b'a "quoted" phrase\tSports\r\nsecond\tWorld\r\n')
    summary, records = read_all(open_input(path, header=False, text_column="0", label_column="1"))
    assert [r.text for r in records] == ['a "quoted" phrase', "second"]
    assert summary.classes == ("Sports", "World") and [r.label for r in records] == [0, 1]
    assert [r.id for r in records] == [0, 1]


def test_jsonl_gz_and_integer_labels_sorted_numerically(tmp_path):
    path = tmp_path / "x.jsonl.gz"
    rows = [{"text": "t", "label": label} for label in (10, 2, 1, 2)]
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    summary, records = read_all(open_input(path))
    assert summary.classes == ("1", "2", "10")
    assert [r.label for r in records] == [2, 1, 0, 1]


def test_string_ids_are_kept_exactly(tmp_path):
    path = write_lines(tmp_path / "x.jsonl", [json.dumps({"id": i, "text": "t"}) for i in ("007", "b")])
    summary, records = read_all(open_input(path, id_column="id"))
    assert summary.id_kind == "str" and [r.id for r in records] == ["007", "b"]
    assert summary.classes is None and records[0].label == -1


def test_plain_text_one_record_per_line(tmp_path):
    path = write_lines(tmp_path / "notes.txt", ["first line", "", "third"])
    summary, records = read_all(open_input(path))
    assert summary.n_rows == 3 and [r.text for r in records] == ["first line", "", "third"]


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"text": ["a", "b", "c"], "label": ["x", "y", "x"]}), path)
    _summary, records = read_all(open_input(path))
    assert [(r.text, r.label) for r in records] == [("a", 0), ("b", 1), ("c", 0)]


def test_rows_mod_selects_a_holdout_and_keeps_file_row_ids(tmp_path):
    path = write_lines(tmp_path / "x.txt", [f"line {i}" for i in range(10)])
    held = open_input(path, rows_mod=(4, (0,)))
    rest = open_input(path, rows_mod=(4, (1, 2, 3)))
    _, held_records = read_all(held)
    summary, _rest_records = read_all(rest)
    assert [r.id for r in held_records] == [0, 4, 8] and summary.n_rows == 7
    assert [r.text for r in rest.records(summary, start=5)] == ["line 7", "line 9"]
    assert held.describe() != open_input(path).describe()


def test_records_resume_from_a_row(tmp_path):
    path = write_lines(tmp_path / "x.txt", [f"line {i}" for i in range(10)])
    source = open_input(path)
    summary = source.scan()
    assert [r.id for r in source.records(summary, start=7)] == [7, 8, 9]
    assert [r.text for r in source.records(summary, start=7)] == ["line 7", "line 8", "line 9"]


@pytest.mark.parametrize("content, kwargs, message", [
    ("text,label\na,b\n", {"text_column": "sentence"}, "text column 'sentence' is not in"),
    ("text,label\na,b\n", {"id_column": "uid"}, "id column 'uid'"),
    ("", {}, "has no rows"),
    ("text,label\n", {}, "has no rows"),
    ("text,label\na,b\nc\n", {}, "row 2 has 1 fields"),
    ("text,label\na,\n", {}, "featx does not guess labels"),
])
def test_input_problems_are_user_errors(tmp_path, content, kwargs, message):
    path = tmp_path / "x.csv"
    path.write_text(content)
    with pytest.raises(FeatxError, match=message):
        open_input(path, **kwargs).scan()


def test_missing_file_and_bad_json_are_user_errors(tmp_path):
    with pytest.raises(FeatxError, match="does not exist"):
        open_input(tmp_path / "nope.jsonl")
    path = write_lines(tmp_path / "x.jsonl", ['{"text": "ok"}', '{"text": '])
    with pytest.raises(FeatxError, match="line 2 is not valid JSON"):
        open_input(path).scan()
    with pytest.raises(FeatxError, match="cannot tell the format"):
        open_input(write_lines(tmp_path / "x.dat", ["a"]))


def test_bundled_sst2_dev():
    summary, records = read_all(open_input("sst2:dev"))
    assert summary.n_rows == 872 and summary.classes == ("negative", "positive")
    assert records[0].text == "one long string of cliches ." and records[0].label == 0


# ---- every reader on the real shared files, as they are ----

def test_real_sst2_train_tsv_with_crlf(data_dir):
    summary = open_input(data_dir / "sst2" / "train.tsv", text_column="sentence").scan()
    assert summary.n_rows == 67_349 and summary.classes == ("0", "1")


def test_real_sst2_dev_tsv_header_is_content(data_dir):
    source = open_input(data_dir / "sst2" / "dev.tsv", text_column="content")
    summary, records = read_all(source)
    assert summary.n_rows == 872 and records[0].text == "one long string of cliches ."
    with pytest.raises(FeatxError, match="its columns are: label, content"):
        open_input(data_dir / "sst2" / "dev.tsv", text_column="sentence")


def test_real_imdb_jsonl_gz(data_dir):
    source = open_input(data_dir / "imdb" / "test.jsonl.gz", id_column="id")
    summary = source.scan()
    assert summary.n_rows == 25_000 and summary.classes == ("0", "1") and summary.id_kind == "int"
    first = next(source.records(summary))
    assert (first.id, first.label) == (0, 1) and first.text.startswith("I went and saw this movie last night")


def test_real_emotion_jsonl_string_labels(data_dir):
    summary = open_input(data_dir / "emotion" / "validation.jsonl").scan()
    assert summary.n_rows == 2_000
    assert summary.classes == ("anger", "fear", "joy", "love", "sadness", "surprise")


def test_real_ag_news_csv(data_dir):
    source = open_input(data_dir / "ag_news" / "test.csv", text_column="description")
    summary, records = read_all(source)
    assert summary.n_rows == 7_600 and summary.classes == ("1", "2", "3", "4")
    assert records[0].label == 2  # label "3" (Business) is the third class


def test_real_ag_news_headerless_tsv(data_dir):
    source = open_input(data_dir / "ag_news" / "alps_test.tsv", header=False, text_column="0", label_column="1")
    summary = source.scan()
    assert summary.n_rows == 7_600 and summary.classes == ("Business", "Sci/Tech", "Sports", "World")
