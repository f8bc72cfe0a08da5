"""Sharded extraction: which rows a shard owns, where it writes, and which shard a launched
process takes (torchrun, Slurm).

A shard is a contiguous run of whole windows, so shard i of n embeds exactly the
batches a single process would, and the merged store (featx.store.merge) equals a
one-process run.
"""
from __future__ import annotations

import os
from pathlib import Path

from featx.errors import FeatxError, ParameterError
from featx.store import FeatureStore
from featx.store.merge import merge_shards


def shard_window_rows(input_rows: int, count: int, default: int) -> int:
    """The window size a sharded run uses when the user did not choose one: the default, or,
    when the input has fewer default windows than shards, ceil(rows / shards), so any
    input with at least `count` rows splits `count` ways. Every shard computes the same
    value from the input alone; the store records it (attrs window_rows)."""
    if count < 1:
        return default
    return max(1, min(default, -(-input_rows // count)))


def shard_rows(input_rows: int, window_rows: int, index: int, count: int) -> tuple[int, int]:
    """(first input row, number of rows) of shard `index` of `count`, cut at window boundaries."""
    if count < 1 or not 0 <= index < count:
        raise FeatxError(f"shard {index}/{count} does not exist: use I/N with 0 <= I < N")
    windows = -(-input_rows // window_rows)
    first, last = index * windows // count, (index + 1) * windows // count
    if first == last:
        raise FeatxError(f"shard {index}/{count} gets no rows: the input has only {windows} window(s) of "
                         f"{window_rows} rows; use fewer shards or a smaller --window-rows")
    start = first * window_rows
    return start, min(last * window_rows, input_rows) - start


def shard_path(output: str | Path, index: int, count: int) -> Path:
    """``out.h5`` -> ``out.shard-<index>-of-<count>.h5``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.shard-{index}-of-{count}{output.suffix or '.h5'}")


def parse_shard(spec: str) -> tuple[int, int]:
    """``I/N`` -> (I, N); the range itself is checked by shard_rows."""
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise ParameterError("shard", f"cannot read {spec!r}: write I/N, e.g. 0/4") from None
    return index, count


def shard_from_env() -> tuple[tuple[int, int] | None, int | None]:
    """(shard, local rank) from torchrun (RANK, WORLD_SIZE, LOCAL_RANK) or Slurm
    (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID); (None, None) outside a launcher."""
    for rank, world, local in (("RANK", "WORLD_SIZE", "LOCAL_RANK"),
                               ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")):
        if rank in os.environ and world in os.environ:
            count = int(os.environ[world])
            if count > 1:
                return (int(os.environ[rank]), count), int(os.environ.get(local, 0))
    return None, None


def device_for_rank(device: str, local_rank: int | None) -> str:
    """`auto` under a launcher means the process's own GPU (cuda:LOCAL_RANK), or the CPU."""
    if device != "auto" or local_rank is None:
        return device
    import torch

    return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"


def merge_after_barrier(output: str | Path, shard: tuple[int, int]) -> FeatureStore | None:
    """Under torchrun: wait until every rank's shard is complete, then rank 0 merges them into
    `output` and returns it opened; other ranks return None. torch.distributed (gloo) is used
    only as the barrier."""
    import torch.distributed as dist

    from featx.store import open_store

    if "MASTER_ADDR" not in os.environ:
        raise FeatxError("--merge needs torchrun (or MASTER_ADDR/MASTER_PORT set); otherwise run featx merge")
    dist.init_process_group("gloo", rank=shard[0], world_size=shard[1])
    try:
        dist.barrier()
        if shard[0] != 0:
            return None
        merge_shards([shard_path(output, i, shard[1]) for i in range(shard[1])], output)
        return open_store(output)
    finally:
        dist.destroy_process_group()
