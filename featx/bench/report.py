"""Benchmark outputs: results.json (schema in benchmarks/schema), .md, .csv and the plot."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from featx.atomic import atomic_file, write_text
from featx.metrics import markdown_table

SCHEMA_VERSION = 1
AMORTISED_K = (1, 10, 100)
# The test metrics each task's table shows (featx.bench.rows.ROW_METRICS), the first its headline.
METRIC_NAMES = {"accuracy": "test accuracy", "macro_f1": "test macro-F1", "micro_f1": "test micro-F1",
                "subset_accuracy": "subset accuracy", "mean_pearson": "test mean Pearson r",
                "mean_spearman": "mean Spearman", "mean_rmse": "mean RMSE", "mean_r2": "mean R²"}


def row_score(row: dict[str, Any]) -> float | None:
    """A row's headline test figure (rows written before tasks existed: their accuracy)."""
    value = row.get("score", row.get("accuracy"))
    return None if value is None else float(value)


def suite_task(rows: list[dict[str, Any]]) -> str:
    return next((str(r["task"]) for r in rows if r.get("task")), "single")


def table_columns(task: str) -> list[tuple[str, str]]:
    from featx.bench.rows import ROW_METRICS

    gain = [("gain_text", "dev macro-F1 gain of tuned thresholds over 0.5")] if task == "multi" else []
    return [("method", "method"), ("pooling", "pooling"), ("head_or_variant", "head / variant"),
            *[(f"{key}_text", METRIC_NAMES[key]) for key in ROW_METRICS[task]], *gain,
            ("stage_text", "seconds per stage"), ("peak_rss_mb", "peak RSS MB")]


def amortised(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seconds to get K classifiers: extract once + K heads (the token-state stores once + K blocks
    heads), against K fine-tunes."""
    extract_s = sum(r["seconds"]["total"] for r in rows if r["method"] == "extract")
    states_s = sum(r["seconds"]["total"] for r in rows if r["method"] == "extract-states")
    out = []
    for row in rows:
        if row["method"].startswith(("frozen+", "hybrid+")):
            once = extract_s  # one extraction serves every head, and the hybrid's dense block
        elif row["method"] == "cached-blocks":
            once = states_s  # the stores keeping token states (their pooled vectors serve frozen heads too)
        elif row["method"].startswith(("finetune-", "tfidf")):
            once = 0.0  # nothing shared between the K classifiers
        else:
            continue
        each = row["seconds"]["total"]
        out.append({"id": row["id"], "method": row["method"], "accuracy": row["accuracy"], "score": row_score(row),
                    "seconds_for_k": {str(k): round(once + k * each, 1) for k in AMORTISED_K}})
    return out


def write_report(out: str | Path, suite_name: str, rows: list[dict[str, Any]], command: str,
                 anchor: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write results.json, results.md, results.csv and (with matplotlib) speed_vs_accuracy.png;
    `anchor`, a suite's published figure, is kept apart from the measured rows."""
    out = Path(out)
    document = {"schema_version": SCHEMA_VERSION, "suite": suite_name, "command": command, "rows": rows,
                "amortised": amortised(rows), **({"published_anchor": anchor} if anchor else {})}
    write_text(out / "results.json", json.dumps(document, indent=2) + "\n", "results")
    write_text(out / "results.md", markdown_report(document), "results")
    _write_csv(out / "results.csv", rows)
    _plot(out / "speed_vs_accuracy.png", document)
    return document


def markdown_report(document: dict[str, Any]) -> str:
    from featx.bench.rows import ROW_METRICS

    rows = document["rows"]
    task = suite_task(rows)
    shown = []
    for row in rows:
        figures = {f"{key}_text": _pm(row.get(key), row.get(f"{key}_std")) for key in ROW_METRICS[task]}
        stages = ", ".join(f"{k} {v:.1f}" for k, v in row["seconds"].items())
        gain = row.get("val_threshold_gain")
        shown.append({**row, "head_or_variant": row.get("head") or row.get("variant") or row.get("split", ""),
                      **figures, "gain_text": "" if gain is None else f"{gain:+.4f}", "stage_text": stages})
    first = rows[0] if rows else {}
    headline = METRIC_NAMES[ROW_METRICS[task][0]]
    lines = [f"# {document['suite']}", "",
             f"Reproduce: `{document['command']}`", "",
             f"Model {first.get('model')}, dtype {first.get('dtype')}, device {first.get('device')}, "
             f"{first.get('threads')} threads, featx {first.get('featx_version')} (git {first.get('git_commit')}), "
             f"torch {first.get('versions', {}).get('torch')}, seeds {first.get('seeds') or [0]}.", "",
             markdown_table(shown, table_columns(task)), "", *_anchor_lines(document.get("published_anchor")),
             "## Seconds to obtain K classifiers (extract once + K heads, or K fine-tunes, or K TF-IDF fits)", ""]
    amortised_rows = [{"id": a["id"], "score": row_score(a), **{f"k{k}": v for k, v in a["seconds_for_k"].items()}}
                      for a in document["amortised"]]
    lines.append(markdown_table(amortised_rows, [("id", "row"), ("score", headline)] +
                                [(f"k{k}", f"K={k} (s)") for k in AMORTISED_K]))
    return "\n".join(lines) + "\n"


def _anchor_lines(anchor: dict[str, Any] | None) -> list[str]:
    if not anchor:
        return []
    name = METRIC_NAMES.get(anchor["metric"], anchor["metric"])
    return [f"Published anchor, **not measured here**: {anchor['method']}, {name} {anchor['score']} "
            f"({anchor['source']}){'. ' + anchor['note'] if anchor.get('note') else ''}.", ""]


def _pm(value: Any, std: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4f} ± {std:.4f}" if std is not None else f"{value:.4f}"


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = ["id", "method", "dataset", "model", "pooling", "task", "metric", "score", "accuracy", "accuracy_std",
            "macro_f1", "macro_f1_std", "n_runs", "peak_rss_mb", "wall_seconds", "device", "dtype", "threads", "git_commit"]
    with atomic_file(path, "results") as partial, open(partial, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(keys + ["seconds"])
        for row in rows:
            writer.writerow([row.get(k) for k in keys] + [json.dumps(row["seconds"])])


def _plot(path: Path, document: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return  # the plot is optional: pip install 'featx[plot]'
    from featx.bench.rows import ROW_METRICS

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for entry in document["amortised"]:
        xs = [entry["seconds_for_k"][str(k)] for k in AMORTISED_K]
        style = "o-" if entry["method"].startswith("frozen") else "^:" if entry["method"].startswith("tfidf") \
            else "d-." if entry["method"].startswith("hybrid") else "v-" if entry["method"] == "cached-blocks" \
            else "s--"
        score = row_score(entry)
        if score is None:
            continue
        axis.plot(xs, [score] * len(xs), style, label=entry["id"])
        for k, x in zip(AMORTISED_K, xs):
            axis.annotate(f"K={k}", (x, score), textcoords="offset points", xytext=(0, 5), fontsize=7)
    axis.set_xscale("log")
    axis.set_xlabel("seconds to obtain K classifiers (log)")
    axis.set_ylabel(METRIC_NAMES[ROW_METRICS[suite_task(document["rows"])][0]])
    axis.set_title(f"{document['suite']}: extract once + K heads vs K fine-tunes")
    axis.legend(fontsize=7, loc="lower right")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_file(path, "results") as partial:
        figure.savefig(partial, dpi=120, format="png")
    plt.close(figure)
