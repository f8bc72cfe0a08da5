"""The extraction engine: plan -> prepare -> batch -> forward -> hand to the writer.

It reads the input (a Source) in windows of rows (the commit unit), has the Featurizer
prepare each window once in a background thread (tokenizing, decoding), has a Runner
embed it on its device (batches planned by cost, every pooling from one forward pass),
and hands each window, back in input order, to a writer thread. It knows nothing of text
or images, or of devices: those are the modality's (the registry in featx.modalities opens
the input and makes the featurizer) and the runner's (featx.extraction.runners), nor of a store format: it
asks the StoreFormat it is given (featx.store.format; HDF5 by default) for an existing store's
config, whether a complete matching store is already there, and a writer, which returns the
store it wrote.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from featx.caches import rejected_counts
from featx.config import DEFAULT_BACKEND
from featx.data import InputSummary, Source, describe_json
from featx.data.memory import is_in_memory, open_columns
from featx.data.targets import label_rows
from featx.errors import FeatxError, OutputError, ParameterError
from featx.extraction.background import BackgroundWorker, prefetch
from featx.extraction.runners import Runner, make_runner
from featx.extraction.shards import shard_path, shard_rows, shard_window_rows
from featx.extraction.windows import Window, first_window_scales, iter_windows
from featx.featurizers import Featurizer
from featx.hardware import describe_hardware
from featx.modalities import modality_of, modality_options
from featx.options import VECTOR_OPTIONS, ExtractOptions
from featx.progress import progress_bar, running_time, stopped_seconds
from featx.store import HDF5, StoreFormat, StorePlan, Writer
from featx.store.vector_cache import VectorCache


def extract(input: str | Path | Source | Any, output: str | Path, *, model: Any = None, read: Any = None,
            vectors: Any = None, store: Any = None, run: Any = None, featurizer: Featurizer | None = None,
            runner: Runner | None = None, labels: Sequence[Any] | None = None, **options: Any) -> Any:
    """Embed every row of `input` with a frozen backbone into the store at `output`.

    The options come in five groups (featx.options): `read` (ReadOptions: columns, skip_bad),
    `model` (ModelOptions: the model, dtype, device, backend; or just the model), `vectors`
    (VectorOptions: pooling, layers, normalize, max_length, long texts, prompt), `store`
    (StoreOptions: store_dtype, compression, overwrite, cache_layer, keep_windows) and `run`
    (RunOptions: batch_tokens, window_rows, shard, progress, cache_dir). A group may be a dict of
    its fields, and any field a keyword of its own name: ``extract(x, out, pooling="mean")``.

    Reruns are cheap and safe: a complete store with the same fingerprint and input is
    returned untouched, an unfinished one is continued from its last committed window,
    and a store made differently is refused unless `overwrite=True`.
    `shard=(i, n)` embeds only the i-th of n contiguous runs of windows, into
    ``<output stem>.shard-i-of-n.h5`` (`featx merge` joins the shards). `window_rows=None`
    is 4,096 rows, or for shards of a small input ceil(rows / n) (featx.extraction.shards.shard_window_rows).
    `cache_dir` reuses vectors of texts embedded before with the same config (see
    featx.store.vector_cache); the store's timings count the hits.
    `cache_layer=L` keeps each row's token states at hidden-state index L too (in `cache_dtype`),
    for a blocks head (featx.heads.blocks) to train the blocks above L on; texts only.
    `keep_windows=True` (with long="chunk") keeps each row's window vectors too, for a windows
    head (featx.heads.windows).
    `backend="openvino"` runs a text model, or an image model given as a torch module, with
    OpenVINO on the CPU (featx[openvino]; see featx.backbones.openvino). `None` (the default)
    and `"auto"` first take the backend of a store already at `output` unless `overwrite` (so
    it resumes, or is returned, as it was made); otherwise both are featx.config.DEFAULT_BACKEND,
    "auto": openvino where it is installed and applies, else torch.
    `prompt` (or `prompt_name`, one of the model's declared prompts; default: the model's
    default_prompt_name, "" for none) is put before every text, as sentence-transformers does.
    `progress=None` shows a bar only on a terminal.

    The parts can be handed in ready-made: `input` a Source, `featurizer` one already made (its
    config then decides every vector, so the model and vectors groups are left out), `runner` one
    that embeds batches its own way (featx.extraction.runners.Runner). The store option `store_format` is the
    format written (featx.store.format.StoreFormat; None: HDF5): what is returned is the store it wrote.
    A registered modality's own options (Modality.options) are keywords too.

    `input` may also be rows in memory (featx.data.memory): a list of texts, a dict of columns, a
    pandas DataFrame, a pyarrow Table or a `datasets.Dataset`, read with `text_column` (default
    "text"), `label_column` and `id_column` as a file is (a list of texts takes its `labels`
    beside it); the same rows give the same vectors and fingerprint as a file.

    Targets beyond one class a row (read options, featx.data.targets): `multi_label=","` splits a
    label cell (a list cell is read as is), `label_columns` reads several 0/1 columns, `target`
    one or more number columns (regression); the store records the task (featx.store.layout).

    Images (a folder, a .zip, ``X.zip:FOLDER``, an ImageTableSource or ArraySource): `model`
    defaults to efficientnet-lite0, the text settings (max_length, long, stride) do not
    apply, `batch_tokens` counts images, and `skip_bad` counts undecodable images in the
    store instead of stopping (see featx.featurizers.image).
    """
    t_start = running_time()  # wall time less any time the process was stopped (Ctrl-Z)
    stopped_before, rejected_before = stopped_seconds(), rejected_counts()
    chosen = ExtractOptions.build(output, read=read, model=model, vectors=vectors, store=store, run=run,
                                  declared=modality_options(), **options)
    source, modality = _open(input, chosen.read, labels)
    summary = source.scan()
    t_scanned = running_time()
    shard = chosen.run.shard
    output = Path(output) if shard is None else shard_path(output, *shard)
    store_format = chosen.store.store_format or HDF5
    if featurizer is None:
        chosen = _with_backend(chosen, store_format, output)
        modality.check_options(chosen, source)
        featurizer, default_window, state_dim = modality.extraction(source, chosen.model.model, chosen)
    else:
        default_window, state_dim = _check_given(featurizer, modality, chosen), None
    runner = runner or make_runner(featurizer, chosen.run.batch_tokens)
    plan = _plan(source, summary, featurizer, modality, chosen, default_window, state_dim)
    if source.path.is_dir() and output.resolve().is_relative_to(source.path.resolve()):
        raise OutputError(f"the output {output} is inside the input folder {source.name}: featx never writes into "
                          "its input; choose an -o outside it")
    found = None if chosen.store.overwrite else store_format.complete_store(output, plan)
    if found is not None:
        return found  # nothing to do, and nothing written: works in a read-only folder too
    writer = store_format.open_writer(output, plan, overwrite=chosen.store.overwrite, inputs=[source.path])
    try:
        if not writer.complete:
            started = {"start": t_start, "scanned": t_scanned, "loaded": running_time(),
                       "stopped": stopped_before, "rejected": rejected_before}
            _extract_rest(source, summary, featurizer, runner, writer, chosen, started)
    finally:
        writer.close()
    return writer.written()


def _open(input: Any, reading: Any, labels: Sequence[Any] | None) -> tuple[Source, Any]:
    """The Source over `input` (a path, a Source, rows in memory) and its modality."""
    if is_in_memory(input):  # a list of texts, a dict of columns, a DataFrame, a pyarrow Table, a Dataset
        input = open_columns(input, text_column=reading.text_column, label_column=reading.label_column,
                             id_column=reading.id_column, labels=labels, **reading.targets())
        if reading.where is not None:
            raise ParameterError("where", "selects rows of a file: select the rows of an object in memory yourself")
    elif labels is not None:
        raise ParameterError("labels", "go beside a list of texts; a file or table names its label column")
    modality = modality_of(input)
    if not isinstance(input, (str, Path)):
        return input, modality
    source: Source = modality.open(input, text_column=reading.text_column, label_column=reading.label_column,
                                   id_column=reading.id_column, **reading.targets(),
                                   **({"where": reading.where} if reading.where else {}))
    return source, modality


def _with_backend(options: ExtractOptions, store_format: StoreFormat, output: Path) -> ExtractOptions:
    """`options` with the backend they ask for resolved in the one place that does it: None and
    "auto" first take the backend of a store already at `output` (unless it is to be overwritten),
    so a store resumes, or is returned, as it was made; else None is DEFAULT_BACKEND ("auto")."""
    backend = options.model.backend
    if backend in (None, "auto") and not options.store.overwrite:
        found = store_format.stored_config(output)
        backend = backend if found is None else found.get("backend") or "torch"
    return replace(options, model=replace(options.model, backend=backend or DEFAULT_BACKEND))


def _plan(source: Source, summary: InputSummary, featurizer: Featurizer, modality: Any, options: ExtractOptions,
          default_window: int, state_dim: int | None) -> StorePlan:
    """The StorePlan of this run: what the store holds, and which of the input's rows."""
    shard, window_rows = options.run.shard, options.run.window_rows
    if window_rows is None:
        window_rows = default_window if shard is None else \
            shard_window_rows(summary.n_rows, shard[1], default_window)
    row_offset, n_rows = (0, summary.n_rows) if shard is None else shard_rows(summary.n_rows, window_rows, *shard)
    return StorePlan(config=featurizer.config, input_json=describe_json(source), input_sha256=summary.sha256,
                     input_rows=summary.n_rows, dim=featurizer.dim,
                     classes=summary.classes, task=summary.task, id_kind=summary.id_kind, window_rows=window_rows,
                     hardware=_hardware(featurizer), compression=options.store.compression,
                     row_offset=row_offset, n_rows=n_rows, shard=shard, state_dim=state_dim,
                     input_path=_input_path(source), row_flags=tuple(modality.row_flags))


