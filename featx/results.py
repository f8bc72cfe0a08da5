"""The comparison table of trained heads: one result row a head (its task's validation and test
scores), the best head by validation, and results.json / results.md."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from featx.atomic import make_folder, write_text
from featx.heads import TrainedHead
from featx.metrics import TASK_SCORES, headline, markdown_table


def result_row(head: TrainedHead) -> dict[str, Any]:
    """One line of the comparison table for a trained head: its task's metrics (TASK_SCORES) on
    validation and test, and `val_score`, the validation figure heads are ranked by (HEADLINE)."""
    chosen = head.estimator.describe_choice()
    val, test = head.metrics.get("val"), head.metrics.get("test")
    task = head.task
    row: dict[str, Any] = {"head": head.name, "kind": head.kind, "pooling": head.pooling, "chosen": chosen,
                           **({"head_task": task} if task != "single" else {})}
    for split, metrics in (("val", val), ("test", test)):
        for key in TASK_SCORES[task][split]:
            row[f"{split}_{key}"] = metrics.get(key) if metrics else None
    row["val_score"] = headline(val) if val else None
    return {**row, "fit_seconds": round(head.fit_seconds, 2), "peak_memory_mb": head.peak_memory_mb,
            "warning": head.estimator.selection_warning()}


_HEADERS = {"accuracy": "acc", "macro_f1": "macro-F1", "micro_f1": "micro-F1", "subset_accuracy": "subset acc",
            "threshold_gain": "threshold gain", "mean_pearson": "mean r", "mean_spearman": "mean rho",
            "mean_rmse": "mean RMSE", "mean_r2": "mean R2"}


def result_columns(task: str = "single") -> list[tuple[str, str]]:
    """The comparison table's columns for a task's result rows."""
    scores = [(f"{split}_{key}", f"{split} {_HEADERS[key]}") for split in ("val", "test")
              for key in TASK_SCORES[task][split]]
    return [("head", "head"), ("pooling", "pooling"), ("chosen", "chosen"), *scores, ("fit_seconds", "fit s")]


RESULT_COLUMNS = result_columns()


def best_head(heads: list[TrainedHead], rows: list[dict[str, Any]]) -> TrainedHead:
    """The head with the best validation score (accuracy; macro-F1 multi-label; mean Pearson r
    regression), never chosen on test."""
    scored = [(row["val_score"] if row.get("val_score") is not None else -1.0, -i) for i, row in enumerate(rows)]
    return heads[-max(scored)[1]]


def format_table(rows: list[dict[str, Any]]) -> str:
    """The comparison table in Markdown; mean ± std where rows carry a std."""
    shown = []
    for row in rows:
        row = dict(row)
        for key in ("test_accuracy", "test_macro_f1"):
            if f"{key}_std" in row:
                row[key] = f"{row[key]:.4f} ± {row[f'{key}_std']:.4f}"
        shown.append(row)
    return markdown_table(shown, result_columns(rows[0].get("head_task", "single") if rows else "single"))


def write_results(folder: Path, rows: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    """results.json (rows + run facts) and results.md (the table) in `folder`, each written atomically."""
    make_folder(folder, "results")
    write_text(folder / "results.json", json.dumps({**extra, "rows": rows}, indent=2) + "\n", "results")
    write_text(folder / "results.md", format_table(rows) + "\n", "results")
