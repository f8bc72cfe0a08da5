"""Path confinement: featx writes only the output the user named and never touches an input."""
from __future__ import annotations

import os

import h5py
import pytest

import featx
from featx.extraction.shards import shard_path
from tests.conftest import write_lines
from tests.faults.conftest import assert_refused, labelled_csv, snapshot, tiny_args


@pytest.fixture
def source(tmp_path):
    return labelled_csv(tmp_path / "in.csv")


def _extract(cli, source, out, model, *extra):
    return cli("extract", source, "-o", out, *tiny_args(model), *extra)


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "with --overwrite"])
def test_output_that_is_the_input_is_refused(cli, tmp_path, source, tiny_bert_dir, overwrite):
    before = snapshot(source)
    assert_refused(_extract(cli, source, source, tiny_bert_dir, *overwrite), "is the input")
    assert snapshot(source) == before


@pytest.mark.parametrize("link", ["hard link", "symlink"])
def test_output_that_is_a_link_to_the_input_is_refused(cli, tmp_path, source, tiny_bert_dir, link):
    alias = tmp_path / "alias.h5"
    (os.link if link == "hard link" else os.symlink)(source, alias)
    before = snapshot(source)
    assert_refused(_extract(cli, source, alias, tiny_bert_dir, "--overwrite"), "is the input")
    assert snapshot(source) == before


def test_overwrite_replaces_only_featx_stores(cli, tmp_path, source, tiny_bert_dir):
    text = write_lines(tmp_path / "notes.h5", ["my notes"])
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = [1, 2, 3]
    before = snapshot(text, other)
    assert_refused(_extract(cli, source, text, tiny_bert_dir, "--overwrite"),
                   "is not a featx store: --overwrite only replaces featx stores")
    assert_refused(_extract(cli, source, other, tiny_bert_dir, "--overwrite"), "is an HDF5 file but not a featx store")
    assert_refused(_extract(cli, source, text, tiny_bert_dir), "is not an HDF5 file")
    assert snapshot(text, other) == before
    store = tmp_path / "s.h5"
    assert _extract(cli, source, store, tiny_bert_dir).code == 0
    assert _extract(cli, source, store, tiny_bert_dir, "--normalize", "--overwrite").code == 0
    with featx.open_store(store) as opened:
        assert opened.config.normalize


def test_output_that_is_a_folder_or_under_a_file_is_refused(cli, tmp_path, source, tiny_bert_dir):
    (tmp_path / "dir.h5").mkdir()
    assert_refused(_extract(cli, source, tmp_path / "dir.h5", tiny_bert_dir), "is a folder: name a file inside it")
    assert_refused(_extract(cli, source, source / "s.h5", tiny_bert_dir), f"{source} is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.h5", "in.csv"]


def test_bench_suite_names_cannot_lead_outside_the_results_folder(cli, tmp_path, source):
    results = tmp_path / "deep" / "results"
    for table in ('[finetune."../../../escaped"]\nepochs = 1\n', '[heads]\nspecs = ["logreg:class_weight=../../x"]\n'):
        suite = tmp_path / "s.toml"
        suite.write_text(f'[data]\ntrain = "{source}"\nval = "{source}"\ntest = "{source}"\n{table}')
        assert_refused(cli("bench", suite, "-o", results), "is not a plain name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "s.toml"]


def test_predict_output_rules(cli, tmp_path, labelled_stores):
    head = featx.train_head(labelled_stores["train"], C=1.0)
    featx.Predictor(head).save(tmp_path / "model")
    source = labelled_csv(tmp_path / "in.csv", 6)
    before = snapshot(source)
    assert_refused(cli("predict", tmp_path / "model", source, "-o", source, "-q"), "is the input")
    assert snapshot(source) == before
    done = cli("predict", tmp_path / "model", source, "-o", tmp_path / "new" / "deeper" / "p.jsonl", "-q")
    assert done.code == 0, done.err
    assert len((tmp_path / "new" / "deeper" / "p.jsonl").read_text().splitlines()) == 6


def test_merge_output_rules(cli, tmp_path, tiny_backbone):
    path = write_lines(tmp_path / "in.csv", ["text"] + [f"row {i}" for i in range(20)])
    shards = []
    for i in range(2):
        featx.extract(path, tmp_path / "s.h5", model=tiny_backbone, dtype="fp32", window_rows=8, shard=(i, 2),
                      progress=False).close()
        shards.append(shard_path(tmp_path / "s.h5", i, 2))
    before = snapshot(*shards)
    assert_refused(cli("merge", *shards, "-o", shards[0]), "is the shard")
    notes = write_lines(tmp_path / "notes.txt", ["keep me"])
    assert_refused(cli("merge", *shards, "-o", notes), "is not a featx store")
    assert snapshot(*shards) == before and notes.read_text() == "keep me\n"


def test_train_and_finetune_outputs_under_a_file_are_refused(cli, tmp_path, labelled_stores, tiny_bert_dir):
    blocker = write_lines(tmp_path / "file", ["x"])
    assert_refused(cli("train", labelled_stores["train"].path, "-o", blocker / "runs"), f"{blocker} is a file")
    source = labelled_csv(tmp_path / "in.csv", 8)
    assert_refused(cli("finetune", source, "-o", blocker, "--model", tiny_bert_dir, "--max-steps", "1", "-q"),
                   "is a file: name a folder")
    assert blocker.read_text() == "x\n"
