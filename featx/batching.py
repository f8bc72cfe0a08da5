"""Batches planned by token count: sort by length, cut by a token budget, pad per batch."""
from __future__ import annotations

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


def pad_batch(token_ids: list[list[int]], pad_id: int, pad_left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) as int64 tensors padded to the batch's longest row."""
    width = max(len(ids) for ids in token_ids)
    input_ids = np.full((len(token_ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(token_ids), width), dtype=np.int64)
    for row, ids in enumerate(token_ids):
        span = slice(width - len(ids), width) if pad_left else slice(0, len(ids))
        input_ids[row, span] = ids
        mask[row, span] = 1
    return torch.from_numpy(input_ids), torch.from_numpy(mask)
