"""Static embeddings (issue 34): `--model static:NAME` distils NAME with model2vec once, caches the
table (sealed and checked like every featx cache), and embeds as model2vec's own encode does; the
stores, shards, heads and predictors are featx's own. NAME here is the tiny random BERT (the
real MiniLM tokenizer, 29,525 tokens to embed: seconds)."""
import os

import numpy as np
import pytest

import featx
from featx.backbones import static
from featx.errors import FeatxError, FeatxWarning
from featx.extraction.shards import shard_path
from featx.store.merge import merge_shards
from tests.conftest import run_cli, write_lines

ODD = ["a fine film", "", "naïve café — 日本語 🙂", "x" * 3000, "the plot , such as it is , never comes together ."]


@pytest.fixture(scope="module")
def static_name(tiny_bert_dir):
    return f"static:{tiny_bert_dir}"


@pytest.fixture(scope="module")
def texts(data_dir):
    lines = (data_dir / "sst2" / "dev.tsv").read_text().splitlines()[1:301]
    return [line.split("\t", 1)[1] for line in lines] + ODD


def test_the_vectors_are_model2vecs_own_encode(static_name, texts, tmp_path):
    from model2vec import StaticModel

    vectors = featx.encode(texts, model=static_name)
    reference = StaticModel.from_pretrained(str(static.distilled_folder(static_name))).encode(texts)
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    # model2vec means in float16; featx in float32: the same vectors to float16 rounding.
    np.testing.assert_allclose(vectors, reference.astype(np.float32), atol=2e-3)
    empty = [i for i, row in enumerate(reference) if not row.any()]  # "" and the unknown long word
    assert empty == [301, 303] and not vectors[empty].any()
    real = [i for i in range(len(texts)) if i not in empty]
    cosine = (vectors[real] * reference[real]).sum(1) / np.linalg.norm(reference[real].astype(np.float32), axis=1)
    assert cosine.min() > 0.9999


def test_a_static_store_records_the_table_and_trains_and_predicts_like_any_other(static_name, texts, tmp_path):
    path = write_lines(tmp_path / "rows.csv", ["text,label"] + [f'"{t}",{"pos" if i % 2 else "neg"}'
                                                                 for i, t in enumerate(texts[:200])])
    store = featx.extract(path, tmp_path / "rows.h5", model=static_name, progress=False)
    config = store.config
    assert config.model == static_name and config.dtype == "fp32" and config.backend is None
    relative = featx.load_backbone(f"static:{os.path.relpath(static_name.removeprefix('static:'))}", device="cpu")
    assert relative.name == static_name  # a local folder is recorded by its absolute path
    assert config.weights_sha256 and config.poolings == ("mean",) and config.normalize
    head = featx.train_head(store, "logreg", C=1.0)
    predictor = featx.Predictor(head)
    saved = predictor.save(tmp_path / "predictor")
    again = featx.Predictor.load(saved)
    X, _ = store.load("mean")
    np.testing.assert_allclose(again.outputs(texts[:20]), head.estimator.predict_proba(X[:20]), atol=1e-5)


def test_shards_merge_into_the_one_process_store(static_name, texts, tmp_path):
    path = write_lines(tmp_path / "rows.txt", texts)
    whole = featx.extract(path, tmp_path / "whole.h5", model=static_name, progress=False)
    for rank in range(2):
        featx.extract(path, tmp_path / "parts.h5", model=static_name, shard=(rank, 2), window_rows=64,
                      progress=False).close()
    merged = featx.open_store(merge_shards([shard_path(tmp_path / "parts.h5", i, 2) for i in range(2)],
                                           tmp_path / "merged.h5"))
    np.testing.assert_array_equal(merged.load("mean")[0], whole.load("mean")[0])
    assert merged.fingerprint == whole.fingerprint


def test_the_cached_table_is_reused_and_a_damaged_one_distilled_again(static_name, monkeypatch):
    folder = static.distilled_folder(static_name)
    first = (folder / "model.safetensors").read_bytes()
    import model2vec.distill

    monkeypatch.setattr(model2vec.distill, "distill", lambda **_: pytest.fail("distilled again"))
    assert static.distilled_folder(static_name) == folder  # served from the cache
    monkeypatch.undo()
    damaged = bytearray(first)
    damaged[-10] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(damaged))
    with pytest.warns(FeatxWarning, match="distilled again"):
        assert static.distilled_folder(static_name) == folder
    assert (folder / "model.safetensors").read_bytes() == first  # distillation is deterministic here


def test_openvino_is_refused_in_one_line_and_a_missing_model2vec_named(static_name, tmp_path, monkeypatch, capsys):
    path = write_lines(tmp_path / "rows.txt", ["a fine film", "dull"])
    code, _, err = run_cli(capsys, "extract", path, "-o", tmp_path / "x.h5", "--model", static_name, "--backend",
                           "openvino")
    assert code == 2 and "a static model is a table lookup" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.h5").exists()
    code, _, err = run_cli(capsys, "extract", path, "-o", tmp_path / "x.h5", "--model", "static:")
    assert code == 2 and "static: needs the sentence model to distil after it" in err
    blocked = write_lines(tmp_path / "a-file", ["not a folder"])
    monkeypatch.setenv("FEATX_CACHE", str(blocked))
    code, _, err = run_cli(capsys, "extract", path, "-o", tmp_path / "x.h5", "--model", static_name)
    assert code == 2 and "set FEATX_CACHE to a writable folder" in err and not (tmp_path / "x.h5").exists()
    assert blocked.read_text() == "not a folder\n"
    monkeypatch.setitem(__import__("sys").modules, "model2vec", None)
    with pytest.raises(FeatxError, match=r'pip install "featx\[static\]"'):
        static.distilled_folder(static_name)
