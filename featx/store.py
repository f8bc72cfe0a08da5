"""FeatureStore: the HDF5 file that holds one split's embeddings, and its writer.

Layout (readable with plain h5py; see README "Store format"):

    /                   attrs: format, format_version, featx_version, fingerprint, config,
                               input_sha256, input, input_rows, row_offset, n_rows, n_done,
                               complete, window_rows, created_at, hardware, dtype, timings
                               (+ shard = [i, n] for a shard, merged_from for a merge)
    /ids                (N,)     int64, or utf-8 strings when the input's ids are not integers
    /content_sha256     (N, 32)  uint8, sha256 of each row's text as UTF-8
    /labels             (N,)     int64 index into attrs["classes"] (absent when unlabelled)
    /features/<pooling> (N, D)   float32 or float16

Rows [0, n_done) are committed; the writer commits whole windows of input rows
and flushes after each one, so a killed run loses at most the window in flight.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featx._version import __version__
from featx.config import ExtractConfig
from featx.errors import FeatxError

FORMAT = "featx-store"
FORMAT_VERSION = 1
_CHUNK_BYTES = 1 << 20


class FeatureStore:
    """Read access to a store: metadata as attributes, features as numpy arrays.

    An incomplete store (an extraction still running or interrupted) is refused
    unless `allow_incomplete=True`; then only the committed rows are visible.
    """

    def __init__(self, path: str | Path, *, allow_incomplete: bool = False) -> None:
        self.path = Path(path)
        self._file = _open_h5(self.path, "r")
        try:
            attrs = self._file.attrs
            if attrs.get("format") != FORMAT:
                raise FeatxError(f"{self.path} is not a featx store (no format={FORMAT} attribute)")
            self.n_rows = int(attrs["n_rows"])
            self.n_done = int(attrs["n_done"])
            self.complete = bool(attrs["complete"])
            if not self.complete and not allow_incomplete:
                raise FeatxError(
                    f"{self.path} is incomplete ({self.n_done:,} of {self.n_rows:,} rows): rerun the extract "
                    "command to finish it, or open it with allow_incomplete=True"
                )
            self.config = ExtractConfig.from_json(attrs["config"])
            self.fingerprint = str(attrs["fingerprint"])
            labels = self._file.get("labels")
            self.classes = tuple(json.loads(labels.attrs["classes"])) if labels is not None else None
        except BaseException:
            self._file.close()
            raise

    @property
    def poolings(self) -> tuple[str, ...]:
        return tuple(self._file["features"])

    @property
    def dim(self) -> int:
        return int(self._file["features"][self.poolings[0]].shape[1])

    @property
    def ids(self) -> np.ndarray:
        ids = self._file["ids"]
        if h5py.check_string_dtype(ids.dtype):
            return ids.asstr()[: self.n_done]
        return ids[: self.n_done]

    @property
    def labels(self) -> np.ndarray | None:
        labels = self._file.get("labels")
        return None if labels is None else labels[: self.n_done]

    @property
    def content_sha256(self) -> np.ndarray:
        return self._file["content_sha256"][: self.n_done]

    def __len__(self) -> int:
        return self.n_done

    def features(self, pooling: str | None = None) -> h5py.Dataset:
        """The HDF5 dataset of one pooling (sliceable like numpy, read lazily)."""
        pooling = pooling or self._only_pooling()
        if pooling not in self._file["features"]:
            raise FeatxError(f"{self.path} has no {pooling!r} features; it has: {', '.join(self.poolings)}")
        return self._file["features"][pooling]

    def load(self, pooling: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(X, y) for the committed rows: X (n, D) as stored, y int64 labels or None."""
        return self.features(pooling)[: self.n_done], self.labels

    def iter_batches(self, pooling: str | None = None,
                     batch_rows: int = 8192) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(X, y) blocks of up to `batch_rows` rows, in order, never the whole matrix at once."""
        features = self.features(pooling)
        labels = self._file.get("labels")
        for start in range(0, self.n_done, batch_rows):
            stop = min(start + batch_rows, self.n_done)
            yield features[start:stop], None if labels is None else labels[start:stop]

    def info(self) -> dict[str, Any]:
        """Everything `featx info` shows: size, progress, config, hardware, timings."""
        attrs = self._file.attrs
        labels = self.labels
        counts = None
        if labels is not None:
            counts = dict(zip(self.classes, np.bincount(labels, minlength=len(self.classes)).tolist()))
        return {
            "path": str(self.path),
            "format_version": int(attrs["format_version"]),
            "featx_version": str(attrs["featx_version"]),
            "rows": self.n_rows,
            "rows_done": self.n_done,
            "row_offset": int(attrs.get("row_offset", 0)),
            "shard": json.loads(attrs["shard"]) if "shard" in attrs else None,
            "merged_from": json.loads(attrs["merged_from"]) if "merged_from" in attrs else None,
            "complete": self.complete,
            "poolings": list(self.poolings),
            "dim": self.dim,
            "store_dtype": str(self.features(self.poolings[0]).dtype),
            "classes": list(self.classes) if self.classes is not None else None,
            "label_counts": counts,
            "fingerprint": self.fingerprint,
            "config": json.loads(attrs["config"]),
            "input": json.loads(attrs["input"]),
            "input_sha256": str(attrs["input_sha256"]),
            "created_at": str(attrs["created_at"]),
            "dtype": str(attrs["dtype"]),
            "hardware": json.loads(attrs["hardware"]),
            "timings": json.loads(attrs["timings"]),
            "file_bytes": self.path.stat().st_size,
        }

    def _only_pooling(self) -> str:
        if len(self.poolings) != 1:
            raise FeatxError(f"{self.path} holds several poolings ({', '.join(self.poolings)}): name one")
        return self.poolings[0]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"{self.n_done}/{self.n_rows} rows"
        return f"FeatureStore({str(self.path)!r}, {state}, poolings={self.poolings}, dim={self.dim})"


def open_store(path: str | Path, *, allow_incomplete: bool = False) -> FeatureStore:
    """Open a store for reading (refusing an incomplete one unless asked)."""
    return FeatureStore(path, allow_incomplete=allow_incomplete)


@dataclass(frozen=True)
class StorePlan:
    """What a new store will hold; written as its attributes and dataset shapes.

    A store holds input rows [row_offset, row_offset + n_rows): all of them for an
    ordinary store, one contiguous run of whole windows for a shard.
    """

    config: ExtractConfig
    input_json: str
    input_sha256: str
    input_rows: int
    dim: int
    classes: tuple[str, ...] | None
    id_kind: str
    window_rows: int
    hardware: dict[str, Any]
    compression: str | None = None
    row_offset: int = 0
    n_rows: int | None = None
    shard: tuple[int, int] | None = None

    @property
    def rows(self) -> int:
        return self.input_rows - self.row_offset if self.n_rows is None else self.n_rows


class StoreWriter:
    """Creates a store, or reopens a matching unfinished one, and commits windows to it.

    The writer holds an exclusive lock on ``STORE.lock`` for its whole life, so a second
    writer is refused at once (the kernel drops the lock if the process dies). The HDF5
    file itself is opened only while a window is written and closed after it, so readers
    can open the store between windows and always find a closed, consistent file.
    """

    def __init__(self, path: Path, lock: "_WriterLock") -> None:
        self.path = path
        self._lock = lock
        with _open_h5(path, "r") as f:
            self._attrs = {k: f.attrs[k] for k in ("n_done", "n_rows", "row_offset", "complete", "window_rows")}

    @classmethod
    def open(cls, path: str | Path, plan: StorePlan, overwrite: bool = False) -> "StoreWriter":
        """A writer positioned after the last committed row.

        An existing file is resumed only when its fingerprint, input and row range match;
        it is replaced only with `overwrite`. A complete matching store is returned as is.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = _WriterLock(path)
        try:
            if path.exists() and not overwrite:
                with _open_h5(path, "r") as file:
                    _check_resumable(file, path, plan)
            else:
                try:
                    with _open_h5(path, "w") as file:
                        _lay_out(file, plan)
                except BaseException:
                    path.unlink(missing_ok=True)
                    raise
            return cls(path, lock)
        except BaseException:
            lock.release()
            raise

    @property
    def n_done(self) -> int:
        return int(self._attrs["n_done"])

    @property
    def n_rows(self) -> int:
        return int(self._attrs["n_rows"])

    @property
    def row_offset(self) -> int:
        return int(self._attrs["row_offset"])

    @property
    def next_row(self) -> int:
        """The input row the next window starts at."""
        return self.row_offset + self.n_done

    @property
    def complete(self) -> bool:
        return bool(self._attrs["complete"])

    @property
    def window_rows(self) -> int:
        return int(self._attrs["window_rows"])

    def write_window(self, start: int, ids: list, content_sha256: np.ndarray, labels: np.ndarray | None,
                     features: dict[str, np.ndarray]) -> None:
        """Write input rows [start, start + len(ids)), then flush and advance n_done."""
        if start != self.next_row:
            raise RuntimeError(f"window starts at input row {start}, but the store continues at {self.next_row}")
        local = start - self.row_offset
        stop = local + len(ids)
        with _open_h5(self.path, "r+", wait=True) as f:
            string_ids = h5py.check_string_dtype(f["ids"].dtype)
            f["ids"][local:stop] = np.asarray(ids, dtype=object if string_ids else np.int64)
            f["content_sha256"][local:stop] = content_sha256
            if labels is not None and "labels" in f:
                f["labels"][local:stop] = labels
            for name, values in features.items():
                f["features"][name][local:stop] = values
            # Data first, then the row count that makes it visible.
            f.flush()
            f.attrs["n_done"] = stop
        self._attrs["n_done"] = stop

    def finish(self, timings: dict[str, Any]) -> None:
        """Mark the store complete (all rows committed) and record the run's timings."""
        if self.n_done != self.n_rows:
            raise RuntimeError(f"finish() with {self.n_done} of {self.n_rows} rows written")
        with _open_h5(self.path, "r+", wait=True) as f:
            f.attrs["timings"] = json.dumps(timings, sort_keys=True)
            f.attrs["complete"] = True
        self._attrs["complete"] = True

    def close(self) -> None:
        self._lock.release()


