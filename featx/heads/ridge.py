"""RidgeHead: closed-form ridge classification, every alpha of a sweep from one eigendecomposition."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from scipy.special import expit, softmax
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from featx.constraints import FRACTION, NON_NEGATIVE, POSITIVE, Constraint, Grid, Interval
from featx.errors import DamagedError
from featx.heads.base import Head, edge_warning, register_head
from featx.heads.rows import column_moments, map_blocks, row_slices, take
from featx.heads.split import can_stratify, stratified_split
from featx.metrics import mean_r2, tuned_macro_f1

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 15))
# Probabilities are softmax(t * scores), t chosen by validation log-loss on this grid.
_TEMPERATURES = np.logspace(-2, 3, 81)


@register_head
class RidgeHead(Head):
    """One-vs-rest least squares on ±1 targets with an L2 penalty (scikit-learn's
    RidgeClassifier), on standardised features.

    The features' Gram matrix is decomposed once, so each alpha of the sweep costs one
    d×d×k product: sweeping 15 alphas costs about as much as fitting one. With
    ``alpha=None`` it is chosen by accuracy on the validation rows given to `fit`, else on
    a stratified ``val_fraction`` of train (then refit on all rows). Ridge gives scores,
    not probabilities: `predict_proba` is the softmax of the scores times a temperature
    fitted on the same validation rows (``temperature_``), so probabilities are calibrated
    and never change which class wins.

    Multi-label: the same least squares on each label's ±1 column; a label's probability is the
    sigmoid of its score times a temperature fitted the same way, and its threshold is chosen on
    validation. Regression: least squares on the targets themselves (one alpha for all of
    them), alpha chosen by mean R² on validation.
    """

    kind = "ridge"
    tasks = streams = ("single", "multi", "regression")

    summary = "ridge in closed form (classes, labels or targets), alpha swept"

    parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "alpha": Interval(float, 0, low_open=True, allow_none=True), "alphas": Grid(POSITIVE),
        "val_fraction": FRACTION, "random_state": NON_NEGATIVE}

    def __init__(self, alpha: float | None = None, alphas: tuple[float, ...] = DEFAULT_ALPHAS,
                 val_fraction: float = 0.1, random_state: int = 0) -> None:
        self.alpha = alpha
        self.alphas = alphas
        self.val_fraction = val_fraction
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None) -> RidgeHead:
        self._validate_params()
        if self._task(y) != "single":
            return self._fit_matrix(X, np.asarray(y), X_val, y_val)
        X, y = self._check_rows(X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if X_val is not None:
            X_val = self._check_rows(X_val, reset=False, dtype=[np.float64, np.float32])
            val_index = np.searchsorted(self.classes_, np.asarray(y_val))
            fit_rows, self.selection_ = np.arange(len(y)), "validation"
        elif can_stratify(y_index, 2):
            fit_rows, held_out = stratified_split(y_index, self.val_fraction, self.random_state)
            X_val, val_index, self.selection_ = take(X, held_out), y_index[held_out], "held-out fraction"
        else:
            fit_rows, val_index, self.selection_ = np.arange(len(y)), None, "default (too few rows to select)"
        self._fit_single(_RidgeSolver(take(X, fit_rows), _one_hot(y_index[fit_rows], len(self.classes_))), X, y_index,
                         X_val, val_index)
        return self

    def _fit_single(self, solver: _RidgeSolver, X: Any, y_index: np.ndarray, X_val: Any,
                    val_index: np.ndarray | None) -> None:
        """Alpha (given or chosen on validation), coefficients and temperature from the fit rows' `solver`."""
        if self.alpha is not None:
            self.alpha_, self.selection_ = float(self.alpha), "given"
            self.curve_: list[dict[str, float]] = []
        elif val_index is None:
            self.alpha_, self.curve_ = 1.0, []
        else:
            assert X_val is not None
            self.curve_ = [{"alpha": float(a), "score": float(np.mean(
                solver.scores(X_val, a).argmax(1) == val_index))} for a in sorted(self.alphas)]
            # Ties go to the larger alpha: the more regularised model.
            self.alpha_ = max(self.curve_, key=lambda p: (p["score"], p["alpha"]))["alpha"]
        # The temperature is fitted on rows the scoring model was not trained on, where there are any.
        calibration = (solver.scores(X_val, self.alpha_), val_index) \
            if X_val is not None and val_index is not None else None
        if self.selection_ == "held-out fraction":
            solver = _RidgeSolver(X, _one_hot(y_index, len(self.classes_)))  # refit on every row
        self.mean_, self.scale_ = solver.mean, solver.scale
        self.coef_, self.intercept_ = solver.coefficients(self.alpha_)
        self.temperature_ = _fit_temperature(*(calibration or (self._scores(X), y_index)))

    def batch_key(self, X: Any, y: np.ndarray) -> tuple[Any, ...] | None:
        """alpha given, the rows in memory, one class a row: heads that differ only in alpha fit together."""
        return None if self.alpha is None or not isinstance(X, np.ndarray) or np.ndim(y) != 1 else ("single",)

    @classmethod
    def fit_batch(cls, heads: list[Head], X: np.ndarray, y: np.ndarray, X_val: Any = None,
                  y_val: np.ndarray | None = None, done: Callable[[int], object] | None = None) -> None:
        """Fit heads with equal `batch_key`s from one decomposition of the training rows' Gram matrix;
        each ends as its own fit would (the same closed form). Without validation rows each fits alone
        (its own held-out fraction)."""
        assert all(isinstance(head, RidgeHead) for head in heads)
        if X_val is None or y_val is None:
            for head in heads:
                head.fit(X, y)
                if done:
                    done(1)
            return
        first = heads[0]
        for head in heads:
            head._validate_params()
            head._task(y)
        X, y = first._check_rows(X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        classes, y_index = np.unique(y, return_inverse=True)
        X_val = first._check_rows(X_val, reset=False, dtype=[np.float64, np.float32])
        val_index = np.searchsorted(classes, np.asarray(y_val))
        solver = _RidgeSolver(X, _one_hot(y_index, len(classes)))
        for head in heads:
            assert isinstance(head, RidgeHead)
            head.classes_, head.n_features_in_, head.selection_ = classes, X.shape[1], "validation"
            head._fit_single(solver, X, y_index, X_val, val_index)
            if done:
                done(1)

    def _fit_matrix(self, X: np.ndarray, Y: np.ndarray, X_val: np.ndarray | None,
                    Y_val: np.ndarray | None) -> RidgeHead:
        """Multi-label (±1 columns) or regression (the targets): alpha by tuned macro-F1 or mean R²."""
        X, Y = self._check_rows(X, Y, dtype=[np.float64, np.float32], multi_output=True)
        multi = self.task_ == "multi"
        targets = (2.0 * Y - 1.0) if multi else np.asarray(Y, dtype=np.float64)
        self.classes_ = np.arange(Y.shape[1])
        fit_rows = np.arange(len(Y))
        if X_val is not None:
            X_val, Y_val, self.selection_ = self._check_rows(X_val, reset=False, dtype=[np.float64, np.float32]), \
                np.asarray(Y_val), "validation"
        elif can_stratify(Y, 2):
            fit_rows, held_out = stratified_split(Y, self.val_fraction, self.random_state)
            X_val, Y_val, self.selection_ = take(X, held_out), Y[held_out], "held-out fraction"
        else:
            self.selection_ = "default (too few rows to select)"
        solver = _RidgeSolver(take(X, fit_rows), targets[fit_rows])
        self.curve_ = []
        if self.alpha is not None or X_val is None or Y_val is None:
            self.alpha_ = 1.0 if self.alpha is None else float(self.alpha)
            self.selection_ = "given" if self.alpha is not None else self.selection_
        else:
            score = tuned_macro_f1 if multi else mean_r2
            self.curve_ = [{"alpha": float(a), "score": score(solver.scores(X_val, a), Y_val)} for a in sorted(self.alphas)]
            self.alpha_ = max(self.curve_, key=lambda p: (p["score"], p["alpha"]))["alpha"]
        self.mean_, self.scale_ = solver.mean, solver.scale
        self.coef_, self.intercept_ = solver.coefficients(self.alpha_)
        self.temperature_ = 1.0
        if multi:  # the sigmoid's temperature and the thresholds, on rows the scores did not train on
            calibration = (X_val, Y_val) if X_val is not None else (X, Y)
            self.temperature_ = _fit_sigmoid_temperature(self._scores(calibration[0]), np.asarray(calibration[1]))
            self._set_thresholds(X_val, Y_val)
        if len(fit_rows) < len(Y):  # refit on every row
            solver = _RidgeSolver(X, targets)
            self.mean_, self.scale_ = solver.mean, solver.scale
            self.coef_, self.intercept_ = solver.coefficients(self.alpha_)
        return self

    def predict_values(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        result: np.ndarray = self._scores(validate_data(self, X, reset=False, dtype=[np.float64, np.float32]))
        return result

    def _scores(self, X: Any) -> np.ndarray:
        return _linear_scores(X, self.mean_, self.scale_, self.coef_, self.intercept_)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        if self.task_ == "multi":
            shares: np.ndarray = expit(self.temperature_ * self._scores(X))
            return shares
        result: np.ndarray = softmax(self.temperature_ * self._scores(X), axis=1)
        return result

    def describe_choice(self) -> str:
        return f"alpha={self.alpha_:.3g} ({self.selection_})"

    def selection_warning(self) -> str | None:
        return edge_warning("alpha", self.alpha_, tuple(self.alphas), self.curve_, kind=self.kind,
                            grid_name="alphas")

    def state_arrays(self) -> dict[str, np.ndarray]:
        check_is_fitted(self)
        return {"coef": self.coef_, "intercept": self.intercept_, "mean": self.mean_, "scale": self.scale_}

    def fitted_summary(self) -> dict[str, Any]:
        return {"alpha_": self.alpha_, "curve_": self.curve_, "selection_": self.selection_,
                "temperature_": float(self.temperature_)}

    def check_state(self, arrays: dict[str, np.ndarray], n_classes: int) -> None:
        coef = arrays.get("coef")
        if coef is None or coef.ndim != 2 or coef.shape[0] != n_classes or set(arrays) != {
                "coef", "intercept", "mean", "scale"} or arrays["intercept"].shape != (n_classes,) \
                or any(arrays[k].shape != (coef.shape[1],) for k in ("mean", "scale")):
            raise DamagedError(f"ridge weights do not fit {n_classes} classes")

    def restore(self, arrays: dict[str, np.ndarray], classes: np.ndarray, fitted: dict[str, Any]) -> RidgeHead:
        self.classes_ = np.asarray(classes)
        self.coef_, self.intercept_ = arrays["coef"], arrays["intercept"]
        self.mean_, self.scale_ = arrays["mean"], arrays["scale"]
        self.n_features_in_ = int(self.coef_.shape[1])
        self.alpha_, self.curve_, self.selection_ = fitted["alpha_"], fitted["curve_"], fitted["selection_"]
        self.temperature_ = float(fitted["temperature_"])
        return self


def _one_hot(y_index: np.ndarray, n_classes: int) -> np.ndarray:
    """±1 targets: +1 in each row's class column."""
    targets = -np.ones((len(y_index), n_classes))
    targets[np.arange(len(y_index)), y_index] = 1.0
    return targets


def _fit_sigmoid_temperature(scores: np.ndarray, truth: np.ndarray) -> float:
    """The t of sigmoid(t * scores) with the least binary log-loss on 0/1 `truth`."""
    losses = [np.mean(np.logaddexp(0.0, t * scores) - truth * t * scores) for t in _TEMPERATURES]
    return float(_TEMPERATURES[int(np.argmin(losses))])


# Rows standardised and multiplied at a time: the solver holds one block in float64 (8,192 x 384 x 8
# bytes is 25 MB), never a float64 copy of X, so its memory does not grow with the rows.
SOLVER_BLOCK_ROWS = 8192


class _RidgeSolver:
    """Standardise, centre, decompose X'X once; coefficients for any alpha from that.

    X is read in blocks of SOLVER_BLOCK_ROWS rows, twice: the column moments (combined block by
    block, as a two-pass variance is, so they equal StandardScaler's to rounding), then the Gram
    matrix of the standardised rows and their product with the centred targets, both accumulated
    in float64. X may be any array sliced by rows (an h5py dataset too): the closed form is the
    in-memory one, its memory one block."""

    def __init__(self, X: Any, targets: np.ndarray) -> None:
        self.mean, self.scale = column_moments(X, SOLVER_BLOCK_ROWS)
        self.target_mean = targets.mean(0)
        gram = np.zeros((X.shape[1], X.shape[1]))
        cross = np.zeros((X.shape[1],) + targets.shape[1:])
        for rows in row_slices(X, SOLVER_BLOCK_ROWS):
            block = (np.asarray(X[rows], dtype=np.float64) - self.mean) / self.scale
            gram += block.T @ block
            cross += block.T @ (np.asarray(targets[rows], dtype=np.float64) - self.target_mean)
        self.eigenvalues, self.eigenvectors = np.linalg.eigh(gram)
        self.projected = self.eigenvectors.T @ cross

    def coefficients(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """(coef (k, d) on standardised features, intercept (k,))."""
        coef = self.eigenvectors @ (self.projected / (np.maximum(self.eigenvalues, 0.0) + alpha)[:, None])
        return coef.T, self.target_mean.copy()

    def scores(self, X: Any, alpha: float) -> np.ndarray:
        return _linear_scores(X, self.mean, self.scale, *self.coefficients(alpha))


def _linear_scores(X: Any, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """The scores of standardised rows of X (an array or StoredRows, a block at a time) under (coef, intercept)."""
    return map_blocks(lambda block: ((np.asarray(block, dtype=np.float64) - mean) / scale) @ coef.T + intercept, X)


def _fit_temperature(scores: np.ndarray, y_index: np.ndarray) -> float:
    """The t of softmax(t * scores) with the least log-loss on (scores, y_index)."""
    rows = np.arange(len(y_index))
    losses = [-np.log(np.maximum(softmax(t * scores, axis=1)[rows, y_index], 1e-300)).mean() for t in _TEMPERATURES]
    return float(_TEMPERATURES[int(np.argmin(losses))])
