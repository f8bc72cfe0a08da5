"""The classical baseline a user would pick instead of embeddings, and the stack of both.

`tfidf_logreg`: scikit-learn's TfidfVectorizer on word 1- and 2-grams with sublinear tf
(terms seen in at least 2 training texts), then LogisticRegression with C chosen on the
suite's validation split (the same rows the frozen heads select on; without one, the
same seeded held-out fraction of train `featx train` uses), refit on the training rows
only, scored on test. Timed as the heads are: fit (vectorizer, C sweep, final fit) plus
predict, in one process.

`hybrid_logreg`: the hybrid head (featx.heads.hybrid: the same TF-IDF features side by
side with a store's standardised vectors in one logistic regression, the dense block's
weight and C chosen together on the same validation rows). The texts are read from the
suite's input files, not from the store (a store holds no texts), and each is checked
against the store row's content sha256, so a text is never paired with another row's
vector.
"""
from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from featx.data import InputSource
from featx.heads.base import edge_warning
from featx.heads.hybrid import TFIDF_PARAMS, HybridHead, TextVectors, check_texts_match
from featx.heads.logreg import DEFAULT_CS
from featx.heads.split import stratified_split
from featx.metrics import classification_metrics, labels_as
from featx.store import FeatureStore

VAL_FRACTION = 0.1


def read_labelled(source: InputSource) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    summary = source.scan()
    records = list(source.records(summary))
    return [r.text for r in records], np.array([r.label for r in records], dtype=np.int64), summary.classes or ()


def tfidf_logreg(train: InputSource, val: InputSource | None, test: InputSource, seed: int = 0) -> dict[str, Any]:
    """Fit and score the baseline; returns metrics, the chosen C, its curve and seconds."""
    data = _Splits(train, val, test, seed)
    t0 = time.perf_counter()
    vectorizer = TfidfVectorizer(**TFIDF_PARAMS)
    X_fit = vectorizer.fit_transform(data.fit_texts)
    curve = _sweep_C(X_fit, data.y_fit, vectorizer.transform(data.val_texts), data.y_val, seed)
    best = max(curve, key=lambda point: (point["score"], -point["C"]))  # ties: the smaller C
    final = _fit(X_fit, data.y_fit, best["C"], seed)
    t1 = time.perf_counter()
    predicted = final.predict(vectorizer.transform(data.test_texts))
    t2 = time.perf_counter()
    metrics = classification_metrics(data.y_test, predicted, data.classes)
    return {"metrics": metrics, "C": best["C"], "curve": curve, "vocabulary": len(vectorizer.vocabulary_),
            "warning": edge_warning("C", best["C"], DEFAULT_CS, curve), "selection": data.selection,
            "seconds": {"fit": round(t1 - t0, 3), "eval": round(t2 - t1, 3), "total": round(t2 - t0, 3)}}


def hybrid_logreg(train: InputSource, val: InputSource | None, test: InputSource, stores: dict[str, FeatureStore],
                  pooling: str, seed: int = 0) -> dict[str, Any]:
    """The hybrid head (featx.heads.hybrid) on the suite's texts and the stores' `pooling` vectors, weight
    and C chosen on validation; `stores` holds the "train", "test" (and "val" when `val` is given) stores
    of the same inputs."""
    data = _Splits(train, val, test, seed)
    vectors = {role: _aligned_vectors(stores[role], texts, pooling, source.name)
               for role, texts, source in data.sources()}
    fit_vectors, val_vectors = data.fit_and_val(vectors["train"], vectors.get("val"))
    t0 = time.perf_counter()
    head = HybridHead(random_state=seed).fit(TextVectors(data.fit_texts, fit_vectors), data.y_fit,
                                             TextVectors(data.val_texts, val_vectors), data.y_val)
    t1 = time.perf_counter()
    predicted = head.predict(TextVectors(data.test_texts, vectors["test"]))
    t2 = time.perf_counter()
    return {"metrics": classification_metrics(data.y_test, predicted, data.classes), "C": head.C_,
            "weight": head.weight_, "curve": head.curve_, "vocabulary": len(head.vectorizer_.vocabulary_),
            "dim": head.n_features_in_, "warning": head.selection_warning(), "selection": data.selection,
            "seconds": {"fit": round(t1 - t0, 3), "eval": round(t2 - t1, 3), "total": round(t2 - t0, 3)}}


class _Splits:
    """The texts and labels of train / validation / test, with validation held out of train when
    there is no validation input (the rows `featx train` would hold out)."""

    def __init__(self, train: InputSource, val: InputSource | None, test: InputSource, seed: int) -> None:
        self.inputs = {"train": train, "val": val, "test": test}
        self.texts, y, self.classes = read_labelled(train)
        self.test_texts, y_test, test_classes = read_labelled(test)
        self.y_test = labels_as(y_test, test_classes, self.classes, test.name)
        if val is not None:
            self.val_input_texts, y_val, val_classes = read_labelled(val)
            self.fit_rows = np.arange(len(self.texts))
            self.y_val = labels_as(y_val, val_classes, self.classes, val.name)
            self.val_texts = self.val_input_texts
            self.selection = "validation"
        else:
            self.fit_rows, self.val_rows = stratified_split(y, VAL_FRACTION, seed)
            self.y_val = y[self.val_rows]
            self.val_texts = [self.texts[i] for i in self.val_rows]
            self.selection = f"{VAL_FRACTION:g} of train held out (seed {seed})"
        self.fit_texts = [self.texts[i] for i in self.fit_rows]
        self.y_fit = y[self.fit_rows]

    def sources(self) -> list[tuple[str, list[str], InputSource]]:
        """(role, every text of that input, the input) for each input given."""
        found = [("train", self.texts, self.inputs["train"]), ("test", self.test_texts, self.inputs["test"])]
        if self.inputs["val"] is not None:
            found.append(("val", self.val_input_texts, self.inputs["val"]))
        return [(role, texts, source) for role, texts, source in found if source is not None]

    def fit_and_val(self, train_rows: np.ndarray, val_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The fitting and validation rows of per-row arrays, split as the texts are."""
        if val_rows is not None:
            return train_rows, val_rows
        return train_rows[self.fit_rows], train_rows[self.val_rows]


def _aligned_vectors(store: FeatureStore, texts: list[str], pooling: str, name: str) -> np.ndarray:
    """The store's vectors, refused unless its rows are exactly these texts, in this order."""
    check_texts_match(store, texts, name)
    return store.load(pooling)[0]


def _sweep_C(X_fit: Any, y_fit: np.ndarray, X_val: Any, y_val: np.ndarray, seed: int) -> list[dict[str, float]]:
    """Validation accuracy at every C of the logreg head's grid, upwards with warm starts."""
    curve = []
    model = LogisticRegression(max_iter=1000, warm_start=True, random_state=seed)
    for C in sorted(DEFAULT_CS):
        model.set_params(C=C)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X_fit, y_fit)
        curve.append({"C": float(C), "score": float(model.score(X_val, y_val))})
    return curve


def _fit(X: Any, y: np.ndarray, C: float, seed: int) -> LogisticRegression:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=C, max_iter=1000, random_state=seed).fit(X, y)