class _WriterLock:
    """An exclusive, non-blocking fcntl lock on STORE.lock; released on close or process death."""

    def __init__(self, store: Path) -> None:
        self.path = store.with_name(store.name + ".lock")
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise FeatxError(f"{store} is being written by another process (it holds {self.path.name}): "
                             "wait for it to finish, or write to another -o") from None

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


def _open_h5(path: Path, mode: str, wait: bool = False) -> h5py.File:
    """Open with HDF5's file locking. A file briefly held by the other side (a writer
    committing a window, a reader) is waited for: up to 60 s for a writer, 10 s for a reader."""
    if mode == "r" and not path.exists():
        raise FeatxError(f"store {path} does not exist")
    deadline = time.monotonic() + (60 if wait else 10)
    while True:
        try:
            return h5py.File(path, mode)
        except OSError as e:
            text = str(e)
            if "lock" not in text.lower():
                raise FeatxError(f"cannot open {path} as HDF5 ({text.splitlines()[0]}): "
                                 "remove it or pass --overwrite") from None
            if time.monotonic() > deadline:
                raise FeatxError(f"{path} stayed locked by another process: close readers that hold it open, "
                                 "or wait for its writer") from None
            time.sleep(0.02)


def _check_resumable(file: h5py.File, path: Path, plan: StorePlan) -> None:
    attrs = file.attrs
    if attrs.get("format") != FORMAT:
        raise FeatxError(f"{path} exists and is not a featx store: pass --overwrite to replace it")
    if attrs["fingerprint"] != plan.config.fingerprint:
        raise FeatxError(
            f"{path} was made with another extraction config (fingerprint {str(attrs['fingerprint'])[:12]}, "
            f"this run {plan.config.fingerprint[:12]}): pass --overwrite to replace it, or choose another -o"
        )
    if (attrs["input_sha256"] != plan.input_sha256 or attrs["input"] != plan.input_json
            or int(attrs["input_rows"]) != plan.input_rows):
        raise FeatxError(
            f"{path} was made from another input (or other columns): pass --overwrite to replace it, "
            "or choose another -o"
        )
    if (int(attrs["row_offset"]), int(attrs["n_rows"]), int(attrs["window_rows"])) != (
            plan.row_offset, plan.rows, plan.window_rows):
        raise FeatxError(f"{path} holds another part of the input (rows from {int(attrs['row_offset'])}, "
                         f"{int(attrs['n_rows'])} rows, windows of {int(attrs['window_rows'])}): "
                         "use the same --shard and --window-rows, or --overwrite")


