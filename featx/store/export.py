"""`featx export`: a complete store as plain files that numpy, pyarrow or pandas read without featx.

- ``npy``: one ``POOLING.npy`` per pooling (rows x dim, the stored dtype), ``ids.npy``
  (int64, or fixed-width unicode for text ids), ``content_sha256.npy`` (rows x 32 uint8),
  and where the store has them ``labels.npy`` (int64 class indices; a multi-label store's uint8
  (N, classes) 0/1 rows, a regression store's float64 (N, targets)), ``truncated.npy`` and
  ``skipped.npy`` (uint8 flags);
- ``parquet``: one ``vectors.parquet`` with columns ``id``, ``label`` and ``label_name``,
  ``truncated``, ``skipped`` (where the store has them) and one fixed-size list column per
  pooling, written in row groups of 65,536 rows (needs ``featx[parquet]``).

A compact store (int8, binary) is written as it is kept, its codes as they are: int8 (rows x dim),
binary uint8 (rows x dim / 8, signs packed eight to a byte, the first dimension in the high bit;
``numpy.unpackbits(codes, axis=1, count=dim)``); the sidecar's ``codecs`` give each pooling's kind,
dim and int8 ``scales`` (a value is code x its dimension's scale).

Both come with ``featx-export.json``: the rows, poolings, dim, dtype, class names, the store's
extraction config and fingerprint, and which file holds what (the parquet file carries the
same JSON in its schema metadata, under ``featx``). The folder is written whole or not at
all (featx.atomic.atomic_folder); featx replaces only an earlier export, and only when told to.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from featx._version import __version__
from featx.atomic import atomic_folder
from featx.config import EXPORT_FORMATS
from featx.constraints import Options
from featx.errors import FeatxError, OutputError
from featx.store.reader import FeatureStore, open_store

SIDECAR = "featx-export.json"
BATCH_ROWS = 65_536


def export_store(store: str | Path, output: str | Path, fmt: str = "npy", overwrite: bool = False) -> Path:
    """Write the complete store at `store` into the folder `output` in `fmt`; returns the folder."""
    Options(EXPORT_FORMATS).check("format", fmt)
    out = Path(output)
    _check_target(out, overwrite)
    write = _write_npy if fmt == "npy" else _write_parquet
    if fmt == "parquet":
        _require_pyarrow()
    with open_store(store) as opened, atomic_folder(out, "export") as partial:
        sidecar = _sidecar(opened, fmt)
        sidecar["files"] = write(opened, partial, sidecar)
        (partial / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    return out


def _check_target(out: Path, overwrite: bool) -> None:
    """Refuse a file, a folder holding anything but an earlier export, or an export without `overwrite`."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file: name a folder for the export")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / SIDECAR).is_file():
        raise OutputError(f"{out} is not empty and holds no featx export ({SIDECAR}): name a new or empty folder "
                          "(featx never replaces other files)")
    if not overwrite:
        raise OutputError(f"{out} holds an export already: pass --overwrite to replace it")


def _sidecar(store: FeatureStore, fmt: str) -> dict[str, Any]:
    return {"format": fmt, "featx_version": __version__, "store": str(store.path), "rows": len(store),
            "poolings": list(store.poolings), "dim": store.dim, "dtype": store.config.store_dtype,
            **({"codecs": {p: c.to_json() for p in store.poolings if (c := store.codec(p)) is not None}}
               if store.codec(store.poolings[0]) is not None else {}),
            "classes": list(store.classes) if store.classes else None,
            **({"task": store.task} if store.classes and store.task != "single" else {}),
            "fingerprint": store.fingerprint,
            "config": json.loads(store.config.to_json())}


def _row_columns(store: FeatureStore) -> dict[str, np.ndarray]:
    """ids, content hashes, and the labels and flags the store has, as plain numpy arrays."""
    ids = store.ids
    columns = {"ids": ids.astype(str) if ids.dtype.kind in "OSU" else ids.astype(np.int64),
               "content_sha256": np.asarray(store.content_sha256, dtype=np.uint8)}
    for name in ("labels", *store.row_flags):
        values = store.row_values(name)
        if values is not None:
            label_dtype = {"single": np.int64, "multi": np.uint8, "regression": np.float64}[store.task]
            columns[name] = values.astype(label_dtype if name == "labels" else np.uint8)
    return columns


def _write_npy(store: FeatureStore, folder: Path, sidecar: dict[str, Any]) -> dict[str, str]:
    files = {}
    for name, values in _row_columns(store).items():
        np.save(folder / f"{name}.npy", values)
        files[name] = f"{name}.npy"
    for pooling in store.poolings:
        source = store.raw_features(pooling)  # a compact store's codes as they are
        target = np.lib.format.open_memmap(folder / f"{pooling}.npy", mode="w+", dtype=source.dtype,
                                           shape=(len(store), source.shape[1]))
        for start in range(0, len(store), BATCH_ROWS):
            target[start:start + BATCH_ROWS] = source[start:min(start + BATCH_ROWS, len(store))]
        target.flush()
        del target
        files[pooling] = f"{pooling}.npy"
    return files


def _write_parquet(store: FeatureStore, folder: Path, sidecar: dict[str, Any]) -> dict[str, str]:
    pa, pq = _require_pyarrow()
    rows = _row_columns(store)
    fields = [pa.field("id", pa.string() if rows["ids"].dtype.kind == "U" else pa.int64())]
    single = store.task == "single"
    if "labels" in rows and single:
        fields += [pa.field("label", pa.int64()), pa.field("label_name", pa.string())]
    elif "labels" in rows:  # a 0/1 row of the classes, or the targets, named in the sidecar's "classes"
        fields += [pa.field("labels", pa.list_(pa.uint8() if store.task == "multi" else pa.float64(),
                                               len(store.classes or ())))]
    fields += [pa.field(name, pa.bool_()) for name in store.row_flags if name in rows]
    value_type = {"float16": pa.float16(), "int8": pa.int8(), "binary": pa.uint8()}.get(sidecar["dtype"], pa.float32())
    width = store.raw_features(store.poolings[0]).shape[1]  # a binary row's bytes
    fields += [pa.field(p, pa.list_(value_type, width)) for p in store.poolings]
    metadata = {"featx": json.dumps({**sidecar, "files": {"all": "vectors.parquet"}})}
    schema = pa.schema(fields, metadata=metadata)
    classes = np.asarray(store.classes or (), dtype=object)
    with pq.ParquetWriter(folder / "vectors.parquet", schema) as writer:
        for start in range(0, len(store), BATCH_ROWS):
            stop = min(start + BATCH_ROWS, len(store))
            columns: list[Any] = [rows["ids"][start:stop]]
            if "labels" in rows and single:
                columns += [rows["labels"][start:stop], classes[rows["labels"][start:stop]]]
            elif "labels" in rows:
                block = np.ascontiguousarray(rows["labels"][start:stop])
                columns.append(pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), block.shape[1]))
            columns += [rows[name][start:stop].astype(bool) for name in store.row_flags if name in rows]
            for pooling in store.poolings:
                block = np.ascontiguousarray(store.raw_features(pooling)[start:stop])
                columns.append(pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), width))
            writer.write_batch(pa.record_batch(columns, schema=schema))
    return {"all": "vectors.parquet"}


def _require_pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise FeatxError("--format parquet needs pyarrow: pip install 'featx[parquet]'") from None
    return pyarrow, pyarrow.parquet
