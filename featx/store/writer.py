"""StoreWriter: lays out a store, or reopens a matching unfinished one, and commits windows.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featx._version import __version__
from featx.atomic import fsync_path, prepare_output, same_file, utc_stamp
from featx.config import STATES, ExtractConfig
from featx.errors import FeatxError, OutputError
from featx.store.h5 import FORMAT, FORMAT_VERSION, h5_reason, is_hdf5_file, open_h5
from featx.store.lock import WriterLock

_CHUNK_BYTES = 1 << 20
# A window is written only when the disk has room for twice its bytes plus this much.
# HDF5 does not report every failed write (chunks evicted from its cache at close fail
# silently, and a write that fails half-way can leave the file unreadable), so checking
# first keeps the file intact in the common case; the read-back check catches the rest.
SPACE_MARGIN_BYTES = 1 << 20


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
    state_dim: int | None = None  # the width of the token states or window vectors (config.sequences)

    @property
    def rows(self) -> int:
        return self.input_rows - self.row_offset if self.n_rows is None else self.n_rows


def matching_complete_store(path: Path, plan: StorePlan) -> bool:
    """True when `path` is already the complete store `plan` describes (reused without writing)."""
    if not path.is_file():
        return False
    try:
        with open_h5(path, "r") as file:
            _check_resumable(file, path, plan)
            return bool(file.attrs["complete"])
    except FeatxError:
        return False


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
            self._attrs = {k: f.attrs[k] for k in ("n_done", "n_rows", "row_offset", "complete", "window_rows")}

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
                    _check_resumable(file, path, plan)
            else:
                if path.exists():
                    check_replaceable(path)
                _create(path, plan)
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

    def write_window(self, start: int, ids: list[int] | list[str], content_sha256: np.ndarray, labels: np.ndarray | None,
                     features: dict[str, np.ndarray], truncated: np.ndarray | None = None,
                     skipped: np.ndarray | None = None) -> None:
        """Write input rows [start, start + len(ids)), make them durable, then advance n_done."""
        if start != self.next_row:
            raise RuntimeError(f"window starts at input row {start}, but the store continues at {self.next_row}")
        local = start - self.row_offset
        stop = local + len(ids)
        features = dict(features)
        states = features.pop(STATES, None)
        with self._writing(f"rows {local:,}..{stop - 1:,}"):
            with open_h5(self.path, "r+", wait=True) as f:
                string_ids = h5py.check_string_dtype(f["ids"].dtype)
                rows = {"ids": np.asarray(ids, dtype=object if string_ids else np.int64),
                        "content_sha256": content_sha256,
                        **({"labels": labels} if labels is not None and "labels" in f else {}),
                        **({"truncated": truncated} if truncated is not None and "truncated" in f else {}),
                        **({"skipped": skipped} if skipped is not None and "skipped" in f else {}),
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
            if tokens is not None:
                self._verify_tokens(*tokens)
            # Data first, then the row count that makes it visible.
            self._set_attrs(n_done=stop)
        self._attrs["n_done"] = stop

    def finish(self, timings: dict[str, Any]) -> None:
        """Mark the store complete (all rows committed) and record the run's timings."""
        if self.n_done != self.n_rows:
            raise RuntimeError(f"finish() with {self.n_done} of {self.n_rows} rows written")
        with self._writing("marking it complete"):
            self._set_attrs(timings=json.dumps(timings, sort_keys=True), complete=True)
        self._attrs["complete"] = True

    def close(self) -> None:
        self._lock.release()

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
                    stored = dataset[start:stop]
                    same = np.array_equal(stored, values, equal_nan=stored.dtype.kind == "f")
                if not same:
                    raise OSError(f"{name} did not read back as written")

    def _verify_tokens(self, first: int, flat: np.ndarray) -> None:
        with open_h5(self.path, "r", wait=True) as f:
            if not np.array_equal(f["states"][first:first + len(flat)], flat):
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


def _nbytes(values: np.ndarray) -> int:
    if values.dtype == object:
        return sum(len(str(v).encode()) + 16 for v in values)
    return int(values.nbytes)


def check_replaceable(path: Path) -> None:
    """--overwrite replaces a featx store (or an empty file), never anything else."""
    if path.stat().st_size == 0:
        return
    if not is_hdf5_file(path):
        raise OutputError(f"{path} is not a featx store: --overwrite only replaces featx stores; "
                          "remove it yourself or choose another -o")
    try:
        with open_h5(path, "r") as file:
            if file.attrs.get("format") == FORMAT:
                return
    except FeatxError as e:
        raise OutputError(f"{path} cannot be read ({e}), so featx cannot tell it is a store it may replace: "
                          "remove it yourself or choose another -o") from None
    raise OutputError(f"{path} is an HDF5 file but not a featx store: --overwrite only replaces featx stores; "
                      "remove it yourself or choose another -o")


def _create(path: Path, plan: StorePlan) -> None:
    try:
        with open_h5(path, "w") as file:
            _lay_out(file, plan)
        fsync_path(path)
    except BaseException as e:
        path.unlink(missing_ok=True)
        if isinstance(e, Exception) and not isinstance(e, FeatxError):
            raise OutputError(f"creating the store {path} failed: {h5_reason(e)}") from None
        raise


def _check_resumable(file: h5py.File, path: Path, plan: StorePlan) -> None:
    attrs = file.attrs
    if attrs.get("format") != FORMAT:
        raise FeatxError(f"{path} exists and is not a featx store: choose another -o")
    missing = [k for k in ("fingerprint", "input_sha256", "input", "input_rows", "row_offset", "n_rows",
                           "n_done", "complete", "window_rows") if k not in attrs]
    if missing:
        raise FeatxError(f"{path} is damaged (attribute {missing[0]!r} is missing): pass --overwrite to replace it")
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
    if not 0 <= int(attrs["n_done"]) <= int(attrs["n_rows"]):
        raise FeatxError(f"{path} is damaged (n_done {int(attrs['n_done'])} of {int(attrs['n_rows'])} rows): "
                         "pass --overwrite to replace it")


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
    file.create_dataset("truncated", shape=(n_rows,), dtype=np.uint8, chunks=(chunk,))
    if config.modality == "image":
        file.create_dataset("skipped", shape=(n_rows,), dtype=np.uint8, chunks=(chunk,))
    if config.sequences is not None:
        # Token states or window vectors: one flat (entries, hidden) dataset grown window by window;
        # row i's are states[state_starts[i]:state_starts[i] + state_lengths[i]].
        width = int(plan.state_dim or 0)
        token_chunk = max(1, _CHUNK_BYTES // (width * np.dtype(config.sequence_dtype).itemsize))
        file.create_dataset("states", shape=(0, width), maxshape=(None, width), dtype=config.sequence_dtype,
                            chunks=(token_chunk, width))
        file.create_dataset("state_starts", shape=(n_rows,), dtype=np.int64, chunks=(chunk,))
        file.create_dataset("state_lengths", shape=(n_rows,), dtype=np.int64, chunks=(chunk,))
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
        "created_at": utc_stamp(),
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
