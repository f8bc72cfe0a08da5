"""Rows already in memory: a list of texts, a dict of columns, a pandas DataFrame, a pyarrow
Table or a Hugging Face `datasets.Dataset`, read as a table of texts is.

`open_columns` turns each into a `ColumnsSource`: the table reader's rules apply unchanged (a
text column, an optional label and id column; a missing label is one line naming the row), so
the same rows as a CSV, a DataFrame or a Dataset give the same records and the same vectors.
What the store records as the input's sha256 is the sha256 of the rows it reads (each row's
id, text and label as canonical JSON), computed as they are read: a resumed extraction over an
object whose rows changed is refused as a changed file is. The kind of object is recorded in
the input description (`format`: "memory:DataFrame"), outside the config, so the fingerprint
is the one the same rows from a file give.

A Dataset's `ClassLabel` column gives its class names (the stored labels are the names, as
`label_names` gives them for the bundled datasets). featx imports none of these libraries:
an object is recognised by its type's module and read through its own methods.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featx.data.source import InputSource
from featx.data.targets import Targets
from featx.errors import FeatxError, ParameterError


@dataclass(frozen=True)
class ColumnsSource(InputSource):
    """A table of texts held in memory as columns of equal length (see the module docstring)."""

    columns: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    kind: str = "columns"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "format": f"memory:{self.kind}"}

    def _rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        used = self._used()
        for index in range(_length(self.columns)):
            yield index, {name: self.columns[name][index] for name in used}

    def _used(self) -> list[str]:
        """The columns read, in the order their cells are hashed."""
        return [c for c in (self.id_column, self.text_column, self.label_column, *self.targets.columns)
                if c is not None]

    def _content_sha256(self) -> str:
        digest = hashlib.sha256()
        used = self._used()
        for _, row in self._rows():
            digest.update(json.dumps([_plain(row[c]) for c in used], ensure_ascii=False).encode() + b"\n")
        return digest.hexdigest()


def is_in_memory(obj: Any) -> bool:
    """True for the in-memory inputs `open_columns` reads (not a path, not a Source)."""
    if isinstance(obj, (str, Path)) or hasattr(obj, "records"):
        return False
    return isinstance(obj, (list, tuple, Mapping)) or _kind(obj) is not None


def open_columns(obj: Any, *, text_column: str | None = None, label_column: str | None = None,
                 id_column: str | None = None, labels: Sequence[Any] | None = None,
                 multi_label: str | None = None, label_columns: Sequence[str] | str | None = None,
                 target: Sequence[str] | str | None = None, allow_empty_labels: bool = False,
                 label_names: Sequence[str] | None = None) -> ColumnsSource:
    """A ColumnsSource over an in-memory input; `labels` go beside a list of texts (a list of
    label lists is multi-label). The target options are featx.data.open_input's; a Dataset's
    `Sequence(ClassLabel)` label column is read as multi-label without them."""
    kind = _kind(obj) or ("list" if isinstance(obj, (list, tuple)) else "dict")
    if kind == "list" and labels is not None and multi_label is None and any(isinstance(x, (list, tuple))
                                                                             for x in labels):
        multi_label = ","
    if kind == "Dataset" and multi_label is None and _sequence_names(obj, label_column or "label") is not None:
        multi_label = ","
    targets = Targets.of(multi_label=multi_label, label_columns=label_columns, target=target,
                         allow_empty_labels=allow_empty_labels, label_column=label_column)
    names_by_key: dict[str, str] = {}
    if kind == "list":
        if not all(isinstance(text, str) for text in obj):
            raise ParameterError("input", "as a list must hold texts (str); give a dict of columns for more")
        columns: dict[str, Sequence[Any]] = {"text": list(obj)}
        text_column = text_column or "text"
        if labels is not None and targets.task == "regression":
            if len(targets.columns) != 1:
                raise ParameterError("target", "names the one column the labels of a list of texts fill")
            columns[targets.columns[0]] = list(labels)
        elif labels is not None:
            columns["label"], label_column = list(labels), label_column or "label"
    else:
        if labels is not None:
            raise ParameterError("labels", f"go beside a list of texts; a {kind} names its label column instead")
        text_column = text_column or "text"
        if targets.task == "multi" and not targets.columns and label_column is None:
            label_column = "label"
        columns = _read_columns(obj, kind, [c for c in (text_column, label_column, id_column, *targets.columns) if c])
        names_by_key = _class_names(obj, kind, label_column)
    given = tuple(label_names) if label_names is not None else None
    if given is not None:
        names_by_key = {str(i): n for i, n in enumerate(given)}
    name = f"a {kind} in memory"
    for column in (text_column, label_column, id_column, *targets.columns):
        if column is not None and column not in columns:
            raise FeatxError(f"{name} has no column {column!r}; it has: {', '.join(map(str, columns)) or 'none'}")
    if _length(columns) == 0:
        raise FeatxError(f"{name} has no rows: nothing to extract")
    return ColumnsSource(path=Path("<memory>"), format="memory", text_column=text_column, label_column=label_column,
                         id_column=id_column, label_names=names_by_key, name=name, columns=columns, kind=kind,
                         targets=targets, classes_given=given)


def _kind(obj: Any) -> str | None:
    """"DataFrame", "Table" or "Dataset" by the type's own module, without importing it; else None."""
    module, name = type(obj).__module__.split(".")[0], type(obj).__name__
    known = {("pandas", "DataFrame"), ("pyarrow", "Table"), ("datasets", "Dataset")}
    return name if (module, name) in known else None