def _hardware(featurizer: Featurizer) -> dict[str, Any]:
    """What ran the run, and for an int8 model its measured fidelity to fp32 (featx.backbones.int8)."""
    fidelity = getattr(featurizer, "fidelity", None)
    return {**describe_hardware(featurizer.device), **({"int8_fidelity": fidelity} if fidelity else {})}


def _extract_rest(source: Source, summary: InputSummary, featurizer: Featurizer, runner: Runner, writer: Writer,
                  options: ExtractOptions, started: dict[str, Any]) -> None:
    """Embed every uncommitted window into `writer`, then mark it complete with the run's timings
    (`started`: when the run started, scanned and loaded; stopped and rejected counts before it)."""
    resumed_from = writer.n_done
    cache_dir = options.run.cache_dir
    cache = VectorCache(cache_dir, featurizer.config, featurizer.dim) if cache_dir is not None else None
    try:
        stage_seconds = _run(source, summary, featurizer, runner, writer, options.run.progress, cache)
    finally:
        if cache is not None:
            cache.close()
    rows = writer.n_rows - resumed_from
    run_seconds = running_time() - started["loaded"]
    writer.finish({
        "scan_s": round(started["scanned"] - started["start"], 3),
        "load_s": round(started["loaded"] - started["scanned"], 3),
        **{k: round(v, 3) if k.endswith("_s") else v for k, v in stage_seconds.items()},
        "extract_s": round(run_seconds, 3),
        "total_s": round(running_time() - started["start"], 3),
        "rows_this_run": rows,
        "resumed_from_row": resumed_from,
        "rows_per_s": round(rows / run_seconds, 2) if run_seconds > 0 else None,
        "batch_tokens": runner.batch_cost,
        **_new_rejections(started["rejected"]),
        **_time_stopped(started["stopped"]),
    })


