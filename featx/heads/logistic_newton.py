"""`fit_softmax`'s and `fit_logistic`'s objectives (featx.heads.logistic_columns) by truncated Newton,
for designs where L-BFGS-B's update, its history the matrix's width, costs more than the products
(the hybrid's TF-IDF on long texts, many classes or labels); and the `_turned` fits, the same with a
dense block turned to its principal axes first, where the Hessian's diagonal preconditions it well.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.special import expit, logsumexp

from featx.heads.logistic_blocks import binary_terms, softmax_terms
from featx.heads.logistic_columns import Columns


def principal_axes(dense: np.ndarray) -> np.ndarray:
    """A dense block's principal axes (columns), to turn it to: the Hessian's diagonal then holds nearly
    all of that block's curvature (the preconditioner of `fit_softmax_newton`), and the penalty, a sum of
    squares, does not see a turn."""
    axes: np.ndarray = np.linalg.eigh(dense.T @ dense)[1]
    return axes


def fit_softmax_turned(blocks: list[Any], y_index: np.ndarray, n_classes: int, C: float,
                       start: np.ndarray | None = None, max_iter: int = 100) -> np.ndarray:
    """`fit_softmax`'s weights for [sparse, dense] blocks, by preconditioned `fit_softmax_newton` on the
    dense block turned to its principal axes (`turned`)."""
    return turned(blocks, start, lambda columns, begin: fit_softmax_newton(
        columns, y_index, n_classes, C, begin, max_iter, precondition=True))


def fit_logistic_turned(blocks: list[Any], Y: np.ndarray, C: float, start: np.ndarray | None = None,
                        max_iter: int = 100) -> np.ndarray:
    """`fit_logistic`'s weights (one-vs-rest, 0/1 targets Y) for [sparse, dense] blocks, by preconditioned
    `fit_logistic_newton` on the dense block turned to its principal axes (`turned`)."""
    return turned(blocks, start, lambda columns, begin: fit_logistic_newton(
        columns, Y, C, begin, max_iter, precondition=True))


def turned(blocks: list[Any], start: np.ndarray | None,
           fit: Callable[[Columns, np.ndarray | None], np.ndarray]) -> np.ndarray:
    """`fit` on [sparse, dense] blocks with the dense block turned to its principal axes, the start turned
    with it; the weights turned back to the block's own axes."""
    axes, width = principal_axes(blocks[1]), blocks[0].shape[1]
    if start is not None:
        start = np.array(start, dtype=np.float64)
        start[width:-1] = axes.T @ start[width:-1]
    return turned_back(fit(Columns([blocks[0], blocks[1] @ axes]), start), axes)


