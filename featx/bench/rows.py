"""The rows of `featx bench`, one function per method: each runs in its own child process
(featx.bench.runner) and returns the row it measured, stamped with the dataset, model, dtype,
hardware and versions."""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from featx._version import __version__
from featx.bench.suite import Split, Suite
from featx.errors import FeatxError
from featx.metrics import TASK_SCORES

if TYPE_CHECKING:
    from featx.data import InputSource, Source


def _stamp(suite: Suite, dtype: str) -> dict[str, Any]:
    import torch
    import transformers

    from featx.hardware import describe_hardware, resolve_device

    hardware = describe_hardware(resolve_device(suite.device))
    return {"dataset": suite.name, "model": suite.model, "dtype": dtype, "device": hardware.get("gpu") or hardware["cpu"],
            "threads": hardware["torch_threads"], "hardware": hardware,
            "versions": {"featx": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
                         "python": platform.python_version()}}


def _open_text_split(split: Split) -> InputSource:
    """A text split; image splits have no TF-IDF row and fine-tune through featx.finetune's image path."""
    from featx.data import InputSource

    source = _open_split(split)
    if not isinstance(source, InputSource):
        raise FeatxError(f"{split.path} is read as images: this stage takes texts")
    return source


def _open_split(split: Split) -> Source:
    from featx.modalities import open_source

    return open_source(split.path, text_column=split.text_column, label_column=split.label_column,
                       id_column=split.id_column, header=split.header, rows_mod=split.rows_mod, **dict(split.read))


def extract_row(suite: Suite, split: str, store_path: Path, states: bool = False) -> dict[str, Any]:
    """One split's extraction; with `states`, the store keeps token states as the suite's [blocks] says."""
    from featx.extraction.engine import extract

    kept = {k: v for k, v in (suite.blocks or {}).items() if k in ("cache_layer", "cache_dtype")} if states else {}
    if states:
        kept.setdefault("cache_layer", -2)
    t0 = time.perf_counter()
    with extract(_open_split(getattr(suite, split)), store_path, model=suite.model, pooling=suite.poolings,
                 normalize=suite.normalize, max_length=suite.max_length, dtype=suite.dtype, device=suite.device,
                 progress=False, **suite.long, **kept) as store:
        info = store.info()
    seconds = time.perf_counter() - t0
    return {"method": "extract-states" if states else "extract", "split": split,
            **({"states": info["states"]} if states else {}), "rows": info["rows"], "pooling": ",".join(suite.poolings),
            "accuracy": None, "macro_f1": None, "seeds": [],
            "seconds": {"extract": round(info["timings"].get("extract_s", seconds), 2), "total": round(seconds, 2)},
            "rows_per_s": info["timings"].get("rows_per_s"), "truncated_rows": info["truncated_rows"],
            "cost_units": info["timings"].get("cost_units"),
            "skipped_rows": info["skipped_rows"],
            "params": {k: info["config"][k] for k in ("max_length", "long", "long_stride", "long_pooling", "keep_windows",
                                                      "preprocess", "cache_layer", "cache_dtype") if k in info["config"]},
            **_stamp(suite, info["dtype"])}


def head_row(suite: Suite, spec: str, pooling: str, stores: dict[str, str]) -> dict[str, Any]:
    from featx.results import result_row
    from featx.train import HeadSpec

    heads, scored, train = _fit_and_score(suite, spec, [pooling], stores)
    warnings = [result_row(head).get("warning") for head in heads]
    return {"method": f"frozen+{HeadSpec.parse(spec).kind}", "head": spec, "pooling": pooling, **scored,
            **({"warnings": warnings} if any(warnings) else {}),
            "params": HeadSpec.parse(spec).params, **_stamp(suite, train.config.dtype)}


