"""The classical baseline a user would pick instead of embeddings: TF-IDF + logistic regression
(multi-label: one-vs-rest logistic regression, each label's threshold chosen on validation;
regression: ridge, alpha chosen on validation by mean R²).

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
from sklearn.linear_model import LogisticRegression, Ridge

from featx.data import InputSource
from featx.errors import FeatxError
from featx.heads.base import edge_warning
from featx.heads.logistic_columns import fit_logistic, probabilities
from featx.heads.logreg import DEFAULT_CS
from featx.heads.split import stratified_split
from featx.heads.tfidf import TFIDF_PARAMS
from featx.metrics import choose_thresholds, classification_metrics, labels_as, mean_r2, task_metrics, tuned_macro_f1

VAL_FRACTION = 0.1


def read_labelled(source: InputSource) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """The texts, their labels as a store keeps them (featx.extraction.engine.label_rows) and the class or target names."""
    from featx.data.targets import label_rows

    summary = source.scan()
    records = list(source.records(summary))
    labels = label_rows(summary, [r.label for r in records])
    if labels is None:
        raise FeatxError(f"{source.name} has no labels: the baseline needs them")
    return [r.text for r in records], labels, summary.classes or ()


def tfidf_baseline(train: InputSource, val: InputSource | None, test: InputSource, seed: int = 0) -> dict[str, Any]:
    """The baseline for the task of `train`'s labels: logistic regression, one-vs-rest, or ridge."""
    texts, y, names = read_labelled(train)
    if y.ndim == 1:
        return tfidf_logreg(train, val, test, seed)
    test_texts, y_test, test_names = read_labelled(test)
    y_test = labels_as(y_test, test_names, names, test.name)
    t0 = time.perf_counter()
    if val is not None:
        val_texts, y_val, val_names = read_labelled(val)
        y_val, fit_texts, y_fit = labels_as(y_val, val_names, names, val.name), texts, y
    else:
        fit_rows, val_rows = stratified_split(y, VAL_FRACTION, seed)
        fit_texts, y_fit = [texts[i] for i in fit_rows], y[fit_rows]
        val_texts, y_val = [texts[i] for i in val_rows], y[val_rows]
    vectorizer = TfidfVectorizer(**TFIDF_PARAMS)
    X_fit, X_val = vectorizer.fit_transform(fit_texts), vectorizer.transform(val_texts)
    multi = y.dtype.kind in "ub"
    grid = sorted(DEFAULT_CS) if multi else sorted(_ALPHAS)
    curve: list[dict[str, float]] = []
    fitted: list[Any] = []
    W = None
    for value in grid:
        if multi:
            W = fit_logistic(X_fit, y_fit, value, W)
            curve.append({"C": float(value), "score": tuned_macro_f1(probabilities(X_val, W), y_val)})
            fitted.append(W)
        else:
            model = Ridge(alpha=value).fit(X_fit, y_fit)
            curve.append({"alpha": float(value), "score": mean_r2(_rows(model.predict(X_val)), y_val)})
            fitted.append(model)
    name = "C" if multi else "alpha"
    best = max(range(len(curve)), key=lambda i: (curve[i]["score"], -i if multi else i))  # ties: more regularised
    t1 = time.perf_counter()
    X_test = vectorizer.transform(test_texts)
    validation = None
    if multi:
        val_scores = probabilities(X_val, fitted[best])
        thresholds = choose_thresholds(val_scores, y_val)
        predicted = (probabilities(X_test, fitted[best]) >= thresholds).astype(np.uint8)
        validation = {"macro_f1": curve[best]["score"],  # what choosing each label's threshold on dev gained there
                      "macro_f1_at_0.5": task_metrics(y_val, (val_scores >= 0.5).astype(np.uint8), names)["macro_f1"]}
    else:
        predicted = _rows(fitted[best].predict(X_test))
    t2 = time.perf_counter()
    chosen = curve[best][name]
    return {"metrics": task_metrics(y_test, predicted, names), name: chosen, "curve": curve, "validation": validation,
            "vocabulary": len(vectorizer.vocabulary_),
            "warning": edge_warning(name, chosen, tuple(grid), curve, grid_name=f"{name}s"),
            "selection": "validation" if val is not None else f"{VAL_FRACTION:g} of train held out (seed {seed})",
            "seconds": {"fit": round(t1 - t0, 3), "eval": round(t2 - t1, 3), "total": round(t2 - t0, 3)}}


def _rows(predicted: np.ndarray) -> np.ndarray:
    """Predictions as (rows, targets): scikit-learn gives one target's as a vector."""
    return np.asarray(predicted).reshape(len(predicted), -1)


# The TF-IDF ridge baseline's alphas (its rows are unit-norm, so smaller than the ridge head's).
_ALPHAS = tuple(float(a) for a in np.logspace(-2, 3, 11))


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
