"""What opening a store checks (featx.store.reader): every attribute and dataset a reader relies on,
the vectors stored as the config says, and the sources of a merged store or a view."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featx.config import ExtractConfig
from featx.errors import DamagedError, FeatxError
from featx.store.h5 import open_h5, row_datasets_of, row_flags_of
from featx.store.header import FORMAT_VERSION, StoreHeader
from featx.store.quantize import COMPACT_DTYPES, codec_of
from featx.store.states import check_states_layout


def validate_layout(file: h5py.File, path: Path) -> tuple[StoreHeader, ExtractConfig]:
    """(header, config) once every attribute and dataset a reader uses checks out."""
    header = StoreHeader.from_attrs(file.attrs, path)
    if header.format_version > FORMAT_VERSION:
        raise FeatxError(f"{path} has store format {header.format_version}; this featx reads up to "
                         f"{FORMAT_VERSION}: upgrade featx")
    n_rows, n_done, complete = header.n_rows, header.n_done, header.complete
    if not 0 <= n_done <= n_rows or (complete and n_done != n_rows):
        raise DamagedError(f"{path} is damaged: n_done {n_done} does not fit n_rows {n_rows}"
                           + (" of a complete store" if complete else ""))
    try:
        config = ExtractConfig.from_json(header.config)
    except (FeatxError, ValueError, TypeError, KeyError) as e:
        raise DamagedError(f"{path} is damaged: its config attribute cannot be read ({e})") from None
    if config.fingerprint != header.fingerprint:
        raise DamagedError(f"{path} is damaged: its config does not match its fingerprint")
    for name in ("ids", "content_sha256"):
        if name not in file or file[name].shape[0] != n_rows:
            raise DamagedError(f"{path} is damaged: dataset {name!r} is missing or not {n_rows} rows long")
    for name in ("labels", *row_flags_of(file)):
        if name in file and file[name].shape[0] != n_rows:
            raise DamagedError(f"{path} is damaged: dataset {name!r} is not {n_rows} rows long")
    features = file.get("features")
    if not isinstance(features, h5py.Group) or sorted(features) != sorted(config.poolings):
        raise DamagedError(f"{path} is damaged: its features are not the poolings of its config "
                           f"({', '.join(config.poolings)})")
    check_states_layout(file, path, config, n_rows)
    shapes = {features[name].shape for name in features}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2 or next(iter(shapes))[0] != n_rows:
        raise DamagedError(f"{path} is damaged: its feature datasets are not all ({n_rows}, D)")
    for name in features:
        _check_codec(features[name], path, config.store_dtype, n_done)
    return header, config


def _check_codec(dataset: h5py.Dataset, path: Path, store_dtype: str, n_done: int) -> None:
    """A features dataset is stored as its config says: floats of that dtype, or a compact store's codes
    with their kind, width and (once a row is committed) int8 scales."""
    where = f"{path} is damaged: features/{Path(dataset.name).name}"
    try:
        codec = codec_of(dataset)
    except (ValueError, TypeError, KeyError):
        raise DamagedError(f"{where} has an unreadable codec") from None
    if store_dtype not in COMPACT_DTYPES:
        if codec is not None or dataset.dtype != np.dtype(store_dtype):
            raise DamagedError(f"{where} is not stored as {store_dtype}")
        return
    if codec is None or codec.kind != store_dtype or dataset.dtype != codec.raw_dtype or \
            dataset.shape[1] != codec.width:
        raise DamagedError(f"{where} is not stored as {store_dtype} codes")
    scales = codec.scales
    if codec.kind == "int8" and (n_done or scales is not None) and (
            scales is None or scales.shape != (codec.dim,) or not (np.isfinite(scales) & (scales > 0)).all()):
        raise DamagedError(f"{where} has no readable int8 scales")


def classes_of(labels: h5py.Dataset, path: Path) -> tuple[str, ...]:
    classes = _json_attr(labels.attrs, "classes", path, None)
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise DamagedError(f"{path} is damaged: labels have no readable class list")
    return tuple(classes)


def task_of(labels: h5py.Dataset | None, path: Path, classes: tuple[str, ...] | None) -> str:
    """The store's task (featx.data.targets.TASKS), checked against the labels' shape."""
    if labels is None:
        return "single"
    task = str(labels.attrs.get("task", "single"))
    expected = {"single": 1, "multi": 2, "regression": 2}.get(task)
    if expected is None or labels.ndim != expected or (expected == 2 and labels.shape[1] != len(classes or ())):
        raise DamagedError(f"{path} is damaged: its labels ({labels.shape}, task {task!r}) do not fit its "
                           f"{len(classes or ())} class or target names")
    return task


def _json_attr(attrs: Any, name: str, path: Path, default: Any) -> Any:
    if name not in attrs:
        return default
    try:
        return json.loads(str(attrs[name]))
    except json.JSONDecodeError:
        raise DamagedError(f"{path} is damaged: attribute {name!r} is not valid JSON") from None


def check_virtual_sources(file: h5py.File, path: Path, fingerprint: str) -> None:
    """A merged store reads its rows from its shard files: each must be there, whole and matching.

    HDF5 reads a missing source as fill values (zeros, label 0) without a word, so this
    is checked on every open, not trusted.
    """
    sources: set[str] = set()
    for name in (*row_datasets_of(file), *(f"features/{p}" for p in file["features"])):
        if name in file and file[name].is_virtual:
            sources.update(source.file_name for source in file[name].virtual_sources())
    for name in sorted(sources):
        shard = Path(name) if Path(name).is_absolute() else path.parent / name
        if not shard.is_file():
            raise DamagedError(f"{path} reads rows from {shard}, which is missing: put the shard back, or merge "
                               "again with --copy to get a standalone store")
        try:
            with open_h5(shard, "r") as source:
                header = StoreHeader.from_attrs(source.attrs, shard)
                if header.fingerprint != fingerprint:
                    raise DamagedError(f"{path} reads rows from {shard}, which is not a shard of the same "
                                       "extraction (fingerprints differ): merge again")
                if not header.complete:
                    raise DamagedError(f"{path} reads rows from {shard}, which is incomplete: finish it, merge again")
        except DamagedError:
            raise
        except FeatxError as e:
            raise DamagedError(f"{path} reads rows from {shard}, which cannot be read: {e}") from None
