"""Bad input files: each ends in one line that says what and where, and nothing is written."""
from __future__ import annotations

import gzip
import json

import h5py
import numpy as np
import pytest

import featx
from tests.conftest import write_lines
from tests.faults.conftest import assert_refused, labelled_csv, snapshot, tiny_args

LATIN = "café".encode("cp1252")  # b"caf\xe9": not UTF-8


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _rows_then_bad(tmp, name, header, good, bad_line, n=30):
    body = header + b"".join(good(i) for i in range(n)) + bad_line + good(n)
    (tmp / name).write_bytes(body)
    return tmp / name, []


def _gz(tmp, name, data: bytes):
    (tmp / name).write_bytes(gzip.compress(data))
    return tmp / name


def _truncated_gz(tmp):
    data = gzip.compress(b"text,label\n" + b"".join(b"row %d,pos\n" % i for i in range(5000)))
    (tmp / "cut.csv.gz").write_bytes(data[: len(data) // 2])
    return tmp / "cut.csv.gz", []


def _crc_corrupt_gz(tmp):
    data = bytearray(gzip.compress(b"text,label\n" + b"".join(b"row %d,pos\n" % i for i in range(50))))
    data[-8] ^= 0xFF  # the CRC32 in the trailer
    (tmp / "crc.csv.gz").write_bytes(bytes(data))
    return tmp / "crc.csv.gz", []


def _parquet(tmp, name, table_fn):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    path = tmp / name
    pq.write_table(table_fn(pa), path)
    return path


def _corrupt_parquet(tmp):
    path = _parquet(tmp, "bad.parquet", lambda pa: pa.table({"text": [f"row {i}" for i in range(100)]}))
    data = bytearray(path.read_bytes())
    data[20:200] = b"\x00" * 180  # column data and page headers, keeping the footer
    path.write_bytes(bytes(data))
    return path, []


def _one_image_folder(folder):
    from PIL import Image

    (folder / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "cat" / "a.png")
    return folder


CASES = {
    "missing file": (lambda t: (t / "missing.csv", []), ["does not exist"]),
    "empty folder as input": (lambda t: ((t / "dir").mkdir() or t / "dir", []),
                              ["holds no image files", "for texts, name the file"]),
    "images with a text model": (lambda t: (_one_image_folder(t / "pics"), []), ["no image processor"]),
    "empty jsonl": (lambda t: (write_lines(t / "e.jsonl", []), []), ["has no rows"]),
    "csv with a header only": (lambda t: (write_lines(t / "h.csv", ["text,label"]), []), ["has no rows"]),
    "unknown suffix": (lambda t: (write_lines(t / "x.dat", ["a"]), []), ["cannot tell the format"]),
    "missing text column": (lambda t: (write_lines(t / "c.csv", ["body,label", "a,b"]), []),
                            ["text column 'text' is not in", "its columns are: body, label"]),
    "missing label column": (lambda t: (write_lines(t / "c.csv", ["text", "a"]), ["--label-column", "y"]),
                             ["label column 'y' is not in"]),
    "non-utf8 header row": (lambda t: (_write(t / "h.csv", b"text," + LATIN + b"\nrow,1\n"), []),
                            ["not valid utf-8 text: line 1, byte offset 8", "0xe9", "--encoding"]),
    "non-utf8 after the first row, csv": (
        lambda t: _rows_then_bad(t, "late.csv", b"text,label\n", lambda i: b"row %d,pos\n" % i, LATIN + b",neg\n"),
        ["late.csv is not valid utf-8 text: line 32", "0xe9"]),
    "non-utf8 after the first row, jsonl": (
        lambda t: _rows_then_bad(t, "late.jsonl", b"", lambda i: b'{"text": "row %d"}\n' % i,
                                 b'{"text": "' + LATIN + b'"}\n'),
        ["late.jsonl is not valid utf-8 text: line 31", "byte offset"]),
    "non-utf8 after the first row, tsv": (
        lambda t: _rows_then_bad(t, "late.tsv", b"text\tlabel\n", lambda i: b"row %d\tpos\n" % i,
                                 LATIN + b"\tneg\n"),
        ["late.tsv is not valid utf-8 text: line 32"]),
    "non-utf8 in a txt": (
        lambda t: _rows_then_bad(t, "late.txt", b"", lambda i: b"row %d\n" % i, LATIN + b"\n"),
        ["late.txt is not valid utf-8 text: line 31"]),
    "non-utf8 inside a gzip": (
        lambda t: (_gz(t, "late.csv.gz", b"text\n" + b"".join(b"r%d\n" % i for i in range(40)) + LATIN + b"\n"), []),
        ["late.csv.gz is not valid utf-8 text: line 42", "(in the decompressed text)"]),
    "truncated gzip": (_truncated_gz, ["cut.csv.gz is a truncated or corrupt gzip file"]),
    "crc-corrupt gzip": (_crc_corrupt_gz, ["crc.csv.gz is a truncated or corrupt gzip file", "CRC"]),
    "not gzip at all": (lambda t: (write_lines(t / "plain.csv.gz", ["text", "a"]), []),
                        ["plain.csv.gz is a truncated or corrupt gzip file"]),
    "corrupt parquet": (_corrupt_parquet, ["bad.parquet is not a readable parquet file"]),
    "invalid json line": (lambda t: (write_lines(t / "j.jsonl", ['{"text": "a"}', '{"text": "b"}', "{oops"]), []),
                          ["j.jsonl line 3 is not valid JSON"]),
    "json array line": (lambda t: (write_lines(t / "j.jsonl", ['{"text": "a"}', '["b"]']), []),
                        ["line 2 is a JSON list, expected an object"]),
    "csv row with extra fields": (lambda t: (write_lines(t / "f.csv", ["text,label", "a,pos", "b,neg,x"]), []),
                                  ["f.csv row 2 has 3 fields, the header has 2"]),
    "null label": (lambda t: (write_lines(t / "n.jsonl", ['{"text": "a", "label": "x"}',
                                                          '{"text": "b", "label": null}']), []),
                   ["n.jsonl row 2: the label ('label') is missing (null)"]),
    "NaN label in jsonl": (lambda t: (write_lines(t / "n.jsonl", ['{"text": "a", "label": 1}',
                                                                 '{"text": "b", "label": NaN}']), []),
                           ["row 2: the label ('label') is missing (nan)"]),
    "'nan' label in csv": (lambda t: (write_lines(t / "n.csv", ["text,label", "a,pos", "b,nan", "c,neg"]), []),
                           ["n.csv row 2: the label ('label') is missing ('nan')"]),
    "empty label in csv": (lambda t: (write_lines(t / "n.csv", ["text,label", "a,pos", "b,", "c,neg"]), []),
                           ["n.csv row 2: the label ('label') is missing ('')"]),
    "NaN label in parquet": (
        lambda t: (_parquet(t, "n.parquet", lambda pa: pa.table({"text": ["a", "b", "c"],
                                                                 "label": [1.0, float("nan"), 2.0]})), []),
        ["n.parquet row 2: the label ('label') is missing (nan)"]),
    "null text": (lambda t: (write_lines(t / "t.jsonl", ['{"text": "a"}', '{"text": null}']), []),
                  ["t.jsonl row 2: column 'text' is empty (null)"]),
    "unknown encoding name": (lambda t: (labelled_csv(t / "a.csv"), ["--encoding", "klingon"]),
                              ["--encoding 'klingon' is not a text encoding"]),
    "unknown bundled dataset": (lambda t: ("sst2:nope", []), ["does not exist (bundled datasets: sst2:train"]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path, tiny_bert_dir, case):
    make, fragments = CASES[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    path, extra = make(inputs)
    before = snapshot(inputs)
    out = tmp_path / "out" / "s.h5"
    result = cli("extract", path, "-o", out, *tiny_args(tiny_bert_dir), *extra)
    assert_refused(result, *fragments)
    assert snapshot(inputs) == before
    assert not out.exists()


def test_encoding_option_reads_a_cp1252_file_as_its_text(cli, tmp_path, tiny_bert_dir):
    rows = ["text,label", "café crème,pos", "naïve résumé,neg"] + [f"plain {i},pos" for i in range(6)]
    path = tmp_path / "win.csv"
    path.write_bytes("\n".join(rows).encode("cp1252") + b"\n")
    out = tmp_path / "s.h5"
    refused = cli("extract", path, "-o", out, *tiny_args(tiny_bert_dir))
    assert_refused(refused, "win.csv is not valid utf-8 text: line 2, byte offset 14")
    done = cli("extract", path, "-o", out, *tiny_args(tiny_bert_dir), "--encoding", "cp1252")
    assert done.code == 0, done.err
    with featx.open_store(out) as store:
        import hashlib

        assert bytes(store.content_sha256[0]) == hashlib.sha256("café crème".encode()).digest()
        assert json.loads(h5py.File(out, "r").attrs["input"])["encoding"] == "cp1252"


def test_finetune_and_predict_report_a_late_bad_byte_in_one_line(cli, tmp_path, tiny_bert_dir, toy_inputs):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(toy_inputs["train"].read_bytes() + b"caf\xe9 movie,pos\n")
    result = cli("finetune", bad, "-o", tmp_path / "ft", "--model", tiny_bert_dir, "--max-steps", "1", "-q")
    assert_refused(result, "bad.csv is not valid utf-8 text: line 194")
    assert not (tmp_path / "ft").exists()
    store = featx.extract(toy_inputs["train"], tmp_path / "t.h5", model=str(tiny_bert_dir), dtype="fp32",
                          progress=False)
    head = featx.train_head(store, kind="logreg", C=1.0)
    featx.Predictor(head).save(tmp_path / "model")
    result = cli("predict", tmp_path / "model", bad, "-o", tmp_path / "p.jsonl", "-q")
    assert_refused(result, "bad.csv is not valid utf-8 text: line 194")
    assert not (tmp_path / "p.jsonl").exists() and not list(tmp_path.glob(".p.jsonl.featx-*"))


def test_labels_named_like_numbers_still_work_and_nan_is_not_a_class(tmp_path, tiny_backbone):
    path = write_lines(tmp_path / "ok.jsonl", ['{"text": "a", "label": 2}', '{"text": "b", "label": 10}'])
    with featx.extract(path, tmp_path / "s.h5", model=tiny_backbone, dtype="fp32", progress=False) as store:
        assert store.classes == ("2", "10") and np.array_equal(store.labels, [0, 1])
