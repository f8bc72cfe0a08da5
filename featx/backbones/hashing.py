"""sha256 of a model's files, remembered by each file's (path, size, mtime, ctime, inode).

Hashing a multi-GB backbone takes seconds to minutes, and the fingerprint of every
store needs it. The hash of a set of files is kept in memory and in featx's cache folder
(``$FEATX_CACHE/file-hashes.json``, default ``~/.cache/featx``), keyed by its resolved
paths and the stat fields a rewrite changes: size, mtime and ctime in nanoseconds, and
inode. ctime cannot be set back by a user (touch -d moves mtime only), so a file
rewritten in place, even with its old size and mtime restored, is hashed again.

The cache only saves time; it never decides that weights are right (featx.caches: the rule). Each entry holds
the full hash and a check: the sha256 of a sample of the files (each one's name, size,
first and last MiB) together with that full hash. Every use reads the sample again (2
MiB a file) and recomputes the check, so an entry edited by hand to another file's
hash, copied from another file, or left by other bytes of another size or ends, fails
its check and the files are hashed in full. What it cannot see: a file whose middle
bytes change while its size, ends, mtime, ctime and inode stay (no rewrite through
the filesystem does that), or an entry forged by someone who recomputes the check from
the files; set FEATX_CACHE to an empty folder to hash everything in full. The cache
file is written whole under a temporary name; when it cannot be read or written
(read-only home, damaged JSON) featx hashes and carries on.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from featx.atomic import file_sha256
from featx.caches import cache_folder, report_rejected

_LOCK = threading.Lock()
_MEMORY: dict[str, dict[str, str]] = {}
_MAX_ENTRIES = 2000


def _key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{stat.st_ino}"


def files_sha256(root: Path, files: list[Path]) -> str:
    """One sha256 over (relative name, NUL, bytes) of each file, in name order; from the cache
    when no file changed since it was last hashed and the entry passes its check."""
    files = sorted(files)
    key = "\n".join(_key(file) for file in files)
    sample = _sample_sha256(root, files)
    with _LOCK:
        entry = _MEMORY.get(key)
    if entry is None:
        entry = _load().get(key)
    if entry is None or entry.get("check") != _check(sample, entry.get("sha256")):
        if entry is not None:
            report_rejected(f"the sha256 of {root}", _cache_file(), "the files were hashed in full again",
                            kind="weight_hashes")
        full = _full_sha256(root, files)
        entry = {"sha256": full, "check": _check(sample, full)}
        _save(key, entry)
    with _LOCK:
        _MEMORY[key] = entry
    return str(entry["sha256"])


_SAMPLE_BYTES = 1 << 20


def module_structure_sha256(module: object) -> str:
    """sha256 of a torch module's printed structure: its submodules, their kinds and settings
    (strides, paddings, activations as modules); what its state dict does not hold."""
    return hashlib.sha256(repr(module).encode()).hexdigest()


def _full_sha256(root: Path, files: list[Path]) -> str:
    """The hash itself: every byte of every file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        file_sha256(file, digest)
    return digest.hexdigest()


def _sample_sha256(root: Path, files: list[Path]) -> str:
    """sha256 over each file's relative name, size, first MiB and last MiB: cheap to read on every load."""
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            digest.update(f"{file.relative_to(root).as_posix()}\0{size}\0".encode())
            digest.update(f.read(_SAMPLE_BYTES))
            if size > _SAMPLE_BYTES:
                f.seek(max(_SAMPLE_BYTES, size - _SAMPLE_BYTES))
                digest.update(f.read(_SAMPLE_BYTES))
    return digest.hexdigest()


def _check(sample: str, full: object) -> str:
    """Binds a full hash to the sample of the bytes it was computed from."""
    return hashlib.sha256(f"featx-file-hash|{sample}|{full}".encode()).hexdigest()


def _cache_file() -> Path:
    return cache_folder() / "file-hashes.json"


def _load() -> dict[str, dict[str, str]]:
    """The cache file's entries; anything not shaped like one (an older featx's bare hashes) is left out."""
    try:
        entries = json.loads(_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(entries, dict):
        return {}
    return {k: v for k, v in entries.items()
            if isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("check"), str)}


def _save(key: str, value: dict[str, str]) -> None:
    from featx.atomic import write_text
    from featx.errors import FeatxError

    with _LOCK:
        entries = _load()
        entries[key] = value
        entries = dict(list(entries.items())[-_MAX_ENTRIES:])
        try:
            _cache_file().parent.mkdir(parents=True, exist_ok=True)
            write_text(_cache_file(), json.dumps(entries, indent=0) + "\n", "hash cache")
        except (OSError, FeatxError):
            pass  # a cache that cannot be written only costs time
