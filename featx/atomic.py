"""Writes that happen whole or not at all, and the checks on where featx may write.

Every file or folder featx hands to a user (heads, predictors, results, predictions,
checkpoints, merged stores) is written under a temporary name beside its target, flushed
to disk, then renamed over the target in one step. A kill or a full disk leaves either the
old target or the new one, never a mix; a failure removes the temporary.

featx's scratch names are its own and no user would pick them: ``.NAME.featx-part-<pid>`` for
what is being written and ``.NAME.featx-old-<pid>`` for a folder being replaced (hidden, the
writing process's id in the name). featx removes or renames only names of that pattern; a
user's ``NAME.part`` or ``NAME.old`` (a ``mv results results.old`` backup) is never touched.
An empty folder already at the target (a mount point among them) is filled in place, since
a mount point cannot be renamed: the new entries are written in a scratch folder inside it
and renamed into it one by one, JSON files (a head's or predictor's record, read first)
last, so a kill leaves a folder a reader refuses rather than one that looks whole.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from featx.errors import OutputError, describe_os_error

_SCRATCH = re.compile(r"\.(?P<name>.+)\.featx-(?P<kind>part|old)-(?P<pid>\d+)")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# safetensors words an I/O error as "... No space left on device (os error 28)" (older
# versions: "IoError(Os { code: 28, ... })").
_OS_CODE = re.compile(r"os error (\d+)|Os \{ code: (\d+)")


def utc_stamp() -> str:
    """Now, in UTC, as featx stamps what it writes (created_at, saved_at, finished_at): 2026-11-30T23:50:00Z."""
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def prepare_output(path: str | Path, what: str = "output") -> Path:
    """`path` as a Path whose parent folder exists; refuses a folder or a path under a file."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder: name a file inside it")
    make_folder(path.parent, what)
    return path


def make_folder(folder: str | Path, what: str = "output") -> Path:
    """Create `folder` (and its parents); one clear error when a file is in the way or it is read-only."""
    folder = Path(folder)
    for parent in (folder, *folder.parents):
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"cannot create the {what} folder {folder}: {parent} is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the {what} folder {folder}: {describe_os_error(e)}") from None
    return folder


