"""Merging the complete shards of one extraction into one store (`featx merge`).

`merge_shards` checks that the shards belong together (one fingerprint and input, all
complete) and cover every row once, then writes a store whose datasets are HDF5 virtual
datasets over the shard files (no feature is copied), or a standalone copy.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featx.atomic import atomic_file, same_file, utc_stamp
from featx.errors import FeatxError, OutputError, first_line
from featx.progress import progress_bar
from featx.store.h5 import h5_reason, row_datasets_of
from featx.store.header import REQUIRED, StoreHeader
from featx.store.layout import check_replaceable
from featx.store.quantize import codec_of


def merge_shards(shards: list[str | Path], output: str | Path, copy: bool = False) -> Path:
    """Join complete shards of one extraction into one store (virtual datasets, or a copy)."""
    output = Path(output)
    for shard in shards:
        if same_file(output, shard):
            raise OutputError(f"the output {output} is the shard {shard}: choose another -o")
    infos = sorted((_shard_info(Path(p)) for p in shards), key=lambda info: info["row_offset"])
    _check_shards(infos)
    if output.exists():
        check_replaceable(output)
    first = infos[0]
    total = first["input_rows"]
    with atomic_file(output, "merged store") as partial:
        try:
            _write_merged(partial, output.parent, infos, total, copy)
        except (RuntimeError, KeyError, ValueError) as e:  # h5py's other types for a failed write
            raise OSError(h5_reason(e)) from None
    return output


def _write_merged(partial: Path, folder: Path, infos: list[dict[str, Any]], total: int, copy: bool) -> None:
    # No chunk cache (as featx.store.h5.open_h5 gives writers): a full disk fails inside the write
    # that meets it. With one, HDF5 met it while closing the file, which crashed the process.
    with h5py.File(infos[0]["path"], "r") as template, h5py.File(partial, "w", rdcc_nbytes=0) as out:
        names = [*row_datasets_of(template), *(f"features/{p}" for p in template["features"])]
        out.create_group("features")
        with progress_bar(total * len(names) if copy else 0, "merge --copy", show=None if copy else False) as bar:
            for name in names:
                source = template[name]
                if copy:
                    _copy_rows(out, name, source, infos, total, bar)
                else:
                    _virtual_rows(out, name, source, infos, total, folder)
                if name.startswith("features/"):  # a compact store's codec (kind, dim, int8 scales)
                    out[name].attrs.update(source.attrs)
        if "labels" in template:
            out["labels"].attrs.update(template["labels"].attrs)  # classes, and the task where not single
        header = dataclasses.replace(
            StoreHeader.from_attrs(template.attrs, infos[0]["path"]), shard=None, n_rows=total, n_done=total,
            row_offset=0, complete=True, merged_from=[Path(i["path"]).name for i in infos], created_at=utc_stamp(),
            timings={"shards": [i["timings"] for i in infos], "copied": copy})
        out.attrs.update(header.to_attrs())


# What merging reads of a shard besides the attributes every store has.
_SHARD_ATTRS = (*REQUIRED, "input", "input_sha256", "input_rows", "row_offset", "timings")


def _shard_info(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FeatxError(f"shard {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            header = StoreHeader.from_attrs(f.attrs, path, required=_SHARD_ATTRS)
            if header.shard is None:
                raise FeatxError(f"{path} is not a shard (it was extracted without --shard)")
            codecs = {name: codec_of(f["features"][name]) for name in f["features"]} if "features" in f else {}
            return {"path": str(path), "shard": tuple(header.shard), "fingerprint": header.fingerprint,
                    "scales": {name: None if c is None else c.scales for name, c in codecs.items()},
                    "input": header.input, "input_sha256": header.input_sha256, "input_rows": header.input_rows,
                    "row_offset": header.row_offset, "n_rows": header.n_rows, "n_done": header.n_done,
                    "complete": header.complete, "timings": header.timings}
    except OSError as e:
        raise FeatxError(f"cannot read shard {path}: {first_line(e)}") from None


def _check_shards(infos: list[dict[str, Any]]) -> None:
    first = infos[0]
    for info in infos:
        if info["fingerprint"] != first["fingerprint"]:
            raise FeatxError(f"{info['path']} was extracted with another config than {first['path']} "
                             "(fingerprints differ): re-extract it with the same settings")
        if (info["input_sha256"], info["input"], info["input_rows"]) != (
                first["input_sha256"], first["input"], first["input_rows"]):
            raise FeatxError(f"{info['path']} was extracted from another input than {first['path']}")
        if any(not _same(scales, first["scales"].get(name)) for name, scales in info["scales"].items()):
            raise FeatxError(f"{info['path']} keeps its int8 vectors with other scales than {first['path']}: "
                             "re-extract it with this featx (a shard takes the input's first window's scales)")
        if not info["complete"]:
            raise FeatxError(f"{info['path']} is incomplete ({info['n_done']:,} of {info['n_rows']:,} rows): "
                             "rerun its extract command first")
    seen: dict[tuple[int, int], str] = {}
    for info in infos:
        if info["shard"] in seen:
            raise FeatxError(f"shard {info['shard'][0]}/{info['shard'][1]} given twice: {seen[info['shard']]} "
                             f"and {info['path']}")
        seen[info["shard"]] = info["path"]
    position = 0
    for info in infos:
        if info["row_offset"] != position:
            raise FeatxError(f"rows {position:,}..{info['row_offset'] - 1:,} are in no shard given "
                             f"(a shard of {info['shard'][1]} is missing)")
        position += info["n_rows"]
    if position != first["input_rows"]:
        raise FeatxError(f"rows {position:,}..{first['input_rows'] - 1:,} are in no shard given "
                         f"(a shard of {first['shard'][1]} is missing)")


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def _virtual_rows(out: h5py.File, name: str, source: h5py.Dataset, infos: list[dict[str, Any]], total: int,
                  folder: Path) -> None:
    layout = h5py.VirtualLayout(shape=(total,) + source.shape[1:], dtype=source.dtype)
    for info in infos:
        path = Path(info["path"])
        # A shard beside the merged file is named relatively, so the folder can move as a whole.
        file_name = path.name if path.resolve().parent == folder.resolve() else str(path.resolve())
        rows = info["n_rows"]
        layout[info["row_offset"]:info["row_offset"] + rows] = h5py.VirtualSource(
            file_name, name, shape=(rows,) + source.shape[1:], dtype=source.dtype)
    out.create_virtual_dataset(name, layout)


def _copy_rows(out: h5py.File, name: str, source: h5py.Dataset, infos: list[dict[str, Any]], total: int,
               bar: Any) -> None:
    target = out.create_dataset(name, shape=(total,) + source.shape[1:], dtype=source.dtype,
                                chunks=source.chunks, compression=source.compression)
    for info in infos:
        with h5py.File(info["path"], "r") as f:
            data = f[name]
            for start in range(0, info["n_rows"], 65_536):
                stop = min(start + 65_536, info["n_rows"])
                block = data[start:stop]
                if h5py.check_string_dtype(data.dtype):
                    block = np.asarray(data.asstr()[start:stop], dtype=object)
                target[info["row_offset"] + start:info["row_offset"] + stop] = block
                bar.update(stop - start)
