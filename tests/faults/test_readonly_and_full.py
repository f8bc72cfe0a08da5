"""Read-only output folders and full disks outside extraction: one line, and no partial file left."""
from __future__ import annotations

import errno
import os
import subprocess

import h5py
import numpy as np
import pytest

import featx
from featx.extraction.shards import shard_path
from tests.conftest import write_lines
from tests.faults.conftest import assert_refused, labelled_csv, run_subprocess, snapshot, tiny_args, tmpfs


@pytest.fixture
def readonly(tmp_path):
    """A read-only folder that root cannot write either: a tmpfs mounted read-only (or, for a
    non-root user, a folder without write permission)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def _make_readonly(folder):
    if os.geteuid() == 0:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)


@pytest.fixture
def shards(tmp_path, tiny_backbone):
    path = write_lines(tmp_path / "in.csv", ["text,label"] + [f"row {i},{'ab'[i % 2]}" for i in range(20)])
    for i in range(2):
        featx.extract(path, tmp_path / "s.h5", model=tiny_backbone, dtype="fp32", window_rows=8, shard=(i, 2),
                      progress=False).close()
    return [shard_path(tmp_path / "s.h5", i, 2) for i in range(2)]


@pytest.fixture
def predictor(tmp_path, labelled_stores):
    featx.Predictor(featx.train_head(labelled_stores["train"], C=1.0)).save(tmp_path / "model")
    return tmp_path / "model"


def test_readonly_output_folders_give_one_line(cli, tmp_path, readonly, tiny_bert_dir, labelled_stores, shards,
                                               predictor):
    source = labelled_csv(tmp_path / "in-ro.csv")
    _make_readonly(readonly)
    reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    cases = [
        (["extract", source, "-o", readonly / "s.h5", *tiny_args(tiny_bert_dir)], "cannot write beside"),
        (["extract", source, "-o", tmp_path / "ok.h5", "--cache-dir", readonly / "cache", *tiny_args(tiny_bert_dir)],
         "cannot create the cache folder"),
        (["train", labelled_stores["train"].path, "-o", readonly / "runs"], "cannot create the results folder"),
        (["merge", *shards, "-o", readonly / "m.h5"], "writing"),
        (["merge", *shards, "-o", readonly / "m.h5", "--copy"], "writing"),
        (["predict", predictor, source, "-o", readonly / "p.jsonl", "-q"], "writing"),
        (["finetune", source, "-o", readonly / "ft", "--model", tiny_bert_dir, "--max-steps", "1", "-q"], "writing"),
    ]
    for args, fragment in cases:
        assert_refused(cli(*args), fragment, reason)
    assert os.listdir(readonly) == []


def test_a_complete_store_in_a_readonly_folder_is_reused_without_writing(cli, tmp_path, readonly, tiny_bert_dir):
    source = labelled_csv(tmp_path / "in.csv")
    assert cli("extract", source, "-o", readonly / "s.h5", *tiny_args(tiny_bert_dir)).code == 0
    (readonly / "s.h5.lock").unlink()
    _make_readonly(readonly)
    before = snapshot(readonly)
    again = cli("extract", source, "-o", readonly / "s.h5", *tiny_args(tiny_bert_dir))
    assert again.code == 0, again.err
    assert snapshot(readonly) == before


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_during_merge_leaves_no_file(cli, tmp_path, monkeypatch, shards):
    original = h5py.Dataset.__setitem__
    calls = []

    def setitem(self, key, value):
        calls.append(self.name)
        if len(calls) == 3:
            _enospc()
        return original(self, key, value)
    monkeypatch.setattr(h5py.Dataset, "__setitem__", setitem)
    before = snapshot(*shards)
    assert_refused(cli("merge", *shards, "-o", tmp_path / "m.h5", "--copy"), "writing", "No space left on device",
                   "nothing was written")
    assert not (tmp_path / "m.h5").exists() and not list(tmp_path.glob(".m.h5.featx-*"))
    assert snapshot(*shards) == before


def _train_args(stores, runs):
    """One logreg head with the dev store for validation (so the only line is the fault's)."""
    return [stores["train"].path, "-o", runs, "--head", "logreg:C=1", "--val", stores["dev"].path]


def test_full_disk_while_saving_heads_leaves_no_partial_head_or_results(cli, tmp_path, monkeypatch, labelled_stores):
    import featx.heads.trained as heads_module

    monkeypatch.setattr(heads_module, "save_tensors", _enospc)
    runs = tmp_path / "runs"
    assert_refused(cli("train", *_train_args(labelled_stores, runs)),
                   "No space left on device")
    leftovers = [p.relative_to(runs).as_posix() for p in runs.rglob("*")]
    assert leftovers == ["heads"] or leftovers == [], leftovers


def test_full_disk_while_writing_results_keeps_the_old_results(cli, tmp_path, monkeypatch, labelled_stores):
    runs = tmp_path / "runs"
    assert cli("train", *_train_args(labelled_stores, runs)).code == 0
    before = snapshot(runs)
    import featx.atomic as atomic_module

    monkeypatch.setattr(atomic_module, "fsync_path", _enospc)
    assert_refused(cli("train", *_train_args(labelled_stores, runs)),
                   "No space left on device")
    assert snapshot(runs) == before  # every file is the old one, whole
    assert not [p for p in runs.rglob("*") if ".featx-" in p.name]


def test_full_disk_during_predict_leaves_no_output(cli, tmp_path, monkeypatch, predictor):
    import featx.predictor as predictor_module

    real = predictor_module._write_rows

    def write_some_then_fail(predictor_, source, summary, sink, bar):
        sink.write('{"id": 0}\n')
        _enospc()
    monkeypatch.setattr(predictor_module, "_write_rows", write_some_then_fail)
    source = labelled_csv(tmp_path / "in.csv", 6)
    out = tmp_path / "p.jsonl"
    assert_refused(cli("predict", predictor, source, "-o", out, "-q"), "No space left on device", "nothing was written")
    assert not out.exists() and not list(tmp_path.glob(".p.jsonl.featx-*"))
    monkeypatch.setattr(predictor_module, "_write_rows", real)
    assert cli("predict", predictor, source, "-o", out, "-q").code == 0


def test_full_disk_while_caching_keeps_the_store_and_the_cache_usable(cli, tmp_path, monkeypatch, tiny_bert_dir):
    source = labelled_csv(tmp_path / "in.csv", 24)
    original = h5py.Dataset.__setitem__
    cache_writes = []

    def setitem(self, key, value):
        if "cache" in self.file.filename:
            cache_writes.append(self.name)
            if len(cache_writes) == 3:  # the second window's vectors
                _enospc()
        return original(self, key, value)
    monkeypatch.setattr(h5py.Dataset, "__setitem__", setitem)
    args = ["extract", source, "-o", tmp_path / "s.h5", "--cache-dir", tmp_path / "cache", *tiny_args(tiny_bert_dir)]
    assert_refused(cli(*args), "writing the cache", "No space left on device")
    monkeypatch.undo()
    assert cli(*args).code == 0
    reference = featx.extract(source, tmp_path / "ref.h5", model=str(tiny_bert_dir), dtype="fp32", window_rows=8,
                              batch_tokens=64, progress=False)
    with featx.open_store(tmp_path / "s.h5") as store, reference:
        import numpy as np

        np.testing.assert_allclose(store.load("mean")[0], reference.load("mean")[0], atol=1e-6)


def test_real_full_disk_during_merge_copy_is_one_line_and_leaves_nothing(tmp_path, tiny_bert_dir):
    """HDF5 with a chunk cache met the full disk while closing the file and crashed the process."""
    source = write_lines(tmp_path / "in.csv", ["text,label"] + [f"row {i} " + "word " * (i % 9) + f",{'ab'[i % 2]}"
                                                              for i in range(3000)])
    for i in range(2):
        featx.extract(source, tmp_path / "s.h5", model=str(tiny_bert_dir), dtype="fp32", shard=(i, 2), pooling="mean,cls,max",
                      progress=False).close()
    shards = [shard_path(tmp_path / "s.h5", i, 2) for i in range(2)]
    before = snapshot(*shards)
    with tmpfs(tmp_path / "full", "600k") as full:
        failed = run_subprocess("merge", *shards, "-o", full / "m.h5", "--copy")
        assert_refused(failed, "writing", "No space left on device", "nothing was written")
        assert os.listdir(full) == []
    assert snapshot(*shards) == before


def test_real_full_disk_while_saving_a_head_is_one_line_and_leaves_nothing(cli, tmp_path, labelled_stores):
    """safetensors raised its own SafetensorError for ENOSPC, which escaped as a traceback."""
    with tmpfs(tmp_path / "full", "64k") as full:
        assert_refused(cli("train", labelled_stores["train"].path, "-o", full / "runs", "--head", "knn", "--val",
                           labelled_stores["dev"].path),
                       "writing", "No space left on device", "nothing was written")
        assert not [p for p in full.rglob("*") if ".featx-" in p.name]
        for head in (full / "runs" / "heads").iterdir():  # a head saved before the disk filled is whole
            assert featx.TrainedHead.load(head).estimator.classes_.size == 3



def test_real_full_disk_during_a_states_extraction_keeps_committed_windows_and_resumes(tmp_path, tiny_bert_dir):
    """Token states grow the store by far more than vectors: the disk fills part-way, the rows
    committed before stay readable, and once there is room the rerun ends with the store an
    uninterrupted run writes."""
    source = write_lines(tmp_path / "in.txt", [f"row {i} " + "word " * (i % 31) for i in range(1500)])
    args = ["--cache-layer", "1", "--cache-dtype", "float32", *tiny_args(tiny_bert_dir)]
    assert run_subprocess("extract", source, "-o", tmp_path / "whole.h5", *args).code == 0
    with tmpfs(tmp_path / "full", "3m") as full:  # the states' 1 MiB chunks fill it a few hundred rows in
        failed = run_subprocess("extract", source, "-o", full / "s.h5", *args)
        assert_refused(failed, "No space left on device", "committed rows are kept")
        with featx.open_store(full / "s.h5", allow_incomplete=True) as partial:
            committed = len(partial)
            assert 0 < committed < 1500
            states = partial.token_states()
            assert len(states) == committed and states.values.shape[0] == int(states.lengths.sum())
        assert subprocess.run(["mount", "-o", "remount,size=16m", str(full)], capture_output=True).returncode == 0
        assert run_subprocess("extract", source, "-o", full / "s.h5", *args).code == 0
        with h5py.File(full / "s.h5", "r") as resumed, h5py.File(tmp_path / "whole.h5", "r") as whole:
            for name in ("states", "state_starts", "state_lengths", "features/mean"):
                assert np.array_equal(resumed[name][()], whole[name][()]), name
