"""Ray as the shard scheduler (`featx extract --engine ray`, featx[ray]).

The input is cut into N shards (default: four per worker the cluster can run at once), and each
shard is a Ray task that runs the same code as ``featx extract --shard I/N``: it writes
``<output stem>.shard-I-of-N.h5`` window by window, and a rerun of it resumes from its last
committed window. Ray only schedules: a free worker takes the next shard, so a slow worker takes
fewer of them; a worker that dies has its shard run again elsewhere (up to `retries` times),
resuming where the dead one stopped. When every shard is complete the driver merges them into
the output (featx.store.merge; virtual datasets over the shards unless `copy`). The store, its
fingerprint and every guarantee are those of a sharded extraction: the merged store equals a
one-process run bit for bit.

A rerun after the driver died hands every shard to a task again: a complete shard is checked
(its fingerprint, input and rows, as any rerun of extract does) and returned without embedding
a row, an unfinished one resumes. The shards' files must be on storage every node sees.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from featx.errors import FeatxError, ParameterError, first_line
from featx.extraction.engine import extract
from featx.extraction.shards import shard_path
from featx.modalities import modality_options
from featx.options import ExtractOptions
from featx.progress import progress_bar
from featx.store import FeatureStore, open_store
from featx.store.merge import merge_shards

SHARDS_PER_WORKER = 4  # the default N: enough that a slow worker's share can shrink


def require_ray() -> Any:
    """The ray module, or one line that says how to install it."""
    try:
        import ray
    except ImportError:
        raise FeatxError("--engine ray needs Ray: pip install 'featx[ray]'") from None
    return ray


def extract_with_ray(input: Any, output: str | Path, *, shards: int | None = None, address: str | None = None,
                     cpus_per_shard: int = 1, gpus_per_shard: float | None = None, retries: int = 3, copy: bool = False,
                     runner: Any = None, **options: Any) -> FeatureStore:
    """`featx.extract` of `input` into `output` as `shards` Ray tasks, then merged (see the module
    docstring). `address`: a running cluster's (None: the one this process is connected to, else a
    local one started here). A task holds `cpus_per_shard` CPUs (its torch threads) and `gpus_per_shard`
    GPUs (None: one where the cluster has GPUs and the device is not "cpu"; Ray then gives the task its
    own, which device "auto" takes). `options` are featx.extract's (its groups or keywords), `shard`
    excepted; `runner` (featx.extraction.runners.Runner) is handed to every task."""
    chosen = ExtractOptions.build(output, declared=modality_options(), **options)
    if chosen.run.shard is not None:
        raise ParameterError("shard", "is chosen by --engine ray: give --shards N instead")
    if cpus_per_shard < 1:
        raise ParameterError("cpus_per_shard", f"must be at least 1, got {cpus_per_shard}")
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    resources = ray.cluster_resources()
    if gpus_per_shard is None:
        gpus_per_shard = 1 if resources.get("GPU", 0) and chosen.model.device != "cpu" else 0
    workers = int(resources.get("CPU", 1)) // cpus_per_shard
    if gpus_per_shard:
        workers = min(workers, int(resources.get("GPU", 0) // gpus_per_shard))
    workers = max(1, workers)
    count = shards or SHARDS_PER_WORKER * workers
    if count < 1:
        raise ParameterError("shards", f"must be at least 1, got {count}")
    task = ray.remote(_extract_shard).options(num_cpus=cpus_per_shard, num_gpus=gpus_per_shard,
                                              max_retries=retries, retry_exceptions=False)
    pending = {task.remote(input, str(output), dataclasses.replace(chosen, run=dataclasses.replace(
        chosen.run, shard=(i, count), progress=False)), cpus_per_shard, runner): i for i in range(count)}
    bar = progress_bar(count, "extract (ray shards)", show=chosen.run.progress)
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            pending.pop(done[0])
            _result(ray, done[0])
            bar.update(1)
    except BaseException:
        for ref in pending:  # a shard cancelled mid-window keeps its committed rows for the rerun
            ray.cancel(ref, force=True)
        raise
    finally:
        bar.close()
    merge_shards([shard_path(output, i, count) for i in range(count)], output, copy=copy)
    return open_store(output)


def _result(ray: Any, ref: Any) -> Any:
    """A finished task's value; a shard's own error (a FeatxError: a user's mistake, a damaged file) as itself."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, (FeatxError, OSError, KeyboardInterrupt)):
            raise cause from None
        raise
    except ray.exceptions.RayError as e:  # the worker died on every try, the cluster went away
        raise FeatxError(f"a shard could not be run: {first_line(e)}; rerun the same command to resume") from None


def _extract_shard(input: Any, output: str, chosen: ExtractOptions, threads: int, runner: Any) -> str:
    """One Ray task: the shard `chosen.run.shard` of the extraction, written (or resumed, or found
    complete) beside `output`, on `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    store = extract(input, output, read=chosen.read, model=chosen.model, vectors=chosen.vectors, store=chosen.store,
                    run=chosen.run, runner=runner, **chosen.modality)
    store.close()
    return str(shard_path(output, *chosen.run.shard))  # type: ignore[misc]
