"""featx's caches, and the one rule every one of them follows.

A cache only saves time; it never decides that a value is right. Every value written to a
cache carries a check written with it (a sha256 of what it holds), verified each time the
value is served. A value whose check fails is computed again, replaced, and reported in one
``featx: warning:`` line (`report_rejected`); nothing else changes. The caches:

- the weight-hash cache, ``$FEATX_CACHE/file-hashes.json`` (featx.backbones.hashing): each
  entry's full hash is bound to a sample of the files' bytes;
- the conversion cache, ``$FEATX_CACHE/openvino/<key>/`` (featx.backbones.openvino), and the
  unpacked models, ``$FEATX_CACHE/models/<name>/`` (featx.backbones.folders), and the static models
  model2vec distils, ``$FEATX_CACHE/static/<key>/`` (featx.backbones.static): each folder is
  sealed with the sha256 of every file in it (`seal_folder`), all re-read on use
  (`folder_intact`): one more read of files about to be read anyway;
- the vector cache the user names with ``--cache-dir`` (featx.store.vector_cache): each row
  holds the sha256 of its key and vectors.

``$FEATX_CACHE`` defaults to ``~/.cache/featx``; deleting it costs only time.
"""
from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from pathlib import Path

from featx.atomic import file_sha256
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
