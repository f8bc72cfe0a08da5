"""The speed-versus-accuracy frontier on the user's own data, within a time budget (`featx frontier`).

The methods run in order of cost. For texts: TF-IDF (the classical baseline), frozen MiniLM with
a linear head (logreg; ridge for regression), the hybrid head (TF-IDF beside the MiniLM vectors),
frozen mpnet where its packages are installed, the `blocks` head on cached token states (k=2)
and the top-2 fine-tune. For images: the frozen image backbone with a linear head, then its top-2
fine-tune. The backbones and the fine-tune's recipe are the modality's (`frontier_backbones`,
`frontier_finetune`); the methods that read texts (TF-IDF, hybrid, cached token states) run on
texts. Before each method its cost is estimated from what the run has measured so far (the
seconds per row of the first backbone's extraction, scaled by each method's work); a method
that would not end within the budget is skipped, and the table says how long it would have
taken. The first backbone always runs: it is what every estimate is made from.

Validation is the `val` input, else 10 % of train carved as `featx train` carves it (seeded):
the TF-IDF baseline and every head select on the same rows, and the best exportable method by
validation (never test) is exported as a predictor. Each measured row has its one-time seconds
(the extraction its heads share) and its seconds per head; a row is Pareto-optimal at K heads
when no other row scores at least as well for at most its seconds (one of the two strictly).
"""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from featx.atomic import atomic_folder, make_folder, write_text
from featx.data import InputSource, Source, read_texts
from featx.errors import FeatxError
from featx.metrics import HEADLINE

K_VALUES = (1, 10, 100)
# (validation score, method, save(folder)) of a method that can be exported as a predictor
Candidate = tuple[float | None, str, Callable[[Path], Any]]
# Work per row relative to the first backbone's extraction, for the estimates of methods not yet run
# (each further backbone's is the modality's): the states store runs MiniLM's lower 4 blocks and
# writes every token's state; one blocks or top-2 epoch runs 2 of 6 blocks forwards and backwards
# (about 3x a forward) over the train rows.
_STATES_WORK, _TOP2_EPOCH_WORK = 1.2, 2 / 6 * 3


def pareto(rows: list[dict[str, Any]], key: str = "score") -> None:
    """Add `k{K}` (seconds for K heads: one-time + K x per head) and `pareto{K}` to measured rows."""
    measured = [r for r in rows if r.get(key) is not None]
    for k in K_VALUES:
        costs = [r["once"] + k * r["each"] for r in measured]
        for row, cost in zip(measured, costs):
            row[f"k{k}"] = cost
            row[f"pareto{k}"] = not any(
                other[key] >= row[key] and other_cost <= cost and (other[key] > row[key] or other_cost < cost)
                for other, other_cost in zip(measured, costs))


def markdown(title: str, rows: list[dict[str, Any]], metric: str = "test accuracy", key: str = "score") -> str:
    """The frontier table (● = Pareto-optimal at that K), then the methods skipped and why."""
    head = (f"| method | backbone | {metric} | one-time s | per head s | "
            + " | ".join(f"K={k} s" for k in K_VALUES) + " |")
    lines = [f"### {title}: seconds to obtain K heads (● = Pareto-optimal at that K)", "", head,
             "|" + "---|" * (5 + len(K_VALUES))]
    for r in sorted((r for r in rows if r.get(key) is not None), key=lambda r: r[key]):
        cells = [f"{r[f'k{k}']:,.0f}{' ●' if r[f'pareto{k}'] else ''}" for k in K_VALUES]
        lines.append(f"| {r['method']} | {r['backbone']} | {r[key]:.4f} | {r['once']:,.0f} | {r['each']:,.1f} | "
                     + " | ".join(cells) + " |")
    skipped = [r for r in rows if r.get(key) is None]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(f"{r['method']} ({r['skipped']})" for r in skipped) + "."]
    return "\n".join(lines) + "\n"


