"""Text: tokenize once per window, pad per batch, pool the states of one forward pass.

`tokenize` and `pad_token_id` are the one tokenizer call and the one padding rule of
featx: extraction, predictors and fine-tuning all use them, so a text becomes the
same tokens, padded the same way, on every path.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from featx.backbones import Backbone
from featx.backbones.blocks import capture_states, run_to_layer
from featx.backbones.loaders import backend_batch_tokens, load_backend
from featx.backbones.st_layers import build_modules
from featx.backbones.st_modules import prompt_tokens
from featx.config import SEQUENCE_MASK, STATES, ExtractConfig
from featx.errors import FeatxError
from featx.extraction.batching import pad_batch
from featx.hardware import compute_context, torch_dtype
from featx.pooling import l2_normalized, pool

# Tokens per batch: measured best on CPU (benchmarks/README.md, "Extraction speed"); a GPU
# wants bigger batches to stay busy.
CPU_BATCH_TOKENS = 2048
# OpenVINO on a CPU: 1,024 beat 2,048 by 4.8 % (SST-2) and 4.6 % (IMDB), and 4,096 lost 2-6 %,
# on the AVX512-BF16 EPYC (benchmarks/extract_levers.py --openvino; benchmarks/README.md).
GPU_BATCH_TOKENS = 16384


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text with special tokens, truncated to max_length, unpadded."""
    return tokenize_with_flags(tokenizer, texts, max_length)[0]


def tokenize_with_flags(tokenizer: Any, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], np.ndarray]:
    """(token ids as `tokenize` gives them, uint8 flags: 1 where the text was cut to max_length)."""
    texts = list(texts)
    direct = _direct_encoder(tokenizer, max_length, texts[:64])
    ids, truncated = _encoded_directly(*direct, texts, max_length) if direct is not None else \
        _encoded(tokenizer, texts, max_length)
    # A tokenizer without special tokens can turn "" into no tokens; keep the row with one pad.
    return [row if row else [pad_token_id(tokenizer)] for row in ids], truncated


