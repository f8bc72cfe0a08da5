"""Heads that stream (issue 33): two checks of `featx train --memory-budget`.

  memory  `featx train STORE --head logreg --head ridge --head mlp` on stores of N rows each (384-d float16
          vectors written by `featx extract` itself with a random 1-layer 384-d BERT over short synthetic
          texts, made here unless already in --work), at each --memory-budget given: the run's peak
          resident memory (VmHWM, results.json) and wall time. Over the budget the heads read the store a
          block at a time, so the peak follows the budget, not the rows.
  imdb    logreg and ridge on IMDB sentiment (all-MiniLM-L6-v2 mean vectors: train 22,500, dev 2,500,
          test 25,000, the stores benchmarks/tasks_table.py imdb writes), loaded (the default budget)
          and streamed (--memory-budget 16M): chosen C / alpha and test accuracy must agree.

    python benchmarks/bench_streamed_heads.py memory --rows 100000 1000000 --budget 1G 256M --work /tmp/streamed
    python benchmarks/tasks_table.py imdb --work /tmp/featx-tasks      # once, for the IMDB stores
    python benchmarks/bench_streamed_heads.py imdb --stores /tmp/featx-tasks/imdb

Each `featx train` runs as its own process, one after another; seed 0. Results go to
benchmarks/results/streamed_heads/{memory,imdb}.{json,md}, with the CPU and the commit.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "streamed_heads"
WORDS = ["good", "bad", "film", "plot", "dull", "fine", "great", "awful", "cast", "scene"]
LABELS = ["neg", "mid", "pos"]


def train(store: Path, out: Path, heads: list[str], budget: str | None, *extra: str) -> dict[str, Any]:
    """One `featx train` process: its wall time, results.json's peak memory and rows."""
    command = [sys.executable, "-m", "featx", "train", str(store), "-o", str(out),
               *[arg for head in heads for arg in ("--head", head)], *(["--memory-budget", budget] if budget else []),
               *extra]
    t0 = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{run.stderr}")
    results = json.loads((out / "results.json").read_text())
    return {"budget": budget or "1G (default)", "wall_s": round(time.perf_counter() - t0, 1),
            "peak_memory_mb": results["peak_memory_mb"]["process"],
            "heads": [{k: row.get(k) for k in ("head", "chosen", "val_accuracy", "test_accuracy", "fit_seconds")}
                      for row in results["rows"]]}


def wide_model(folder: Path) -> Path:
    """A random 1-layer BERT as wide as MiniLM (384), with MiniLM's tokenizer (seed 0)."""
    from featx.bench.models import random_bert

    return random_bert(folder, hidden=384, layers=1, heads=6, intermediate=384, max_positions=64)


def synthetic_store(work: Path, rows: int, model: Path) -> Path:
    """`featx extract` over `rows` six-word texts (seed 0), stored float16, mean pooling."""
    store = work / f"s{rows}.h5"
    if store.exists():
        return store
    picks = np.random.default_rng(0).choice(WORDS, (rows, 6))
    texts = work / f"texts{rows}.csv"
    with texts.open("w") as f:
        f.write("text,label\n")
        f.writelines(" ".join(p) + f" {LABELS[i % 3]},{LABELS[i % 3]}\n" for i, p in enumerate(picks))
    subprocess.run([sys.executable, "-m", "featx", "extract", str(texts), "-o", str(store), "--model", str(model),
                    "--store-dtype", "float16", "--pooling", "mean"], check=True, capture_output=True)
    return store


def memory(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = wide_model(work / "model")
    runs = []
    for rows in args.rows:
        store = synthetic_store(work, rows, model)
        for budget in args.budget:
            run = train(store, work / f"r{rows}-{budget}", ["logreg", "ridge", "mlp"], budget)
            runs.append({"rows": rows, **run})
            print(json.dumps(runs[-1]), flush=True)
    return {"check": "memory", "dtype": "float16 store, 384 dims; compute float64 (logreg, ridge), float32 (mlp)",
            "command": " ".join(sys.argv), "runs": runs}


def imdb(args: argparse.Namespace) -> dict[str, Any]:
    stores = Path(args.stores)
    paths = {split: stores / f"{split}-sentiment.h5" for split in ("train", "dev", "test")}
    if not all(path.exists() for path in paths.values()):
        raise SystemExit(f"no IMDB stores in {stores}: run python benchmarks/tasks_table.py imdb --work {stores.parent}")
    runs = [train(paths["train"], Path(args.work) / f"imdb-{budget or 'default'}", ["logreg", "ridge"], budget,
                  "--val", str(paths["dev"]), "--test", str(paths["test"])) for budget in (None, args.budget)]
    for run in runs:
        print(json.dumps(run), flush=True)
    return {"check": "imdb", "stores": {k: str(v) for k, v in paths.items()}, "command": " ".join(sys.argv),
            "dtype": "float32 store (all-MiniLM-L6-v2 mean, normalised)", "runs": runs}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# streamed heads: {result['check']}", "", f"`{result['command']}`", "",
             f"CPU: {result['cpu']}; commit {result['commit']}; {result['dtype']}; seed 0.", "",
             "| rows | budget | head | chosen | val acc | test acc | fit s | run peak MB | run wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run in result["runs"]:
        for head in run["heads"]:
            lines.append(f"| {run.get('rows', 22500):,} | {run['budget']} | {head['head']} | {head['chosen']} | "
                         f"{head['val_accuracy']} | {head['test_accuracy']} | {head['fit_seconds']} | "
                         f"{run['peak_memory_mb']} | {run['wall_s']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="check", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    m.add_argument("--budget", nargs="+", default=["1G", "256M"])
    m.add_argument("--work", default="/tmp/featx-streamed")
    i = sub.add_parser("imdb")
    i.add_argument("--stores", default="/tmp/featx-tasks/imdb")
    i.add_argument("--budget", default="16M")
    i.add_argument("--work", default="/tmp/featx-streamed")
    args = parser.parse_args()
    result = memory(args) if args.check == "memory" else imdb(args)
    result["cpu"] = _cpu()
    result["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                      cwd=HERE).stdout.strip()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.check}.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / f"{args.check}.md").write_text(markdown(result))
    print(markdown(result))


def _cpu() -> str:
    import torch

    from featx.hardware import describe_hardware

    hardware = describe_hardware(torch.device("cpu"))
    return f"{hardware.get('cpu')} ({platform.machine()}, flags {' '.join(map(str, hardware.get('cpu_flags', [])))})"


if __name__ == "__main__":
    main()
