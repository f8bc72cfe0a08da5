"""The writer's lock: one process writes a store at a time (STORE.lock, flock'd)."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from featx.errors import FeatxError, OutputError, describe_os_error


class WriterLock:
    """An exclusive, non-blocking flock on STORE.lock; released on close or process death.

    The lock file is never removed: removing it lets a process that opened it just before
    lock the removed file while a third creates and locks a new one, and then both write.
    """

    def __init__(self, store: Path) -> None:
        self.path = store.with_name(store.name + ".lock")
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise OutputError(f"cannot write beside {store} (creating {self.path.name}): "
                                  f"{describe_os_error(e)}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise FeatxError(f"{store} is being written by another process (it holds {self.path.name}): "
                                 "wait for it to finish, or write to another -o") from None
            if _same_inode(fd, self.path):
                self._fd: int | None = fd
                return
            os.close(fd)  # someone removed the lock file by hand; lock the one that is there now

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


def _same_inode(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)
