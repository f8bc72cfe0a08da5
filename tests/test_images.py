"""Images end to end: folders, zips, tables and arrays; a tiny random ViT; CIFAR-sized JPEGs made at test time."""
import csv
import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

import featx
from featx.data.images import ArraySource, open_images
from featx.errors import FeatxError
from tests.conftest import CLASSES, min_cosine, run_cli


def zip_of(folder: Path, path: Path, prefix: str = "part/", extra: dict | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*.jpg")):
            archive.write(file, prefix + file.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            archive.writestr(prefix + name, data)
    return path


def extract(source, out, model, **options):
    return featx.extract(source, out, model=str(model), dtype="fp32", progress=False, **options)


def test_folder_zip_and_table_give_the_same_rows_and_vectors(tmp_path, cifar_few, tiny_vit_dir):
    archive = zip_of(cifar_few, tmp_path / "few.zip")
    table = tmp_path / "table" / "images.csv"
    table.parent.mkdir()
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for file in sorted(cifar_few.rglob("*.jpg")):
            writer.writerow([f"../{cifar_few.name}/{file.relative_to(cifar_few).as_posix()}", file.parent.name])
    (tmp_path / cifar_few.name).symlink_to(cifar_few)
    stores = [extract(cifar_few, tmp_path / "folder.h5", tiny_vit_dir, pooling="cls,mean,pooler"),
              extract(f"{archive}:part", tmp_path / "zip.h5", tiny_vit_dir, pooling="cls,mean,pooler"),
              extract(open_images(table, image_column="path"), tmp_path / "table.h5", tiny_vit_dir,
                      pooling="cls,mean,pooler")]
    folder_store, zip_store, table_store = stores
    assert len(folder_store) == 12 and folder_store.classes == CLASSES
    expected_ids = [f.relative_to(cifar_few).as_posix() for f in sorted(cifar_few.rglob("*.jpg"))]
    assert folder_store.ids.tolist() == expected_ids  # relative paths, in sorted order
    assert folder_store.ids.tolist() == zip_store.ids.tolist()
    assert folder_store.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4 == table_store.labels.tolist()
    for name in ("cls", "mean", "pooler"):
        assert folder_store.dim == 32
        assert np.array_equal(folder_store.load(name)[0], zip_store.load(name)[0])
        assert np.array_equal(folder_store.load(name)[0], table_store.load(name)[0])
    assert not np.allclose(folder_store.load("cls")[0], folder_store.load("mean")[0])
    assert folder_store.config.modality == "image" and "image_mean" in folder_store.config.preprocess
    assert folder_store.skipped.tolist() == [0] * 12


def test_arrays_equal_the_same_pixels_from_lossless_files(tmp_path, tiny_vit_dir):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(5)]
    for i, array in enumerate(arrays):
        (tmp_path / "pngs" / "a").mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(tmp_path / "pngs" / "a" / f"{i}.png")
    from_files = extract(tmp_path / "pngs", tmp_path / "files.h5", tiny_vit_dir)
    from_arrays = extract(ArraySource(arrays, labels=["a"] * 5), tmp_path / "arrays.h5", tiny_vit_dir)
    assert np.array_equal(from_files.load()[0], from_arrays.load()[0])
    pil = extract(ArraySource([Image.fromarray(a) for a in arrays]), tmp_path / "pil.h5", tiny_vit_dir)
    assert np.array_equal(pil.load()[0], from_arrays.load()[0]) and pil.labels is None


def test_exif_orientation_is_applied(tmp_path, tiny_vit_dir):
    rng = np.random.default_rng(1)
    upright = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    (tmp_path / "exif").mkdir()
    Image.fromarray(upright).save(tmp_path / "exif" / "a.png")
    stored = Image.fromarray(np.rot90(upright, k=1))  # stored turned; EXIF 6 says: rotate 270 to view
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "exif" / "b.png", exif=exif)
    store = extract(tmp_path / "exif", tmp_path / "exif.h5", tiny_vit_dir)
    vectors = store.load()[0]
    assert np.array_equal(vectors[0], vectors[1])


