"""The Featurizer protocol: the one place that knows what an input row is.

The engine streams rows from a Source, hands a window of them to `prepare` (in a
background thread: tokenizing, decoding), plans batches by `cost`, and a Runner moves
each `collate`d batch to its device and calls `forward`, which returns one float32
vector per row for every requested pooling. Nothing else in the engine knows whether
a row is a text or an image, or which device runs it.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from featx.config import ExtractConfig


class Featurizer(Protocol):
    """Turns input rows into model inputs, and a forward pass into pooled vectors."""

    device: torch.device
    dim: int  # the width of each pooling's vector
    poolings: tuple[str, ...]
    # Outputs that are per token, (rows, tokens, dim) from `forward`: a runner keeps each row's
    # real tokens (attention mask) as one array; empty for a featurizer that only pools.
    token_outputs: tuple[str, ...]
    store_dtype: str
    config: ExtractConfig  # everything that decides a vector; its fingerprint identifies the store

    def content_hashes(self, records: Sequence[Any]) -> np.ndarray:
        """(n, 32) uint8: sha256 of each row's content (the embedding cache's key)."""

    def prepare(self, records: Sequence[Any]) -> tuple[list[Any], dict[str, np.ndarray]]:
        """One model-ready item per row (token ids, pixels), on the host, and the per-row uint8
        flags its modality declares (`row_flags`), by name: e.g. "truncated" (the input had to be
        cut to fit, a text over max_length) and "skipped" (it could not be read, an undecodable
        image under skip_bad; its item is None, and the engine gives it NaN vectors). A flag left
        out is 0 for every row."""

    def default_batch_cost(self) -> int:
        """The batch budget on this featurizer's device, in `cost` units."""

    def cost(self, item: Any) -> int:
        """How much of a batch budget `item` uses (its tokens; 1 for a fixed-size image)."""

    def collate(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        """One batch of host tensors (the runner moves them to the device)."""

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{pooling: (rows, dim) float32} for a batch already on the device, and each of
        `token_outputs` as (rows, tokens, dim)."""

    def cast_weights(self) -> None:
        """Hold the weights in the compute dtype instead of autocasting (the GPU runner's choice)."""
