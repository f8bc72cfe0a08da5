"""Damaged heads, predictors and checkpoints are refused in one line; saves are all-or-nothing."""
from __future__ import annotations

import json
import random
import shutil
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

import featx
from featx.heads import TrainedHead
from tests.faults.conftest import assert_refused, labelled_csv


@pytest.fixture(scope="module")
def saved(tmp_path_factory, labelled_stores):
    folder = tmp_path_factory.mktemp("heads")
    train = labelled_stores["train"]
    for kind in ("logreg", "mlp"):
        featx.train_head(train, kind=kind, pooling="mean", **({"C": 1.0} if kind == "logreg" else
                                                              {"max_epochs": 3})).save(folder / kind)
    featx.Predictor(TrainedHead.load(folder / "logreg")).save(folder / "predictor")
    return folder


def _meta_edit(fn, head="logreg"):
    def damage(folder):
        path = folder / head / "head.json"
        meta = json.loads(path.read_text())
        fn(meta)
        path.write_text(json.dumps(meta))
    return damage


def _without_checksum_then(fn):
    def damage(folder):
        _meta_edit(lambda m: m.pop("weights_sha256"))(folder)
        fn(folder / "logreg" / "head.safetensors")
    return damage


def _truncate(path):
    path.write_bytes(path.read_bytes()[:40])


def _oversized_header(path):
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", 1 << 40) + data[8:])


def _swap_weights(folder):
    shutil.copy(folder / "mlp" / "head.safetensors", folder / "logreg" / "head.safetensors")


def _grow_classes(meta):
    meta["classes"] = [0, 1, 2, 3]
    meta["class_names"] = ["mid", "neg", "pos", "new"]


HEAD_CASES = {
    "no head.json": (lambda f: (f / "logreg" / "head.json").unlink(), ["is not a head folder (no head.json)"]),
    "head.json not json": (lambda f: (f / "logreg" / "head.json").write_text("{oops"), ["head.json is damaged"]),
    "head.json a list": (lambda f: (f / "logreg" / "head.json").write_text("[]"), ["is not a featx head"]),
    "kind missing": (_meta_edit(lambda m: m.pop("kind")), ["does not describe a head (KeyError"]),
    "classes missing": (_meta_edit(lambda m: m.pop("classes")), ["does not describe a head (KeyError"]),
    "unknown kind": (_meta_edit(lambda m: m.__setitem__("kind", "svm")), ["unknown head 'svm'"]),
    "weights missing": (lambda f: (f / "logreg" / "head.safetensors").unlink(), ["head.safetensors is missing"]),
    "weights from another head": (_swap_weights, ["is not the file head.json was saved with"]),
    "truncated safetensors": (_without_checksum_then(_truncate), ["not a readable safetensors file"]),
    "oversized safetensors header": (_without_checksum_then(_oversized_header), ["not a readable safetensors file"]),
    "absurd mlp width": (_meta_edit(lambda m: m["params"].__setitem__("hidden", 10 ** 12), "mlp"),
                         ["mlp weights do not match its parameters"]),
    "absurd mlp depth": (_meta_edit(lambda m: m["params"].__setitem__("layers", 10 ** 6), "mlp"),
                         ["layer count is not a small integer"]),
    "more classes than weights": (_meta_edit(_grow_classes), ["logreg weights do not fit 4 classes"]),
    "class names out of step": (_meta_edit(lambda m: m["class_names"].pop()),
                                ["classes and class names do not match"]),
    "config edited": (_meta_edit(lambda m: m["config"].__setitem__("normalize", True)),
                      ["does not match its store fingerprint"]),
}


@pytest.mark.parametrize("case", HEAD_CASES, ids=list(HEAD_CASES))
def test_damaged_head_is_refused(cli, tmp_path, saved, labelled_stores, case):
    damage, fragments = HEAD_CASES[case]
    folder = tmp_path / "heads"
    shutil.copytree(saved, folder)
    damage(folder)
    head = folder / ("mlp" if "mlp" in case else "logreg")
    assert_refused(cli("evaluate", head, labelled_stores["test"].path), *fragments)


def _predictor_edit(fn):
    def damage(folder):
        path = folder / "predictor" / "predictor.json"
        meta = json.loads(path.read_text())
        fn(meta, folder)
        path.write_text(json.dumps(meta))
    return damage


PREDICTOR_CASES = {
    "no predictor.json": (lambda f: (f / "predictor" / "predictor.json").unlink(), ["is not a predictor folder"]),
    "predictor.json not json": (lambda f: (f / "predictor" / "predictor.json").write_text("{"),
                                ["predictor.json is damaged"]),
    "head outside the folder": (_predictor_edit(lambda m, f: m.__setitem__("head", "../logreg")),
                                ["names a head outside its folder"]),
    "head at an absolute path": (_predictor_edit(lambda m, f: m.__setitem__("head", str(f / "logreg"))),
                                 ["names a head outside its folder"]),
    "config of another extraction": (_predictor_edit(lambda m, f: m["config"].__setitem__("max_length", 64)),
                                     ["points at another backbone or extraction config"]),
    "config of another backbone": (_predictor_edit(lambda m, f: m["config"].__setitem__("weights_sha256", "0" * 64)),
                                   ["points at another backbone or extraction config"]),
    "its head damaged": (lambda f: (f / "predictor" / "head" / "head.json").write_text("{"), ["head.json is damaged"]),
}


