"""What a hybrid head costs against a logreg head on the same store (issue 34).

For each suite (its MiniLM stores as benchmarks/suites/<suite>_minilm_cpu.toml extracts them, into
--work, once; featx.bench.rows), mean pooling, the suite's validation split selecting, seed 0,
heads with featx's defaults, in one process:

- logreg: fitted --repeats times (its 11-C sweep on validation, then the fit kept);
- hybrid, first: with an empty $FEATX_CACHE, so it pays the TF-IDF fit of the training texts and
  the transform of the validation texts;
- hybrid, cached: --repeats more heads on the same store, the TF-IDF read from the cache.

Each head's fit seconds (medians), its chosen parameters and its test accuracy. The texts are
read from the suite's input files before any clock starts, as `featx train --texts` reads them.

    python benchmarks/bench_hybrid.py --suites sst2,imdb --repeats 3 --work /tmp/featx-compact

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

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compact_accuracy import machine_report, run_line, stores, suite_parser, write_report  # the five suites' MiniLM stores


def load_split(suite: Any, split: str, path: Path) -> tuple[Any, np.ndarray, np.ndarray]:
    """(texts, vectors, labels) of one split, the texts checked against the store row by row."""
    from featx.bench.rows import _open_text_split
    from featx.data import read_texts
    from featx.heads.tfidf import check_texts_match
    from featx.store import open_store

    store = open_store(path)
    X, y = store.load("mean")
    texts = check_texts_match(store, read_texts(_open_text_split(getattr(suite, split))), f"the {split} texts")
    return texts, np.asarray(X), np.asarray(y)


def timed_head(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    from featx.heads import make_head
    from featx.heads.hybrid import TextVectors

    def rows(split: str) -> Any:
        texts, X, _ = data[split]
        return TextVectors(texts, X) if kind == "hybrid" else X

    head = make_head(kind, random_state=0)
    started = time.perf_counter()
    head.fit(rows("train"), data["train"][2], rows("val"), data["val"][2])
    seconds = time.perf_counter() - started
    accuracy = float(np.mean(head.predict(rows("test")) == data["test"][2]))
    return {"seconds": seconds, "test_accuracy": accuracy, "chosen": head.describe_choice()}


def run_suite(name: str, paths: dict[str, Path], data_root: Path, repeats: int) -> dict[str, Any]:
    from featx.bench.suite import load_suite

    suite = load_suite(HERE / "suites" / f"{name}_minilm_cpu.toml", data_root)
    data = {split: load_split(suite, split, path) for split, path in paths.items()}
    os.environ["FEATX_CACHE"] = tempfile.mkdtemp(prefix=f"featx-cache-{name}-")  # an empty cache
    runs: dict[str, list[dict[str, Any]]] = {"logreg": [], "hybrid first": [], "hybrid cached": []}
    runs["hybrid first"].append(timed_head("hybrid", data))
    for _ in range(repeats):
        runs["logreg"].append(timed_head("logreg", data))
        runs["hybrid cached"].append(timed_head("hybrid", data))
    for method, results in runs.items():
        print(f"{name} {method}: " + ", ".join(f"{r['seconds']:.1f} s" for r in results) +
              f"; {results[-1]['chosen']}, test {results[-1]['test_accuracy']:.4f}", flush=True)
    median = {method: statistics.median(r["seconds"] for r in results) for method, results in runs.items()}
    return {"suite": name, "rows": {split: len(d[2]) for split, d in data.items()},
            "vocabulary": len(_vocabulary(data)), "median_seconds": median,
            "ratio": {m: median[m] / median["logreg"] for m in ("hybrid first", "hybrid cached")},
            "runs": runs}


def _vocabulary(data: dict[str, Any]) -> dict[str, int]:
    from featx.heads.tfidf import fit_tfidf

    return fit_tfidf(data["train"][0]).vectorizer.vocabulary_  # from the cache the heads filled


def markdown(report: dict[str, Any]) -> str:
    lines = ["# The hybrid head's cost against a logreg head on the same store\n",
             run_line(report, f"{report['repeats']} repeats, medians; mean pooling; seed 0"),
             "| suite | train rows | TF-IDF terms | logreg s | logreg test acc | hybrid s, first (fits TF-IDF) | "
             "hybrid s, TF-IDF cached | cached / logreg | hybrid chosen | hybrid test acc |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["suites"]:
        m, runs = row["median_seconds"], row["runs"]
        lines.append(f"| {row['suite']} | {row['rows']['train']:,} | {row['vocabulary']:,} | {m['logreg']:.1f} | "
                     f"{runs['logreg'][-1]['test_accuracy']:.4f} | {m['hybrid first']:.1f} | "
                     f"{m['hybrid cached']:.1f} | {row['ratio']['hybrid cached']:.1f}x | "
                     f"{runs['hybrid cached'][-1]['chosen']} | {runs['hybrid cached'][-1]['test_accuracy']:.4f} |")
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
