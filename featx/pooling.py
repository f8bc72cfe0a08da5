"""Padding-aware poolings of token states into one vector per row.

Every function takes hidden states (batch, tokens, dim) and a mask (batch, tokens) with
1 for the tokens to pool, works for right or left padding, and never lets a pad position
into the result. `pool` can also leave each row's first real tokens out (a prompt, as
sentence-transformers' ``include_prompt=False`` does).
"""
from __future__ import annotations

import numpy as np
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


def l2_normalized(pooled: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each pooling's vectors scaled to unit length (the store's `normalize`)."""
    return {name: torch.nn.functional.normalize(v, dim=-1) for name, v in pooled.items()}


def l2_normalized_rows(X: np.ndarray) -> np.ndarray:
    """Rows of X (as float32) scaled to unit length; all-zero rows stay zero."""
    X = np.asarray(X, dtype=np.float32)
    result: np.ndarray = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    return result


def pool(hidden: torch.Tensor, mask: torch.Tensor, poolings: tuple[str, ...], normalize: bool = False,
         skip: int = 0) -> dict[str, torch.Tensor]:
    """Each requested pooling of one batch, in float32, optionally L2-normalised; `skip` leaves
    each row's first `skip` real tokens out (weightedmean keeps the others' weights)."""
    hidden = hidden.float()
    positions = mask.cumsum(1)
    kept = mask * (positions > skip) if skip else mask
    pooled = {name: weighted_mean_pool(hidden, kept, positions) if name == "weightedmean" else
              POOLERS[name](hidden, kept) for name in poolings}
    return l2_normalized(pooled) if normalize else pooled


# Image models: what their outputs are, and the poolings that apply to each shape.
IMAGE_POOLINGS_BY_NDIM = {4: ("mean", "max"), 3: ("mean", "max", "cls")}


def prefix_tokens(tokens: int, image_size: tuple[int, int] | None, patch_size: int | None) -> int:
    """How many tokens of a ViT-like output come before its patch tokens (the class token and any
    register tokens): those beyond one per patch; 1 when the patch grid is unknown."""
    if patch_size is None or image_size is None:
        return 1
    return max(0, tokens - (int(image_size[0]) // patch_size) * (int(image_size[1]) // patch_size))


def pool_image_output(out: torch.Tensor, name: str, prefix: int = 1) -> torch.Tensor:
    """One pooling of an image model's output, for extraction and fine-tuning alike: a feature
    map (B, C, H, W) pooled over space (mean, max); token states (B, T, D) by their first token
    (cls) or over the tokens after the `prefix` class and register tokens (mean, max).
    A pooling that does not apply to the output's shape raises ValueError."""
    if name not in IMAGE_POOLINGS_BY_NDIM.get(out.ndim, ()):
        raise ValueError(f"{name} does not apply to an output of shape {tuple(out.shape)}")
    if out.ndim == 4:
        return out.mean((2, 3)) if name == "mean" else out.amax((2, 3))
    if name == "cls":
        return out[:, 0]
    patches = out[:, prefix:]
    return patches.mean(1) if name == "mean" else patches.amax(1)
