"""The Source protocol: where the rows of one extraction come from.

A Source makes one streaming pass (`scan`: rows, labels, id kind, a hash of its bytes)
and then streams records from any row on (`records`), each with an `id` and a
`label` index (-1 when unlabelled) plus its content, which only the matching
Featurizer reads. `describe()` is the choices that, with the bytes, define which rows
are read; it goes into the store. Tables of texts (source.InputSource), in-memory columns
(memory.py) and image folders, archives and tables of paths (images.py) are the Sources.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class Source(Protocol):
    @property
    def path(self) -> Path:
        """The file read: what the output must never be (checked before writing)."""

    @property
    def name(self) -> str:
        """How messages name the input."""

    def scan(self) -> Any:
        """An InputSummary: n_rows, classes, id_kind and sha256, from one pass."""

    def records(self, summary: Any, start: int = 0) -> Iterator[Any]:
        """Records from row `start` (0-based) on, labels as indices into summary.classes."""

    def describe(self) -> dict[str, Any]:
        """The read choices that identify this input in a store, beside its bytes' sha256."""


@dataclass(frozen=True)
class TableFile:
    """A file of rows (csv, tsv, jsonl, txt, parquet): where it is and the format it is read as. The
    Sources read from tables (texts: featx.data.source.InputSource; image paths:
    featx.data.images.ImageTableSource) add the columns they read."""

    path: Path
    format: str