def blocks_row(suite: Suite, spec: str, stores: dict[str, str]) -> dict[str, Any]:
    """A blocks head on the token-state stores: its cost per head is training plus validation (fit)
    and scoring the test split (eval); the stores' extraction is the one-time cost, in its own rows."""
    from featx.train import HeadSpec

    heads, scored, train = _fit_and_score(suite, spec, None, stores)
    fitted = heads[-1].estimator
    return {"method": "cached-blocks", "head": spec, "pooling": fitted.pooling, **scored,
            "epochs": [head.estimator.history_ for head in heads],
            "trainable_parameters": sum(p.numel() for p in fitted.model_.parameters() if p.requires_grad),
            "params": {**HeadSpec.parse(spec).params, "cache_layer": train.config.cache_layer,
                       "cache_dtype": train.config.cache_dtype}, **_stamp(suite, fitted.dtype_)}


def _fit_and_score(suite: Suite, spec: str, poolings: list[str] | None,
                   stores: dict[str, str]) -> tuple[list[Any], dict[str, Any], Any]:
    """One head of `spec` per seed, trained on the train store (val selects) and scored on test:
    (the heads, their row fields: the task's test metrics (summarise), choices, seconds per stage, the train store)."""
    from featx.results import result_row
    from featx.store import open_store
    from featx.train import HeadSpec, train_heads

    train, test = open_store(stores["train"]), open_store(stores["test"])
    val = open_store(stores["val"]) if "val" in stores else None
    heads, runs, fit_s, eval_s = [], [], [], []
    for seed in suite.seeds:
        t0 = time.perf_counter()
        (head,), _ = train_heads(train, [HeadSpec.parse(spec)], poolings, val=val, seed=seed)
        t1 = time.perf_counter()
        runs.append(head.evaluate(test))
        eval_s.append(time.perf_counter() - t1)
        fit_s.append(t1 - t0)
        heads.append(head)
    return heads, {**summarise(runs), **threshold_gain([head.metrics.get("val") for head in heads]),
                   "seeds": list(suite.seeds),
                   "chosen": [result_row(head)["chosen"] for head in heads],
                   "seconds": {"fit": round(float(np.mean(fit_s)), 3), "eval": round(float(np.mean(eval_s)), 3),
                               "total": round(float(np.mean(fit_s) + np.mean(eval_s)), 3)}}, train


def mteb_row(suite: Suite, pooling: str, stores: dict[str, str]) -> dict[str, Any]:
    from featx.mteb import MTEB_SEED, mteb_protocol
    from featx.store import open_store

    train, test = open_store(stores["train"]), open_store(stores["test"])
    mteb = suite.mteb or {}
    t0 = time.perf_counter()
    (row,) = mteb_protocol(train, test, [pooling], task=mteb.get("task"), k=mteb.get("k"),
                           experiments=mteb.get("experiments"), seeds=mteb.get("seeds", 50))
    seconds = time.perf_counter() - t0
    k, experiments = row["k"], row["experiments"]
    return {"method": "mteb-fewshot", "pooling": pooling, "task": "single", "metric": "accuracy",
            "score": row["test_accuracy"], "accuracy": row["test_accuracy"],
            "accuracy_std": row["test_accuracy_std"], "macro_f1": row["test_macro_f1"],
            "macro_f1_std": row["test_macro_f1_std"], "n_runs": experiments, "seeds": [MTEB_SEED],
            "seed_spread": row.get("seed_spread"), "seconds": {"fit": round(seconds, 3), "total": round(seconds, 3)},
            "params": {"task": row["task"], "k": k, "experiments": experiments}, **_stamp(suite, train.config.dtype)}


