"""Embedder: featx's encoder as a scikit-learn transformer, texts or images in, vectors out.

    make_pipeline(Embedder("all-MiniLM-L6-v2", cache_dir="cache/"), LogisticRegression())

embeds with the same batching and the same config (and so the same vectors) as
`featx extract` (it sits on featx.encoding.Encoder); with `cache_dir` every vector is kept by
(fingerprint, sha256 of the input), so transforming the same inputs again, in this or a later
process, runs no model.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from featx.encoding import Encoder
from featx.errors import ParameterError
from featx.finetune.classifier import takes_texts


class Embedder(TransformerMixin, BaseEstimator):
    """A frozen backbone as a transformer: `transform(X)` gives one row per text (or image).

    `model` defaults to the modality's (all-MiniLM-L6-v2 for texts, efficientnet-lite0 for
    images); the modality is `modality`, else the one that takes the first row `fit` is given
    (texts when `fit` gets none). `pooling` and `normalize` default to the model's own embedding
    (mean pooling, L2-normalised for all-MiniLM-L6-v2); several poolings are concatenated in
    the order given. `prompt` (or `prompt_name`, one of the model's prompts; default: the
    model's default_prompt_name, "" for none) is put before every text, as sentence-transformers
    does. `fit` loads the model (once) and learns nothing from the data. After each `transform`,
    ``cache_hits_`` counts the rows served from `cache_dir` and ``cache_rejected_`` the cached
    rows that failed their check and were embedded again (see featx.store.vector_cache).
    """

    def __init__(self, model: str | None = None, *, modality: str | None = None,
                 pooling: str | Sequence[str] | None = None, normalize: bool | None = None,
                 max_length: int | None = None, dtype: str = "auto", device: str = "auto",
                 batch_tokens: int | None = None, cache_dir: str | Path | None = None,
                 prompt: str | None = None, prompt_name: str | None = None) -> None:
        self.model = model
        self.modality = modality
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
        """Load the backbone and resolve the config; of X only the first row's kind is looked at."""
        _check_not_one(X)
        text_only = {"max_length": self.max_length, "prompt": self.prompt, "prompt_name": self.prompt_name}
        self.encoder_ = Encoder.load(self.model, modality=self.modality, inputs=X, batch_tokens=self.batch_tokens,
                                     cache_dir=self.cache_dir, pooling=self.pooling, normalize=self.normalize,
                                     dtype=self.dtype, device=self.device,
                                     **{k: v for k, v in text_only.items() if v is not None})
        self.config_ = self.encoder_.config
        self.n_features_out_ = self.encoder_.dim
        return self

    def transform(self, X: Any) -> np.ndarray:
        """(len(X), D) float32 vectors of the rows of X, in order."""
        check_is_fitted(self, "config_")
        _check_not_one(X)
        vectors = self.encoder_.encode(X)
        self.cache_hits_, self.cache_rejected_ = self.encoder_.cache_hits, self.encoder_.cache_rejected
        return vectors

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """``mean0``, ``mean1``, ... (one block per pooling)."""
        check_is_fitted(self, "config_")
        dim = self.n_features_out_ // len(self.config_.poolings)
        return np.asarray([f"{name}{i}" for name in self.config_.poolings for i in range(dim)], dtype=object)

    def __sklearn_tags__(self) -> Any:
        return takes_texts(super().__sklearn_tags__(), requires_fit=True)


def _check_not_one(X: Any) -> None:
    if isinstance(X, (str, bytes)):
        raise ParameterError("X", "is one input: pass a list of texts (or images)")
