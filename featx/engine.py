"""The extraction engine: plan -> prepare -> batch -> forward -> hand to the writer.

It reads the input (a Source) in windows of rows (the commit unit), has the Featurizer
prepare each window once in a background thread (tokenizing, decoding), has a Runner
embed it on its device (batches planned by cost, every pooling from one forward pass),
and hands each window, back in input order, to a writer thread. It knows nothing of
HDF5, of text or images, or of devices: those are the store's, the featurizer's and
the runner's (featx.featurizers, featx.runners).
"""
from __future__ import annotations

import itertools
import numbers
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featx.backbones import DEFAULT_MODEL, Backbone, load_backbone
from featx.backbones.openvino import chosen_backend
from featx.backbones.st_modules import embedding_fields
from featx.backbones.vision import ImageBackbone, load_image_backbone
from featx.background import BackgroundWorker, prefetch
from featx.config import (
    DEFAULT_IMAGE_MODEL,
    LONG_MODES,
    LONG_POOLINGS,
    STATE_DTYPES,
    ExtractConfig,
    parse_layers,
)
from featx.constraints import COUNT, Options
from featx.data import InputSummary, Record, Source, describe_json, open_input
from featx.data.images import is_image_input, open_images
from featx.errors import FeatxError, OutputError, ParameterError
from featx.featurizers import Featurizer, TextFeaturizer
from featx.featurizers.image import ImageFeaturizer, make_image_config
from featx.hardware import describe_hardware, resolve_dtype
from featx.progress import progress_bar
from featx.runners import Runner, make_runner
from featx.shards import shard_path, shard_rows, shard_window_rows
from featx.store import FeatureStore, StorePlan, StoreWriter, matching_complete_store, stored_config
from featx.store.vector_cache import EmbeddingCache

DEFAULT_WINDOW_ROWS = 4096
# An image window holds its decoded pixels (224 x 224 x 3 bytes each): 512 of them are 77 MB.
DEFAULT_IMAGE_WINDOW_ROWS = 512


@dataclass
class Window:
    """A run of consecutive input rows, prepared, waiting for the model."""

    start: int
    records: list[Any]
    items: list[Any]
    truncated: np.ndarray
    skipped: np.ndarray  # rows that could not be read (skip_bad): no item, NaN vectors


