"""The extraction levers of issue 5, measured side by side in one process.

Every variant embeds the same texts with featx's CPU runner (texts tokenized
beforehand), variants interleaved, medians over repeats. Min cosine is against fp32
vectors of the same texts. One workload per run:

    python benchmarks/extract_levers.py sst2            # 1 in 20 SST-2 train phrases (3,368)
    python benchmarks/extract_levers.py imdb            # 1 in 125 IMDB train reviews (200), 256 tokens
    python benchmarks/extract_levers.py sst2 --compile  # adds torch.compile (about 40 s to compile)
    python benchmarks/extract_levers.py sst2 --openvino # the OpenVINO backend's layouts and budgets instead
Writes benchmarks/results/bench_extract/levers-<workload>.json (levers-openvino-<workload>.json)
and prints a table.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import gzip
import itertools
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from bench_extract import min_cosine  # this folder is on sys.path when run as a script

import featx
import featx.extraction.runners as runners
import featx.hardware as hardware
from featx.featurizers import TextFeaturizer, tokenize
from featx.hardware import describe_hardware

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def workers(n: int):
    saved = hardware.MAX_CPU_WORKERS
    hardware.MAX_CPU_WORKERS = n
    try:
        yield
    finally:
        hardware.MAX_CPU_WORKERS = saved


def load_texts(workload: str, data: Path) -> list[str]:
    if workload == "imdb":
        with gzip.open(data / "imdb" / "train.jsonl.gz", "rt", encoding="utf-8") as f:
            return [json.loads(line)["text"] for line in itertools.islice(f, 0, 25000, 125)]
    source = featx.open_input("sst2:train")
    return [r.text for r in source.records(source.scan())][::20]


def matmul_peak(dtype: torch.dtype, rows: int = 4096, repeats: int = 50) -> float:
    """GFLOP/s of MiniLM's largest linear (384 -> 1536) on `rows` tokens: the ceiling for its GEMMs."""
    x, w, b = torch.randn(rows, 384, dtype=dtype), torch.randn(1536, 384, dtype=dtype), torch.randn(1536, dtype=dtype)
    for _ in range(5):
        torch.nn.functional.linear(x, w, b)
    t0 = time.perf_counter()
    for _ in range(repeats):
        torch.nn.functional.linear(x, w, b)
    return 2 * rows * 384 * 1536 * repeats / (time.perf_counter() - t0) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=("sst2", "imdb"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile(dynamic=True)")
    parser.add_argument("--openvino", action="store_true",
                        help="measure the OpenVINO backend's worker layouts and batch budgets (beside torch's default)")
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(HERE / "results" / "bench_extract"))
    args = parser.parse_args()
    started = time.time()

    backbone = featx.load_backbone("all-MiniLM-L6-v2", device="cpu")
    texts = load_texts(args.workload, Path(args.data))
    token_ids = tokenize(backbone.tokenizer, texts, 256)
    fp32 = featx.make_config(backbone, pooling="mean", max_length=256, dtype="fp32", backend="torch")
    bf16 = featx.make_config(backbone, pooling="mean", max_length=256, dtype="bf16", backend="torch")
    with workers(1):
        reference = runners.CpuRunner(2048).run(TextFeaturizer(backbone, fp32), token_ids)["mean"]
    autocast_model = backbone.model
    cast_model = copy.deepcopy(autocast_model).to(torch.bfloat16)
    eager_model = copy.deepcopy(autocast_model)
    eager_model.set_attn_implementation("eager")
    # name: (model, config, batch tokens, workers, compute dtype as reported)
    variants = {
        "fp32, 1 worker x 2 threads, 2048 tokens": (autocast_model, fp32, 2048, 1, "fp32"),
        "fp32, 2 workers x 1 thread, 2048 tokens": (autocast_model, fp32, 2048, 2, "fp32"),
        "bf16 autocast, 1 worker x 2 threads, 8192 tokens (old default)": (autocast_model, bf16, 8192, 1, "bf16"),
        "bf16 autocast, 1 worker x 2 threads, 2048 tokens": (autocast_model, bf16, 2048, 1, "bf16"),
        "bf16 autocast, 2 workers x 1 thread, 4096 tokens": (autocast_model, bf16, 4096, 2, "bf16"),
        "bf16 autocast, 2 workers x 1 thread, 2048 tokens (default)": (autocast_model, bf16, 2048, 2, "bf16"),
        "bf16 autocast, 2 workers x 1 thread, 1024 tokens": (autocast_model, bf16, 1024, 2, "bf16"),
        "bf16 autocast, eager attention, 2 workers, 2048 tokens": (eager_model, bf16, 2048, 2, "bf16"),
        "bf16-cast model (no autocast), 2 workers, 2048 tokens": (cast_model, fp32, 2048, 2, "bf16 weights"),
    }
    if args.openvino:  # torch's default for reference, then OpenVINO: streams = workers, one thread each
        import dataclasses

        ov_bf16, ov_fp32 = (dataclasses.replace(c, backend="openvino") for c in (bf16, fp32))
        variants = {
            "fp32, 2 workers x 1 thread, 2048 tokens": variants["fp32, 2 workers x 1 thread, 2048 tokens"],
            "bf16 autocast, 1 worker x 2 threads, 8192 tokens (old default)":
                variants["bf16 autocast, 1 worker x 2 threads, 8192 tokens (old default)"],
            "torch bf16 autocast, 2 workers x 1 thread, 2048 tokens": (autocast_model, bf16, 2048, 2, "bf16"),
            "openvino bf16, 2 workers x 1 stream, 2048 tokens": (autocast_model, ov_bf16, 2048, 2, "bf16"),
            "openvino bf16, 1 worker, 1 stream x 2 threads, 2048 tokens": (autocast_model, ov_bf16, 2048, 1, "bf16"),
            "openvino bf16, 2 workers x 1 stream, 1024 tokens (default)": (autocast_model, ov_bf16, 1024, 2, "bf16"),
            "openvino bf16, 2 workers x 1 stream, 4096 tokens": (autocast_model, ov_bf16, 4096, 2, "bf16"),
            "openvino fp32, 2 workers x 1 stream, 2048 tokens": (autocast_model, ov_fp32, 2048, 2, "fp32"),
        }
    int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(autocast_model), {torch.nn.Linear}, dtype=torch.qint8)
    if not args.openvino:
        variants["int8 dynamic quantization of the linears (torch.ao), 2 workers, 2048 tokens"] = (
            int8, fp32, 2048, 2, "int8 linears")
    if args.compile:
        compiled = torch.compile(copy.deepcopy(autocast_model), dynamic=True)
        variants["bf16 autocast, torch.compile(dynamic=True), 2 workers, 2048 tokens"] = (
            compiled, bf16, 2048, 2, "bf16")
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    cosines = {}
    for repeat in range(args.repeats + 1):  # round 0 warms every variant up (and compiles)
        for name, (model, config, budget, n_workers, _) in variants.items():
            backbone.model = model
            with workers(n_workers):
                t0 = time.perf_counter()
                vectors = runners.CpuRunner(budget).run(TextFeaturizer(backbone, config), token_ids)["mean"]
                elapsed = time.perf_counter() - t0
            if repeat == 0:
                cosines[name] = min_cosine(vectors, reference)
                print(f"warm-up {name}: {elapsed:.1f} s", flush=True)
            else:
                seconds[name].append(elapsed)
    backbone.model = autocast_model
    rows = [{"variant": name, "dtype": variants[name][4], "rows_per_s": round(len(texts) / statistics.median(s), 1),
             "all_seconds": [round(x, 3) for x in s], "min_cosine_vs_fp32": round(cosines[name], 6)}
            for name, s in seconds.items()]
    baseline = next(row["rows_per_s"] for row in rows if row["variant"].endswith("(old default)"))
    for row in rows:
        row["vs_old_default"] = round(row["rows_per_s"] / baseline, 2)
    report = {"workload": args.workload, "rows": len(texts),
              "mean_tokens": round(float(np.mean([len(t) for t in token_ids])), 1),
              "command": f"python benchmarks/extract_levers.py {args.workload}" + (" --compile" if args.compile else "")
              + (" --openvino" if args.openvino else ""),
              "repeats": args.repeats, "hardware": describe_hardware(torch.device("cpu")), "torch": torch.__version__,
              "matmul_peak_gflops": {"fp32": round(matmul_peak(torch.float32), 1),
                                     "bf16": round(matmul_peak(torch.bfloat16), 1)},
              "seeds": "none: fixed inputs (every k-th row of the file), no random draws",
              "wall_seconds": round(time.time() - started, 1), "variants": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"levers-openvino-{args.workload}.json" if args.openvino else f"levers-{args.workload}.json"
    (out / name).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{args.workload}: {len(texts)} rows, {report['mean_tokens']} tokens on average")
    print(f"matmul ceiling (4096 x 384 -> 1536): {report['matmul_peak_gflops']} GFLOP/s")
    print("| variant | rows/s | vs old default | min cos vs fp32 |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['variant']} | {row['rows_per_s']} | {row['vs_old_default']} | {row['min_cosine_vs_fp32']} |")


if __name__ == "__main__":
    main()
