"""Runners: how batches of one window reach a device and come back as numpy arrays.

A runner plans the window's batches by the featurizer's cost (longest first, cut by a
budget), runs `collate -> forward` for each and fills one (rows, dim) array per
pooling in input order. The plan depends only on the items and the budget, so the
same input gives the same batches on every run.

- `CpuRunner` shares the batches among a few worker threads, each running whole
  batches on few intra-op threads (see `cpu_workers`).
- `CudaRunner` copies each batch from pinned host memory without blocking, holds the
  weights in the compute dtype, and copies results back into pinned buffers without
  waiting: a batch's vectors are collected only when `IN_FLIGHT` later batches have
  been queued, so the GPU is never idle while the host pads, copies or writes.
"""
from __future__ import annotations

import collections
import functools
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
import torch

from featx.config import SEQUENCE_MASK
from featx.extraction.batching import plan_batches
from featx.featurizers import Featurizer
from featx.hardware import cpu_workers


class Runner(Protocol):
    device: torch.device
    batch_cost: int

    def run(self, featurizer: Featurizer, items: Sequence[Any],
            timer: dict[str, float] | None = None) -> dict[str, np.ndarray]:
        """Every pooling of every item, (len(items), dim) each, in input order."""


class WatchedRunner:
    """The featurizer's own runner (made on first use, in the process that embeds: a shard's, a Ray
    task's), with `after_window` called after each window it embeds: subclass it to log windows, slow
    a worker or stop a run (tests and benchmarks of resume and scheduling do). It pickles before use."""

    def __init__(self, batch_cost: int | None = None) -> None:
        self._batch_cost = batch_cost  # None: the featurizer's default budget on its device
        self._inner: Runner | None = None

    @property
    def device(self) -> torch.device:
        return torch.device("cpu") if self._inner is None else self._inner.device

    @property
    def batch_cost(self) -> int:
        return self._batch_cost or 0 if self._inner is None else self._inner.batch_cost

    def run(self, featurizer: Featurizer, items: Sequence[Any],
            timer: dict[str, float] | None = None) -> dict[str, np.ndarray]:
        if self._inner is None:
            self._inner = make_runner(featurizer, self._batch_cost)
        t0 = time.perf_counter()
        out = self._inner.run(featurizer, items, timer)
        self.after_window(len(items), time.perf_counter() - t0)
        return out

    def after_window(self, rows: int, seconds: float) -> None:
        """Called after each window of `rows` rows is embedded (in `seconds`), before it is committed."""


def make_runner(featurizer: Featurizer, batch_cost: int | None = None) -> Runner:
    """The runner for the featurizer's device; `batch_cost=None` is the featurizer's default budget there."""
    cost = batch_cost or featurizer.default_batch_cost()
    if featurizer.device.type == "cuda":
        return CudaRunner(featurizer.device, cost)
    return CpuRunner(cost)