def extract(input: str | Path | Source, output: str | Path, *, model: str | Backbone | ImageBackbone | None = None,
            pooling: Sequence[str] | str | None = None, layers: str | Sequence[int] = "-1",
            max_length: int | None = None, normalize: bool | None = None, dtype: str = "auto",
            store_dtype: str = "float32", text_column: str | None = None, label_column: str | None = None,
            id_column: str | None = None, batch_tokens: int | None = None, device: str = "auto",
            window_rows: int | None = None, compression: str | None = None, overwrite: bool = False,
            trust_remote_code: bool = False, progress: bool | None = None,
            shard: tuple[int, int] | None = None, cache_dir: str | Path | None = None, long: str = "truncate",
            stride: int | None = None, long_pooling: str = "mean", skip_bad: bool = False,
            cache_layer: int | None = None, cache_dtype: str = "float16", keep_windows: bool = False,
            backend: str | None = None, prompt: str | None = None, prompt_name: str | None = None) -> FeatureStore:
    """Embed every row of `input` with a frozen backbone into the store at `output`.

    Reruns are cheap and safe: a complete store with the same fingerprint and input is
    returned untouched, an unfinished one is continued from its last committed window,
    and a store made differently is refused unless `overwrite=True`.
    `shard=(i, n)` embeds only the i-th of n contiguous runs of windows, into
    ``<output stem>.shard-i-of-n.h5`` (`featx merge` joins the shards). `window_rows=None`
    is 4,096 rows, or for shards of a small input ceil(rows / n) (featx.shards.shard_window_rows).
    `cache_dir` reuses vectors of texts embedded before with the same config (see
    featx.store.vector_cache); the store's timings count the hits.
    `cache_layer=L` keeps each row's token states at hidden-state index L too (in `cache_dtype`),
    for a blocks head (featx.heads.blocks) to train the blocks above L on; texts only.
    `keep_windows=True` (with long="chunk") keeps each row's window vectors too, for a windows
    head (featx.heads.windows).
    `backend="openvino"` runs a text model with OpenVINO on the CPU (featx[openvino]; see
    featx.backbones.openvino). `None` (the default) and `"auto"` first take the backend of a
    store already at `output` unless `overwrite` (so it resumes, or is returned, as it was
    made); otherwise `None` is torch and `"auto"` is openvino where it is installed and
    applies, else torch.
    `prompt` (or `prompt_name`, one of the model's declared prompts; default: the model's
    default_prompt_name, "" for none) is put before every text, as sentence-transformers does.
    `progress=None` shows a bar only on a terminal.

    Images (a folder, a .zip, ``X.zip:FOLDER``, an ImageTableSource or ArraySource): `model`
    defaults to efficientnet-lite0, the text settings (max_length, long, stride) do not
    apply, `batch_tokens` counts images, and `skip_bad` counts undecodable images in the
    store instead of stopping (see featx.featurizers.image).
    """
    t_start = time.perf_counter()
    for name, count in (("batch_tokens", batch_tokens), ("window_rows", window_rows)):
        if count is not None:
            COUNT.check(name, count)
    if isinstance(input, (str, Path)):
        source: Source = open_images(input, label_column=label_column) if is_image_input(input) else \
            open_input(input, text_column=text_column, label_column=label_column, id_column=id_column)
    else:
        source = input
    summary = source.scan()
    t_scanned = time.perf_counter()
    featurizer: Featurizer
    state_dim = None
    if getattr(source, "modality", "text") == "image":
        for name, value in (("max_length", max_length), ("stride", stride), ("text_column", text_column),
                            ("long", None if long == "truncate" else long), ("cache_layer", cache_layer),
                            ("keep_windows", keep_windows or None),
                            ("backend", None if backend in (None, "torch", "auto") else backend),
                            ("prompt", prompt), ("prompt_name", prompt_name)):
            if value is not None:
                raise ParameterError(name, f"applies to texts; {source.name} is read as images")
        if isinstance(model, Backbone):
            raise FeatxError(f"{model.name} is a text model; {source.name} is read as images")
        vision = model if isinstance(model, ImageBackbone) else load_image_backbone(
            model or DEFAULT_IMAGE_MODEL, device=device, trust_remote_code=trust_remote_code)
        config = make_image_config(vision, pooling=pooling, layers=layers, normalize=normalize, dtype=dtype,
                                   store_dtype=store_dtype)
        featurizer, default_window = ImageFeaturizer(vision, config, skip_bad=skip_bad), DEFAULT_IMAGE_WINDOW_ROWS
    else:
        if isinstance(model, ImageBackbone):
            raise FeatxError(f"{model.name} is an image model; {source.name} is read as texts")
        backbone = model if isinstance(model, Backbone) else load_backbone(
            model or DEFAULT_MODEL, device=device, trust_remote_code=trust_remote_code)
        if backend in (None, "auto") and not overwrite:  # a store at the output keeps the backend it was made with
            found = stored_config(Path(output) if shard is None else shard_path(output, *shard))
            backend = backend if found is None else found.get("backend") or "torch"
        config = make_config(backbone, pooling=pooling, layers=layers, max_length=max_length, normalize=normalize,
                             dtype=dtype, store_dtype=store_dtype, long=long, stride=stride, long_pooling=long_pooling,
                             cache_layer=cache_layer, cache_dtype=cache_dtype, keep_windows=keep_windows,
                             backend=backend or "torch", prompt=prompt, prompt_name=prompt_name)
        featurizer, default_window = TextFeaturizer(backbone, config), DEFAULT_WINDOW_ROWS
        if config.sequences is not None:
            state_dim = backbone.hidden_size if config.sequences == "states" else featurizer.dim
            # A vector cache holds no sequences; merging does not join them yet.
            flag = "--cache-layer" if config.sequences == "states" else "--keep-windows"
            for name, given in (("cache_dir", cache_dir is not None), ("shard", shard is not None)):
                if given:
                    raise ParameterError(name, f"cannot be combined with {flag}")
    runner = make_runner(featurizer, batch_tokens)
    if window_rows is None:
        window_rows = default_window if shard is None else \
            shard_window_rows(summary.n_rows, shard[1], default_window)
    row_offset, n_rows = (0, summary.n_rows) if shard is None else shard_rows(summary.n_rows, window_rows, *shard)
    plan = StorePlan(config=config, input_json=describe_json(source), input_sha256=summary.sha256,
                     input_rows=summary.n_rows, dim=featurizer.dim,
                     classes=summary.classes, id_kind=summary.id_kind, window_rows=window_rows,
                     hardware=describe_hardware(featurizer.device), compression=compression,
                     row_offset=row_offset, n_rows=n_rows, shard=shard, state_dim=state_dim)
    output = Path(output) if shard is None else shard_path(output, *shard)
    if source.path.is_dir() and output.resolve().is_relative_to(source.path.resolve()):
        raise OutputError(f"the output {output} is inside the input folder {source.name}: featx never writes into "
                          "its input; choose an -o outside it")
    if not overwrite and matching_complete_store(output, plan):
        return FeatureStore(output)  # nothing to do, and nothing written: works in a read-only folder too
    writer = StoreWriter.open(output, plan, overwrite=overwrite, inputs=[source.path])
    t_loaded = time.perf_counter()
    resumed_from = writer.n_done
    try:
        if not writer.complete:
            cache = EmbeddingCache(cache_dir, config, plan.dim) if cache_dir is not None else None
            try:
                stage_seconds = _run(source, summary, featurizer, runner, writer, progress, cache)
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
                "batch_tokens": runner.batch_cost,
            })
    finally:
        writer.close()
    return FeatureStore(output)