def finetune_row(suite: Suite, name: str, params: dict[str, Any], checkpoint: str) -> dict[str, Any]:
    from featx.finetune import finetune, load_finetuned
    from featx.finetune.recipe import FinetuneConfig

    runs, train_s, eval_s, epochs, validation = [], [], [], [], []
    for seed in suite.seeds:
        config = FinetuneConfig(model=suite.model, dtype=suite.dtype, seed=seed, **params)
        t0 = time.perf_counter()
        record = finetune(_open_split(suite.train), f"{checkpoint}-seed{seed}", config=config, device=suite.device,
                          val=_open_split(suite.val) if suite.val is not None else None, progress=False)
        train_s.append(time.perf_counter() - t0)
        t1 = time.perf_counter()
        predictor = load_finetuned(f"{checkpoint}-seed{seed}", device=suite.device)
        runs.append(predictor.evaluate(_open_split(suite.test)))
        eval_s.append(time.perf_counter() - t1)
        epochs.append(record["epochs"])
        best = record["epochs"][record["best_epoch"] - 1] if record.get("best_epoch") else {}
        validation.append({"macro_f1": best["val_macro_f1"], "macro_f1_at_0.5": best["val_macro_f1_at_0.5"]}
                          if "val_macro_f1_at_0.5" in best else None)
    method = "finetune-lora" if "lora_rank" in params else "finetune-partial" if "train_layers" in params \
        else "finetune-full"
    return {"method": method, "variant": name, "pooling": params.get("pooling", "mean"),
            **summarise(runs), **threshold_gain(validation), "seeds": list(suite.seeds), "epochs": epochs,
            "trainable_parameters": record["trainable_parameters"],
            "seconds": {"train": round(float(np.mean(train_s)), 2), "eval": round(float(np.mean(eval_s)), 2),
                        "total": round(float(np.mean(train_s) + np.mean(eval_s)), 2)},
            "params": {**params, "budget_note": suite.budget_note}, **_stamp(suite, record["dtype"])}


def tfidf_row(suite: Suite) -> dict[str, Any]:
    """The classical baseline of the suite's task: logistic regression (one-vs-rest for multi-label), or ridge."""
    from featx.bench.tfidf import tfidf_baseline
    from featx.heads.tfidf import TFIDF_PARAMS

    scored, fit_s, eval_s, chosen, runs, validation = [], [], [], [], [], []
    for seed in suite.seeds:
        run = tfidf_baseline(_open_text_split(suite.train),
                             _open_text_split(suite.val) if suite.val is not None else None,
                             _open_text_split(suite.test), seed=seed)
        scored.append(run["metrics"])
        validation.append(run.get("validation"))
        fit_s.append(run["seconds"]["fit"])
        eval_s.append(run["seconds"]["eval"])
        swept = "alpha" if "alpha" in run else "C"
        chosen.append(f"{swept}={run[swept]:.3g} ({run['selection']})")
        runs.append({k: run[k] for k in (swept, "curve", "vocabulary", "warning")})
    linear = "ridge" if scored[0].get("task") == "regression" else "logreg"
    return {"method": f"tfidf+{linear}", "head": f"tfidf 1-2-grams + {linear}", "pooling": "-",
            **summarise(scored), **threshold_gain(validation), "seeds": list(suite.seeds), "chosen": chosen, "runs": runs,
            "seconds": {"fit": round(float(np.mean(fit_s)), 3), "eval": round(float(np.mean(eval_s)), 3),
                        "total": round(float(np.mean(fit_s) + np.mean(eval_s)), 3)},
            "params": {**TFIDF_PARAMS, "ngram_range": list(TFIDF_PARAMS["ngram_range"])},
            **_stamp(suite, "fp64")}