def _new_rejections(before: dict[str, int]) -> dict[str, Any]:
    """{"cache_rejections": {cache: n}} for cached values that failed their check during this run."""
    new = {kind: n - before.get(kind, 0) for kind, n in rejected_counts().items() if n > before.get(kind, 0)}
    return {"cache_rejections": new} if new else {}


def _time_stopped(before: float) -> dict[str, Any]:
    """{"stopped_s": s} when the process was stopped (Ctrl-Z) during this run: left out of every
    other figure, said here."""
    stopped = stopped_seconds() - before
    return {"stopped_s": round(stopped, 3)} if stopped > 0 else {}


def _input_path(source: Source) -> str:
    """The file or folder read, made absolute, for `featx info --verify` to read again ("" for rows
    in memory); with the store's reading choices (columns, an archive's folder) it is the input."""
    path = Path(source.path)
    return str(path.resolve()) if path.exists() else ""


# What a featurizer handed in has decided: leave these out beside it.
_DECIDED_BY_A_FEATURIZER = (*VECTOR_OPTIONS, "store_dtype", "cache_layer", "cache_dtype", "keep_windows", "skip_bad")


def _check_given(featurizer: Featurizer, modality: Any, options: ExtractOptions) -> int:
    """The default window rows for a featurizer handed in, once it fits the input and no option
    it has decided is given too."""
    given = [name for name in options.changed() if name in (*_DECIDED_BY_A_FEATURIZER, "model")]
    if given:
        raise ParameterError(given[0], "is decided by the featurizer given: leave it out")
    if featurizer.config.modality != modality.name:
        raise FeatxError(f"the featurizer given embeds {featurizer.config.modality}, but the input is read as "
                         f"{modality.name}")
    if featurizer.config.sequences is not None:
        raise ParameterError("featurizer", "keeps per-row sequences (cache_layer, keep_windows): let extract make it")
    return int(modality.default_window_rows)


def _run(source: Source, summary: InputSummary, featurizer: Featurizer, runner: Runner,
         writer: Writer, progress: bool | None, cache: VectorCache | None = None) -> dict[str, float]:
    """Extract every uncommitted window into `writer`; returns seconds per stage (and cache hits)."""
    timer: dict[str, float] = {}
    def commit(item: tuple[Window, np.ndarray, dict[str, np.ndarray]]) -> None:
        window, hashes, features = item
        t0 = time.perf_counter()
        labels = label_rows(summary, [r.label for r in window.records])
        writer.write_window(window.start, [r.id for r in window.records], hashes, labels, features, window.flags)
        timer["write_s"] = timer.get("write_s", 0.0) + time.perf_counter() - t0
        bar.update(len(window.records))

    if writer.next_row > 0 and getattr(writer, "scales_needed", False):  # an int8 shard further in
        writer.set_scales(first_window_scales(  # type: ignore[attr-defined]
            source, summary, featurizer, runner, writer.window_rows))
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
                        cache: VectorCache, timer: dict[str, float]) -> dict[str, np.ndarray]:
    """Cached vectors for rows seen before, the model for the rest (then cached too)."""
    hit, cached = cache.lookup(hashes)
    missing = np.flatnonzero(~hit)
    fresh = runner.run(featurizer, [items[int(i)] for i in missing], timer) if len(missing) else None
    features = {}
    for name in featurizer.poolings:
        values = np.empty((len(hashes), featurizer.dim), dtype=featurizer.config.vector_dtype)
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