def _encoded(tokenizer: Any, texts: list[str], max_length: int) -> tuple[list[list[int]], np.ndarray]:
    """(ids, truncated) by the transformers tokenizer's own call."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length, padding=False,
                        return_attention_mask=False, return_token_type_ids=False)
    # A fast tokenizer keeps what truncation cut off in each encoding's `overflowing`.
    truncated = np.fromiter((bool(e.overflowing) for e in encoded.encodings), dtype=np.uint8,
                            count=len(texts)) if encoded.encodings else np.zeros(len(texts), dtype=np.uint8)
    return encoded["input_ids"], truncated


def _encoded_directly(encoder: Any, prefix_chars: int | None, texts: list[str],
                      max_length: int) -> tuple[list[list[int]], np.ndarray]:
    """(ids, truncated) by the Rust tokenizer itself; only a row at max_length can have been cut.

    With `prefix_chars`, a longer text is tokenized only up to its last whitespace within that many
    characters. Where that prefix is itself cut, its tokens are the whole text's (the tokenizer splits
    at whitespace before it tokenizes words: `_direct_encoder` checks it); a prefix that is not cut is
    tokenized again whole. A long review's tail was most of the tokenizer's work at max_length 256."""
    shown = texts if prefix_chars is None else [_prefix(text, prefix_chars) for text in texts]
    # Without the characters' offsets, which featx never reads: 20 % less tokenizer time on SST-2's phrases.
    encode = getattr(encoder, "encode_batch_fast", encoder.encode_batch)  # tokenizers >= 0.21
    encodings = encode(shown, add_special_tokens=True)
    ids = [e.ids for e in encodings]
    truncated = np.fromiter((len(row) >= max_length and bool(e.overflowing) for row, e in zip(ids, encodings)),
                            dtype=np.uint8, count=len(ids))
    again = [i for i, (text, part) in enumerate(zip(texts, shown)) if part is not text and not truncated[i]]
    if again:
        whole, cut = _encoded_directly(encoder, None, [texts[i] for i in again], max_length)
        for i, row, flag in zip(again, whole, cut):
            ids[i], truncated[i] = row, flag
    return ids, truncated


def _prefix(text: str, chars: int) -> str:
    """`text` up to its last whitespace within `chars` characters (in their second half), else all of it."""
    if len(text) <= chars:
        return text
    cut = max(text.rfind(space, chars // 2, chars) for space in " \n\t")
    return text[:cut] if cut > 0 else text


# Per tokenizer and max_length: its Rust tokenizer set to truncate, and the prefix it may tokenize long
# texts by (None: whole texts), or None where that does not give the transformers call's tokens
# (checked once, on the first texts it sees and a few made to be cut).
_DIRECT: weakref.WeakKeyDictionary[Any, dict[int, tuple[Any, int | None] | None]] = weakref.WeakKeyDictionary()
# Prefixes for tokenizers that split at whitespace first and normalise a character at a time. At 6
# characters a token none of IMDB's 24,000 training reviews needed its whole text at max_length 256.
_SPLITS_AT_WHITESPACE = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit", "Metaspace", "ByteLevel"}
_NORMALISES_BY_CHARACTER = {"NoneType", "BertNormalizer", "Lowercase", "NFD", "NFC", "NFKD", "NFKC", "StripAccents"}
PREFIX_CHARS_PER_TOKEN = 6


def _direct_encoder(tokenizer: Any, max_length: int, probe: list[str]) -> tuple[Any, int | None] | None:
    """A fast tokenizer's Rust tokenizer, truncating to max_length as its transformers call does, and
    the prefix length it may tokenize long texts by (see `_encoded_directly`).

    The transformers call converts every encoding in Python, which cost as much as the encoding on
    SST-2's phrases (4,096 phrases: 103 ms through it, 56 ms direct); featx reads only the ids and
    whether the text was cut. Used only where it gives exactly the ids and flags the call gives."""
    found = _DIRECT.setdefault(tokenizer, {})
    if max_length not in found:
        found[max_length] = None
        backend = getattr(tokenizer, "_tokenizer", None)
        if getattr(tokenizer, "is_fast", False) and backend is not None:
            encoder = copy.deepcopy(backend)
            encoder.no_padding()
            side = getattr(tokenizer, "truncation_side", "right")
            encoder.enable_truncation(max_length, strategy="longest_first", direction=side)
            splits = side == "right" and type(backend.pre_tokenizer).__name__ in _SPLITS_AT_WHITESPACE \
                and type(backend.normalizer).__name__ in _NORMALISES_BY_CHARACTER
            checks = [*probe, "", " ".join(["word"] * (2 * max_length)), "ünïcödé 漢字 🙂 " * max_length,
                      ("word" + " " * 30) * max_length]  # a prefix of it is not cut: tokenized again whole
            want = _encoded(tokenizer, checks, max_length)
            for prefix in ([PREFIX_CHARS_PER_TOKEN * max_length] if splits else []) + [None]:
                ids, cut = _encoded_directly(encoder, prefix, checks, max_length)
                if ids == want[0] and np.array_equal(cut, want[1]):
                    found[max_length] = (encoder, prefix)
                    break
    return found[max_length]


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
    """(n, 32) uint8: sha256 of each text as UTF-8 (the key of featx.store.vector_cache)."""
    digests = b"".join(hashlib.sha256(text.encode("utf-8")).digest() for text in texts)
    return np.frombuffer(digests, dtype=np.uint8).reshape(-1, 32)


def tokenize_windows(tokenizer: Any, texts: Sequence[str], max_length: int, stride: int) -> list[list[list[int]]]:
    """Every text as windows of at most max_length tokens (special tokens in each), consecutive
    windows sharing `stride` tokens; a text that fits is one window, the same as `tokenize`."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, stride=stride, padding=False,
                        return_overflowing_tokens=True, return_attention_mask=False, return_token_type_ids=False)
    windows: list[list[list[int]]] = [[] for _ in texts]
    for ids, row in zip(encoded["input_ids"], encoded["overflow_to_sample_mapping"]):
        windows[row].append(ids if ids else [pad_token_id(tokenizer)])
    for row, found in enumerate(windows):
        if not found:  # the tokenizer returned nothing for this text (empty, no special tokens)
            found.append([pad_token_id(tokenizer)])
    return windows


