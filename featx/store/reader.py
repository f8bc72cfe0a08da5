"""FeatureStore: read access to the HDF5 file that holds one split's embeddings.

Layout (readable with plain h5py): README "The store format", written by featx.store.layout:
root attributes (header, config, fingerprint), /ids, /content_sha256 (each row's content hash),
/labels (class indices, a 0/1 matrix or targets), the per-row uint8 flags by name (truncated,
skipped, ...), /features/<pooling> and, with --cache-layer, token states (featx.store.states).

Rows [0, n_done) are committed (see featx.store.writer). Opening a store checks
everything a reader relies on (attributes, shapes, the config against the fingerprint,
the sources of a merged store) and refuses a damaged one in one line.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featx.errors import DamagedError, FeatxError
from featx.store.checks import check_virtual_sources, classes_of, task_of, validate_layout
from featx.store.h5 import open_h5, row_flags_of
from featx.store.quantize import VectorCodec, codec_of, vectors_of
from featx.store.states import RowSequences, describe_states, read_states


class FeatureStore:
    """Read access to a store: metadata as attributes, features as numpy arrays.

    An incomplete store (an extraction still running or interrupted) is refused
    unless `allow_incomplete=True`; then only the committed rows are visible.
    """

    def __init__(self, path: str | Path, *, allow_incomplete: bool = False) -> None:
        self.path = Path(path)
        self._file = open_h5(self.path, "r")
        try:
            self.header, self.config = validate_layout(self._file, self.path)
            self.n_rows, self.n_done, self.complete = self.header.n_rows, self.header.n_done, self.header.complete
            self.fingerprint = self.header.fingerprint
            if not self.complete and not allow_incomplete:
                raise FeatxError(
                    f"{self.path} is incomplete ({self.n_done:,} of {self.n_rows:,} rows): rerun the extract "
                    "command to finish it, or open it with allow_incomplete=True"
                )
            check_virtual_sources(self._file, self.path, self.fingerprint)
            labels = self._file.get("labels")
            # The class names (multi-label: of the indicator's columns), or a regression store's targets.
            self.classes = classes_of(labels, self.path) if labels is not None else None
            self.task = task_of(labels, self.path, self.classes)
        except BaseException:
            self._file.close()
            raise

    @property
    def poolings(self) -> tuple[str, ...]:
        return tuple(self._file["features"])

    @property
    def dim(self) -> int:
        return int(self.features(self.poolings[0]).shape[1])

    @property
    def ids(self) -> np.ndarray:
        ids = self._file["ids"]
        values: np.ndarray = ids.asstr()[: self.n_done] if h5py.check_string_dtype(ids.dtype) else ids[: self.n_done]
        return values

    @property
    def labels(self) -> np.ndarray | None:
        labels = self._file.get("labels")
        if labels is None:
            return None
        values: np.ndarray = labels[: self.n_done]
        n_classes = len(self.classes or ())
        if self.task == "regression":
            if not np.isfinite(values).all():
                raise DamagedError(f"{self.path} is damaged: a target is not a finite number")
        elif self.task == "multi":
            if len(values) and values.max() > 1:
                raise DamagedError(f"{self.path} is damaged: a multi-label row holds a value other than 0 or 1")
        elif len(values) and (values.min() < 0 or values.max() >= n_classes):
            raise DamagedError(f"{self.path} is damaged: a label is outside its {n_classes} classes")
        return values

    def row_values(self, name: str) -> np.ndarray | None:
        """The committed rows of a per-row dataset (labels, a row flag), None where the store has none."""
        if name == "labels":
            return self.labels
        dataset = self._file.get(name)
        values: np.ndarray | None = None if dataset is None else dataset[: self.n_done]
        return values

    @property
    def row_flags(self) -> tuple[str, ...]:
        """The per-row uint8 flags this store keeps, by name (its modality's: truncated, skipped, ...)."""
        return row_flags_of(self._file)

    @property
    def truncated(self) -> np.ndarray | None:
        """1 for each committed row whose input was cut (a text over max_length); None for stores
        written before featx counted it."""
        return self.row_values("truncated")

    @property
    def skipped(self) -> np.ndarray | None:
        """1 for each committed row whose input could not be read (an undecodable image under
        --skip-bad: NaN vectors); None for stores that cannot have such rows (texts)."""
        return self.row_values("skipped")

    def readable(self) -> np.ndarray | None:
        """Indices of the committed rows that hold vectors, or None when every row does."""
        skipped = self.skipped
        if skipped is None or not skipped.any():
            return None
        return np.flatnonzero(skipped == 0)

    @property
    def content_sha256(self) -> np.ndarray:
        hashes: np.ndarray = self._file["content_sha256"][: self.n_done]
        return hashes

    def content_sha256_of(self, rows: np.ndarray) -> np.ndarray:
        """The content sha256 of committed `rows` (sorted, distinct), read without the others."""
        if len(rows) and (rows[0] < 0 or rows[-1] >= self.n_done or (np.diff(rows) <= 0).any()):
            raise ValueError(f"rows must be sorted, distinct and below the {self.n_done} committed")
        hashes: np.ndarray = self._file["content_sha256"][rows]
        return hashes

    def __len__(self) -> int:
        return self.n_done

    def features(self, pooling: str | None = None) -> Any:
        """One pooling's vectors, sliceable like a numpy array and read lazily: the HDF5 dataset, or
        for a compact store (int8, binary) a view that decodes what is read to float32
        (featx.store.quantize.CompactVectors)."""
        return vectors_of(self.raw_features(pooling))

    def raw_features(self, pooling: str | None = None) -> h5py.Dataset:
        """The HDF5 dataset of one pooling as stored (a compact store's codes)."""
        pooling = pooling or self._only_pooling()
        if pooling not in self._file["features"]:
            raise FeatxError(f"{self.path} has no {pooling!r} features; it has: {', '.join(self.poolings)}")
        return self._file["features"][pooling]

    def codec(self, pooling: str | None = None) -> VectorCodec | None:
        """How a compact store keeps one pooling's vectors (kind, dim, int8 scales); None for floats."""
        return codec_of(self.raw_features(pooling))

    def load(self, pooling: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(X, y) for the committed rows that hold vectors (skipped rows left out, see `readable`):
        X (n, D) as stored, y int64 labels or None."""
        X, y = self.features(pooling)[: self.n_done], self.labels
        keep = self.readable()
        if keep is None:
            return X, y
        return X[keep], None if y is None else y[keep]

    def iter_batches(self, pooling: str | None = None,
                     batch_rows: int = 8192) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(X, y) blocks of up to `batch_rows` rows, in order, never the whole matrix at once."""
        features = self.features(pooling)
        labels = self._file.get("labels")
        skipped = self.skipped
        for start in range(0, self.n_done, batch_rows):
            stop = min(start + batch_rows, self.n_done)
            X, y = features[start:stop], None if labels is None else labels[start:stop]
            if skipped is not None and skipped[start:stop].any():  # rows without vectors are left out
                keep = skipped[start:stop] == 0
                X, y = X[keep], None if y is None else y[keep]
            yield X, y

    @property
    def has_states(self) -> bool:
        """Whether the store keeps token states (extracted with --cache-layer)."""
        return self.config.sequences == "states"

    @property
    def has_windows(self) -> bool:
        """Whether the store keeps window vectors (extracted with --long chunk --keep-windows)."""
        return self.config.sequences == "windows"

    def token_states(self, start: int = 0, stop: int | None = None) -> RowSequences:
        """Committed rows [start, stop) of the token states or window vectors, in memory
        (featx.store.states)."""
        stop = self.n_done if stop is None else min(stop, self.n_done)
        return read_states(self._file, self.path, self.config, start, stop)

    def info(self) -> dict[str, Any]:
        """Everything `featx info` shows: size, progress, config, hardware, timings."""
        header = self.header
        labels = self.labels
        counts: dict[str, Any] | None = None
        if labels is not None:
            classes = self.classes or ()
            if self.task == "regression":  # each target's mean and spread
                counts = {name: {"mean": float(labels[:, i].mean()), "std": float(labels[:, i].std()),
                                 "min": float(labels[:, i].min()), "max": float(labels[:, i].max())}
                          for i, name in enumerate(classes)} if len(labels) else {}
            elif self.task == "multi":  # rows holding each label
                counts = dict(zip(classes, labels.sum(0, dtype=np.int64).tolist()))
            else:
                counts = dict(zip(classes, np.bincount(labels, minlength=len(classes)).tolist()))
        return {
            "path": str(self.path),
            "format_version": header.format_version,
            "featx_version": header.featx_version if "featx_version" in self._file.attrs else "unknown",
            "rows": self.n_rows,
            "rows_done": self.n_done,
            "row_offset": header.row_offset,
            "shard": header.shard,
            "merged_from": header.merged_from,
            "complete": self.complete,
            "poolings": list(self.poolings),
            "dim": self.dim,
            "store_dtype": self.config.store_dtype,
            "task": self.task if self.classes is not None else None,
            "classes": list(self.classes) if self.classes is not None else None,
            "label_counts": counts,
            "truncated_rows": None if self.truncated is None else int(self.truncated.sum()),
            "skipped_rows": None if self.skipped is None else int(self.skipped.sum()),
            "states": describe_states(self._file, self.config, self.n_done),
            "fingerprint": self.fingerprint,
            "config": json.loads(header.config),
            "input": header.input_choices,
            "input_sha256": header.input_sha256,
            "created_at": header.created_at if "created_at" in self._file.attrs else "",
            "dtype": header.dtype or self.config.dtype,
            "hardware": header.hardware,
            "timings": header.timings,
            "file_bytes": self.path.stat().st_size,
        }

    def _only_pooling(self) -> str:
        if len(self.poolings) != 1:
            raise FeatxError(f"{self.path} holds several poolings ({', '.join(self.poolings)}): name one")
        return self.poolings[0]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"{self.n_done}/{self.n_rows} rows"
        return f"FeatureStore({str(self.path)!r}, {state}, poolings={self.poolings}, dim={self.dim})"


def open_store(path: str | Path, *, allow_incomplete: bool = False) -> FeatureStore:
    """Open a store for reading (refusing an incomplete one unless asked)."""
    return FeatureStore(path, allow_incomplete=allow_incomplete)
