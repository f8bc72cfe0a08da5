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
    from featx.modalities import modality_of

    given = (train, test, *([val] if val is not None else []))
    if len({type(source) for source in given}) > 1:
        raise FeatxError(f"featx frontier reads {train.name} and the other inputs differently: give train, "
                         "--val and --test as the same kind of input (all texts, or all images)")
    modality = modality_of(train)
    if not modality.frontier_backbones:
        raise FeatxError(f"featx frontier has no methods for {modality.name} inputs (a modality names its "
                         "frontier_backbones)")
    run = _Run({"train": train, "val": val, "test": test}, make_folder(out, "frontier"), _Budget(budget_s), seed, echo)
    if run.texts:
        run.tfidf()
    backbones: tuple[tuple[str, str, float], ...] = modality.frontier_backbones
    for index, backbone in enumerate(backbones):
        run.frozen(backbone, first=index == 0)
    run.blocks_and_finetune(backbones[0], modality.frontier_finetune)
    return run.written(budget_s)


class _Run:
    """One frontier run: the splits, what has been measured (rows, stores, exportable heads), the budget."""

    def __init__(self, splits: dict[str, Source | None], out: Path, budget: _Budget, seed: int,
                 echo: Callable[[str], None]) -> None:
        self.splits, self.out, self.budget, self.seed, self.echo = splits, out, budget, seed, echo
        train, test = splits["train"], splits["test"]
        assert train is not None and test is not None
        self.train: Source = train
        self.test: Source = test
        self.texts = isinstance(self.train, InputSource)  # TF-IDF, the hybrid and cached token states read texts
        summary = self.train.scan()
        self.task, self.n_train = summary.task, summary.n_rows
        self.key, self.label = HEADLINE[self.task][0], f"test {HEADLINE[self.task][1]}"
        self.linear = "ridge" if self.task == "regression" else "logreg"
        # Every split's rows, counted once (a scan is a pass over the whole input, hashing it): the estimates use it.
        self.rows_all = self.n_train + sum(s.scan().n_rows for k, s in splits.items() if k != "train" and s)
        self.rows: list[dict[str, Any]] = []
        self.stores: dict[str, dict[str, Any]] = {}
        self.per_row: float | None = None  # seconds a row of the first backbone's extraction
        self.heads: list[Candidate] = []

    def skipped(self, method: str, backbone: str, estimate: float) -> None:
        self.rows.append({"method": method, "backbone": backbone, "skipped": f"over the budget: about "
                          f"{estimate:,.0f} s, {self.budget.left:,.0f} s were left"})

    def tfidf(self) -> None:
        from featx.bench.tfidf import tfidf_baseline

        t0 = time.perf_counter()
        baseline = tfidf_baseline(self.train, self.splits["val"], self.test, seed=self.seed)  # type: ignore[arg-type]
        self.rows.append({"method": f"TF-IDF 1-2-grams + {self.linear}", "backbone": "-",
                          "score": baseline["metrics"].get(self.key), "once": 0.0, "each": time.perf_counter() - t0})
        self.echo(f"frontier: TF-IDF {self.rows[-1]['score']:.4f} ({self.rows[-1]['each']:.0f} s; "
                  f"{self.budget.left:.0f} s left)")

    def extract_all(self, model: str, name: str, **options: Any) -> float:
        """Extract every split with `model` into stores named `name` (seconds)."""
        from featx.extraction.engine import extract

        started, found = time.perf_counter(), {}
        for split, source in self.splits.items():
            if source is not None:
                found[split] = extract(source, self.out / "stores" / f"{name}-{split}.h5", model=model, progress=None,
                                       **options)
        self.stores[name] = found
        return time.perf_counter() - started

    def train_one(self, name: str, spec: Any, method: str, folder: str, texts: bool = False) -> tuple[float, float]:
        """(test score, seconds) of one head on the stores `name`, saved under heads/`folder`; kept as an
        exportable candidate."""
        from featx.train import train_and_save

        given = self.stores[name]
        read = {split: read_texts(source) if source is not None else None for split, source in self.splits.items()} \
            if texts else None
        started = time.perf_counter()
        run = train_and_save(given["train"], [spec], self.out / "heads" / folder, val=given.get("val"),
                             test=given["test"], seed=self.seed, texts=read)
        self.heads.append((run.rows[0]["val_score"], method, _saver(run.best)))
        return run.best.metrics["test"].get(self.key), time.perf_counter() - started

    def frozen(self, backbone: tuple[str, str, float], first: bool) -> None:
        """The frozen backbone with a linear head (and, on the first backbone of texts, the hybrid)."""
        from featx.train import HeadSpec

        label, model, work = backbone
        name, method = label.lower(), f"frozen {label} + {self.linear}"
        if self.per_row is not None and not self.budget.allows(self.per_row * work * self.rows_all):
            self.skipped(method, label, self.per_row * work * self.rows_all)
            return
        try:
            once = self.extract_all(model, name)
        except FeatxError as e:  # a backbone that is not installed (mpnet ships in packages of its own)
            if first:
                raise
            self.rows.append({"method": method, "backbone": label, "skipped": str(e)})
            return
        self.per_row = self.per_row or once / self.rows_all
        score, each = self.train_one(name, HeadSpec(self.linear), method, name)
        self.rows.append({"method": method, "backbone": label, "score": score, "once": once, "each": each})
        self.echo(f"frontier: {method} {score:.4f} ({once:.0f} s once, {each:.0f} s; {self.budget.left:.0f} s left)")
        if not (self.texts and first):
            return
        # The hybrid reuses the first backbone's stores: its cost is TF-IDF's and a sweep of fits.
        hybrid, estimate = f"hybrid (TF-IDF + frozen {label})", self.rows[0]["each"] * 8  # 5 weights x 11 Cs vs 11 Cs
        if not self.budget.allows(estimate):
            self.skipped(hybrid, label, estimate)
            return
        score, each = self.train_one(name, HeadSpec("hybrid"), hybrid, name, texts=True)
        self.rows.append({"method": hybrid, "backbone": label, "score": score, "once": once, "each": each})
        self.echo(f"frontier: hybrid {score:.4f} ({each:.0f} s; {self.budget.left:.0f} s left)")

    def blocks_and_finetune(self, backbone: tuple[str, str, float], recipe: tuple[tuple[str, Any], ...]) -> None:
        """The cached blocks head (texts) and the top-2 fine-tune of the first backbone, measured when they fit."""
        from featx.finetune.recipe import FinetuneConfig
        from featx.train import HeadSpec

        label, model, _ = backbone
        per_row = self.per_row or 0.0
        estimate = per_row * (_STATES_WORK * self.rows_all + _TOP2_EPOCH_WORK * self.n_train)  # blocks: one epoch
        if self.texts and self.budget.allows(estimate):
            once = self.extract_all(model, "states", cache_layer=-2)
            score, each = self.train_one("states", HeadSpec("blocks", {"k": 2}), "cached blocks:k=2", "blocks")
            self.rows.append({"method": "cached blocks:k=2", "backbone": label, "score": score, "once": once,
                              "each": each})
            self.echo(f"frontier: cached blocks:k=2 {score:.4f} ({self.budget.left:.0f} s left)")
        elif self.texts:
            self.skipped("cached blocks:k=2", label, estimate)
        config = FinetuneConfig(model=model, seed=self.seed, **dict(recipe))
        estimate = per_row * (_TOP2_EPOCH_WORK * self.n_train * config.epochs + self.rows_all)
        if self.budget.allows(estimate):
            self.finetune(label, config)
        else:
            self.skipped("fine-tune top-2", label, estimate)

    def finetune(self, label: str, config: Any) -> None:
        from featx.finetune import finetune, load_finetuned

        started, folder, method = time.perf_counter(), self.out / "finetune-top2", "fine-tune top-2"
        try:
            record = finetune(self.train, folder, val=self.splits["val"], config=config,
                              progress=None)
            score = load_finetuned(folder).evaluate(self.test).get(self.key)
        except FeatxError as e:  # the data does not suit it: said in the table, the other rows stand
            self.rows.append({"method": method, "backbone": label, "skipped": f"it refused the data: {e}"})
            return
        ranked_by = f"val_{self.key}"  # the figure heads are ranked by on validation (HEADLINE), as each epoch recorded
        val_scores = [epoch[ranked_by] for epoch in record.get("epochs", []) if ranked_by in epoch]
        self.heads.append((max(val_scores) if val_scores else None, method,
                           lambda target: _copy_whole(folder, target)))
        self.rows.append({"method": method, "backbone": label, "score": score, "once": 0.0,
                          "each": time.perf_counter() - started})
        self.echo(f"frontier: {method} {score:.4f} ({self.budget.left:.0f} s left)")

    def written(self, budget_s: float) -> dict[str, Any]:
        """The table, JSON and plot written in `out`, the best candidate exported; the JSON document."""
        import torch

        from featx.hardware import describe_hardware

        pareto(self.rows)
        val = self.splits["val"]
        title = f"{self.train.name} ({self.task}, {self.n_train:,} training rows, budget {budget_s:,.0f} s)"
        first = next(iter(self.stores.values()))
        document = {"hardware": describe_hardware(torch.device("cpu")), "dtype": first["train"].config.dtype,
                    "train": self.train.name, "val": val.name if val is not None else "10 % of train (seeded)",
                    "test": self.test.name, "task": self.task, "metric": self.label, "budget_s": budget_s,
                    "seed": self.seed, "wall_s": round(time.perf_counter() - self.budget.start, 1), "rows": self.rows}
        if self.heads:
            best_score, best_name, save = max(self.heads, key=lambda entry: -1.0 if entry[0] is None else entry[0])
            save(self.out / "predictor")
            document["exported"] = {"method": best_name, "val_score": best_score, "folder": str(self.out / "predictor"),
                                    "chosen_on": "validation (TF-IDF is not a predictor featx exports)"}
        write_text(self.out / "frontier.md", markdown(title, self.rows, self.label), "frontier")
        write_text(self.out / "frontier.json", json.dumps(document, indent=2) + "\n", "frontier")
        document["plot"] = plot(title, self.rows, self.out / "frontier.png", self.label)
        return document


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