def make_config(backbone: Backbone, *, pooling: Sequence[str] | str | None = None,
                layers: str | Sequence[int] = "-1", max_length: int | None = None, normalize: bool | None = None,
                dtype: str = "auto", store_dtype: str = "float32", long: str = "truncate",
                stride: int | None = None, long_pooling: str = "mean", cache_layer: int | None = None,
                cache_dtype: str = "float16", keep_windows: bool = False, backend: str = "torch",
                prompt: str | None = None, prompt_name: str | None = None) -> ExtractConfig:
    """The ExtractConfig for `backbone` with `auto` and defaults resolved to concrete values.

    `pooling=None` and `normalize=None` mean the model's own sentence embedding where its
    folder declares one (sentence-transformers: all-MiniLM-L6-v2 is mean pooling, then
    L2-normalised; Dense and LayerNorm modules too, featx.backbones.st_modules), else mean
    pooling without normalisation. `prompt`, `prompt_name`: see `extract`. `long="chunk"` embeds texts
    over max_length as windows of max_length tokens overlapping by `stride` (default
    min(32, max_length / 4)) and pools each row's windows with `long_pooling`.
    `cache_layer=L` also keeps each row's token states at hidden-state index L (negative counts
    from the top: -2 is below the last two blocks) in `cache_dtype`, for a blocks head.
    `keep_windows=True` (long="chunk" only) also keeps each row's window vectors, for a windows head.
    `backend`: torch, openvino (on the CPU, in fp32 or bf16), or auto (openvino where it is
    installed and applies, else torch).
    """
    embedding = embedding_fields(backbone.name, backbone.declared, pooling, normalize, prompt, prompt_name)
    layer_indices = parse_layers(layers if isinstance(layers, str) else tuple(layers))
    for index in layer_indices:
        if not -backbone.num_hidden_states <= index < backbone.num_hidden_states:
            raise ParameterError("layers", f"{index} does not exist: {backbone.name} has hidden states "
                                           f"{-backbone.num_hidden_states}..{backbone.num_hidden_states - 1}")
    specials = backbone.tokenizer.num_special_tokens_to_add(pair=False)
    if max_length is None:
        max_length = backbone.default_max_length
    elif isinstance(max_length, bool) or not isinstance(max_length, numbers.Integral) or max_length < specials + 1:
        raise ParameterError("max_length", f"must be at least {specials + 1} ({specials} special tokens and one "
                                           f"token of text), got {max_length!r}")
    elif backbone.max_positions is not None and max_length > backbone.max_positions:
        raise ParameterError("max_length", f"{max_length} is more than {backbone.name} can take: its position "
                                           f"embeddings stop at {backbone.max_positions} tokens")
    Options(LONG_MODES).check("long", long)
    if long == "truncate" and stride is not None:
        raise ParameterError("stride", "applies to --long chunk only")
    chunking: dict[str, Any] = {}
    if long == "chunk":
        text_tokens = int(max_length) - specials  # a window's room for text
        # At most half a window (ExtractConfig's rule), and fewer than its text tokens, or no window moves on.
        most = min(int(max_length) // 2, text_tokens - 1)
        stride = min(32, int(max_length) // 4, most) if stride is None else stride
        if isinstance(stride, bool) or not isinstance(stride, numbers.Integral) or not 0 <= int(stride) <= most:
            raise ParameterError("stride", f"must be at least 0 and at most {most} (half of --max-length "
                                           f"{max_length}, and less than the {text_tokens} tokens of text a window "
                                           f"holds), got {stride!r}")
        chunking = {"long": "chunk", "long_stride": int(stride), "long_pooling": Options(LONG_POOLINGS).check(
            "long_pooling", long_pooling), "keep_windows": True if keep_windows else None}
    elif keep_windows:
        raise ParameterError("keep_windows", "keeps the window vectors of long texts: it needs --long chunk")
    states: dict[str, Any] = {}
    if cache_layer is not None:
        states = {"cache_layer": state_layer(backbone, cache_layer, long),
                  "cache_dtype": Options(STATE_DTYPES).check("cache_dtype", cache_dtype)}
    compute = resolve_dtype(dtype, backbone.device)
    return ExtractConfig(
        **chunking,
        **states,
        backend=chosen_backend(backend, backbone, compute, cache_layer),
        model=backbone.name,
        weights_sha256=backbone.weights_sha256,
        tokenizer_sha256=backbone.tokenizer_sha256,
        max_length=int(max_length),
        layers=layer_indices,
        **embedding,
        dtype=compute,
        store_dtype=store_dtype,
    )



def state_layer(backbone: Backbone, layer: int, long: str = "truncate") -> int:
    """The hidden-state index (>= 0) whose token states --cache-layer keeps: at least one block must
    lie above it, and featx must be able to run those blocks alone (checked on the model itself)."""
    blocks = backbone.num_hidden_states - 1
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or not -blocks <= layer < blocks:
        raise ParameterError("cache_layer", f"must leave at least one of {backbone.name}'s {blocks} blocks above it: "
                                            f"0..{blocks - 1} (or -{blocks}..-1 from the top), got {layer!r}")
    if long != "truncate":
        raise ParameterError("cache_layer", "keeps the token states of whole rows: it cannot be combined with "
                                            "--long chunk")
    from featx.top_blocks import check_runs_alone

    index = int(layer) % blocks
    check_runs_alone(backbone, index)
    return index


def embed_texts(backbone: Backbone, config: ExtractConfig, texts: Sequence[str],
                batch_tokens: int | None = None) -> dict[str, np.ndarray]:
    """Every requested pooling of `texts`, one (len(texts), D) array each, in input order."""
    featurizer = TextFeaturizer(backbone, config)
    records = [Record(i, text, -1) for i, text in enumerate(texts)]
    return make_runner(featurizer, batch_tokens).run(featurizer, featurizer.prepare(records)[0])


def iter_windows(source: Source, summary: InputSummary, featurizer: Featurizer, start: int,
                 window_rows: int, timer: dict[str, float] | None = None,
                 stop: int | None = None) -> Iterator[Window]:
    """Prepared windows of `window_rows` input rows, from row `start` up to `stop`.

    Window boundaries depend only on `window_rows`, so the same input always gives the
    same batches: a resumed extraction, a shard and a predictor reproduce a store bit for bit.
    """
    timer = {} if timer is None else timer
    records: Iterator[Any] = source.records(summary, start=start)
    if stop is not None:
        records = itertools.islice(records, max(0, stop - start))
    position = start
    while True:
        chunk = list(itertools.islice(records, window_rows))
        if not chunk:
            return
        t0 = time.perf_counter()
        items, truncated, skipped = featurizer.prepare(chunk)
        timer["prepare_s"] = timer.get("prepare_s", 0.0) + time.perf_counter() - t0
        # What the model is fed, in the featurizer's cost units (tokens for text, window overlaps included).
        timer["cost_units"] = timer.get("cost_units", 0) + sum(featurizer.cost(item) for item in items)
        yield Window(position, chunk, items, truncated, skipped)
        position += len(chunk)


def _run(source: Source, summary: InputSummary, featurizer: Featurizer, runner: Runner,
         writer: StoreWriter, progress: bool | None, cache: EmbeddingCache | None = None) -> dict[str, float]:
    """Extract every uncommitted window into `writer`; returns seconds per stage (and cache hits)."""
    timer: dict[str, float] = {}
    has_labels = summary.classes is not None

    def commit(item: tuple[Window, np.ndarray, dict[str, np.ndarray]]) -> None:
        window, hashes, features = item
        t0 = time.perf_counter()
        labels = np.array([r.label for r in window.records], dtype=np.int64) if has_labels else None
        writer.write_window(window.start, [r.id for r in window.records], hashes, labels, features, window.truncated,
                            window.skipped)
        timer["write_s"] = timer.get("write_s", 0.0) + time.perf_counter() - t0
        bar.update(len(window.records))

    bar = progress_bar(writer.n_rows, "extract", initial=writer.n_done, show=progress)
    committer = BackgroundWorker(commit, depth=2, name="featx-writer")
    try:
        windows = iter_windows(source, summary, featurizer, writer.next_row, writer.window_rows, timer,
                               stop=writer.row_offset + writer.n_rows)
        for window in prefetch(windows, depth=2):
            hashes = featurizer.content_hashes(window.records)
            readable = np.flatnonzero(window.skipped == 0)
            items = window.items if len(readable) == len(window.items) else [window.items[i] for i in readable]
            if cache is None:
                found = runner.run(featurizer, items, timer)
            else:
                found = embed_through_cache(featurizer, runner, items, hashes[readable], cache, timer)
            features = found
            if len(readable) < len(window.items):  # skipped rows keep their place, with NaN vectors
                features = {}
                for name, values in found.items():
                    features[name] = np.full((len(window.items), values.shape[1]), np.nan, dtype=values.dtype)
                    features[name][readable] = values
                timer["skipped_rows"] = timer.get("skipped_rows", 0) + len(window.items) - len(readable)
            committer.submit((window, hashes, features))
    finally:
        # Whatever stopped the loop (end, error, Ctrl-C), windows already computed are committed.
        committer.close()
        bar.close()
    return timer


def embed_through_cache(featurizer: Featurizer, runner: Runner, items: Sequence[Any], hashes: np.ndarray,
                        cache: EmbeddingCache, timer: dict[str, float]) -> dict[str, np.ndarray]:
    """Cached vectors for rows seen before, the model for the rest (then cached too)."""
    hit, cached = cache.lookup(hashes)
    missing = np.flatnonzero(~hit)
    fresh = runner.run(featurizer, [items[int(i)] for i in missing], timer) if len(missing) else None
    features = {}
    for name in featurizer.poolings:
        values = np.empty((len(hashes), featurizer.dim), dtype=featurizer.store_dtype)
        values[hit] = cached[name]
        if fresh is not None:
            values[missing] = fresh[name]
        features[name] = values
    if fresh is not None:
        cache.add(hashes[missing], fresh)
    timer["cache_hits"] = timer.get("cache_hits", 0) + int(hit.sum())
    if cache.rejected:
        timer["cache_rejected"] = cache.rejected
    return features
