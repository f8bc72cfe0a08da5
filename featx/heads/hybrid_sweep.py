"""The hybrid head's single-label sweep (featx.heads.hybrid): every dense weight's C path, the Cs
upwards, each fit warm-started from the last and scored on the validation rows; the paths side by
side, one a thread (the products release the GIL while another path's solver steps), on one copy
of the rows, the last paths' products spread over the cores the others left free.
"""
from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from featx.heads.logistic_columns import Columns, fit_softmax
from featx.heads.logistic_newton import fit_softmax_newton, principal_axes, turned_back
from featx.heads.logreg_multi import PATIENCE
from featx.progress import progress_bar

# Truncated Newton fits under this many stored entries a column, or at this many classes and more (`newton_fits`).
NEWTON_ENTRIES = 100
NEWTON_CLASSES = 3


@dataclass
class Swept:
    """A sweep's curve, its training rows as the sweep prepared them (sparse bands made, the dense block
    turned to `axes` where its fits are turned Newton) and the fit it used: `fit_from_zero` fits those
    rows again at one (weight, C)."""

    curve: list[dict[str, float]]
    rows: Columns
    axes: np.ndarray | None
    fit: Any

    def fit_from_zero(self, weight: float, y_index: np.ndarray, n_classes: int, C: float, max_iter: int) -> np.ndarray:
        """The sweep's fit of its rows at `weight` and `C`, from zero, on the blocks already prepared (the
        same design, not made again), the weights turned back where the rows were turned."""
        W: np.ndarray = self.fit(self.rows.scaled(1, weight), y_index, n_classes, C, None, max_iter)
        return W if self.axes is None else turned_back(W, self.axes)


def sweep_paths(design: list[Any], held_design: list[Any], y_index: np.ndarray, classes: np.ndarray,
                y_val: np.ndarray, weights: tuple[float, ...], Cs: tuple[float, ...], max_iter: int,
                label: str) -> Swept:
    """Every (weight, C) fitted on `design` (its dense block at weight 1) and scored on `held_design`:
    the curve, in the order of `weights`, each weight's Cs upwards until its path falls (`fell`)."""
    cores = torch.get_num_threads()
    threads, running = min(len(weights), cores), set[float]()
    # Preconditioned, on the vectors turned: IMDB 1,007 -> 728 passes, 19.4 -> 17.3 s a head.
    fit: Any = fit_softmax
    axes = None
    if newton_fits(design, len(classes)):
        axes = principal_axes(design[1])
        design[1], held_design[1] = design[1] @ axes, held_design[1] @ axes
        fit = functools.partial(fit_softmax_newton, precondition=True)
    train, held = (Columns(blocks, threads=cores, spread=lambda: len(running) < cores)
                   for blocks in (design, held_design))
    with progress_bar(len(weights) * len(Cs), label, unit="fit") as bar:
        def path(weight: float) -> list[dict[str, float]]:
            running.add(weight)
            rows, val_rows, W, found = train.scaled(1, weight), held.scaled(1, weight), None, []
            for step, C in enumerate(sorted(Cs)):
                W = fit(rows, y_index, len(classes), C, W, max_iter)
                scores = val_rows.scores(W)
                predicted = (scores[:, 0] > 0).astype(np.int64) if scores.shape[1] == 1 else scores.argmax(1)
                found.append({"weight": float(weight), "C": float(C),
                              "score": float(np.mean(classes[predicted] == y_val))})
                bar.update()
                if fell(found):
                    bar.update(len(Cs) - 1 - step)
                    break
            running.discard(weight)
            return found
        # One BLAS thread a path: OpenBLAS serialises calls from two threads that each want both cores.
        with ThreadPoolExecutor(threads, thread_name_prefix="featx-hybrid") as pool, \
                threadpool_limits(max(1, cores // threads), user_api="blas"):
            # Larger weights first: their paths take the most steps, and the last path should be short.
            order = sorted(weights, reverse=True)
            found = dict(zip(order, pool.map(path, order)))
    return Swept([point for weight in weights for point in found[weight]], train, axes, fit)


def newton_fits(design: list[Any], n_classes: int) -> bool:
    """Whether truncated Newton fits this design faster than L-BFGS-B (measured, benchmarks/README): where
    the TF-IDF is so wide (under NEWTON_ENTRIES stored entries a column) that L-BFGS-B's update costs more
    than the products (IMDB, 38: a head 24 -> 15 s; SST-2, 361: 14.5 -> 17 s, so not there), and for
    NEWTON_CLASSES classes or more, where L-BFGS-B takes many more steps on the multinomial loss (emotion,
    6 classes: 41 -> 19.5 s; Banking77, 77 classes and 377 entries a column: 41 -> 22.7 s), or as many
    labels of a multi-label head (GoEmotions, 28 labels: one fit at C 1 44.3 -> 6.1 s)."""
    entries, width = design[0].nnz + design[1].size, design[0].shape[1] + design[1].shape[1]
    return bool(entries < NEWTON_ENTRIES * width or n_classes >= NEWTON_CLASSES)


def fell(path: list[dict[str, float]]) -> bool:
    """Whether one weight's C path (upwards) scored below its best at each of the last PATIENCE
    Cs: its larger Cs would only cost more to fit. Unlike the multi-label logreg head's stop, ties
    do not count as falling: a flat start (every row predicted one class at the smallest Cs)
    must not end the path before it learns."""
    return len(path) > PATIENCE and max(p["score"] for p in path[-PATIENCE:]) < max(p["score"] for p in path)


def rank(point: dict[str, float]) -> tuple[float, float, float]:
    """A sweep point's rank: the score, then the smaller C, then the weight nearest 1."""
    return point["score"], -point["C"], -abs(math.log(point["weight"]))
