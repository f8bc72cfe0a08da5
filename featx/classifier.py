"""PretrainedClassifier: what a predictor folder loads as, for scikit-learn.

A frozen-backbone predictor and a fine-tuned checkpoint both classify raw texts with a
model trained elsewhere. As scikit-learn estimators they are already fitted: `fit` changes
nothing (the rule of sklearn.frozen.FrozenEstimator), `clone` returns the same object,
`classes_` are the class names, `score(texts, labels)` is accuracy, and they take a list
of texts where scikit-learn expects X.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


def takes_texts(tags: Any, requires_fit: bool) -> Any:
    """scikit-learn tags for an estimator whose X is a list of texts (Embedder, the predictors)."""
    tags.input_tags.two_d_array = False
    tags.input_tags.string = True
    tags.requires_fit = requires_fit
    return tags


class PretrainedClassifier(ClassifierMixin, BaseEstimator):
    """Base of Predictor and FinetunedPredictor: subclasses set `class_names` and
    implement `predict_proba(texts)`."""

    class_names: tuple[str, ...]

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.class_names, dtype=object)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """The predicted class name of each text."""
        names: np.ndarray = self.classes_[self.predict_proba(texts).argmax(1)]
        return names

    def fit(self, X: Any = None, y: Any = None, **fit_params: Any) -> PretrainedClassifier:
        """Nothing to learn: the model was trained when the folder was made."""
        return self

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {}

    def set_params(self, **params: Any) -> PretrainedClassifier:
        if params:
            raise ValueError(f"{type(self).__name__} is pretrained: it has no parameters to set ({sorted(params)})")
        return self

    def __sklearn_clone__(self) -> PretrainedClassifier:
        return self

    def __sklearn_tags__(self) -> Any:
        return takes_texts(super().__sklearn_tags__(), requires_fit=False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(classes={list(self.class_names)})"
