"""The metrics of every task as one JSON-ready dict (single-label classification, multi-label,
regression), their human tables, and the validation scores heads select by."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, r2_score

from featx.errors import FeatxError


def labels_as(labels: np.ndarray, classes: Sequence[str], target: Sequence[str], where: str) -> np.ndarray:
    """Label indices into `classes` as indices into `target`, the classes matched by name.

    An evaluation split may miss a rare class (its classes a subset of `target`); a class
    `target` does not have is refused, naming it, since nothing could predict it.
    """
    position = {name: i for i, name in enumerate(target)}
    if np.ndim(labels) == 2:
        return _columns_as(np.asarray(labels), classes, target, where)
    unknown = [name for name in classes if name not in position]
    if unknown:
        raise FeatxError(f"{where} has labels the model never saw in training: {', '.join(map(repr, unknown[:5]))}"
                         + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
    mapping = np.array([position[name] for name in classes], dtype=np.int64)
    result: np.ndarray = mapping[np.asarray(labels, dtype=np.int64)] if len(mapping) else np.asarray(labels)
    return result


def _columns_as(labels: np.ndarray, names: Sequence[str], target: Sequence[str], where: str) -> np.ndarray:
    """A multi-label indicator's or regression targets' columns in `target`'s order, matched by name: a
    label the split never holds is a column of zeros; a target or a held label `target` lacks is refused."""
    column = {name: j for j, name in enumerate(names)}
    if labels.dtype.kind == "f":
        if sorted(names) != sorted(target):
            raise FeatxError(f"{where} has the targets {', '.join(names)}; the model predicts {', '.join(target)}")
        return labels[:, [column[name] for name in target]]
    unknown = [name for j, name in enumerate(names) if name not in target and labels[:, j].any()]
    if unknown:
        raise FeatxError(f"{where} has labels the model never saw in training: {', '.join(map(repr, unknown[:5]))}")
    result = np.zeros((len(labels), len(target)), dtype=labels.dtype)
    for i, name in enumerate(target):
        if name in column:
            result[:, i] = labels[:, column[name]]
    return result


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class precision/recall/F1/support, confusion matrix.

    Labels are indices into `class_names`; the confusion matrix rows are true classes.
    Per-class rows cover every class; the macro and weighted F1 average over the classes
    that occur (in the truth or the predictions), so a split that lacks a rare class is
    not scored as if that class had F1 0.
    """
    k = len(class_names)
    truth, predicted = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if len(truth) and (min(truth.min(), predicted.min()) < 0 or max(truth.max(), predicted.max()) >= k):
        raise ValueError(f"class indices must lie in [0, {k}) for {k} class names")
    # From the confusion matrix alone (scikit-learn's figures, with zero_division=0): one pass over
    # the rows, not one per figure, so scoring a thousand heads costs milliseconds each.
    confusion = np.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)
    hits, support, claimed = np.diag(confusion), confusion.sum(1), confusion.sum(0)
    precision = np.divide(hits, claimed, out=np.zeros(k), where=claimed > 0)
    recall = np.divide(hits, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * hits, support + claimed, out=np.zeros(k), where=support + claimed > 0)
    present = (support + claimed) > 0
    return {
        "n": len(truth),
        "accuracy": float(hits.sum() / len(truth)) if len(truth) else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "weighted_f1": float(f1 @ support / support.sum()) if support.sum() else 0.0,
        "per_class": [
            {"class": str(name), "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
        ],
        "confusion_matrix": confusion.tolist(),
    }


def format_metrics(metrics: dict[str, Any]) -> str:
    """A plain-text report: headline numbers, per-class table, confusion matrix (multi-label: per
    label; regression: per target)."""
    if metrics.get("task") == "multi":
        width = max(8, *(len(row["label"]) for row in metrics["per_label"]))
        lines = [f"rows {metrics['n']:,}   macro-F1 {metrics['macro_f1']:.4f}   micro-F1 {metrics['micro_f1']:.4f}   "
                 f"subset accuracy {metrics['subset_accuracy']:.4f}", "",
                 f"{'label':<{width}}  precision  recall      f1  support"]
        lines += [f"{row['label']:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:6.4f}"
                  f"  {row['support']:7,}" for row in metrics["per_label"]]
        return "\n".join(lines)
    if metrics.get("task") == "regression":
        def number(value: float | None) -> str:
            return "   n/a" if value is None else f"{value:6.4f}"
        lines = [f"rows {metrics['n']:,}   mean Pearson {number(metrics['mean_pearson'])}   mean Spearman "
                 f"{number(metrics['mean_spearman'])}   mean RMSE {metrics['mean_rmse']:.4f}   mean R2 "
                 f"{metrics['mean_r2']:.4f}", "", f"{'target':<12}  pearson  spearman    rmse      r2"]
        lines += [f"{row['target']:<12}  {number(row['pearson'])}    {number(row['spearman'])}  {row['rmse']:6.4f}  "
                  f"{row['r2']:6.4f}" for row in metrics["per_target"]]
        return "\n".join(lines)
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


_SCORE_KEYS = ("accuracy", "f1", "pearson", "spearman", "rmse", "r2", "gain", "score")


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A Markdown table of `rows` with (key, header) columns: scores to 4 places, other floats to 1;
    a `|` inside a cell (a head grid like Cs=1e-4|1e-3) is escaped so it does not split the cell."""
    def cell(key: str, value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}" if any(part in key for part in _SCORE_KEYS) else f"{value:.1f}"
        return "" if value is None else str(value).replace("|", "\\|")

    out = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(k, row.get(k)) for k, _ in columns) + " |" for row in rows]
    return "\n".join(out)


def task_of(y: np.ndarray) -> str:
    """The task labels `y` are for: class labels (1-D, or one column of them) "single", a 0/1 matrix
    (uint8, bool or integers) "multi", a float matrix "regression" (featx.data.targets.TASKS)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.dtype.kind == "f":
        return "regression"
    if y.ndim == 2 and (y.dtype.kind in "ub" or (y.dtype.kind == "i" and y.shape[1] > 1 and np.isin(y, (0, 1)).all())):
        return "multi"
    return "single"  # class labels (a column of them too, as scikit-learn reads one); the head checks them


def choose_thresholds(scores: np.ndarray, truth: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Per label, the threshold on `scores` (rows x labels) with the best F1 on `truth` (0/1): midway
    between the last score called positive and the next; `default` for a label with no positive row."""
    thresholds = np.full(scores.shape[1], default)
    for j in range(scores.shape[1]):
        positives = int(truth[:, j].sum())
        if positives == 0:
            continue
        order = np.argsort(-scores[:, j], kind="stable")
        ranked, hits = scores[order, j], np.cumsum(truth[order, j])
        ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])  # a cut never splits tied scores
        f1 = 2 * hits[ends] / (ends + 1 + positives)
        k = int(ends[int(np.argmax(f1))])
        thresholds[j] = (ranked[k] + ranked[k + 1]) / 2 if k + 1 < len(ranked) else ranked[k]
    return thresholds


def tuned_macro_f1(scores: np.ndarray, truth: np.ndarray) -> float:
    """Macro-F1 with each label's threshold chosen on these rows: how a multi-label head's
    hyper-parameters are compared on validation (the thresholds are chosen there too)."""
    return float(f1_score(truth, scores >= choose_thresholds(scores, truth), average="macro", zero_division=0))


def mean_r2(predicted: np.ndarray, truth: np.ndarray) -> float:
    """R² averaged over the targets: how a regression head's hyper-parameters are compared."""
    return float(np.mean([r2_score(truth[:, j], predicted[:, j]) for j in range(truth.shape[1])]))


def multilabel_metrics(truth: np.ndarray, predicted: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Micro-F1, macro-F1 (over every label), subset accuracy and per-label precision/recall/F1."""
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, zero_division=0)
    return {
        "task": "multi", "n": len(truth),
        "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(truth, predicted)),
        "per_label": [{"label": str(n), "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for n, p, r, f, s in zip(names, precision, recall, f1, support)],
    }


def regression_metrics(truth: np.ndarray, predicted: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Pearson r, Spearman rho, RMSE and R² per target, and their means."""
    from scipy.stats import pearsonr, spearmanr

    per: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        t, p = truth[:, j], predicted[:, j]
        constant = np.ptp(t) == 0 or np.ptp(p) == 0  # a correlation is undefined: reported as None
        per.append({"target": str(name), "pearson": None if constant else float(pearsonr(t, p)[0]),
                    "spearman": None if constant else float(spearmanr(t, p)[0]),
                    "rmse": float(np.sqrt(np.mean((t - p) ** 2))), "r2": float(r2_score(t, p)), "n": len(t)})
    means = {f"mean_{key}": _mean([row[key] for row in per]) for key in ("pearson", "spearman", "rmse", "r2")}
    return {"task": "regression", "n": len(truth), **means, "per_target": per}


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def task_metrics(truth: np.ndarray, predicted: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """The metrics of the task `truth` is for (featx.metrics.task_of)."""
    task = task_of(truth)
    if task == "multi":
        return multilabel_metrics(truth, predicted, names)
    if task == "regression":
        return regression_metrics(truth, predicted, names)
    return classification_metrics(truth, predicted, names)


# Each task's figures in a result row (featx train's table, featx bench's rows), by split; the first
# of each is the task's headline (HEADLINE), the one heads are ranked by on validation.
TASK_SCORES = {"single": {"val": ("accuracy",), "test": ("accuracy", "macro_f1")},
               "multi": {"val": ("macro_f1", "threshold_gain"), "test": ("macro_f1", "micro_f1", "subset_accuracy")},
               "regression": {"val": ("mean_pearson",), "test": ("mean_pearson", "mean_spearman", "mean_rmse",
                                                                 "mean_r2")}}

# The one number each task's heads are compared by (best head, tables): (metric key, column header).
HEADLINE = {"single": ("accuracy", "acc"), "multi": ("macro_f1", "macro-F1"), "regression": ("mean_pearson", "mean r")}


def headline(metrics: dict[str, Any]) -> float | None:
    """The metric a task's heads are ranked by, from `task_metrics`' dict."""
    value = metrics.get(HEADLINE[metrics.get("task", "single")][0])
    return None if value is None else float(value)
