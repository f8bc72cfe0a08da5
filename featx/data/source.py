"""Table inputs: a file (or a bundled dataset) read as a stream of records.

`open_input` resolves what the user named and checks the columns; `InputSource.scan`
makes one streaming pass that counts rows, collects the label set and hashes the
bytes; `InputSource.records` then streams (id, text, label) from any row onward.
"""
from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featx.atomic import file_sha256
from featx.data.base import Source
from featx.data.bundled import BUNDLED, resolve_bundled
from featx.data.readers import DEFAULT_ENCODING, FORMATS, check_encoding, detect_format, read_rows
from featx.errors import FeatxError, InputError

# Spellings a missing value gets when a script or a data frame writes one as text.
MISSING_LABELS = frozenset({"nan", "null", "none"})

@dataclass(frozen=True, slots=True)
class Record:
    """One input row: its id, its text and its label index (-1 when unlabelled)."""

    id: int | str
    text: str
    label: int


@dataclass(frozen=True)
class InputSummary:
    """What one pass over the input learned: size, labels, id kind, content hash."""

    n_rows: int
    classes: tuple[str, ...] | None
    id_kind: str  # "int" or "str"
    sha256: str


@dataclass(frozen=True)
class InputSource:
    """A readable input with its columns chosen; `describe()` identifies it in a store."""

    path: Path
    format: str
    text_column: str
    label_column: str | None = None
    id_column: str | None = None
    header: bool = True
    label_names: dict[str, str] = field(default_factory=dict)
    name: str = ""
    # (m, (r1, r2, ...)): keep only rows whose 0-based index i has i % m in the remainders,
    # e.g. (10, (0,)) and (10, (1, ..., 9)) split a file into a 10 % / 90 % holdout.
    rows_mod: tuple[int, tuple[int, ...]] | None = None
    encoding: str = DEFAULT_ENCODING

    def describe(self) -> dict[str, Any]:
        """The column and row choices that, with the file's bytes, define which texts are read.

        Choices left at their defaults are left out, so stores made before a choice existed
        keep matching."""
        return {"format": self.format, "text_column": self.text_column, "label_column": self.label_column,
                "id_column": self.id_column, "header": self.header, "label_names": self.label_names,
                **({"rows_mod": [self.rows_mod[0], list(self.rows_mod[1])]} if self.rows_mod else {}),
                **({"encoding": self.encoding} if self.encoding != DEFAULT_ENCODING else {})}

    def scan(self) -> InputSummary:
        """Count rows, collect the labels and the id kind, hash the file: one streaming pass."""
        label_keys: set[str] = set()
        ids_are_ints = True
        n_rows = 0
        for n_rows, (index, row) in enumerate(self._rows(), start=1):
            self._text(row, index + 1)
            if self.label_column is not None:
                label_keys.add(self._label_key(row, index + 1))
            if self.id_column is not None and ids_are_ints:
                ids_are_ints = _as_int(self._raw(row, self.id_column, index + 1)) is not None
        if n_rows == 0:
            raise FeatxError(f"{self.name} has no rows: nothing to extract")
        classes = None
        if self.label_column is not None:
            keys = sorted(label_keys, key=_label_sort_key(label_keys))
            classes = tuple(self.label_names.get(k, k) for k in keys)
        return InputSummary(n_rows=n_rows, classes=classes, id_kind="int" if ids_are_ints else "str",
                            sha256=self._content_sha256())

    def _content_sha256(self) -> str:
        """The sha256 the store records for the input: of the file's bytes."""
        return file_sha256(self.path)

    def records(self, summary: InputSummary, start: int = 0) -> Iterator[Record]:
        """Records from row `start` (0-based) on, labels mapped to indices into summary.classes."""
        label_index = {}
        if summary.classes is not None:
            names = {self.label_names.get(k, k): k for k in self.label_names} if self.label_names else {}
            label_index = {names.get(c, c): i for i, c in enumerate(summary.classes)}
        for index, row in itertools.islice(self._rows(), start, None):
            row_number = index + 1  # 1-based position in the file, for messages
            text = self._text(row, row_number)
            label = -1
            if self.label_column is not None:
                key = self._label_key(row, row_number)
                if key not in label_index:
                    raise FeatxError(f"{self.name} changed while being read: row {row_number} has a new label {key!r}")
                label = label_index[key]
            row_id: int | str = row_number - 1
            if self.id_column is not None:
                raw = self._raw(row, self.id_column, row_number)
                as_int = _as_int(raw)
                row_id = as_int if summary.id_kind == "int" and as_int is not None else str(raw)
            yield Record(row_id, text, label)

    def _rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(0-based index in the file, row) for every selected row."""
        rows = enumerate(read_rows(self.path, self.format, self.header, self.encoding))
        if self.rows_mod is None:
            return rows
        modulus, keep = self.rows_mod[0], frozenset(self.rows_mod[1])
        return ((i, row) for i, row in rows if i % modulus in keep)

    def _raw(self, row: dict[str, Any], column: str, row_number: int) -> Any:
        try:
            value = row[column]
        except KeyError:
            raise FeatxError(f"{self.name} row {row_number} has no column {column!r}") from None
        if value is None:
            raise FeatxError(f"{self.name} row {row_number}: column {column!r} is empty (null)")
        return value

    def _text(self, row: dict[str, Any], row_number: int) -> str:
        value = self._raw(row, self.text_column, row_number)
        return value if isinstance(value, str) else str(value)

    def _label_key(self, row: dict[str, Any], row_number: int) -> str:
        value = row.get(self.label_column) if self.label_column is not None else None
        number = _as_int(value)
        key = str(number) if number is not None else "" if value is None else str(value).strip()
        if not key or key.lower() in MISSING_LABELS or (isinstance(value, float) and math.isnan(value)):
            raise InputError(f"{self.name} row {row_number}: the label ({self.label_column!r}) is missing "
                             f"({'null' if value is None else repr(value)}); featx does not guess labels: "
                             "fill it in or drop the row")
        return key


def open_input(spec: str | Path, *, text_column: str | None = None, label_column: str | None = None,
               id_column: str | None = None, header: bool = True, fmt: str | None = None,
               rows_mod: tuple[int, tuple[int, ...]] | None = None, encoding: str | None = None) -> InputSource:
    """An InputSource for a file path or a bundled name like ``sst2:dev``, columns checked.

    Defaults: the text column is ``text``; the label column is ``label`` when the input
    has one (otherwise the store is unlabelled); ids are the 0-based row index; the
    text is UTF-8 unless `encoding` names another codec.
    """
    encoding = DEFAULT_ENCODING if encoding is None else check_encoding(encoding)
    bundled = resolve_bundled(str(spec))
    if bundled is not None:
        path, fmt, defaults, label_names, name = bundled.path, "tsv", bundled.columns, bundled.label_names, str(spec)
    else:
        path = Path(spec).expanduser()
        name = str(spec)
        if not path.exists():
            hint = f" (bundled datasets: {', '.join(BUNDLED)})" if ":" in str(spec) else ""
            raise FeatxError(f"input {name} does not exist{hint}")
        if path.is_dir():
            raise FeatxError(f"input {name} is a folder: name a file")
        fmt = fmt or detect_format(path)
        if fmt not in FORMATS:
            raise FeatxError(f"unknown format {fmt!r}: choose from {', '.join(FORMATS)}")
        defaults, label_names = {}, {}
    if fmt == "txt":
        header = False
    columns = _first_row_columns(path, fmt, header, name, encoding)
    text_column = text_column or defaults.get("text") or "text"
    if label_column is None:
        label_column = defaults.get("label") or ("label" if "label" in columns else None)
    for role, column in (("text", text_column), ("label", label_column), ("id", id_column)):
        if column is not None and column not in columns:
            shown = ", ".join(columns)
            if not header and fmt in ("csv", "tsv"):
                shown += " (no header: columns are numbered from 0)"
            raise FeatxError(f"{role} column {column!r} is not in {name}; its columns are: {shown} "
                             f"(choose with --{role}-column)")
    if rows_mod is not None:
        modulus, keep = int(rows_mod[0]), tuple(sorted({int(r) for r in rows_mod[1]}))
        if modulus < 1 or not keep or not all(0 <= r < modulus for r in keep):
            raise FeatxError(f"row selection {rows_mod!r}: need a modulus >= 1 and remainders in 0..modulus-1")
        rows_mod = (modulus, keep)
    return InputSource(path=path, format=fmt, text_column=text_column, label_column=label_column,
                       id_column=id_column, header=header, label_names=label_names, name=name, rows_mod=rows_mod,
                       encoding=encoding)


def _first_row_columns(path: Path, fmt: str, header: bool, name: str, encoding: str) -> list[str]:
    try:
        first = next(read_rows(path, fmt, header, encoding), None)
    except OSError as e:
        raise InputError(f"cannot read {name}: {e.strerror or e}") from None
    if first is None:
        raise FeatxError(f"{name} has no rows: nothing to extract")
    return list(first)


def _as_int(value: Any) -> int | None:
    """The integer a value spells exactly (7, "7"), else None; "007" and True are not ints."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            return None
        return number if str(number) == text else None
    return None


def _label_sort_key(keys: set[str]) -> Callable[[str], tuple[int, str]]:
    """Numeric order when every label is an integer, else alphabetical: stable across runs."""
    if all(_as_int(k) is not None for k in keys):
        return lambda k: (int(k), k)
    return lambda k: (0, k)


def read_texts(source: Source) -> list[str]:
    """Every text of a text input, in order (for heads that read texts beside the vectors)."""
    if getattr(source, "modality", "text") != "text":
        raise FeatxError(f"{source.name} is read as images: a head's texts come from a table or text file")
    return [record.text for record in source.records(source.scan())]


def describe_json(source: Source) -> str:
    """Canonical JSON of `source.describe()`, as stored in a store's attributes."""
    return json.dumps(source.describe(), sort_keys=True, separators=(",", ":"))
