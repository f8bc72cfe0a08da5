"""Two checks on `featx extract` with its defaults that a throughput table does not show.

  rss       peak RSS of `featx extract` on N and 10 x N rows (SST-2 train phrases,
            repeated to reach 10 x N): memory must stay flat in the input size.
  accuracy  SST-2 dev accuracy of a logistic-regression head trained on SST-2 train
            features extracted with the default dtype (bf16 where the CPU has it) and
            with fp32: the fast default must not cost accuracy.

  resume    `featx extract INPUT` killed with SIGKILL once --kill-after rows are committed,
            then the same command rerun to the end: every dataset must equal the store of
            an uninterrupted run (--reference) bit for bit.

    python benchmarks/extract_checks.py rss --rows 20000          # 20,000 vs 200,000 rows
    python benchmarks/extract_checks.py accuracy
    python benchmarks/extract_checks.py resume --input ../shared/data/cifar10/cifar10-jpg.zip:test \
        --reference benchmarks/results/cifar10_effnetlite0_cpu/stores/test.h5 --kill-after 4096 \
        --out benchmarks/results/cifar10_effnetlite0_cpu
Each extraction runs as its own `featx extract` process; results go to
benchmarks/results/bench_extract/{rss,accuracy}.json and are printed.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from featx import open_store

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "bench_extract"


def run_extract(args: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes) of one `featx extract` process."""
    t0 = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "featx", "extract", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"featx extract {' '.join(args)} failed:\n{process.stderr.read().decode()}")
    return wall, usage.ru_maxrss * 1024  # Linux reports kilobytes


