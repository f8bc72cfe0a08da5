"""The hybrid head: TF-IDF of the texts and their cached vectors in one logistic regression.

Its input is `TextVectors(texts, vectors)`, the rows' texts beside the vectors a store
holds for them. The sparse block is scikit-learn's TfidfVectorizer (word 1-2-grams,
sublinear tf, terms in at least 2 training texts: the TF-IDF baseline's settings); the
dense block is the vectors standardised on the training rows and scaled by
``weight / sqrt(D)``, so that at weight 1 its rows have about the norm of a TF-IDF row
(1). The weight and C are chosen together by accuracy on the validation rows (the
``X_val`` given to `fit`, else a stratified `val_fraction` of the training rows, then
refit on all of them), C upwards with warm starts as the logreg head sweeps it.

Multi-label: one-vs-rest logistic regression of every label at once on the same stacked
features (featx.heads.multilabel), weight and C chosen by macro-F1 with each label's threshold
tuned on validation. Regression: ridge on the stacked features with alpha = 1 / C (the same
grid), chosen by mean R². For each weight the C sweep goes up the grid and stops once three
larger Cs in a row score below that weight's best (as the multi-label logreg head's).

Saved as plain tensors: the vocabulary (its terms, newline-joined UTF-8 bytes, in
column order), the idf, the standardisation, the coefficients and intercepts.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from featx.constraints import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, Constraint, Grid, Interval
from featx.errors import DamagedError, FeatxError, ParameterError
from featx.heads.base import Head, edge_warning, register_head
from featx.heads.logreg import DEFAULT_CS, PATIENCE
from featx.heads.multilabel import fit_logistic, probabilities
from featx.heads.split import stratified_split
from featx.metrics import mean_r2, tuned_macro_f1
from featx.progress import progress_bar
from featx.store import FeatureStore

TFIDF_PARAMS: dict[str, Any] = {"ngram_range": (1, 2), "sublinear_tf": True, "min_df": 2}
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
        return TextVectors([self.texts[int(i)] for i in rows], self.vectors[rows])


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
        "val_fraction": FRACTION, "max_iter": COUNT, "random_state": NON_NEGATIVE}

    def __init__(self, C: float | None = None, Cs: tuple[float, ...] = DEFAULT_CS, weight: float | None = None,
                 weights: tuple[float, ...] = DENSE_WEIGHTS, val_fraction: float = 0.1, max_iter: int = 1000,
                 random_state: int = 0) -> None:
        self.C = C
        self.Cs = Cs
        self.weight = weight
        self.weights = weights
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
        if len(weights) * len(Cs) == 1:
            self.curve_: list[dict[str, float]] = []
            self.weight_, self.C_, self.selection_ = float(weights[0]), float(Cs[0]), "given"
        elif X_val is not None and y_val is not None:
            self.curve_ = self._curve(X, y, _text_vectors(X_val, "X_val"), np.asarray(y_val), weights, Cs)
            self.selection_ = "validation"
        else:
            fit_rows, val_rows = stratified_split(y, self.val_fraction, self.random_state)
            self.curve_ = self._curve(X.take(fit_rows), y[fit_rows], X.take(val_rows), y[val_rows], weights, Cs)
            self.selection_ = f"{self.val_fraction:g} held out, then refit on all rows"
        if self.curve_:  # ties: the smaller C, then the weight nearest 1
            best = max(self.curve_, key=lambda p: (p["score"], -p["C"], -abs(math.log(p["weight"]))))
            self.weight_, self.C_ = best["weight"], best["C"]
        self.vectorizer_, self.scaler_ = _fitted_parts(X)
        self.model_ = _logistic(self.C_, self.max_iter, self.random_state)
        _fit_quietly(self.model_, self._stacked(X, self.vectorizer_, self.scaler_, self.weight_), y)
        self.n_features_in_ = int(X.vectors.shape[1])
        return self

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
        self.vectorizer_, self.scaler_ = _fitted_parts(fit)
        best: tuple[float, float, float, np.ndarray] | None = None
        self.curve_ = []
        with progress_bar(len(weights) * len(Cs), f"{self.kind} head", unit="fit") as bar:
            for weight in weights:
                train = self._design(fit, self.vectorizer_, self.scaler_, weight)
                val = self._design(X_val, self.vectorizer_, self.scaler_, weight)
                W, here, falling = None, -math.inf, 0
                for C in Cs:  # upwards, each fit starting from the last
                    W = self._solve(train, Y[fit_rows], C, W)
                    score = tuned_macro_f1(probabilities(val, W), Y_val) if self.task_ == "multi" else \
                        mean_r2(_linear(_joined(val), W), Y_val)
                    self.curve_.append({"weight": float(weight), "C": float(C), "score": score})
                    if best is None or (score, -C, -abs(math.log(weight))) > (best[0], -best[2], -abs(math.log(best[1]))):
                        best = (score, float(weight), float(C), W)
                    bar.update()
                    here, falling = (score, 0) if score > here else (here, falling + 1)
                    if falling >= PATIENCE:  # below this weight's best at each of the last larger Cs
                        bar.update(len(Cs) - 1 - Cs.index(C))
                        break
        assert best is not None
        _, self.weight_, self.C_, self.weights_ = best
        if len(weights) * len(Cs) == 1:
            self.curve_, self.selection_ = [], "given"
        self.model_, self.n_features_in_ = None, int(X.vectors.shape[1])
        if self.task_ == "multi":  # thresholds from a model that did not train on the validation rows
            self._set_thresholds(X_val, Y_val)
        if len(fit_rows) < len(Y):  # refit on every row
            self.vectorizer_, self.scaler_ = _fitted_parts(X)
            self.weights_ = self._solve(self._design(X, self.vectorizer_, self.scaler_, self.weight_), Y, self.C_, None)
        return self

    def _solve(self, design: list[Any], Y: np.ndarray, C: float, start: np.ndarray | None) -> np.ndarray:
        """Weights (width + 1, outputs), intercepts last: logistic for multi-label, ridge for regression."""
        if self.task_ == "multi":
            return fit_logistic(design, Y, C, start, self.max_iter)
        ridge = Ridge(alpha=1.0 / C, solver="sparse_cg", max_iter=self.max_iter).fit(
            _joined(design), np.asarray(Y, dtype=np.float64))
        return np.vstack([np.asarray(ridge.coef_).reshape(Y.shape[1], -1).T, np.asarray(ridge.intercept_)[None]])

    def predict_values(self, X: TextVectors) -> np.ndarray:
        check_is_fitted(self)
        return _linear(self._stacked(_text_vectors(X, "X"), self.vectorizer_, self.scaler_, self.weight_), self.weights_)

    @staticmethod
    def _design(X: TextVectors, vectorizer: TfidfVectorizer, scaler: StandardScaler, weight: float) -> list[Any]:
        """The stacked features as their two column blocks: TF-IDF (sparse) and the scaled vectors (dense)."""
        dense = scaler.transform(np.asarray(X.vectors, dtype=np.float64)) * (weight / math.sqrt(X.vectors.shape[1]))
        return [vectorizer.transform(X.texts), dense]

    def _curve(self, X: TextVectors, y: np.ndarray, X_val: TextVectors, y_val: np.ndarray,
               weights: tuple[float, ...], Cs: tuple[float, ...]) -> list[dict[str, float]]:
        vectorizer, scaler = _fitted_parts(X)
        curve = []
        with progress_bar(len(weights) * len(Cs), f"{self.kind} head", unit="fit") as bar:
            for weight in weights:
                train = self._stacked(X, vectorizer, scaler, weight)
                val = self._stacked(X_val, vectorizer, scaler, weight)
                model = _logistic(min(Cs), self.max_iter, self.random_state, warm_start=True)
                for C in sorted(Cs):  # upwards with warm starts
                    model.set_params(C=C)
                    _fit_quietly(model, train, y)
                    curve.append({"weight": float(weight), "C": float(C), "score": float(model.score(val, y_val))})
                    bar.update()
        return curve

    def _stacked(self, X: TextVectors, vectorizer: TfidfVectorizer, scaler: StandardScaler, weight: float) -> Any:
        return _joined(self._design(X, vectorizer, scaler, weight))

    def predict_proba(self, X: TextVectors) -> np.ndarray:
        check_is_fitted(self)
        design = self._design(_text_vectors(X, "X"), self.vectorizer_, self.scaler_, self.weight_)
        if self.model_ is None:  # multi-label: each label's probability
            return probabilities(design, self.weights_)
        result: np.ndarray = self.model_.predict_proba(_joined(design))
        return result

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
        coef, intercept = (self.weights_[:-1].T, self.weights_[-1]) if self.model_ is None else \
            (self.model_.coef_, self.model_.intercept_)
        return {"coef": coef, "intercept": intercept, "idf": self.vectorizer_.idf_,
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
        self.vectorizer_ = TfidfVectorizer(**TFIDF_PARAMS)
        self.vectorizer_.vocabulary_ = {term: i for i, term in enumerate(_terms(arrays["vocabulary"]))}
        self.vectorizer_.idf_ = arrays["idf"]
        self.scaler_ = StandardScaler()
        self.scaler_.mean_, self.scaler_.scale_ = arrays["mean"], arrays["scale"]
        self.scaler_.var_ = arrays["scale"] ** 2
        self.scaler_.n_features_in_ = self.n_features_in_ = int(arrays["mean"].shape[0])
        if getattr(self, "task_", "single") != "single":
            self.model_, self.weights_ = None, np.vstack([arrays["coef"].T, arrays["intercept"][None]])
            return self
        model = _logistic(self.C_, self.max_iter, self.random_state)
        model.coef_, model.intercept_, model.classes_ = arrays["coef"], arrays["intercept"], self.classes_
        model.n_features_in_ = int(arrays["coef"].shape[1])
        self.model_ = model
        return self


class MatchedTexts(list):  # type: ignore[type-arg]
    """Texts checked against one store's rows (`key`: its path and fingerprint): checking them
    against that store again hashes nothing."""

    def __init__(self, texts: Sequence[str], key: tuple[str, str]) -> None:
        super().__init__(texts)
        self.key = key


def check_texts_match(store: FeatureStore, texts: Sequence[str], name: str) -> MatchedTexts:
    """`texts`, refused unless they are exactly the texts `store`'s rows were made from, in order
    (by each row's content sha256), so a text is never paired with another row's vector. Texts a
    check returned are not hashed again for the same store (a run checks each split's once)."""
    from featx.featurizers.text import text_hashes

    key = (str(store.path), store.fingerprint)
    if isinstance(texts, MatchedTexts) and texts.key == key:
        return texts
    if len(texts) != len(store) or not np.array_equal(store.content_sha256, text_hashes(texts)):
        raise FeatxError(f"{name} does not hold the texts of {store.path} row for row (the rows' content hashes "
                         "differ): give the input the store was extracted from, read with the same columns")
    return MatchedTexts(texts, key)


def _text_vectors(X: Any, name: str) -> TextVectors:
    if not isinstance(X, TextVectors):
        raise ParameterError(name, "must be featx.heads.hybrid.TextVectors(texts, vectors): the hybrid head reads "
                                   f"each row's text beside its vector, got {type(X).__name__}")
    return X


def _fitted_parts(X: TextVectors) -> tuple[TfidfVectorizer, StandardScaler]:
    return TfidfVectorizer(**TFIDF_PARAMS).fit(X.texts), StandardScaler().fit(np.asarray(X.vectors, dtype=np.float64))


def _logistic(C: float, max_iter: int, seed: int, warm_start: bool = False) -> LogisticRegression:
    return LogisticRegression(C=C, max_iter=max_iter, random_state=seed, warm_start=warm_start)


def _fit_quietly(model: LogisticRegression, X: Any, y: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)


def _joined(design: list[Any]) -> Any:
    return scipy.sparse.hstack([design[0], scipy.sparse.csr_matrix(design[1])], format="csr")


def _linear(X: Any, W: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.asarray(X @ W[:-1]) + W[-1]
    return result


def _terms(vocabulary: np.ndarray) -> list[str]:
    text = np.asarray(vocabulary, dtype=np.uint8).tobytes().decode("utf-8")
    return text.split("\n") if text else []
