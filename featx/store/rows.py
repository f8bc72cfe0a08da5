"""StoredRows: rows of one dataset of a store, read from the file a block at a time, for heads that
stream (featx.heads.rows). They pickle as the store's path and row numbers: a worker process
(featx train --jobs) opens the file itself."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featx.store.h5 import open_h5
from featx.store.quantize import CompactVectors, vectors_of


class StoredRows:
    """Rows `rows` (sorted store row numbers) of the dataset `dataset` of the store at `path`, read
    as float32 `block_rows` at a time. Sliced like an array (``X[a:b]``, ``X[positions]``: the rows
    at those positions, in memory); `subset` keeps it on disk; `blocks` walks it in order."""

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, path: str | Path, dataset: str, rows: np.ndarray, block_rows: int,
                 opened: Any = None) -> None:
        self.path, self.dataset, self.block_rows = Path(path), dataset, int(block_rows)
        self.rows = np.asarray(rows, dtype=np.int64)
        self._opened = opened
        self.shape = (len(self.rows), int(self._features().shape[1]))

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_opened": None}  # a worker opens the file itself

    def _features(self) -> Any:
        """The dataset read as float vectors (a compact store's decoded as read)."""
        if self._opened is None:
            self._opened = vectors_of(open_h5(self.path, "r")[self.dataset])
        return self._opened

    def subset(self, positions: np.ndarray) -> StoredRows:
        """The rows at `positions` (sorted), still on disk."""
        return StoredRows(self.path, self.dataset, self.rows[np.asarray(positions)], self.block_rows, self._opened)

    def blocks(self) -> Iterator[np.ndarray]:
        """Every row, in order, `block_rows` at a time."""
        for start in range(0, len(self.rows), self.block_rows):
            yield self[start:start + self.block_rows]

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        positions = np.arange(*key.indices(len(self.rows))) if isinstance(key, slice) else np.asarray(key)
        if positions.dtype == bool:
            positions = np.flatnonzero(positions)
        order = np.argsort(positions, kind="stable")
        wanted = self.rows[positions[order]]
        out = np.empty((len(wanted), self.shape[1]), dtype=np.float32)
        features, done = self._features(), 0
        while done < len(wanted):  # one read per span of at most block_rows file rows
            low = int(wanted[done])
            end = int(np.searchsorted(wanted, low + self.block_rows, side="left"))
            span = features[low:int(wanted[end - 1]) + 1]
            out[done:end] = span[wanted[done:end] - low]
            done = end
        if (order[1:] > order[:-1]).all():  # asked in order (the usual case): no second copy
            return out
        result = np.empty_like(out)
        result[order] = out
        return result

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:  # numpy's protocol: say so rather than hand over a copy when none is allowed
            raise ValueError("rows read from a store are always a new array: copy=False cannot be met")
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)


def as_rows(X: Any, block_rows: int) -> Any:
    """A store's features (an h5py dataset, or a compact store's CompactVectors) as StoredRows over all
    their rows (read `block_rows` at a time); anything else as it is."""
    if isinstance(X, (h5py.Dataset, CompactVectors)):
        opened = vectors_of(X) if isinstance(X, h5py.Dataset) else X
        return StoredRows(X.file.filename, X.name, np.arange(len(X)), block_rows,  # type: ignore[union-attr]
                          opened=opened)
    return X
