"""Text: tokenize once per window, pad per batch, pool the states of one forward pass.

`tokenize` and `pad_token_id` are the one tokenizer call and the one padding rule of
featx: extraction, predictors and fine-tuning all use them, so a text becomes the
same tokens, padded the same way, on every path.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from featx.backbones import Backbone
from featx.batching import pad_batch
from featx.config import ExtractConfig
from featx.errors import FeatxError
from featx.hardware import compute_context, torch_dtype
from featx.pooling import pool


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text with special tokens, truncated to max_length, unpadded."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False,
                        return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    # A tokenizer without special tokens can turn "" into no tokens; keep the row with one pad.
    return [ids if ids else [pad_token_id(tokenizer)] for ids in encoded]


def pad_token_id(tokenizer: Any) -> int:
    """The id padding uses: the tokenizer's pad token, else its end-of-sequence, else unknown."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def collate_tokens(tokenizer: Any, token_ids: Sequence[list[int]]) -> dict[str, torch.Tensor]:
    """input_ids and attention_mask of a batch, padded on the tokenizer's side."""
    pad_left = getattr(tokenizer, "padding_side", "right") == "left"
    input_ids, mask = pad_batch(list(token_ids), pad_token_id(tokenizer), pad_left)
    return {"input_ids": input_ids, "attention_mask": mask}


def text_hashes(texts: Sequence[str]) -> np.ndarray:
    """(n, 32) uint8: sha256 of each text as UTF-8 (the key of featx.cache)."""
    digests = b"".join(hashlib.sha256(text.encode("utf-8")).digest() for text in texts)
    return np.frombuffer(digests, dtype=np.uint8).reshape(-1, 32)


class TextFeaturizer:
    """A transformers text encoder under one ExtractConfig."""

    def __init__(self, backbone: Backbone, config: ExtractConfig) -> None:
        self.backbone, self.config = backbone, config
        self.device = backbone.device
        self.dim = backbone.hidden_size * len(config.layers)
        self.poolings = config.poolings
        self.store_dtype = config.store_dtype
        self._all_states = config.layers != (-1,)

    def identity(self) -> ExtractConfig:
        return self.config

    def content_hashes(self, records: Sequence[Any]) -> np.ndarray:
        return text_hashes([r.text for r in records])

    def prepare(self, records: Sequence[Any]) -> list[list[int]]:
        return tokenize(self.backbone.tokenizer, [r.text for r in records], self.config.max_length)

    def cost(self, item: list[int]) -> int:
        return len(item)

    def collate(self, items: Sequence[list[int]]) -> dict[str, torch.Tensor]:
        return collate_tokens(self.backbone.tokenizer, items)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        config, mask = self.config, batch["attention_mask"]
        with torch.inference_mode(), compute_context(self.device, config.dtype, self._weights_dtype()):
            output = self.backbone.model(**batch, output_hidden_states=self._all_states)
            if self._all_states:
                hidden = torch.cat([output.hidden_states[i] for i in config.layers], dim=-1)
            else:
                hidden = output.last_hidden_state
            return pool(hidden, mask, config.poolings, config.normalize)

    def cast_weights(self) -> None:
        wanted = torch_dtype(self.config.dtype)
        current = self._weights_dtype()
        if current == wanted:
            return
        if current != torch.float32:
            raise FeatxError(f"{self.backbone.name} was cast to {current} for an earlier run; load it again "
                             f"for {self.config.dtype}")
        torch.nn.Module.to(self.backbone.model, wanted)

    def _weights_dtype(self) -> torch.dtype:
        return next(self.backbone.model.parameters()).dtype
