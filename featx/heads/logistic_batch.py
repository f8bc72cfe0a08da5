"""Many logistic regressions on one design matrix, fitted together: a grid of C values over the
same standardised rows (row weights, such as class weights, shared by all).

Each head minimises scikit-learn's LogisticRegression (lbfgs) objective: the (sample-weighted)
mean half-binomial loss (two classes: the second class's log-odds) or half-multinomial loss,
plus ``||W||^2 / (2 C sum(weights))`` on the coefficients, not the intercepts. Each runs its own
L-BFGS (history 10, backtracking line search to the Armijo condition), stopped by scikit-learn's
rules: every gradient entry within `tol`, or a relative fall of the objective within 64 machine
epsilons, or `max_iter` steps. The heads move in lockstep so that one step of every head still
evaluating costs two matrix products: X times all their weight vectors side by side, and X's
transpose times all their residuals. A head that has stopped leaves the products.

Heads are taken in order of C, in chunks of up to CHUNK_HEADS that keep the n x (heads x classes)
scores within `max_scores`; each chunk starts from the weights the previous chunk ended with at
the nearest smaller C (a warm start along the C path), the first from zero. The products and the
per-row losses run in float32, as scikit-learn's own fit on a float32 store does; the solver's
state (weights, gradients, history) is float64.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_class_weight

HISTORY = 10  # L-BFGS correction pairs, scipy's default
ARMIJO = 1e-4  # sufficient decrease
MAX_SHRINKS = 20  # shrunk steps in a row before a head's line search counts as failed
FTOL = 64 * np.finfo(float).eps  # scikit-learn's ftol for lbfgs
MAX_SCORES = 2 ** 25  # n x (heads x classes) float32 scores held at once: 128 MB
# Heads a chunk: wide enough that the products run near the machine's GEMM rate, narrow enough
# that the chunks step along the C path. 1,000 Cs on 20,250 IMDB rows x 384 (2 vCPUs): 27 s in one
# chunk, 10 s in chunks of 250, 8 s in chunks of 64-125, 15 s in chunks of 32.
CHUNK_HEADS = 100


@dataclass
class BatchFit:
    """The fitted heads, in the order of the Cs given: weights (H, k, d + 1), the intercepts in
    the last column, k = 1 for two classes; L-BFGS iterations and the final objective of each."""

    weights: np.ndarray
    iterations: np.ndarray
    objective: np.ndarray


def fit_logistic_batch(X: np.ndarray, y_index: np.ndarray, n_classes: int, Cs: Sequence[float], *,
                       sample_weight: np.ndarray | None = None, max_iter: int = 1000, tol: float = 1e-4,
                       max_scores: int = MAX_SCORES, done: Callable[[int], object] | None = None) -> BatchFit:
    """Fit one logistic regression per C in `Cs` on the (standardised) rows `X` with class indices
    `y_index` of `n_classes`; `sample_weight` (n,) weighs rows alike in every head. `done(n)` is
    called after each chunk with its n heads."""
    k = 1 if n_classes == 2 else n_classes
    problem = _Problem(X, y_index, k, sample_weight)
    order = np.argsort(np.asarray(Cs, dtype=np.float64), kind="stable")
    per_chunk = max(1, min(CHUNK_HEADS, max_scores // max(1, len(X) * k)))
    d = X.shape[1]
    weights = np.zeros((len(order), k, d + 1))
    iterations = np.zeros(len(order), dtype=np.int64)
    objective = np.zeros(len(order))
    start = np.zeros(k * (d + 1))
    for low in range(0, len(order), per_chunk):
        heads = order[low:low + per_chunk]
        Cs_here = np.asarray(Cs, dtype=np.float64)[heads]
        W0 = np.tile(start, (len(heads), 1))
        W, its, f = _lbfgs(problem, Cs_here, W0, max_iter, tol)
        weights[heads], iterations[heads], objective[heads] = W.reshape(len(heads), k, d + 1), its, f
        start = W[-1]
        if done:
            done(len(heads))
    return BatchFit(weights, iterations, objective)


def fit_standardized(X: np.ndarray, y: np.ndarray, Cs: Sequence[float], *, standardize: bool = True,
                     class_weight: str | None = None, max_iter: int = 1000,
                     done: Callable[[int], object] | None = None) -> tuple[np.ndarray, StandardScaler | None, BatchFit]:
    """(classes, scaler, fit): LogisticRegression's C grid on labels `y` as LogRegHead fits each C, the
    rows standardised (a StandardScaler fitted on them) and weighed by `class_weight`."""
    classes = np.unique(y)
    if len(classes) < 2:  # as LogisticRegression refuses it, not a model of one class
        raise ValueError(f"logistic regression needs samples of at least 2 classes, but the data contains only "
                         f"one class: {classes[0]!r}")
    y_index = np.searchsorted(classes, y)
    scaler = StandardScaler().fit(X) if standardize else None
    weights = None if class_weight is None else compute_class_weight(class_weight, classes=classes, y=y)[y_index]
    fit = fit_logistic_batch(scaler.transform(X) if scaler else X, y_index, len(classes), Cs,
                             sample_weight=weights, max_iter=max_iter, done=done)
    return classes, scaler, fit


class _Problem:
    """The shared rows, targets and weights; `evaluate` gives objectives and gradients of many heads."""

    def __init__(self, X: np.ndarray, y_index: np.ndarray, k: int, sample_weight: np.ndarray | None) -> None:
        self.X = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        n, self.d = self.X.shape
        self.k = k
        weights = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        self.total = float(weights.sum())
        self.row_weight = torch.from_numpy(weights / self.total).float()  # sums to 1
        self.weighted_X = self.X * self.row_weight[:, None]  # the gradient's rows, weighted once
        self.index = torch.from_numpy(np.asarray(y_index, dtype=np.int64))
        self.target = (self.index == 1).float()[:, None] if k == 1 else \
            torch.nn.functional.one_hot(self.index, k).float()[:, None, :]  # (n, 1) or (n, 1, k)

    def evaluate(self, W: np.ndarray, penalty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(objective (h,), gradient (h, k * (d + 1))) of h heads at flat weights W (h, k * (d + 1)),
        each with its penalty 1 / (C * sum of weights)."""
        h, k, d = len(W), self.k, self.d
        flat = torch.from_numpy(W).reshape(h * k, d + 1)
        scores = torch.addmm(flat[:, d].float()[None], self.X, flat[:, :d].float().T)  # (n, h * k)
        if k == 1:
            row_loss = torch.nn.functional.binary_cross_entropy_with_logits(
                scores, self.target.expand_as(scores), reduction="none")
            residual = torch.sigmoid(scores).sub_(self.target)
        else:
            log_p = torch.log_softmax(scores.view(-1, h, k), dim=2)
            row_loss = -log_p.gather(2, self.index[:, None, None].expand(-1, h, 1)).squeeze(2)  # (n, h)
            residual = log_p.exp_().sub_(self.target).view(-1, h * k)
        loss = (self.row_weight @ row_loss).double()
        grad = torch.empty(h * k, d + 1, dtype=torch.float64)
        grad[:, :d] = residual.T @ self.weighted_X
        grad[:, d] = self.row_weight @ residual
        coef = flat[:, :d]
        grad[:, :d] += torch.from_numpy(np.repeat(penalty, k))[:, None] * coef
        loss += 0.5 * torch.from_numpy(penalty) * (coef ** 2).reshape(h, k * d).sum(1)
        return loss.numpy(), grad.reshape(h, k * (d + 1)).numpy()


