"""Sharded extraction and merging: equal to one process, and strict about what it joins."""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

import featx
from featx.errors import FeatxError
from featx.extraction.shards import shard_from_env, shard_path, shard_rows
from featx.store.merge import merge_shards
from tests.conftest import write_lines


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    lines = ["id,text,label"] + [f"r{i},{'good ' * (i % 7)}film number {i},{'pos' if i % 3 else 'neg'}"
                                 for i in range(203)]
    return write_lines(folder / "corpus.csv", lines)


def extract_shard(corpus, out, tiny_backbone, shard=None):
    return featx.extract(corpus, out, model=tiny_backbone, id_column="id", pooling="mean,max", dtype="fp32",
                         window_rows=16, progress=False, shard=shard)


def test_shard_rows_cut_whole_windows_and_cover_everything():
    parts = [shard_rows(203, 16, i, 3) for i in range(3)]
    assert parts == [(0, 64), (64, 64), (128, 75)]
    with pytest.raises(FeatxError, match="gets no rows"):
        shard_rows(20, 16, 0, 3)
    assert shard_path("cache/train.h5", 1, 3).name == "train.shard-1-of-3.h5"


def test_merged_shards_equal_one_process(corpus, tiny_backbone, tmp_path):
    with extract_shard(corpus, tmp_path / "one.h5", tiny_backbone) as whole:
        reference = {p: whole.load(p)[0] for p in ("mean", "max")}
        ids, labels, hashes, truncated = whole.ids, whole.labels, whole.content_sha256, whole.truncated
    for i in range(3):
        extract_shard(corpus, tmp_path / "s.h5", tiny_backbone, shard=(i, 3)).close()
    for copy in (False, True):
        out = tmp_path / f"merged-{copy}.h5"
        merge_shards([shard_path(tmp_path / "s.h5", i, 3) for i in (2, 0, 1)], out, copy=copy)
        with featx.open_store(out) as merged:
            assert len(merged) == 203 and merged.complete and merged.classes == ("neg", "pos")
            assert merged.ids.tolist() == ids.tolist() and np.array_equal(merged.labels, labels)
            assert np.array_equal(merged.content_sha256, hashes) and np.array_equal(merged.truncated, truncated)
            for p in ("mean", "max"):
                np.testing.assert_array_equal(merged.load(p)[0], reference[p])
        with h5py.File(out, "r") as f:
            assert f["features/mean"].is_virtual is not copy


def test_virtual_merge_survives_moving_the_folder(corpus, tiny_backbone, tmp_path):
    for i in range(2):
        extract_shard(corpus, tmp_path / "a" / "s.h5", tiny_backbone, shard=(i, 2)).close()
    merge_shards([shard_path(tmp_path / "a" / "s.h5", i, 2) for i in range(2)], tmp_path / "a" / "s.h5")
    shutil.move(tmp_path / "a", tmp_path / "b")
    with featx.open_store(tmp_path / "b" / "s.h5") as moved:
        assert moved.load("mean")[0].shape == (203, 32) and np.isfinite(moved.load("mean")[0]).all()


def test_merge_refuses_missing_duplicated_incomplete_and_foreign_shards(corpus, tiny_backbone, tmp_path):
    for i in range(3):
        extract_shard(corpus, tmp_path / "s.h5", tiny_backbone, shard=(i, 3)).close()
    parts = [shard_path(tmp_path / "s.h5", i, 3) for i in range(3)]
    with pytest.raises(FeatxError, match="a shard of 3 is missing"):
        merge_shards([parts[0], parts[2]], tmp_path / "m.h5")
    with pytest.raises(FeatxError, match="a shard of 3 is missing"):
        merge_shards(parts[:2], tmp_path / "m.h5")
    with pytest.raises(FeatxError, match="given twice"):
        merge_shards([parts[0], parts[0], parts[1], parts[2]], tmp_path / "m.h5")
    foreign = featx.extract(corpus, tmp_path / "f.h5", model=tiny_backbone, id_column="id", pooling="mean",
                            dtype="fp32", window_rows=16, progress=False, shard=(1, 3))
    foreign.close()
    with pytest.raises(FeatxError, match="another config"):
        merge_shards([parts[0], shard_path(tmp_path / "f.h5", 1, 3), parts[2]], tmp_path / "m.h5")
    with h5py.File(parts[1], "r+") as f:
        f.attrs["complete"] = False
    with pytest.raises(FeatxError, match="incomplete"):
        merge_shards(parts, tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_shard_taken_from_torchrun_or_slurm_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"):
        monkeypatch.delenv(name, raising=False)
    assert shard_from_env() == (None, None)
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert shard_from_env() == ((3, 8), 1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert shard_from_env() == ((1, 2), 1)


def test_torchrun_two_processes_with_merge_equals_one_process(corpus, tiny_bert_dir, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               "-m", "featx", "extract", str(corpus), "-o", str(tmp_path / "t.h5"), "--model", str(tiny_bert_dir),
               "--id-column", "id", "--pooling", "mean", "--dtype", "fp32", "--window-rows", "16", "--merge", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    subprocess.run(command, env=env, check=True, timeout=300, capture_output=True)
    reference = featx.extract(corpus, tmp_path / "one.h5", model=str(tiny_bert_dir), id_column="id",
                              pooling="mean", dtype="fp32", window_rows=16, progress=False)
    with reference, featx.open_store(tmp_path / "t.h5") as merged:
        assert merged.ids.tolist() == reference.ids.tolist()
        assert np.array_equal(merged.labels, reference.labels)
        np.testing.assert_allclose(merged.load("mean")[0], reference.load("mean")[0], atol=1e-5)


def test_a_small_input_splits_as_many_ways_as_it_has_rows_with_default_windows(tmp_path, tiny_backbone):
    path = write_lines(tmp_path / "in.csv", ["text"] + [f"row {i} " + "word " * (i % 9) for i in range(3000)])
    for i in range(2):  # 3,000 rows are one default window: this refused before ("shard 0/2 gets no rows")
        featx.extract(path, tmp_path / "s.h5", model=tiny_backbone, dtype="fp32", shard=(i, 2),
                      progress=False).close()
    merged = merge_shards([shard_path(tmp_path / "s.h5", i, 2) for i in range(2)], tmp_path / "m.h5")
    with featx.open_store(merged) as store, featx.extract(path, tmp_path / "one.h5", model=tiny_backbone,
                                                          dtype="fp32", window_rows=1500, progress=False) as one:
        assert len(store) == 3000 and store.info()["input"] == one.info()["input"]
        np.testing.assert_array_equal(store.load("mean")[0], one.load("mean")[0])
    with pytest.raises(FeatxError, match="gets no rows"):  # fewer rows than shards still cannot split
        featx.extract(write_lines(tmp_path / "one-row.csv", ["text", "a"]), tmp_path / "t.h5", model=tiny_backbone,
                      shard=(0, 2), progress=False)
