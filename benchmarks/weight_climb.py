"""What the hybrid head's weight climb would have chosen on every validation curve committed here
(issue 34: the climb fits fewer weights' paths than the grid; does it choose as the grid does?).

Each committed hybrid row (benchmarks/results/*/rows/hybrid*.json) holds the sweep's whole curve:
every weight's C path, as the grid fitted it. This replays the head's own `search_weights` on those
curves (a path's best score read from the curve instead of fitted) and compares the point it would
choose with the grid's, by the head's own rank (the score, then the smaller C, then the weight
nearest 1). It also replays the alternative not taken: climbing from the weight nearest 1 outwards
(that weight and the one below it first, then on in the direction that did not fall). No fit runs;
the figures are the committed rows' validation scores.

    python benchmarks/weight_climb.py

writes benchmarks/results/weight_climb/results.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compact_accuracy import machine_report, run_line, write_report


def from_one_outwards(weights: list[float], fit_paths: Callable[[list[float]], list[float]]) -> None:
    """The alternative not taken: from the weight nearest 1 and its lower neighbour, on in the direction
    that did not fall (down if the lower scored at least as well, else up), until a path falls."""
    ordered = sorted(weights)
    first = min(range(len(ordered)), key=lambda i: abs(math.log(ordered[i])))
    pair = [first, first - 1] if first > 0 else [first, first + 1][:len(ordered)]
    best = dict(zip(pair, fit_paths([ordered[i] for i in pair])))
    if len(pair) == 1:
        return
    step, at = pair[1] - first, pair[1]
    if best[pair[1]] < best[first]:
        step, at = -step, first
    while 0 <= at + step < len(ordered):
        (best[at + step],) = fit_paths([ordered[at + step]])
        if best[at + step] < best[at]:
            return
        at += step


def replay(curve: list[dict[str, float]], search: Callable[[list[float], Callable[[list[float]], list[float]]], None]
           ) -> tuple[dict[str, float], int]:
    """The point `search` would choose on a recorded curve, and how many weights' paths it fits."""
    from featx.heads.hybrid_sweep import rank

    fitted: list[float] = []

    def fit_paths(weights: list[float]) -> list[float]:
        fitted.extend(weights)
        return [max(p["score"] for p in curve if p["weight"] == w) for w in weights]
    search(sorted({p["weight"] for p in curve}), fit_paths)
    return max((p for p in curve if p["weight"] in fitted), key=rank), len(fitted)


def curves(results: Path) -> list[tuple[str, list[dict[str, float]]]]:
    found = []
    for path in sorted(results.glob("*/rows/hybrid*.json")):
        row = json.loads(path.read_text())
        curve = _find(row, "curve_") or _find(row, "curve")
        if curve:
            found.append((f"{path.parent.parent.name}/{path.stem}", curve))
    return found


def _find(document: Any, key: str) -> Any:
    if isinstance(document, dict):
        if key in document:
            return document[key]
        document = list(document.values())
    if isinstance(document, list):
        for item in document:
            if (found := _find(item, key)) is not None:
                return found
    return None


def markdown(report: dict[str, Any]) -> str:
    lines = ["# The hybrid head's weight climb, replayed on the committed validation curves\n",
             run_line(report, f"{report['same_choice']['climb']} of {len(report['rows'])} curves: the climb chose "
                              f"the grid's point; from 1 outwards: {report['same_choice']['from 1 outwards']}"),
             "| curve | grid's choice (val) | climb's choice (val) | paths the climb fitted | from 1 outwards |",
             "|---|---|---|---|---|"]

    def shown(point: dict[str, float]) -> str:
        return f"weight {point['weight']:g}, C {point['C']:.3g} ({point['score']:.4f})"
    for row in report["rows"]:
        lines.append(f"| {row['curve']} | {shown(row['grid'])} | {shown(row['climb'])} | {row['climb paths']} of "
                     f"{row['weights']} | {shown(row['from 1 outwards'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from featx.heads.hybrid_sweep import search_weights

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "weight_climb")
    args = parser.parse_args()
    load, started = os.getloadavg(), time.perf_counter()
    rows = []
    for name, curve in curves(args.results):
        grid, weights = replay(curve, lambda w, fit: search_weights(w, fit, "grid"))
        climb, paths = replay(curve, lambda w, fit: search_weights(w, fit, "climb"))
        outwards, _ = replay(curve, from_one_outwards)
        rows.append({"curve": name, "weights": weights, "grid": grid, "climb": climb, "climb paths": paths,
                     "from 1 outwards": outwards})
    same = {key: sum(row[key] == row["grid"] for row in rows) for key in ("climb", "from 1 outwards")}
    write_report(args.out, machine_report("weight_climb.py", load, started, rows=rows, same_choice=same,
                                          dtype="none (recorded validation scores)"), markdown)


if __name__ == "__main__":
    main()
