"""Padding-aware poolings of token states into one vector per row.

Every function takes hidden states (batch, tokens, dim) and a mask (batch, tokens) with
1 for the tokens to pool, works for right or left padding, and never lets a pad position
into the result. `pool` can also leave each row's first real tokens out (a prompt, as
sentence-transformers' ``include_prompt=False`` does).
"""
from __future__ import annotations

import torch


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the real tokens' states."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def mean_sqrt_len_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of the real tokens' states over the square root of their count."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1).sqrt()


def weighted_mean_pool(hidden: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """Average weighted by position: the k-th real token weighs k (`positions`: each token's
    1-based place among the row's real tokens, when some of them are left out of `mask`)."""
    positions = mask.cumsum(1) if positions is None else positions
    weights = (positions * mask).unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


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


POOLERS = {"mean": mean_pool, "cls": cls_pool, "max": max_pool, "last": last_pool, "weightedmean": weighted_mean_pool,
           "mean_sqrt_len": mean_sqrt_len_pool}


def pool(hidden: torch.Tensor, mask: torch.Tensor, poolings: tuple[str, ...], normalize: bool = False,
         skip: int = 0) -> dict[str, torch.Tensor]:
    """Each requested pooling of one batch, in float32, optionally L2-normalised; `skip` leaves
    each row's first `skip` real tokens out (weightedmean keeps the others' weights)."""
    hidden = hidden.float()
    positions = mask.cumsum(1)
    kept = mask * (positions > skip) if skip else mask
    pooled = {name: weighted_mean_pool(hidden, kept, positions) if name == "weightedmean" else
              POOLERS[name](hidden, kept) for name in poolings}
    if normalize:
        pooled = {name: torch.nn.functional.normalize(v, dim=-1) for name, v in pooled.items()}
    return pooled
