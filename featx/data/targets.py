"""What a row's label cells mean: one class (`single`, the default), a set of classes
(`multi`) or one or more numbers (`regression`), and how each cell is read.

- multi from one column: the cell split on `separator` (GoEmotions' ``2,11`` is two labels); a
  cell that is already a list (a JSON list in a .jsonl file, a list in a DataFrame, a
  `datasets` Sequence) is read as is;
- multi from several 0/1 columns (`columns`): the names of the columns holding 1;
- regression (`columns`): one float per target column, finite.

A bad cell is one line naming the row and what to type. Single-label reading stays in
featx.data.source (its stores and fingerprints are unchanged: a single-label Targets
describes itself as nothing).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featx.errors import InputError, ParameterError

TASKS = ("single", "multi", "regression")
from featx.options import TARGET_CHOICES as TARGET_CHOICES  # the reading choices that say what labels are

# Characters that separate labels in the wild; one other than the chosen separator inside a
# label means the cell was written with another separator.
_SEPARATORS = (",", ";", "|", "\t")
_TRUE, _FALSE = frozenset({"1", "true", "yes", "1.0"}), frozenset({"0", "false", "no", "0.0"})


@dataclass(frozen=True)
class Targets:
    """How the label cells of a table are read (see the module docstring)."""

    task: str = "single"
    separator: str | None = None
    columns: tuple[str, ...] = ()
    allow_empty: bool = False

    @classmethod
    def of(cls, *, multi_label: str | None = None, label_columns: Sequence[str] | str | None = None,
           target: Sequence[str] | str | None = None, allow_empty_labels: bool = False,
           label_column: str | None = None) -> Targets:
        """The Targets the reading options ask for; contradictions are one line."""
        label_columns, target = _names(label_columns, "label_columns"), _names(target, "target")
        if target:
            for name, given in (("label_column", label_column), ("multi_label", multi_label),
                                ("label_columns", label_columns)):
                if given:
                    raise ParameterError(name, "reads class labels, and --target reads numbers: give one of them")
            if allow_empty_labels:
                raise ParameterError("allow_empty_labels", "applies to multi-label inputs, not to --target")
            return cls("regression", columns=target)
        if label_columns:
            if label_column is not None or multi_label is not None:
                raise ParameterError("label_columns", "names several 0/1 columns: leave out --label-column and "
                                                      "--multi-label")
            return cls("multi", columns=label_columns, allow_empty=allow_empty_labels)
        if multi_label is not None:
            if not isinstance(multi_label, str) or not multi_label:
                raise ParameterError("multi_label", f"is the separator between a cell's labels, e.g. ',' "
                                                    f"(got {multi_label!r})")
            return cls("multi", separator=multi_label, allow_empty=allow_empty_labels)
        if allow_empty_labels:
            raise ParameterError("allow_empty_labels", "applies to multi-label inputs (--multi-label SEP or "
                                                       "--label-columns)")
        return cls()

    def describe(self) -> dict[str, Any]:
        """The reading choices for the input description: none for single-label (older stores match)."""
        if self.task == "single":
            return {}
        return {"task": self.task, **({"separator": self.separator} if self.separator is not None else {}),
                **({"target_columns" if self.task == "regression" else "label_columns": list(self.columns)}
                   if self.columns else {}), **({"allow_empty": True} if self.allow_empty else {})}

    def keys(self, row: dict[str, Any], label_column: str | None, where: str) -> tuple[str, ...]:
        """A multi-label row's label keys (as single-label keys are spelt: "7", "joy")."""
        if self.columns:
            keys = tuple(c for c in self.columns if _flag(row.get(c), c, where))
        else:
            keys = self._split(row.get(label_column) if label_column is not None else None, label_column, where)
        if not keys and not self.allow_empty:
            raise InputError(f"{where}: no label ({label_column or ', '.join(self.columns)} is empty); featx does "
                             "not guess labels: fill it in, or pass --allow-empty-labels if a row may have none")
        return keys

    def numbers(self, row: dict[str, Any], where: str) -> tuple[float, ...]:
        """A regression row's targets, each a finite number."""
        return tuple(_number(row.get(c), c, where) for c in self.columns)

    def _split(self, value: Any, column: str | None, where: str) -> tuple[str, ...]:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            parts: list[Any] = []
        elif isinstance(value, (list, tuple)) or (hasattr(value, "tolist") and not isinstance(value, (str, bytes))):
            parts = list(value.tolist() if hasattr(value, "tolist") else value)
        else:
            text = str(value).strip()
            parts = [part.strip() for part in text.split(self.separator)] if text else []
            if any(not part for part in parts):
                raise InputError(f"{where}: {column!r} holds an empty label in {text!r}: remove the extra "
                                 f"{self.separator!r}")
            other = next((s for s in _SEPARATORS if s != self.separator and any(s in p for p in parts)), None)
            if other is not None:
                raise InputError(f"{where}: {column!r} holds {text!r}, labels separated by {other!r}, not by "
                                 f"--multi-label {self.separator!r}: pass --multi-label {other!r} if that is the "
                                 "file's separator")
        keys = tuple(dict.fromkeys(label_key(part, column, where) for part in parts))  # a repeat counts once
        return keys


