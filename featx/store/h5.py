"""Opening HDF5 files, and turning HDF5's error texts into one line a user can act on."""
from __future__ import annotations

import errno
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featx.errors import DamagedError, FeatxError, describe_os_error, first_line
from featx.store.header import FORMAT

# One value per input row besides the features: ids and content hashes, "labels" only in
# labelled stores, then the per-row uint8 flags the modality declares (StorePlan.row_flags), kept
# by name: "truncated" (1 where the featurizer cut the row's input, e.g. a text over max_length;
# only in stores written since featx counted it), "skipped" (1 where the input could not be read,
# e.g. an undecodable image under --skip-bad; its vectors are NaN), or a new modality's own.
CORE_ROW_DATASETS = ("ids", "content_sha256", "labels")
KNOWN_ROW_FLAGS = ("truncated", "skipped")  # listed first, in this order, where a store has them


def row_flags_of(file: h5py.File) -> tuple[str, ...]:
    """The per-row flags a store keeps: every root dataset of one uint8 per row besides the core ones."""
    n_rows = file["ids"].shape[0] if "ids" in file else -1
    found = {name for name, item in file.items() if name not in CORE_ROW_DATASETS and isinstance(item, h5py.Dataset)
             and item.dtype == np.uint8 and item.shape == (n_rows,)}
    return (*(name for name in KNOWN_ROW_FLAGS if name in found), *sorted(found - set(KNOWN_ROW_FLAGS)))


def row_datasets_of(file: h5py.File) -> tuple[str, ...]:
    """The per-row datasets a store has besides its features: ids, hashes, labels, its flags."""
    return (*(name for name in CORE_ROW_DATASETS if name in file), *row_flags_of(file))
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

_ERRNO_IN_TEXT = re.compile(r"errno = (\d+)")


def h5_reason(error: BaseException) -> str:
    """The cause of an h5py/HDF5 error in a few words ('No space left on device').

    HDF5 puts the OS's errno inside its message text; h5py does not always copy it to
    `OSError.errno`, so both places are read.
    """
    if isinstance(error, OSError) and error.errno and error.errno in errno.errorcode:
        return describe_os_error(error)
    text = str(error)
    found = _ERRNO_IN_TEXT.search(text)
    if found and int(found.group(1)) in errno.errorcode:
        return os.strerror(int(found.group(1)))
    return first_line(error)


def is_hdf5_file(path: Path) -> bool:
    """True when the file starts with HDF5's signature (at offset 0, where featx writes it)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


def open_h5(path: Path, mode: str, wait: bool = False) -> h5py.File:
    """Open with HDF5's file locking. A file briefly held by the other side (a writer
    committing a window, a reader) is waited for: up to 60 s for a writer, 10 s for a reader.
    A file that is not HDF5, or is truncated or damaged, is reported at once.

    Writers get no chunk cache: every write reaches the file inside the call that makes it,
    so a failed write (a full disk) raises there. With a cache, HDF5 writes chunks when a
    dataset object is garbage-collected, where h5py can only print the error and the
    library is left in a state that crashes the next open."""
    if mode == "r" and not path.exists():
        raise FeatxError(f"store {path} does not exist")
    if path.is_dir():
        raise FeatxError(f"{path} is a folder, not a store file")
    deadline = time.monotonic() + (60 if wait else 10)
    while True:
        try:
            return h5py.File(path, mode, **({} if mode == "r" else {"rdcc_nbytes": 0}))
        except OSError as e:
            text = str(e)
            if not is_lock_conflict(e):
                raise _open_error(path, e, text) from None
            if time.monotonic() > deadline:
                raise FeatxError(f"{path} stayed locked by another process: close readers that hold it open, "
                                 "or wait for its writer") from None
            time.sleep(0.02)


def is_lock_conflict(error: OSError) -> bool:
    text = str(error).lower()
    return "unable to lock file" in text or error.errno in (errno.EAGAIN, errno.EWOULDBLOCK)


def _open_error(path: Path, error: OSError, text: str) -> FeatxError:
    reason = h5_reason(error)
    if "already open" in text:  # HDF5 will not truncate or reopen for writing a file this process holds
        return FeatxError(f"{path} is open in this process: close it (store.close()) before replacing it")
    if isinstance(error, PermissionError) or "errno = 13" in text or "errno = 30" in text:
        return FeatxError(f"cannot open {path}: {reason}")
    if not is_hdf5_file(path):
        return FeatxError(f"{path} is not an HDF5 file (so not a featx store)")
    if "truncated file" in text:
        return DamagedError(f"{path} is damaged: the file is truncated (shorter than HDF5 recorded): "
                            "remove it and extract again")
    return DamagedError(f"{path} is damaged: HDF5 cannot read it ({reason}): remove it and extract again")


def stored_config(path: Path) -> dict[str, Any] | None:
    """The config (as JSON fields) of the featx store at `path`; None when there is none, or it is unreadable."""
    if not path.is_file():
        return None
    try:
        with open_h5(path, "r") as file:
            if file.attrs.get("format") != FORMAT or "config" not in file.attrs:
                return None
            fields: dict[str, Any] = json.loads(str(file.attrs["config"]))
            return fields
    except (OSError, FeatxError, ValueError):
        return None
