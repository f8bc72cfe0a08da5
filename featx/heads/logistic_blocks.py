"""Logistic regression fitted from row blocks: scikit-learn's lbfgs objective and solver settings,
with the loss and its gradient summed over the rows a block at a time (featx.heads.rows), so the
fit holds one standardised block, never the matrix.

The objective is LogisticRegression's (lbfgs): the mean of the (sample-weighted) half-multinomial
loss, two classes: the half-binomial loss of the second class's log-odds, plus
``||W||^2 / (2 C sum(weights))`` on the coefficients (not the intercepts), minimised by scipy's
L-BFGS-B with its gtol, ftol and line-search settings. The optimum is the same; only the order of
the float64 sums differs. Multi-label (`fit_one_vs_rest_blocks`): every label's binary log-loss
summed, minimised jointly, as featx.heads.logistic_columns.fit_logistic minimises it in memory.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import optimize
from scipy.special import expit, logsumexp

from featx.heads.rows import map_blocks, row_slices


def fit_logistic_blocks(X: Any, y_index: np.ndarray, n_classes: int, C: float, *, mean: np.ndarray,
                        scale: np.ndarray, sample_weight: np.ndarray | None = None, init: np.ndarray | None = None,
                        max_iter: int = 1000, tol: float = 1e-4) -> tuple[np.ndarray, int]:
    """(weights, iterations): weights (k, d + 1), the last column the intercepts; k = 1 for two classes
    (the log-odds of class 1), else one row a class. Rows of X are standardised by (mean, scale)."""
    k = 1 if n_classes == 2 else n_classes
    weights = np.ones(len(y_index)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)

    def pointwise(raw: np.ndarray, rows: slice) -> tuple[float, np.ndarray]:
        y, w = y_index[rows], weights[rows]
        loss, residual = binary_terms(raw, (y == 1).astype(np.float64)[:, None]) if k == 1 else softmax_terms(raw, y)
        return float(w @ loss.reshape(len(y))), residual * w[:, None]

    return _fit_blocks(X, pointwise, k, float(weights.sum()), C, mean, scale, init, max_iter, tol)


def fit_one_vs_rest_blocks(X: Any, Y: np.ndarray, C: float, *, mean: np.ndarray, scale: np.ndarray,
                           init: np.ndarray | None = None, max_iter: int = 1000,
                           tol: float = 1e-4) -> tuple[np.ndarray, int]:
    """(weights (L, d + 1), iterations) of every label's logistic regression at `C` for 0/1 targets Y
    (n, L), fitted jointly as featx.heads.logistic_columns.fit_logistic fits them, a block at a time."""
    def pointwise(raw: np.ndarray, rows: slice) -> tuple[float, np.ndarray]:
        loss, residual = binary_terms(raw, np.asarray(Y[rows], dtype=np.float64))  # a block's targets at a time
        return float(loss.sum()), residual

    return _fit_blocks(X, pointwise, Y.shape[1], float(len(Y)), C, mean, scale, init, max_iter, tol)


def binary_terms(z: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(loss, residual) of each score under the half-binomial loss for 0/1 targets, in z's dtype."""
    return np.logaddexp(z.dtype.type(0.0), z) - target * z, expit(z) - target


def softmax_terms(z: np.ndarray, y_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(loss of each row, residual) under the half-multinomial loss, in float64."""
    z = z.astype(np.float64, copy=False)
    lse = logsumexp(z, axis=1)
    picked = np.arange(len(y_index))
    residual = np.exp(z - lse[:, None])
    residual[picked, y_index] -= 1.0
    return lse - z[picked, y_index], residual


def lbfgs_options(max_iter: int, tol: float = 1e-4) -> dict[str, Any]:
    """scipy L-BFGS-B's options as LogisticRegression(solver="lbfgs") sets them."""
    return {"maxiter": max_iter, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps}


def _fit_blocks(X: Any, pointwise: Callable[[np.ndarray, slice], tuple[float, np.ndarray]], k: int, total: float,
                C: float, mean: np.ndarray, scale: np.ndarray, init: np.ndarray | None, max_iter: int,
                tol: float) -> tuple[np.ndarray, int]:
    """Minimise the sum of `pointwise` losses over the rows / `total`, plus ||coef||^2 / (2 C total)."""
    d = X.shape[1]
    penalty = 1.0 / (C * total)

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        W = flat.reshape(k, d + 1)
        loss, grad = 0.0, np.zeros((k, d + 1))
        for rows in row_slices(X):
            block = (np.asarray(X[rows], dtype=np.float64) - mean) / scale
            part, residual = pointwise(block @ W[:, :d].T + W[:, d], rows)
            loss += part
            grad[:, :d] += residual.T @ block
            grad[:, d] += residual.sum(0)
        coef = W[:, :d]
        grad /= total
        grad[:, :d] += penalty * coef
        return loss / total + 0.5 * penalty * float((coef ** 2).sum()), grad.ravel()

    start = np.zeros(k * (d + 1)) if init is None else np.asarray(init, dtype=np.float64).ravel()
    result = optimize.minimize(objective, start, method="L-BFGS-B", jac=True, options=lbfgs_options(max_iter, tol))
    return result.x.reshape(k, d + 1), int(result.nit)


def predicted_index(X: Any, weights: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Each row's most probable class index under `weights` (fit_logistic_blocks'), a block at a time."""
    def block_index(block: np.ndarray) -> np.ndarray:
        raw = ((np.asarray(block, dtype=np.float64) - mean) / scale) @ weights[:, :-1].T + weights[:, -1]
        index: np.ndarray = (raw[:, 0] > 0).astype(np.int64) if weights.shape[0] == 1 else raw.argmax(1)
        return index
    return map_blocks(block_index, X)
