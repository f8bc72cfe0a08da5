"""Training heads on cached features: one head, many heads in parallel, and the
evaluation protocols (`full`: train / select on validation / report on test;
`mteb`: few-shot logistic regression over repeated samples)."""
from __future__ import annotations

import inspect
import json
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed

from featx.atomic import make_folder
from featx.config import PROTOCOLS, ExtractConfig
from featx.constraints import FRACTION, JOBS, MEMORY_BUDGET, NON_NEGATIVE, Options, check_params
from featx.data import Source, read_texts
from featx.errors import FeatxError, ParameterError
from featx.hardware import peak_memory_mb
from featx.heads import HEAD_KINDS, TrainedHead, make_head, parse_head_spec
from featx.heads.base import Head, sequence_read, spec_value
from featx.heads.inputs import (
    HeldInputs,
    check_compatible,
    check_trainable,
    checked_states,
    checked_texts,
    labelled,
)
from featx.heads.rows import DEFAULT_MEMORY_BUDGET, map_blocks
from featx.heads.split import CarvedSplit
from featx.metrics import multilabel_metrics, task_metrics
from featx.mteb import mteb_protocol
from featx.progress import progress_bar
from featx.results import best_head, result_row, write_results
from featx.store import FeatureStore


@dataclass(frozen=True)
class HeadSpec:
    """One head to train: its kind and hyper-parameters, with a readable name."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> HeadSpec:
        kind, params = parse_head_spec(text)
        return cls(kind, params)

    @property
    def label(self) -> str:
        """The run folder's name: the kind, then each parameter and its value as the spec writes it
        (logreg-C0.1, hybrid-weights0.125|0.25|0.5 shown as hybrid-weights0.125_0.25_0.5)."""
        return self.kind + "".join(f"-{k}{spec_value(v, sep='_')}" for k, v in sorted(self.params.items()))


def train_head(store: FeatureStore, kind: str = "logreg", *, pooling: str | None = None,
               val: FeatureStore | None = None, seed: int = 0, texts: Sequence[str] | None = None,
               val_texts: Sequence[str] | None = None, memory_budget: int | str = DEFAULT_MEMORY_BUDGET,
               **params: Any) -> TrainedHead:
    """Fit one head of `kind` on a labelled store (validation: `val`, else a held-out fraction). A kind
    that reads texts too (hybrid) needs the `texts` the store was made from (and `val_texts` with `val`).
    Over `memory_budget` a kind that streams reads the rows from disk, as in `train_heads`."""
    pooling = pooling or store.poolings[0]
    budget = MEMORY_BUDGET.check("memory_budget", memory_budget)
    spec = HeadSpec(kind, params)
    given = checked_texts([spec.kind], {"train": texts, "val": val_texts}, {"train": store, "val": val})
    states = checked_states([spec.kind], {"train": store, "val": val})
    X, y = labelled(store, pooling, budget=budget)
    X_val, y_val = _validation(store, val, pooling, budget)
    held = HeldInputs(store.task, budget)
    return _fit(make_head(spec.kind, random_state=seed, **spec.params), spec,
                held.input(spec.kind, X, given.get("train"), states.get("train")),
                y, None if X_val is None else held.input(spec.kind, X_val, given.get("val"), states.get("val")), y_val,
                pooling, _StoreMeta.of(store))


def _fit(estimator: Head, spec: HeadSpec, X: Any, y: np.ndarray, X_val: Any, y_val: np.ndarray | None,
         pooling: str, store_meta: _StoreMeta) -> TrainedHead:
    t0 = time.perf_counter()
    if spec.params.get("cv"):  # cv=K selects by K folds of the training rows; validation rows are only reported
        X_val = y_val = None
    estimator.fit(X, y, X_val, y_val)
    return _trained(estimator, spec, pooling, store_meta, time.perf_counter() - t0)


def _trained(estimator: Head, spec: HeadSpec, pooling: str, store_meta: _StoreMeta, seconds: float) -> TrainedHead:
    return TrainedHead(estimator=estimator, pooling=pooling, class_names=store_meta.classes,
                       store_fingerprint=store_meta.fingerprint, config_json=store_meta.config.to_json(),
                       name=f"{spec.label}-{pooling}", fit_seconds=seconds,
                       peak_memory_mb=peak_memory_mb(), vector_codec=store_meta.codecs.get(pooling))


def _fit_all(specs: list[HeadSpec], inputs: list[tuple[Any, Any]], y: np.ndarray, y_val: np.ndarray,
             pooling: str, meta: _StoreMeta, seed: int, jobs: int) -> list[TrainedHead]:
    """Every spec's head, in order: heads whose kind fits them together (Head.batch_key: logreg's C
    grid) in one batch each, here, each timed as its share of the batch; the rest `jobs` at a time."""
    groups: dict[Any, list[int]] = defaultdict(list)
    estimators = [make_head(spec.kind, random_state=seed, **spec.params) for spec in specs]
    for i, (estimator, (X_in, _)) in enumerate(zip(estimators, inputs)):
        if (key := estimator.batch_key(X_in, y)) is not None:
            groups[(specs[i].kind, id(X_in), key)].append(i)
    heads: dict[int, TrainedHead] = {}
    with progress_bar(len(specs), f"{pooling} heads", unit="head") as bar:
        for members in (members for members in groups.values() if len(members) > 1):
            t0 = time.perf_counter()
            type(estimators[members[0]]).fit_batch([estimators[i] for i in members], inputs[members[0]][0], y,
                                                    inputs[members[0]][1], y_val, done=bar.update)
            share = (time.perf_counter() - t0) / len(members)
            heads.update({i: _trained(estimators[i], specs[i], pooling, meta, share) for i in members})
        alone = [i for i in range(len(specs)) if i not in heads]
        # One head left runs here, on every core, rather than in a worker given a share of them.
        workers = jobs if jobs < 0 else max(1, min(jobs, len(alone)))
        fitted = Parallel(n_jobs=workers, prefer="processes", return_as="generator")(
            delayed(_fit)(estimators[i], specs[i], inputs[i][0], y, inputs[i][1], y_val, pooling, meta) for i in alone)
        for position, head in enumerate(fitted if alone else ()):  # as each finishes, in order
            heads[alone[position]] = head
            bar.update(1)
    return [heads[i] for i in range(len(specs))]


@dataclass(frozen=True)
class _StoreMeta:
    """What a TrainedHead keeps of its training store; cheap to send to worker processes."""

    classes: tuple[str, ...]
    fingerprint: str
    config: ExtractConfig
    codecs: dict[str, dict[str, Any]]  # a compact store's codec by pooling (featx.store.quantize)

    @classmethod
    def of(cls, store: FeatureStore) -> _StoreMeta:
        codec = getattr(store, "codec", None)  # another store format keeps floats
        codecs = {p: c.to_json() for p in store.poolings if codec is not None and (c := codec(p)) is not None}
        return cls(store.classes or (), store.fingerprint, store.config, codecs)


def train_heads(train: FeatureStore, specs: list[HeadSpec], poolings: list[str] | None = None, *,
                val: FeatureStore | None = None, test: FeatureStore | None = None, val_fraction: float = 0.1,
                jobs: int = 1, seed: int = 0, texts: Mapping[str, Sequence[str] | None] | None = None,
                memory_budget: int = DEFAULT_MEMORY_BUDGET) -> tuple[list[TrainedHead], list[dict[str, Any]]]:
    """Fit every spec on every pooling (each pooling read once), heads in parallel.

    Every head sees the same validation rows, used for its selection (C, early stopping)
    and reported: the `val` store, or else one stratified `val_fraction` of train held
    out (seeded) and not trained on. Returns the heads and one result row per head.
    A kind that reads texts too (hybrid) needs `texts` {"train", "val", "test"}: the texts each
    given store was extracted from, checked row by row against the store's content hashes.
    Rows whose in-memory fit would hold more than `memory_budget` bytes stay on disk for the kinds
    that stream (featx.heads.rows); each head process holds about that much at most.
    """
    poolings = poolings or list(train.poolings)
    memory_budget = MEMORY_BUDGET.check("memory_budget", memory_budget)  # "512M" too
    check_trainable(train)
    meta = _StoreMeta.of(train)
    check_compatible(train, val, "validation")
    check_compatible(train, test, "test")
    given = checked_texts([spec.kind for spec in specs], texts or {}, {"train": train, "val": val, "test": test})
    states = checked_states([spec.kind for spec in specs], {"train": train, "val": val, "test": test})
    split = CarvedSplit(val_fraction, seed)
    heads: list[TrainedHead] = []
    for pooling in poolings:
        # A head on token states reads no pooling: it trains once, beside the first pooling's heads.
        here = [spec for spec in specs if pooling == poolings[0] or not sequence_read(HEAD_KINDS[spec.kind].reads)]
        if not here:
            continue
        X, y = labelled(train, pooling, budget=memory_budget)
        X_val, y_val = labelled(val, pooling, meta.classes, memory_budget) if val is not None else (None, None)
        train_parts = (X, given.get("train"), states.get("train"))
        val_parts = (X_val, given.get("val"), states.get("val"))
        if val is None:
            train_parts, y, val_parts, y_val = split.cut(train, train_parts, y)
        assert y_val is not None
        held = HeldInputs(train.task, memory_budget)
        inputs = [(held.input(spec.kind, *train_parts), held.input(spec.kind, *val_parts)) for spec in here]
        trained = _fit_all(here, inputs, y, y_val, pooling, meta, seed, jobs)
        for head, (_, X_val_in) in zip(trained, inputs):
            head.metrics = {"val": validation_metrics(head, X_val_in, y_val, meta.classes)}
            if val is None:
                head.metrics["val"]["source"] = f"{val_fraction:g} of train held out (seed {seed})"
                head.metrics["val"]["twins_in_train"] = split.leaks
        heads += trained
    rows = []
    for head in heads:
        if test is not None:
            head.metrics["test"] = head.evaluate(test, given.get("test"))
        rows.append(result_row(head))
    return heads, rows


def validation_metrics(head: TrainedHead, X_val: Any, y_val: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """The head's metrics on its validation rows; a multi-label head's also say what choosing each
    label's threshold there gained over a fixed 0.5 (`macro_f1_at_0.5`, `threshold_gain`)."""
    metrics = task_metrics(y_val, map_blocks(head.estimator.predict, X_val), names)
    if head.task == "multi":
        fixed = multilabel_metrics(y_val, (map_blocks(head.estimator.predict_proba, X_val) >= 0.5).astype(np.uint8),
                                   names)
        metrics.update({"macro_f1_at_0.5": fixed["macro_f1"], "micro_f1_at_0.5": fixed["micro_f1"],
                        "threshold_gain": round(metrics["macro_f1"] - fixed["macro_f1"], 6)})
    return metrics


