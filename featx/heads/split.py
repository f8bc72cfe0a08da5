"""Stratified splits shared by the heads and the evaluation protocols."""
from __future__ import annotations

import numpy as np


def can_stratify(y: np.ndarray, parts: int) -> bool:
    """True when every class has at least `parts` rows."""
    _, counts = np.unique(y, return_counts=True)
    return len(counts) > 1 and counts.min() >= parts


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held_out) row indices; each class gives round(fraction x its rows), at least one."""
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        take = min(len(rows) - 1, max(1, round(fraction * len(rows))))
        held_out.append(rng.choice(rows, size=take, replace=False))
    held = np.sort(np.concatenate(held_out))
    return np.setdiff1d(np.arange(len(y)), held), held
