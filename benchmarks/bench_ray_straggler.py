"""Ray against static shards when one worker is slow (issue 33).

Two workers of one core each embed the first --rows SST-2 train phrases with MiniLM (torch, fp32
compute, float32 store, windows of rows / shards rows for both, so both embed the same batches).
One worker is slowed --slow times: after each window it embeds it sleeps (slow - 1) x the window's
time.

- static: `--shard 0/2` and `--shard 1/2` (what torchrun's two ranks run), started together, the
  first one slow; then `featx merge`. Wall: from the start to the merged store.
- ray: `extract_with_ray(shards=--shards, cpus_per_shard=1)` on a local Ray of 2 CPUs (started
  before the clock and shut down after each run, so each run starts cold workers); the first worker
  process to embed a window is the slow one. Wall: from the call to the merged store.

Each is also run with no slow worker. The four run interleaved, --repeats times; the table gives
medians. Every merged store is checked equal (features, ids, labels) to the first static one.

    python benchmarks/bench_ray_straggler.py --rows 16000 --repeats 3 --work /tmp/featx-ray
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from featx.extraction.runners import WatchedRunner

REPO = Path(__file__).resolve().parent.parent
SST2 = REPO.parent / "shared" / "data" / "sst2" / "train.tsv"


class SlowRunner(WatchedRunner):
    """The featurizer's own runner; in the slow process (`slow` > 1) each window is followed by a sleep
    of (slow - 1) x its time. Ray: the first process to claim `marker` is slow; static: the one told so."""

    def __init__(self, slow: float, marker: str | None = None) -> None:
        super().__init__()
        self.slow, self.marker, self._is_slow = slow, marker, None

    def after_window(self, rows: int, seconds: float) -> None:
        if self._is_slow is None:
            self._is_slow = self.slow > 1 and (self.marker is None or _claim(Path(self.marker)))
        if self._is_slow:
            time.sleep((self.slow - 1) * seconds)


def _claim(marker: Path) -> bool:
    """True in the first process to ask (per process: a process that claimed it keeps it)."""
    mine = f"{os.getpid()}"
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, mine.encode())
        os.close(fd)
        return True
    except FileExistsError:
        return marker.read_text() == mine


OPTIONS = {"text_column": "sentence", "label_column": "label", "dtype": "fp32", "backend": "torch", "progress": False}

STATIC_RANK = """
import sys, torch
sys.path.insert(0, {bench!r})
from bench_ray_straggler import SlowRunner, OPTIONS
import featx
torch.set_num_threads(1)
featx.extract({input!r}, {output!r}, shard=({index}, 2), runner=SlowRunner({slow}), window_rows={window}, **OPTIONS)
"""


def run_static(source: Path, out: Path, slow: float, window: int) -> float:
    from featx.store.merge import merge_shards

    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    scripts = [STATIC_RANK.format(bench=str(Path(__file__).parent), input=str(source), output=str(out), index=i,
                                  slow=slow if i == 0 else 1.0, window=window) for i in range(2)]
    ranks = [subprocess.Popen([sys.executable, "-c", script], env=env) for script in scripts]
    if any(rank.wait() != 0 for rank in ranks):
        raise SystemExit("a static rank failed")
    merge_shards([out.with_name(f"{out.stem}.shard-{i}-of-2.h5") for i in range(2)], out)
    return time.perf_counter() - t0


def run_ray(source: Path, out: Path, slow: float, shards: int, window: int) -> float:
    import ray

    from featx.extraction.ray_engine import extract_with_ray

    marker = out.with_suffix(".slow")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        t0 = time.perf_counter()
        extract_with_ray(source, out, shards=shards, cpus_per_shard=1, runner=SlowRunner(slow, str(marker)),
                         window_rows=window, **OPTIONS).close()
        return time.perf_counter() - t0
    finally:
        ray.shutdown()


def same_store(a: Path, b: Path) -> bool:
    with h5py.File(a, "r") as x, h5py.File(b, "r") as y:
        return all(np.array_equal(x[n][:], y[n][:]) for n in ("ids", "labels", "features/mean"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=16000)
    parser.add_argument("--shards", type=int, default=8, help="Ray shards (4 per worker)")
    parser.add_argument("--slow", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/featx-ray"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ray_straggler")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    source = args.work / "sst2-train.tsv"
    with open(SST2) as f:
        source.write_text("".join(line for _, line in zip(range(args.rows + 1), f)))
    load, started = os.getloadavg(), time.perf_counter()
    window = -(-args.rows // args.shards)  # both cut the input into the same windows: the same batches
    runs: dict[str, list[float]] = {}
    reference = None
    for repeat in range(args.repeats):
        for name, slow in (("static", args.slow), ("ray", args.slow), ("static", 1.0), ("ray", 1.0)):
            label = f"{name}, {'one worker slowed' if slow > 1 else 'no straggler'}"
            out = args.work / f"r{repeat}-{name}-{slow:g}" / "store.h5"
            out.parent.mkdir(parents=True, exist_ok=True)
            seconds = run_static(source, out, slow, window) if name == "static" else \
                run_ray(source, out, slow, args.shards, window)
            reference = reference or out
            assert same_store(out, reference), f"{out} differs from {reference}"
            runs.setdefault(label, []).append(round(seconds, 2))
            print(f"repeat {repeat}: {label}: {seconds:.1f} s", flush=True)
    import ray
    import torch

    from featx.hardware import describe_hardware

    result = {
        "command": f"python benchmarks/bench_ray_straggler.py --rows {args.rows} --shards {args.shards} "
                   f"--slow {args.slow:g} --repeats {args.repeats}",
        "rows": args.rows, "window_rows": window, "shards_ray": args.shards, "shards_static": 2, "slow_factor": args.slow,
        "model": "all-MiniLM-L6-v2", "dtype": "fp32", "store_dtype": "float32", "backend": "torch",
        "seed": "none (the first --rows rows; no sampling)", "hardware": describe_hardware(torch.device("cpu")),
        "cores": os.cpu_count(), "load_before": [round(x, 2) for x in load],
        "benchmark_wall_s": round(time.perf_counter() - started, 1),
        "torch": torch.__version__, "ray": ray.__version__, "python": platform.python_version(),
        "wall_s": runs, "median_s": {k: statistics.median(v) for k, v in runs.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median_s"], indent=2))


if __name__ == "__main__":
    main()
