"""What a hybrid head costs against a logreg head on the same store (issue 34).

For each suite (its MiniLM stores as benchmarks/suites/<suite>_minilm_cpu.toml extracts them, into
--work, once; featx.bench.rows), mean pooling, seed 0, each head trained as `featx train` trains it
(featx.train.train_heads: the suite's validation split selects, or else a seeded 10 % of train held
out; a multi-label head also tunes each label's threshold there), in one process:

- logreg: --repeats heads (its 11-C sweep, then the fit kept);
- hybrid, first: with an empty $FEATX_CACHE, so it pays the TF-IDF fit of the training texts and
  the transform of the validation texts;
- hybrid, cached: --repeats more heads on the same store, the TF-IDF read from the cache.

Each head's seconds (train_heads' wall time, medians), its chosen parameters and its test score (the
task's headline: accuracy, or macro-F1 for multi-label). The texts are read from the suite's input
files before any clock starts, as `featx train --texts` reads them.

    python benchmarks/bench_hybrid.py --suites sst2,imdb,emotion,banking77,agnews,goemotions --repeats 3

writes benchmarks/results/hybrid_cost/results.{json,md}.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compact_accuracy import machine_report, run_line, stores, suite_parser, write_report  # the suites' MiniLM stores


def load_split(suite: Any, split: str, path: Path) -> tuple[Any, Any, Any]:
    """(texts, mean-pooled vectors, labels) of one split of a suite (hybrid_levers.py, sparse_products.py),
    the texts checked against the store row by row."""
    from featx.bench.rows import _open_text_split
    from featx.data import read_texts
    from featx.heads.tfidf import check_texts_match
    from featx.store import open_store

    store = open_store(path)
    X, y = store.load("mean")
    return check_texts_match(store, read_texts(_open_text_split(getattr(suite, split))), f"the {split} texts"), X, y


def timed_head(kind: str, opened: dict[str, Any], texts: dict[str, Any]) -> dict[str, Any]:
    """One head of `kind` as `featx train` fits it: its seconds, its choice and its test metrics."""
    from featx.bench.tfidf import VAL_FRACTION
    from featx.metrics import headline
    from featx.results import result_row
    from featx.train import HeadSpec, train_heads

    started = time.perf_counter()
    (head,), _ = train_heads(opened["train"], [HeadSpec(kind)], ["mean"], val=opened.get("val"),
                             val_fraction=VAL_FRACTION, seed=0, texts=texts if kind == "hybrid" else None)
    seconds = time.perf_counter() - started
    scored = head.evaluate(opened["test"], texts["test"] if kind == "hybrid" else None)
    vectorizer = getattr(head.estimator, "vectorizer_", None)
    return {"seconds": seconds, "test": headline(scored), "chosen": result_row(head)["chosen"],
            **({"tfidf_terms": len(vectorizer.vocabulary_)} if vectorizer is not None else {})}


def run_suite(name: str, paths: dict[str, Path], data_root: Path, repeats: int) -> dict[str, Any]:
    from featx.bench.rows import _open_text_split
    from featx.bench.suite import load_suite
    from featx.data import read_texts
    from featx.metrics import HEADLINE
    from featx.store import open_store

    suite = load_suite(HERE / "suites" / f"{name}_minilm_cpu.toml", data_root)
    opened = {split: open_store(path) for split, path in paths.items()}
    texts = {split: read_texts(_open_text_split(getattr(suite, split))) for split in paths}
    os.environ["FEATX_CACHE"] = tempfile.mkdtemp(prefix=f"featx-cache-{name}-")  # an empty cache
    runs: dict[str, list[dict[str, Any]]] = {"logreg": [], "hybrid first": [], "hybrid cached": []}
    runs["hybrid first"].append(timed_head("hybrid", opened, texts))
    for _ in range(repeats):
        runs["logreg"].append(timed_head("logreg", opened, texts))
        runs["hybrid cached"].append(timed_head("hybrid", opened, texts))
    for method, results in runs.items():
        print(f"{name} {method}: " + ", ".join(f"{r['seconds']:.1f} s" for r in results) +
              f"; {results[-1]['chosen']}, test {results[-1]['test']:.4f}", flush=True)
    median = {method: statistics.median(r["seconds"] for r in results) for method, results in runs.items()}
    return {"suite": name, "task": opened["train"].task, "metric": HEADLINE[opened["train"].task][1],
            "selection": "validation" if "val" in paths else "10 % of train held out",
            "rows": {split: store.info()["rows"] for split, store in opened.items()},
            "vocabulary": runs["hybrid first"][0]["tfidf_terms"], "median_seconds": median,
            "ratio": {m: median[m] / median["logreg"] for m in ("hybrid first", "hybrid cached")},
            "runs": runs}


def markdown(report: dict[str, Any]) -> str:
    lines = ["# The hybrid head's cost against a logreg head on the same store\n",
             run_line(report, f"{report['repeats']} repeats, medians; mean pooling; seed 0"),
             "| suite | selected on | train rows | TF-IDF terms | logreg s | logreg test | hybrid s, first (fits TF-IDF) | "
             "hybrid s, TF-IDF cached | cached / logreg | hybrid chosen | hybrid test | metric |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["suites"]:
        m, runs = row["median_seconds"], row["runs"]
        lines.append(f"| {row['suite']} | {row['selection']} | {row['rows']['train']:,} | {row['vocabulary']:,} | "
                     f"{m['logreg']:.1f} | {runs['logreg'][-1]['test']:.4f} | {m['hybrid first']:.1f} | "
                     f"{m['hybrid cached']:.1f} | {row['ratio']['hybrid cached']:.1f}x | "
                     f"{runs['hybrid cached'][-1]['chosen']} | {runs['hybrid cached'][-1]['test']:.4f} | {row['metric']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = suite_parser(__doc__, "hybrid_cost", suites="sst2,imdb")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load, started = os.getloadavg(), time.perf_counter()
    suites = [run_suite(name, stores(name, args.work, args.data), args.data, args.repeats)
              for name in args.suites.split(",")]
    report = machine_report("bench_hybrid.py", load, started, repeats=args.repeats, suites=suites,
                            dtype="float32 vectors; TF-IDF float64, multiplied in float32; solver state float64")
    write_report(args.out, report, markdown)


if __name__ == "__main__":
    main()
