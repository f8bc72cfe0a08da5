"""The host side of extraction: rows/s of everything but the model, featx against sentence-transformers.

A GPU is fed by the host: read, tokenise, batch, pool, write. This measures that ceiling with a
zero-cost backbone: the model's forward is replaced by one that returns a constant hidden state of
the model's real shape (rows x tokens x hidden), so what is timed is the pipeline around it.

Methods (each run in its own process, interleaved, medians over repeats, all cores of this machine,
the tokenizers library's default parallelism; --tokenizers-parallelism false turns it off for both):
  featx  `featx.extract` from a JSONL file to a finished HDF5 store (backend torch, its defaults:
         length-sorted token-budget batches, CPU workers, background writes)
  st     SentenceTransformer.encode with its defaults (batch 32, length-sorted), vectors in memory
         (it writes nothing; featx's time includes its store)
Workloads: SST-2 train phrases, and IMDB train reviews cut at 256 tokens; models all-MiniLM-L6-v2
(384-d) and all-mpnet-base-v2 (768-d, its own tokenizer).

Then the arithmetic: the rows/s one H100 would run each model at (its dense bf16 peak, 989 TFLOP/s
in NVIDIA's H100 SXM datasheet, times an assumed utilisation), over featx's measured host rows/s
per core, is the cores that keep it busy. Measured figures and projected ones are marked so.

    python benchmarks/bench_host.py --sst2-rows 8000 --imdb-rows 1000 --repeats 3

writes benchmarks/results/bench_host/results.{json,md}.
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
sys.path.insert(0, str(HERE))
from bench_extract import extract_to_store, load_texts

MODELS = {"minilm": ("all-MiniLM-L6-v2", 6, 384, 1536), "mpnet": ("all-mpnet-base-v2", 12, 768, 3072)}
H100_BF16_DENSE = 989e12  # FLOP/s, NVIDIA H100 SXM datasheet (dense, no sparsity)
UTILISATION = 0.4  # assumed share of that peak a well-fed encoder reaches (projected, not measured)


def zero_cost(model, hidden: int) -> None:
    """Replace a transformers model's forward by one returning a constant (rows, tokens, hidden) state."""
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    def forward(input_ids=None, attention_mask=None, output_hidden_states=False, **_):
        state = torch.ones(input_ids.shape + (hidden,), dtype=torch.float32)
        return BaseModelOutput(last_hidden_state=state, hidden_states=(state, state) if output_hidden_states else None)

    model.forward = forward


def worker(method: str, model_key: str, texts_file: str, max_length: int) -> dict:
    import featx

    name, _, hidden, _ = MODELS[model_key]
    texts = json.loads(Path(texts_file).read_text())
    backbone = featx.load_backbone(name, device="cpu")
    tokens = sum(len(ids) for ids in backbone.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"])
    if method == "featx":
        zero_cost(backbone.model, hidden)
        made: dict = {}
        scratch = Path(texts_file).parent / f"{method}-{model_key}"
        encode = lambda t: extract_to_store(backbone, t, max_length, scratch, {"backend": "torch"}, made)
    else:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(backbone.path), device="cpu")
        model.max_seq_length = max_length
        zero_cost(model[0].auto_model, hidden)
        encode = lambda t: model.encode(t, convert_to_numpy=True)
    encode(texts[:64])
    t0 = time.perf_counter()
    vectors = encode(texts)
    seconds = time.perf_counter() - t0
    assert len(vectors) == len(texts)
    import torch

    return {"method": method, "model": model_key, "seconds": seconds, "rows": len(texts), "tokens": tokens,
            "threads": torch.get_num_threads()}