@dataclass
class TrainingRun:
    """What `train_and_save` produced: the heads, their table rows, the best head by validation."""

    heads: list[TrainedHead]
    rows: list[dict[str, Any]]
    best: TrainedHead
    folder: Path
    exported: Path | None = None


def train_and_save(train: FeatureStore, specs: list[HeadSpec], out: str | Path, *, export: str | Path | None = None,
                   facts: dict[str, Any] | None = None, **fit: Any) -> TrainingRun:
    """Train every spec on every pooling (`fit`: train_heads' keywords: poolings, val, test,
    val_fraction, jobs, seed, texts), save each head under ``out/heads/<name>``, and export the
    best head by validation accuracy (never test) as a predictor folder when `export` is given.
    With `facts` (what the run was: stores, protocol, seed), ``out/results.json`` and
    ``results.md`` are written too. Every file is written atomically."""
    check_trainable(train)
    kinds, stores = [spec.kind for spec in specs], {"train": train, "val": fit.get("val"), "test": fit.get("test")}
    fit["texts"] = checked_texts(kinds, fit.get("texts") or {}, stores)  # before anything is written; hashed once
    checked_states(kinds, stores, load=False)
    out = make_folder(out, "results")  # a path under a file fails now, not after training
    heads, rows = train_heads(train, specs, **fit)
    for head in heads:
        head.save(out / "heads" / head.name)
    if facts is not None:
        write_results(out, rows, {**facts, "peak_memory_mb": {
            "process": peak_memory_mb(),  # featx train's own; a --jobs worker's is each head's (its row)
            "heads": max((head.peak_memory_mb or 0.0 for head in heads), default=0.0)}})
    best = best_head(heads, rows)
    exported = None
    if export is not None:
        from featx.predictor import Predictor

        exported = Predictor(best).save(export)
    return TrainingRun(heads, rows, best, out, exported)