def hybrid_row(suite: Suite, pooling: str, stores: dict[str, str]) -> dict[str, Any]:
    """The hybrid head trained as `featx train` trains it, on the suite's texts (checked against the stores)."""
    from featx.bench.tfidf import VAL_FRACTION
    from featx.data import read_texts
    from featx.heads.hybrid import DENSE_WEIGHTS
    from featx.heads.tfidf import TFIDF_PARAMS
    from featx.store import open_store
    from featx.train import HeadSpec, train_heads

    train, test = open_store(stores["train"]), open_store(stores["test"])
    val = open_store(stores["val"]) if "val" in stores else None
    splits = {"train": suite.train, "test": suite.test, **({"val": suite.val} if suite.val is not None else {})}
    texts = {role: read_texts(_open_text_split(split)) for role, split in splits.items() if split is not None}
    scored, fit_s, eval_s, chosen, runs, validation = [], [], [], [], [], []
    for seed in suite.seeds:
        t0 = time.perf_counter()
        (head,), _ = train_heads(train, [HeadSpec("hybrid")], [pooling], val=val, val_fraction=VAL_FRACTION,
                                 seed=seed, texts=texts)
        t1 = time.perf_counter()
        scored.append(head.evaluate(test, texts["test"]))
        eval_s.append(time.perf_counter() - t1)
        fit_s.append(t1 - t0)
        fitted = head.estimator
        selection = "validation" if val is not None else f"{VAL_FRACTION:g} of train held out (seed {seed})"
        chosen.append(f"weight={fitted.weight_:g}, C={fitted.C_:.3g} ({selection})")
        runs.append({"C": fitted.C_, "weight": fitted.weight_, "curve": fitted.curve_,
                     "vocabulary": len(fitted.vectorizer_.vocabulary_), "dim": fitted.n_features_in_,
                     "warning": fitted.selection_warning()})
        validation.append(head.metrics.get("val"))
    linear = "ridge" if scored[0].get("task") == "regression" else "logreg"  # the hybrid's regression is a ridge
    return {"method": f"hybrid+{linear}", "head": f"tfidf 1-2-grams + frozen {pooling} + {linear}", "pooling": pooling,
            **summarise(scored), **threshold_gain(validation), "seeds": list(suite.seeds), "chosen": chosen, "runs": runs,
            "seconds": {"fit": round(float(np.mean(fit_s)), 3), "eval": round(float(np.mean(eval_s)), 3),
                        "total": round(float(np.mean(fit_s) + np.mean(eval_s)), 3)},
            "params": {**TFIDF_PARAMS, "ngram_range": list(TFIDF_PARAMS["ngram_range"]),
                       "dense_weights": list(DENSE_WEIGHTS)},
            **_stamp(suite, train.config.dtype)}


# The test metrics a row keeps, per task: the same as featx train's table (featx.metrics.TASK_SCORES);
# the first is the task's headline (featx.metrics.HEADLINE), also kept as ``score``.
ROW_METRICS = {task: scores["test"] for task, scores in TASK_SCORES.items()}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row's test figures over its seeds' metrics: the task, each of ROW_METRICS' means (and
    standard deviation over several seeds), ``score`` (the headline) and ``metric`` (its name).
    Single-label rows are as they always were; other tasks have ``accuracy`` None."""
    from featx.metrics import HEADLINE

    task = runs[0].get("task", "single")
    row: dict[str, Any] = {"task": task, "metric": HEADLINE[task][0], "accuracy": None, "macro_f1": None,
                           "n_runs": len(runs)}
    for key in ROW_METRICS[task]:
        values = [float(run[key]) for run in runs if run.get(key) is not None]
        row[key] = float(np.mean(values)) if values else None
        row[f"{key}_std"] = float(np.std(values)) if len(values) > 1 else None
    row["score"] = row[HEADLINE[task][0]]
    return row


def threshold_gain(validation: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Multi-label rows: what choosing each label's threshold on validation gained there over a fixed
    0.5, in macro-F1 (mean over seeds): ``val_macro_f1`` (tuned), ``val_macro_f1_at_0.5`` and
    ``val_threshold_gain``. Empty for other tasks."""
    kept = [metrics for metrics in validation if metrics and "macro_f1_at_0.5" in metrics]
    if not kept:
        return {}
    tuned = float(np.mean([m["macro_f1"] for m in kept]))
    fixed = float(np.mean([m["macro_f1_at_0.5"] for m in kept]))
    return {"val_macro_f1": tuned, "val_macro_f1_at_0.5": fixed, "val_threshold_gain": round(tuned - fixed, 6)}
