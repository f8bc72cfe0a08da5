"""A content-hash cache of vectors: re-extracting overlapping data costs only the new rows.

Vectors are keyed by (fingerprint, sha256 of the text). One HDF5 file per fingerprint,
``DIR/<fingerprint[:16]>.h5``: ``keys`` (M, 32) uint8 and ``features/<pooling>`` (M, D),
growing by appends. The key index is held in memory (about 100 bytes a row). One
process writes a cache file at a time; HDF5's file lock refuses a second one.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from featx.config import ExtractConfig
from featx.errors import FeatxError


class EmbeddingCache:
    """Vectors of texts already embedded with one extraction config."""

    def __init__(self, folder: str | Path, config: ExtractConfig, dim: int) -> None:
        self.path = Path(folder) / f"{config.fingerprint[:16]}.h5"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.poolings = config.poolings
        try:
            self._file = h5py.File(self.path, "a")
        except OSError as e:
            raise FeatxError(f"cannot open the cache {self.path} ({str(e).splitlines()[0]}): "
                             "another extraction may be using it") from None
        if "keys" not in self._file:
            self._file.attrs.update(fingerprint=config.fingerprint, config=config.to_json())
            self._file.create_dataset("keys", shape=(0, 32), maxshape=(None, 32), dtype=np.uint8, chunks=(4096, 32))
            for name in self.poolings:
                self._file.create_dataset(f"features/{name}", shape=(0, dim), maxshape=(None, dim),
                                          dtype=config.store_dtype, chunks=(max(1, 262_144 // dim), dim))
        elif self._file.attrs["fingerprint"] != config.fingerprint:
            raise FeatxError(f"{self.path} holds vectors of another config: remove it or use another --cache-dir")
        keys = self._file["keys"][:]
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
        self._file["keys"].resize(stop, axis=0)
        self._file["keys"][start:stop] = hashes[new]
        for name in self.poolings:
            dataset = self._file[f"features/{name}"]
            dataset.resize(stop, axis=0)
            dataset[start:stop] = vectors[name][new]
        for offset, i in enumerate(new):
            self._index[hashes[i].tobytes()] = start + offset
        self._file.flush()

    def close(self) -> None:
        self._file.close()