def run_training(store: str | Path, out: str | Path, *, heads: Sequence[str] = (), grid: str | Path | None = None,
                 val: str | Path | None = None, test: str | Path | None = None, protocol: str = "full",
                 mteb: dict[str, Any] | None = None, export: str | Path | None = None,
                 texts: Mapping[str, Source] | None = None,
                 **fit: Any) -> TrainingRun | list[dict[str, Any]]:
    """`featx train` from paths: head specs (`heads` plus a `grid` file; DEFAULT_HEADS when both
    are empty) on the store at `store`, results in `out`; `fit`: poolings, val_fraction, jobs, seed
    (train_heads'). protocol ``full`` returns the TrainingRun of train_and_save; ``mteb`` (its
    settings in `mteb`: task, k, experiments, seeds; featx.mteb) returns its rows (written to `out`
    too). `texts`: the inputs the train / val / test stores were made from, for a head that reads
    texts (hybrid)."""
    from featx.heads import DEFAULT_HEADS
    from featx.store import open_store

    specs = [HeadSpec.parse(text) for text in [*heads, *(read_head_grid(grid) if grid else [])]]
    specs = specs or [HeadSpec(kind) for kind in DEFAULT_HEADS]
    defaults = inspect.signature(train_heads).parameters  # declared once, there
    fit = {**{name: defaults[name].default for name in ("val_fraction", "jobs", "seed")}, **fit,
           "poolings": list(fit.get("poolings") or ()) or None}
    check_params({"val_fraction": FRACTION, "jobs": JOBS, "seed": NON_NEGATIVE},
                 {name: fit[name] for name in ("val_fraction", "jobs", "seed")})
    Options(PROTOCOLS).check("protocol", protocol)
    if protocol == "mteb" and test is None:
        raise ParameterError("protocol", "mteb reports on a test store: pass --test STORE")
    train_store = open_store(store)
    val_store = open_store(val) if val else None
    test_store = open_store(test) if test else None
    for pooling in fit["poolings"] or ():
        train_store.features(pooling)  # a missing pooling fails now, with the list of stored ones
    facts = {"train": str(store), "val": val and str(val), "test": test and str(test), "protocol": protocol,
             "seed": fit["seed"], **({"task": mteb["task"]} if mteb and mteb.get("task") else {})}
    if protocol == "mteb":
        assert test_store is not None
        check_trainable(train_store)
        make_folder(out, "results")
        rows = mteb_protocol(train_store, test_store, fit["poolings"], **(mteb or {}))
        write_results(Path(out), rows, facts)
        return rows
    read = {role: read_texts(source) for role, source in (texts or {}).items()}
    return train_and_save(train_store, specs, out, export=export, facts=facts, val=val_store, test=test_store,
                          texts=read, **fit)


def read_head_grid(path: str | Path) -> list[str]:
    """Head specs from a JSON file holding a list of strings like "logreg:C=0.1"."""
    try:
        specs = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FeatxError(f"cannot read head grid {path}: {e}") from None
    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
        raise FeatxError(f"head grid {path} must be a JSON list of spec strings like \"logreg:C=0.1\"")
    return specs


def _validation(train: FeatureStore, val: FeatureStore | None, pooling: str,
                budget: int) -> tuple[Any, np.ndarray | None]:
    if val is None:
        return None, None
    check_compatible(train, val, "validation")
    return labelled(val, pooling, train.classes, budget)
