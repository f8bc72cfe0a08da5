"""LogRegHead: multinomial logistic regression with C chosen on validation data."""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from featx.constraints import (
    COUNT,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    AnyOf,
    Constraint,
    Flag,
    Grid,
    Interval,
    Options,
    Weights,
)
from featx.errors import DamagedError, FeatxError
from featx.heads.base import Head, edge_warning, register_head
from featx.heads.logistic_batch import fit_standardized
from featx.heads.logistic_blocks import fit_logistic_blocks, predicted_index
from featx.heads.logistic_columns import probabilities
from featx.heads.logreg_multi import fit_multi_label
from featx.heads.rows import column_moments, take
from featx.heads.split import can_stratify, stratified_split
from featx.store.rows import StoredRows

DEFAULT_CS = tuple(float(c) for c in np.logspace(-3, 2, 11))


@register_head
class LogRegHead(Head):
    """Logistic regression (lbfgs, multinomial) on frozen features.

    With ``C=None`` the inverse regularisation C is chosen from ``Cs`` by accuracy on
    validation data: the ``X_val, y_val`` given to `fit`, else ``cv``-fold stratified
    cross-validation when ``cv`` is set, else a stratified ``val_fraction`` of the
    training rows (the final model is then refit on all of them). The chosen value is
    ``C_`` and the whole curve ``curve_`` (one ``{"C", "score"}`` per grid point).

    Multi-label (a 0/1 label matrix): one-vs-rest, every label's logistic regression at the same
    C fitted jointly (featx.heads.logreg_multi); C is chosen by macro-F1 on validation with each
    label's threshold tuned there, and the thresholds (``thresholds_``) are saved with the head.
    The sweep goes up the grid and stops once three larger Cs in a row score below the best. Both
    tasks stream: rows on disk (StoredRows) are read a block at a time, to the same choice.
    """

    kind = "logreg"
    tasks = ("single", "multi")
    streams = ("single", "multi")

    summary = "logistic regression, C swept on validation"

    parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "C": Interval(float, 0, low_open=True, allow_none=True), "Cs": Grid(POSITIVE), "standardize": Flag(),
        "class_weight": AnyOf((Options(("balanced",), allow_none=True), Weights())), "cv": Interval(int, 2, allow_none=True),
        "val_fraction": FRACTION, "max_iter": COUNT, "random_state": NON_NEGATIVE}

    def __init__(self, C: float | None = None, Cs: tuple[float, ...] = DEFAULT_CS, standardize: bool = True,
                 class_weight: str | None = None, cv: int | None = None, val_fraction: float = 0.1,
                 max_iter: int = 1000, random_state: int = 0) -> None:
        self.C = C
        self.Cs = Cs
        self.standardize = standardize
        self.class_weight = class_weight
        self.cv = cv
        self.val_fraction = val_fraction
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None) -> LogRegHead:
        """Choose C (unless given), then fit on the training rows."""
        self._validate_params()
        if self._task(y) == "multi":
            fit_multi_label(self, X, y, X_val, y_val)
            return self
        if isinstance(X, StoredRows):
            return self._fit_streamed(X, np.asarray(y), X_val, None if y_val is None else np.asarray(y_val))
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if self.C is not None:
            self.C_, self.selection_ = float(self.C), "given"
            self.curve_: list[dict[str, float]] = []
        else:
            self.C_, self.curve_, self.selection_ = self._select_C(X, y, X_val, y_val)
        self.scaler_, self.model_ = self._fit_one(X, y, self.C_)
        self.n_iter_ = self.model_.n_iter_
        return self

    def _fit_streamed(self, X: StoredRows, y: np.ndarray, X_val: Any, y_val: np.ndarray | None) -> LogRegHead:
        """The single-label fit from rows on disk, a block at a time (featx.heads.logistic_blocks): the
        same objective, solver, C sweep (upwards, warm-started) and choice as the in-memory fit."""
        if self.cv:
            raise FeatxError("logreg cv=K needs the training rows in memory: drop cv, or raise featx train "
                             "--memory-budget above the store's size")
        self._check_rows(X)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        fit_rows = np.arange(len(y))
        how = "validation"
        if X_val is None and can_stratify(y, 2):
            fit_rows, held_out = stratified_split(y, self.val_fraction, self.random_state)
            X_val, y_val, how = take(X, held_out), y[held_out], "held-out fraction"
        if self.C is not None:
            self.C_, self.curve_, self.selection_ = float(self.C), [], "given"
        elif X_val is None or y_val is None:
            self.C_, self.curve_, self.selection_ = 1.0, [], "default (too few rows per class to select)"
        else:
            self._check_rows(X_val, reset=False)
            X_fit, y_fit = take(X, fit_rows), y[fit_rows]
            moments = self._moments(X_fit)
            curve, weights = [], None
            for C in sorted(self.Cs):  # upwards, each fit starting from the last
                weights = self._fit_blocks(X_fit, y_fit, C, moments, weights)[0]
                predicted = self.classes_[predicted_index(X_val, weights, *moments)]
                curve.append({"C": float(C), "score": float(np.mean(predicted == y_val))})
            self.C_, self.curve_, self.selection_ = self._best(curve, how)
        moments = self._moments(X)
        weights, iterations = self._fit_blocks(X, y, self.C_, moments, None)
        self._set_weights(weights, iterations, _scaler(*moments, self.n_features_in_) if self.standardize else None)
        return self

    def batch_key(self, X: Any, y: np.ndarray) -> tuple[Any, ...] | None:
        """C given, the rows in memory, one class a row: heads that differ only in C fit together."""
        alone = self.C is None or self.cv or not isinstance(X, np.ndarray) or np.ndim(y) != 1
        return None if alone else (self.standardize, self.class_weight, self.max_iter)

    @classmethod
    def fit_batch(cls, heads: list[Head], X: np.ndarray, y: np.ndarray, X_val: Any = None,
                  y_val: np.ndarray | None = None, done: Callable[[int], object] | None = None) -> None:
        """Fit heads with equal `batch_key`s at once (featx.heads.logistic_batch: lockstep L-BFGS, warm starts
        along the C path); each ends as its own fit at that C would, within the solver's tolerance."""
        first = heads[0]
        assert all(isinstance(head, LogRegHead) for head in heads) and isinstance(first, LogRegHead)
        for head in heads:
            head._validate_params()
            head._task(y)
        X, y = validate_data(first, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        classes, scaler, fit = fit_standardized(X, y, [float(head.C) for head in heads], standardize=first.standardize,
                                                class_weight=first.class_weight, max_iter=first.max_iter, done=done)
        for head, found, iterations in zip(heads, fit.weights, fit.iterations):
            head.n_features_in_, head.classes_ = X.shape[1], classes
            head.C_, head.curve_, head.selection_ = float(head.C), [], "given"
            head._set_weights(found, int(iterations), scaler)

    def _set_weights(self, weights: np.ndarray, iterations: int, scaler: StandardScaler | None) -> None:
        """The fitted state from weights (k, d + 1), the intercepts last, found outside scikit-learn."""
        self.scaler_ = scaler
        self.model_ = self._model(weights[:, :-1], weights[:, -1])
        self.n_iter_ = self.model_.n_iter_ = np.array([iterations])

    def _moments(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        return column_moments(X) if self.standardize else (np.zeros(X.shape[1]), np.ones(X.shape[1]))

    def _fit_blocks(self, X: Any, y: np.ndarray, C: float, moments: tuple[np.ndarray, np.ndarray],
                    init: np.ndarray | None) -> tuple[np.ndarray, int]:
        y_index = np.searchsorted(self.classes_, y)
        weights = None if self.class_weight is None else \
            compute_class_weight(self.class_weight, classes=self.classes_, y=y)[y_index]
        return fit_logistic_blocks(X, y_index, len(self.classes_), C, mean=moments[0], scale=moments[1],
                                   sample_weight=weights, init=init, max_iter=self.max_iter)

    def _model(self, coef: np.ndarray, intercept: np.ndarray) -> LogisticRegression:
        """A fitted LogisticRegression holding these weights (a restored or streamed fit)."""
        model = clone(self._new_model(self.C_))
        model.coef_, model.intercept_, model.classes_ = coef, intercept, self.classes_
        model.n_features_in_ = self.n_features_in_
        return model

    def _select_C(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None,
                  y_val: np.ndarray | None) -> tuple[float, list[dict[str, float]], str]:
        if X_val is not None:
            X_val = validate_data(self, X_val, reset=False, dtype=[np.float64, np.float32])
            return self._best(self._curve([(X, y, X_val, np.asarray(y_val))]), "validation")
        if self.cv and can_stratify(y, self.cv):
            folds = StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state).split(X, y)
            return self._best(self._curve([(X[a], y[a], X[b], y[b]) for a, b in folds]), f"{self.cv}-fold")
        if can_stratify(y, 2):
            train, held_out = stratified_split(y, self.val_fraction, self.random_state)
            return self._best(self._curve([(X[train], y[train], X[held_out], y[held_out])]), "held-out fraction")
        return 1.0, [], "default (too few rows per class to select)"

    def _curve(self, splits: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> list[dict[str, float]]:
        """Mean validation accuracy at each C, walking C upwards with warm starts."""
        scores = np.zeros(len(self.Cs))
        for X_train, y_train, X_val, y_val in splits:
            scaler = StandardScaler().fit(X_train) if self.standardize else None
            X_train_s = scaler.transform(X_train) if scaler else X_train
            X_val_s = scaler.transform(X_val) if scaler else X_val
            model = self._new_model(self.Cs[0], warm_start=True)
            for i, C in enumerate(sorted(self.Cs)):
                model.set_params(C=C)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model.fit(X_train_s, y_train)
                scores[i] += model.score(X_val_s, y_val) / len(splits)
        return [{"C": float(C), "score": float(s)} for C, s in zip(sorted(self.Cs), scores)]

    @staticmethod
    def _best(curve: list[dict[str, float]], how: str) -> tuple[float, list[dict[str, float]], str]:
        # Ties go to the smaller C: the more regularised model.
        best = max(curve, key=lambda point: (point["score"], -point["C"]))
        return best["C"], curve, how

    def _new_model(self, C: float, warm_start: bool = False) -> LogisticRegression:
        return LogisticRegression(C=C, class_weight=self.class_weight, max_iter=self.max_iter,
                                  warm_start=warm_start, random_state=self.random_state)

    def _fit_one(self, X: np.ndarray, y: np.ndarray, C: float) -> tuple[StandardScaler | None, LogisticRegression]:
        scaler = StandardScaler().fit(X) if self.standardize else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = self._new_model(C).fit(scaler.transform(X) if scaler else X, y)
        return scaler, model

    def _transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self.scaler_.transform(X) if self.scaler_ is not None else X

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        X = self._transform(X)
        if self.model_ is None:  # multi-label: each label's log-odds
            return np.asarray(X @ self.weights_[:-1] + self.weights_[-1])
        result: np.ndarray = self.model_.decision_function(X)
        return result

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = self._transform(X)
        if self.model_ is None:  # multi-label: each label's probability
            return probabilities(X, self.weights_)
        result: np.ndarray = self.model_.predict_proba(X)
        return result

    # ---- persistence as plain tensors (see featx.heads.base) ----

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The fitted numbers, for safetensors: coefficients, intercepts, scaler."""
        check_is_fitted(self)
        coef, intercept = (self.weights_[:-1].T, self.weights_[-1]) if self.model_ is None else \
            (self.model_.coef_, self.model_.intercept_)
        state = {"coef": coef, "intercept": intercept}
        if self.scaler_ is not None:
            state.update(mean=self.scaler_.mean_, scale=self.scaler_.scale_)
        return {k: np.ascontiguousarray(v) for k, v in state.items()}

    def check_state(self, arrays: dict[str, np.ndarray], n_classes: int) -> None:
        """Refuse saved arrays whose names or shapes do not make this head for `n_classes` classes."""
        coef, intercept = arrays.get("coef"), arrays.get("intercept")
        rows = 1 if n_classes == 2 and getattr(self, "task_", "single") == "single" else n_classes
        if coef is None or intercept is None or coef.ndim != 2 or coef.shape[0] != rows \
                or intercept.shape != (rows,):
            raise DamagedError(f"logreg weights do not fit {n_classes} classes (coef "
                               f"{None if coef is None else coef.shape}, intercept "
                               f"{None if intercept is None else intercept.shape})")
        scaled = {"mean", "scale"} & set(arrays)
        if (scaled and scaled != {"mean", "scale"}) or any(arrays[k].shape != (coef.shape[1],) for k in scaled) \
                or bool(scaled) != bool(self.standardize):
            raise DamagedError("logreg standardisation arrays are missing or do not fit the weights")

    def restore(self, arrays: dict[str, np.ndarray], classes: np.ndarray, fitted: dict[str, Any]) -> LogRegHead:
        """Rebuild the fitted head from `state_arrays()` output, without refitting."""
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = int(arrays["coef"].shape[1])
        self.C_, self.curve_, self.selection_ = fitted["C_"], fitted["curve_"], fitted["selection_"]
        self.scaler_ = _scaler(arrays["mean"], arrays["scale"], self.n_features_in_) if "mean" in arrays else None
        self.n_iter_ = np.asarray(fitted.get("n_iter_", [0]))
        if getattr(self, "task_", "single") == "multi":
            self.model_, self.weights_ = None, np.vstack([arrays["coef"].T, arrays["intercept"][None]])
            return self
        self.model_ = self._model(arrays["coef"], arrays["intercept"])
        return self

    def describe_choice(self) -> str:
        return f"C={self.C_:.3g} ({self.selection_})"

    def selection_warning(self) -> str | None:
        return edge_warning("C", self.C_, tuple(self.Cs), self.curve_, kind=self.kind, grid_name="Cs")

    def fitted_summary(self) -> dict[str, Any]:
        """JSON-ready facts of the fit: chosen C and how, the curve."""
        return {"C_": self.C_, "curve_": self.curve_, "selection_": self.selection_,
                "n_iter_": np.asarray(self.n_iter_).tolist()}


def _scaler(mean: np.ndarray, scale: np.ndarray, n_features: int) -> StandardScaler:
    """A fitted StandardScaler holding these moments (a restored or streamed fit)."""
    scaler = StandardScaler()
    scaler.mean_, scaler.scale_, scaler.var_, scaler.n_features_in_ = mean, scale, scale ** 2, n_features
    return scaler
