"""Classification metrics as one JSON-ready dict, and its human table."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from featx.errors import FeatxError


def labels_as(labels: np.ndarray, classes: Sequence[str], target: Sequence[str], where: str) -> np.ndarray:
    """Label indices into `classes` as indices into `target`, the classes matched by name.

    An evaluation split may miss a rare class (its classes a subset of `target`); a class
    `target` does not have is refused, naming it, since nothing could predict it.
    """
    position = {name: i for i, name in enumerate(target)}
    unknown = [name for name in classes if name not in position]
    if unknown:
        raise FeatxError(f"{where} has labels the model never saw in training: {', '.join(map(repr, unknown[:5]))}"
                         + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
    mapping = np.array([position[name] for name in classes], dtype=np.int64)
    result: np.ndarray = mapping[np.asarray(labels, dtype=np.int64)] if len(mapping) else np.asarray(labels)
    return result


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class precision/recall/F1/support, confusion matrix.

    Labels are indices into `class_names`; the confusion matrix rows are true classes.
    Per-class rows cover every class; the macro and weighted F1 average over the classes
    that occur (in the truth or the predictions), so a split that lacks a rare class is
    not scored as if that class had F1 0.
    """
    labels = np.arange(len(class_names))
    present = np.union1d(np.asarray(y_true), np.asarray(y_pred)).astype(np.int64)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)),
        "per_class": [
            {"class": str(name), "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
        ],
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def format_metrics(metrics: dict[str, Any]) -> str:
    """A plain-text report: headline numbers, per-class table, confusion matrix."""
    names = [row["class"] for row in metrics["per_class"]]
    width = max(8, *(len(n) for n in names))
    lines = [f"rows {metrics['n']:,}   accuracy {metrics['accuracy']:.4f}   macro-F1 {metrics['macro_f1']:.4f}   "
             f"weighted-F1 {metrics['weighted_f1']:.4f}", "",
             f"{'class':<{width}}  precision  recall      f1  support"]
    for row in metrics["per_class"]:
        lines.append(f"{row['class']:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:6.4f}"
                     f"  {row['support']:7,}")
    lines += ["", "confusion matrix (rows: true, columns: predicted)",
              " " * width + "  " + "  ".join(f"{n[:8]:>8}" for n in names)]
    for name, row in zip(names, metrics["confusion_matrix"]):
        lines.append(f"{name:<{width}}  " + "  ".join(f"{v:8,}" for v in row))
    return "\n".join(lines)


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A Markdown table of `rows` with (key, header) columns: scores to 4 places, other floats to 1;
    a `|` inside a cell (a head grid like Cs=1e-4|1e-3) is escaped so it does not split the cell."""
    def cell(key: str, value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}" if "accuracy" in key or "f1" in key else f"{value:.1f}"
        return "" if value is None else str(value).replace("|", "\\|")

    out = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(k, row.get(k)) for k, _ in columns) + " |" for row in rows]
    return "\n".join(out)