def _allocate(featurizer: Featurizer, rows: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {name: np.empty((rows, featurizer.dim), dtype=featurizer.config.vector_dtype)
                                  for name in featurizer.poolings}
    for name in featurizer.token_outputs:  # one (tokens, dim) array per row
        out[name] = np.empty(rows, dtype=object)
    return out


def _fill(out: dict[str, np.ndarray], rows: np.ndarray, values: dict[str, torch.Tensor],
          mask: torch.Tensor | None) -> None:
    """Put a batch's results (on the host) at their rows; a per-row sequence output (token states,
    window vectors) keeps each row's real entries."""
    for name, batch_values in values.items():
        if batch_values.dim() == 3:
            assert mask is not None, "a per-row sequence output needs its mask"
            real = mask.bool()
            for row, row_values, row_mask in zip(rows, batch_values, real):
                out[name][row] = row_values[row_mask].numpy()
        else:
            out[name][rows] = batch_values.numpy()


def _sequence_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """Which entries of a batch's per-row sequence output are real: the featurizer's own mask
    when it gives one (window vectors), else the attention mask (token states)."""
    return batch.get(SEQUENCE_MASK, batch.get("attention_mask"))


def _plan(featurizer: Featurizer, items: Sequence[Any], batch_cost: int) -> list[np.ndarray]:
    costs = np.fromiter((featurizer.cost(item) for item in items), dtype=np.int64, count=len(items))
    return plan_batches(costs, batch_cost)


@functools.cache
def _forward_pool(workers: int, threads_each: int, pid: int) -> ThreadPoolExecutor:
    """The worker threads of `CpuRunner`, started once per process (`pid`: a forked child, which has no
    threads, starts its own) and shared by every window. A new pool for each window started its threads
    while the reader held the GIL: 10 % of featx's host time on 64,000 SST-2 phrases (benchmarks/README.md)."""
    return ThreadPoolExecutor(workers, thread_name_prefix="featx-forward", initializer=torch.set_num_threads,
                              initargs=(threads_each,))


def _add_time(timer: dict[str, float] | None, t0: float) -> None:
    if timer is not None:
        timer["forward_s"] = timer.get("forward_s", 0.0) + time.perf_counter() - t0


class CpuRunner:
    """Batches shared among `cpu_workers()` threads; a batch's result does not depend on
    which worker ran it."""

    device = torch.device("cpu")

    def __init__(self, batch_cost: int) -> None:
        self.batch_cost = batch_cost

    def run(self, featurizer: Featurizer, items: Sequence[Any],
            timer: dict[str, float] | None = None) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        out = _allocate(featurizer, len(items))
        batches = _plan(featurizer, items, self.batch_cost)

        def forward(rows: np.ndarray) -> None:
            batch = featurizer.collate([items[i] for i in rows])
            mask = _sequence_mask(batch)  # read first: forward may take it out of the batch
            with torch.inference_mode():  # thread-local: each worker enters it
                _fill(out, rows, featurizer.forward(batch), mask)

        workers, threads_each = cpu_workers()
        if workers == 1 or len(batches) == 1:
            for rows in batches:
                forward(rows)
        else:
            pool = _forward_pool(workers, threads_each, os.getpid())
            for _ in pool.map(forward, batches):  # re-raises a worker's error here
                pass
        _add_time(timer, t0)
        return out


class CudaRunner:
    """One CUDA device: pinned, non-blocking copies both ways, results collected late."""

    IN_FLIGHT = 2  # batches whose results may still be on their way back

    def __init__(self, device: torch.device, batch_cost: int) -> None:
        self.device = device
        self.batch_cost = batch_cost

    def run(self, featurizer: Featurizer, items: Sequence[Any],
            timer: dict[str, float] | None = None) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        featurizer.cast_weights()  # once in effect: a no-op when the weights already have the compute dtype
        out = _allocate(featurizer, len(items))
        pending: collections.deque[tuple[np.ndarray, dict[str, torch.Tensor], torch.Tensor | None, torch.cuda.Event]] = \
            collections.deque()
        with torch.cuda.device(self.device):
            for rows in _plan(featurizer, items, self.batch_cost):
                host = featurizer.collate([items[i] for i in rows])
                batch = {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in host.items()}
                with torch.inference_mode():
                    pooled = featurizer.forward(batch)
                back = {}
                for name, values in pooled.items():
                    back[name] = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
                    back[name].copy_(values, non_blocking=True)
                done = torch.cuda.Event()  # type: ignore[no-untyped-call]
                done.record()
                pending.append((rows, back, _sequence_mask(host), done))
                while len(pending) > self.IN_FLIGHT:
                    _collect(pending.popleft(), out)
            while pending:
                _collect(pending.popleft(), out)
        _add_time(timer, t0)
        return out


def _collect(landed: tuple[np.ndarray, dict[str, torch.Tensor], torch.Tensor | None, torch.cuda.Event],
             out: dict[str, np.ndarray]) -> None:
    rows, back, mask, done = landed
    done.synchronize()
    _fill(out, rows, back, mask)
