"""featx.encode and featx.Encoder: in-memory texts, images and a registered third modality's
arrays give the vectors `featx extract` stores; Embedder and Predictor embed through it."""
import numpy as np
import pytest
from PIL import Image

import featx
from featx.errors import FeatxError, ParameterError


def test_texts_give_the_stored_vectors(tmp_path, tiny_bert_dir, sentences):
    path = tmp_path / "texts.txt"
    path.write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
    with featx.extract(path, tmp_path / "s.h5", model=str(tiny_bert_dir), pooling="mean,max", dtype="fp32",
                       progress=False) as store:
        stored = np.concatenate([store.load("mean")[0], store.load("max")[0]], axis=1)
    vectors = featx.encode(sentences, str(tiny_bert_dir), pooling="mean,max", dtype="fp32")
    assert vectors.dtype == np.float32 and vectors.shape == stored.shape
    np.testing.assert_array_equal(vectors, stored)


def test_images_as_bytes_arrays_and_pil_give_the_stored_vectors(tmp_path, cifar_few, tiny_vit_dir):
    with featx.extract(cifar_few, tmp_path / "s.h5", model=str(tiny_vit_dir), dtype="fp32", progress=False) as store:
        stored, ids = store.load("cls")[0], [str(i) for i in store.ids]
    files = [cifar_few / name for name in ids]
    as_bytes = [f.read_bytes() for f in files]
    as_arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    as_pil = [Image.open(f) for f in files]
    for inputs in (as_bytes, as_arrays, as_pil):
        np.testing.assert_allclose(featx.encode(inputs, str(tiny_vit_dir), dtype="fp32"), stored, atol=1e-6)


def test_the_embedder_takes_images(cifar_few, tiny_vit_dir):
    files = sorted(cifar_few.rglob("*.jpg"))
    images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    embedder = featx.Embedder(str(tiny_vit_dir), dtype="fp32", device="cpu").fit(images)
    assert embedder.config_.modality == "image"
    np.testing.assert_array_equal(embedder.transform(images), featx.encode(images, str(tiny_vit_dir), dtype="fp32"))


def test_a_registered_modality_is_picked_by_its_inputs(tmp_path):
    from tests.conftest import registries_restored
    from tests.toy_modality import load_tiny_model, register, save_tiny_model

    with registries_restored():
        register()
        model = save_tiny_model(tmp_path / "model", 6, 4)
        rows = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
        import torch

        with torch.no_grad():
            expected = load_tiny_model(model)[0](torch.from_numpy(rows)).numpy()
        np.testing.assert_allclose(featx.encode(list(rows), str(model)), expected, atol=1e-6)


def test_what_encode_cannot_take_is_one_clear_error(tiny_bert_dir):
    with pytest.raises(ParameterError, match="window_rows is not an option of featx"):
        featx.encode(["a"], str(tiny_bert_dir), window_rows=4)
    with pytest.raises(FeatxError, match="no modality takes a dict"):
        featx.encode([{"text": "a"}], str(tiny_bert_dir))
    with pytest.raises(ParameterError, match="inputs is one input"):
        featx.encode("a fine film", str(tiny_bert_dir))
    with pytest.raises(ParameterError, match="must be texts"):
        featx.encode(["a", 3], str(tiny_bert_dir))


def test_featx_encode_stays_the_function_once_its_module_is_imported():
    """Importing the module must not shadow the package's `encode` (a module named encode did)."""
    import featx.encoding
    import featx.predictor

    assert callable(featx.encode) and featx.encode.__module__ == "featx.encoding"