def turned_back(W: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Weights fitted on a last block turned to `axes`, as weights on that block's own axes (in place)."""
    W[-axes.shape[0] - 1:-1] = axes @ W[-axes.shape[0] - 1:-1]
    return W


def fit_logistic_newton(blocks: Sequence[Any] | np.ndarray | Columns, Y: np.ndarray, C: float,
                        start: np.ndarray | None = None, max_iter: int = 100, tol: float = 1e-4,
                        precondition: bool = False) -> np.ndarray:
    """`fit_logistic`'s objective (every label's binary loss summed: one-vs-rest) by `fit_softmax_newton`'s
    truncated Newton, the labels' Hessian blocks solved together: weights (D + 1, labels)."""
    columns = blocks if isinstance(blocks, Columns) else Columns(blocks)
    targets = np.asarray(Y, dtype=np.float32)
    return _fit_newton(columns, lambda z: binary_terms(z, targets), True, targets.shape[1], C, start, max_iter, tol,
                       precondition)


def fit_softmax_newton(blocks: Sequence[Any] | np.ndarray | Columns, y_index: np.ndarray, n_classes: int, C: float,
                       start: np.ndarray | None = None, max_iter: int = 100, tol: float = 1e-4,
                       precondition: bool = False) -> np.ndarray:
    """`fit_softmax`'s objective minimised by truncated Newton, stopped as LogisticRegression(
    solver="newton-cg") stops: every gradient entry within `tol` (or `max_iter` Newton steps).

    Each step solves for the Newton direction by conjugate gradients on Hessian products, two passes
    over the rows each (scikit-learn's inner stop: the residual's 1-norm within min(0.5, sqrt(|g|_1))
    times |g|_1, at most 200 products), then backtracks to the Armijo condition, one pass a trial. It
    keeps no history the width of the matrix: along a C path on IMDB's 404,329 TF-IDF columns it took
    half L-BFGS-B's time (benchmarks/hybrid_levers.py). With `precondition`, the conjugate gradients
    are scaled by the Hessian's diagonal (Jacobi), one more pass over the squared entries a step;
    the hybrid's sweep uses it on dense columns turned to their principal axes, where that diagonal
    is nearly the whole of their block."""
    columns = blocks if isinstance(blocks, Columns) else Columns(blocks)
    index = np.asarray(y_index)
    if n_classes == 2:  # class 1's log-odds
        target = (index == 1).astype(np.float32)[:, None]
        return _fit_newton(columns, lambda z: binary_terms(z, target), True, 1, C, start, max_iter, tol, precondition)
    return _fit_newton(columns, lambda z: softmax_terms(z, index), False, n_classes, C, start, max_iter, tol,
                       precondition)


def _fit_newton(columns: Columns, terms: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], binary: bool, k: int,
                C: float, start: np.ndarray | None, max_iter: int, tol: float, precondition: bool) -> np.ndarray:
    """The loss `terms` gives for k outputs' scores: each output's own binary loss where `binary`, else the
    multinomial loss over them."""
    n, d = columns.n_rows, columns.width
    penalty = 1.0 / (C * n)

    def objective(W: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(objective, scores, residual) at W: the loss terms computed once for both."""
        z = columns.scores(W)
        loss, residual = terms(z)
        return float(loss.sum(dtype=np.float64)) / n + 0.5 * penalty * float((W[:d] ** 2).sum()), z, residual

    W = np.zeros((d + 1, k)) if start is None else np.array(start, dtype=np.float64)
    f, z, residual = objective(W)
    for _ in range(max_iter):
        grad = columns.gradient(np.asarray(residual, dtype=np.float32) / np.float32(n))
        grad[:d] += penalty * W[:d]
        if np.abs(grad).max() <= tol:
            break
        curvature = _hessian_weights(z, binary)
        scale = None
        if precondition:  # the diagonal's curvature: p (1 - p) for each class's own scores
            own = curvature if binary else curvature * (1 - curvature)
            scale = columns.diagonal((own / n).astype(np.float32))
            scale[:d] += penalty
            np.maximum(scale, penalty, out=scale)  # the intercepts' entries too, where every row is saturated
        direction = _newton_direction(columns, curvature, binary, penalty, grad, scale)
        slope, step = float((grad * direction).sum()), 1.0
        for _ in range(30):  # Armijo backtracking
            trial = W + step * direction
            f_trial, z_trial, residual_trial = objective(trial)
            if f_trial <= f + 1e-4 * step * slope:
                W, f, z, residual = trial, f_trial, z_trial, residual_trial
                break
            step /= 2
        else:  # no step lowers the objective: as close as float arithmetic gets
            break
    return W


def _hessian_weights(z: np.ndarray, binary: bool) -> np.ndarray:
    """What the Hessian of the mean loss weighs each row's scores by: p (1 - p) for binary losses, the
    class probabilities for the multinomial one (`_newton_direction` completes its curvature)."""
    z = z.astype(np.float64)
    if binary:
        p = expit(z)
        return p * (1 - p)  # type: ignore[no-any-return]
    return np.exp(z - logsumexp(z, axis=1, keepdims=True))  # type: ignore[no-any-return]


def _newton_direction(columns: Columns, curvature: np.ndarray, binary: bool, penalty: float, grad: np.ndarray,
                      scale: np.ndarray | None) -> np.ndarray:
    """Conjugate gradients for H p = -grad, H the Hessian of the objective (see fit_softmax_newton),
    preconditioned by dividing by `scale` (H's diagonal) where given."""
    n, d = columns.n_rows, columns.width

    def hessian_times(V: np.ndarray) -> np.ndarray:
        u = columns.scores(V).astype(np.float64)  # X V plus V's intercept row
        if binary:  # each output's own binary loss
            r = curvature * u
        else:  # softmax: P * (U - sum over classes of P * U)
            r = curvature * (u - (curvature * u).sum(1, keepdims=True))
        product = columns.gradient((r / n).astype(np.float32))
        product[:d] += penalty * V[:d]
        return product

    size = float(np.abs(grad).sum())
    stop = min(0.5, np.sqrt(size)) * size
    p, residual = np.zeros_like(grad), -grad
    scaled = residual if scale is None else residual / scale
    search, rz = scaled.copy(), float((residual * scaled).sum())
    for _ in range(200):
        if float(np.abs(residual).sum()) <= stop:
            break
        product = hessian_times(search)
        curving = float((search * product).sum())
        if curving <= 0:  # flat along it (an unpenalised intercept's direction): stop here
            break
        alpha = rz / curving
        p += alpha * search
        residual -= alpha * product
        scaled = residual if scale is None else residual / scale
        rz, previous = float((residual * scaled).sum()), rz
        search = scaled + (rz / previous) * search
    return p if p.any() else -grad
