"""The store seam: what the engine asks of a store format, and HDF5's answers.

A format opens a writer for a plan (creating the store, or resuming a matching unfinished one),
says whether a complete store matching a plan is already at a path (returned, nothing written),
and reads the config of whatever store is at a path (a resumed run keeps its backend). The writer
commits windows and, once closed, returns the store it wrote (`written()`). The engine only talks
to these; `featx.extract(..., store_format=)` takes another (tests/test_store_formats.py proves
one that keeps .npy files in a folder).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from featx.store.h5 import stored_config
from featx.store.layout import StorePlan, matching_complete_store
from featx.store.reader import FeatureStore
from featx.store.writer import StoreWriter


class Writer(Protocol):
    """A store being written window by window (featx.store.writer.StoreWriter is HDF5's).

    A format that keeps int8 vectors also has `scales_needed` and `set_scales` (StoreWriter's): the
    engine gives a shard that starts after the input's first window that window's scales."""

    @property
    def n_done(self) -> int:
        """Rows committed."""

    @property
    def n_rows(self) -> int:
        """Rows this store holds when complete."""

    @property
    def row_offset(self) -> int:
        """The input row of its first row (a shard's)."""

    @property
    def next_row(self) -> int:
        """The input row the next window starts at."""

    @property
    def window_rows(self) -> int: ...

    @property
    def complete(self) -> bool: ...

    def write_window(self, start: int, ids: list[Any], content_sha256: np.ndarray, labels: np.ndarray | None,
                     features: dict[str, np.ndarray], flags: dict[str, np.ndarray]) -> None: ...

    def finish(self, timings: dict[str, Any]) -> None: ...

    def close(self) -> None: ...

    def written(self) -> Any:
        """The store written (after close): what featx.extract returns."""


class StoreFormat(Protocol):
    """What the engine asks of a store format."""

    def stored_config(self, path: Path) -> dict[str, Any] | None:
        """The config fields of the store at `path`; None when there is none (or it is unreadable)."""

    def complete_store(self, path: Path, plan: StorePlan) -> Any | None:
        """The store at `path` when it is complete and is the one `plan` describes; else None."""

    def open_writer(self, path: Path, plan: StorePlan, *, overwrite: bool = False,
                    inputs: Sequence[str | Path] = ()) -> Writer:
        """A writer positioned after the last committed row (see StoreWriter.open)."""


class HDF5Format:
    """featx's own format: one HDF5 file a store (featx.store.layout)."""

    def stored_config(self, path: Path) -> dict[str, Any] | None:
        return stored_config(path)

    def complete_store(self, path: Path, plan: StorePlan) -> FeatureStore | None:
        return FeatureStore(path) if matching_complete_store(path, plan) else None

    def open_writer(self, path: Path, plan: StorePlan, *, overwrite: bool = False,
                    inputs: Sequence[str | Path] = ()) -> StoreWriter:
        return StoreWriter.open(path, plan, overwrite=overwrite, inputs=inputs)


HDF5 = HDF5Format()
