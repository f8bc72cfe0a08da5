"""Model files are hashed once per change, not once per run (featx.backbones.hashing)."""
import hashlib
import json
import os
import shutil

import featx
from featx.backbones import hashing


def _reference(root, files):
    digest = hashlib.sha256()
    for file in sorted(files):
        digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def test_a_second_load_reads_the_hash_from_the_cache_and_a_rewrite_is_noticed(tmp_path, tiny_bert_dir, monkeypatch):
    monkeypatch.setenv("FEATX_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    weights = sorted(model.glob("*.safetensors"))
    first = featx.load_backbone(str(model), device="cpu").weights_sha256
    assert first == _reference(model, weights)  # the definition every store's fingerprint uses
    entries = json.loads((tmp_path / "cache" / "file-hashes.json").read_text()).values()
    assert first in [entry["sha256"] for entry in entries]

    hashing._MEMORY.clear()  # as in a new process: only the cache file is left
    hashed = count_full_hashes(monkeypatch)
    assert hashing.files_sha256(model, weights) == first and hashed == []

    # Rewrite the weights in place with other bytes, then restore size and mtime: still noticed (ctime moved).
    stat = weights[0].stat()
    data = bytearray(weights[0].read_bytes())
    data[-1] ^= 0xFF
    weights[0].write_bytes(bytes(data))
    os.utime(weights[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = hashing.files_sha256(model, weights)
    assert changed != first and changed == _reference(model, weights) and hashed


def count_full_hashes(monkeypatch) -> list:
    """A list that gets one item each time featx reads every byte of a model's files."""
    hashed = []
    real = hashing._full_sha256

    def counting(root, files):
        hashed.append(files)
        return real(root, files)
    monkeypatch.setattr(hashing, "_full_sha256", counting)
    return hashed


def test_an_unwritable_or_damaged_cache_only_costs_time(tmp_path, tiny_bert_dir, monkeypatch):
    (tmp_path / "cache").write_text("not a folder")  # the cache folder cannot be made
    monkeypatch.setenv("FEATX_CACHE", str(tmp_path / "cache"))
    hashing._MEMORY.clear()
    weights = sorted(tiny_bert_dir.glob("*.safetensors"))
    assert hashing.files_sha256(tiny_bert_dir, weights) == _reference(tiny_bert_dir, weights)
    monkeypatch.setenv("FEATX_CACHE", str(tmp_path / "damaged"))
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "file-hashes.json").write_text("{not json")
    hashing._MEMORY.clear()
    assert hashing.files_sha256(tiny_bert_dir, weights) == _reference(tiny_bert_dir, weights)
