"""Windows: runs of consecutive input rows, prepared for the model (the commit unit of a store), and
the first window's int8 scales for a shard that does not start there."""
from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from featx.data import InputSummary, Source
from featx.extraction.runners import Runner
from featx.featurizers import Featurizer
from featx.store.quantize import int8_scales


@dataclass
class Window:
    """A run of consecutive input rows, prepared, waiting for the model."""

    start: int
    records: list[Any]
    items: list[Any]
    flags: dict[str, np.ndarray]  # per-row uint8 flags by name (the modality's row_flags)

    @property
    def skipped(self) -> np.ndarray:
        """Rows that could not be read (skip_bad): no item, NaN vectors."""
        return self.flags.get("skipped", np.zeros(len(self.records), dtype=np.uint8))


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
        items, flags = featurizer.prepare(chunk)
        timer["prepare_s"] = timer.get("prepare_s", 0.0) + time.perf_counter() - t0
        # What the model is fed, in the featurizer's cost units (tokens for text, window overlaps included).
        timer["cost_units"] = timer.get("cost_units", 0) + sum(featurizer.cost(item) for item in items)
        yield Window(position, chunk, items, flags)
        position += len(chunk)


def first_window_scales(source: Source, summary: InputSummary, featurizer: Featurizer, runner: Runner,
                        window_rows: int) -> dict[str, np.ndarray]:
    """The int8 scales of each pooling from the input's first window, as a one-process run fixes them:
    a shard further in embeds that window once more, so every shard and a one-process run share them."""
    window = next(iter_windows(source, summary, featurizer, 0, window_rows, stop=window_rows))
    readable = [item for item, skipped in zip(window.items, window.skipped) if not skipped]
    found = runner.run(featurizer, readable)
    return {name: int8_scales(found[name]) for name in featurizer.poolings}
