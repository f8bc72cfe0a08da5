"""KNNHead: cosine k-nearest neighbours over the training vectors (as MTEB's kNN classification)."""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from featx.constraints import COUNT, FRACTION, NON_NEGATIVE, Constraint, Grid, Interval
from featx.errors import DamagedError
from featx.heads.base import Head, edge_warning, register_head
from featx.heads.split import can_stratify, stratified_split
from featx.metrics import mean_r2, tuned_macro_f1
from featx.pooling import l2_normalized_rows

DEFAULT_KS = (1, 3, 5, 10, 20, 50)
_QUERY_BLOCK = 2048  # query rows per similarity block: 2048 x n_train floats at a time
_TRAIN_BLOCK = 16_384  # packed training rows unpacked at a time


@register_head
class KNNHead(Head):
    """Majority vote of the k most cosine-similar training rows; probabilities are vote shares.

    With ``n_neighbors=None`` k is chosen from ``ks`` by accuracy on the validation rows
    given to `fit`, else on a stratified ``val_fraction`` of train (the neighbours are then
    all training rows). The fitted state is the L2-normalised training matrix itself
    (n_train x D float32), so a saved kNN head is as large as its training features.
    Ties between classes go to the class listed first. Training rows that are all -1 and +1 (a binary
    store's, featx.store.quantize) are kept packed, a bit a dimension, and searched by Hamming distance:
    the same ranking as cosine on them, in 1/32 of float32's memory.

    Multi-label: a label's probability is the share of the k neighbours holding it, its threshold
    chosen on validation (k by tuned macro-F1). Regression: the mean of the neighbours' targets
    (k by mean R²).
    """

    kind = "knn"
    tasks = ("single", "multi", "regression")

    summary = "k nearest neighbours by cosine"

    parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "n_neighbors": Interval(int, 1, allow_none=True), "ks": Grid(COUNT), "val_fraction": FRACTION,
        "random_state": NON_NEGATIVE}

    def __init__(self, n_neighbors: int | None = None, ks: tuple[int, ...] = DEFAULT_KS, val_fraction: float = 0.1,
                 random_state: int = 0) -> None:
        self.n_neighbors = n_neighbors
        self.ks = ks
        self.val_fraction = val_fraction
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None) -> KNNHead:
        self._validate_params()
        if self._task(y) != "single":
            return self._fit_matrix(X, np.asarray(y), X_val, y_val)
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        self.train_ = _kept(X)  # every training row: also the neighbours validation rows are scored against
        if self.n_neighbors is not None:
            self.k_, self.selection_ = int(self.n_neighbors), "given"
            self.curve_: list[dict[str, float]] = []
        else:
            if X_val is not None:
                X_val = validate_data(self, X_val, reset=False, dtype=np.float32)
                neighbours, labels, truth = self.train_, y_index, np.searchsorted(self.classes_, np.asarray(y_val))
                self.selection_ = "validation"
            elif can_stratify(y_index, 2):
                fit_rows, held_out = stratified_split(y_index, self.val_fraction, self.random_state)
                neighbours, labels, X_val, truth = _kept(X[fit_rows]), y_index[fit_rows], X[held_out], \
                    y_index[held_out]
                self.selection_ = "held-out fraction"
            else:
                X_val, self.selection_ = None, "default (too few rows to select)"
            self.curve_ = [] if X_val is None else _k_curve(
                neighbours, labels, l2_normalized_rows(X_val), truth, sorted(self.ks), len(self.classes_))
            # Ties go to the larger k: the smoother vote.
            self.k_ = int(max(self.curve_, key=lambda p: (p["score"], p["k"]))["k"]) if self.curve_ else 5
        self.train_labels_ = y_index.astype(np.int64)
        return self

    def _fit_matrix(self, X: np.ndarray, Y: np.ndarray, X_val: np.ndarray | None, Y_val: np.ndarray | None) -> KNNHead:
        """Multi-label (vote shares) or regression (neighbour means): k by tuned macro-F1 or mean R²."""
        X, Y = validate_data(self, X, Y, dtype=np.float32, multi_output=True)
        Y = np.asarray(Y, dtype=np.uint8 if self.task_ == "multi" else np.float64)
        self.classes_ = np.arange(Y.shape[1])
        fit_rows = np.arange(len(Y))
        if X_val is not None:
            X_val, self.selection_ = validate_data(self, X_val, reset=False, dtype=np.float32), "validation"
        elif can_stratify(Y, 2):
            fit_rows, held_out = stratified_split(Y, self.val_fraction, self.random_state)
            X_val, Y_val, self.selection_ = X[held_out], Y[held_out], "held-out fraction"
        else:
            self.selection_ = "default (too few rows to select)"
        self.train_, self.train_labels_ = _kept(X[fit_rows]), Y[fit_rows]
        self.curve_ = []
        if self.n_neighbors is not None or X_val is None:
            self.k_ = 5 if self.n_neighbors is None else int(self.n_neighbors)
            self.selection_ = "given" if self.n_neighbors is not None else self.selection_
        else:
            score = tuned_macro_f1 if self.task_ == "multi" else mean_r2
            ks = sorted(k for k in self.ks if k <= len(fit_rows)) or [len(fit_rows)]
            self.k_ = max(ks)
            running = np.cumsum(self._neighbour_rows(X_val), axis=1)  # one search, at the largest k
            self.curve_ = [{"k": int(k), "score": score(running[:, k - 1] / k, np.asarray(Y_val))} for k in ks]
            self.k_ = int(max(self.curve_, key=lambda p: (p["score"], p["k"]))["k"])
        if self.task_ == "multi":
            self._set_thresholds(X_val, Y_val)
        self.train_, self.train_labels_ = _kept(X), Y
        return self

    def _neighbour_rows(self, X: np.ndarray) -> np.ndarray:
        """The label rows or targets of each query's k nearest training rows (queries x k x outputs)."""
        k = min(self.k_, len(self.train_))
        out = np.empty((len(X), k, self.train_labels_.shape[1]), dtype=np.float32)
        for start in range(0, len(X), _QUERY_BLOCK):
            nearest = _nearest(self.train_, l2_normalized_rows(X[start:start + _QUERY_BLOCK]), k)
            out[start:start + len(nearest)] = self.train_labels_[nearest]
        return out

    def _shares(self, X: np.ndarray) -> np.ndarray:
        """The mean of the k nearest training rows' label rows (vote shares) or targets."""
        result: np.ndarray = self._neighbour_rows(X).mean(axis=1, dtype=np.float64)
        return result

    def predict_values(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        return self._shares(validate_data(self, X, reset=False, dtype=np.float32))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32)
        if self.task_ == "multi":
            return self._shares(X)
        k = min(self.k_, len(self.train_))
        out = np.empty((len(X), len(self.classes_)))
        for start in range(0, len(X), _QUERY_BLOCK):
            nearest = _nearest(self.train_, l2_normalized_rows(X[start:start + _QUERY_BLOCK]), k)
            out[start:start + len(nearest)] = _votes(self.train_labels_[nearest], len(self.classes_))
        return out

    def describe_choice(self) -> str:
        return f"k={self.k_} ({self.selection_})"

    def selection_warning(self) -> str | None:
        return edge_warning("k", self.k_, tuple(float(k) for k in self.ks), self.curve_, kind=self.kind,
                            grid_name="ks", lowest=1)

    def state_arrays(self) -> dict[str, np.ndarray]:
        check_is_fitted(self)
        return {"train": self.train_, "train_labels": self.train_labels_}

    def fitted_summary(self) -> dict[str, Any]:
        packed = {"dim": int(self.n_features_in_)} if self.train_.dtype == np.uint8 else {}
        return {"k_": self.k_, "curve_": self.curve_, "selection_": self.selection_, **packed}

    def check_state(self, arrays: dict[str, np.ndarray], n_classes: int) -> None:
        train, labels = arrays.get("train"), arrays.get("train_labels")
        single = getattr(self, "task_", "single") == "single"
        if train is None or labels is None or train.ndim != 2:
            raise DamagedError(f"knn neighbours do not fit {n_classes} classes")
        rows = (train.shape[0],) if single else (train.shape[0], n_classes)
        if labels.shape != rows \
                or set(arrays) != {"train", "train_labels"} or (single and len(labels) and not 0 <= labels.min()
                                                                <= labels.max() < n_classes):
            raise DamagedError(f"knn neighbours do not fit {n_classes} classes")

    def restore(self, arrays: dict[str, np.ndarray], classes: np.ndarray, fitted: dict[str, Any]) -> KNNHead:
        self.classes_ = np.asarray(classes)
        self.train_, self.train_labels_ = arrays["train"], arrays["train_labels"]
        self.n_features_in_ = int(fitted["dim"] if "dim" in fitted else self.train_.shape[1])
        self.k_, self.curve_, self.selection_ = int(fitted["k_"]), fitted["curve_"], fitted["selection_"]
        return self