def plot(title: str, rows: list[dict[str, Any]], path: Path, metric: str = "test accuracy",
         key: str = "score") -> bool:
    """Score against seconds for K = 1, 10, 100 (log scale); Pareto points filled. False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    measured = [r for r in rows if r.get(key) is not None]
    backbones = list(dict.fromkeys(r["backbone"] for r in measured if r["backbone"] != "-"))
    colours = {"-": "C7", **{name: f"C{i}" for i, name in enumerate(backbones)}}
    figure, axes = plt.subplots(1, len(K_VALUES), figsize=(13, 4.2), sharey=True)
    for axis, k in zip(axes, K_VALUES):
        for r in measured:
            axis.scatter(r[f"k{k}"], r[key], marker="o" if r[f"pareto{k}"] else "x", color=colours[r["backbone"]])
            axis.annotate(r["method"], (r[f"k{k}"], r[key]), fontsize=6, xytext=(3, 2), textcoords="offset points")
        frontier = sorted((r[f"k{k}"], r[key]) for r in measured if r[f"pareto{k}"])
        if frontier:
            axis.plot(*zip(*frontier), "k--", linewidth=0.8)
        axis.set_xscale("log")
        axis.set_xlabel(f"seconds for K={k} heads (log)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel(metric)
    named = ", ".join(f"{colour} {name}" for name, colour in zip(backbones, ("blue", "orange", "green", "red")))
    figure.suptitle(f"{title}: {named}, grey no backbone; circles are Pareto-optimal")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


class _Budget:
    """Seconds left of the budget, and the rule: start a method only if its estimate fits."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.perf_counter()

    @property
    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def allows(self, estimate: float) -> bool:
        return estimate <= self.left