def _lay_out(file: h5py.File, plan: StorePlan) -> None:
    config, n_rows = plan.config, plan.rows
    itemsize = np.dtype(config.store_dtype).itemsize
    # Chunks never straddle two windows: a chunk written once is never rewritten,
    # so a kill during one window cannot damage rows committed by an earlier one.
    chunk = _chunk_rows(plan.window_rows, n_rows, plan.dim * itemsize)
    id_dtype = np.int64 if plan.id_kind == "int" else h5py.string_dtype("utf-8")
    file.create_dataset("ids", shape=(n_rows,), dtype=id_dtype, chunks=(chunk,))
    file.create_dataset("content_sha256", shape=(n_rows, 32), dtype=np.uint8, chunks=(chunk, 32))
    if plan.classes is not None:
        labels = file.create_dataset("labels", shape=(n_rows,), dtype=np.int64, chunks=(chunk,))
        labels.attrs["classes"] = json.dumps(list(plan.classes))
    group = file.create_group("features")
    for name in config.poolings:
        group.create_dataset(name, shape=(n_rows, plan.dim), dtype=config.store_dtype, chunks=(chunk, plan.dim),
                             compression=plan.compression)
    file.attrs.update(_store_attrs(plan))


def _store_attrs(plan: StorePlan) -> dict[str, Any]:
    attrs = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "featx_version": __version__,
        "fingerprint": plan.config.fingerprint,
        "config": plan.config.to_json(),
        "input_sha256": plan.input_sha256,
        "input": plan.input_json,
        "input_rows": plan.input_rows,
        "row_offset": plan.row_offset,
        "n_rows": plan.rows,
        "n_done": 0,
        "complete": False,
        "window_rows": plan.window_rows,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hardware": json.dumps(plan.hardware, sort_keys=True),
        "dtype": plan.config.dtype,
        "timings": json.dumps({}),
    }
    if plan.shard is not None:
        attrs["shard"] = json.dumps(list(plan.shard))
    return attrs


def _chunk_rows(window_rows: int, n_rows: int, row_bytes: int) -> int:
    """The largest divisor of window_rows that keeps a chunk near 1 MiB and within n_rows."""
    target = max(1, min(n_rows, _CHUNK_BYTES // max(row_bytes, 1)))
    for rows in range(min(target, window_rows), 0, -1):
        if window_rows % rows == 0:
            return rows
    return 1
