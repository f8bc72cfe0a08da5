"""Embedder: featx's engine as a scikit-learn transformer, texts in, vectors out.

    make_pipeline(Embedder("all-MiniLM-L6-v2", cache_dir="cache/"), LogisticRegression())

embeds with the same batching and the same config (and so the same vectors) as
`featx extract`; with `cache_dir` every vector is kept by (fingerprint, sha256 of the
text), so transforming the same texts again, in this or a later process, runs no model.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from featx.backbones import DEFAULT_MODEL, load_backbone
from featx.classifier import takes_texts
from featx.data import Record
from featx.engine import embed_through_cache
from featx.errors import ParameterError
from featx.featurizers import TextFeaturizer
from featx.modalities.text import make_config
from featx.runners import make_runner
from featx.store.vector_cache import EmbeddingCache


class Embedder(TransformerMixin, BaseEstimator):
    """A frozen backbone as a transformer: `transform(texts)` gives one row per text.

    `pooling` and `normalize` default to the model's own embedding (mean pooling,
    L2-normalised for all-MiniLM-L6-v2); several poolings are concatenated in the order
    given. `prompt` (or `prompt_name`, one of the model's prompts; default: the model's
    default_prompt_name, "" for none) is put before every text, as sentence-transformers
    does. `fit` loads the model (once) and learns nothing from the data. After each
    `transform`, ``cache_hits_`` counts the rows served from `cache_dir` and ``cache_rejected_``
    the cached rows that failed their check and were embedded again (see featx.store.vector_cache).
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, pooling: str | Sequence[str] | None = None,
                 normalize: bool | None = None, max_length: int | None = None, dtype: str = "auto",
                 device: str = "auto", batch_tokens: int | None = None, cache_dir: str | Path | None = None,
                 prompt: str | None = None, prompt_name: str | None = None) -> None:
        self.model = model
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = max_length
        self.dtype = dtype
        self.device = device
        self.batch_tokens = batch_tokens
        self.cache_dir = cache_dir
        self.prompt = prompt
        self.prompt_name = prompt_name

    def fit(self, X: Any = None, y: Any = None) -> Embedder:
        """Load the backbone and resolve the config; the texts are not looked at."""
        self.backbone_ = load_backbone(self.model, device=self.device)
        self.config_ = make_config(self.backbone_, pooling=self.pooling, normalize=self.normalize,
                                   max_length=self.max_length, dtype=self.dtype, prompt=self.prompt,
                                   prompt_name=self.prompt_name)
        self.featurizer_ = TextFeaturizer(self.backbone_, self.config_)
        self.runner_ = make_runner(self.featurizer_, self.batch_tokens)
        self.n_features_out_ = self.featurizer_.dim * len(self.config_.poolings)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(len(X), D) float32 vectors of the texts in X, in order."""
        check_is_fitted(self, "config_")
        texts = _texts(X)
        records = [Record(i, text, -1) for i, text in enumerate(texts)]
        items = self.featurizer_.prepare(records)[0]
        self.cache_hits_ = self.cache_rejected_ = 0
        if self.cache_dir is None or not texts:
            features = self.runner_.run(self.featurizer_, items)
        else:
            timer: dict[str, float] = {}
            cache = EmbeddingCache(self.cache_dir, self.config_, self.featurizer_.dim)
            try:
                features = embed_through_cache(self.featurizer_, self.runner_, items,
                                               self.featurizer_.content_hashes(records), cache, timer)
            finally:
                cache.close()
            self.cache_hits_ = int(timer.get("cache_hits", 0))
            self.cache_rejected_ = int(timer.get("cache_rejected", 0))
        return np.concatenate([features[name] for name in self.config_.poolings], axis=1)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """``mean0``, ``mean1``, ... (one block per pooling)."""
        check_is_fitted(self, "config_")
        dim = self.n_features_out_ // len(self.config_.poolings)
        return np.asarray([f"{name}{i}" for name in self.config_.poolings for i in range(dim)], dtype=object)

    def __sklearn_tags__(self) -> Any:
        return takes_texts(super().__sklearn_tags__(), requires_fit=True)


def _texts(X: Any) -> list[str]:
    if isinstance(X, str):
        raise ParameterError("X", "is one string: pass a list of texts")
    array = np.asarray(X, dtype=object)
    if array.ndim == 2 and array.shape[1] == 1:  # a one-column frame or array, as ColumnTransformer gives
        array = array[:, 0]
    if array.ndim != 1 or not all(isinstance(text, str) for text in array):
        raise ParameterError("X", "must be a sequence of texts (str)")
    return list(array)
