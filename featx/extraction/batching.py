"""Batches planned by token count: sort by length, cut by a token budget, pad per batch."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def plan_batches(lengths: np.ndarray, batch_tokens: int) -> list[np.ndarray]:
    """Row indices of each batch, longest rows first; rows x longest length <= batch_tokens.

    Sorting makes rows of one batch nearly equal in length, so dynamic padding wastes
    little; a row longer than the budget still gets a batch of its own.
    """
    if batch_tokens < 1:
        raise ValueError(f"batch_tokens must be positive, got {batch_tokens}")
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches = []
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])
        rows = max(1, batch_tokens // max(longest, 1))
        batches.append(order[start:start + rows])
        start += rows
    return batches


def pad_batch(rows: Sequence[Any], pad_value: float = 0, pad_left: bool = False,
              dtype: type = np.int64) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, attention_mask) padded to the batch's longest row: token ids (rows, width), or
    per-token vectors (rows, width, dim) from rows of (tokens, dim); the mask is int64 (rows, width)."""
    width = max(len(row) for row in rows)
    values = np.full((len(rows), width, *np.shape(rows[0])[1:]), pad_value, dtype=dtype)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if pad_left else slice(0, len(row))
        values[i, span] = row
        mask[i, span] = 1
    return torch.from_numpy(values), torch.from_numpy(mask)


def pad_sequences(sequences: Any, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(vectors (rows, longest, dim) float32, mask (rows, longest)) of those rows of per-row
    sequences (featx.store.states.RowSequences: token states or window vectors), padded on the right."""
    return pad_batch([sequences.row(int(row)) for row in rows], 0.0, dtype=np.float32)
