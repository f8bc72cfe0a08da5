"""A store's layout: what a run will write (StorePlan), the datasets and attributes it lays out
in a new file, and the checks that an existing file is that store (to resume or reuse it) or
a store featx may replace."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featx.atomic import fsync_path
from featx.config import ExtractConfig
from featx.errors import FeatxError, OutputError
from featx.store.h5 import h5_reason, is_hdf5_file, open_h5
from featx.store.header import FORMAT, StoreHeader
from featx.store.quantize import COMPACT_DTYPES, VectorCodec, codec_attrs

_CHUNK_BYTES = 1 << 20


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
    input_path: str = ""  # where the input was read; not compared on resume (the bytes' sha256 is)
    state_dim: int | None = None  # the width of the token states or window vectors (config.sequences)
    # The per-row uint8 flags kept (the modality's row_flags): "truncated", and "skipped" where a
    # row can be unreadable (skip_bad).
    row_flags: tuple[str, ...] = ("truncated",)
    # What the labels are (featx.data.targets.TASKS): one class index a row, a 0/1 row of the
    # classes (multi), or one float a target (regression; `classes` are then the target names).
    task: str = "single"

    @property
    def rows(self) -> int:
        return self.input_rows - self.row_offset if self.n_rows is None else self.n_rows

    @property
    def codec(self) -> VectorCodec | None:
        """How a compact store (int8, binary) keeps its vectors, scales not yet known; None for floats."""
        kind = self.config.store_dtype
        return VectorCodec(kind, self.dim) if kind in COMPACT_DTYPES else None


def matching_complete_store(path: Path, plan: StorePlan) -> bool:
    """True when `path` is already the complete store `plan` describes (reused without writing)."""
    if not path.is_file():
        return False
    try:
        with open_h5(path, "r") as file:
            return check_resumable(file, path, plan).complete
    except FeatxError:
        return False


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


def create_store(path: Path, plan: StorePlan) -> None:
    try:
        with open_h5(path, "w") as file:
            _lay_out(file, plan)
        fsync_path(path)
    except BaseException as e:
        path.unlink(missing_ok=True)
        if isinstance(e, Exception) and not isinstance(e, FeatxError):
            raise OutputError(f"creating the store {path} failed: {h5_reason(e)}") from None
        raise


# What resuming compares with the plan: a store without one of these cannot be resumed.
_RESUME_ATTRS = ("fingerprint", "input_sha256", "input", "input_rows", "row_offset", "n_rows", "n_done", "complete",
                 "window_rows")


def check_resumable(file: h5py.File, path: Path, plan: StorePlan) -> StoreHeader:
    """The header of the store at `path` when it is the one `plan` describes, part-written or whole."""
    if file.attrs.get("format") != FORMAT:
        raise FeatxError(f"{path} exists and is not a featx store: choose another -o")
    try:
        header = StoreHeader.from_attrs(file.attrs, path, required=_RESUME_ATTRS)
    except FeatxError as e:
        raise FeatxError(f"{e}: pass --overwrite to replace it") from None
    if header.fingerprint != plan.config.fingerprint:
        raise FeatxError(
            f"{path} was made with another extraction config (fingerprint {header.fingerprint[:12]}, "
            f"this run {plan.config.fingerprint[:12]}): pass --overwrite to replace it, or choose another -o"
        )
    if (header.input_sha256, header.input, header.input_rows) != (plan.input_sha256, plan.input_json, plan.input_rows):
        raise FeatxError(
            f"{path} was made from another input (or other columns): pass --overwrite to replace it, "
            "or choose another -o"
        )
    if (header.row_offset, header.n_rows, header.window_rows) != (plan.row_offset, plan.rows, plan.window_rows):
        raise FeatxError(f"{path} holds another part of the input (rows from {header.row_offset}, "
                         f"{header.n_rows} rows, windows of {header.window_rows}): "
                         "use the same --shard and --window-rows, or --overwrite")
    if not 0 <= header.n_done <= header.n_rows:
        raise FeatxError(f"{path} is damaged (n_done {header.n_done} of {header.n_rows} rows): "
                         "pass --overwrite to replace it")
    return header


def _lay_out(file: h5py.File, plan: StorePlan) -> None:
    config, n_rows = plan.config, plan.rows
    codec = plan.codec
    stored_dtype, width = (np.dtype(config.store_dtype), plan.dim) if codec is None else (codec.raw_dtype, codec.width)
    # Chunks never straddle two windows: a chunk written once is never rewritten,
    # so a kill during one window cannot damage rows committed by an earlier one.
    chunk = _chunk_rows(plan.window_rows, n_rows, width * stored_dtype.itemsize)
    id_dtype = np.int64 if plan.id_kind == "int" else h5py.string_dtype("utf-8")
    file.create_dataset("ids", shape=(n_rows,), dtype=id_dtype, chunks=(chunk,))
    file.create_dataset("content_sha256", shape=(n_rows, 32), dtype=np.uint8, chunks=(chunk, 32))
    if plan.classes is not None:
        file.create_dataset("labels", **label_layout(plan.task, n_rows, len(plan.classes), chunk))
        file["labels"].attrs["classes"] = json.dumps(list(plan.classes))
        if plan.task != "single":  # a single-label store is laid out as before tasks existed
            file["labels"].attrs["task"] = plan.task
    for flag in plan.row_flags:
        file.create_dataset(flag, shape=(n_rows,), dtype=np.uint8, chunks=(chunk,))
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
        group.create_dataset(name, shape=(n_rows, width), dtype=stored_dtype, chunks=(chunk, width),
                             compression=plan.compression)
        if codec is not None:  # int8 scales come with the first window (featx.store.writer)
            group[name].attrs.update(codec_attrs(codec))
    file.attrs.update(StoreHeader(
        fingerprint=plan.config.fingerprint, config=plan.config.to_json(), input=plan.input_json,
        input_sha256=plan.input_sha256, input_path=plan.input_path, input_rows=plan.input_rows,
        row_offset=plan.row_offset, n_rows=plan.rows,
        window_rows=plan.window_rows, hardware=plan.hardware, dtype=plan.config.dtype,
        shard=None if plan.shard is None else list(plan.shard)).to_attrs())


def label_layout(task: str, n_rows: int, n_names: int, chunk: int) -> dict[str, Any]:
    """The labels dataset's shape, dtype and chunks for `task`: class indices (N,) int64, a 0/1
    indicator (N, classes) uint8 for multi-label, the targets (N, targets) float64 for regression."""
    if task == "single":
        return {"shape": (n_rows,), "dtype": np.int64, "chunks": (chunk,)}
    return {"shape": (n_rows, n_names), "dtype": np.uint8 if task == "multi" else np.float64,
            "chunks": (chunk, n_names)}


def _chunk_rows(window_rows: int, n_rows: int, row_bytes: int) -> int:
    """The largest divisor of window_rows that keeps a chunk near 1 MiB and within n_rows."""
    target = max(1, min(n_rows, _CHUNK_BYTES // max(row_bytes, 1)))
    for rows in range(min(target, window_rows), 0, -1):
        if window_rows % rows == 0:
            return rows
    return 1
