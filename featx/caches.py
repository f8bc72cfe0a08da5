"""featx's caches, and the one rule every one of them follows.

A cache only saves time; it never decides that a value is right. Every value written to a
cache carries a check written with it (a sha256 of what it holds), verified each time the
value is served. A value whose check fails is computed again, replaced, and reported in one
``featx: warning:`` line (`report_rejected`); nothing else changes. The caches:

- the weight-hash cache, ``$FEATX_CACHE/file-hashes.json`` (featx.backbones.hashing): each
  entry's full hash is bound to a sample of the files' bytes;
- the conversion cache, ``$FEATX_CACHE/openvino/<key>/`` (featx.backbones.openvino; int8 models,
  featx.backbones.int8, beside the conversions), and the
  unpacked models, ``$FEATX_CACHE/models/<name>/`` (featx.backbones.folders), and the static models
  model2vec distils, ``$FEATX_CACHE/static/<key>/`` (featx.backbones.static): each folder is
  sealed with the sha256 of every file in it (`seal_folder`), all re-read on use
  (`folder_intact`): one more read of files about to be read anyway;
- the TF-IDF fits of the hybrid head, ``$FEATX_CACHE/tfidf/<key>/`` (featx.heads.tfidf), sealed
  the same way;
- the vector cache the user names with ``--cache-dir`` (featx.store.vector_cache): each row
  holds the sha256 of its key and vectors.

A folder value is made in a scratch folder beside its place, ``.KEY.featx-part-PID.*``, and moved
into place whole; the scratch a killed process left is removed the next time that cache is written.
``$FEATX_CACHE`` defaults to ``~/.cache/featx``; deleting it costs only time.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from featx.atomic import file_sha256, process_running
from featx.errors import FeatxWarning

CHECKS_FILE = "featx-checks.json"


def cache_folder() -> Path:
    """featx's own cache folder: $FEATX_CACHE, else ~/.cache/featx."""
    return Path(os.environ.get("FEATX_CACHE") or Path.home() / ".cache" / "featx")


def seal_folder(folder: Path) -> None:
    """Write the check of a cached folder: the sha256 of every file under it, by relative name."""
    (folder / CHECKS_FILE).write_text(json.dumps(_digests(folder), indent=0, sort_keys=True) + "\n", encoding="utf-8")


def folder_intact(folder: Path) -> bool:
    """True when `folder` holds exactly the files its seal names, each with the sha256 recorded."""
    try:
        recorded = json.loads((folder / CHECKS_FILE).read_text(encoding="utf-8"))
        return isinstance(recorded, dict) and recorded == _digests(folder)
    except (OSError, ValueError):
        return False


def folder_holds(folder: Path, files: tuple[str, ...] | list[str]) -> bool:
    """True when `folder` is intact (`folder_intact`) and holds each of `files`: a cached value to serve."""
    return folder_intact(folder) and all((folder / name).is_file() for name in files)


def _digests(folder: Path) -> dict[str, str]:
    return {file.relative_to(folder).as_posix(): file_sha256(file)
            for file in sorted(folder.rglob("*")) if file.is_file() and file.name != CHECKS_FILE}


# How many cached values failed their check in this process, by cache; an extraction records
# the ones met while it ran in its store's timings (`cache_rejections`).
_REJECTED: Counter[str] = Counter()


def rejected_counts() -> dict[str, int]:
    """Cached values that failed their check so far in this process, by cache."""
    return dict(_REJECTED)


def report_rejected(what: str, cache: str | Path, redone: str, *, kind: str) -> None:
    """Count the event under `kind` and say in one warning line that `what` in `cache` failed its
    check and what was done instead."""
    _REJECTED[kind] += 1
    warnings.warn(FeatxWarning(f"{what} in the cache {cache} failed the check written with it (damaged or "
                               f"overwritten): {redone}"), stacklevel=3)


# A cache folder being made: .KEY.featx-part-PID.RANDOM beside where it goes (see cached_folder).
_SCRATCH = re.compile(r"\..+\.featx-part-(?P<pid>\d+)\..+")


def _remove_stale_scratch(parent: Path) -> None:
    """Remove the scratch folders in `parent` of processes no longer running (killed while making a value)."""
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            match = _SCRATCH.fullmatch(entry.name)
            pid = int(match["pid"]) if match else os.getpid()  # this process's own may be in the making
            if pid != os.getpid() and entry.is_dir() and not process_running(pid):
                shutil.rmtree(entry, ignore_errors=True)


class CacheUnwritable(OSError):
    """A cache folder could not be made or written; the message names the folder."""


def cached_folder(folder: Path, files: tuple[str, ...], make: Callable[[Path], None], *, what: str, kind: str,
                  redone: str = "it was made again and replaced") -> Path:
    """`folder` in a featx cache, holding at least `files`: served when its seal holds, else made
    by `make(scratch)` in a scratch folder beside it, sealed, and moved into place whole (a damaged
    one is reported as `what`, with `redone`, counted under `kind`, and made again). Raises CacheUnwritable when
    the cache cannot be written."""
    if folder.exists():
        if folder_holds(folder, files):
            return folder
        report_rejected(what, folder.parent, redone, kind=kind)
        shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_scratch(folder.parent)
        scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.featx-part-{os.getpid()}.", dir=folder.parent))
    except OSError as e:
        raise CacheUnwritable(f"cannot keep {what} in {folder.parent} ({e.strerror}): set FEATX_CACHE to a "
                              "writable folder") from None
    try:
        make(scratch)
        seal_folder(scratch)
        try:
            os.replace(scratch, folder)
        except OSError:  # another process put the same value there first
            if not folder_intact(folder):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder
