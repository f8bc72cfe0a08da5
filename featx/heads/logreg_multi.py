"""The logreg head's multi-label fit: one-vs-rest, every label's logistic regression at the same C
fitted jointly; C chosen by macro-F1 on validation with each label's threshold tuned there. The
sweep goes up the grid, each fit starting from the last, and stops once `PATIENCE` larger Cs in a
row score below the best (they only cost more to fit).

Rows in memory are standardised by a StandardScaler and multiplied in float32
(featx.heads.logistic_columns). Rows on disk (StoredRows: a store over featx train's
--memory-budget) are standardised by their streamed moments and read a block at a time
(featx.heads.logistic_blocks.fit_one_vs_rest_blocks): the same objective and solver settings,
so the same C is chosen and the weights agree to the solver's tolerance.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.preprocessing import StandardScaler

from featx.heads.logistic_blocks import fit_one_vs_rest_blocks
from featx.heads.logistic_columns import fit_logistic, probabilities
from featx.heads.rows import column_moments, map_blocks, take
from featx.heads.split import can_stratify, stratified_split
from featx.metrics import choose_thresholds, tuned_macro_f1
from featx.store.rows import StoredRows

PATIENCE = 3

# fit(C, start) -> weights (d + 1, L), the intercepts last; scores(X, weights) -> probabilities (n, L).
Fitter = tuple[Callable[[float, np.ndarray | None], np.ndarray], Callable[[Any, np.ndarray], np.ndarray],
               StandardScaler | None]


def fit_multi_label(head: Any, X: Any, Y: np.ndarray, X_val: Any, Y_val: np.ndarray | None) -> None:
    """Fit `head` (a LogRegHead) on rows X (in memory or StoredRows) and 0/1 labels Y: see the module
    docstring. Sets classes_, selection_, curve_, C_, weights_, scaler_, thresholds_ and n_iter_."""
    X, Y = head._check_rows(X, Y, dtype=[np.float64, np.float32], multi_output=True)
    Y = np.asarray(Y, dtype=np.uint8)
    head.classes_ = np.arange(Y.shape[1])
    fit_rows = np.arange(len(Y))
    if X_val is not None:
        X_val, Y_val = head._check_rows(X_val, reset=False, dtype=[np.float64, np.float32]), np.asarray(Y_val, np.uint8)
        head.selection_ = "validation"
    elif can_stratify(Y, 2):
        fit_rows, held_out = stratified_split(Y, head.val_fraction, head.random_state)
        X_val, Y_val, head.selection_ = take(X, held_out), Y[held_out], "held-out fraction"
    else:
        head.selection_ = "default (too few rows to select)"
    fit, scores, scaler = _fitter(head, take(X, fit_rows) if len(fit_rows) < len(Y) else X, Y[fit_rows])
    Cs = sorted(head.Cs) if head.C is None and X_val is not None else [1.0 if head.C is None else head.C]
    head.curve_, best = [], None
    weights: np.ndarray | None = None
    for C in Cs:  # upwards, each fit starting from the last
        weights = fit(C, weights)
        if X_val is not None and Y_val is not None:
            head.curve_.append({"C": float(C), "score": tuned_macro_f1(scores(X_val, weights), Y_val)})
            if best is None or head.curve_[-1]["score"] > best[0]:  # ties: the smaller C
                best = (head.curve_[-1]["score"], float(C), weights)
            elif len(head.curve_) - max(i for i, p in enumerate(head.curve_) if p["C"] == best[1]) > PATIENCE:
                break  # validation fell at each of the last larger Cs
    if head.C is not None:
        head.selection_, head.curve_ = "given", []
    head.C_, weights = (best[1], best[2]) if best else (Cs[0], weights)
    assert weights is not None  # the grid is never empty
    head.scaler_, head.weights_, head.model_ = scaler, weights, None
    if X_val is not None:  # thresholds from a model that did not train on the validation rows
        head.thresholds_ = _thresholds(head, scores, X_val, Y_val)
    else:
        head.thresholds_ = np.full(len(head.classes_), 0.5)
    if len(fit_rows) < len(Y):  # refit on every row
        fit, _, head.scaler_ = _fitter(head, X, Y)
        head.weights_ = fit(head.C_, weights)
    head.n_iter_ = np.zeros(1, dtype=int)


def _thresholds(head: Any, scores: Callable[[Any, np.ndarray], np.ndarray], X_val: Any, Y_val: Any) -> np.ndarray:
    return choose_thresholds(scores(X_val, head.weights_), np.asarray(Y_val))


def _fitter(head: Any, X: Any, Y: np.ndarray) -> Fitter:
    """How to fit the rows X and score others: in memory, or a block at a time from disk."""
    if not isinstance(X, StoredRows):
        X = np.asarray(X)
        scaler = StandardScaler().fit(X) if head.standardize else None
        rows = scaler.transform(X) if scaler else X
        return (lambda C, start: fit_logistic(rows, Y, C, start, head.max_iter),
                lambda X_val, W: probabilities(scaler.transform(X_val) if scaler else X_val, W), scaler)
    d = X.shape[1]
    mean, scale = column_moments(X) if head.standardize else (np.zeros(d), np.ones(d))

    def fit(C: float, start: np.ndarray | None) -> np.ndarray:
        weights, _ = fit_one_vs_rest_blocks(X, Y, C, mean=mean, scale=scale,
                                            init=None if start is None else start.T, max_iter=head.max_iter)
        return weights.T  # (d + 1, L), as fit_logistic's

    def scores(X_val: Any, W: np.ndarray) -> np.ndarray:
        return map_blocks(lambda block: expit(((np.asarray(block, np.float64) - mean) / scale) @ W[:-1] + W[-1]), X_val)

    scaler = StandardScaler() if head.standardize else None
    if scaler is not None:
        scaler.mean_, scaler.scale_, scaler.var_, scaler.n_features_in_ = mean, scale, scale ** 2, d
    return fit, scores, scaler
