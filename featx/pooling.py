"""Padding-aware poolings of token states into one vector per row.

Every function takes hidden states (batch, tokens, dim) and an attention mask
(batch, tokens) with 1 for real tokens, works for right or left padding, and never
lets a pad position into the result.
"""
from __future__ import annotations

import torch


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the real tokens' states."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State of the first real token ([CLS] for BERT-style models)."""
    first = mask.int().argmax(1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]


def max_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over the real tokens."""
    return hidden.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).amax(1)


def last_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State of the last real token (the usual choice for decoder models)."""
    last = mask.shape[1] - 1 - mask.int().flip(1).argmax(1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


POOLERS = {"mean": mean_pool, "cls": cls_pool, "max": max_pool, "last": last_pool}


def pool(hidden: torch.Tensor, mask: torch.Tensor, poolings: tuple[str, ...],
         normalize: bool = False) -> dict[str, torch.Tensor]:
    """Each requested pooling of one batch, in float32, optionally L2-normalised."""
    hidden = hidden.float()
    pooled = {name: POOLERS[name](hidden, mask) for name in poolings}
    if normalize:
        pooled = {name: torch.nn.functional.normalize(v, dim=-1) for name, v in pooled.items()}
    return pooled