def test_a_corrupt_jpeg_is_one_line_or_a_counted_skip(capsys, tmp_path, cifar_few, tiny_vit_dir):
    good = (cifar_few / "cat").glob("*.jpg").__next__().read_bytes()
    archive = zip_of(cifar_few, tmp_path / "bad.zip", extra={"cat/broken.jpg": good[: len(good) // 3] + b"\0" * 50,
                                                             "cat/notes.txt": b"not an image, not a row"})
    out = tmp_path / "bad.h5"
    code, _, err = run_cli(capsys, "extract", f"{archive}:part", "-o", str(out), "--model", str(tiny_vit_dir),
                           "--dtype", "fp32", "-q")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "cannot decode image" in err and "cat/broken.jpg" in err and "--skip-bad" in err
    code, _, err = run_cli(capsys, "extract", f"{archive}:part", "-o", str(out), "--model", str(tiny_vit_dir),
                           "--dtype", "fp32", "--skip-bad")
    assert code == 0 and "1 unreadable rows skipped" in err
    with featx.open_store(out) as store:
        ids = store.ids.tolist()
        assert len(ids) == 13 and "cat/notes.txt" not in ids  # 12 images + the broken one, in its place
        broken = ids.index("cat/broken.jpg")
        assert store.skipped.tolist() == [int(i == broken) for i in range(13)]
        assert np.isnan(store.features()[broken]).all() and not np.isnan(np.delete(store.features()[:], broken, 0)).any()
        X, y = store.load()
        assert X.shape == (12, 32) and len(y) == 12
        assert store.info()["skipped_rows"] == 1
    code, out_text, _ = run_cli(capsys, "info", str(out))
    assert "1 unreadable, skipped" in out_text
    with featx.open_store(out) as store:
        head = featx.train_head(store, "logreg", seed=0)  # a NaN row would make scikit-learn refuse to fit
        assert len(head.predict(store)) == 12  # the skipped row is left out, not fed
        assert 0 <= head.evaluate(store)["accuracy"] <= 1


def test_interrupted_then_resumed_equals_an_uninterrupted_run(tmp_path, cifar_few, tiny_vit_dir):
    reference = extract(cifar_few, tmp_path / "ref.h5", tiny_vit_dir, window_rows=2)

    class Interrupted(RuntimeError):
        pass

    source = open_images(cifar_few)
    flaky = replace(source)
    calls = {"n": 0}

    def records(summary, start=0):
        for record in source.records(summary, start):
            calls["n"] += 1
            if calls["n"] == 7:
                raise Interrupted
            yield record

    object.__setattr__(flaky, "records", records)
    with pytest.raises(Interrupted):
        extract(flaky, tmp_path / "run.h5", tiny_vit_dir, window_rows=2)
    with h5py.File(tmp_path / "run.h5") as f:
        assert 2 <= int(f.attrs["n_done"]) < 12 and not f.attrs["complete"]
    resumed = extract(open_images(cifar_few), tmp_path / "run.h5", tiny_vit_dir, window_rows=2)
    for name in ("ids", "labels", "content_sha256", "features/cls", "skipped"):
        with h5py.File(tmp_path / "run.h5") as a, h5py.File(reference.path) as b:
            assert np.array_equal(a[name][:], b[name][:]), name
    assert resumed.fingerprint == reference.fingerprint


def test_preprocessing_is_fingerprinted_and_a_changed_image_is_a_new_input(tmp_path, cifar_few, tiny_vit_dir):
    import shutil

    base = extract(cifar_few, tmp_path / "a.h5", tiny_vit_dir)
    other_model = tmp_path / "vit2"
    shutil.copytree(tiny_vit_dir, other_model)
    settings = json.loads((other_model / "preprocessor_config.json").read_text())
    settings["image_mean"] = [0.4, 0.4, 0.4]
    (other_model / "preprocessor_config.json").write_text(json.dumps(settings))
    changed = extract(cifar_few, tmp_path / "b.h5", other_model)
    assert changed.fingerprint != base.fingerprint
    with pytest.raises(FeatxError, match="made with another extraction config"):
        extract(cifar_few, tmp_path / "a.h5", other_model)
    images = tmp_path / "copy"
    shutil.copytree(cifar_few, images)
    before = open_images(images).scan().sha256
    victim = next((images / "ship").glob("*.jpg"))
    victim.rename(victim.with_name("renamed.jpg"))
    assert open_images(images).scan().sha256 != before


def test_user_errors_on_image_inputs_are_one_line(capsys, tmp_path, cifar_few, tiny_vit_dir):
    cases = [
        (["extract", str(cifar_few), "-o", str(cifar_few / "inside.h5"), "--model", str(tiny_vit_dir)],
         "inside the input folder"),
        (["extract", str(cifar_few), "-o", str(tmp_path / "x.h5"), "--model", str(tiny_vit_dir), "--max-length", "9"],
         "--max-length applies to text inputs"),
        (["extract", str(tmp_path / "nothing.zip"), "-o", str(tmp_path / "x.h5")], "does not exist"),
        (["extract", f"{zip_of(cifar_few, tmp_path / 'z.zip')}:nope", "-o", str(tmp_path / "x.h5"),
          "--model", str(tiny_vit_dir)], "has no folder 'nope'"),
        (["extract", str(cifar_few), "-o", str(tmp_path / "x.h5"), "--model", str(tiny_vit_dir), "--text-column", "t"],
         "applies to texts"),
    ]
    for args, message in cases:
        code, _, err = run_cli(capsys, *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (cifar_few / "inside.h5").exists()


def test_heads_predictor_and_predict_command_on_images(capsys, tmp_path, cifar_few, tiny_vit_dir):
    store = extract(cifar_few, tmp_path / "train.h5", tiny_vit_dir, pooling="cls")
    head = featx.train_head(store, "logreg", seed=0)
    predictor = featx.Predictor(head)
    predictor.save(tmp_path / "model")
    loaded = featx.load_predictor(tmp_path / "model")
    on_store = head.predict_proba(store)
    images = [p.read_bytes() for p in sorted(cifar_few.rglob("*.jpg"))]
    np.testing.assert_allclose(loaded.predict_proba(images), on_store, atol=1e-6)
    arrays = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in images]
    assert list(loaded.predict(arrays)) == [CLASSES[i] for i in on_store.argmax(1)]
    code, out, _ = run_cli(capsys, "predict", str(tmp_path / "model"), str(cifar_few), "-q")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 12 and rows[0]["id"].startswith("airplane/") and rows[0]["gold"] == "airplane"


def test_image_finetune_full_and_top_blocks_round_trip(tmp_path, cifar_few, tiny_vit_dir):
    from featx.finetune import finetune, load_finetuned
    from featx.finetune.recipe import FinetuneConfig

    for name, layers in (("full", None), ("top1", 1)):
        config = FinetuneConfig(model=str(tiny_vit_dir), pooling="cls", train_layers=layers, max_steps=3,
                                batch_size=4, lr=1e-3, dtype="fp32")
        record = finetune(open_images(cifar_few), tmp_path / name, val=open_images(cifar_few), config=config,
                          progress=False)
        assert record["modality"] == "image" and len(record["losses"]) == 3 and record["val_rows"] == 12
        assert record["epochs"][0]["val_accuracy"] >= 0
        predictor = load_finetuned(tmp_path / name)
        metrics = predictor.evaluate(open_images(cifar_few))
        assert metrics["accuracy"] == pytest.approx(record["epochs"][0]["val_accuracy"])
    assert load_finetuned(tmp_path / "top1").record["trainable_parameters"] < \
        load_finetuned(tmp_path / "full").record["trainable_parameters"]


def test_efficientnet_lite0_real_weights_match_the_plain_module(tmp_path, cifar_few):
    pytest.importorskip("efficientnet_lite_pytorch")
    import torch

    from featx.backbones.vision import EFFICIENTNET_LITE_PREPROCESS, load_image_backbone
    from featx.featurizers.image import decode_image

    store = featx.extract(cifar_few, tmp_path / "e.h5", model="efficientnet-lite0", dtype="fp32", progress=False)
    assert store.dim == 1280 and len(store) == 12
    backbone = load_image_backbone("efficientnet-lite0", device="cpu")
    pixels = np.stack([EFFICIENTNET_LITE_PREPROCESS.apply(decode_image(p.read_bytes()))
                       for p in sorted(cifar_few.rglob("*.jpg"))])
    x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() - 127) / 128
    with torch.inference_mode():
        plain = backbone.model(x).mean((2, 3)).numpy()  # unfused, contiguous: the network as published
    assert min_cosine(store.load()[0], plain) > 0.9999