def _lbfgs(problem: _Problem, Cs: np.ndarray, W: np.ndarray, max_iter: int,
           tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-head L-BFGS, every head stepping together; returns (W, iterations, objective).

    Each round evaluates every running head's trial point in one batch: a head whose trial meets
    the Armijo condition takes the step and plans its next one; one that does not shrinks its step
    (the minimiser of the quadratic through what it saw, kept within a tenth and a half of the
    step) and tries again in the next round, beside the others' new steps."""
    h, p = W.shape
    penalty = 1.0 / (Cs * problem.total)
    f, G = problem.evaluate(W, penalty)
    S, Y = np.zeros((HISTORY, h, p)), np.zeros((HISTORY, h, p))
    rho = np.zeros((HISTORY, h))
    stored = np.zeros(h, dtype=np.int64)  # pairs each head holds (the latest at (stored - 1) % HISTORY)
    iterations, shrinks = np.zeros(h, dtype=np.int64), np.zeros(h, dtype=np.int64)
    D, slope, step = np.zeros_like(W), np.zeros(h), np.zeros(h)
    running = np.abs(G).max(1) > tol
    planning = running.copy()
    while running.any():
        heads = np.flatnonzero(planning)
        if len(heads):
            D[heads], slope[heads], step[heads] = _directions(G[heads], S[:, heads], Y[:, heads], rho[:, heads],
                                                              stored[heads])
            stored[heads[step[heads] < 0]] = 0  # restarted along the gradient
            step[heads] = np.abs(step[heads])
            shrinks[heads] = 0
        heads = np.flatnonzero(running)
        trial = W[heads] + step[heads, None] * D[heads]
        f_t, G_t = problem.evaluate(trial, penalty[heads])
        accept = f_t <= f[heads] + ARMIJO * step[heads] * slope[heads]
        took, missed = heads[accept], heads[~accept]
        # A miss: the minimiser of the quadratic through f, the slope and the trial's value.
        excess = f_t[~accept] - f[missed] - step[missed] * slope[missed]
        guess = -slope[missed] * step[missed] ** 2 / (2 * np.maximum(excess, 1e-300))
        step[missed] = np.clip(guess, 0.1 * step[missed], 0.5 * step[missed])
        shrinks[missed] += 1
        s, y = trial[accept] - W[took], G_t[accept] - G[took]
        sy = (s * y).sum(1)
        curved = sy > 1e-10 * (y * y).sum(1)  # else the pair is skipped, as L-BFGS-B does
        slot = stored[took[curved]] % HISTORY
        S[slot, took[curved]], Y[slot, took[curved]], rho[slot, took[curved]] = s[curved], y[curved], 1 / sy[curved]
        stored[took[curved]] += 1
        fell = (f[took] - f_t[accept]) / np.maximum(np.maximum(np.abs(f[took]), np.abs(f_t[accept])), 1.0)
        W[took], f[took], G[took] = trial[accept], f_t[accept], G_t[accept]
        iterations[took] += 1
        running[took[(fell <= FTOL) | (np.abs(G[took]).max(1) <= tol) | (iterations[took] >= max_iter)]] = False
        running[missed[shrinks[missed] >= MAX_SHRINKS]] = False  # the line search failed: stop where it is
        planning[:] = False
        planning[took] = running[took]
    return W, iterations, f


def _directions(G: np.ndarray, S: np.ndarray, Y: np.ndarray, rho: np.ndarray,
                stored: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(direction, slope, first step) of each head; the step is negative where the L-BFGS direction
    was not downhill and the head restarts along the gradient."""
    D = -_two_loop(G, S, Y, rho, stored)
    slope = (G * D).sum(1)
    lost = slope >= 0
    D[lost], slope[lost] = -G[lost], -(G[lost] ** 2).sum(1)
    fresh = (stored == 0) | lost
    step = np.where(fresh, 1.0 / np.maximum(np.linalg.norm(D, axis=1), 1e-12), 1.0)
    return D, slope, np.where(lost, -step, step)


def _two_loop(G: np.ndarray, S: np.ndarray, Y: np.ndarray, rho: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """H G for each head: the L-BFGS two-loop recursion over its stored pairs, vectorised."""
    q = G.copy()
    h = len(G)
    count = np.minimum(stored, HISTORY)
    alpha = np.zeros((HISTORY, h))
    for back in range(HISTORY):  # newest first
        slot = (stored - 1 - back) % HISTORY
        use = back < count
        s, y, r = S[slot, np.arange(h)], Y[slot, np.arange(h)], rho[slot, np.arange(h)]
        alpha[back] = np.where(use, r * (s * q).sum(1), 0.0)
        q -= alpha[back][:, None] * y
    newest = (stored - 1) % HISTORY
    s, y = S[newest, np.arange(h)], Y[newest, np.arange(h)]
    yy = (y * y).sum(1)
    gamma = np.where(count > 0, (s * y).sum(1) / np.where(yy > 0, yy, 1.0), 1.0)
    q *= gamma[:, None]
    for back in reversed(range(HISTORY)):  # oldest first
        slot = (stored - 1 - back) % HISTORY
        use = back < count
        s, y, r = S[slot, np.arange(h)], Y[slot, np.arange(h)], rho[slot, np.arange(h)]
        beta = r * (y * q).sum(1)
        q += np.where(use, alpha[back] - beta, 0.0)[:, None] * s
    return q
