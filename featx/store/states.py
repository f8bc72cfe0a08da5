"""Per-row sequences of vectors a store keeps, and reading them: the token states at one layer
(``featx extract --cache-layer L``) or the window vectors of long texts (``--long chunk
--keep-windows``); `ExtractConfig.sequences` says which.

Layout, beside the usual datasets (see featx.store.reader):

    /states         (T, H)  float16 or float32: every row's sequence (tokens or windows), row after row
    /state_starts   (N,)    int64, where row i's sequence starts in /states
    /state_lengths  (N,)    int64, how long row i's sequence is (its attention mask: all ones)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featx.config import ExtractConfig
from featx.errors import DamagedError


@dataclass
class RowSequences:
    """Rows of vector sequences (token states at one layer, or window vectors): a flat
    (entries, hidden) array and each row's slice of it.

    Indexing with an array of rows gives those rows (sharing `values`), as a numpy array would,
    so held-out splits work on it like on vectors. `config` is the store's extraction config:
    which backbone and layer the states come from, and which of the two they are.
    """

    values: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    config: ExtractConfig

    @classmethod
    def from_rows(cls, rows: Sequence[np.ndarray], config: ExtractConfig) -> RowSequences:
        """From one (tokens, hidden) array per row (a runner's output)."""
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return cls(np.concatenate(list(rows)), starts, lengths, config)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, rows: Any) -> RowSequences:
        return RowSequences(self.values, self.starts[rows], self.lengths[rows], self.config)

    def row(self, i: int) -> np.ndarray:
        start = int(self.starts[i])
        return self.values[start:start + int(self.lengths[i])]

    @property
    def layer(self) -> int:
        return int(self.config.cache_layer or 0)


def read_states(file: h5py.File, path: Path, config: ExtractConfig, start: int, stop: int) -> RowSequences:
    """Rows [start, stop) of a store's sequences, in memory, checked to be laid out as written."""
    if config.sequences is None or "states" not in file:
        raise DamagedError(f"{path} keeps no token states or window vectors: extract it with --cache-layer L "
                           "(a blocks head) or --long chunk --keep-windows (a windows head)")
    starts = file["state_starts"][start:stop].astype(np.int64)
    lengths = file["state_lengths"][start:stop].astype(np.int64)
    if not len(starts):
        return RowSequences(np.zeros((0, file["states"].shape[1]), dtype=file["states"].dtype), starts, lengths, config)
    first, end = int(starts[0]), int(starts[-1] + lengths[-1])
    contiguous = np.array_equal(starts[1:], starts[:-1] + lengths[:-1])
    if not contiguous or (lengths < 1).any() or first < 0 or end > file["states"].shape[0]:
        raise DamagedError(f"{path} is damaged: its state_starts and state_lengths do not fit its states")
    return RowSequences(file["states"][first:end], starts - first, lengths, config)


def check_states_layout(file: h5py.File, path: Path, config: ExtractConfig, n_rows: int) -> None:
    """A store whose config keeps sequences has the three datasets, the right shapes and dtype."""
    if config.sequences is None:
        return
    for name in ("states", "state_starts", "state_lengths"):
        if name not in file:
            raise DamagedError(f"{path} is damaged: its config keeps {KEPT[config.sequences]} but dataset {name!r} "
                               "is missing")
    if file["state_starts"].shape != (n_rows,) or file["state_lengths"].shape != (n_rows,):
        raise DamagedError(f"{path} is damaged: state_starts and state_lengths are not {n_rows} rows long")
    states = file["states"]
    if states.ndim != 2 or states.dtype != np.dtype(config.sequence_dtype):
        raise DamagedError(f"{path} is damaged: its {KEPT[config.sequences]} are not (entries, hidden) "
                           f"{config.sequence_dtype}")


KEPT = {"states": "token states", "windows": "window vectors"}


def describe_states(file: h5py.File, config: ExtractConfig, n_done: int) -> dict[str, Any] | None:
    """What `featx info` says of the sequences: what they are, layer, dtype, entries (tokens or
    windows), bytes."""
    if config.sequences is None:
        return None
    tokens = int(file["state_starts"][n_done - 1] + file["state_lengths"][n_done - 1]) if n_done else 0
    states = file["states"]
    return {"kind": config.sequences, "layer": config.cache_layer, "dtype": config.sequence_dtype, "tokens": tokens,
            "hidden": int(states.shape[1]), "tokens_per_row": round(tokens / n_done, 2) if n_done else 0.0,
            "bytes": tokens * int(states.shape[1]) * states.dtype.itemsize}
