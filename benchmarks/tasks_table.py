"""Multi-label and regression on one cache each (issue 31): GoEmotions (28 emotions, multi-label),
EmoBank (valence, arousal, dominance, regression) and IMDB ratings (1-10, regression from the
sentiment cache, relabelled: no second extraction).

For each dataset it extracts the frozen all-MiniLM-L6-v2 stores (mean pooling, the model's own
normalised embedding, featx's default backend and dtype), unless they are already in the work
folder, trains the heads on train, selects on dev (IMDB: every 10th training review held out, as
the IMDB suite does), reports on test, and runs the TF-IDF baseline on the same splits. Seeds
0; wall times are this process's, on this machine (its CPU is recorded).

    python benchmarks/tasks_table.py goemotions emobank imdb --work /tmp/featx-tasks

writes benchmarks/results/tasks/<dataset>.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

import featx
from featx.bench.tfidf import tfidf_baseline
from featx.data import open_input, read_texts
from featx.hardware import describe_hardware
from featx.metrics import markdown_table
from featx.relabel import relabel_store
from featx.train import HeadSpec, train_and_save

RESULTS = Path(__file__).resolve().parent / "results" / "tasks"
DATA = Path(os.environ.get("FEATX_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))

# Published anchors, not measured here: the papers' own fine-tuned figures on the same test sets.
ANCHORS = {
    "goemotions": {"method": "BERT-base fine-tuned (Demszky et al. 2020, Table 4)", "test_macro_f1": 0.46,
                   "note": "published, not measured here: macro-F1 over the 28 emotions"},
    "emobank": {"method": "none cited",
                "note": "we found no published figure for this corpus's own train/dev/test split with the "
                        "reader-writer average targets that we could verify offline, so none is shown"},
    "imdb": {"method": "no standard rating-regression anchor on IMDB's 1-10 ratings",
             "note": "Maas et al. 2011 publish binary sentiment accuracy only"},
}


def _goemotions(work: Path) -> dict[str, Any]:
    names = DATA / "goemotions" / "emotions.txt"
    read = {"text_column": "0", "label_column": "1", "multi_label": ",", "label_names": names}
    sources = {split: open_input(DATA / "goemotions" / f"{split}.tsv", header=False, **read)
               for split in ("train", "dev", "test")}
    return {"sources": sources, "heads": ["logreg", "ridge", "knn", "mlp", "hybrid"], "metric": "test_macro_f1"}


def _emobank(work: Path) -> dict[str, Any]:
    sources = {split: open_input(DATA / "emobank" / "emobank.csv", target="V,A,D", where=f"split={split}")
               for split in ("train", "dev", "test")}
    return {"sources": sources, "heads": ["ridge", "knn", "mlp", "hybrid"], "metric": "test_mean_pearson"}


def _imdb(work: Path) -> dict[str, Any]:
    path, test = DATA / "imdb" / "train.jsonl.gz", DATA / "imdb" / "test.jsonl.gz"
    sources = {"train": open_input(path, rows_mod=(10, tuple(range(1, 10))), target="rating"),
               "dev": open_input(path, rows_mod=(10, (0,)), target="rating"),
               "test": open_input(test, target="rating")}
    # The sentiment stores, as the IMDB suite extracts them (256 tokens), relabelled with the ratings.
    sentiment = {"train": open_input(path, rows_mod=(10, tuple(range(1, 10)))),
                 "dev": open_input(path, rows_mod=(10, (0,))), "test": open_input(test)}
    return {"sources": sources, "sentiment": sentiment, "heads": ["ridge", "mlp"], "metric": "test_mean_spearman",
            "max_length": 256}


DATASETS = {"goemotions": _goemotions, "emobank": _emobank, "imdb": _imdb}


def run(dataset: str, work: Path) -> dict[str, Any]:
    plan = DATASETS[dataset](work)
    folder = work / dataset
    folder.mkdir(parents=True, exist_ok=True)
    rows, stores, started = [], {}, time.perf_counter()
    for split, source in plan["sources"].items():
        t0 = time.perf_counter()
        options = {"progress": None, **({"max_length": plan["max_length"]} if "max_length" in plan else {})}
        if "sentiment" in plan:  # one cache: the sentiment store, relabelled with the ratings
            base = featx.extract(plan["sentiment"][split], folder / f"{split}-sentiment.h5", **options)
            base.close()
            relabel_store(folder / f"{split}-sentiment.h5", source, folder / f"{split}.h5")
        else:
            featx.extract(source, folder / f"{split}.h5", **options).close()
        stores[split] = featx.open_store(folder / f"{split}.h5")
        extracted = folder / (f"{split}-sentiment.h5" if "sentiment" in plan else f"{split}.h5")
        with featx.open_store(extracted) as made:  # a relabelled store's vectors were extracted for sentiment
            recorded = made.header.timings.get("total_s")
        rows.append({"method": f"extract {split}", "rows": len(stores[split]),
                     "seconds": round(time.perf_counter() - t0, 1), "store_extract_s": recorded})
        print(f"{dataset}: {split} store ready ({len(stores[split]):,} rows)", file=sys.stderr, flush=True)
    texts = {role: read_texts(plan["sources"][split]) for role, split in (("train", "train"), ("val", "dev"),
                                                                          ("test", "test"))}
    specs = [HeadSpec(kind) for kind in plan["heads"]]
    for spec in specs:
        t0 = time.perf_counter()
        trained = train_and_save(stores["train"], [spec], folder / "heads", val=stores["dev"], test=stores["test"],
                                 texts=texts if spec.kind == "hybrid" else None)
        row = trained.rows[0]
        rows.append({"method": f"frozen MiniLM + {spec.kind}", **{k: v for k, v in row.items() if k != "warning"},
                     "seconds": round(time.perf_counter() - t0, 1), "warning": row["warning"]})
        print(f"{dataset}: {spec.kind} {row[plan['metric']]:.4f}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    baseline = tfidf_baseline(plan["sources"]["train"], plan["sources"]["dev"], plan["sources"]["test"], seed=0)
    metrics = baseline["metrics"]
    rows.append({"method": "TF-IDF 1-2-grams + " + ("one-vs-rest logreg" if metrics["task"] == "multi" else "ridge"),
                 "chosen": ", ".join(f"{k}={baseline[k]:.3g}" for k in ("C", "alpha") if k in baseline) + " (validation)",
                 **{f"test_{k}": v for k, v in metrics.items() if not isinstance(v, (list, dict)) and k != "task"},
                 "seconds": round(time.perf_counter() - t0, 1), "warning": baseline["warning"]})
    hardware = describe_hardware(torch.device("cpu"))
    document = {"dataset": dataset, "command": f"python benchmarks/tasks_table.py {dataset} --work WORK",
                "model": "all-MiniLM-L6-v2", "seed": 0, "dtype": stores["train"].config.dtype,
                "wall_s": round(time.perf_counter() - started, 1),
                "hardware": hardware, "python": platform.python_version(), "anchor": ANCHORS[dataset], "rows": rows}
    for store in stores.values():
        store.close()
    return document


COLUMNS = {"goemotions": [("test_macro_f1", "test macro-F1"), ("test_micro_f1", "test micro-F1"),
                          ("test_subset_accuracy", "subset acc"), ("val_threshold_gain", "dev gain of tuned thresholds")],
           "emobank": [("test_mean_pearson", "test mean r (V, A, D)"), ("test_mean_spearman", "mean rho"),
                       ("test_mean_rmse", "mean RMSE")],
           "imdb": [("test_mean_spearman", "test Spearman"), ("test_mean_pearson", "test Pearson"),
                    ("test_mean_rmse", "RMSE")]}


def markdown(document: dict[str, Any]) -> str:
    dataset = document["dataset"]
    columns = [("method", "method"), ("chosen", "chosen"), *COLUMNS[dataset], ("seconds", "s")]
    anchor = document["anchor"]
    warnings = [f"- {r['method']}: {r['warning']}" for r in document["rows"] if r.get("warning")]
    lines = [f"# {dataset}: frozen all-MiniLM-L6-v2 heads and the TF-IDF baseline", "",
             f"Reproduce: `{document['command']}` (seed {document['seed']}, compute dtype "
             f"{document.get('dtype', '?')}, wall {document['wall_s']} s, CPU {document['hardware'].get('cpu', '?')} "
             f"with {' '.join(document['hardware'].get('cpu_flags', []))}, "
             f"{document['hardware'].get('cpu_count', '?')} cores).", "",
             markdown_table([r for r in document["rows"] if not r["method"].startswith("extract")], columns), "",
             f"Published anchor (not measured here): {anchor['method']}"
             + (f", test macro-F1 {anchor['test_macro_f1']}" if "test_macro_f1" in anchor else "")
             + f". {anchor['note'][0].upper() + anchor['note'][1:]}.", "",
             "Extraction (one-time, shared by every head; each store's own recorded seconds): " + ", ".join(
                 f"{r['method'].split()[1]} {r['rows']:,} rows {r['store_extract_s']} s" for r in document["rows"]
                 if r["method"].startswith("extract")), "",
             "Seconds per head: training with its grid swept on dev, plus scoring dev and test.",
             *(["", "Selection warnings:", *warnings] if warnings else [])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", choices=list(DATASETS))
    parser.add_argument("--work", type=Path, help="Folder for the stores and heads (reused).")
    parser.add_argument("--render", action="store_true", help="Only write each .md again from its committed .json.")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.render:
        for dataset in args.datasets:
            (RESULTS / f"{dataset}.md").write_text(markdown(json.loads((RESULTS / f"{dataset}.json").read_text())))
        return
    if args.work is None:
        parser.error("--work is required (except with --render)")
    for dataset in args.datasets:
        document = run(dataset, args.work)
        (RESULTS / f"{dataset}.json").write_text(json.dumps(document, indent=2) + "\n")
        (RESULTS / f"{dataset}.md").write_text(markdown(document))
        print(markdown(document))


if __name__ == "__main__":
    main()
