"""StoreWriter: lays out a store (featx.store.layout), or reopens a matching unfinished one, and commits windows.

A window commit is: check the disk has room, write the window's rows, flush and close,
fsync, read the rows back and compare, and only then advance ``n_done`` (itself written,
fsynced and read back). Any failure on the way stops the run with one line and leaves
``n_done`` at the last window that is durably on disk, so a rerun continues from there.
"""
from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featx.atomic import fsync_path, prepare_output, same_file
from featx.config import STATES
from featx.errors import FeatxError, OutputError
from featx.store.h5 import h5_reason, open_h5
from featx.store.header import StoreHeader
from featx.store.layout import StorePlan, check_replaceable, check_resumable, create_store
from featx.store.lock import WriterLock
from featx.store.quantize import SCALES_ATTR, codec_of, int8_scales
from featx.store.reader import FeatureStore

# A window is written only when the disk has room for twice its bytes plus this much.
# HDF5 does not report every failed write (chunks evicted from its cache at close fail
# silently, and a write that fails half-way can leave the file unreadable), so checking
# first keeps the file intact in the common case; the read-back check catches the rest.
SPACE_MARGIN_BYTES = 1 << 20


class StoreWriter:
    """Creates a store, or reopens a matching unfinished one, and commits windows to it.

    The writer holds an exclusive lock on ``STORE.lock`` for its whole life, so a second
    writer is refused at once (the kernel drops the lock if the process dies). The HDF5
    file itself is opened only while a window is written and closed after it, so readers
    can open the store between windows and always find a closed, consistent file.
    """

    def __init__(self, path: Path, lock: WriterLock) -> None:
        self.path = path
        self._lock = lock
        with self._writing("reading its progress"), open_h5(path, "r") as f:
            self.header = StoreHeader.from_attrs(f.attrs, path)

    @classmethod
    def open(cls, path: str | Path, plan: StorePlan, overwrite: bool = False,
             inputs: Sequence[str | Path] = ()) -> StoreWriter:
        """A writer positioned after the last committed row.

        An existing file is resumed only when its fingerprint, input and row range match;
        it is replaced only with `overwrite`, and only when it is a featx store. `inputs`
        are the files the store is made from: the store may never be one of them.
        """
        path = prepare_output(path, "store")
        for source in inputs:
            if same_file(path, source):
                raise OutputError(f"the output {path} is the input {source}: choose another -o")
        lock = WriterLock(path)
        try:
            if path.exists() and not overwrite:
                with open_h5(path, "r") as file:
                    check_resumable(file, path, plan)
            else:
                if path.exists():
                    check_replaceable(path)
                create_store(path, plan)
            return cls(path, lock)
        except BaseException:
            lock.release()
            raise

    @property
    def n_done(self) -> int:
        return self.header.n_done

    @property
    def n_rows(self) -> int:
        return self.header.n_rows

    @property
    def row_offset(self) -> int:
        return self.header.row_offset

    @property
    def next_row(self) -> int:
        """The input row the next window starts at."""
        return self.row_offset + self.n_done

    @property
    def complete(self) -> bool:
        return self.header.complete

    @property
    def window_rows(self) -> int:
        return self.header.window_rows

    def write_window(self, start: int, ids: list[int] | list[str], content_sha256: np.ndarray, labels: np.ndarray | None,
                     features: dict[str, np.ndarray], flags: dict[str, np.ndarray] | None = None) -> None:
        """Write input rows [start, start + len(ids)), make them durable, then advance n_done.
        `flags`: per-row uint8 flags by name (the plan's row_flags); those the store keeps are written."""
        if start != self.next_row:
            raise RuntimeError(f"window starts at input row {start}, but the store continues at {self.next_row}")
        local = start - self.row_offset
        stop = local + len(ids)
        features = dict(features)
        states = features.pop(STATES, None)
        with self._writing(f"rows {local:,}..{stop - 1:,}"):
            with open_h5(self.path, "r+", wait=True) as f:
                features = _encoded(f, start, features)
                string_ids = h5py.check_string_dtype(f["ids"].dtype)
                rows = {"ids": np.asarray(ids, dtype=object if string_ids else np.int64),
                        "content_sha256": content_sha256,
                        **({"labels": labels} if labels is not None and "labels" in f else {}),
                        **{name: values for name, values in (flags or {}).items() if name in f},
                        **{f"features/{name}": values for name, values in features.items()}}
                # Cast here, not in HDF5: the read-back below then compares exactly what was written.
                rows = {name: values if h5py.check_string_dtype(f[name].dtype) else
                        np.asarray(values, dtype=f[name].dtype) for name, values in rows.items()}
                tokens = None if states is None else _token_rows(f, local, states, rows)
                self._check_space({**rows, **({} if tokens is None else {"states": tokens[1]})})
                for name, values in rows.items():
                    f[name][local:stop] = values
                if tokens is not None:  # after every committed row's tokens: what a killed run left is overwritten
                    first, flat = tokens
                    f["states"].resize(first + len(flat), axis=0)
                    f["states"][first:] = flat
                f.flush()
            fsync_path(self.path)
            self._verify_rows(local, stop, rows)
            if start == 0:
                self._verify_scales()
            if tokens is not None:
                self._verify_tokens(*tokens)
            # Data first, then the row count that makes it visible.
            self._set_attrs(n_done=stop)
        self.header.n_done = stop

    @property
    def scales_needed(self) -> bool:
        """Whether this is an int8 store whose scales are not written yet: the input's first window
        fixes them (write_window does, for a store starting there; a later shard is given them,
        `set_scales`)."""
        with self._writing("reading its scales"), open_h5(self.path, "r") as f:
            codecs = [codec_of(f["features"][name]) for name in f["features"]]
        return any(codec is not None and codec.kind == "int8" and codec.scales is None for codec in codecs)

    def set_scales(self, scales: dict[str, np.ndarray]) -> None:
        """Write an int8 store's scales (one array a pooling, from the input's first window) before
        its first row is committed; read back before anything relies on them."""
        if self.n_done:
            raise RuntimeError("an int8 store's scales are fixed before its first row is committed")
        with self._writing("writing its scales"):
            with open_h5(self.path, "r+", wait=True) as f:
                for name, values in scales.items():
                    f["features"][name].attrs[SCALES_ATTR] = np.asarray(values, dtype=np.float32)
                f.flush()
            fsync_path(self.path)
            self._verify_scales(scales)

    def finish(self, timings: dict[str, Any]) -> None:
        """Mark the store complete (all rows committed) and record the run's timings."""
        if self.n_done != self.n_rows:
            raise RuntimeError(f"finish() with {self.n_done} of {self.n_rows} rows written")
        with self._writing("marking it complete"):
            self._set_attrs(timings=json.dumps(timings, sort_keys=True), complete=True)
        self.header.complete, self.header.timings = True, timings

    def close(self) -> None:
        self._lock.release()

    def written(self) -> FeatureStore:
        """The store this writer wrote, opened for reading."""
        return FeatureStore(self.path)

    def _check_space(self, rows: dict[str, np.ndarray]) -> None:
        needed = 2 * sum(_nbytes(values) for values in rows.values()) + SPACE_MARGIN_BYTES
        free = shutil.disk_usage(self.path.parent).free
        if free < needed:
            raise OSError(28, f"No space left on device ({free:,} bytes free, the next window needs {needed:,})")

    def _verify_rows(self, start: int, stop: int, rows: dict[str, np.ndarray]) -> None:
        """Read the window back from a fresh open: HDF5 can drop a failed write without a word."""
        with open_h5(self.path, "r", wait=True) as f:
            for name, values in rows.items():
                dataset = f[name]
                if h5py.check_string_dtype(dataset.dtype):
                    same = list(dataset.asstr()[start:stop]) == [str(v) for v in values]
                else:
                    same = _same_bits(dataset[start:stop], values)
                if not same:
                    raise OSError(f"{name} did not read back as written")

    def _verify_scales(self, expected: dict[str, np.ndarray] | None = None) -> None:
        """Every int8 pooling has its scales on disk (equal to `expected`'s where given)."""
        with open_h5(self.path, "r", wait=True) as f:
            for name in f["features"]:
                codec = codec_of(f["features"][name])
                if codec is None or codec.kind != "int8":
                    continue
                if codec.scales is None or (expected is not None and
                                            not np.array_equal(codec.scales, np.asarray(expected[name], np.float32))):
                    raise OSError(f"the scales of features/{name} did not read back as written")

    def _verify_tokens(self, first: int, flat: np.ndarray) -> None:
        with open_h5(self.path, "r", wait=True) as f:
            if not _same_bits(f["states"][first:first + len(flat)], flat):
                raise OSError("states did not read back as written")

    def _set_attrs(self, **attrs: Any) -> None:
        with open_h5(self.path, "r+", wait=True) as f:
            f.attrs.update(attrs)
            f.flush()
        fsync_path(self.path)
        with open_h5(self.path, "r", wait=True) as f:
            for key, value in attrs.items():
                if f.attrs[key] != value:
                    raise OSError(f"attribute {key} did not read back as written")

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Any failure while writing becomes one OutputError that says how many rows are safe."""
        try:
            yield
        except FeatxError:
            raise
        except Exception as e:  # h5py raises OSError, RuntimeError, KeyError, ValueError for I/O faults
            raise OutputError(f"writing {self.path} failed ({what}): {h5_reason(e)}; "
                              f"{self._committed_on_disk():,} committed rows are kept, rerun the same command "
                              "to continue once the problem is fixed") from None

    def _committed_on_disk(self) -> int:
        """n_done as the file says now (what a reader and a rerun will see), else as last known."""
        try:
            with h5py.File(self.path, "r") as f:
                return int(f.attrs["n_done"])
        except Exception:  # the file may be unreadable after the fault; say what we know
            return self.n_done


def _token_rows(file: h5py.File, local: int, states: np.ndarray,
                rows: dict[str, np.ndarray]) -> tuple[int, np.ndarray]:
    """Add the window's state_starts and state_lengths to `rows`; (first token, the window's tokens flat)."""
    lengths = np.fromiter((len(row) for row in states), dtype=np.int64, count=len(states))
    first = 0 if local == 0 else int(file["state_starts"][local - 1]) + int(file["state_lengths"][local - 1])
    rows["state_starts"] = first + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    rows["state_lengths"] = lengths
    return first, np.concatenate(list(states)).astype(file["states"].dtype, copy=False)


def _encoded(file: h5py.File, start: int, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The window's vectors as the store keeps them: a compact pooling's encoded (featx.store.quantize).
    An int8 store's scales not yet written are fixed here from the input's first window (`start` 0)."""
    encoded = {}
    for name, values in features.items():
        dataset = file["features"][name]
        codec = codec_of(dataset)
        if codec is not None and codec.kind == "int8" and codec.scales is None:
            if start != 0:
                raise RuntimeError("an int8 shard needs its scales (set_scales) before its first window")
            codec = codec.with_scales(int8_scales(values))
            dataset.attrs[SCALES_ATTR] = codec.scales
        encoded[name] = values if codec is None else codec.encode(values)
    return encoded


def _nbytes(values: np.ndarray) -> int:
    if values.dtype == object:
        return sum(len(str(v).encode()) + 16 for v in values)
    return int(values.nbytes)




def _same_bits(stored: np.ndarray, written: np.ndarray) -> bool:
    """Whether rows read back hold exactly the bytes written (NaN payloads and signed zeros included).
    Compared as bytes: a float comparison with equal_nan cost 14x as much (9.4 ms a 4,096 x 768 window)."""
    written = np.asarray(written)
    if stored.shape != written.shape or stored.dtype != written.dtype:
        return False
    return bool(np.array_equal(np.ascontiguousarray(stored).view(np.uint8), np.ascontiguousarray(written).view(np.uint8)))
