"""Does bf16 cost image heads accuracy? The same CIFAR-10 sample extracted with EfficientNet-Lite0
in fp32 and in bf16 (what `--dtype auto` is on a CPU with fast bf16), then the same heads on each.

A sample of the shared CIFAR-10 zip (every k-th image by path: --train N from train/, --test M
from test/) is written once to a scratch folder. Each dtype is extracted into its own stores
(`--backend`, default openvino: the fast path for this model; torch also works). Each store gets
a logistic regression (C swept on a held-out tenth of train, seed 0) and an MLP (seed 0).
Reported: test accuracy per dtype and head, what each costs (extracting train and test once;
fitting and evaluating each head), and the cosine between the fp32 and bf16 vectors of
each test image (min and mean).

    python benchmarks/image_dtype_accuracy.py --train 5000 --test 2000 \
        --out benchmarks/results/image_dtype_accuracy
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

import featx
from featx.bench.runner import git_commit
from featx.hardware import describe_hardware


def sample(archive: Path, split: str, rows: int, out: Path) -> Path:
    """Every k-th image of `split` (sorted by path) into out/<split>/<class>/<file>.jpg."""
    with zipfile.ZipFile(archive) as zipped:
        names = sorted(n for n in zipped.namelist() if n.startswith(f"{split}/") and n.endswith(".jpg"))
        for name in names[::max(1, len(names) // rows)][:rows]:
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zipped.read(name))
    return out / split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--backend", default="openvino", choices=("openvino", "torch"))
    parser.add_argument("--data", default=os.environ.get("FEATX_DATA", "../shared/data"))
    parser.add_argument("--out", default="benchmarks/results/image_dtype_accuracy")
    args = parser.parse_args()
    started = time.time()
    scratch = Path(tempfile.mkdtemp(prefix="featx-image-dtype-"))
    archive = Path(args.data) / "cifar10" / "cifar10-jpg.zip"
    folders = {split: sample(archive, split, rows, scratch / "images")
               for split, rows in (("train", args.train), ("test", args.test))}
    rows, vectors, seconds = [], {}, {}
    for dtype in ("fp32", "bf16"):
        stores = {}
        t0 = time.perf_counter()
        for split, folder in folders.items():
            stores[split] = featx.extract(folder, scratch / f"{split}-{dtype}.h5", model="efficientnet-lite0",
                                          dtype=dtype, backend=args.backend, progress=False)
        seconds[dtype] = round(time.perf_counter() - t0, 1)
        vectors[dtype] = stores["test"].load("mean")[0]
        for kind in ("logreg", "mlp"):
            t0 = time.perf_counter()
            head = featx.train_head(stores["train"], kind, seed=0)
            accuracy = head.evaluate(stores["test"])["accuracy"]
            rows.append({"dtype": dtype, "head": kind, "test_accuracy": round(float(accuracy), 4),
                         "head_seconds": round(time.perf_counter() - t0, 1),  # fit and test evaluation
                         "extract_seconds": seconds[dtype]})
            print(f"{dtype} {kind}: {accuracy:.4f}", flush=True)
        for store in stores.values():
            store.close()
    a, b = vectors["fp32"], vectors["bf16"]
    cosines = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    report = {
        "command": f"python benchmarks/image_dtype_accuracy.py --train {args.train} --test {args.test} "
                   f"--backend {args.backend} --out {args.out}",
        "workload": f"CIFAR-10: every k-th of train ({args.train}) and of test ({args.test}), by path",
        "model": "efficientnet-lite0, pooling mean", "backend": args.backend, "seeds": "heads seed 0",
        "hardware": describe_hardware(featx.load_image_backbone(device="cpu").device),
        "git_commit": git_commit(), "load_average_at_start": os.getloadavg()[0],
        "extract_seconds": seconds, "wall_seconds": round(time.time() - started, 1),
        "cosine_fp32_vs_bf16": {"min": round(float(cosines.min()), 5), "mean": round(float(cosines.mean()), 5)},
        "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
