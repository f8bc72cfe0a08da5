"""The hybrid head's single-label sweep (featx.heads.hybrid): dense weights' C paths, the Cs upwards,
each fit starting from the last one's optimum (Newton fits carry its products over:
featx.heads.logistic_newton.NewtonPath) and scored on the validation rows; the weights climbed
upwards, or all fitted (`search_weights`); two paths side by side, one a thread (the products release
the GIL while the other path's solver steps), on one copy of the rows, a path alone spreading its
products over the cores.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from featx.heads.logistic_columns import Columns, fit_softmax
from featx.heads.logistic_newton import NewtonPath, principal_axes, turned_back
from featx.heads.logreg_multi import PATIENCE
from featx.progress import progress_bar

# How the weights' paths are searched (`search_weights`): upwards while they improve, or all of them.
WEIGHT_SEARCHES = ("climb", "grid")
# Truncated Newton fits under this many stored entries a column, or at this many classes and more (`newton_fits`).
NEWTON_ENTRIES = 100
NEWTON_CLASSES = 3


@dataclass
class Swept:
    """A sweep's curve, its training rows as the sweep prepared them (sparse bands made, the dense block
    turned to `axes` where its fits are turned Newton) and how it fitted them (`path`: a C path's fit on
    given rows): `fit_from_zero` fits those rows again at one (weight, C)."""

    curve: list[dict[str, float]]
    rows: Columns
    axes: np.ndarray | None
    path: Callable[[Columns], Callable[[float], np.ndarray]]

    def fit_from_zero(self, weight: float, C: float) -> np.ndarray:
        """The sweep's fit of its rows at `weight` and `C`, from zero, on the blocks already prepared (the
        same design, not made again), the weights turned back where the rows were turned."""
        W = self.path(self.rows.scaled(1, weight))(C)
        return W if self.axes is None else turned_back(W, self.axes)


def sweep_paths(design: list[Any], held_design: list[Any], y_index: np.ndarray, classes: np.ndarray,
                y_val: np.ndarray, weights: tuple[float, ...], Cs: tuple[float, ...], max_iter: int,
                label: str, search: str = "climb") -> Swept:
    """(weight, C) pairs fitted on `design` (its dense block at weight 1) and scored on `held_design`:
    the curve, in the order of `weights`, of the weights `search_weights` fits, each weight's Cs upwards
    until its path falls (`fell`)."""
    cores = torch.get_num_threads()
    running = set[float]()
    # Preconditioned, on the vectors turned: IMDB 1,007 -> 728 passes, 19.4 -> 17.3 s a head.
    axes, newton = None, newton_fits(design, len(classes))
    if newton:
        axes = principal_axes(design[1])
        design[1], held_design[1] = design[1] @ axes, held_design[1] @ axes
    train, held = (Columns(blocks, threads=cores, spread=lambda: len(running) < cores)
                   for blocks in (design, held_design))

    def c_path(rows: Columns) -> Callable[[float], np.ndarray]:
        """Fits of `rows` at rising Cs, each from the last one's optimum."""
        if newton:
            return NewtonPath.softmax(rows, y_index, len(classes), max_iter, precondition=True).fit
        last: list[np.ndarray | None] = [None]

        def fit(C: float) -> np.ndarray:
            W = last[0] = fit_softmax(rows, y_index, len(classes), C, last[0], max_iter)
            return W
        return fit

    found: dict[float, list[dict[str, float]]] = {}
    with progress_bar(len(set(weights)) * len(Cs), label, unit="fit") as bar:
        def path(weight: float) -> float:
            running.add(weight)
            fit, val_rows, points = c_path(train.scaled(1, weight)), held.scaled(1, weight), found.setdefault(weight, [])
            for step, C in enumerate(sorted(Cs)):
                scores = val_rows.scores(fit(C))
                predicted = (scores[:, 0] > 0).astype(np.int64) if scores.shape[1] == 1 else scores.argmax(1)
                points.append({"weight": float(weight), "C": float(C),
                               "score": float(np.mean(classes[predicted] == y_val))})
                bar.update()
                if fell(points):
                    bar.update(len(Cs) - 1 - step)
                    break
            running.discard(weight)
            return max(point["score"] for point in points)

        def fit_paths(side_by_side: list[float]) -> list[float]:
            if len(side_by_side) == 1:  # alone: its products spread over the cores (`running`)
                return [path(side_by_side[0])]
            # Paths side by side, one a thread, with their share of the BLAS threads: OpenBLAS serialises
            # calls from two threads that each want every core.
            threads = min(len(side_by_side), cores)
            with ThreadPoolExecutor(threads, thread_name_prefix="featx-hybrid") as pool, \
                    threadpool_limits(max(1, cores // threads), user_api="blas"):
                return list(pool.map(path, side_by_side))
        search_weights(weights, fit_paths, search)
        bar.update(len(Cs) * (len(set(weights)) - len(found)))
    return Swept([point for weight in weights for point in found.pop(weight, [])], train, axes, c_path)


def search_weights(weights: Sequence[float], fit_paths: Callable[[list[float]], list[float]], search: str) -> None:
    """Fit the weights' C paths the way `search` says (WEIGHT_SEARCHES): `fit_paths` fits a list of weights
    (side by side where it can) and gives each path's best score. "grid" fits every weight, the larger
    first (their paths take the most steps, and the last path should be short).

    "climb" goes up the weights as each path goes up its Cs: from the smallest (the TF-IDF nearly alone),
    two side by side at a time, until a path's best falls below the one before it (a tie is not a fall);
    the weights past that pair are not fitted. On the 16 validation curves committed in benchmarks/results
    (seven suites, MiniLM and mpnet, mean and CLS vectors) it chose what the grid chose every time,
    fitting two to five of the five paths (benchmarks/weight_climb.py); climbing from 1 outwards instead
    missed two of them (AG News, CLS vectors: test 0.8795 against the grid's 0.8903)."""
    ordered = sorted(set(weights))
    if search == "grid":
        fit_paths(ordered[::-1])
        return
    best: list[float] = []
    while len(best) < len(ordered) and all(later >= earlier for earlier, later in itertools.pairwise(best)):
        best += fit_paths(ordered[len(best):len(best) + 2])


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