@pytest.mark.parametrize("case", PREDICTOR_CASES, ids=list(PREDICTOR_CASES))
def test_damaged_predictor_is_refused_before_predicting(cli, tmp_path, saved, case):
    damage, fragments = PREDICTOR_CASES[case]
    folder = tmp_path / "heads"
    shutil.copytree(saved, folder)
    damage(folder)
    source = labelled_csv(tmp_path / "in.csv", 6)
    assert_refused(cli("predict", folder / "predictor", source, "-o", tmp_path / "p.jsonl", "-q"), *fragments)
    assert not (tmp_path / "p.jsonl").exists()


def test_predictor_whose_model_folder_now_holds_other_weights_is_refused(tmp_path, tiny_bert_dir, labelled_stores):
    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    store = featx.extract(labelled_stores["train"].path.with_suffix(".csv"), tmp_path / "t.h5", model=str(model),
                          dtype="fp32", progress=False)
    featx.Predictor(featx.train_head(store, C=1.0)).save(tmp_path / "predictor")
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(model / "model.safetensors")
    save_file({k: v + 0.01 for k, v in weights.items()}, model / "model.safetensors")
    with pytest.raises(featx.FeatxError, match="is not the one this head was trained on"):
        featx.Predictor.load(tmp_path / "predictor").predict(["a fine film"])
    del torch


def test_damaged_finetune_checkpoint_is_refused(cli, tmp_path):
    folder = tmp_path / "ft"
    folder.mkdir()
    (folder / "finetune.json").write_text("{not json")
    source = labelled_csv(tmp_path / "in.csv", 6)
    assert_refused(cli("predict", folder, source, "-q"), "finetune.json is damaged")


def test_interrupted_head_save_keeps_the_old_head_whole(tmp_path, monkeypatch, saved):
    folder = tmp_path / "head"
    shutil.copytree(saved / "logreg", folder)
    old = (folder / "head.safetensors").read_bytes()
    new_head = TrainedHead.load(saved / "mlp")
    import featx.heads.trained as heads_module

    def fail_after_weights(*args, **kwargs):
        raise KeyboardInterrupt  # as a Ctrl-C between writing the weights and head.json would
    monkeypatch.setattr(heads_module, "file_sha256", fail_after_weights)
    with pytest.raises(KeyboardInterrupt):
        new_head.save(folder)
    assert (folder / "head.safetensors").read_bytes() == old
    assert TrainedHead.load(folder).kind == "logreg"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head"]  # no .part left behind


_SAVE_LOOP = """
import sys
from featx.heads import TrainedHead
a, b = TrainedHead.load(sys.argv[1]), TrainedHead.load(sys.argv[2])
print("ready", flush=True)
while True:
    a.save(sys.argv[3]); b.save(sys.argv[3])
"""


def test_sigkill_during_repeated_saves_never_leaves_a_mixed_head(tmp_path, saved):
    target = tmp_path / "head"
    weights = {TrainedHead.load(saved / k).estimator.state_arrays()["mean"].tobytes() for k in ("logreg", "mlp")}
    rng = random.Random(0)
    for _ in range(8):
        child = subprocess.Popen([sys.executable, "-c", _SAVE_LOOP, str(saved / "logreg"), str(saved / "mlp"),
                                  str(target)], stdout=subprocess.PIPE)
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.4))
        child.send_signal(signal.SIGKILL)
        child.wait()
        if not target.exists():  # killed between the two renames: both whole folders are beside it
            assert [p for p in tmp_path.iterdir() if p.name.startswith(".head.featx-")]
            continue
        head = TrainedHead.load(target)  # whole, and one of the two heads: never a mix
        assert head.estimator.state_arrays()["mean"].tobytes() in weights
        np.testing.assert_equal(len(head.class_names), 3)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_bert_dir, toy_inputs, tiny_vit_dir, cifar_few):
    """A text and an image fine-tuning checkpoint, one step each."""
    from featx.finetune import FinetuneConfig, finetune

    folder = tmp_path_factory.mktemp("checkpoints")
    finetune(featx.open_input(toy_inputs["train"]), folder / "text", progress=False, device="cpu",
             config=FinetuneConfig(model=str(tiny_bert_dir), max_steps=1, batch_size=8, max_length=16, dtype="fp32"))
    finetune(featx.open_images(cifar_few), folder / "image", progress=False, device="cpu",
             config=FinetuneConfig(model=str(tiny_vit_dir), pooling="cls", max_steps=1, batch_size=4, dtype="fp32"))
    return folder


@pytest.mark.parametrize("modality, damaged", [("text", "classifier.safetensors"),
                                               ("image", "classifier.safetensors"),
                                               ("image", "backbone.safetensors")])
@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_checkpoint_with_damaged_weights_is_one_line(cli, tmp_path, checkpoints, toy_inputs, cifar_few,
                                                       modality, damaged, damage):
    copy = tmp_path / modality
    shutil.copytree(checkpoints / modality, copy)
    if damage == "missing":
        (copy / damaged).unlink()
    else:
        data = (copy / damaged).read_bytes()
        (copy / damaged).write_bytes(data[:len(data) // 2])
    data_path = toy_inputs["dev"] if modality == "text" else cifar_few
    assert_refused(cli("predict", copy, data_path, "-q"), f"{copy}/{damaged} is damaged or does not fit")
