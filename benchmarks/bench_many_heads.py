"""Heads a minute (issue 34): `featx train --grid` of --heads logreg specs on a cached train store,
against the same heads fitted one at a time, side by side.

For each suite (its MiniLM train store as benchmarks/suites/<suite>_minilm_cpu.toml extracts it,
into --work, once; featx.bench.rows), with featx train's own validation (a tenth of train carved
off, seed 0) and --pooling mean --jobs 2:

- batched: a grid of --heads specs logreg:C=c, C log-spaced from 1e-4 to 1e3 (the grid issue 34
  measured at 308 s), trained, scored on validation and saved by `featx train`: wall, heads a
  minute, peak RSS of the process.
- one at a time: every tenth of those Cs, each spec also given its own max_iter (1000, 1001, ...;
  never reached: the fits stop at the tolerance long before) so that no two heads share a batch
  and each is fitted alone, as featx train did before batching; the same command otherwise. Its
  heads a minute is what 1,000 such heads would take at that rate.

The two runs alternate, --repeats times; the table gives medians. Each repeat also compares the
one-at-a-time heads with the batched heads at the same C: the largest gap in validation accuracy
and the share of validation rows whose prediction differs.

    python benchmarks/bench_many_heads.py --suites imdb,sst2 --repeats 3 --work /tmp/featx-compact

writes benchmarks/results/many_heads/results.{json,md}.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compact_accuracy import machine_report, run_line, stores, suite_parser, write_report  # the five suites' MiniLM stores


def grid(heads: int) -> list[float]:
    return [float(f"{c:.6g}") for c in np.logspace(-4, 3, heads)]


def run_train(store: Path, specs: list[str], out: Path) -> dict[str, Any]:
    """`featx train` of `specs` on `store`: wall seconds and peak RSS (MB) of the process."""
    out.mkdir(parents=True, exist_ok=True)
    grid_file = out / "grid.json"
    grid_file.write_text(json.dumps(specs))
    command = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "featx", "train", str(store), "-o",
               str(out / "run"), "--grid", str(grid_file), "--pooling", "mean", "--jobs", "2"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"featx train failed: {done.stderr[-2000:]}")
    rows = json.loads((out / "run" / "results.json").read_text())["rows"]
    return {"wall_s": wall, "peak_rss_mb": int(done.stderr.strip().splitlines()[-1]) / 1024,
            "val": {row["chosen"].split(" ")[0]: row["val_accuracy"] for row in rows}, "folder": out / "run"}


def prediction_gap(batched: Path, alone: Path, store: Path) -> float:
    """Share of the store's first 5,000 rows whose predicted class differs between heads at the same C."""
    from featx.heads import TrainedHead
    from featx.store import open_store

    X = open_store(store).features("mean")[:5000]
    differ = []
    for folder in sorted((alone / "heads").iterdir()):
        C = folder.name.split("-C")[1].split("-")[0]
        twin = batched / "heads" / f"logreg-C{C}-mean"
        differ.append(np.mean(TrainedHead.load(folder).estimator.predict(X) != TrainedHead.load(twin).estimator.predict(X)))
    return float(max(differ))


def run_suite(name: str, store: Path, heads: int, repeats: int, scratch: Path) -> dict[str, Any]:
    Cs = grid(heads)
    batched_specs = [f"logreg:C={c:g}" for c in Cs]
    alone_specs = [f"logreg:C={c:g},max_iter={1000 + i}" for i, c in enumerate(Cs[::10])]
    runs: dict[str, list[dict[str, Any]]] = {"batched": [], "alone": []}
    gaps = []
    for repeat in range(repeats):
        for method, specs in (("batched", batched_specs), ("alone", alone_specs)):
            result = run_train(store, specs, scratch / f"{name}-{method}-{repeat}")
            result["heads_per_minute"] = 60 * len(specs) / result["wall_s"]
            runs[method].append(result)
            print(f"{name} {method} #{repeat}: {len(specs)} heads in {result['wall_s']:.1f} s "
                  f"({result['heads_per_minute']:.0f} a minute), peak {result['peak_rss_mb']:.0f} MB", flush=True)
        batched, alone = runs["batched"][-1], runs["alone"][-1]
        accuracy_gap = max(abs(alone["val"][key] - batched["val"][key]) for key in alone["val"])
        gaps.append({"val_accuracy": accuracy_gap,
                     "predictions": prediction_gap(batched["folder"], alone["folder"], store)})
    return {
        "suite": name, "store": str(store), "heads": {"batched": len(batched_specs), "alone": len(alone_specs)},
        "median": {method: {key: statistics.median(r[key] for r in results)
                            for key in ("wall_s", "heads_per_minute", "peak_rss_mb")}
                   for method, results in runs.items()},
        "runs": {method: [{k: v for k, v in r.items() if k in ("wall_s", "heads_per_minute", "peak_rss_mb")}
                          for r in results] for method, results in runs.items()},
        "largest_gap": {key: max(g[key] for g in gaps) for key in ("val_accuracy", "predictions")},
    }


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Heads a minute: `featx train --grid` of logreg Cs, batched against one at a time\n",
             run_line(report, f"{report['repeats']} repeats, medians"),
             "| suite | train rows | batched: heads | wall s | heads/min | peak MB | one at a time: heads | wall s | "
             "heads/min | peak MB | speed-up | largest val-accuracy gap | largest share of predictions differing |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["suites"]:
        b, a = row["median"]["batched"], row["median"]["alone"]
        lines.append(f"| {row['suite']} | {row['rows']:,} | {row['heads']['batched']} | {b['wall_s']:.1f} | "
                     f"{b['heads_per_minute']:.0f} | {b['peak_rss_mb']:.0f} | {row['heads']['alone']} | "
                     f"{a['wall_s']:.1f} | {a['heads_per_minute']:.0f} | {a['peak_rss_mb']:.0f} | "
                     f"{b['heads_per_minute'] / a['heads_per_minute']:.1f}x | {row['largest_gap']['val_accuracy']:.4f} | "
                     f"{row['largest_gap']['predictions']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = suite_parser(__doc__, "many_heads", suites="imdb,sst2")
    parser.add_argument("--heads", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from featx.store import open_store

    load, started = os.getloadavg(), time.perf_counter()
    suites = []
    for name in args.suites.split(","):
        train = stores(name, args.work, args.data)["train"]
        row = run_suite(name, train, args.heads, args.repeats, args.work / "many_heads")
        row["rows"] = len(open_store(train))
        suites.append(row)
    report = machine_report("bench_many_heads.py", load, started, repeats=args.repeats, suites=suites,
                            dtype="float32 store, float32 products, float64 solver state")
    write_report(args.out, report, markdown)


if __name__ == "__main__":
    main()
