"""Stratified splits shared by the heads and the evaluation protocols, and the validation rows
featx train carves from a training store."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from featx.errors import FeatxWarning
from featx.heads.rows import take
from featx.pooling import l2_normalized_rows
from featx.store import FeatureStore


def can_stratify(y: np.ndarray, parts: int) -> bool:
    """True when every class has at least `parts` rows (multi-label and regression targets, a 2-D
    y: when there are at least 2 x `parts` rows, for a random cut)."""
    if np.ndim(y) == 2:
        return len(y) >= 2 * parts
    _, counts = np.unique(y, return_counts=True)
    return len(counts) > 1 and counts.min() >= parts


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held_out) row indices; each class gives round(fraction x its rows), at least one.
    Multi-label and regression targets (a 2-D y) are cut at random: round(fraction x rows)."""
    rng = np.random.default_rng(seed)
    if np.ndim(y) == 2:
        take = min(len(y) - 1, max(1, round(fraction * len(y))))
        held = np.sort(rng.choice(len(y), size=take, replace=False))
        return np.setdiff1d(np.arange(len(y)), held), held
    held_out = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        take = min(len(rows) - 1, max(1, round(fraction * len(rows))))
        held_out.append(rng.choice(rows, size=take, replace=False))
    held = np.sort(np.concatenate(held_out))
    return np.setdiff1d(np.arange(len(y)), held), held


# The leak check of a validation split carved from train (see carved_leaks).
LEAK_NEAR_COSINE = 0.98  # centred cosine at or above which two rows count as near-duplicates
LEAK_WARN_SHARE = 0.02  # warn when this share of the checked validation rows has a twin in train
_LEAK_VAL_ROWS = 1_000  # validation rows checked for near-duplicates (exact ones: all)
_LEAK_FIT_ROWS = 100_000  # training rows they are compared with (a seeded sample beyond)
_LEAK_CENTRE_ROWS = 8_192  # training rows whose mean centres the cosines
_LEAK_BLOCK = 1_024  # training rows compared at a time: 1,000 x 1,024 float32 similarities, 4 MB


def carved_leaks(hashes: np.ndarray, X: np.ndarray, fit_rows: np.ndarray, val_rows: np.ndarray,
                 seed: int) -> dict[str, float | int]:
    """How many validation rows carved from train have a twin among the training rows.

    Exact twins: the same content sha256 (every validation row). Near twins: a centred cosine of
    the cached vectors of at least LEAK_NEAR_COSINE, for up to 1,000 validation rows against up to
    100,000 training rows (seeded samples beyond), so the cost stays under a few GFLOP. Posts that
    quote each other straddle a random cut this way, and validation then runs above test.
    """
    exact_mask = _has_twin(np.asarray(hashes), val_rows, fit_rows)
    rng = np.random.default_rng(seed)
    others = val_rows[~exact_mask]
    checked = np.sort(rng.choice(others, size=min(len(others), _LEAK_VAL_ROWS), replace=False)) if len(others) else others
    compared = fit_rows if len(fit_rows) <= _LEAK_FIT_ROWS else np.sort(rng.choice(fit_rows, _LEAK_FIT_ROWS, False))
    near = 0
    if len(checked) and len(compared):
        center = np.asarray(X[compared[:_LEAK_CENTRE_ROWS]], dtype=np.float32).mean(axis=0)
        queries = l2_normalized_rows(np.asarray(X[checked], dtype=np.float32) - center)
        best = np.full(len(checked), -1.0, dtype=np.float32)
        for start in range(0, len(compared), _LEAK_BLOCK):
            block = l2_normalized_rows(np.asarray(X[compared[start:start + _LEAK_BLOCK]], dtype=np.float32) - center)
            best = np.maximum(best, (queries @ block.T).max(axis=1))
        near = int((best >= LEAK_NEAR_COSINE).sum())
    near_share = near / len(checked) if len(checked) else 0.0
    share = (int(exact_mask.sum()) + near_share * len(others)) / max(len(val_rows), 1)
    return {"val_rows": len(val_rows), "exact": int(exact_mask.sum()), "near_checked": len(checked),
            "near": near, "near_cosine": LEAK_NEAR_COSINE, "share": round(float(share), 4)}


def _has_twin(hashes: np.ndarray, rows: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each of `rows`, whether one of `others` has the same hash: matched on the hashes' first 8 bytes
    (8 bytes a row held, not 32), then confirmed on all of them for the few that match."""
    prefix = np.ascontiguousarray(hashes[:, :8]).view(np.uint64).ravel()
    found = np.isin(prefix[rows], prefix[others])
    if found.any():
        keys = np.ascontiguousarray(hashes).view(np.dtype((np.void, hashes.shape[1]))).ravel()
        maybe = others[np.isin(prefix[others], prefix[rows[found]])]
        found[found] = np.isin(keys[rows[found]], keys[maybe])
    return found


def leak_warning(leaks: dict[str, float | int]) -> str | None:
    """The warning for a carved validation split whose rows have twins in train, or None below the threshold."""
    if leaks["share"] < LEAK_WARN_SHARE or leaks["exact"] + leaks["near"] < 2:
        return None
    return (f"{leaks['share']:.0%} of the validation rows carved from train have a twin among the training rows "
            f"({leaks['exact']} exact duplicates of {leaks['val_rows']}; {leaks['near']} near-duplicates of "
            f"{leaks['near_checked']} checked, cosine >= {leaks['near_cosine']}): validation will score above test "
            "and choices lean on memory (k=1); pass --val STORE extracted from rows kept apart from train (a split "
            "by thread, author or source, not at random)")


@dataclass
class CarvedSplit:
    """The validation rows carved from train: the same cut for every pooling, its leaks checked once."""

    fraction: float
    seed: int
    leaks: dict[str, Any] | None = None

    def cut(self, train: FeatureStore, parts: tuple[Any, Any, Any], y: np.ndarray) -> tuple[Any, np.ndarray, Any, np.ndarray]:
        """(train parts, their labels, validation parts, theirs): each of (vectors, texts, states) cut."""
        fit_rows, val_rows = stratified_split(y, self.fraction, self.seed)
        if self.leaks is None:
            self.leaks = carved_leaks(readable_hashes(train), parts[0], fit_rows, val_rows, self.seed)
            if (warning := leak_warning(self.leaks)) is not None:
                warnings.warn(FeatxWarning(warning), stacklevel=3)
        X, texts, states = parts
        fit = (take(X, fit_rows), None if texts is None else [texts[i] for i in fit_rows],
               None if states is None else states[fit_rows])
        held = (take(X, val_rows), None if texts is None else [texts[i] for i in val_rows],
                None if states is None else states[val_rows])
        return fit, y[fit_rows], held, y[val_rows]


def readable_hashes(store: FeatureStore) -> np.ndarray:
    """The content sha256 of the rows `labelled` reads (skipped rows left out), in its order."""
    readable = store.readable()
    hashes: np.ndarray = store.content_sha256
    return hashes if readable is None else hashes[readable]
