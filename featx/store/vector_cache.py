"""A content-hash cache of vectors: re-extracting overlapping data costs only the new rows.

Vectors are keyed by (fingerprint, sha256 of the text). One HDF5 file per fingerprint,
``DIR/<fingerprint[:16]>.h5``: ``keys`` (M, 32) uint8, ``features/<pooling>`` (M, D) and
``checks`` (M, 32) uint8, growing by appends. A row's check is the sha256 of its key and
its vectors' bytes (poolings in config order), and every vector served is checked
against it: a row whose vectors were damaged or overwritten (zeros, another row's) is
embedded again and rewritten in place, and the count of such rows is reported
(`rejected`). A file from before checks existed has no ``checks``: its rows are
rejected the same way, one by one as they are met. The key index is held in memory
(about 100 bytes a row). One process writes a cache file at a time; HDF5's file lock
refuses a second one. Vectors and checks are written before their keys, with no chunk
cache (see featx.store.h5), so a failed write leaves at worst rows without a key, or a
row whose check fails, never a key that serves a wrong vector.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np

from featx.atomic import make_folder
from featx.caches import report_rejected
from featx.config import ExtractConfig
from featx.errors import DamagedError, FeatxError, OutputError
from featx.store.h5 import h5_reason, is_hdf5_file, is_lock_conflict


class VectorCache:
    """Vectors of texts already embedded with one extraction config."""

    def __init__(self, folder: str | Path, config: ExtractConfig, dim: int) -> None:
        self.path = make_folder(folder, "cache") / f"{config.fingerprint[:16]}.h5"
        self.poolings = config.poolings
        self.rejected = 0  # rows served by no lookup because their check failed
        self._stale: dict[bytes, int] = {}  # key -> row whose check failed, to rewrite in place
        try:
            self._file = h5py.File(self.path, "a", rdcc_nbytes=0)
        except OSError as e:
            if is_lock_conflict(e):
                raise FeatxError(f"cannot open the cache {self.path}: another extraction is using it") from None
            damage = "it is not an HDF5 file" if not is_hdf5_file(self.path) else h5_reason(e)
            raise DamagedError(f"the cache {self.path} is damaged ({damage}): remove it; it holds only vectors "
                               "featx can embed again") from None
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
                                          dtype=config.vector_dtype, chunks=(max(1, 262_144 // dim), dim))
        elif self._file.attrs.get("fingerprint") != config.fingerprint:
            raise FeatxError(f"{self.path} holds vectors of another config: remove it or use another --cache-dir")
        keys = self._file["keys"][:]
        if "checks" not in self._file:  # new, or written before checks: every existing row fails its check
            self._file.create_dataset("checks", shape=(len(keys), 32), maxshape=(None, 32), dtype=np.uint8,
                                      chunks=(4096, 32))
        if any(self._file[f"features/{name}"].shape[0] < len(keys) for name in self.poolings) \
                or self._file["checks"].shape[0] < len(keys):
            raise DamagedError(f"the cache {self.path} is damaged (fewer vectors than keys): remove it")
        self._index = {row.tobytes(): i for i, row in enumerate(keys)}

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(hit mask, vectors of the hits per pooling, in the order of the hits). A row whose
        vectors fail their check is no hit: it is counted in `rejected`, and `add` rewrites it."""
        rows = np.array([self._index.get(h.tobytes(), -1) for h in hashes], dtype=np.int64)
        hit = rows >= 0
        # h5py reads need increasing, distinct indices: read each row once, then fan out.
        unique, inverse = np.unique(rows[hit], return_inverse=True)
        stored = {name: self._file[f"features/{name}"][unique] if len(unique) else
                  np.empty((0, self._file[f"features/{name}"].shape[1]), self._file[f"features/{name}"].dtype)
                  for name in self.poolings}
        sound = np.ones(len(unique), dtype=bool)
        if len(unique):
            expected = self._file["checks"][unique]
            actual = row_checks(self._file["keys"][unique], stored, self.poolings)
            sound = (expected == actual).all(axis=1)
        if not sound.all():
            self.rejected += int((~sound).sum())
            for row in unique[~sound]:
                key = self._file["keys"][int(row)].tobytes()
                self._index.pop(key, None)
                self._stale[key] = int(row)
            hit[hit] = sound[inverse]
            keep = sound[inverse]
            inverse = inverse[keep]
        return hit, {name: values[inverse] for name, values in stored.items()}

    def add(self, hashes: np.ndarray, vectors: dict[str, np.ndarray]) -> None:
        """Store the vectors of texts not served from the cache: new rows are appended (repeats
        stored once), rows whose check failed are rewritten in place."""
        new, rewrite = [], []
        for i, h in enumerate(hashes):
            key = h.tobytes()
            if key in self._stale:
                rewrite.append((i, self._stale.pop(key)))
                self._index[key] = -1
            elif key not in self._index:
                self._index[key] = -1  # reserve; real row numbers are set below
                new.append(i)
        try:
            if rewrite:  # in place, in one write per dataset (h5py takes increasing row lists)
                rewrite.sort(key=lambda pair: pair[1])
                picked = [i for i, _ in rewrite]
                self._write_rows(np.array([row for _, row in rewrite]), hashes[picked],
                                 {name: v[picked] for name, v in vectors.items()})
                for i, row in rewrite:
                    self._index[hashes[i].tobytes()] = row
            if new:
                start = self._file["keys"].shape[0]
                stop = start + len(new)
                self._write_rows(slice(start, stop), hashes[new], {name: v[new] for name, v in vectors.items()},
                                 grow_to=stop)
                for offset, i in enumerate(new):
                    self._index[hashes[i].tobytes()] = start + offset
        except Exception as e:  # h5py's several types for one failed write
            for i in new:
                if self._index.get(hashes[i].tobytes()) == -1:
                    self._index.pop(hashes[i].tobytes(), None)
            for i, row in rewrite:
                if self._index.get(hashes[i].tobytes()) == -1:
                    self._index.pop(hashes[i].tobytes(), None)
                    self._stale[hashes[i].tobytes()] = row
            raise OutputError(f"writing the cache {self.path} failed: {h5_reason(e)}") from None

    def _write_rows(self, rows: slice | np.ndarray, keys: np.ndarray, vectors: dict[str, np.ndarray],
                    grow_to: int = 0) -> None:
        """Write `rows` (a slice appended past the end with `grow_to`, or increasing row numbers to
        rewrite): vectors and checks first, keys last, so a key is only ever written after what it
        vouches for."""
        values = {name: np.asarray(vectors[name], dtype=self._file[f"features/{name}"].dtype) for name in self.poolings}
        for name in self.poolings:
            dataset = self._file[f"features/{name}"]
            if grow_to:
                dataset.resize(grow_to, axis=0)
            dataset[rows] = values[name]
        if grow_to:
            self._file["checks"].resize(grow_to, axis=0)
        self._file["checks"][rows] = row_checks(keys, values, self.poolings)
        self._file.flush()
        if grow_to:
            self._file["keys"].resize(grow_to, axis=0)
            self._file["keys"][rows] = keys
            self._file.flush()

    def close(self) -> None:
        """Close the file; say once how many rows failed their check and were embedded again."""
        self._file.close()
        if self.rejected:
            report_rejected(f"{self.rejected:,} vectors", self.path, "they were embedded again and replaced",
                            kind="vector_cache")


def row_checks(keys: np.ndarray, vectors: dict[str, np.ndarray], poolings: tuple[str, ...]) -> np.ndarray:
    """(n, 32) uint8: sha256 of each row's key and its vectors' bytes, poolings in `poolings` order."""
    digests = bytearray()
    for i, key in enumerate(keys):
        digest = hashlib.sha256(np.ascontiguousarray(key).tobytes())
        for name in poolings:
            digest.update(np.ascontiguousarray(vectors[name][i]).tobytes())
        digests += digest.digest()
    return np.frombuffer(bytes(digests), dtype=np.uint8).reshape(-1, 32)
