"""Extraction speed of this checkout against an earlier commit, side by side.

For each workload the two trees run `featx.extract` (defaults: --dtype auto, default
batch tokens) on the same texts, each run in its own process after a warm-up
extraction of 64 of the texts; the two trees alternate which goes first in each
repeat; medians over repeats.
The earlier commit is checked out with `git worktree` into a temporary folder and
imported through PYTHONPATH, so both run on the same installed dependencies.

    python benchmarks/speed_vs_commit.py a4e26e9                      # SST-2 6,000 phrases, IMDB 600 reviews
    python benchmarks/speed_vs_commit.py a4e26e9 --repeats 5 --sst2-rows 8000
Writes benchmarks/results/bench_extract/vs-<commit>.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def worker(texts_file: str, scratch: str, max_length: int) -> dict:
    import featx

    texts = json.loads(Path(texts_file).read_text())
    source = Path(scratch) / "texts.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    backbone = featx.load_backbone("all-MiniLM-L6-v2", device="cpu")
    options = dict(model=backbone, max_length=max_length, text_column="text", overwrite=True, progress=False)
    warm = Path(scratch) / "warm.jsonl"
    warm.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:64]))
    featx.extract(warm, Path(scratch) / "warm.h5", **options).close()
    t0 = time.perf_counter()
    store = featx.extract(source, Path(scratch) / "store.h5", **options)
    seconds = time.perf_counter() - t0
    with store:
        dtype = store.config.dtype
    return {"seconds": seconds, "rows": len(texts), "dtype": dtype, "featx": featx.__file__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("commit", nargs="?")
    parser.add_argument("--sst2-rows", type=int, default=6000)
    parser.add_argument("--imdb-rows", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--data", default=os.environ.get("FEATX_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--out", default=str(HERE / "results" / "bench_extract"))
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], int(args.worker[2]))))
        return
    sys.path.insert(0, str(HERE))
    import torch
    from bench_extract import load_texts  # the same texts as bench_extract.py

    from featx.bench.runner import git_commit
    from featx.hardware import describe_hardware

    started = time.time()
    scratch = Path(tempfile.mkdtemp(prefix="featx-vs-"))
    old_tree = scratch / "old"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old_tree), args.commit], check=True,
                   capture_output=True)
    trees = {"this checkout": REPO, args.commit: old_tree}
    runs: dict[tuple[str, str], list[float]] = {}
    dtypes: set[str] = set()
    try:
        for workload, rows in (("sst2", args.sst2_rows), ("imdb", args.imdb_rows)):
            texts_file = scratch / f"{workload}.json"
            texts_file.write_text(json.dumps(load_texts(workload, rows, Path(args.data))))
            for repeat in range(args.repeats):
                order = list(trees.items()) if repeat % 2 == 0 else list(trees.items())[::-1]
                for name, tree in order:
                    work = Path(tempfile.mkdtemp(dir=scratch))
                    result = subprocess.run(
                        [sys.executable, __file__, "--worker", str(texts_file), str(work), "256"], check=True,
                        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)})
                    record = json.loads(result.stdout.strip().splitlines()[-1])
                    assert record["featx"].startswith(str(tree)), record["featx"]
                    runs.setdefault((workload, name), []).append(record["seconds"])
                    dtypes.add(record["dtype"])
                    print(f"{workload} {name} repeat {repeat}: {record['rows'] / record['seconds']:.1f} rows/s "
                          f"({record['dtype']})", flush=True)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old_tree)], check=False)
    table = []
    for workload, rows in (("sst2", args.sst2_rows), ("imdb", args.imdb_rows)):
        new, old = (statistics.median(runs[(workload, n)]) for n in trees)
        table.append({"workload": workload, "rows": rows, "this_rows_per_s": round(rows / new, 1),
                      "old_rows_per_s": round(rows / old, 1), "speed_ratio": round(old / new, 3),
                      "this_seconds": [round(s, 2) for s in runs[(workload, "this checkout")]],
                      "old_seconds": [round(s, 2) for s in runs[(workload, args.commit)]]})
    report = {"command": f"python benchmarks/speed_vs_commit.py {args.commit} --sst2-rows {args.sst2_rows} "
                         f"--imdb-rows {args.imdb_rows} --repeats {args.repeats}",
              "this_commit": git_commit(), "against": args.commit, "max_length": 256,
              "dtype": f"auto, resolved to {', '.join(sorted(dtypes))}",
              "seeds": "none (deterministic inputs: every k-th row of each file, as bench_extract.py)",
              "hardware": describe_hardware(torch.device("cpu")), "load_average_at_start": os.getloadavg(),
              "wall_seconds": round(time.time() - started, 1), "rows": table}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"vs-{args.commit}.json").write_text(json.dumps(report, indent=2) + "\n")
    for row in table:
        print(f"{row['workload']}: this {row['this_rows_per_s']} rows/s, {args.commit} {row['old_rows_per_s']} rows/s,"
              f" ratio {row['speed_ratio']}")


if __name__ == "__main__":
    main()
