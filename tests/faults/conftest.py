"""Helpers for the fault catalogue: run the CLI, check the one-line contract, fingerprint folders.

Every case asserts three things: the exit code, that stderr is exactly one
``featx: error: ...`` line (no traceback), and the state afterwards (inputs byte for
byte unchanged, no file that looks complete and is wrong).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Result, write_lines


def run_subprocess(*args: str | Path, env: dict | None = None, timeout: float = 300) -> Result:
    """Run `python -m featx ARGS...` in a child process (for faults that must not hit pytest itself)."""
    done = subprocess.run([sys.executable, "-m", "featx", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})},
                          timeout=timeout)
    return Result(done.returncode, done.stdout, done.stderr)


def assert_refused(result: Result, *fragments: str, code: int = 2) -> None:
    """Exit `code`, and stderr is one `featx: error:` line holding every fragment."""
    assert result.code == code, (result.code, result.err[-2000:])
    assert result.err.startswith("featx: error: "), result.err[-2000:]
    assert result.err.count("\n") == 1 and result.err.endswith("\n"), result.err[-2000:]
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in result.err, (fragment, result.err)


def snapshot(*paths: Path) -> dict[str, str]:
    """sha256 of every file under `paths` (files or folders), to prove nothing was touched."""
    digests = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for file in files:
            digests[str(file)] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def labelled_csv(path: Path, n: int = 24) -> Path:
    words = {"pos": ["great", "lovely", "superb"], "neg": ["awful", "dull", "boring"]}
    lines = ["text,label"] + [f"{words[lab][i % 3]} film {i},{lab}" for i, lab in
                              zip(range(n), ["pos", "neg"] * n)]
    return write_lines(path, lines)


def tiny_args(model_dir: Path) -> list[str]:
    """Extract options for the tiny model: fp32, windows of 8 rows, quiet."""
    return ["--model", str(model_dir), "--dtype", "fp32", "--window-rows", "8", "--batch-tokens", "64", "-q"]


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real filesystem of `size` (e.g. "3m") at `folder`, for full-disk faults; the test is
    skipped where a tmpfs cannot be mounted (not root, no mount rights)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("a real small filesystem needs root to mount a tmpfs")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