class TextFeaturizer:
    """A transformers text encoder under one ExtractConfig.

    With ``config.long == "chunk"`` an item is a row's list of windows: its cost is the
    tokens the batch pads it to (windows x the longest), collate flattens the windows
    of a batch (``window_row`` says whose each is), and forward pools every window,
    then each row's windows (mean or max), then normalises.
    """

    def __init__(self, backbone: Backbone, config: ExtractConfig, states_only: bool = False) -> None:
        if config.max_length is None:
            raise FeatxError(f"{config.model} was extracted from images: a text featurizer cannot reproduce it")
        self.backbone, self.config = backbone, config
        self.max_length = config.max_length
        self.device = backbone.device
        self.dim = backbone.hidden_size * len(config.layers)
        self.poolings = config.poolings
        self.store_dtype = config.store_dtype
        self._all_states = config.layers != (-1,)
        self._chunks = config.long == "chunk"
        # --cache-layer: each row's token states at that layer, beside (or with `states_only`, instead
        # of: the blocks above never run) the pooled vectors; --keep-windows: each row's window vectors.
        self.token_outputs: tuple[str, ...] = () if config.sequences is None else (STATES,)
        self._capture_states = config.sequences == "states"
        self._keep_windows = config.sequences == "windows"
        if states_only and not self._capture_states:
            raise FeatxError(f"{config.model}'s config keeps no token states: nothing to run states_only for")
        self._states_only = states_only
        self._state_layer = int(config.cache_layer or 0)
        if states_only:
            self.poolings = ()
        # Another backend than torch (--backend openvino) computes the hidden states; batching, pooling
        # and storing are unchanged.
        self._backend_forward = load_backend(backbone, config)
        # dtype int8: the quantized model's cosine to fp32 on the calibration rows (featx.backbones.int8),
        # which the store records; set by whoever quantized it.
        self.fidelity: dict[str, Any] | None = None
        self._skips = torch.tensor(backbone.pooling_skips, device=self.device) if backbone.pooling_skips else None
        # The model's own embedding: a prompt before each text (its tokens left out of the pooling
        # when the config says so), and the sentence-transformers modules after the pooling.
        self._prompt = config.prompt or ""
        self._skip = prompt_tokens(backbone.tokenizer, self._prompt) if config.prompt_excluded else 0
        modules = tuple(json.loads(config.modules)) if config.modules else ()
        self._modules = build_modules(backbone.path, modules).to(self.device) if modules else None
        self.dim = next((int(m["out_features"]) for m in reversed(modules) if m["type"] == "Dense"), self.dim)

    def content_hashes(self, records: Sequence[Any]) -> np.ndarray:
        return text_hashes([r.text for r in records])

    def prepare(self, records: Sequence[Any]) -> tuple[list[Any], dict[str, np.ndarray]]:
        texts = [self._prompt + r.text for r in records]
        if self._chunks:  # every text is embedded whole, in windows: nothing is cut
            windows = tokenize_windows(self.backbone.tokenizer, texts, self.max_length,
                                     int(self.config.long_stride or 0))
            return windows, {"truncated": np.zeros(len(texts), dtype=np.uint8)}
        ids, truncated = tokenize_with_flags(self.backbone.tokenizer, texts, self.max_length)
        return ids, {"truncated": truncated}

    def default_batch_cost(self) -> int:
        if self.device.type == "cuda":
            return GPU_BATCH_TOKENS
        return backend_batch_tokens(self.config) or CPU_BATCH_TOKENS

    def cost(self, item: Any) -> int:
        return len(item) * max(len(w) for w in item) if self._chunks else len(item)

    def collate(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        if not self._chunks:
            return collate_tokens(self.backbone.tokenizer, items)
        batch = collate_tokens(self.backbone.tokenizer, [w for item in items for w in item])
        batch["window_row"] = torch.tensor([row for row, item in enumerate(items) for _ in item], dtype=torch.int64)
        if self._keep_windows:  # which entries of the (rows, windows, dim) window output are real
            counts = torch.tensor([len(item) for item in items])
            batch[SEQUENCE_MASK] = torch.arange(int(counts.max())).unsqueeze(0) < counts.unsqueeze(1)
        return batch

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        config = self.config
        window_row = batch.pop("window_row", None)
        batch.pop(SEQUENCE_MASK, None)  # the runner's, not the model's
        mask = batch["attention_mask"]
        if self._skips is not None:  # tokens the model's own embedding leaves out of its mean (static: unknown)
            mask = mask * ~torch.isin(batch["input_ids"], self._skips)
        with torch.inference_mode(), compute_context(self.device, config.dtype, self._weights_dtype()):
            if self._states_only:  # the blocks above the cached layer never run
                return {STATES: _stored_states(run_to_layer(self.backbone.model, self._state_layer, batch), config)}
            seen = None
            if self._backend_forward is not None:
                hidden = self._backend_forward(batch["input_ids"], mask)
            else:
                with contextlib.ExitStack() as stack:
                    seen = None if not self._capture_states else \
                        stack.enter_context(capture_states(self.backbone.model, self._state_layer))
                    output = self.backbone.model(**batch, output_hidden_states=self._all_states)
                hidden = torch.cat([output.hidden_states[i] for i in config.layers], dim=-1) if self._all_states \
                    else output.last_hidden_state
            if window_row is None:
                pooled = self._own_embedding(pool(hidden, mask, config.poolings, skip=self._skip))
                if config.normalize:
                    pooled = l2_normalized(pooled)
                return pooled if seen is None else {**pooled, STATES: _stored_states(seen[0], config)}
            per_window = self._own_embedding(pool(hidden, mask, config.poolings))
            rows = int(window_row.max()) + 1
            pooled = {name: _pool_windows(values, window_row, rows, str(config.long_pooling))
                      for name, values in per_window.items()}
            if config.normalize:
                pooled = l2_normalized(pooled)
            if self._keep_windows:  # the first pooling of each window, before the windows are pooled
                pooled[STATES] = _windows_by_row(per_window[config.poolings[0]].float(), window_row, rows)
            return pooled

    def _own_embedding(self, pooled: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The model's modules after its pooling (Dense, LayerNorm), in float32, where it has any."""
        if self._modules is None:
            return pooled
        with torch.autocast(self.device.type, enabled=False):
            return {name: self._modules(v.float()) for name, v in pooled.items()}

    def cast_weights(self) -> None:
        if self._backend_forward is not None:  # another backend runs in the config's precision already
            return
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


def _stored_states(states: torch.Tensor, config: ExtractConfig) -> torch.Tensor:
    """Token states in the store's dtype; refused when float16 cannot hold them."""
    stored = states.to(torch.float16 if config.cache_dtype == "float16" else torch.float32)
    if not bool(torch.isfinite(stored).all()):
        wide = "" if config.cache_dtype == "float32" else ": --cache-dtype float32 can hold them"
        raise FeatxError(f"the token states at layer {config.cache_layer} of {config.model} are not finite in "
                         f"{config.cache_dtype}{wide}")
    return stored


def _windows_by_row(values: torch.Tensor, window_row: torch.Tensor, rows: int) -> torch.Tensor:
    """(rows, most windows, dim), zero-padded: each row's window vectors (consecutive in `values`)."""
    window_row = window_row.to(values.device)
    counts = torch.bincount(window_row, minlength=rows)
    position = torch.arange(len(window_row), device=values.device) - (torch.cumsum(counts, 0) - counts)[window_row]
    out = values.new_zeros((rows, int(counts.max()), values.shape[1]))
    out[window_row, position] = values
    return out


def _pool_windows(values: torch.Tensor, window_row: torch.Tensor, rows: int, how: str) -> torch.Tensor:
    """(rows, dim): the mean or the maximum of each row's window vectors."""
    index = window_row.to(values.device).unsqueeze(1).expand_as(values)
    if how == "max":
        out = torch.full((rows, values.shape[1]), float("-inf"), dtype=values.dtype, device=values.device)
        return out.scatter_reduce(0, index, values, reduce="amax", include_self=True)
    sums = torch.zeros((rows, values.shape[1]), dtype=values.dtype, device=values.device).scatter_add(0, index, values)
    counts = torch.bincount(window_row.to(values.device), minlength=rows).clamp(min=1).unsqueeze(1)
    return sums / counts.to(values.dtype)
