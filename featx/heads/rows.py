"""Training rows a head reads from a store a block at a time (heads that stream).

`featx train` hands each head its training and validation rows in memory when the copies an
in-memory fit makes fit the memory budget (`fits_in_memory`), and otherwise as `StoredRows`:
one pooling's rows of a store, read from the HDF5 file `block_rows` rows at a time as float32,
so a fit holds a few blocks, never the matrix. A kind that streams (`Head.streams`: logreg,
ridge, mlp) fits from the blocks; one that cannot (kNN keeps the training matrix as its fitted
state, hybrid its TF-IDF matrix) is handed the rows in memory whatever the budget.

StoredRows (featx.store.rows) pickle as the store's path and row numbers: a worker process
(featx train --jobs) opens the file itself.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from featx.constraints import DEFAULT_MEMORY_BUDGET
from featx.store.rows import StoredRows

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "StoredRows",
    "block_rows_for",
    "column_moments",
    "fits_in_memory",
    "map_blocks",
    "row_blocks",
    "row_slices",
    "take",
]

# An in-memory fit holds about three float64 copies of its training matrix (the validated rows, the
# standardised rows and a split's rows); a streamed step about four of one block (read, converted,
# standardised, and the scores or gradients beside them).
IN_MEMORY_COPIES = 3
BLOCK_COPIES = 4
_FLOAT64 = 8
_MIN_BLOCK_ROWS = 64


def fits_in_memory(rows: int, dim: int, budget: int) -> bool:
    """Whether an in-memory fit on `rows` x `dim` features stays within `budget` bytes."""
    return rows * dim * _FLOAT64 * IN_MEMORY_COPIES <= budget


def block_rows_for(dim: int, budget: int) -> int:
    """The rows of one block a streamed fit reads at a time within `budget` bytes (64 at least)."""
    return max(_MIN_BLOCK_ROWS, budget // (dim * _FLOAT64 * BLOCK_COPIES))


def take(X: Any, positions: np.ndarray) -> Any:
    """X's rows at `positions`: still on disk for StoredRows, else an array."""
    return X.subset(positions) if isinstance(X, StoredRows) else X[positions]


def row_slices(X: Any, block_rows: int = 8_192) -> Iterator[slice]:
    """Slices of X's rows a block at a time (StoredRows' own block size, else `block_rows`)."""
    step = X.block_rows if isinstance(X, StoredRows) else block_rows
    for start in range(0, len(X), step):
        yield slice(start, start + step)


def row_blocks(X: Any) -> Iterator[Any]:
    """X a block at a time: StoredRows' blocks, or X itself (in memory already)."""
    if isinstance(X, StoredRows):
        yield from X.blocks()
    else:
        yield X


def map_blocks(fn: Callable[[Any], np.ndarray], X: Any, axis: int = 0) -> np.ndarray:
    """fn of every block of X (`row_blocks`), joined along `axis` (the axis of fn's rows)."""
    return np.concatenate([fn(block) for block in row_blocks(X)], axis=axis)


def column_moments(X: Any, block_rows: int = 8_192) -> tuple[np.ndarray, np.ndarray]:
    """Each column's mean and standard deviation (population; 1 where it is 0, as StandardScaler
    sets it), from blocks of rows combined by Chan et al.'s pairwise update, in float64; X may be
    an array, an h5py dataset or StoredRows."""
    count, mean, m2 = 0, np.zeros(X.shape[1]), np.zeros(X.shape[1])
    for rows_slice in row_slices(X, block_rows):
        block = np.asarray(X[rows_slice], dtype=np.float64)
        rows, block_mean = len(block), block.mean(0)
        block_m2 = ((block - block_mean) ** 2).sum(0)
        delta, total = block_mean - mean, count + rows
        mean = mean + delta * rows / total
        m2 = m2 + block_m2 + delta ** 2 * count * rows / total
        count = total
    var = m2 / max(count, 1)
    # A column indistinguishable from a constant (StandardScaler's bound from the two-pass variance's
    # error, Chan, Golub and LeVeque) is left unscaled.
    eps = np.finfo(np.float64).eps
    constant = var <= count * eps * var + (count * mean * eps) ** 2
    scale = np.sqrt(var)
    scale[constant] = 1.0
    return mean, scale
