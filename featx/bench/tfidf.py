"""The classical baseline a user would pick instead of embeddings: TF-IDF + logistic regression.

scikit-learn's TfidfVectorizer on word 1- and 2-grams with sublinear tf (terms seen in
at least 2 training texts; the hybrid head's TF-IDF block uses the same settings), then
LogisticRegression with C chosen on the suite's validation split (the same rows the
frozen heads select on; without one, the same seeded held-out fraction of train `featx train` uses), refit on the training rows
only, scored on test. Timed as the heads are: fit (vectorizer, C sweep, final fit)
plus predict, in one process.
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
from featx.heads.hybrid import TFIDF_PARAMS
from featx.heads.logreg import DEFAULT_CS
from featx.heads.split import stratified_split
from featx.metrics import classification_metrics, labels_as

VAL_FRACTION = 0.1


def read_labelled(source: InputSource) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    summary = source.scan()
    records = list(source.records(summary))
    return [r.text for r in records], np.array([r.label for r in records], dtype=np.int64), summary.classes or ()


def tfidf_logreg(train: InputSource, val: InputSource | None, test: InputSource, seed: int = 0) -> dict[str, Any]:
    """Fit and score the baseline; returns metrics, the chosen C, its curve and seconds."""
    texts, y, classes = read_labelled(train)
    test_texts, y_test, test_classes = read_labelled(test)
    y_test = labels_as(y_test, test_classes, classes, test.name)
    t0 = time.perf_counter()
    if val is not None:
        val_texts, y_val, val_classes = read_labelled(val)
        y_val = labels_as(y_val, val_classes, classes, val.name)
        fit_texts, y_fit = texts, y
    else:
        fit_rows, val_rows = stratified_split(y, VAL_FRACTION, seed)
        fit_texts, y_fit = [texts[i] for i in fit_rows], y[fit_rows]
        val_texts, y_val = [texts[i] for i in val_rows], y[val_rows]
    vectorizer = TfidfVectorizer(**TFIDF_PARAMS)
    X_fit = vectorizer.fit_transform(fit_texts)
    X_val = vectorizer.transform(val_texts)
    curve = []
    model = LogisticRegression(max_iter=1000, warm_start=True, random_state=seed)
    for C in sorted(DEFAULT_CS):  # upwards with warm starts, as the logreg head sweeps
        model.set_params(C=C)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X_fit, y_fit)
        curve.append({"C": float(C), "score": float(model.score(X_val, y_val))})
    best = max(curve, key=lambda point: (point["score"], -point["C"]))  # ties: the smaller C
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        final = LogisticRegression(C=best["C"], max_iter=1000, random_state=seed).fit(X_fit, y_fit)
    t1 = time.perf_counter()
    predicted = final.predict(vectorizer.transform(test_texts))
    t2 = time.perf_counter()
    metrics = classification_metrics(y_test, predicted, classes)
    return {"metrics": metrics, "C": best["C"], "curve": curve, "vocabulary": len(vectorizer.vocabulary_),
            "warning": edge_warning("C", best["C"], DEFAULT_CS, curve, grid_name="Cs"),
            "selection": "validation" if val is not None else f"{VAL_FRACTION:g} of train held out (seed {seed})",
            "seconds": {"fit": round(t1 - t0, 3), "eval": round(t2 - t1, 3), "total": round(t2 - t0, 3)}}
