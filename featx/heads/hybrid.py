"""The hybrid head: TF-IDF of the texts and their cached vectors in one logistic regression.

Its input is `TextVectors(texts, vectors)`, the rows' texts beside the vectors a store holds for
them. The sparse block is scikit-learn's TfidfVectorizer (word 1-2-grams, sublinear tf, terms in
at least 2 training texts: the TF-IDF baseline's settings), fitted once per set of training texts
and cached (featx.heads.tfidf); the dense block is the vectors standardised on the training rows
and scaled by ``weight / sqrt(D)``, so that at weight 1 its rows have about the norm of a TF-IDF
row (1). The weight and C are chosen together by accuracy on the validation rows (the ``X_val``
given to `fit`, else a stratified `val_fraction` of the training rows), C upwards with warm starts
as the logreg head sweeps it; the weights are climbed upwards while their paths improve
(`weight_search="climb"`, featx.heads.hybrid_sweep.search_weights), or all fitted (`"grid"`), two
paths side by side; the kept model is then fitted from zero at the chosen pair on all the training
rows. Each fit is LogisticRegression's objective, on the two blocks multiplied apart, never joined
into one sparse matrix (featx.heads.logistic_columns), by L-BFGS-B, or where it is cheaper (a wide
TF-IDF, or three classes and more: featx.heads.hybrid_sweep.newton_fits), by preconditioned
truncated Newton (featx.heads.logistic_newton); both stop on the gradient.

Multi-label: one-vs-rest logistic regression of every label at once on the same stacked
features (by turned Newton at three labels and more, as for classes), weight and C chosen by
macro-F1 with each label's threshold tuned on validation.
Regression: ridge on the stacked features with alpha = 1 / C (the same grid), chosen by mean
R². For every task, each weight's C sweep goes up the grid and stops once three larger Cs in a
row score below that weight's best, and the weights are searched as `weight_search` says. Ties
are not falls, so a flat start or a plateau goes on (the multi-label logreg head's sweep,
featx.heads.logreg_multi, counts a tie as a fall).

Saved as plain tensors: the vocabulary (terms newline-joined, column order), idf, scaler, weights.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from featx.constraints import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, Constraint, Grid, Interval, Options
from featx.errors import DamagedError, ParameterError
from featx.heads.base import Head, edge_warning, register_head
from featx.heads.hybrid_sweep import WEIGHT_SEARCHES, Swept, fell, newton_fits, rank, search_weights, sweep_paths
from featx.heads.logistic_columns import Columns, class_probabilities, fit_logistic, fit_softmax, probabilities
from featx.heads.logistic_newton import (
    NewtonPath,
    fit_logistic_turned,
    fit_softmax_turned,
    principal_axes,
    turned_back,
)
from featx.heads.logreg import DEFAULT_CS
from featx.heads.split import stratified_split
from featx.heads.tfidf import HashedTexts, TfidfFit, fit_tfidf, kept_rows, restored_vectorizer
from featx.metrics import mean_r2, tuned_macro_f1
from featx.progress import progress_bar

# The dense block's weight against the TF-IDF block (1: the same row norm).
DENSE_WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class TextVectors:
    """Rows as a hybrid head reads them: each row's text and its cached vector."""

    texts: Sequence[str]
    vectors: np.ndarray

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.vectors) or np.ndim(self.vectors) != 2:
            raise ParameterError("X", f"needs one text per vector row, got {len(self.texts)} texts and vectors "
                                      f"of shape {np.shape(self.vectors)}")

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, rows: np.ndarray) -> TextVectors:
        texts = [self.texts[int(i)] for i in rows]
        hashes = getattr(self.texts, "hashes", None)  # known hashes go with their texts
        return TextVectors(texts if hashes is None else HashedTexts(texts, hashes[rows]), self.vectors[rows])


