"""A store that views another's rows: its datasets are HDF5 virtual datasets over the other
store's, except its own labels (featx.relabel writes one; featx.store.reader checks, on every
open, that the store it views is there, whole and of the same fingerprint)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featx.store.header import StoreHeader
from featx.store.layout import label_layout


def write_view(partial: Path, folder: Path, original: Path, header: StoreHeader, labels: np.ndarray,
                names: tuple[str, ...], task: str) -> None:
    """A store at `partial` whose every dataset but `labels` is a virtual view of the store at
    `original`, with `header`'s attributes and these labels (featx.relabel)."""
    # A store beside the new one is named relatively, so the folder can move as a whole.
    name = original.name if original.resolve().parent == folder.resolve() else str(original.resolve())
    with h5py.File(original, "r") as source, h5py.File(partial, "w") as out:
        for dataset in _datasets(source):
            if dataset != "labels":
                _view(out, dataset, source[dataset], name)
        out.create_dataset("labels", data=labels, dtype=label_layout(task, len(labels), len(names), 1)["dtype"])
        out["labels"].attrs["classes"] = json.dumps(list(names))
        if task != "single":
            out["labels"].attrs["task"] = task
        out.attrs.update(header.to_attrs())


def _datasets(file: h5py.File) -> list[str]:
    found: list[str] = []
    file.visititems(lambda key, item: found.append(key) if isinstance(item, h5py.Dataset) else None)
    return found


def _view(out: h5py.File, name: str, dataset: Any, file_name: str) -> None:
    if dataset.size == 0:  # nothing to point at (token states of no row)
        out.create_dataset(name, shape=dataset.shape, dtype=dataset.dtype)
        return
    layout = h5py.VirtualLayout(shape=dataset.shape, dtype=dataset.dtype, maxshape=dataset.shape)
    layout[...] = h5py.VirtualSource(file_name, name, shape=dataset.shape, dtype=dataset.dtype)
    out.create_virtual_dataset(name, layout)
    out[name].attrs.update(dataset.attrs)  # a compact store's codec (featx.store.quantize) goes with its codes
