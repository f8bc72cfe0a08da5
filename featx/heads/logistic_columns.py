"""Logistic regression on a design matrix given as column blocks with the same rows (`Columns`):
one dense matrix (the logreg head's multi-label fit), or the hybrid's sparse TF-IDF beside its
dense vectors, each multiplied on its own, so the dense part never becomes a sparse matrix.

Two objectives, both scikit-learn's LogisticRegression (lbfgs) objective with the intercepts
not penalised, minimised by scipy's L-BFGS-B with LogisticRegression's settings (gtol `tol`,
ftol 64 machine epsilons, line search up to 50 steps), from a given start (a warm start along a
C sweep):

- `fit_logistic`, one-vs-rest for multi-label heads: every label's binary log-loss, their sum
  minimised jointly by one L-BFGS run (the labels share no parameters): two passes over X per
  step for all labels instead of one solver run per label;
- `fit_softmax`, one label a row: the mean half-binomial loss of class 1's log-odds (two
  classes) or the mean half-multinomial loss, plus ``||W||^2 / (2 C n)``;
- the same objective by truncated Newton (featx.heads.logistic_newton), for designs so wide that
  L-BFGS-B's update costs more than the products.

The blocks are prepared once and multiplied many times: dense blocks as float32 arrays (the sums
stay float64; about twice as fast, and far inside the stopping tolerance), sparse ones as
float32 CSR cut into row bands, one per thread, with the transpose's bands beside them, so both
products of a step run on every core (scipy's sparse products release the GIL), or, while the
cores are busy with other fits (`spread`: the hybrid's paths side by side), one by one.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import numpy as np
import scipy.sparse
import torch
from scipy.optimize import minimize
from scipy.special import expit, logsumexp

from featx.heads.logistic_blocks import binary_terms, lbfgs_options, softmax_terms


class _SparseBands:
    """A float32 CSR matrix as row bands, and its transpose as row bands, for threaded products: the
    bands of a product run one a thread while `spread()` says that cores are free, else one by one."""

    def __init__(self, matrix: Any, bands: int, spread: Callable[[], bool] = lambda: True) -> None:
        matrix = scipy.sparse.csr_matrix(matrix, dtype=np.float32)
        self.spread = spread
        self.shape = matrix.shape
        self.rows = _bands(matrix, bands)
        self.columns = _bands(matrix.T.tocsr(), bands)
        self.nnz = int(matrix.nnz)
        self.squared_columns: list[Any] | None = None

    def __matmul__(self, W: np.ndarray) -> np.ndarray:
        return _banded(self.rows, W, self.spread())

    def transposed_times(self, R: np.ndarray) -> np.ndarray:
        return _banded(self.columns, R, self.spread())

    def squares_transposed_times(self, R: np.ndarray) -> np.ndarray:
        """(X * X)^T R, every stored entry squared (made on first use, then kept)."""
        if self.squared_columns is None:
            self.squared_columns = [band.power(2) for band in self.columns]
        return _banded(self.squared_columns, R, self.spread())


class Columns:
    """The column blocks of one design matrix, ready to be multiplied many times (see the module
    docstring). `scaled(i, factor)` shares every block but the i-th, which it multiplies."""

    def __init__(self, blocks: Sequence[Any] | np.ndarray, threads: int | None = None,
                 spread: Callable[[], bool] = lambda: True) -> None:
        if isinstance(blocks, np.ndarray) or hasattr(blocks, "tocsr"):  # one matrix
            blocks = [blocks]
        bands = threads or torch.get_num_threads()
        self.blocks = [block if isinstance(block, _SparseBands) else _SparseBands(block, bands, spread)
                       if hasattr(block, "tocsr") else np.asarray(block, dtype=np.float32) for block in blocks]
        self.n_rows = self.blocks[0].shape[0]
        self.edges = np.cumsum([0, *(block.shape[1] for block in self.blocks)])
        self.width = int(self.edges[-1])
        self.dense_squares: dict[int, np.ndarray] = {}  # a dense block's entries squared, made by `diagonal`

    def scaled(self, index: int, factor: float) -> Columns:
        block = self.blocks[index]
        if isinstance(block, _SparseBands):
            raise ValueError("only a dense block is scaled")
        return Columns([*self.blocks[:index], block * np.float32(factor), *self.blocks[index + 1:]])

    def scores(self, W: np.ndarray) -> np.ndarray:
        """(rows, outputs) float32 linear scores under weights W (width + 1, outputs), intercepts last."""
        W32 = W.astype(np.float32)
        z = np.tile(W32[-1], (self.n_rows, 1))
        for block, low, high in zip(self.blocks, self.edges[:-1], self.edges[1:]):
            z += np.asarray(block @ W32[low:high])
        return z

    def diagonal(self, curvature: np.ndarray) -> np.ndarray:
        """The diagonal of X^T diag(curvature) X, one column an output: (X * X)^T curvature (width + 1,
        outputs) float64, the intercepts' row the curvature's column sums."""
        found = np.empty((self.width + 1, curvature.shape[1]))
        for i, (block, low, high) in enumerate(zip(self.blocks, self.edges[:-1], self.edges[1:])):
            if isinstance(block, _SparseBands):
                found[low:high] = block.squares_transposed_times(curvature)
            else:
                squares = self.dense_squares.get(i)
                if squares is None:
                    squares = self.dense_squares[i] = block * block
                found[low:high] = squares.T @ curvature
        found[-1] = curvature.sum(0, dtype=np.float64)
        return found

    def gradient(self, residual: np.ndarray) -> np.ndarray:
        """X^T residual (width + 1, outputs) float64, the intercepts' row the residual's column sums."""
        grad = np.empty((self.width + 1, residual.shape[1]))
        for block, low, high in zip(self.blocks, self.edges[:-1], self.edges[1:]):
            grad[low:high] = block.transposed_times(residual) if isinstance(block, _SparseBands) else block.T @ residual
        grad[-1] = residual.sum(0, dtype=np.float64)
        return grad


def fit_logistic(blocks: Sequence[Any] | np.ndarray | Columns, Y: np.ndarray, C: float,
                 start: np.ndarray | None = None, max_iter: int = 1000) -> np.ndarray:
    """Weights (D + 1, L), the intercepts in the last row, for 0/1 targets Y (n, L) at `C`;
    D is the blocks' columns together."""
    targets = np.asarray(Y, dtype=np.float32)

    def pointwise(z: np.ndarray) -> tuple[float, np.ndarray]:
        loss, residual = binary_terms(z, targets)
        return float(loss.sum(dtype=np.float64)), residual

    return _fit(_columns(blocks), pointwise, Y.shape[1], C, start, max_iter)


