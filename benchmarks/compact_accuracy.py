"""What compact vectors cost a head (issue 33): logreg, MLP and kNN on the five text suites' MiniLM
vectors stored as float32, float16, int8 (one symmetric scale a dimension, fixed from the first
window a store commits: its first 4,096 rows) and binary (signs, eight dimensions a byte), against
the bytes a row takes.

Each suite's train / val / test stores are extracted as its suite file says (benchmarks/suites/
<suite>_minilm_cpu.toml: model, dtype, pooling, max length, normalisation; featx.bench.rows), once,
into --work. The float32 vectors are then cast to each store dtype the way featx.store.quantize
does (int8 scales from train's first 4,096 rows, as a store's first window would fix them, and the
same scales for val and test), read back as heads read them (int8: code x scale; binary: -1 / +1),
and each head trains on train, selects on val (suites without one: a held-out tenth of train, seed
0) and reports test accuracy. Seed 0; heads with featx's defaults.

    python benchmarks/compact_accuracy.py --work /tmp/featx-compact          # all five suites
    python benchmarks/compact_accuracy.py --suites sst2,emotion --work /tmp/featx-compact

writes benchmarks/results/compact_stores/results.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SUITES = ("sst2", "imdb", "emotion", "agnews", "banking77")
DTYPES = ("float32", "float16", "int8", "binary")
HEADS = ("logreg", "mlp", "knn")
FIRST_WINDOW = 4096  # featx.modalities.text.DEFAULT_WINDOW_ROWS: the rows a text store commits first


def stores(suite_name: str, work: Path, data: Path) -> dict[str, Path]:
    """The suite's train / val / test stores, extracted unless they are in `work` already."""
    from featx.bench.rows import extract_row
    from featx.bench.suite import load_suite

    suite = load_suite(HERE / "suites" / f"{suite_name}_minilm_cpu.toml", data)
    folder = work / suite_name
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "val", "test"):
        if getattr(suite, split) is None:
            continue
        paths[split] = folder / f"{split}.h5"
        if not paths[split].exists():
            t0 = time.perf_counter()
            extract_row(suite, split, paths[split])
            print(f"{suite_name} {split}: extracted in {time.perf_counter() - t0:.0f} s", flush=True)
    return paths


def suite_parser(description: str, out: str, suites: str = ",".join(SUITES)) -> argparse.ArgumentParser:
    """The arguments every suite benchmark here takes: --suites, --work (where `stores` keeps the
    suites' stores, extracted once), --data (the shared data), --out (its results folder)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", default=suites)
    parser.add_argument("--work", type=Path, default=Path("/tmp/featx-compact"))
    data = os.environ.get("FEATX_DATA") or HERE.parent.parent / "shared" / "data"
    parser.add_argument("--data", type=Path, default=Path(data))
    parser.add_argument("--out", type=Path, default=HERE / "results" / out)
    return parser


def run_line(report: dict[str, Any], *extra: str) -> str:
    """The line under a results table's title: the machine, the `extra` facts, the load, the wall time, the command."""
    hardware = report["hardware"]
    facts = [f"{hardware['cpu_count']} vCPU {hardware['cpu']} ({', '.join(hardware['cpu_flags'])}), torch "
             f"{hardware['torch']}, {hardware['torch_threads']} threads", *extra,
             f"load before {report['load_before']}", f"total {report['wall_s']:.0f} s"]
    return "; ".join(facts) + f". `{report['command']}`\n"


def machine_report(script: str, load: tuple[float, float, float], started: float, **fields: Any) -> dict[str, Any]:
    """A report's common fields: the command that made it (`script` and this process's arguments), the
    machine, the software, seed 0, `fields`, the load average before it began and its wall seconds."""
    import torch

    from featx.hardware import describe_hardware

    return {"command": " ".join(["python", f"benchmarks/{script}", *sys.argv[1:]]),
            "hardware": describe_hardware(torch.device("cpu")), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "seed": 0, **fields,
            "load_before": [round(x, 2) for x in load], "wall_s": time.perf_counter() - started}