def test_any_torch_module_with_declared_preprocessing(tmp_path, cifar_few):
    import torch

    from featx.backbones.vision import ImagePreprocess, module_backbone

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 16, 3))
    net[1].running_mean.uniform_(-0.5, 0.5)  # non-trivial statistics, so folding them into the conv is tested
    net[1].running_var.uniform_(0.5, 2.0)
    prep = ImagePreprocess(size=40, crop=32, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
    backbone = module_backbone(net, prep, name="tiny-cnn", device="cpu")
    store = featx.extract(cifar_few, tmp_path / "m.h5", model=backbone, pooling="mean,max", dtype="fp32",
                          progress=False)
    assert store.dim == 16 and store.config.model == "tiny-cnn" and '"crop":32' in store.config.preprocess
    from featx.featurizers.image import decode_image

    pixels = np.stack([prep.apply(decode_image(p.read_bytes())) for p in sorted(cifar_few.rglob("*.jpg"))])
    assert pixels.shape[1:] == (32, 32, 3)
    x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() - torch.tensor(prep.mean).view(1, 3, 1, 1)) \
        / torch.tensor(prep.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        plain = net(x)
    np.testing.assert_allclose(store.load("mean")[0], plain.mean((2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(store.load("max")[0], plain.amax((2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    other_prep = featx.extract(cifar_few, tmp_path / "p.h5", model=module_backbone(net, replace(prep, size=48),
                               name="tiny-cnn", device="cpu"), dtype="fp32", progress=False)
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0] += 1.0
    other_weights = featx.extract(cifar_few, tmp_path / "w.h5", model=module_backbone(net, prep, name="tiny-cnn",
                                  device="cpu"), dtype="fp32", progress=False)
    assert len({store.fingerprint, other_prep.fingerprint, other_weights.fingerprint}) == 3
    with pytest.raises(FeatxError, match="pooler does not apply"):
        featx.extract(cifar_few, tmp_path / "x.h5", model=backbone, pooling="pooler", progress=False)


def test_modules_with_the_same_weights_and_another_structure_never_share_vectors(tmp_path, cifar_few):
    """A state dict holds no stride: two modules sharing it must not share a store, a vector
    cache or a predictor's encoder."""

    import torch

    from featx.backbones.vision import ImagePreprocess, module_backbone

    prep = ImagePreprocess(size=40, crop=32, mean=(127.0,) * 3, std=(64.0,) * 3)
    torch.manual_seed(0)
    first = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=1), torch.nn.ReLU())
    second = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU())
    second.load_state_dict(first.state_dict())
    one, two = (module_backbone(m, prep, name="shared-weights", device="cpu") for m in (first, second))
    options = {"pooling": "max", "dtype": "fp32", "progress": False}
    cache = tmp_path / "vectors"
    with featx.extract(cifar_few, tmp_path / "one.h5", model=one, cache_dir=cache, **options) as by_one, \
            featx.extract(cifar_few, tmp_path / "two.h5", model=two, cache_dir=cache, **options) as by_two, \
            featx.extract(cifar_few, tmp_path / "two-alone.h5", model=two, **options) as alone:
        assert by_one.fingerprint != by_two.fingerprint
        np.testing.assert_array_equal(by_two.load()[0], alone.load()[0])  # not the first module's, from the cache
        assert not np.allclose(by_two.load()[0], by_one.load()[0])
        with pytest.raises(FeatxError, match="another extraction config"):  # a rerun over the other's store
            featx.extract(cifar_few, tmp_path / "one.h5", model=two, **options)
        with pytest.raises(FeatxError, match="another structure"):  # a predictor's encoder
            featx.Encoder.for_config(by_one.config, backbone=two)
        # a config written before the structure was recorded is checked by its weights, as then
        earlier = by_one.config.replace(structure_sha256=None)
        assert featx.Encoder.for_config(earlier, backbone=one).config == earlier


def test_vit_layers_concatenate_and_cls_differs_from_pooler(tmp_path, cifar_few, tiny_vit_dir):
    one = extract(cifar_few, tmp_path / "one.h5", tiny_vit_dir, pooling="cls,pooler")
    two = extract(cifar_few, tmp_path / "two.h5", tiny_vit_dir, pooling="cls", layers="-2:")
    assert two.dim == 2 * one.dim
    assert not np.allclose(one.load("cls")[0], one.load("pooler")[0])


def test_shards_merge_and_the_vector_cache_work_on_images(tmp_path, cifar_few, tiny_vit_dir):
    from featx.extraction.shards import shard_path
    from featx.store.merge import merge_shards

    whole = extract(cifar_few, tmp_path / "whole.h5", tiny_vit_dir, window_rows=4)
    for i in range(2):
        extract(cifar_few, tmp_path / "parts.h5", tiny_vit_dir, window_rows=4, shard=(i, 2))
    merge_shards([shard_path(tmp_path / "parts.h5", i, 2) for i in range(2)], tmp_path / "merged.h5", copy=True)
    with featx.open_store(tmp_path / "merged.h5") as merged:
        assert merged.ids.tolist() == whole.ids.tolist()
        assert np.array_equal(merged.load()[0], whole.load()[0])
        assert merged.skipped is not None and not merged.skipped.any()
    cache = tmp_path / "cache"
    first = extract(cifar_few, tmp_path / "c1.h5", tiny_vit_dir, cache_dir=cache)
    again = extract(cifar_few, tmp_path / "c2.h5", tiny_vit_dir, cache_dir=cache)
    assert json.loads(h5py.File(again.path)["/"].attrs["timings"])["cache_hits"] == 12
    assert np.array_equal(first.load()[0], again.load()[0])
