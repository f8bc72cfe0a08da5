"""int8, judged by heads (issue 34): MiniLM statically quantized to int8 by NNCF and run by OpenVINO,
against the same OpenVINO model in fp32 (and bf16, featx's default, for speed), on the five text
suites. What decides is not the cosine but the accuracy of the heads trained on the vectors.

For each suite (its rows as benchmarks/suites/<suite>_minilm_cpu.toml reads them; labels from the
suite's stores in --work, made by compact_accuracy.py's `stores`, whose row order is the input's):
- the int8 model: NNCF `quantize` (static, ModelType.TRANSFORMER, its default preset) of the
  converted fp32 OpenVINO model, calibrated on the first --calibration rows of the suite's own
  train input (tokenized as featx does, the suite's max length), compiled with featx's bf16 hint
  for what stays in floating point;
- every row embedded by the fp32 and the int8 model with the same loop (batches of up to 2,048
  tokens, sorted by length; mean pooling over the attention mask, not normalised: the suites'
  stores' setting), and the cosine of each test row's two vectors;
- logreg and MLP (featx's defaults, seed 0) trained on each model's train vectors, selected on
  its val vectors (suites without val: a held-out tenth of train), scored on test;
- speed: the first 2,000 train rows (IMDB: 300) embedded by fp32, bf16 and int8 in turn, three
  times, medians (rows/s of the model loop alone: tokenisation, model, pooling).

IMDB is subsampled (every 5th row of each split: 4,500 / 500 / 5,000 reviews at 256 tokens) to
keep fp32 under five minutes; the others are whole.

    pip install "nncf>=3.4"      # the benchmark's own need; featx does not depend on NNCF
    python benchmarks/int8_accuracy.py --work /tmp/featx-compact

writes benchmarks/results/int8_accuracy/results.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compact_accuracy import machine_report, run_line, stores, suite_parser, write_report  # the five suites' MiniLM stores

BATCH_TOKENS = 2048
IMDB_EVERY = 5


def split_texts(suite: Any, split: str) -> list[str]:
    from featx.bench.rows import _open_split
    from featx.data import read_texts

    return read_texts(_open_split(getattr(suite, split)))


def tokenized(tokenizer: Any, texts: list[str], max_length: int) -> list[list[int]]:
    from featx.featurizers.text import tokenize_with_flags

    return tokenize_with_flags(tokenizer, texts, max_length)[0]


def embed(compiled: Any, ids: list[list[int]]) -> np.ndarray:
    """Mean-pooled last hidden states of every row, in row order, batches sorted by length."""
    order = np.argsort([len(row) for row in ids], kind="stable")
    out = np.zeros((len(ids), 384), dtype=np.float32)
    request = compiled.create_infer_request()
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and (stop - start + 1) * len(ids[order[stop]]) <= BATCH_TOKENS:
            stop += 1
        rows = order[start:stop]
        width = max(len(ids[i]) for i in rows)
        input_ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for j, i in enumerate(rows):
            input_ids[j, :len(ids[i])], mask[j, :len(ids[i])] = ids[i], 1
        request.infer({"input_ids": input_ids, "attention_mask": mask})
        states = np.asarray(request.get_output_tensor(0).data, dtype=np.float32)
        out[rows] = (states * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
        start = stop
    return out


def models(backbone: Any, calibration: list[list[int]]) -> dict[str, Any]:
    """The compiled fp32, bf16 and int8 (NNCF, calibrated on `calibration`) OpenVINO models."""
    import nncf
    import openvino as ov

    from featx.backbones.openvino import _HiddenStates, require_openvino

    require_openvino()
    example = {"input_ids": torch.ones(2, 16, dtype=torch.int64), "attention_mask": torch.ones(2, 16, dtype=torch.int64)}
    with torch.no_grad():
        converted = ov.convert_model(_HiddenStates(backbone.model, (-1,)).eval(), example_input=example)
    samples = [{"input_ids": np.asarray([row], dtype=np.int64), "attention_mask": np.ones((1, len(row)), dtype=np.int64)}
               for row in calibration]
    quantized = nncf.quantize(converted, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(samples))
    core, threads = ov.Core(), str(torch.get_num_threads())
    compile_with = {"fp32": (converted, "f32"), "bf16": (converted, "bf16"), "int8": (quantized, "bf16")}
    return {name: core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "NUM_STREAMS": "1",
                                                    "INFERENCE_NUM_THREADS": threads})
            for name, (model, hint) in compile_with.items()}


def head_accuracy(vectors: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, float]:
    from featx.heads import LogRegHead, MLPHead

    val = ("val" in vectors) or None
    scores = {}
    for name, head in (("logreg", LogRegHead(random_state=0)), ("mlp", MLPHead(random_state=0))):
        head.fit(vectors["train"], labels["train"], vectors.get("val") if val else None,
                 labels.get("val") if val else None)
        scores[name] = float(np.mean(head.predict(vectors["test"]) == labels["test"]))
    return scores


def run_suite(name: str, args: argparse.Namespace, backbone: Any) -> dict[str, Any]:
    from featx.bench.suite import load_suite
    from featx.store import open_store

    suite = load_suite(HERE / "suites" / f"{name}_minilm_cpu.toml", args.data)
    max_length = suite.max_length or backbone.default_max_length
    paths = stores(name, args.work, args.data)
    ids, labels = {}, {}
    for split, path in paths.items():
        texts, y = split_texts(suite, split), open_store(path).load("mean")[1]
        if len(texts) != len(y):
            raise SystemExit(f"{name} {split}: {len(texts)} texts but {len(y)} stored rows")
        keep = slice(None, None, IMDB_EVERY if name == "imdb" else 1)
        ids[split], labels[split] = tokenized(backbone.tokenizer, texts[keep], max_length), np.asarray(y)[keep]
    t0 = time.perf_counter()
    compiled = models(backbone, ids["train"][:args.calibration])
    quantize_s = time.perf_counter() - t0
    sample = ids["train"][:300 if name == "imdb" else 2000]
    speed: dict[str, list[float]] = {m: [] for m in compiled}
    for _ in range(3):
        for method, model in compiled.items():
            t0 = time.perf_counter()
            embed(model, sample)
            speed[method].append(len(sample) / (time.perf_counter() - t0))
    vectors = {m: {split: embed(compiled[m], rows) for split, rows in ids.items()} for m in ("fp32", "int8")}
    a, b = vectors["fp32"]["test"], vectors["int8"]["test"]
    cosine = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    accuracy = {m: head_accuracy(vectors[m], labels) for m in vectors}
    row = {"suite": name, "rows": {s: len(r) for s, r in ids.items()}, "max_length": max_length,
           "calibration_rows": min(args.calibration, len(ids["train"])), "quantize_s": round(quantize_s, 1),
           "rows_per_s": {m: statistics.median(v) for m, v in speed.items()},
           "cosine": {"min": float(cosine.min()), "mean": float(cosine.mean()), "p01": float(np.quantile(cosine, 0.01))},
           "accuracy": accuracy}
    print(json.dumps(row), flush=True)
    return row


def markdown(report: dict[str, Any]) -> str:
    lines = ["# int8 (NNCF static, OpenVINO) judged by heads, against fp32\n",
             run_line(report, f"OpenVINO {report['openvino']}, NNCF {report['nncf']}"),
             "| suite | rows (train/val/test) | int8 / fp32 speed | int8 / bf16 speed | min cos | mean cos | "
             "logreg fp32 | logreg int8 | Δ | mlp fp32 | mlp int8 | Δ |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["suites"]:
        speed, acc = row["rows_per_s"], row["accuracy"]
        deltas = {h: 100 * (acc["int8"][h] - acc["fp32"][h]) for h in ("logreg", "mlp")}
        lines.append(f"| {row['suite']} | {'/'.join(f'{n:,}' for n in row['rows'].values())} | "
                     f"{speed['int8'] / speed['fp32']:.2f}x | {speed['int8'] / speed['bf16']:.2f}x | "
                     f"{row['cosine']['min']:.4f} | {row['cosine']['mean']:.5f} | {acc['fp32']['logreg']:.4f} | "
                     f"{acc['int8']['logreg']:.4f} | {deltas['logreg']:+.2f} | {acc['fp32']['mlp']:.4f} | "
                     f"{acc['int8']['mlp']:.4f} | {deltas['mlp']:+.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = suite_parser(__doc__, "int8_accuracy")
    parser.add_argument("--calibration", type=int, default=300)
    args = parser.parse_args()
    import nncf
    import openvino

    from featx import load_backbone

    load, started = os.getloadavg(), time.perf_counter()
    backbone = load_backbone("all-MiniLM-L6-v2", device="cpu")
    rows = [run_suite(name, args, backbone) for name in args.suites.split(",")]
    report = machine_report("int8_accuracy.py", load, started, openvino=openvino.__version__.split("-")[0],
                            nncf=nncf.__version__, suites=rows,
                            dtype="model: OpenVINO fp32 (f32 hint), bf16 (bf16 hint), int8 (NNCF, bf16 hint for "
                                  "the rest); vectors float32, mean-pooled, not normalised")
    write_report(args.out, report, markdown)


if __name__ == "__main__":
    main()
