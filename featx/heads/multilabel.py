"""One-vs-rest logistic regression for every label at once, for multi-label heads (logreg, hybrid).

Each label's model is the L2-penalised logistic regression scikit-learn fits (intercept not
penalised): minimise 0.5 |w|^2 + C * sum of the label's binary log-losses, stopped by
scikit-learn's lbfgs rule. The labels do not share parameters, so their sum is minimised jointly
by one L-BFGS run: two passes over X per step for all labels instead of one solver run per
label, with warm starts along a C sweep.

X is given as column blocks with the same rows (`Blocks`): one dense matrix (the logreg head),
or the hybrid's sparse TF-IDF beside its dense vectors, each multiplied on its own, so the
dense part never becomes a sparse matrix. Dense blocks are multiplied in float32 (the sums
stay float64): about twice as fast, and far inside the stopping tolerance.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

# Column blocks of one design matrix (numpy arrays or scipy-sparse matrices), or one matrix.
Blocks = Sequence[Any] | np.ndarray


def fit_logistic(blocks: Blocks, Y: np.ndarray, C: float, start: np.ndarray | None = None,
                 max_iter: int = 1000) -> np.ndarray:
    """Weights (D + 1, L), the intercepts in the last row, for 0/1 targets Y (n, L) at `C`;
    D is the blocks' columns together."""
    blocks = _prepared(blocks)
    n, labels = Y.shape
    edges = np.cumsum([0, *(block.shape[1] for block in blocks)])
    d = int(edges[-1])
    targets = np.asarray(Y, dtype=np.float32)
    scale = 1.0 / (C * n)  # the objective divided by C * n: the same optimum, gradients of order 1

    def loss_and_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        W = flat.reshape(d + 1, labels)
        z = _scores(blocks, edges, W)
        loss = float((np.logaddexp(np.float32(0.0), z) - targets * z).sum(dtype=np.float64)) / n
        loss += 0.5 * scale * float((W[:d] ** 2).sum())
        residual = (expit(z) - targets) / np.float32(n)
        grad = np.empty_like(W)
        for block, low, high in zip(blocks, edges[:-1], edges[1:]):
            grad[low:high] = np.asarray(block.T @ residual, dtype=np.float64)
        grad[:d] += scale * W[:d]
        grad[d] = residual.sum(0, dtype=np.float64)
        return loss, grad.ravel()

    initial = np.zeros((d + 1, labels)) if start is None else start
    found = minimize(loss_and_grad, initial.ravel(), jac=True, method="L-BFGS-B",
                     options={"maxiter": max_iter, "maxls": 50, "gtol": 1e-4, "ftol": 64 * np.finfo(float).eps})
    weights: np.ndarray = found.x.reshape(d + 1, labels)
    return weights


def probabilities(blocks: Blocks, W: np.ndarray) -> np.ndarray:
    """Each label's probability (rows x labels) under weights from `fit_logistic`."""
    blocks = _prepared(blocks)
    edges = np.cumsum([0, *(block.shape[1] for block in blocks)])
    result: np.ndarray = expit(_scores(blocks, edges, W).astype(np.float64))
    return result


def _prepared(blocks: Blocks) -> list[Any]:
    """Dense blocks as float32 arrays, sparse ones as float32 CSR: each is read many times."""
    if isinstance(blocks, np.ndarray) or hasattr(blocks, "tocsr"):  # one matrix
        blocks = [blocks]
    return [block.astype(np.float32).tocsr() if hasattr(block, "tocsr") else np.asarray(block, dtype=np.float32)
            for block in blocks]


def _scores(blocks: list[Any], edges: np.ndarray, W: np.ndarray) -> np.ndarray:
    W32 = W.astype(np.float32)
    z = np.tile(W32[-1], (blocks[0].shape[0], 1))
    for block, low, high in zip(blocks, edges[:-1], edges[1:]):
        z += np.asarray(block @ W32[low:high])
    return z
