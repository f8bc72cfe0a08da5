"""Table inputs: a file (or a bundled dataset) read as a stream of records.

`open_input` resolves what the user named and checks the columns; `InputSource.scan`
makes one streaming pass that counts rows, collects the label set and hashes the
bytes; `InputSource.records` then streams (id, text, label) from any row onward.
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featx.atomic import file_sha256
from featx.data.base import Source, TableFile
from featx.data.bundled import BUNDLED, resolve_bundled
from featx.data.readers import DEFAULT_ENCODING, FORMATS, check_encoding, detect_format, read_rows
from featx.data.targets import TARGET_CHOICES, Targets, as_int, label_key, read_label_names
from featx.errors import FeatxError, InputError, ParameterError


@dataclass(frozen=True, slots=True)
class Record:
    """One input row: its id, its text and its label: a class index (-1 when unlabelled), or for
    a multi-label input the tuple of its class indices, for a regression input its targets."""

    id: int | str
    text: str
    label: int | tuple[int, ...] | tuple[float, ...]


@dataclass(frozen=True)
class InputSummary:
    """What one pass over the input learned: size, labels, id kind, content hash."""

    n_rows: int
    classes: tuple[str, ...] | None  # the class names, or a regression input's target names
    id_kind: str  # "int" or "str"
    sha256: str
    task: str = "single"  # featx.data.targets.TASKS


@dataclass(frozen=True)
class InputSource(TableFile):
    """A readable input with its columns chosen; `describe()` identifies it in a store."""

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
    targets: Targets = field(default_factory=Targets)
    # The complete class list, from --label-names (label i is the i-th name): a split that lacks a
    # rare class still gets every class. None: the classes found in the input.
    classes_given: tuple[str, ...] | None = None
    # Keep only the rows whose column holds this value (--where split=train): one file, its own splits.
    where: tuple[str, str] | None = None

    def describe(self) -> dict[str, Any]:
        """The column and row choices that, with the file's bytes, define which texts are read.

        Choices left at their defaults are left out, so stores made before a choice existed
        keep matching."""
        return {"format": self.format, "text_column": self.text_column, "label_column": self.label_column,
                "id_column": self.id_column, "header": self.header, "label_names": self.label_names,
                **({"rows_mod": [self.rows_mod[0], list(self.rows_mod[1])]} if self.rows_mod else {}),
                **({"encoding": self.encoding} if self.encoding != DEFAULT_ENCODING else {}),
                **self.targets.describe(), **({"classes": list(self.classes_given)} if self.classes_given else {}),
                **({"where": list(self.where)} if self.where else {})}

    def scan(self) -> InputSummary:
        """Count rows, collect the labels and the id kind, hash the file: one streaming pass."""
        label_keys: set[str] = set()
        ids_are_ints = True
        n_rows = 0
        task = self.targets.task
        for n_rows, (index, row) in enumerate(self._rows(), start=1):
            self._text(row, index + 1)
            if task == "multi":
                label_keys.update(self.targets.keys(row, self.label_column, self._where(index + 1)))
            elif task == "regression":
                self.targets.numbers(row, self._where(index + 1))
            elif self.label_column is not None:
                label_keys.add(self._label_key(row, index + 1))
            if self.id_column is not None and ids_are_ints:
                ids_are_ints = as_int(self._raw(row, self.id_column, index + 1)) is not None
        if n_rows == 0:
            raise FeatxError(f"{self.name} has no rows: nothing to extract")
        classes = None
        if self.targets.columns:
            classes = self.targets.columns  # the 0/1 columns, or the target names
        elif self.classes_given is not None:
            unknown = sorted(k for k in label_keys if self.label_names.get(k, k) not in self.classes_given)
            if unknown:
                raise InputError(f"{self.name} has labels --label-names does not name: "
                                 f"{', '.join(map(repr, unknown[:5]))}")
            classes = self.classes_given
        elif self.label_column is not None:
            keys = sorted(label_keys, key=_label_sort_key(label_keys))
            classes = tuple(self.label_names.get(k, k) for k in keys)
        if task == "multi" and not self.targets.allow_empty and not classes:
            raise FeatxError(f"{self.name} has no labels")
        return InputSummary(n_rows=n_rows, classes=classes, id_kind="int" if ids_are_ints else "str",
                            sha256=self._content_sha256(), task=task)

    def _content_sha256(self) -> str:
        """The sha256 the store records for the input: of the file's bytes."""
        return file_sha256(self.path)

    def records(self, summary: InputSummary, start: int = 0) -> Iterator[Record]:
        """Records from row `start` (0-based) on, labels mapped to indices into summary.classes."""
        label_index = {}
        if summary.classes is not None:
            names = {self.label_names.get(k, k): k for k in self.label_names} if self.label_names else {}
            label_index = {names.get(c, c): i for i, c in enumerate(summary.classes)}
            label_index.update({c: i for i, c in enumerate(summary.classes) if c not in label_index})
        task = self.targets.task
        for index, row in itertools.islice(self._rows(), start, None):
            row_number = index + 1  # 1-based position in the file, for messages
            text = self._text(row, row_number)
            label: int | tuple[int, ...] | tuple[float, ...] = -1
            if task == "regression":
                label = self.targets.numbers(row, self._where(row_number))
            elif task == "multi":
                keys = self.targets.keys(row, self.label_column, self._where(row_number))
                label = tuple(self._index(label_index, key, row_number) for key in keys)
            elif self.label_column is not None:
                label = self._index(label_index, self._label_key(row, row_number), row_number)
            row_id: int | str = row_number - 1
            if self.id_column is not None:
                raw = self._raw(row, self.id_column, row_number)
                number = as_int(raw)
                row_id = number if summary.id_kind == "int" and number is not None else str(raw)
            yield Record(row_id, text, label)

    def first_texts(self, rows: int) -> list[str]:
        """The texts of the first `rows` selected rows, as `records` gives them, read without a scan of
        the rest (int8's calibration rows: the extraction's own scan checks the whole input)."""
        return [self._text(row, index + 1) for index, row in itertools.islice(self._rows(), rows)]

    def _index(self, label_index: dict[str, int], key: str, row_number: int) -> int:
        if key not in label_index:
            raise FeatxError(f"{self.name} changed while being read: row {row_number} has a new label {key!r}")
        return label_index[key]

    def _where(self, row_number: int) -> str:
        return f"{self.name} row {row_number}"

    def _rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(0-based index in the file, row) for every selected row."""
        rows: Iterator[tuple[int, dict[str, Any]]] = enumerate(read_rows(self.path, self.format, self.header,
                                                                          self.encoding))
        if self.where is not None:
            column, value = self.where
            rows = ((i, row) for i, row in rows if str(row.get(column, "")).strip() == value)
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
        if isinstance(value, (list, tuple)):
            raise InputError(f"{self._where(row_number)}: the label ({self.label_column!r}) is a list; read it as "
                             "several labels with --multi-label , (any separator: a list is read as is)")
        return label_key(value, self.label_column, self._where(row_number))


def open_input(spec: str | Path, *, text_column: str | None = None, label_column: str | None = None,
               id_column: str | None = None, header: bool = True, fmt: str | None = None,
               rows_mod: tuple[int, tuple[int, ...]] | None = None, encoding: str | None = None,
               where: str | None = None, **targets: Any) -> InputSource:
    """An InputSource for a file path or a bundled name like ``sst2:dev``, columns checked.

    Defaults: the text column is ``text``; the label column is ``label`` when the input
    has one (otherwise the store is unlabelled); ids are the 0-based row index; the
    text is UTF-8 unless `encoding` names another codec.
    `where` ("COL=VALUE"): only the rows whose COL holds VALUE (a file holding its own splits).
    Multi-label and regression targets, as keywords (featx.data.targets.TARGET_CHOICES):
    `multi_label` (a cell's separator), `label_columns` (0/1 columns), `target` (number columns),
    `allow_empty_labels`; and `label_names` (a file of one name a line, or the names): label i's name.
    """
    unknown = sorted(set(targets) - set(TARGET_CHOICES))
    if unknown:
        raise ParameterError(unknown[0], f"is not an option of open_input: the target options are "
                                         f"{', '.join(TARGET_CHOICES)}")
    given_names = _given_names(targets.pop("label_names", None))
    read = Targets.of(label_column=label_column, **targets)
    encoding = DEFAULT_ENCODING if encoding is None else check_encoding(encoding)
    bundled = resolve_bundled(str(spec))
    if bundled is not None:
        path, fmt, defaults, names_by_key, name = bundled.path, "tsv", bundled.columns, bundled.label_names, str(spec)
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
        defaults, names_by_key = {}, {}
    if fmt == "txt":
        header = False
    columns = _first_row_columns(path, fmt, header, name, encoding)
    text_column = text_column or defaults.get("text") or "text"
    if label_column is None and not read.columns:
        label_column = defaults.get("label") or ("label" if "label" in columns else None)
    if read.task == "multi" and not read.columns and label_column is None:
        raise FeatxError(f"--multi-label splits the label column, and {name} has no column 'label': "
                         "name it with --label-column")
    if given_names is not None:
        names_by_key = {str(i): n for i, n in enumerate(given_names)}
    kept = _where(where)
    for role, column in (("text", text_column), ("label", label_column), ("id", id_column), ("where", kept and kept[0]),
                         *((("target" if read.task == "regression" else "label"), c) for c in read.columns)):
        if column is not None and column not in columns:
            shown = ", ".join(columns)
            if not header and fmt in ("csv", "tsv"):
                shown += " (no header: columns are numbered from 0)"
            raise FeatxError(f"{role} column {column!r} is not in {name}; its columns are: {shown} "
                             f"(choose with {_FLAGS.get(role, f'--{role}-column')})")
    if rows_mod is not None:
        modulus, keep = int(rows_mod[0]), tuple(sorted({int(r) for r in rows_mod[1]}))
        if modulus < 1 or not keep or not all(0 <= r < modulus for r in keep):
            raise FeatxError(f"row selection {rows_mod!r}: need a modulus >= 1 and remainders in 0..modulus-1")
        rows_mod = (modulus, keep)
    return InputSource(path=path, format=fmt, text_column=text_column, label_column=label_column,
                       id_column=id_column, header=header, label_names=names_by_key, name=name, rows_mod=rows_mod,
                       encoding=encoding, targets=read, classes_given=given_names, where=kept)


_FLAGS = {"target": "--target", "where": "--where", "label": "--label-column or --label-columns"}


def _where(spec: str | None) -> tuple[str, str] | None:
    if spec is None:
        return None
    column, sep, value = spec.partition("=")
    if not sep or not column.strip():
        raise FeatxError(f"--where {spec!r}: write COLUMN=VALUE, e.g. split=train")
    return column.strip(), value.strip()


def _given_names(label_names: str | Path | Sequence[str] | None) -> tuple[str, ...] | None:
    """--label-names: a file of one class name a line, or the names themselves."""
    if label_names is None:
        return None
    if isinstance(label_names, (str, Path)):
        return read_label_names(label_names)
    names = tuple(str(n) for n in label_names)
    if not names or len(set(names)) != len(names):
        raise FeatxError("label_names must be distinct class names")
    return names


def _first_row_columns(path: Path, fmt: str, header: bool, name: str, encoding: str) -> list[str]:
    try:
        first = next(read_rows(path, fmt, header, encoding), None)
    except OSError as e:
        raise InputError(f"cannot read {name}: {e.strerror or e}") from None
    if first is None:
        raise FeatxError(f"{name} has no rows: nothing to extract")
    return list(first)


def _label_sort_key(keys: set[str]) -> Callable[[str], tuple[int, str]]:
    """Numeric order when every label is an integer, else alphabetical: stable across runs."""
    if all(as_int(k) is not None for k in keys):
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
