"""Damaged stores: every reader refuses them in one line instead of reading zeros or garbage."""
from __future__ import annotations

import shutil

import h5py
import pytest

import featx
from featx.extraction.shards import shard_path
from featx.store.merge import merge_shards
from tests.conftest import write_lines
from tests.faults.conftest import assert_refused, labelled_csv, snapshot


@pytest.fixture(scope="module")
def good_store(tmp_path_factory, tiny_backbone):
    folder = tmp_path_factory.mktemp("good")
    path = labelled_csv(folder / "in.csv", 24)
    featx.extract(path, folder / "good.h5", model=tiny_backbone, pooling="mean,cls", dtype="fp32", window_rows=8,
                  progress=False).close()
    return folder / "good.h5"


def _edit(fn):
    def damage(path):
        with h5py.File(path, "r+") as f:
            fn(f)
    return damage


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _set_label(f):
    f["labels"][3] = 7


CASES = {
    "text file": (lambda p: p.write_text("not a store\n"), ["is not an HDF5 file"]),
    "truncated file": (_truncate, ["is damaged: the file is truncated"]),
    "hdf5 without featx attributes": (_edit(lambda f: f.attrs.__delitem__("format")), ["is not a featx store"]),
    "n_rows missing": (_edit(lambda f: f.attrs.__delitem__("n_rows")), ["attribute 'n_rows' is missing"]),
    "config missing": (_edit(lambda f: f.attrs.__delitem__("config")), ["attribute 'config' is missing"]),
    "config not json": (_edit(lambda f: f.attrs.__setitem__("config", "{oops")), ["config attribute cannot be read"]),
    "config edited": (_edit(lambda f: f.attrs.__setitem__(
        "config", f.attrs["config"].replace('"max_length":128', '"max_length":64'))),
        ["its config does not match its fingerprint"]),
    "hardware not json": (_edit(lambda f: f.attrs.__setitem__("hardware", "{")),
                          ["attribute 'hardware' is not valid JSON"]),
    "n_done beyond n_rows": (_edit(lambda f: f.attrs.__setitem__("n_done", 99)), ["n_done 99 does not fit n_rows 24"]),
    "complete with rows missing": (_edit(lambda f: f.attrs.__setitem__("n_done", 8)),
                                   ["n_done 8 does not fit n_rows 24 of a complete store"]),
    "a pooling dataset missing": (_edit(lambda f: f["features"].__delitem__("cls")),
                                  ["its features are not the poolings of its config"]),
    "ids of the wrong length": (_edit(lambda f: (f.__delitem__("ids"), f.create_dataset("ids", data=list(range(5))))),
                                ["dataset 'ids' is missing or not 24 rows long"]),
    "class list not json": (_edit(lambda f: f["labels"].attrs.__setitem__("classes", "[neg")),
                            ["attribute 'classes' is not valid JSON"]),
    "newer store format": (_edit(lambda f: f.attrs.__setitem__("format_version", 99)),
                           ["has store format 99", "upgrade featx"]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_damaged_store_is_refused_by_info_train_and_extract(cli, tmp_path, good_store, tiny_bert_dir, case):
    damage, fragments = CASES[case]
    store = tmp_path / "s.h5"
    shutil.copy(good_store, store)
    damage(store)
    before = snapshot(store)
    assert_refused(cli("info", store), *fragments)
    assert_refused(cli("train", store, "-o", tmp_path / "runs"), *fragments)
    assert not (tmp_path / "runs").exists()
    assert snapshot(store) == before  # readers never "repair" a store


def test_label_outside_the_class_list_is_refused(cli, tmp_path, good_store):
    store = tmp_path / "s.h5"
    shutil.copy(good_store, store)
    _edit(_set_label)(store)
    assert_refused(cli("train", store, "-o", tmp_path / "runs"), "a label is outside its 2 classes")


def test_incomplete_store_is_refused_by_train_but_shown_by_info(cli, tmp_path, good_store):
    store = tmp_path / "s.h5"
    shutil.copy(good_store, store)
    _edit(lambda f: (f.attrs.__setitem__("complete", False), f.attrs.__setitem__("n_done", 16)))(store)
    assert_refused(cli("train", store, "-o", tmp_path / "runs"), "is incomplete (16 of 24 rows)")
    shown = cli("info", store)
    assert shown.code == 0 and "16 of 24  (INCOMPLETE)" in shown.out


@pytest.fixture
def merged(tmp_path, tiny_backbone):
    path = write_lines(tmp_path / "in.csv", ["text,label"] + [f"row {i},{'ab'[i % 2]}" for i in range(40)])
    for i in range(2):
        featx.extract(path, tmp_path / "s.h5", model=tiny_backbone, dtype="fp32", window_rows=8, progress=False,
                      shard=(i, 2)).close()
    return merge_shards([shard_path(tmp_path / "s.h5", i, 2) for i in range(2)], tmp_path / "merged.h5"), path


SHARD_FAULTS = {
    "deleted": (lambda shard, *_: shard.unlink(), "which is missing"),
    "incomplete": (lambda shard, *_: _edit(lambda f: f.attrs.__setitem__("complete", False))(shard),
                   "which is incomplete"),
    "replaced by another extraction": (
        lambda shard, source, backbone: featx.extract(source, shard, model=backbone, dtype="fp32", window_rows=8,
                                                      normalize=True, overwrite=True, progress=False).close(),
        "fingerprints differ"),
    "not a store any more": (lambda shard, *_: shard.write_text("gone\n"), "which cannot be read"),
}


@pytest.mark.parametrize("fault", SHARD_FAULTS, ids=list(SHARD_FAULTS))
def test_virtual_merged_store_checks_its_shards(cli, tmp_path, tiny_backbone, merged, fault):
    out, source = merged
    damage, fragment = SHARD_FAULTS[fault]
    with featx.open_store(out) as store:
        assert len(store) == 40  # whole before the fault
    damage(shard_path(tmp_path / "s.h5", 1, 2), source, tiny_backbone)
    assert_refused(cli("info", out), "merged.h5 reads rows from", fragment)
    assert_refused(cli("train", out, "-o", tmp_path / "runs"), fragment)
    with pytest.raises(featx.FeatxError, match=fragment):
        featx.open_store(out)