def flops_per_row(model_key: str, tokens: float) -> float:
    """Forward FLOPs of one row of `tokens` tokens: dense layers plus attention (QK^T and AV)."""
    _, layers, d, ffn = MODELS[model_key]
    return tokens * (2 * layers * (4 * d * d + 2 * d * ffn) + 2 * layers * 2 * tokens * d)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sst2-rows", type=int, default=8000)
    parser.add_argument("--imdb-rows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="minilm,mpnet")
    parser.add_argument("--data", default=os.environ.get("FEATX_DATA", str(HERE.parent.parent / "shared" / "data")))
    parser.add_argument("--out", default=str(HERE / "results" / "bench_host"))
    parser.add_argument("--tokenizers-parallelism", choices=("default", "false"), default="default",
                        help="default: the tokenizers library's own (Rust threads on every core) for both methods; "
                             "false: TOKENIZERS_PARALLELISM=false for both (how the 2026-12-05 run measured)")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, model_key, texts_file, max_length = args.worker
        print(json.dumps(worker(method, model_key, texts_file, int(max_length))))
        return
    load, started = round(os.getloadavg()[0], 2), time.time()
    scratch = Path(tempfile.mkdtemp(prefix="featx-host-"))
    runs: dict[str, list[dict]] = {}
    env = {k: v for k, v in os.environ.items() if k != "TOKENIZERS_PARALLELISM"}
    if args.tokenizers_parallelism == "false":
        env["TOKENIZERS_PARALLELISM"] = "false"
    for workload, rows in (("sst2", args.sst2_rows), ("imdb", args.imdb_rows)):
        texts_file = scratch / f"{workload}.json"
        texts_file.write_text(json.dumps(load_texts(workload, rows, Path(args.data))))
        for model_key in args.models.split(","):
            for repeat in range(args.repeats):
                for method in ("featx", "st"):  # interleaved
                    out = subprocess.run([sys.executable, __file__, "--worker", method, model_key, str(texts_file), "256"],
                                         capture_output=True, text=True, check=True, env=env)
                    record = json.loads(out.stdout.strip().splitlines()[-1])
                    runs.setdefault(f"{workload}/{model_key}/{method}", []).append(record)
                    print(f"{workload} {model_key} {method} {repeat}: {record['rows'] / record['seconds']:.0f} rows/s",
                          flush=True)
    report = summarise(runs, load, time.time() - started)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "results.md").write_text(markdown(report))
    print(markdown(report))


def summarise(runs: dict[str, list[dict]], load: float, wall: float) -> dict:
    import torch

    from featx.hardware import describe_hardware

    cores = os.cpu_count() or 1
    rows = []
    for key in sorted({k.rsplit("/", 1)[0] for k in runs}):
        workload, model_key = key.split("/")
        rates = {m: statistics.median(r["rows"] / r["seconds"] for r in runs[f"{key}/{m}"]) for m in ("featx", "st")}
        first = runs[f"{key}/featx"][0]
        mean_tokens = first["tokens"] / first["rows"]
        gpu_rows = H100_BF16_DENSE * UTILISATION / flops_per_row(model_key, mean_tokens)
        per_core = rates["featx"] / cores
        rows.append({"workload": workload, "model": model_key, "mean_tokens": round(mean_tokens, 1),
                     "featx_rows_s": round(rates["featx"], 1), "st_rows_s": round(rates["st"], 1),
                     "ratio": round(rates["featx"] / rates["st"], 2), "featx_rows_s_per_core": round(per_core, 1),
                     "all_featx_rows_s": [round(r["rows"] / r["seconds"], 1) for r in runs[f"{key}/featx"]],
                     "all_st_rows_s": [round(r["rows"] / r["seconds"], 1) for r in runs[f"{key}/st"]],
                     "flops_per_row": flops_per_row(model_key, mean_tokens),
                     "h100_rows_s_projected": round(gpu_rows), "cores_to_feed_h100_projected": round(gpu_rows / per_core)})
    return {"hardware": describe_hardware(torch.device("cpu")), "cores": cores, "load_at_start": load,
            "wall_seconds": round(wall), "h100_bf16_dense_flops": H100_BF16_DENSE, "utilisation_assumed": UTILISATION,
            "command": " ".join(sys.argv), "rows": rows}


def markdown(report: dict) -> str:
    hardware = report["hardware"]
    lines = ["# Host ceiling: extraction with a zero-cost model", "",
             f"`python {report['command']}` on {hardware['cpu']} ({' '.join(hardware['cpu_flags'])}), "
             f"{report['cores']} cores, torch {hardware['torch']}; load {report['load_at_start']} at start; "
             f"{report['wall_seconds']} s. Medians of interleaved runs; rows/s measured.", "",
             "| workload | model | mean tokens | featx rows/s | st rows/s | featx / st | featx rows/s per core "
             "| H100 rows/s (projected) | cores to feed it (projected) |", "|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        lines.append(f"| {row['workload']} | {row['model']} | {row['mean_tokens']} | {row['featx_rows_s']:,} | "
                     f"{row['st_rows_s']:,} | {row['ratio']} | {row['featx_rows_s_per_core']:,} | "
                     f"{row['h100_rows_s_projected']:,} | {row['cores_to_feed_h100_projected']:,} |")
    lines += ["", f"Projected: H100 rows/s = {report['h100_bf16_dense_flops']:.3g} FLOP/s x "
              f"{report['utilisation_assumed']} (assumed utilisation) / FLOPs per row, where FLOPs per row = tokens x "
              "(2 x layers x (4 d^2 + 2 d ffn) + 4 x layers x tokens x d); cores = H100 rows/s / featx rows/s per core."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
