"""sha256 of a model's files, remembered by each file's (path, size, mtime, ctime, inode).

Hashing a multi-GB backbone takes seconds to minutes, and the fingerprint of every
store needs it. The hash of a set of files is kept in memory and in featx's cache folder
(``$FEATX_CACHE/file-hashes.json``, default ``~/.cache/featx``), keyed by its resolved
paths and the stat fields a rewrite changes: size, mtime and ctime in nanoseconds, and
inode. ctime cannot be set back by a user (touch -d moves mtime only), so a file
rewritten in place, even with its old size and mtime restored, is hashed again. The
cache file is written whole under a temporary name; when it cannot be read or
written (read-only home, damaged JSON) featx hashes and carries on.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

_LOCK = threading.Lock()
_MEMORY: dict[str, str] = {}
_MAX_ENTRIES = 2000


def cache_folder() -> Path:
    """featx's own cache folder: $FEATX_CACHE, else ~/.cache/featx."""
    return Path(os.environ.get("FEATX_CACHE") or Path.home() / ".cache" / "featx")


def _key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{stat.st_ino}"


def files_sha256(root: Path, files: list[Path]) -> str:
    """One sha256 over (relative name, NUL, bytes) of each file, in name order; from the cache
    when no file changed since it was last hashed."""
    files = sorted(files)
    key = "\n".join(_key(file) for file in files)
    with _LOCK:
        known = _MEMORY.get(key)
    if known is None:
        known = _load().get(key)
    if known is None:
        digest = hashlib.sha256()
        for file in files:
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        known = digest.hexdigest()
        _save(key, known)
    with _LOCK:
        _MEMORY[key] = known
    return known


def _cache_file() -> Path:
    return cache_folder() / "file-hashes.json"


def _load() -> dict[str, str]:
    try:
        entries = json.loads(_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in entries.items() if isinstance(v, str)} if isinstance(entries, dict) else {}


def _save(key: str, value: str) -> None:
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
