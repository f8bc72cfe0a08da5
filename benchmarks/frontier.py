"""The speed-versus-accuracy frontier of one dataset, across its committed suites.

For every method a user could pick on a dataset (TF-IDF, the hybrid head, frozen MiniLM and
frozen mpnet heads, heads on static embeddings distilled from MiniLM, the blocks head on cached
token states, top-k and full fine-tuning), this reads the committed rows of
`results/<dataset>_{minilm,mpnet,static}_cpu` and gives its one-time cost (the extraction its
heads share, or the stores of token states), its cost per classifier (the backbone cell of a row
that needs an extraction gives that extraction's train rows/s), and the seconds to obtain K = 1, 10 and 100 classifiers
(one-time + K x per classifier). A row is Pareto-optimal at K when no other row is at least
as accurate for at most its seconds (one of the two strictly better); those are marked.

Only the mean pooling's rows are shown (each suite's default), so a method appears once per
backbone. Seconds are wall times from the suites' rows (see each results.md for hardware).

    python benchmarks/frontier.py sst2 agnews banking77 emotion imdb
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from featx.bench.frontier import markdown as frontier_markdown
from featx.bench.frontier import pareto
from featx.bench.frontier import plot as frontier_plot

RESULTS = Path(__file__).resolve().parent / "results"
BACKBONES = {"minilm": "MiniLM", "mpnet": "mpnet", "static": "static MiniLM"}


def frontier_rows(dataset: str) -> list[dict[str, Any]]:
    """One row per method and backbone: accuracy, one-time and per-classifier seconds."""
    out = []
    for short, backbone in BACKBONES.items():
        path = RESULTS / f"{dataset}_{short}_cpu" / "results.json"
        if not path.is_file():
            continue
        rows = json.loads(path.read_text())["rows"]
        extract_s = sum(r["seconds"]["total"] for r in rows if r["method"] == "extract")
        rate = next((r["rows_per_s"] for r in rows if r["method"] == "extract" and r.get("split") == "train"), None)
        # The rows whose one-time cost is this extraction name its speed beside the backbone.
        extracted = f"{backbone} ({rate:,.0f} rows/s)" if rate else backbone
        states_s = sum(r["seconds"]["total"] for r in rows if r["method"] == "extract-states")
        for row in rows:
            method, each = row["method"], row["seconds"]["total"]
            if method in ("extract", "extract-states", "mteb-fewshot") or row.get("pooling") not in ("mean", "-"):
                continue
            if method == "tfidf+logreg":
                if short != "minilm":
                    continue  # the same TF-IDF row sits in every suite of a dataset: show it once
                name, once, model = "TF-IDF + logreg", 0.0, "-"
            elif method == "cached-blocks":
                name, once, model = f"cached {row['head']}", states_s, backbone
            elif method.startswith("finetune-"):
                name, once, model = f"fine-tune {row['variant']}", 0.0, backbone
            elif method.startswith("hybrid+"):
                name, once, model = "hybrid (TF-IDF + frozen)", extract_s, extracted
            else:
                name, once, model = f"frozen + {row['head']}", extract_s, extracted
            out.append({"method": name, "backbone": model, "accuracy": row["accuracy"], "once": once, "each": each})
    pareto(out, key="accuracy")
    return sorted(out, key=lambda r: r["accuracy"])


def markdown(dataset: str, rows: list[dict[str, Any]]) -> str:
    """The frontier table; ● marks a Pareto-optimal row at that K (featx.bench.frontier)."""
    return frontier_markdown(dataset, rows, "test accuracy", key="accuracy")


def plot(dataset: str, rows: list[dict[str, Any]], path: Path) -> None:
    """Accuracy against seconds for K = 1, 10, 100 (log scale); Pareto points filled."""
    frontier_plot(dataset, rows, path, "test accuracy", key="accuracy")


def main(datasets: list[str]) -> None:
    out = RESULTS / "frontier"
    out.mkdir(exist_ok=True)
    for dataset in datasets:
        rows = frontier_rows(dataset)
        if not rows:
            print(f"{dataset}: no committed suite results", file=sys.stderr)
            continue
        (out / f"{dataset}.md").write_text(markdown(dataset, rows))
        (out / f"{dataset}.json").write_text(json.dumps(rows, indent=2) + "\n")
        plot(dataset, rows, out / f"{dataset}.png")
        print(markdown(dataset, rows))


if __name__ == "__main__":
    main(sys.argv[1:] or ["sst2", "agnews", "banking77", "emotion", "imdb"])