def label_rows(summary: Any, labels: Sequence[Any]) -> np.ndarray | None:
    """Rows' labels as a store keeps them (featx.store.layout), for an InputSummary `summary`: class indices (int64), a
    0/1 indicator matrix (uint8) for multi-label rows, the targets (float64) for regression."""
    if summary.classes is None:
        return None
    if summary.task == "regression":
        return np.array(labels, dtype=np.float64).reshape(len(labels), len(summary.classes))
    if summary.task == "multi":
        indicator = np.zeros((len(labels), len(summary.classes)), dtype=np.uint8)
        for row, indices in enumerate(labels):
            indicator[row, list(indices)] = 1
        return indicator
    return np.array(labels, dtype=np.int64)


# Spellings a missing value gets when a script or a data frame writes one as text.
MISSING_LABELS = frozenset({"nan", "null", "none"})


def label_key(value: Any, column: str | None, where: str) -> str:
    """A label cell as its key: an integer's digits ("7" for 7, 7.0 and "7"), else the stripped text;
    a missing label is one line naming the row."""
    number = as_int(value)
    key = str(number) if number is not None else "" if value is None else str(value).strip()
    if not key or key.lower() in MISSING_LABELS or (isinstance(value, float) and math.isnan(value)):
        raise InputError(f"{where}: the label ({column!r}) is missing "
                         f"({'null' if value is None else repr(value)}); featx does not guess labels: "
                         "fill it in or drop the row")
    return key


def as_int(value: Any) -> int | None:
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


def _names(value: Sequence[str] | str | None, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    names = tuple(part.strip() for part in value.split(",")) if isinstance(value, str) else tuple(value)
    if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ParameterError(name, f"is a list of distinct column names, e.g. a,b,c (got {value!r})")
    return names


def _flag(value: Any, column: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = "" if value is None else str(value.item() if hasattr(value, "item") else value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(f"{where}: {column!r} holds {value!r}; --label-columns reads 0/1 columns (0, 1, true, false)")


def _number(value: Any, column: str, where: str) -> float:
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    elif hasattr(value, "item") and not isinstance(value, (str, bytes, bool)):
        return _number(value.item(), column, where)
    if number is None:
        raise InputError(f"{where}: target {column!r} holds {value!r}, not a number; --target reads numbers "
                         "(fill it in or drop the row)")
    if not math.isfinite(number):
        raise InputError(f"{where}: target {column!r} is {value!r}; a target must be a finite number "
                         "(fill it in or drop the row)")
    return number


def read_label_names(path: str | Path) -> tuple[str, ...]:
    """One class name a line (line i names label i): GoEmotions' emotions.txt."""
    try:
        names = tuple(line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as e:
        raise ParameterError("label_names", f"cannot read {path}: {e}") from None
    if not names or len(set(names)) != len(names):
        raise ParameterError("label_names", f"{path} must hold one distinct class name a line")
    return names
