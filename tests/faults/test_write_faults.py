"""Write faults during extraction: a full disk at every write point of a window commit, a write
HDF5 drops without a word, and a real small filesystem. Afterwards `featx info` shows only
committed rows, a rerun completes, and the store equals an uninterrupted run."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

import featx
from tests.conftest import write_lines
from tests.faults.conftest import assert_refused, run_subprocess, snapshot, tiny_args, tmpfs

ROWS = 24  # three windows of 8


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    lines = ["id,text,label"] + [f"r{i},{'good ' * (i % 5)}film {i},{'pos' if i % 3 else 'neg'}" for i in range(ROWS)]
    return write_lines(folder / "in.csv", lines)


# Short enough that rows with three or more "good" are cut: every window then holds rows whose
# `truncated` flag is 1, so a dropped write of that dataset differs from its zero fill.
MAX_LENGTH = 6
# The reference store's settings, as CLI flags, for every run compared with it.
SETTINGS = ["--id-column", "id", "--pooling", "mean,cls", "--max-length", str(MAX_LENGTH)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus, tiny_bert_dir):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    featx.extract(corpus, out, model=str(tiny_bert_dir), id_column="id", pooling="mean,cls", dtype="fp32",
                  window_rows=8, batch_tokens=64, max_length=MAX_LENGTH, progress=False).close()
    return _contents(out)


def _contents(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        n_done = int(f.attrs["n_done"])
        return {"n_done": n_done, "complete": bool(f.attrs["complete"]),
                **{name: f[name][:n_done] for name in ("ids", "content_sha256", "labels", "truncated",
                                                       "features/mean", "features/cls")}}


def _assert_prefix_equal(store_path, reference):
    got = _contents(store_path)
    for name, values in got.items():
        if name not in ("n_done", "complete"):
            np.testing.assert_array_equal(values, reference[name][: got["n_done"]], err_msg=name)
    return got


class FailAt:
    """Raise ENOSPC at the `occurrence`-th call of one write primitive (counted from 1)."""

    def __init__(self, occurrence: int, silent: bool = False) -> None:
        self.occurrence, self.silent, self.calls = occurrence, silent, 0

    def hit(self) -> bool:
        self.calls += 1
        return self.calls == self.occurrence


def _patch_dataset(monkeypatch, name: str, fail: FailAt) -> None:
    original = h5py.Dataset.__setitem__

    def setitem(self, key, value):
        if self.name == name and fail.hit():
            if fail.silent:
                return  # the write is lost and nobody says so, as HDF5 does with a failed chunk eviction
            raise _enospc()
        return original(self, key, value)
    monkeypatch.setattr(h5py.Dataset, "__setitem__", setitem)


def _patch_attr(monkeypatch, name: str, fail: FailAt) -> None:
    original = h5py.AttributeManager.__setitem__

    def setitem(self, key, value):
        if key == name and fail.hit():
            raise _enospc()
        return original(self, key, value)
    monkeypatch.setattr(h5py.AttributeManager, "__setitem__", setitem)


def _patch_flush(monkeypatch, fail: FailAt) -> None:
    original = h5py.File.flush

    def flush(self):
        if fail.hit():
            raise _enospc()
        return original(self)
    monkeypatch.setattr(h5py.File, "flush", flush)


def _patch_fsync(monkeypatch, fail: FailAt) -> None:
    """Every fsync of the store: creating it (featx.store.layout) and committing windows (writer)."""
    import featx.store.layout as layout_module
    import featx.store.writer as writer_module

    original = writer_module.fsync_path

    def fsync(path):
        if fail.hit():
            raise _enospc()
        return original(path)
    for module in (layout_module, writer_module):
        monkeypatch.setattr(module, "fsync_path", fsync)


# (what fails, which call of it) -> rows committed afterwards. Creating the store sets every
# attribute once and calls fsync once; each window commit then calls, in order: the five
# dataset writes, flush, fsync, (read back), the n_done attribute, flush, fsync; finishing
# sets timings, then complete.
WRITE_POINTS = {
    "ids, window 2": (lambda m: _patch_dataset(m, "/ids", FailAt(2)), 8),
    "content_sha256, window 2": (lambda m: _patch_dataset(m, "/content_sha256", FailAt(2)), 8),
    "labels, window 2": (lambda m: _patch_dataset(m, "/labels", FailAt(2)), 8),
    "truncated, window 2": (lambda m: _patch_dataset(m, "/truncated", FailAt(2)), 8),
    "features/mean, window 1": (lambda m: _patch_dataset(m, "/features/mean", FailAt(1)), 0),
    "features/cls, window 3": (lambda m: _patch_dataset(m, "/features/cls", FailAt(3)), 16),
    "flush of the data, window 2": (lambda m: _patch_flush(m, FailAt(3)), 8),
    "fsync of the data, window 2": (lambda m: _patch_fsync(m, FailAt(4)), 8),
    "n_done, window 2": (lambda m: _patch_attr(m, "n_done", FailAt(3)), 8),
    # The rows were verified on disk before n_done was set; closing the file writes it.
    "flush of n_done, window 2": (lambda m: _patch_flush(m, FailAt(4)), 16),
    "fsync of n_done, window 2": (lambda m: _patch_fsync(m, FailAt(5)), 16),
    "timings at the end": (lambda m: _patch_attr(m, "timings", FailAt(2)), 24),
    "complete at the end": (lambda m: _patch_attr(m, "complete", FailAt(2)), 24),
    "features/mean dropped silently, window 2": (
        lambda m: _patch_dataset(m, "/features/mean", FailAt(2, silent=True)), 8),
    "labels dropped silently, window 3": (lambda m: _patch_dataset(m, "/labels", FailAt(3, silent=True)), 16),
    "truncated dropped silently, window 2": (
        lambda m: _patch_dataset(m, "/truncated", FailAt(2, silent=True)), 8),
}


@pytest.mark.parametrize("point", WRITE_POINTS, ids=list(WRITE_POINTS))
def test_write_fault_keeps_committed_rows_and_the_rerun_equals_an_uninterrupted_run(
        cli, tmp_path, monkeypatch, corpus, reference, tiny_bert_dir, point):
    inject, committed = WRITE_POINTS[point]
    out = tmp_path / "s.h5"
    command = ["extract", corpus, "-o", out, *SETTINGS, *tiny_args(tiny_bert_dir)]
    before = snapshot(corpus)
    with monkeypatch.context() as patch:
        inject(patch)
        failed = cli(*command)
    reason = "did not read back as written" if "silently" in point else "No space left on device"
    assert_refused(failed, f"writing {out} failed", reason, f"{committed:,} committed rows are kept")
    info = cli("info", out, "--json")
    assert info.code == 0, info.err
    shown = json.loads(info.out)
    assert (shown["rows_done"], shown["complete"]) == (committed, False)
    assert _assert_prefix_equal(out, reference)["n_done"] == committed
    with pytest.raises(featx.FeatxError, match="is incomplete"):
        featx.open_store(out)
    rerun = cli(*command)
    assert rerun.code == 0, rerun.err
    final = _assert_prefix_equal(out, reference)
    assert (final["n_done"], final["complete"]) == (ROWS, True)
    assert snapshot(corpus) == before


def test_too_little_free_space_stops_before_the_window_is_written(cli, tmp_path, monkeypatch, corpus, reference,
                                                                   tiny_bert_dir):
    out = tmp_path / "s.h5"
    command = ["extract", corpus, "-o", out, *SETTINGS, *tiny_args(tiny_bert_dir)]
    import featx.store.writer as writer_module

    calls = []
    real = writer_module.shutil.disk_usage

    def disk_usage(path):
        calls.append(path)
        usage = real(path)
        return usage._replace(free=0) if len(calls) == 2 else usage
    monkeypatch.setattr(writer_module.shutil, "disk_usage", disk_usage)
    assert_refused(cli(*command), "No space left on device", "8 committed rows are kept")
    assert _contents(out)["n_done"] == 8
    monkeypatch.undo()
    assert cli(*command).code == 0
    assert _assert_prefix_equal(out, reference)["complete"]


@pytest.fixture
def small_disk(tmp_path):
    """A real 3 MiB tmpfs (needs root and mount rights; skipped elsewhere)."""
    with tmpfs(tmp_path / "small", "3m") as folder:
        yield folder


def _big_input(tmp_path, rows=20_000):
    return write_lines(tmp_path / "big.txt", [f"row {i} " + "word " * (i % 13) for i in range(rows)])


@pytest.mark.parametrize("guard", ["free-space check on", "free-space check off (HDF5 meets ENOSPC itself)"])
def test_real_full_disk_ends_in_one_line_and_never_a_complete_store(tmp_path, small_disk, tiny_bert_dir, guard):
    source = _big_input(tmp_path)
    out = small_disk / "s.h5"
    args = ["extract", str(source), "-o", str(out), "--pooling", "mean,cls,max", "--model", str(tiny_bert_dir),
            "--dtype", "fp32", "--window-rows", "512", "-q"]
    if guard.startswith("free-space check on"):
        failed = run_subprocess(*args)
    else:
        code = ("import sys, featx.store.writer as w; w.SPACE_MARGIN_BYTES = -(1 << 40); "
                "from featx.cli import main; main(sys.argv[1:])")
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
        failed = type("R", (), {"code": done.returncode, "err": done.stderr, "out": done.stdout})()
    assert_refused(failed, "failed", "No space left on device")
    info = run_subprocess("info", out, "--json")
    if info.code == 0:  # the file survived: it shows committed rows only, and they are right
        shown = json.loads(info.out)
        assert not shown["complete"] and 0 <= shown["rows_done"] < 20_000
        with featx.open_store(out, allow_incomplete=True) as store:
            mean = store.load("mean")[0]
            assert not (np.abs(mean).sum(1) == 0).any()  # no zero rows among the committed
    else:  # or it is refused in one line: never read as if it were whole
        assert_refused(info, str(out))
    if guard.startswith("free-space check on"):
        assert info.code == 0 and 0 < json.loads(info.out)["rows_done"]
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        assert run_subprocess(*args).code == 0
        reference = featx.extract(source, tmp_path / "ref.h5", model=str(tiny_bert_dir), pooling="mean,cls,max",
                                  dtype="fp32", window_rows=512, progress=False)
        with featx.open_store(out) as resumed, reference:
            assert len(resumed) == 20_000
            for name in ("mean", "cls", "max"):
                np.testing.assert_allclose(resumed.load(name)[0], reference.load(name)[0], atol=1e-6)


def test_the_read_back_compares_bytes_so_a_changed_zero_sign_or_nan_payload_is_caught():
    """A window is verified bit for bit: a float comparison calls -0.0 and 0.0 equal, and two NaNs
    with different payloads equal too (equal_nan), so such a changed write passed before."""
    from featx.store.writer import _same_bits

    written = np.array([[1.5, -0.0, np.nan]], dtype=np.float32)
    assert _same_bits(written.copy(), written)
    assert not _same_bits(np.array([[1.5, 0.0, np.nan]], dtype=np.float32), written)
    other_nan = written.copy()
    other_nan.view(np.uint32)[0, 2] ^= 1  # still a NaN, another payload
    assert np.isnan(other_nan[0, 2]) and not _same_bits(other_nan, written)
    assert not _same_bits(written.astype(np.float64), written)  # another dtype
    assert not _same_bits(written[:, :2], written)  # another shape
    strided = np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2]
    assert _same_bits(np.ascontiguousarray(strided), strided)