@register_head
class HybridHead(Head):
    """TF-IDF + standardised vectors in one logistic regression; see the module docstring."""

    kind = "hybrid"

    summary = "TF-IDF of the texts beside the vectors (needs --texts)"
    tasks = ("single", "multi", "regression")
    reads = ("texts", "vectors")
    parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "C": Interval(float, 0, low_open=True, allow_none=True), "Cs": Grid(POSITIVE),
        "weight": Interval(float, 0, low_open=True, allow_none=True), "weights": Grid(POSITIVE),
        "weight_search": Options(WEIGHT_SEARCHES),
        "val_fraction": FRACTION, "max_iter": COUNT, "random_state": NON_NEGATIVE}

    def __init__(self, C: float | None = None, Cs: tuple[float, ...] = DEFAULT_CS, weight: float | None = None,
                 weights: tuple[float, ...] = DENSE_WEIGHTS, weight_search: str = "climb", val_fraction: float = 0.1,
                 max_iter: int = 1000, random_state: int = 0) -> None:
        self.C = C
        self.Cs = Cs
        self.weight = weight
        self.weights = weights
        self.weight_search = weight_search
        self.val_fraction = val_fraction
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: TextVectors, y: np.ndarray, X_val: TextVectors | None = None,
            y_val: np.ndarray | None = None) -> HybridHead:
        """Choose the weight and C (unless both are given), then fit on the training rows."""
        self._validate_params()
        X, y = _text_vectors(X, "X"), np.asarray(y)
        if self._task(y) != "single":
            return self._fit_matrix(X, y, None if X_val is None else _text_vectors(X_val, "X_val"), y_val)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        weights = self.weights if self.weight is None else (self.weight,)
        Cs = self.Cs if self.C is None else (self.C,)
        self.curve_: list[dict[str, float]] = []
        parts, swept = _fitted_parts(X), None
        if len(weights) * len(Cs) == 1:
            self.weight_, self.C_, self.selection_ = float(weights[0]), float(Cs[0]), "given"
        elif X_val is not None and y_val is not None:
            swept = self._sweep(parts, X, y, _text_vectors(X_val, "X_val"), np.asarray(y_val), weights, Cs)
            self.selection_ = "validation"
        else:
            fit_rows, val_rows = stratified_split(y, self.val_fraction, self.random_state)
            self._sweep(_fitted_parts(X.take(fit_rows)), X.take(fit_rows), y[fit_rows], X.take(val_rows),
                        y[val_rows], weights, Cs)
            self.selection_ = f"{self.val_fraction:g} held out, then refit on all rows"
        (tfidf, self.scaler_), self.n_features_in_ = parts, int(X.vectors.shape[1])
        self.vectorizer_, self.tfidf_key_ = tfidf.vectorizer, tfidf.key
        # Fitted afresh from zero, as LogisticRegression(C) fits it, even where the sweep fitted these rows: a
        # warm-started fit stops elsewhere within the tolerance (0.4 point of SST-2's test accuracy). By the sweep's
        # solver: on IMDB, turned Newton 0.9 s against L-BFGS-B's 1.7 s, test 0.9052 (the optimum's) against 0.9046.
        # Where the sweep's training rows are these rows (validation given), on the blocks it prepared.
        if swept is not None:
            self.weights_ = swept.fit_from_zero(self.weight_, self.C_)
            return self
        design = self._design(X, tfidf.rows, self.scaler_, self.weight_)
        self.weights_ = (fit_softmax_turned if newton_fits(design, len(self.classes_)) else fit_softmax)(
            design, np.searchsorted(self.classes_, y), len(self.classes_), self.C_, None, self.max_iter)
        return self

    def _sweep(self, parts: tuple[TfidfFit, StandardScaler], X: TextVectors, y: np.ndarray, X_val: TextVectors,
               y_val: np.ndarray, weights: tuple[float, ...], Cs: tuple[float, ...]) -> Swept:
        """Fit every (weight, C) on `X`, score it on `X_val`, and set `curve_`, `weight_` and `C_` (ties: the
        smaller C, then the weight nearest 1). For each weight the Cs go upwards, each fit starting from the
        last; the weights' paths run side by side on one copy of the rows, one a thread (the products release
        the GIL while another path's solver steps), the last ones' products spread over the cores left free."""
        tfidf, scaler = parts
        design, held_design = self._design(X, tfidf.rows_of(X.texts), scaler, 1.0), \
            self._design(X_val, tfidf.rows_of(X_val.texts), scaler, 1.0)
        swept = sweep_paths(design, held_design, np.searchsorted(self.classes_, y), self.classes_, y_val,
                            weights, Cs, self.max_iter, f"{self.kind} head", self.weight_search)
        self.curve_ = swept.curve
        best = max(self.curve_, key=rank)
        self.weight_, self.C_ = best["weight"], best["C"]
        return swept

    def _fit_matrix(self, X: TextVectors, Y: np.ndarray, X_val: TextVectors | None,
                    Y_val: np.ndarray | None) -> HybridHead:
        """Multi-label or regression (see the module docstring): weight and C chosen on validation."""
        self.classes_ = np.arange(Y.shape[1])
        weights = self.weights if self.weight is None else (self.weight,)
        Cs = tuple(sorted(self.Cs if self.C is None else (self.C,)))
        fit_rows = np.arange(len(Y))
        if X_val is None:
            fit_rows, held_out = stratified_split(Y, self.val_fraction, self.random_state)
            X_val, Y_val = X.take(held_out), Y[held_out]
            self.selection_ = f"{self.val_fraction:g} held out, then refit on all rows"
        else:
            self.selection_ = "validation"
        Y_val = np.asarray(Y_val)
        fit = X.take(fit_rows)
        tfidf, self.scaler_ = _fitted_parts(fit)
        self.vectorizer_, self.tfidf_key_ = tfidf.vectorizer, tfidf.key
        best: dict[str, float] | None = None
        best_W, self.curve_ = np.zeros(0), []
        with progress_bar(len(set(weights)) * len(Cs), f"{self.kind} head", unit="fit") as bar:
            def path(weight: float) -> float:
                nonlocal best, best_W
                train = self._design(fit, tfidf.rows_of(fit.texts), self.scaler_, weight)
                val = self._design(X_val, tfidf.rows_of(X_val.texts), self.scaler_, weight)
                axes = principal_axes(train[1]) if self.task_ == "multi" and newton_fits(train, Y.shape[1]) else None
                if axes is not None:  # turned once a weight, not once a fit (fit_logistic_turned)
                    train[1], val[1] = train[1] @ axes, val[1] @ axes
                columns, held = (Columns(train), Columns(val)) if self.task_ == "multi" else (None, None)  # once a weight
                newton: NewtonPath | None = None
                if axes is not None and columns is not None:  # turned: by Newton, each C from the last one's optimum
                    newton = NewtonPath.logistic(columns, Y[fit_rows], self.max_iter, precondition=True)
                W, found = None, []
                for step, C in enumerate(Cs):  # upwards, each fit starting from the last
                    if columns is None:  # regression: ridge
                        W = self._solve(train, Y[fit_rows], C, W)
                    else:
                        W = fit_logistic(columns, Y[fit_rows], C, W, self.max_iter) if newton is None else newton.fit(C)
                    score = tuned_macro_f1(probabilities(held, W), Y_val) if held is not None else \
                        mean_r2(_linear(val, W), Y_val)
                    found.append(point := {"weight": float(weight), "C": float(C), "score": score})
                    if best is None or rank(point) > rank(best):
                        best, best_W = point, W if axes is None else turned_back(W.copy(), axes)
                    bar.update()
                    if fell(found):
                        bar.update(len(Cs) - 1 - step)
                        break
                self.curve_ += found
                return max(point["score"] for point in found)
            search_weights(weights, lambda side_by_side: [path(weight) for weight in side_by_side], self.weight_search)
            bar.update(len(Cs) * (len(set(weights)) - len({point["weight"] for point in self.curve_})))
        self.curve_.sort(key=lambda point: weights.index(point["weight"]))
        assert best is not None
        self.weight_, self.C_, self.weights_ = best["weight"], best["C"], best_W
        if len(weights) * len(Cs) == 1:
            self.curve_, self.selection_ = [], "given"
        self.n_features_in_ = int(X.vectors.shape[1])
        if self.task_ == "multi":  # thresholds from a model that did not train on the validation rows
            self._set_thresholds(X_val, Y_val)
        if len(fit_rows) < len(Y):  # refit on every row
            tfidf, self.scaler_ = _fitted_parts(X)
            self.vectorizer_, self.tfidf_key_ = tfidf.vectorizer, tfidf.key
            self.weights_ = self._solve(self._design(X, tfidf.rows, self.scaler_, self.weight_), Y, self.C_, None)
        return self

    def _solve(self, design: list[Any], Y: np.ndarray, C: float, start: np.ndarray | None) -> np.ndarray:
        """Weights (width + 1, outputs), intercepts last: logistic for multi-label, ridge for regression."""
        if self.task_ == "multi":  # by turned Newton where it is faster (many labels, or a wide TF-IDF)
            fit = fit_logistic_turned if newton_fits(design, Y.shape[1]) else fit_logistic
            return fit(design, Y, C, start, self.max_iter)
        ridge = Ridge(alpha=1.0 / C, solver="sparse_cg", max_iter=self.max_iter).fit(
            _joined(design), np.asarray(Y, dtype=np.float64))
        return np.vstack([np.asarray(ridge.coef_).reshape(Y.shape[1], -1).T, np.asarray(ridge.intercept_)[None]])

    def predict_values(self, X: TextVectors) -> np.ndarray:
        check_is_fitted(self)
        return _linear(self._new_design(X), self.weights_)

    def predict_proba(self, X: TextVectors) -> np.ndarray:
        check_is_fitted(self)
        design = self._new_design(X)
        if getattr(self, "task_", "single") == "multi":  # each label's probability
            return probabilities(design, self.weights_)
        return class_probabilities(design, self.weights_)

    def _new_design(self, X: TextVectors) -> list[Any]:
        """The stacked features of rows to predict: their TF-IDF rows from the cache where the fit's sweep
        left them there (its validation rows), else transformed (and not cached)."""
        X = _text_vectors(X, "X")
        rows = kept_rows(getattr(self, "tfidf_key_", None), X.texts)
        return self._design(X, self.vectorizer_.transform(X.texts) if rows is None else rows, self.scaler_,
                            self.weight_)

    @staticmethod
    def _design(X: TextVectors, tfidf_rows: Any, scaler: StandardScaler, weight: float) -> list[Any]:
        """The stacked features as their two column blocks: TF-IDF (sparse) and the scaled vectors (dense)."""
        dense = scaler.transform(np.asarray(X.vectors, dtype=np.float64)) * (weight / math.sqrt(X.vectors.shape[1]))
        return [tfidf_rows, dense]

    def describe_choice(self) -> str:
        return f"weight={self.weight_:g}, C={self.C_:.3g} ({self.selection_})"

    def selection_warning(self) -> str | None:
        swept = [("C", self.C_, self.Cs, "Cs")] if self.C is None else []
        swept += [("weight", self.weight_, self.weights, "weights")] if self.weight is None else []
        found = [w for name, chosen, grid, grid_name in swept
                 if (w := edge_warning(name, chosen, tuple(grid), self._curve_at(name), kind=self.kind,
                                       grid_name=grid_name))]
        return "; ".join(found) or None

    def _curve_at(self, name: str) -> list[dict[str, float]]:
        """The validation curve along `name` ("C" or "weight"), the other held at its chosen value."""
        other, value = ("weight", self.weight_) if name == "C" else ("C", self.C_)
        return [point for point in self.curve_ if point[other] == value]

    # ---- persistence as plain tensors (see featx.heads.base) ----

    def state_arrays(self) -> dict[str, np.ndarray]:
        check_is_fitted(self)
        terms = sorted(self.vectorizer_.vocabulary_, key=self.vectorizer_.vocabulary_.get)
        return {"coef": self.weights_[:-1].T, "intercept": self.weights_[-1], "idf": self.vectorizer_.idf_,
                "vocabulary": np.frombuffer("\n".join(terms).encode("utf-8"), dtype=np.uint8),
                "mean": self.scaler_.mean_, "scale": self.scaler_.scale_}

    def fitted_summary(self) -> dict[str, Any]:
        return {"C_": self.C_, "weight_": self.weight_, "curve_": self.curve_, "selection_": self.selection_,
                "vocabulary_size": len(self.vectorizer_.vocabulary_), "n_features_in_": self.n_features_in_}

    def check_state(self, arrays: dict[str, np.ndarray], n_classes: int) -> None:
        names = {"coef", "intercept", "idf", "vocabulary", "mean", "scale"}
        if set(arrays) != names:
            raise DamagedError(f"hybrid arrays are {sorted(arrays)}, not {sorted(names)}")
        terms = _terms(arrays["vocabulary"])
        rows = 1 if n_classes == 2 and getattr(self, "task_", "single") == "single" else n_classes
        width = len(terms) + arrays["mean"].shape[0]
        if arrays["coef"].shape != (rows, width) or arrays["intercept"].shape != (rows,) \
                or arrays["idf"].shape != (len(terms),) or arrays["scale"].shape != arrays["mean"].shape:
            raise DamagedError(f"hybrid weights do not fit {n_classes} classes, {len(terms)} terms and "
                               f"{arrays['mean'].shape[0]} vector dimensions")

    def restore(self, arrays: dict[str, np.ndarray], classes: np.ndarray, fitted: dict[str, Any]) -> HybridHead:
        self.classes_ = np.asarray(classes)
        self.C_, self.weight_ = float(fitted["C_"]), float(fitted["weight_"])
        self.curve_, self.selection_ = fitted["curve_"], fitted["selection_"]
        self.vectorizer_ = restored_vectorizer(_terms(arrays["vocabulary"]), arrays["idf"])
        self.scaler_ = StandardScaler()
        self.scaler_.mean_, self.scaler_.scale_ = arrays["mean"], arrays["scale"]
        self.scaler_.var_ = arrays["scale"] ** 2
        self.scaler_.n_features_in_ = self.n_features_in_ = int(arrays["mean"].shape[0])
        self.weights_ = np.vstack([arrays["coef"].T, arrays["intercept"][None]])
        return self


def _text_vectors(X: Any, name: str) -> TextVectors:
    if not isinstance(X, TextVectors):
        raise ParameterError(name, "must be featx.heads.hybrid.TextVectors(texts, vectors): the hybrid head reads "
                                   f"each row's text beside its vector, got {type(X).__name__}")
    return X


def _fitted_parts(X: TextVectors) -> tuple[TfidfFit, StandardScaler]:
    """The TF-IDF fit of the rows' texts (featx.heads.tfidf: once per set of texts) and their vectors' scaler."""
    return fit_tfidf(X.texts), StandardScaler().fit(np.asarray(X.vectors, dtype=np.float64))


def _joined(design: list[Any]) -> Any:
    return scipy.sparse.hstack([design[0], scipy.sparse.csr_matrix(design[1])], format="csr")


def _linear(design: list[Any], W: np.ndarray) -> np.ndarray:
    return np.asarray(_joined(design) @ W[:-1]) + W[-1]  # type: ignore[no-any-return]


def _terms(vocabulary: np.ndarray) -> list[str]:
    text = np.asarray(vocabulary, dtype=np.uint8).tobytes().decode("utf-8")
    return text.split("\n") if text else []