def sst2_train_lines() -> list[str]:
    from featx.data.bundled import resolve_bundled

    with gzip.open(resolve_bundled("sst2:train").path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def check_rss(args, scratch: Path) -> dict:
    header, *rows = sst2_train_lines()
    results = []
    for n in (args.rows, 10 * args.rows):
        source = scratch / f"sst2-{n}.tsv"
        repeated = (rows * (n // len(rows) + 1))[:n]
        source.write_text("\n".join([header, *repeated]) + "\n")
        wall, rss = run_extract([str(source), "-o", str(scratch / f"sst2-{n}.h5"), "--text-column", "sentence",
                                 "--label-column", "label"])
        results.append({"rows": n, "peak_rss_mb": round(rss / 2**20, 1), "wall_seconds": round(wall, 1),
                        "rows_per_s": round(n / wall, 1)})
        print(f"{n:,} rows: peak RSS {rss / 2**20:.0f} MB, {wall:.1f} s", flush=True)
    ratio = results[1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
    with open_store(scratch / f"sst2-{args.rows}.h5") as store:
        dtype = store.config.dtype
    return {"check": "peak RSS flat in N (target: 10 x N rows within 1.2 x the RSS of N rows)",
            "command": f"python benchmarks/extract_checks.py rss --rows {args.rows}",
            "extract_flags": "defaults (--dtype auto, default batch tokens and window rows), pooling mean",
            "dtype": dtype, "seeds": "none: fixed inputs, no random draws",
            "runs": results, "rss_ratio": round(ratio, 3), "target_met": ratio <= 1.2}


def check_accuracy(args, scratch: Path) -> dict:
    from featx.train import HeadSpec, train_heads

    results = []
    for dtype in ("auto", "fp32"):
        stores = {}
        for split in ("train", "dev"):
            path = scratch / f"{split}-{dtype}.h5"
            wall, _ = run_extract([f"sst2:{split}", "-o", str(path), "--dtype", dtype])
            stores[split] = open_store(path)
            print(f"sst2:{split} --dtype {dtype}: {wall:.1f} s", flush=True)
        _, rows = train_heads(stores["train"], [HeadSpec("logreg", {})], ["mean"], test=stores["dev"],
                              seed=args.seed)
        resolved = stores["train"].config.dtype
        for store in stores.values():
            store.close()
        row = rows[0]
        results.append({"dtype": dtype, "resolved_dtype": resolved,
                        "dev_accuracy": row["test_accuracy"], "dev_macro_f1": row["test_macro_f1"],
                        "chosen": row["chosen"]})
        print(f"--dtype {dtype} ({resolved}): SST-2 dev accuracy {row['test_accuracy']:.4f}",
              flush=True)
    gap = abs(results[0]["dev_accuracy"] - results[1]["dev_accuracy"]) * 100
    return {"check": "SST-2 dev accuracy of logistic regression (C swept on a seeded 10 % holdout of train), "
                     "default dtype vs fp32 features (target: within 0.3 point)",
            "command": f"python benchmarks/extract_checks.py accuracy --seed {args.seed}", "seed": args.seed,
            "runs": results, "gap_points": round(gap, 2), "target_met": gap <= 0.3}


def check_resume(args, scratch: Path) -> dict:
    import signal

    import h5py
    import numpy as np

    out = scratch / "resumed.h5"
    command = [sys.executable, "-m", "featx", "extract", args.input, "-o", str(out), "-q"]
    t0 = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    committed = 0
    while process.poll() is None and committed < args.kill_after:
        time.sleep(0.5)
        if out.exists():
            with h5py.File(out, "r", locking=False) as f:
                committed = int(f.attrs.get("n_done", 0))
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = time.perf_counter() - t0
    with h5py.File(out, "r", locking=False) as f:
        at_kill = int(f.attrs["n_done"]), bool(f.attrs["complete"])
    print(f"killed after {killed_at:.0f} s with {at_kill[0]:,} rows committed", flush=True)
    wall, _ = run_extract([args.input, "-o", str(out)])
    compared = {}
    with h5py.File(out, "r") as resumed, h5py.File(args.reference, "r") as reference:
        names = sorted(n for n in ("ids", "content_sha256", "labels", "truncated", "skipped") if n in reference)
        names += [f"features/{p}" for p in reference["features"]]
        for name in names:
            compared[name] = bool(np.array_equal(resumed[name][:], reference[name][:]))
        same_attrs = {k: str(resumed.attrs[k]) == str(reference.attrs[k])
                      for k in ("fingerprint", "input_sha256", "n_rows", "complete")}
        rows = int(resumed.attrs["n_rows"])
    return {"check": "SIGKILL during featx extract, rerun: equal to an uninterrupted run (bit for bit)",
            "command": f"python benchmarks/extract_checks.py resume --input {args.input} --reference {args.reference} "
                       f"--kill-after {args.kill_after} --out {args.out}",
            "rows": rows, "killed_after_seconds": round(killed_at, 1), "rows_committed_at_kill": at_kill[0],
            "complete_at_kill": at_kill[1], "resume_wall_seconds": round(wall, 1), "datasets_equal": compared,
            "attributes_equal": same_attrs, "seeds": "none: fixed inputs",
            "target_met": all(compared.values()) and all(same_attrs.values()) and not at_kill[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("check", choices=("rss", "accuracy", "resume"))
    parser.add_argument("--input", help="resume: the input to extract")
    parser.add_argument("--reference", help="resume: the store of an uninterrupted run with the same settings")
    parser.add_argument("--kill-after", type=int, default=4096, help="resume: kill once this many rows are committed")
    parser.add_argument("--rows", type=int, default=20000, help="rss: the smaller input; the larger is 10x")
    parser.add_argument("--seed", type=int, default=0, help="accuracy: seed of the holdout and the head")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    import torch

    from featx.bench.runner import git_commit
    from featx.hardware import describe_hardware

    started = time.time()
    with tempfile.TemporaryDirectory(prefix="featx-checks-") as scratch:
        checks = {"rss": check_rss, "accuracy": check_accuracy, "resume": check_resume}
        report = checks[args.check](args, Path(scratch))
    report.update(hardware=describe_hardware(torch.device("cpu")), torch=torch.__version__,
                  git_commit=git_commit(), wall_seconds=round(time.time() - started, 1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.check}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("check", "target_met")}))


if __name__ == "__main__":
    main()
