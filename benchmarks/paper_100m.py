"""100 million rows on paper: bytes and hours per stage, from the measured results in this folder.

Reads (each made by the command its own README section gives):
  results/bench_extract/results.json   featx's extraction rows/s on this CPU (SST-2 phrases, IMDB at 256)
  results/bench_host/results.json      featx's host rows/s per core with a zero-cost model, and the
                                       H100 rows/s projected from its FLOPs
  results/streamed_heads/memory.json   featx train's fit seconds a head on the largest synthetic store

and prints one Markdown table: every figure says whether it was measured (here, at the size shown)
or projected (a measured rate scaled to 100M rows, or FLOPs arithmetic).

    python benchmarks/paper_100m.py > /tmp/100m.md
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent / "results"
ROWS = 100_000_000
DIM = 384  # all-MiniLM-L6-v2
PER_ROW = 32 + 8  # a store row beside its vector: content sha256, label
HOST_CORES = 16  # the lent GPU machines' host (benchmarks/README: 16 vCPUs)


def load(name: str) -> dict:
    return json.loads((HERE / name).read_text())


def hours(rows_per_s: float) -> str:
    return f"{ROWS / rows_per_s / 3600:,.1f} h"


def main() -> None:
    extract = {row["workload"]: row for row in load("bench_extract/results.json")["rows"] if row["method"] == "featx"}
    host = {(row["workload"], row["model"]): row for row in load("bench_host/results.json")["rows"]}
    memory = load("streamed_heads/memory.json")
    largest = max(memory["runs"], key=lambda run: (run["rows"], _budget(run["budget"])))  # the default budget
    fits = {head["head"].split("-")[0]: head["fit_seconds"] for head in largest["heads"]}
    scale = ROWS / largest["rows"]
    lines = ["| stage | SST-2-length rows (13 tokens) | IMDB-length rows (<= 256 tokens) | how |",
             "|---|---|---|---|"]
    cpu = [extract[w]["rows_per_s"] for w in ("sst2", "imdb")]
    lines.append(f"| extract, this 2-core CPU (MiniLM, bf16) | {hours(cpu[0])} ({cpu[0]:,.0f} rows/s) | "
                 f"{hours(cpu[1])} ({cpu[1]:,.0f} rows/s) | projected: measured rows/s "
                 f"(bench_extract, {extract['sst2']['rows']:,} / {extract['imdb']['rows']:,} rows) x 100M |")
    for model in ("minilm", "mpnet"):
        cells = []
        for workload in ("sst2", "imdb"):
            row = host[(workload, model)]
            fed = min(row["h100_rows_s_projected"], row["featx_rows_s_per_core"] * HOST_CORES)
            cells.append(f"{hours(fed)} ({fed:,.0f} rows/s; host {row['featx_rows_s_per_core']:,.0f}/core x "
                         f"{HOST_CORES}, GPU {row['h100_rows_s_projected']:,})")
        lines.append(f"| extract, one H100 + {HOST_CORES} host cores ({model}) | {cells[0]} | {cells[1]} | projected: "
                     "the slower of the host (measured per core) and the GPU (FLOPs x assumed utilisation) |")
    for dtype, size in (("float32", 4 * DIM), ("float16", 2 * DIM), ("int8", DIM), ("binary", DIM // 8)):
        total = ROWS * (size + PER_ROW) / 1e9
        lines.append(f"| store, {dtype} (MiniLM: {size} + {PER_ROW} bytes a row; mpnet's vectors twice) | "
                     f"{total:,.1f} GB | {total:,.1f} GB | "
                     "exact: bytes a row x 100M (the vectors do not depend on the text's length) |")
    for kind, seconds in fits.items():
        lines.append(f"| one {kind} head, streamed, this CPU | {seconds * scale / 3600:,.1f} h | same | projected: "
                     f"{seconds:,.0f} s measured on {largest['rows']:,} rows (--memory-budget {largest['budget']}) x "
                     f"{scale:,.0f} |")
    cheapest = min(fits, key=fits.__getitem__)
    lines.append(f"| 100 {cheapest} heads, this CPU (2 at a time) | {100 * fits[cheapest] * scale / 2 / 3600:,.0f} h | "
                 f"same | projected: 100 x one head / 2 cores |")
    print("\n".join(lines))


def _budget(text: str) -> float:
    number = text.split()[0]
    return float(number[:-1]) * {"K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30}[number[-1]]


if __name__ == "__main__":
    main()