def child_path(folder: str | Path, name: str, what: str) -> Path:
    """folder/name for a `name` taken from a file (a suite, a manifest): one plain name, never a path.

    Letters, digits, '.', '_' and '-' only, so '../x', '/etc/x' or 'a/b' cannot lead outside `folder`.
    """
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise OutputError(f"{what} {name!r} is not a plain name (letters, digits, '.', '_', '-'): "
                          "featx writes only inside the folder you named")
    return Path(folder) / name


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when both paths name one existing file (symlinks and hard links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's) written bytes to the disk, so a power cut keeps them."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path, what: str = "output") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on any failure it is removed."""
    path = prepare_output(path, what)
    partial = scratch_path(path)
    with _discarded_on_failure(partial, path):
        yield partial
        fsync_path(partial)
        partial.replace(path)


def save_tensors(tensors: dict[str, Any], path: Path) -> None:
    """Write numpy arrays or torch tensors as one safetensors file (inside an atomic save)."""
    if all(isinstance(v, np.ndarray) for v in tensors.values()):
        from safetensors.numpy import save_file
    else:
        from safetensors.torch import save_file  # type: ignore[assignment]
    with safetensors_os_errors():
        save_file(tensors, str(path))


@contextlib.contextmanager
def safetensors_os_errors() -> Iterator[None]:
    """safetensors reports a failed write (a full disk) as its own SafetensorError; raise it as
    the OSError it is, so the atomic save around it ends in one line and removes its temporary."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as e:
        code = _OS_CODE.search(str(e))
        number = int(code.group(1) or code.group(2)) if code else errno.EIO
        raise OSError(number, os.strerror(number) if code else str(e).splitlines()[0]) from None


def write_text(path: str | Path, text: str, what: str = "output") -> Path:
    """Write `text` to `path` atomically (UTF-8)."""
    with atomic_file(path, what) as partial:
        partial.write_text(text, encoding="utf-8")
    return Path(path)


def scratch_path(path: Path, kind: str = "part") -> Path:
    """featx's scratch name for `path` in this process: .NAME.featx-part-<pid> (or -old-)."""
    return path.with_name(f".{path.name}.featx-{kind}-{os.getpid()}")


def _scratch_of(path: Path) -> dict[str, list[Path]]:
    """featx's scratch folders beside `path` left by processes no longer running, by kind."""
    found: dict[str, list[Path]] = {"part": [], "old": []}
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            match = _SCRATCH.fullmatch(entry.name)
            if match and match["name"] == path.name and not process_running(int(match["pid"])):
                found[match["kind"]].append(entry)
    return found


def process_running(pid: int) -> bool:
    """Whether `pid` is a running process other than this one."""
    if pid == os.getpid():
        return False  # this process's own scratch is from an earlier, finished or failed, save
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process
    return True


@contextlib.contextmanager
def atomic_folder(path: str | Path, what: str = "output") -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it replaces the folder `path` as a whole.

    The old folder is renamed aside, the new one renamed in, then the old one removed:
    at every moment `path` is either the complete old folder or the complete new one
    (or, for an instant after a kill, absent with both beside it under featx's scratch
    names; the next save puts the old one back first). An empty folder at `path` is filled
    in place (see the module docstring).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file: name a folder")
    make_folder(path.parent, what)
    stale = _scratch_of(path)
    if stale["old"] and not path.exists():
        stale["old"].pop().rename(path)  # a kill between the two renames of an earlier save: the old folder is whole
    for leftover in stale["part"] + stale["old"]:
        _remove(leftover)
    if path.is_dir() and not any(path.iterdir()):
        with _filled_in_place(path, what) as partial:
            yield partial
        return
    partial, old = scratch_path(path), scratch_path(path, "old")
    with _discarded_on_failure(partial, path):
        partial.mkdir()
        yield partial
        _fsync_tree(partial)
        if path.exists():
            path.rename(old)
        try:
            partial.rename(path)
        except BaseException:
            if old.exists() and not path.exists():
                old.rename(path)  # put the old folder back: the save failed, the target is as it was
            raise
        _remove(old)


@contextlib.contextmanager
def _filled_in_place(path: Path, what: str) -> Iterator[Path]:
    """Fill the empty folder `path` (a mount point, say) without renaming it: write in a scratch
    folder inside it, then rename each entry in, JSON records last; a failure empties it again."""
    partial = path / f".featx-part-{os.getpid()}"
    try:
        with _discarded_on_failure(partial, path):
            partial.mkdir()
            yield partial
            _fsync_tree(partial)
            for entry in sorted(partial.iterdir(), key=lambda p: (p.suffix == ".json", p.name)):
                entry.rename(path / entry.name)
            partial.rmdir()
    except BaseException:
        for entry in path.iterdir():  # the folder was empty: whatever is in it now is this save's
            _remove(entry)
        raise


def _fsync_tree(folder: Path) -> None:
    for file in folder.rglob("*"):
        if file.is_file():
            fsync_path(file)


@contextlib.contextmanager
def _discarded_on_failure(partial: Path, target: Path) -> Iterator[None]:
    """Remove `partial` when the block fails; an OS error (full disk, read-only) becomes one OutputError."""
    try:
        yield
    except BaseException as e:
        _remove(partial)
        if isinstance(e, OSError):
            raise OutputError(f"writing {target} failed: {describe_os_error(e)}; nothing was written there") from None
        raise


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def file_sha256(path: Path, digest: Any = None) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks; with `digest`, the bytes are added to it
    (after whatever it already holds) and its hex digest is returned."""
    digest = hashlib.sha256() if digest is None else digest
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return str(digest.hexdigest())