def _kept(X: np.ndarray) -> np.ndarray:
    """The training rows as the head keeps them: L2-normalised float32, or, when every value is -1 or +1
    (a binary store's rows, featx.store.quantize), their signs packed eight to a byte: 32 times smaller,
    and searched by Hamming distance (`_similarity`)."""
    if X.size and bool((np.abs(X) == 1).all()):
        packed: np.ndarray = np.packbits(X > 0, axis=1)
        return packed
    return l2_normalized_rows(X)


def _similarity(train: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Each query's similarity to every training row: the cosine, or for packed ±1 rows an order key
    that ranks them by Hamming distance to the query's signs, the lower training row first on a tie
    (dim - 2 x Hamming distance is the ±1 rows' dot product, computed unpacked a block at a time)."""
    if train.dtype != np.uint8:
        similarity: np.ndarray = queries @ train.T
        return similarity
    signs = np.where(queries > 0, 1.0, -1.0).astype(np.float32)
    dots = np.empty((len(queries), len(train)), dtype=np.int64)
    for start in range(0, len(train), _TRAIN_BLOCK):
        block = np.unpackbits(train[start:start + _TRAIN_BLOCK], axis=1, count=queries.shape[1])
        dots[:, start:start + len(block)] = np.rint(signs @ (2.0 * block.astype(np.float32) - 1.0).T)
    return dots * len(train) - np.arange(len(train))


def _nearest(train: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k most similar training rows of each query, most similar first."""
    similarity = _similarity(train, queries)
    top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(similarity, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def _votes(neighbour_labels: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.zeros((len(neighbour_labels), n_classes))
    np.add.at(counts, (np.repeat(np.arange(len(neighbour_labels)), neighbour_labels.shape[1]),
                       neighbour_labels.ravel()), 1.0)
    result: np.ndarray = counts / neighbour_labels.shape[1]
    return result


def _k_curve(train: np.ndarray, labels: np.ndarray, queries: np.ndarray, truth: np.ndarray, ks: list[int],
             n_classes: int) -> list[dict[str, float]]:
    """Validation accuracy at every k, from one nearest-neighbour search at the largest k."""
    ks = [k for k in ks if k <= len(train)] or [len(train)]
    correct = np.zeros(len(ks))
    for start in range(0, len(queries), _QUERY_BLOCK):
        nearest = labels[_nearest(train, queries[start:start + _QUERY_BLOCK], max(ks))]
        for i, k in enumerate(ks):
            correct[i] += np.sum(_votes(nearest[:, :k], n_classes).argmax(1) == truth[start:start + _QUERY_BLOCK])
    return [{"k": int(k), "score": float(c / len(queries))} for k, c in zip(ks, correct)]