def run_frontier(train: Source, test: Source, out: str | Path, *, val: Source | None = None,
                 budget_s: float = 900.0, seed: int = 0, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure the methods that fit in `budget_s` on the user's inputs, write frontier.md/.json/.png in
    `out` and the best predictor (by validation) in `out/predictor`; returns the JSON document."""
    from featx.bench.tfidf import tfidf_baseline
    from featx.modalities import modality_of

    given = (train, test, *([val] if val is not None else []))
    if len({type(source) for source in given}) > 1:
        raise FeatxError(f"featx frontier reads {train.name} and the other inputs differently: give train, "
                         "--val and --test as the same kind of input (all texts, or all images)")
    modality = modality_of(train)
    if not getattr(modality, "frontier_backbones", None):
        raise FeatxError(f"featx frontier has no methods for {modality.name} inputs (a modality names its "
                         "frontier_backbones)")
    texts = isinstance(train, InputSource)  # TF-IDF, the hybrid and cached token states read texts
    out = make_folder(out, "frontier")
    budget, rows = _Budget(budget_s), []
    summary = train.scan()
    task, n_train = summary.task, summary.n_rows
    key, label = HEADLINE[task][0], f"test {HEADLINE[task][1]}"
    splits = {"train": train, "val": val, "test": test}
    # Every split's rows, counted once (a scan is a pass over the whole input, hashing it): the estimates use it.
    rows_all = n_train + sum(s.scan().n_rows for s in (val, test) if s is not None)

    if texts:
        t0 = time.perf_counter()
        baseline = tfidf_baseline(train, val, test, seed=seed)  # type: ignore[arg-type]  # all InputSources
        rows.append({"method": "TF-IDF 1-2-grams + " + ("ridge" if task == "regression" else "logreg"),
                     "backbone": "-", "score": baseline["metrics"].get(key), "once": 0.0,
                     "each": time.perf_counter() - t0})
        echo(f"frontier: TF-IDF {rows[-1]['score']:.4f} ({rows[-1]['each']:.0f} s; {budget.left:.0f} s left)")

    stores: dict[str, Any] = {}
    heads: list[Candidate] = []

    def extract_all(model: str, work: float, name: str) -> float | None:
        """Extract every split with `model` (seconds), or None when the estimate does not fit."""
        per_row = stores.get("per_row")
        if per_row is not None and not budget.allows(per_row * work * rows_all):
            return None
        from featx.engine import extract

        started, found = time.perf_counter(), {}
        for split, source in splits.items():
            if source is not None:
                found[split] = extract(source, out / "stores" / f"{name}-{split}.h5", model=model, progress=None)
        stores[name] = found
        seconds = time.perf_counter() - started
        stores.setdefault("per_row", seconds / rows_all)
        return seconds

    def train_one(name: str, kind: str, method: str, texts: bool = False) -> tuple[float, float]:
        from featx.train import HeadSpec, train_and_save

        given = stores[name]
        read = {"train": read_texts(train), "val": read_texts(val) if val is not None else None,
                "test": read_texts(test)} if texts else None
        started = time.perf_counter()
        run = train_and_save(given["train"], [HeadSpec(kind)], out / "heads" / name, val=given.get("val"),
                             test=given["test"], seed=seed, texts=read)
        heads.append((run.rows[0]["val_score"], method, _saver(run.best)))
        return run.best.metrics["test"].get(key), time.perf_counter() - started

    linear = "ridge" if task == "regression" else "logreg"
    backbones: tuple[tuple[str, str, float], ...] = modality.frontier_backbones
    first = backbones[0][0].lower()
    for backbone, model, work in backbones:
        name = backbone.lower()
        try:
            once = extract_all(model, work, name)
        except FeatxError as e:  # a backbone that is not installed (mpnet ships in packages of its own)
            if name == first:
                raise
            rows.append({"method": f"frozen {backbone} + {linear}", "backbone": backbone, "skipped": str(e)})
            continue
        if once is None:
            estimate = stores["per_row"] * work * rows_all
            rows.append({"method": f"frozen {backbone} + {linear}", "backbone": backbone,
                         "skipped": f"over the budget: its extraction would take about {estimate:,.0f} s, "
                                    f"{budget.left:,.0f} s were left"})
            continue
        score, each = train_one(name, linear, f"frozen {backbone} + {linear}")
        rows.append({"method": f"frozen {backbone} + {linear}", "backbone": backbone, "score": score, "once": once,
                     "each": each})
        echo(f"frontier: frozen {backbone} + {linear} {score:.4f} ({once:.0f} s once, {each:.0f} s; "
             f"{budget.left:.0f} s left)")
        if texts and name == first:  # the hybrid reuses MiniLM's stores: its cost is TF-IDF's and a sweep of fits
            estimate = rows[0]["each"] * 8  # 5 weights x 11 Cs against TF-IDF's 11 Cs, and the vectors
            if budget.allows(estimate):
                score, each = train_one(name, "hybrid", f"hybrid (TF-IDF + frozen {backbone})", texts=True)
                rows.append({"method": f"hybrid (TF-IDF + frozen {backbone})", "backbone": backbone, "score": score,
                             "once": once, "each": each})
                echo(f"frontier: hybrid {score:.4f} ({each:.0f} s; {budget.left:.0f} s left)")
            else:
                rows.append({"method": f"hybrid (TF-IDF + frozen {backbone})", "backbone": backbone,
                             "skipped": f"over the budget: about {estimate:,.0f} s, {budget.left:,.0f} s were left"})
    _trained_rows(rows, stores["per_row"], backbones[0], modality.frontier_finetune, texts, (n_train, rows_all), budget, splits,
                  out, seed, heads, key, echo)
    pareto(rows)
    title = f"{train.name} ({task}, {n_train:,} training rows, budget {budget_s:,.0f} s)"
    import torch

    from featx.hardware import describe_hardware

    document = {"hardware": describe_hardware(torch.device("cpu")),
                "dtype": stores[first]["train"].config.dtype,
                "train": train.name, "val": val.name if val is not None else "10 % of train (seeded)",
                "test": test.name, "task": task, "metric": label, "budget_s": budget_s, "seed": seed,
                "wall_s": round(time.perf_counter() - budget.start, 1), "rows": rows}
    if heads:
        best_score, best_name, save = max(heads, key=lambda entry: -1.0 if entry[0] is None else entry[0])
        save(out / "predictor")
        document["exported"] = {"method": best_name, "val_score": best_score, "folder": str(out / "predictor"),
                                "chosen_on": "validation (TF-IDF is not a predictor featx exports)"}
    write_text(out / "frontier.md", markdown(title, rows, label), "frontier")
    write_text(out / "frontier.json", json.dumps(document, indent=2) + "\n", "frontier")
    document["plot"] = plot(title, rows, out / "frontier.png", label)
    return document


def _trained_rows(rows: list[dict[str, Any]], per_row: float, backbone: tuple[str, str, float],
                  recipe: tuple[tuple[str, Any], ...], texts: bool, counts: tuple[int, int], budget: _Budget,
                  splits: dict[str, Source | None], out: Path, seed: int, heads: list[Candidate], key: str,
                  echo: Callable[[str], None]) -> None:
    """The cached blocks head (texts) and the top-2 fine-tune of the first backbone, measured when they fit."""
    label, model, _ = backbone
    names = ("cached blocks:k=2", "fine-tune top-2")
    n_train, rows_all = counts  # the training rows, and every split's
    from featx.recipe import FinetuneConfig

    config = FinetuneConfig(model=model, seed=seed, **dict(recipe))
    estimate = per_row * (_STATES_WORK * rows_all + _TOP2_EPOCH_WORK * n_train)  # blocks: one epoch
    if texts and budget.allows(estimate):
        from featx.engine import extract
        from featx.train import HeadSpec, train_and_save

        started = time.perf_counter()
        states = {split: extract(source, out / "stores" / f"states-{split}.h5", model=model, cache_layer=-2,
                                 progress=None)
                  for split, source in splits.items() if source is not None}
        once = time.perf_counter() - started
        started = time.perf_counter()
        run = train_and_save(states["train"], [HeadSpec("blocks", {"k": 2})], out / "heads" / "blocks",
                             val=states.get("val"), test=states["test"], seed=seed)
        heads.append((run.rows[0]["val_score"], names[0], _saver(run.best)))
        rows.append({"method": names[0], "backbone": label, "score": run.best.metrics["test"].get(key),
                     "once": once, "each": time.perf_counter() - started})
        echo(f"frontier: {names[0]} {rows[-1]['score']:.4f} ({budget.left:.0f} s left)")
    elif texts:
        rows.append({"method": names[0], "backbone": label, "skipped": f"over the budget: about {estimate:,.0f} s, "
                                                                       f"{budget.left:,.0f} s were left"})
    estimate = per_row * (_TOP2_EPOCH_WORK * n_train * config.epochs + rows_all)
    if not budget.allows(estimate):
        rows.append({"method": names[1], "backbone": label, "skipped": f"over the budget: about {estimate:,.0f} s, "
                                                                       f"{budget.left:,.0f} s were left"})
        return
    from featx.finetune import finetune, load_finetuned

    started = time.perf_counter()
    folder = out / "finetune-top2"
    try:
        record = finetune(splits["train"], folder, val=splits["val"],  # type: ignore[arg-type]
                          config=config, progress=None)
        score = load_finetuned(folder).evaluate(splits["test"]).get(key)
    except FeatxError as e:  # the data does not suit it: said in the table, the other rows stand
        rows.append({"method": names[1], "backbone": label, "skipped": f"it refused the data: {e}"})
        return
    ranked_by = f"val_{key}"  # the figure heads are ranked by on validation (HEADLINE), as each epoch recorded it
    val_scores = [epoch[ranked_by] for epoch in record.get("epochs", []) if ranked_by in epoch]
    heads.append((max(val_scores) if val_scores else None, names[1], lambda target: _copy_whole(folder, target)))
    rows.append({"method": names[1], "backbone": label, "score": score, "once": 0.0,
                 "each": time.perf_counter() - started})
    echo(f"frontier: {names[1]} {score:.4f} ({budget.left:.0f} s left)")


def _copy_whole(source: Path, target: Path) -> None:
    """A checkpoint folder copied as the predictor: complete, or not there (featx.atomic)."""
    with atomic_folder(target, "predictor") as partial:
        shutil.copytree(source, partial, dirs_exist_ok=True)


def _saver(head: Any) -> Callable[[Path], Any]:
    """What exports a trained head as a predictor folder."""
    def save(folder: Path) -> Any:
        from featx.predictor import Predictor

        return Predictor(head).save(folder)
    return save
