"""The extraction engine: plan -> batch -> forward -> pool -> hand to the writer.

It reads the input in windows of rows (the commit unit), tokenizes each window once
in a background thread, runs the frozen backbone over length-sorted batches cut by
a token budget, pools every requested way from one forward pass, and hands each
window, back in input order, to a writer thread. It knows nothing of HDF5.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from featx.background import BackgroundWorker, prefetch
from featx.backbones import DEFAULT_MODEL, Backbone, load_backbone
from featx.cache import EmbeddingCache
from featx.batching import pad_batch, plan_batches
from featx.config import ExtractConfig, parse_layers
from featx.data import InputSource, Record, describe_json, open_input
from featx.errors import ParameterError
from featx.hardware import describe_hardware, resolve_dtype, torch_dtype
from featx.pooling import pool
from featx.progress import progress_bar
from featx.shards import shard_path, shard_rows, shard_window_rows
from featx.store import FeatureStore, StorePlan, StoreWriter, matching_complete_store

# Token budget per batch: measured best on CPU (benchmarks/README.md, "Extraction speed");
# a GPU wants bigger batches to stay busy.
CPU_BATCH_TOKENS = 2048
GPU_BATCH_TOKENS = 16384
DEFAULT_WINDOW_ROWS = 4096
# On a CPU, batches run on up to this many worker threads at once (see cpu_workers).
MAX_CPU_WORKERS = 4


def default_batch_tokens(device: torch.device) -> int:
    """The token budget per batch that `batch_tokens=None` means on `device`."""
    return GPU_BATCH_TOKENS if device.type == "cuda" else CPU_BATCH_TOKENS


def cpu_workers(threads: int | None = None) -> tuple[int, int]:
    """(workers, threads each) for CPU inference over `threads` cores (torch's count by default).

    Several batches at once, each on few threads, beat one batch on every thread: the
    small matmuls, GELU, LayerNorm and attention of a small encoder do not split well
    across cores (measured on 2 cores, two workers against one: +21 % rows/s on SST-2
    phrases, +6 % on IMDB reviews; benchmarks/README.md). Beyond MAX_CPU_WORKERS the
    workers get several threads each: untested on big machines, a bound on GIL traffic.
    """
    threads = threads or torch.get_num_threads()
    workers = max(1, min(threads, MAX_CPU_WORKERS))
    return workers, max(1, threads // workers)


@dataclass
class Window:
    """A run of consecutive input rows, tokenized, waiting for the model."""

    start: int
    records: list[Record]
    token_ids: list[list[int]]


def extract(input: str | Path | InputSource, output: str | Path, *, model: str | Backbone = DEFAULT_MODEL,
            pooling: Sequence[str] | str | None = None, layers: str | Sequence[int] = "-1",
            max_length: int | None = None, normalize: bool | None = None, dtype: str = "auto",
            store_dtype: str = "float32", text_column: str | None = None, label_column: str | None = None,
            id_column: str | None = None, batch_tokens: int | None = None, device: str = "auto",
            window_rows: int | None = None, compression: str | None = None, overwrite: bool = False,
            trust_remote_code: bool = False, progress: bool | None = None,
            shard: tuple[int, int] | None = None, cache_dir: str | Path | None = None) -> FeatureStore:
    """Embed every row of `input` with a frozen backbone into the store at `output`.

    Reruns are cheap and safe: a complete store with the same fingerprint and input is
    returned untouched, an unfinished one is continued from its last committed window,
    and a store made differently is refused unless `overwrite=True`.
    `shard=(i, n)` embeds only the i-th of n contiguous runs of windows, into
    ``<output stem>.shard-i-of-n.h5`` (`featx merge` joins the shards). `window_rows=None`
    is 4,096 rows, or for shards of a small input ceil(rows / n) (featx.shards.shard_window_rows).
    `cache_dir` reuses vectors of texts embedded before with the same config (see
    featx.cache); the store's timings count the hits.
    `progress=None` shows a bar only on a terminal.
    """
    t_start = time.perf_counter()
    if batch_tokens is not None and batch_tokens < 1:
        raise ParameterError("batch_tokens", f"must be positive, got {batch_tokens}")
    if window_rows is not None and window_rows < 1:
        raise ParameterError("window_rows", f"must be positive, got {window_rows}")
    source = input if isinstance(input, InputSource) else open_input(
        input, text_column=text_column, label_column=label_column, id_column=id_column)
    summary = source.scan()
    t_scanned = time.perf_counter()
    backbone = model if isinstance(model, Backbone) else load_backbone(
        model, device=device, trust_remote_code=trust_remote_code)
    config = make_config(backbone, pooling=pooling, layers=layers, max_length=max_length,
                         normalize=normalize, dtype=dtype, store_dtype=store_dtype)
    batch_tokens = batch_tokens or default_batch_tokens(backbone.device)
    if window_rows is None:
        window_rows = DEFAULT_WINDOW_ROWS if shard is None else \
            shard_window_rows(summary.n_rows, shard[1], DEFAULT_WINDOW_ROWS)
    row_offset, n_rows = (0, summary.n_rows) if shard is None else shard_rows(summary.n_rows, window_rows, *shard)
    plan = StorePlan(config=config, input_json=describe_json(source), input_sha256=summary.sha256,
                     input_rows=summary.n_rows, dim=backbone.hidden_size * len(config.layers),
                     classes=summary.classes, id_kind=summary.id_kind, window_rows=window_rows,
                     hardware=describe_hardware(backbone.device), compression=compression,
                     row_offset=row_offset, n_rows=n_rows, shard=shard)
    output = Path(output) if shard is None else shard_path(output, *shard)
    if not overwrite and matching_complete_store(output, plan):
        return FeatureStore(output)  # nothing to do, and nothing written: works in a read-only folder too
    writer = StoreWriter.open(output, plan, overwrite=overwrite, inputs=[source.path])
    t_loaded = time.perf_counter()
    resumed_from = writer.n_done
    try:
        if not writer.complete:
            cache = EmbeddingCache(cache_dir, config, plan.dim) if cache_dir is not None else None
            try:
                stage_seconds = _run(source, summary, backbone, config, writer, batch_tokens, progress, cache)
            finally:
                if cache is not None:
                    cache.close()
            rows = writer.n_rows - resumed_from
            run_seconds = time.perf_counter() - t_loaded
            writer.finish({
                "scan_s": round(t_scanned - t_start, 3),
                "load_s": round(t_loaded - t_scanned, 3),
                **{k: round(v, 3) if k.endswith("_s") else v for k, v in stage_seconds.items()},
                "extract_s": round(run_seconds, 3),
                "total_s": round(time.perf_counter() - t_start, 3),
                "rows_this_run": rows,
                "resumed_from_row": resumed_from,
                "rows_per_s": round(rows / run_seconds, 2) if run_seconds > 0 else None,
                "batch_tokens": batch_tokens,
            })
    finally:
        writer.close()
    return FeatureStore(output)


def make_config(backbone: Backbone, *, pooling: Sequence[str] | str | None = None,
                layers: str | Sequence[int] = "-1", max_length: int | None = None, normalize: bool | None = None,
                dtype: str = "auto", store_dtype: str = "float32") -> ExtractConfig:
    """The ExtractConfig for `backbone` with `auto` and defaults resolved to concrete values.

    `pooling=None` and `normalize=None` mean the model's own sentence embedding where its
    folder declares one (sentence-transformers: all-MiniLM-L6-v2 is mean pooling, then
    L2-normalised), else mean pooling without normalisation.
    """
    if pooling is None:
        pooling = (backbone.declared_pooling or "mean",)
    if normalize is None:
        normalize = bool(backbone.declared_normalize)
    poolings = tuple(p.strip() for p in pooling.split(",")) if isinstance(pooling, str) else tuple(pooling)
    layer_indices = parse_layers(layers)
    for index in layer_indices:
        if not -backbone.num_hidden_states <= index < backbone.num_hidden_states:
            raise ParameterError("layers", f"{index} does not exist: {backbone.name} has hidden states "
                                           f"{-backbone.num_hidden_states}..{backbone.num_hidden_states - 1}")
    if max_length is None:
        max_length = backbone.default_max_length
    elif max_length < 2:
        raise ParameterError("max_length", f"must be at least 2 (room for the special tokens), got {max_length}")
    elif backbone.max_positions is not None and max_length > backbone.max_positions:
        raise ParameterError("max_length", f"{max_length} is more than {backbone.name} can take: its position "
                                           f"embeddings stop at {backbone.max_positions} tokens")
    return ExtractConfig(
        model=backbone.name,
        weights_sha256=backbone.weights_sha256,
        tokenizer_sha256=backbone.tokenizer_sha256,
        max_length=int(max_length),
        poolings=poolings,
        layers=layer_indices,
        normalize=bool(normalize),
        dtype=resolve_dtype(dtype, backbone.device),
        store_dtype=store_dtype,
    )


def embed_texts(backbone: Backbone, config: ExtractConfig, texts: Sequence[str],
                batch_tokens: int | None = None) -> dict[str, np.ndarray]:
    """Every requested pooling of `texts`, one (len(texts), D) array each, in input order."""
    return embed_tokens(backbone, config, tokenize(backbone, texts, config.max_length), batch_tokens)


def tokenize(backbone: Backbone, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text with special tokens, truncated to max_length, unpadded."""
    encoded = backbone.tokenizer(list(texts), truncation=True, max_length=max_length, padding=False,
                                 return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    # A tokenizer without special tokens can turn "" into no tokens; keep the row with one pad.
    return [ids if ids else [_pad_id(backbone)] for ids in encoded]


def embed_tokens(backbone: Backbone, config: ExtractConfig, token_ids: list[list[int]],
                 batch_tokens: int | None = None, timer: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Run the backbone over length-sorted batches and pool; results back in input order.

    On a CPU the batches are shared among `cpu_workers()` threads, each running whole
    batches with its own few intra-op threads; a batch's result does not depend on which
    worker ran it. `batch_tokens=None` is the device's default budget.
    """
    t0 = time.perf_counter()
    dim = backbone.hidden_size * len(config.layers)
    out = {name: np.empty((len(token_ids), dim), dtype=config.store_dtype) for name in config.poolings}
    lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
    device = backbone.device
    batches = plan_batches(lengths, batch_tokens or default_batch_tokens(device))
    forward = _BatchForward(backbone, config, token_ids, out)
    workers, threads_each = cpu_workers() if device.type == "cpu" else (1, 0)
    if workers == 1 or len(batches) == 1:
        for rows in batches:
            forward(rows)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="featx-forward", initializer=torch.set_num_threads,
                                initargs=(threads_each,)) as pool:
            for _ in pool.map(forward, batches):  # re-raises a worker's error here
                pass
    if timer is not None:
        timer["forward_s"] = timer.get("forward_s", 0.0) + time.perf_counter() - t0
    return out


class _BatchForward:
    """Embeds one planned batch of rows into the shared output arrays (rows never overlap)."""

    def __init__(self, backbone: Backbone, config: ExtractConfig, token_ids: list[list[int]],
                 out: dict[str, np.ndarray]):
        self.backbone, self.config, self.token_ids, self.out = backbone, config, token_ids, out
        self.pad_id = _pad_id(backbone)
        self.pad_left = getattr(backbone.tokenizer, "padding_side", "right") == "left"
        self.need_all_states = config.layers != (-1,)

    def __call__(self, rows: np.ndarray) -> None:
        device, config = self.backbone.device, self.config
        input_ids, mask = pad_batch([self.token_ids[i] for i in rows], self.pad_id, self.pad_left)
        non_blocking = device.type == "cuda"
        input_ids = input_ids.to(device, non_blocking=non_blocking)
        mask = mask.to(device, non_blocking=non_blocking)
        autocast = (torch.autocast(device.type, dtype=torch_dtype(config.dtype))
                    if config.dtype != "fp32" else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            output = self.backbone.model(input_ids=input_ids, attention_mask=mask,
                                         output_hidden_states=self.need_all_states)
            if self.need_all_states:
                hidden = torch.cat([output.hidden_states[i] for i in config.layers], dim=-1)
            else:
                hidden = output.last_hidden_state
            pooled = pool(hidden, mask, config.poolings, config.normalize)
        for name, values in pooled.items():
            self.out[name][rows] = values.cpu().numpy()


def _pad_id(backbone: Backbone) -> int:
    tok = backbone.tokenizer
    for candidate in (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def iter_windows(source: InputSource, summary, backbone: Backbone, config: ExtractConfig, start: int,
                 window_rows: int, timer: dict[str, float] | None = None,
                 stop: int | None = None) -> Iterator[Window]:
    """Tokenized windows of `window_rows` input rows, from row `start` up to `stop`.

    Window boundaries depend only on `window_rows`, so the same input always gives the
    same batches: a resumed extraction, a shard and a predictor reproduce a store bit for bit.
    """
    timer = {} if timer is None else timer
    records = source.records(summary, start=start)
    if stop is not None:
        records = itertools.islice(records, max(0, stop - start))
    position = start
    while True:
        chunk = list(itertools.islice(records, window_rows))
        if not chunk:
            return
        t0 = time.perf_counter()
        token_ids = tokenize(backbone, [r.text for r in chunk], config.max_length)
        timer["tokenize_s"] = timer.get("tokenize_s", 0.0) + time.perf_counter() - t0
        yield Window(position, chunk, token_ids)
        position += len(chunk)


def _run(source: InputSource, summary, backbone: Backbone, config: ExtractConfig, writer: StoreWriter,
         batch_tokens: int, progress: bool | None, cache: EmbeddingCache | None = None) -> dict[str, float]:
    """Extract every uncommitted window into `writer`; returns seconds per stage (and cache hits)."""
    timer: dict[str, float] = {}
    has_labels = summary.classes is not None

    def commit(item: tuple[Window, np.ndarray, dict[str, np.ndarray]]) -> None:
        window, hashes, features = item
        t0 = time.perf_counter()
        labels = np.array([r.label for r in window.records], dtype=np.int64) if has_labels else None
        writer.write_window(window.start, [r.id for r in window.records], hashes, labels, features)
        timer["write_s"] = timer.get("write_s", 0.0) + time.perf_counter() - t0
        bar.update(len(window.records))

    bar = progress_bar(writer.n_rows, "extract", initial=writer.n_done, show=progress)
    committer = BackgroundWorker(commit, depth=2, name="featx-writer")
    try:
        windows = iter_windows(source, summary, backbone, config, writer.next_row, writer.window_rows, timer,
                               stop=writer.row_offset + writer.n_rows)
        for window in prefetch(windows, depth=2):
            hashes = content_hashes(window.records)
            if cache is None:
                features = embed_tokens(backbone, config, window.token_ids, batch_tokens, timer)
            else:
                features = embed_through_cache(backbone, config, window.token_ids, hashes, cache, batch_tokens, timer)
            committer.submit((window, hashes, features))
    finally:
        # Whatever stopped the loop (end, error, Ctrl-C), windows already computed are committed.
        committer.close()
        bar.close()
    return timer


def content_hashes(records: Sequence[Record]) -> np.ndarray:
    """(n, 32) uint8: sha256 of each record's text as UTF-8."""
    return text_hashes([r.text for r in records])


def text_hashes(texts: Sequence[str]) -> np.ndarray:
    """(n, 32) uint8: sha256 of each text as UTF-8 (the key of featx.cache)."""
    digests = b"".join(hashlib.sha256(text.encode("utf-8")).digest() for text in texts)
    return np.frombuffer(digests, dtype=np.uint8).reshape(-1, 32)


def embed_through_cache(backbone: Backbone, config: ExtractConfig, token_ids: list[list[int]], hashes: np.ndarray,
                        cache: EmbeddingCache, batch_tokens: int | None,
                        timer: dict[str, float]) -> dict[str, np.ndarray]:
    """Cached vectors for texts seen before, the model for the rest (then cached too)."""
    hit, cached = cache.lookup(hashes)
    missing = np.flatnonzero(~hit)
    fresh = embed_tokens(backbone, config, [token_ids[i] for i in missing], batch_tokens, timer) \
        if len(missing) else None
    features = {}
    for name in config.poolings:
        values = np.empty((len(hashes), cached[name].shape[1]), dtype=config.store_dtype)
        values[hit] = cached[name]
        if fresh is not None:
            values[missing] = fresh[name]
        features[name] = values
    if fresh is not None:
        cache.add(hashes[missing], fresh)
    timer["cache_hits"] = timer.get("cache_hits", 0) + int(hit.sum())
    return features
