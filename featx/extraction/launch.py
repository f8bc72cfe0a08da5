"""Extraction under a launcher: torchrun or Slurm ranks become shards, GPUs and a merge.

`featx extract` calls `extract_as_launched`; in a plain process it is `featx.extract`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from featx.data import Source
from featx.extraction.engine import extract
from featx.extraction.shards import device_for_rank, merge_after_barrier, parse_shard, shard_from_env
from featx.modalities import modality_options
from featx.options import ExtractOptions


def extract_as_launched(input: str | Path | Source, output: str | Path, *, shard: str | None = None,
                        merge: bool = False, **options: Any) -> Any:
    """`featx.extract` (its groups or keywords in `options`) for this process's part of the work.

    `shard` is ``I/N``; by default a process started by torchrun or Slurm takes its rank's
    shard and, with device ``auto``, its local GPU. With `merge`, every rank waits for
    the others and rank 0 merges the shards into `output` and returns it; the other ranks
    return None.
    """
    part, local_rank = (parse_shard(shard), None) if shard is not None else shard_from_env()
    chosen = ExtractOptions.build(output, declared=modality_options(), **options)
    store = extract(input, output, read=chosen.read, vectors=chosen.vectors, store=chosen.store,
                    model=dataclasses.replace(chosen.model, device=device_for_rank(chosen.model.device, local_rank)),
                    run=dataclasses.replace(chosen.run, shard=part), **chosen.modality)
    if not merge or part is None:
        return store
    store.close()
    return merge_after_barrier(output, part)