def _read_columns(obj: Any, kind: str, wanted: list[str]) -> dict[str, Sequence[Any]]:
    """The columns `wanted` of `obj` as Python lists (the others named, not read)."""
    if kind == "dict":
        present = list(obj)
        read = {c: list(obj[c]) for c in wanted if c in obj}
    elif kind == "DataFrame":
        present = [str(c) for c in obj.columns]
        read = {c: obj[c].tolist() for c in wanted if c in present}
    elif kind == "Table":
        present = list(obj.column_names)
        read = {c: obj.column(c).to_pylist() for c in wanted if c in present}
    else:  # a datasets.Dataset
        present = list(obj.column_names)
        read = {c: list(obj[c]) for c in wanted if c in present}
    lengths = {len(values) for values in read.values()}
    if len(lengths) > 1:
        raise FeatxError(f"the columns of a {kind} in memory differ in length ({sorted(lengths)})")
    return {c: read.get(c, ()) for c in present}


def _class_names(obj: Any, kind: str, label_column: str | None) -> dict[str, str]:
    """A Dataset's ClassLabel names for its label column (index -> name), else none."""
    if kind != "Dataset" or label_column is None:
        return {}
    feature = getattr(obj, "features", {}).get(label_column)
    names = getattr(feature, "names", None) or _sequence_names(obj, label_column)
    return {str(i): str(n) for i, n in enumerate(names)} if names else {}


def _sequence_names(obj: Any, column: str) -> list[str] | None:
    """The class names of a Dataset column that is a sequence of ClassLabel (multi-label), else None."""
    feature = getattr(obj, "features", {}).get(column)
    inner = getattr(feature, "feature", None)
    names = getattr(inner, "names", None)
    return list(names) if names else None


def _length(columns: Mapping[str, Sequence[Any]]) -> int:
    return max((len(values) for values in columns.values()), default=0)


def _plain(value: Any) -> Any:
    """A cell as JSON can write it (numpy and pandas scalars as Python ones)."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, (str, bytes)) else value


HF_PREFIX = "hf:"


def open_hf(spec: str, *, text_column: str | None = None, label_column: str | None = None,
            id_column: str | None = None, **targets: Any) -> ColumnsSource:
    """`hf:PATH[:SPLIT]`: a folder written by `save_to_disk` (a Dataset, or a DatasetDict and the
    SPLIT to read), else a dataset already in the local Hugging Face cache (offline with
    HF_DATASETS_OFFLINE=1); read as `open_columns` reads a Dataset."""
    try:
        import datasets
    except ImportError:
        raise FeatxError(f"{spec} needs Hugging Face datasets: pip install 'featx[datasets]'") from None
    name, _, split = spec.removeprefix(HF_PREFIX).partition(":")
    try:
        found = datasets.load_from_disk(name) if Path(name).is_dir() else datasets.load_dataset(name)
    except Exception as e:  # the library raises many types for one cause: not found, not readable, offline
        raise FeatxError(f"{spec}: Hugging Face datasets could not load {name!r} ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160] if str(e) else ''}); give a save_to_disk folder or a "
                         "dataset in the local cache") from None
    if isinstance(found, Mapping):  # a DatasetDict: one split is read
        if not split or split not in found:
            what = f"has no split {split!r}" if split else "holds several splits"
            raise FeatxError(f"{spec} {what} (splits: {', '.join(found)}): name one as hf:{name}:SPLIT")
        found = found[split]
    elif split:
        raise FeatxError(f"{spec}: {name} is one Dataset without splits: leave out ':{split}'")
    source = open_columns(found, text_column=text_column, label_column=label_column, id_column=id_column, **targets)
    return dataclasses.replace(source, name=spec)
