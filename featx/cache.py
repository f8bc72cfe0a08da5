"""A content-hash cache of vectors: re-extracting overlapping data costs only the new rows.

Vectors are keyed by (fingerprint, sha256 of the text). One HDF5 file per fingerprint,
``DIR/<fingerprint[:16]>.h5``: ``keys`` (M, 32) uint8 and ``features/<pooling>`` (M, D),
growing by appends. The key index is held in memory (about 100 bytes a row). One
process writes a cache file at a time; HDF5's file lock refuses a second one.
Vectors are written before their keys, with no chunk cache (see featx.store.h5), so a
failed write leaves at worst vectors without a key, never a key without its vector.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from featx.atomic import make_folder
from featx.config import ExtractConfig
from featx.errors import FeatxError, OutputError
from featx.store.h5 import h5_reason


class EmbeddingCache:
    """Vectors of texts already embedded with one extraction config."""

    def __init__(self, folder: str | Path, config: ExtractConfig, dim: int) -> None:
        self.path = make_folder(folder, "cache") / f"{config.fingerprint[:16]}.h5"
        self.poolings = config.poolings
        try:
            self._file = h5py.File(self.path, "a", rdcc_nbytes=0)
        except OSError as e:
            reason = h5_reason(e)
            hint = ": another extraction may be using it" if "lock" in str(e).lower() else ""
            raise FeatxError(f"cannot open the cache {self.path} ({reason}){hint}") from None
        try:
            self._open_datasets(config, dim)
        except BaseException:
            self._file.close()
            raise

    def _open_datasets(self, config: ExtractConfig, dim: int) -> None:
        if "keys" not in self._file:
            self._file.attrs.update(fingerprint=config.fingerprint, config=config.to_json())
            self._file.create_dataset("keys", shape=(0, 32), maxshape=(None, 32), dtype=np.uint8, chunks=(4096, 32))
            for name in self.poolings:
                self._file.create_dataset(f"features/{name}", shape=(0, dim), maxshape=(None, dim),
                                          dtype=config.store_dtype, chunks=(max(1, 262_144 // dim), dim))
        elif self._file.attrs.get("fingerprint") != config.fingerprint:
            raise FeatxError(f"{self.path} holds vectors of another config: remove it or use another --cache-dir")
        keys = self._file["keys"][:]
        if any(self._file[f"features/{name}"].shape[0] < len(keys) for name in self.poolings):
            raise FeatxError(f"the cache {self.path} is damaged (fewer vectors than keys): remove it")
        self._index = {row.tobytes(): i for i, row in enumerate(keys)}

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(hit mask, vectors of the hits per pooling, in the order of the hits)."""
        rows = np.array([self._index.get(h.tobytes(), -1) for h in hashes], dtype=np.int64)
        hit = rows >= 0
        # h5py reads need increasing, distinct indices: read each row once, then fan out.
        unique, inverse = np.unique(rows[hit], return_inverse=True)
        vectors = {}
        for name in self.poolings:
            dataset = self._file[f"features/{name}"]
            vectors[name] = dataset[unique][inverse] if len(unique) else np.empty((0, dataset.shape[1]), dataset.dtype)
        return hit, vectors

    def add(self, hashes: np.ndarray, vectors: dict[str, np.ndarray]) -> None:
        """Append the vectors of texts not cached yet (repeats are stored once)."""
        new = []
        for i, h in enumerate(hashes):
            key = h.tobytes()
            if key not in self._index:
                self._index[key] = -1  # reserve; real row numbers are set below
                new.append(i)
        if not new:
            return
        start = self._file["keys"].shape[0]
        stop = start + len(new)
        try:
            for name in self.poolings:  # vectors first: a key is only ever written after its vector
                dataset = self._file[f"features/{name}"]
                dataset.resize(stop, axis=0)
                dataset[start:stop] = vectors[name][new]
            self._file.flush()
            self._file["keys"].resize(stop, axis=0)
            self._file["keys"][start:stop] = hashes[new]
            self._file.flush()
        except Exception as e:  # h5py's several types for one failed write
            for i in new:
                self._index.pop(hashes[i].tobytes(), None)
            raise OutputError(f"writing the cache {self.path} failed: {h5_reason(e)}") from None
        for offset, i in enumerate(new):
            self._index[hashes[i].tobytes()] = start + offset

    def close(self) -> None:
        self._file.close()
