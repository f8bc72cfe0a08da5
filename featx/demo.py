"""`featx demo`: the whole idea in under three minutes on two CPU cores.

Bundled SST-2 (a seeded 8,000-phrase train subset, dev, test) through the packaged
MiniLM: extract once, train a logistic-regression and an MLP head, evaluate on test,
export the better head (by dev accuracy) as a predictor, and print one table.
"""
from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from featx.atomic import atomic_file
from featx.data import open_input
from featx.extraction.engine import extract
from featx.metrics import markdown_table
from featx.results import write_results
from featx.train import HeadSpec, train_and_save

DEMO_COLUMNS = [("head", "head"), ("chosen", "chosen"), ("val_accuracy", "dev acc"), ("test_accuracy", "test acc"),
                ("test_macro_f1", "test macro-F1"), ("fit_seconds", "fit s")]


def run_demo(out: str | Path = "featx-demo", *, train_rows: int = 8000, seed: int = 0, model: str = "all-MiniLM-L6-v2",
             device: str = "auto", progress: bool | None = None, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo into `out`; returns the result rows and per-stage seconds."""
    out = Path(out)
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    train_file = _train_subset(out / "data" / f"sst2-train-{train_rows}.tsv.gz", train_rows, seed)
    stages["subset_s"] = time.perf_counter() - t0

    stores = {}
    for split, spec in (("train", train_file), ("dev", "sst2:dev"), ("test", "sst2:test")):
        t0 = time.perf_counter()
        echo(f"extracting {split} ...")
        source = open_input(spec, text_column="sentence", label_column="label")
        stores[split] = extract(source, out / "stores" / f"{split}.h5", model=model, pooling="mean", device=device,
                                progress=progress)
        stages[f"extract_{split}_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    echo("training heads: logreg (C swept on dev), mlp (early stopping on dev) ...")
    run = train_and_save(stores["train"], [HeadSpec("logreg"), HeadSpec("mlp")], out, val=stores["dev"],
                         test=stores["test"], seed=seed, export=out / "predictor")
    stages["train_and_evaluate_s"] = time.perf_counter() - t0
    rows, best = run.rows, run.best
    for store in stores.values():
        store.close()
    stages = {k: round(v, 2) for k, v in stages.items()}
    write_results(out, rows, {"stages": stages, "train_rows": train_rows, "seed": seed, "model": model})

    echo("")
    echo(markdown_table(rows, DEMO_COLUMNS))
    echo("")
    extract_s = sum(v for k, v in stages.items() if k.startswith("extract_"))
    echo(f"seconds: extract {extract_s:.1f} (train {stages['extract_train_s']:.1f}, dev {stages['extract_dev_s']:.1f}, "
         f"test {stages['extract_test_s']:.1f}), heads {stages['train_and_evaluate_s']:.1f}")
    echo(f"stores: {out / 'stores'}   heads: {out / 'heads'}   predictor ({best.name}): {out / 'predictor'}")
    echo(f"try:    featx predict {out / 'predictor'} sst2:test -o {out / 'test-predictions.jsonl'}")
    return {"rows": rows, "stages": stages, "best": best.name}


def _train_subset(path: Path, rows: int, seed: int) -> Path:
    """A seeded random subset of the bundled SST-2 train split, in input order, as TSV."""
    if path.exists():
        return path
    source = open_input("sst2:train")
    summary = source.scan()
    keep = set(np.random.default_rng(seed).choice(summary.n_rows, size=min(rows, summary.n_rows), replace=False).tolist())
    with atomic_file(path, "demo subset") as partial, gzip.open(partial, "wt", encoding="utf-8") as f:
        f.write("label\tsentence\n")
        for i, record in enumerate(source.records(summary)):
            if i in keep:
                f.write(f"{(summary.classes or ())[int(record.label)]}\t{record.text}\n")  # type: ignore[arg-type]
    return path