def fit_softmax(blocks: Sequence[Any] | np.ndarray | Columns, y_index: np.ndarray, n_classes: int, C: float,
                start: np.ndarray | None = None, max_iter: int = 1000) -> np.ndarray:
    """Weights (D + 1, k) of LogisticRegression at `C` for class indices `y_index`: k = 1 for two
    classes (class 1's log-odds), else one column a class; the intercepts in the last row."""
    k = 1 if n_classes == 2 else n_classes
    target = (np.asarray(y_index) == 1).astype(np.float32)[:, None]  # two classes: class 1 or not

    def pointwise(z: np.ndarray) -> tuple[float, np.ndarray]:
        loss, residual = binary_terms(z, target) if k == 1 else softmax_terms(z, y_index)
        return float(loss.sum(dtype=np.float64)), residual.astype(np.float32, copy=False)

    return _fit(_columns(blocks), pointwise, k, C, start, max_iter)


def _fit(columns: Columns, pointwise: Callable[[np.ndarray], tuple[float, np.ndarray]], outputs: int, C: float,
         start: np.ndarray | None, max_iter: int) -> np.ndarray:
    """Minimise the mean of `pointwise` losses over the rows plus ||W||^2 / (2 C n) (intercepts free)."""
    n, d = columns.n_rows, columns.width
    scale = 1.0 / (C * n)

    def loss_and_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        W = flat.reshape(d + 1, outputs)
        loss, residual = pointwise(columns.scores(W))
        grad = columns.gradient(residual / np.float32(n))
        grad[:d] += scale * W[:d]
        return loss / n + 0.5 * scale * float((W[:d] ** 2).sum()), grad.ravel()

    initial = np.zeros((d + 1, outputs)) if start is None else start
    found = minimize(loss_and_grad, initial.ravel(), jac=True, method="L-BFGS-B", options=lbfgs_options(max_iter))
    weights: np.ndarray = found.x.reshape(d + 1, outputs)
    return weights


def probabilities(blocks: Sequence[Any] | np.ndarray | Columns, W: np.ndarray) -> np.ndarray:
    """Each label's probability (rows x labels) under weights from `fit_logistic`."""
    result: np.ndarray = expit(_columns(blocks).scores(W).astype(np.float64))
    return result


def class_probabilities(blocks: Sequence[Any] | np.ndarray | Columns, W: np.ndarray) -> np.ndarray:
    """Each class's probability (rows x classes) under weights from `fit_softmax`, as
    LogisticRegression.predict_proba gives them."""
    z = _columns(blocks).scores(W).astype(np.float64)
    if z.shape[1] == 1:
        positive = expit(z[:, 0])
        return np.column_stack([1.0 - positive, positive])
    result: np.ndarray = np.exp(z - logsumexp(z, axis=1, keepdims=True))
    return result


def _columns(blocks: Sequence[Any] | np.ndarray | Columns) -> Columns:
    return blocks if isinstance(blocks, Columns) else Columns(blocks)


def _bands(matrix: Any, bands: int) -> list[Any]:
    """`matrix` cut into at most `bands` row bands of about equal stored entries."""
    if bands <= 1 or matrix.shape[0] < 2 * bands:
        return [matrix]
    cuts = np.searchsorted(matrix.indptr, [matrix.nnz * i / bands for i in range(1, bands)])
    edges = [0, *sorted(set(int(c) for c in cuts)), matrix.shape[0]]
    return [matrix[low:high] for low, high in itertools.pairwise(edges) if high > low]


def _banded(bands: list[Any], W: np.ndarray, spread: bool) -> np.ndarray:
    """The bands' products with W, stacked, one a thread where `spread`; one column goes as a vector
    (scipy's faster path)."""
    vector = W[:, 0] if W.shape[1] == 1 else W
    parts = list(_pool(len(bands)).map(lambda band: band @ vector, bands)) if spread and len(bands) > 1 else \
        [band @ vector for band in bands]
    result = np.concatenate(parts) if len(parts) > 1 else np.asarray(parts[0])
    return result.reshape(len(result), -1)


@cache
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="featx-sparse")

