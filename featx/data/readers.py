"""Streaming readers: each yields one row at a time as a dict, whatever the format.

Nothing here loads a whole file: a 10-million-line input costs one row of memory.
Rows are numbered from 1 in error messages, counting data rows (not the header).
"""
from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from featx.errors import FeatxError

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


def _open_text(path: Path) -> io.TextIOBase:
    # newline="" lets the csv module see CRLF and quoted newlines itself;
    # utf-8-sig drops a byte-order mark from the first header cell.
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def read_rows(path: Path, fmt: str, header: bool = True) -> Iterator[dict[str, Any]]:
    """Every data row of the file, in order, as a dict of column name to value."""
    if fmt in ("csv", "tsv"):
        yield from _read_delimited(path, "," if fmt == "csv" else "\t", header)
    elif fmt == "jsonl":
        yield from _read_jsonl(path)
    elif fmt == "txt":
        yield from _read_lines(path)
    elif fmt == "parquet":
        yield from _read_parquet(path)
    else:
        raise FeatxError(f"unknown format {fmt!r}: choose from {', '.join(FORMATS)}")


def _read_delimited(path: Path, delimiter: str, header: bool) -> Iterator[dict[str, Any]]:
    # TSV files in the wild (GLUE among them) use bare quote characters inside
    # fields, so tabs alone delimit; CSV keeps standard quoting.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with _open_text(path) as f:
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


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with _open_text(path) as f:
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


def _read_lines(path: Path) -> Iterator[dict[str, Any]]:
    with _open_text(path) as f:
        for line in f:
            yield {"text": line.rstrip("\r\n")}


def _read_parquet(path: Path) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise FeatxError(
            f"reading {path.name} needs pyarrow: pip install 'featx[parquet]' (or pyarrow)"
        ) from None
    parquet_file = pq.ParquetFile(path)
    for batch in parquet_file.iter_batches(batch_size=8192):
        yield from batch.to_pylist()
