"""featx.Embedder: a scikit-learn transformer with the engine's vectors and a cache that spares the model."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import featx
from featx.encoding import Encoder
from featx.errors import ParameterError
from featx.modalities.text import make_config


def test_pipeline_on_texts_uses_the_same_vectors_as_extract(tiny_bert_dir, sentences):
    embedder = featx.Embedder(str(tiny_bert_dir), dtype="fp32", device="cpu")
    labels = np.arange(len(sentences)) % 2
    pipeline = make_pipeline(embedder, LogisticRegression(max_iter=200)).fit(sentences, labels)
    assert pipeline.predict(sentences).shape == (len(sentences),)
    vectors = embedder.transform(sentences)
    backbone = embedder.encoder_.featurizer.backbone
    reference = Encoder.for_config(make_config(backbone, dtype="fp32"), backbone=backbone).features(sentences)["mean"]
    np.testing.assert_array_equal(vectors, reference)
    assert embedder.get_feature_names_out()[:2].tolist() == ["mean0", "mean1"] and vectors.shape[1] == 32


def test_second_transform_is_served_from_the_cache(tmp_path, tiny_bert_dir, sentences, monkeypatch):
    embedder = featx.Embedder(str(tiny_bert_dir), pooling="mean,max", dtype="fp32", cache_dir=tmp_path / "cache",
                              device="cpu").fit()
    first = embedder.transform(sentences)
    assert embedder.cache_hits_ == 0 and first.shape == (len(sentences), 64)
    from featx.featurizers import TextFeaturizer

    def no_model(*args, **kwargs):
        raise AssertionError("the model ran for texts that were cached")
    monkeypatch.setattr(TextFeaturizer, "forward", no_model)
    again = featx.Embedder(str(tiny_bert_dir), pooling="mean,max", dtype="fp32", cache_dir=tmp_path / "cache",
                           device="cpu").fit()  # a new object, as in a later process
    np.testing.assert_array_equal(again.transform(sentences), first)
    assert again.cache_hits_ == len(sentences)


def test_minilm_embedder_gives_the_models_own_normalised_embedding(minilm):
    vectors = featx.Embedder(device="cpu", dtype="fp32").fit().transform(["a fine film", "a dull mess"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_single_string_is_refused_with_the_parameter_named(tiny_bert_dir):
    embedder = featx.Embedder(str(tiny_bert_dir), device="cpu").fit()
    with pytest.raises(ParameterError, match="X is one input"):
        embedder.transform("a fine film")
