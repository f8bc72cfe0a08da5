"""`fit_softmax`'s and `fit_logistic`'s objectives (featx.heads.logistic_columns) by truncated Newton,
for designs where L-BFGS-B's update, its history the matrix's width, costs more than the products
(the hybrid's TF-IDF on long texts, many classes or labels); `NewtonPath`, the same fits along a C
path, each from the last one's optimum with its products carried over; and the `_turned` fits, the
same with a dense block turned to its principal axes first, where the Hessian's diagonal
preconditions it well.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
    return NewtonPath.logistic(blocks, Y, max_iter, tol, precondition).fit(C, start)


def fit_softmax_newton(blocks: Sequence[Any] | np.ndarray | Columns, y_index: np.ndarray, n_classes: int, C: float,
                       start: np.ndarray | None = None, max_iter: int = 100, tol: float = 1e-4,
                       precondition: bool = False) -> np.ndarray:
    """`fit_softmax`'s objective minimised by truncated Newton, stopped as LogisticRegression(
    solver="newton-cg") stops: every gradient entry within `tol` (or `max_iter` Newton steps).

    Each step solves for the Newton direction by conjugate gradients on Hessian products, two passes
    over the rows each (scikit-learn's inner stop: the residual's 1-norm within min(0.5, sqrt(|g|_1))
    times |g|_1, at most 200 products), then backtracks to the Armijo condition. The trials need no
    pass over the rows: the direction's scores are summed from the products the conjugate gradients
    made. It keeps no history the width of the matrix: along a C path on IMDB's 404,329 TF-IDF columns
    it took half L-BFGS-B's time (benchmarks/hybrid_levers.py). With `precondition`, the conjugate
    gradients are scaled by the Hessian's diagonal (Jacobi), one more pass over the squared entries a
    step; the hybrid's sweep uses it on dense columns turned to their principal axes, where that
    diagonal is nearly the whole of their block."""
    return NewtonPath.softmax(blocks, y_index, n_classes, max_iter, tol, precondition).fit(C, start)


@dataclass
class _Point:
    """An iterate and what passes over the rows gave for it: its scores, mean loss and residual (the
    loss's derivative in each score), and once made the loss's gradient X^T residual / n, which does
    not depend on C."""

    W: np.ndarray
    z: np.ndarray
    loss: float
    residual: np.ndarray
    loss_gradient: np.ndarray | None = None


class NewtonPath:
    """Truncated Newton fits of one design at a C path's values, each `fit` starting from the last one's
    optimum with its scores and loss gradient carried over: a warm start costs no pass over the rows (a C
    whose start already meets the tolerance costs none at all)."""

    def __init__(self, blocks: Sequence[Any] | np.ndarray | Columns,
                 terms: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], binary: bool, k: int, max_iter: int,
                 tol: float, precondition: bool) -> None:
        self.columns = blocks if isinstance(blocks, Columns) else Columns(blocks)
        self.terms, self.binary, self.k = terms, binary, k
        self.max_iter, self.tol, self.precondition = max_iter, tol, precondition
        self.last: _Point | None = None

    @classmethod
    def softmax(cls, blocks: Sequence[Any] | np.ndarray | Columns, y_index: np.ndarray, n_classes: int,
                max_iter: int = 100, tol: float = 1e-4, precondition: bool = False) -> NewtonPath:
        """`fit_softmax`'s objective: class 1's log-odds for two classes, else the multinomial loss."""
        index = np.asarray(y_index)
        if n_classes == 2:
            target = (index == 1).astype(np.float32)[:, None]
            return cls(blocks, lambda z: binary_terms(z, target), True, 1, max_iter, tol, precondition)
        return cls(blocks, lambda z: softmax_terms(z, index), False, n_classes, max_iter, tol, precondition)

    @classmethod
    def logistic(cls, blocks: Sequence[Any] | np.ndarray | Columns, Y: np.ndarray, max_iter: int = 100,
                 tol: float = 1e-4, precondition: bool = False) -> NewtonPath:
        """`fit_logistic`'s objective: every label's binary loss, summed."""
        targets = np.asarray(Y, dtype=np.float32)
        return cls(blocks, lambda z: binary_terms(z, targets), True, targets.shape[1], max_iter, tol, precondition)

    def fit(self, C: float, start: np.ndarray | None = None) -> np.ndarray:
        """The weights (D + 1, k) at C, from `start` if given, else from the last fit's optimum, else zero."""
        if start is not None or self.last is None:
            W = np.zeros((self.columns.width + 1, self.k)) if start is None else np.array(start, dtype=np.float64)
            self.last = self._point(W, self.columns.scores(W))
        self.last = self._minimise(C, self.last)
        return self.last.W

    def _point(self, W: np.ndarray, z: np.ndarray) -> _Point:
        loss, residual = self.terms(z)
        return _Point(W, z, float(loss.sum(dtype=np.float64)) / self.columns.n_rows, residual)

    def _minimise(self, C: float, point: _Point) -> _Point:
        columns, n, d = self.columns, self.columns.n_rows, self.columns.width
        penalty = 1.0 / (C * float(n))

        def objective(at: _Point) -> float:
            return at.loss + 0.5 * penalty * float((at.W[:d] ** 2).sum())

        for _ in range(self.max_iter):
            if point.loss_gradient is None:
                point.loss_gradient = columns.gradient(np.asarray(point.residual, dtype=np.float32) / np.float32(n))
            grad = point.loss_gradient.copy()
            grad[:d] += penalty * point.W[:d]
            if np.abs(grad).max() <= self.tol:
                break
            curvature = _hessian_weights(point.z, self.binary)
            scale = None
            if self.precondition:  # the diagonal's curvature: p (1 - p) for each class's own scores
                own = curvature if self.binary else curvature * (1 - curvature)
                scale = columns.diagonal((own / n).astype(np.float32))
                scale[:d] += penalty
                np.maximum(scale, penalty, out=scale)  # the intercepts' entries too, where every row is saturated
            direction, moved = _newton_direction(columns, curvature, self.binary, penalty, grad, scale)
            f, slope, step = objective(point), float((grad * direction).sum()), 1.0
            for _ in range(30):  # Armijo backtracking, the trial's scores from the direction's
                trial = self._point(point.W + step * direction, (point.z + step * moved).astype(np.float32))
                if objective(trial) <= f + 1e-4 * step * slope:
                    point = trial
                    break
                step /= 2
            else:  # no step lowers the objective: as close as float arithmetic gets
                break
        return point


def _hessian_weights(z: np.ndarray, binary: bool) -> np.ndarray:
    """What the Hessian of the mean loss weighs each row's scores by: p (1 - p) for binary losses, the
    class probabilities for the multinomial one (`_newton_direction` completes its curvature)."""
    z = z.astype(np.float64)
    if binary:
        p = expit(z)
        return p * (1 - p)  # type: ignore[no-any-return]
    return np.exp(z - logsumexp(z, axis=1, keepdims=True))  # type: ignore[no-any-return]


def _newton_direction(columns: Columns, curvature: np.ndarray, binary: bool, penalty: float, grad: np.ndarray,
                      scale: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Conjugate gradients for H p = -grad, H the Hessian of the objective (see fit_softmax_newton),
    preconditioned by dividing by `scale` (H's diagonal) where given: (p, the rows' scores under p,
    summed from the products' own)."""
    n, d = columns.n_rows, columns.width

    def hessian_times(V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = columns.scores(V).astype(np.float64)  # X V plus V's intercept row
        if binary:  # each output's own binary loss
            r = curvature * u
        else:  # softmax: P * (U - sum over classes of P * U)
            r = curvature * (u - (curvature * u).sum(1, keepdims=True))
        product = columns.gradient((r / n).astype(np.float32))
        product[:d] += penalty * V[:d]
        return product, u

    size = float(np.abs(grad).sum())
    stop = min(0.5, np.sqrt(size)) * size
    p, moved, residual = np.zeros_like(grad), np.zeros((n, grad.shape[1])), -grad
    scaled = residual if scale is None else residual / scale
    search, rz = scaled.copy(), float((residual * scaled).sum())
    for _ in range(200):
        if float(np.abs(residual).sum()) <= stop:
            break
        product, u = hessian_times(search)
        curving = float((search * product).sum())
        if curving <= 0:  # flat along it (an unpenalised intercept's direction): stop here
            break
        alpha = rz / curving
        p += alpha * search
        moved += alpha * u
        residual -= alpha * product
        scaled = residual if scale is None else residual / scale
        rz, previous = float((residual * scaled).sum()), rz
        search = scaled + (rz / previous) * search
    if not p.any():
        return -grad, columns.scores(-grad).astype(np.float64)
    return p, moved