def write_report(out: Path, report: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> None:
    """results.json and results.md in `out`, and the table on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "results.md").write_text(markdown(report))
    print(markdown(report))


def as_stored(X: np.ndarray, dtype: str, scales: np.ndarray | None) -> np.ndarray:
    """Float32 vectors X as a store of `dtype` keeps them, read back as a head reads them."""
    from featx.store import quantize

    if dtype == "float32":
        return X
    if dtype == "float16":
        return X.astype(np.float16).astype(np.float32)
    if dtype == "int8":
        return quantize.from_int8(quantize.to_int8(X, scales), scales)
    return quantize.from_binary(quantize.to_binary(X), X.shape[1])


def run_suite(name: str, paths: dict[str, Path]) -> list[dict[str, Any]]:
    from featx.heads import make_head
    from featx.heads.split import stratified_split
    from featx.store import open_store, quantize

    loaded = {}
    for split, path in paths.items():
        with open_store(path) as store:
            X, y = store.load(store.poolings[0])
            loaded[split] = (np.asarray(X, dtype=np.float32), np.asarray(y))
    if "val" not in loaded:  # the suites' own rule without a val split: a held-out tenth of train
        X, y = loaded["train"]
        fit, held = stratified_split(y, 0.1, 0)
        loaded["train"], loaded["val"] = (X[fit], y[fit]), (X[held], y[held])
    scales = quantize.int8_scales(loaded["train"][0][:FIRST_WINDOW])
    rows = []
    for dtype in DTYPES:
        data = {split: (as_stored(X, dtype, scales), y) for split, (X, y) in loaded.items()}
        for kind in HEADS:
            t0 = time.perf_counter()
            head = make_head(kind, random_state=0).fit(*data["train"], *data["val"])
            accuracy = float(np.mean(head.predict(data["test"][0]) == data["test"][1]))
            rows.append({"suite": name, "store_dtype": dtype, "head": kind, "test_accuracy": round(accuracy, 5),
                         "chosen": head.describe_choice(), "bytes_per_row": quantize.bytes_per_row(dtype, X.shape[1]),
                         "fit_seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(report: dict[str, Any]) -> str:
    rows = report["rows"]
    lines = ["# Compact stores: test accuracy by store dtype", "", f"`{report['command']}`", "",
             f"CPU: {report['cpu']}; seed 0; vectors: each suite's MiniLM store (compute dtype as the suite says), "
             f"cast as featx.store.quantize does; {report['wall_seconds']} s.", "",
             "| suite | head | " + " | ".join(DTYPES) + " | int8 - float32 | binary - float32 |",
             "|---|---|" + "---|" * (len(DTYPES) + 2)]
    for suite in dict.fromkeys(r["suite"] for r in rows):
        for kind in HEADS:
            acc = {r["store_dtype"]: r["test_accuracy"] for r in rows if r["suite"] == suite and r["head"] == kind}
            costs = " | ".join(f"{100 * (acc[d] - acc['float32']):+.2f} pt" for d in ("int8", "binary"))
            lines.append(f"| {suite} | {kind} | " + " | ".join(f"{acc[d]:.4f}" for d in DTYPES) + f" | {costs} |")
    dim = 384
    lines += ["", "Bytes a row (384 dims): " + ", ".join(
        f"{d} {next(r['bytes_per_row'] for r in rows if r['store_dtype'] == d)}" for d in DTYPES) +
        f" (int8 adds {4 * dim} bytes of scales a store)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = suite_parser(__doc__, "compact_stores").parse_args()
    started, rows = time.time(), []
    for name in args.suites.split(","):
        rows += run_suite(name, stores(name, args.work, args.data))
    import torch

    from featx.hardware import describe_hardware

    hardware = describe_hardware(torch.device("cpu"))
    report = {"command": "python " + " ".join(sys.argv), "wall_seconds": round(time.time() - started),
              "cpu": f"{hardware['cpu']} ({platform.machine()}, {' '.join(hardware['cpu_flags'])})", "rows": rows}
    write_report(args.out, report, markdown)


if __name__ == "__main__":
    main()
