"""Per-head cost of training the top blocks from cached token states, against fine-tuning them live.

Both methods train MiniLM's top two blocks, its mean pooling and a linear classifier with the
same recipe (featx.finetune.recipe: lr 1e-4, batch 16, one epoch, fused AdamW, warm-up then decay,
clipping, bf16 autocast where the CPU has it) on the same SST-2 phrases:
  finetune   `featx.finetune` with train_layers=2: every step runs the embeddings and all six
             blocks forward (the lower four without gradients), then the top two backward
  cached     the `blocks` head on a store made once with --cache-layer -2: every step runs the
             top two blocks only
Runs alternate (finetune, cached, finetune, ...), each in a fresh process; the figure is each
method's training seconds for the epoch (not loading or tokenizing), per step, the median over
the repeats, and the ratio of the medians. The one-time extraction of the states is reported
apart. Every result records the CPU model, its speed flags and the versions.

    python benchmarks/bench_blocks.py                      # 8,000 phrases, 3 repeats
    python benchmarks/bench_blocks.py --rows 16000 --repeats 5
Results: benchmarks/results/bench_blocks/<cpu kind>.json and .md.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RECIPE = {"lr": 1e-4, "epochs": 1, "batch_size": 16}


def write_subset(rows: int, folder: Path) -> Path:
    """Every k-th SST-2 training phrase (both labels, all lengths), as a TSV both methods read."""
    from featx.data import open_input

    source = open_input("sst2:train")
    records = list(source.records(source.scan()))
    step = max(1, len(records) // rows)
    classes = source.scan().classes or ()
    lines = ["sentence\tlabel"] + [f"{r.text}\t{classes[r.label]}" for r in records[::step][:rows]]
    path = folder / "train.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_finetune(train: str, out: str) -> dict[str, Any]:
    from featx.data import open_input
    from featx.finetune import finetune
    from featx.finetune.recipe import FinetuneConfig

    record = finetune(open_input(train, text_column="sentence"), out, progress=False,
                      config=FinetuneConfig(train_layers=2, **RECIPE))
    epoch = record["epochs"][0]
    return {"train_seconds": epoch["train_seconds"], "steps": epoch["steps"], "dtype": record["dtype"]}


def run_cached(store: str, _: str) -> dict[str, Any]:
    from featx.store import open_store
    from featx.train import HeadSpec, train_heads

    spec = HeadSpec("blocks", {"k": 2, **RECIPE})
    with open_store(store) as train:
        (head,), _rows = train_heads(train, [spec], val_fraction=0.01)
    epoch = head.estimator.history_[0]
    return {"train_seconds": epoch["train_seconds"], "steps": epoch["steps"], "dtype": head.estimator.dtype_}


def in_child(fn: Any, *args: str) -> dict[str, Any]:
    """`fn(*args)` in a fresh process, let to exit on its own (no leaked-semaphore warnings)."""
    pool = multiprocessing.get_context("spawn").Pool(1)
    try:
        result: dict[str, Any] = pool.apply(fn, args)
        pool.close()
        pool.join()
        return result
    finally:
        pool.terminate()


def extract_states(train: str, store: str) -> dict[str, Any]:
    from featx.data import open_input
    from featx.extraction.engine import extract

    t0 = time.perf_counter()
    with extract(open_input(train, text_column="sentence"), store, cache_layer=-2, progress=False) as done:
        states = done.info()["states"]
    return {"seconds": round(time.perf_counter() - t0, 2), "states": states}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_blocks")
    args = parser.parse_args()

    import torch
    import transformers

    import featx
    from featx.hardware import describe_hardware

    hardware = describe_hardware(torch.device("cpu"))
    kind = "amx" if "amx_bf16" in hardware["cpu_flags"] else "avx512bf16" if "avx512_bf16" in hardware["cpu_flags"] \
        else "avx2"
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        train = write_subset(args.rows, folder)
        once = in_child(extract_states, str(train), str(folder / "states.h5"))
        runs: dict[str, list[dict[str, Any]]] = {"finetune": [], "cached": []}
        for repeat in range(args.repeats):
            for method, fn, source in (("finetune", run_finetune, train), ("cached", run_cached, folder / "states.h5")):
                result = in_child(fn, str(source), str(folder / f"ft-{repeat}"))
                runs[method].append(result)
                print(f"repeat {repeat} {method}: {result['train_seconds']:.1f} s for {result['steps']} steps",
                      flush=True)
    per_step = {m: statistics.median(r["train_seconds"] / r["steps"] for r in found) for m, found in runs.items()}
    report = {"command": f"python benchmarks/bench_blocks.py --rows {args.rows} --repeats {args.repeats}",
              "rows": args.rows, "repeats": args.repeats, "recipe": {**RECIPE, "trained_blocks": 2},
              "model": "all-MiniLM-L6-v2", "cache_layer": 4, "runs": runs,
              "median_ms_per_step": {m: round(1000 * v, 2) for m, v in per_step.items()},
              "cached_over_finetune": round(per_step["cached"] / per_step["finetune"], 3),
              "states_extraction": once, "hardware": hardware, "dtype": runs["cached"][0]["dtype"],
              "versions": {"featx": featx.__version__, "torch": torch.__version__,
                           "transformers": transformers.__version__, "python": platform.python_version()},
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{kind}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Top two blocks: cached token states against a live fine-tune ({kind})", "",
             f"Reproduce: `{report['command']}`  ",
             f"Hardware: {hardware['cpu']} ({', '.join(hardware['cpu_flags'])}), {hardware['torch_threads']} torch "
             f"threads; torch {torch.__version__}, dtype {report['dtype']}; {args.rows:,} SST-2 phrases, one epoch, "
             f"median of {args.repeats} interleaved runs.", "",
             "| method | ms per step (median) | runs (s) |", "|---|---|---|"]
    for method, found in runs.items():
        seconds = ", ".join(f"{r['train_seconds']:.1f}" for r in found)
        lines.append(f"| {method} | {report['median_ms_per_step'][method]} | {seconds} |")
    lines += ["", f"cached / finetune: **{report['cached_over_finetune']}** per step; the states were extracted once "
                  f"in {once['seconds']} s ({once['states']['bytes'] / 1e6:.0f} MB float16)."]
    (args.out / f"{kind}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
