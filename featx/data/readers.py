"""Streaming readers: each yields one row at a time as a dict, whatever the format.

Nothing here loads a whole file: a 10-million-line input costs one row of memory.
Rows are numbered from 1 in error messages, counting data rows (not the header).
"""
from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from featx.errors import FeatxError, InputError, ParameterError, first_line

FORMATS = ("csv", "tsv", "jsonl", "txt", "parquet")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
             ".txt": "txt", ".text": "txt", ".parquet": "parquet", ".pq": "parquet"}

# Reviews and documents can exceed csv's 128 KiB default field limit.
csv.field_size_limit(2**31 - 1)


def detect_format(path: Path) -> str:
    """The format named by the file's suffix (a trailing .gz is looked through)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    raise FeatxError(
        f"cannot tell the format of {path.name}: name it .csv, .tsv, .jsonl, .txt or .parquet "
        "(optionally .gz), or pass --format"
    )


DEFAULT_ENCODING = "utf-8"


def check_encoding(encoding: str) -> str:
    """The codec's canonical name; a ParameterError for a name Python does not know."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise ParameterError("encoding", f"{encoding!r} is not a text encoding Python knows "
                                         "(try utf-8, cp1252, latin-1)") from None


def _open_binary(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


def _open_text(path: Path, encoding: str) -> io.TextIOBase:
    # newline="" lets the csv module see CRLF and quoted newlines itself;
    # utf-8-sig drops a byte-order mark from the first header cell.
    codec = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    return io.TextIOWrapper(_open_binary(path), encoding=codec, newline="")  # type: ignore[type-var]


def read_rows(path: Path, fmt: str, header: bool = True,
              encoding: str = DEFAULT_ENCODING) -> Iterator[dict[str, Any]]:
    """Every data row of the file, in order, as a dict of column name to value.

    A byte that is not valid in `encoding`, a truncated or corrupt .gz and a damaged
    parquet file end in one InputError that says where.
    """
    if fmt in ("csv", "tsv"):
        rows = _read_delimited(path, "," if fmt == "csv" else "\t", header, encoding)
    elif fmt == "jsonl":
        rows = _read_jsonl(path, encoding)
    elif fmt == "txt":
        rows = _read_lines(path, encoding)
    elif fmt == "parquet":
        rows = _read_parquet(path)
    else:
        raise FeatxError(f"unknown format {fmt!r}: choose from {', '.join(FORMATS)}")
    try:
        yield from rows
    except UnicodeDecodeError as e:
        raise InputError(_decode_error_message(path, encoding, e)) from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise InputError(f"{path.name} is a truncated or corrupt gzip file ({e or 'it ends early'}): "
                         "download or compress it again") from None


def _decode_error_message(path: Path, encoding: str, error: UnicodeDecodeError) -> str:
    """Where the first undecodable byte is: found by a second, binary pass (only on error)."""
    offset = 0
    with _open_binary(path) as f:
        for line_number, raw in enumerate(f, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as e:
                bad = raw[e.start:e.start + 1].hex()
                return (f"{path.name} is not valid {encoding} text: line {line_number}, byte offset "
                        f"{offset + e.start:,}{' (in the decompressed text)' if path.suffix.lower() == '.gz' else ''}"
                        f" holds byte 0x{bad}; pass --encoding if the file uses another one (e.g. cp1252, latin-1)")
            offset += len(raw)
    return f"{path.name} is not valid {encoding} text ({error.reason}); pass --encoding (e.g. cp1252, latin-1)"


def _read_delimited(path: Path, delimiter: str, header: bool, encoding: str) -> Iterator[dict[str, Any]]:
    # TSV files in the wild (GLUE among them) use bare quote characters inside
    # fields, so tabs alone delimit; CSV keeps standard quoting.
    quoting: Literal[0, 1, 2, 3] = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with _open_text(path, encoding) as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
        names = None
        if header:
            names = next(reader, None)
            if names is None:
                return
            names = [n.strip() for n in names]
        for row_number, cells in enumerate(reader, start=1):
            if not cells:
                continue  # a blank line is no row
            if names is None:
                yield {str(i): cell for i, cell in enumerate(cells)}
                continue
            if len(cells) != len(names):
                raise FeatxError(
                    f"{path.name} row {row_number} has {len(cells)} fields, the header has {len(names)}: "
                    "fix the row, or check the delimiter and --no-header"
                )
            yield dict(zip(names, cells))


def _read_jsonl(path: Path, encoding: str) -> Iterator[dict[str, Any]]:
    with _open_text(path, encoding) as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise FeatxError(f"{path.name} line {line_number} is not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise FeatxError(f"{path.name} line {line_number} is a JSON {type(row).__name__}, expected an object")
            yield row


def _read_lines(path: Path, encoding: str) -> Iterator[dict[str, Any]]:
    with _open_text(path, encoding) as f:
        for line in f:
            yield {"text": line.rstrip("\r\n")}


def _read_parquet(path: Path) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise FeatxError(
            f"reading {path.name} needs pyarrow: pip install 'featx[parquet]' (or pyarrow)"
        ) from None
    import pyarrow

    try:
        parquet_file = pq.ParquetFile(path)
        batches = parquet_file.iter_batches(batch_size=8192)
        for batch in batches:
            yield from batch.to_pylist()
    except (pyarrow.ArrowException, OSError) as e:
        first = first_line(e)
        raise InputError(f"{path.name} is not a readable parquet file ({first})") from None
