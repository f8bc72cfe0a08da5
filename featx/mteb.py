"""MTEB's classification protocol, reproduced exactly, and the spread it hides.

MTEB 1.x (AbsTaskClassification and its logistic-regression evaluator, in the public
mteb repository) scores a task like this, and so does `mteb_scores` (no mteb import):

- one index array ``arange(n_train)`` lives across the task's experiments; before each
  experiment numpy's global generator is seeded with 42 and the array is shuffled in
  place (so each experiment reshuffles the previous order with the same draws);
- the training rows of an experiment are the first `samples_per_label` rows of each
  label met in that order, kept in that order;
- ``LogisticRegression(random_state=42, max_iter=100)`` is fitted on their
  embeddings (the model's own: normalised where the sentence-transformers model ends
  in Normalize) and scored on the whole test split; the task's score is the mean test
  accuracy over the experiments (10 for every English task; 8 rows per label unless
  the task says otherwise: MTEB_TASKS, read from mteb 1.12.94's task files).

One seed is one draw of the training rows. `seed_spread` repeats the whole task under
sampler seeds 0..S-1 and reports the distribution of the task score, which is what
two models' scores should be compared against. `mteb_protocol` runs it on a featx store's
vectors (the model's own embedding where the store holds it).
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from featx.backbones.st_modules import DeclaredEmbedding, read_declared
from featx.constraints import COUNT, NON_NEGATIVE
from featx.errors import FeatxError, ParameterError
from featx.heads.inputs import check_compatible, check_trainable, labelled
from featx.pooling import l2_normalized_rows
from featx.store import FeatureStore

MTEB_SEED = 42
MTEB_MAX_ITER = 100


@dataclass(frozen=True)
class MtebTask:
    """The settings MTEB gives one classification task."""

    name: str
    samples_per_label: int = 8
    experiments: int = 10
    eval_splits: tuple[str, ...] = ("test",)


# The English classification tasks of MTEB's English leaderboard, as mteb 1.12.94 (the 1.12
# line wrote the leaderboard's sentence-transformers results) sets them. A task that sets
# nothing takes AbsTaskClassification's defaults: metadata_dict.get("samples_per_label", 8)
# and .get("n_experiments", 10) (mteb/abstasks/AbsTaskClassification.py:47 and :52).
# Each line cites the file (under mteb/tasks/Classification/) and the lines of its values;
# tests/test_mteb.py pins the table.
MTEB_TASKS = {task.name: task for task in (
    # multilingual/AmazonCounterfactualClassification.py:23 (splits), :71-72 (10 experiments, 32 per label)
    MtebTask("AmazonCounterfactualClassification", samples_per_label=32, eval_splits=("validation", "test")),
    # eng/AmazonPolarityClassification.py:20
    MtebTask("AmazonPolarityClassification"),
    # multilingual/AmazonReviewsClassification.py:21
    MtebTask("AmazonReviewsClassification", eval_splits=("validation", "test")),
    # eng/Banking77Classification.py:20
    MtebTask("Banking77Classification"),
    # eng/EmotionClassification.py:20 (splits), :63-64 (10 experiments, 16 per label)
    MtebTask("EmotionClassification", samples_per_label=16, eval_splits=("validation", "test")),
    # eng/ImdbClassification.py:20
    MtebTask("ImdbClassification"),
    # multilingual/MassiveIntentClassification.py:75
    MtebTask("MassiveIntentClassification", eval_splits=("validation", "test")),
    # multilingual/MassiveScenarioClassification.py:75
    MtebTask("MassiveScenarioClassification", eval_splits=("validation", "test")),
    # multilingual/MTOPDomainClassification.py:30
    MtebTask("MTOPDomainClassification", eval_splits=("validation", "test")),
    # multilingual/MTOPIntentClassification.py:30
    MtebTask("MTOPIntentClassification", eval_splits=("validation", "test")),
    # eng/ToxicConversationsClassification.py:20 (splits), :49-50 (10 experiments, 16 per label)
    MtebTask("ToxicConversationsClassification", samples_per_label=16),
    # eng/TweetSentimentExtractionClassification.py:20 (splits), :49-50 (10 experiments, 32 per label)
    MtebTask("TweetSentimentExtractionClassification", samples_per_label=32),
)}

def mteb_task(name: str) -> MtebTask:
    """The preset for `name` (MTEB's task name); a one-line error lists the known ones."""
    if name not in MTEB_TASKS:
        raise ParameterError("task", f"{name!r} is not an MTEB English classification task featx knows: "
                                     + ", ".join(sorted(MTEB_TASKS)))
    return MTEB_TASKS[name]


def mteb_samples(y: np.ndarray, samples_per_label: int, experiments: int, seed: int = MTEB_SEED) -> list[np.ndarray]:
    """The training rows of each experiment, in the order MTEB feeds them to the classifier."""
    if samples_per_label < 1 or experiments < 1:
        raise ParameterError("k", f"rows per label and experiments must be positive, got "
                                  f"{samples_per_label} and {experiments}")
    y = np.asarray(y)
    order = np.arange(len(y))
    picked = []
    for _ in range(experiments):
        # np.random.seed(s); np.random.shuffle(a) is RandomState(s).shuffle(a): the same
        # Mersenne Twister draws, without touching the caller's global generator.
        np.random.RandomState(seed).shuffle(order)
        picked.append(order[_first_per_label(y[order], samples_per_label)])
    return picked


def _first_per_label(labels: np.ndarray, k: int) -> np.ndarray:
    """Positions (in order) of the first k occurrences of each label in `labels`."""
    by_label = np.argsort(labels, kind="stable")
    sorted_labels = labels[by_label]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(labels)]))
    rank = np.empty(len(labels), dtype=np.int64)
    rank[by_label] = np.arange(len(labels)) - group_start
    return np.flatnonzero(rank < k)


def mteb_scores(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, *, samples_per_label: int = 8,
                experiments: int = 10, seed: int = MTEB_SEED) -> dict[str, list[float]]:
    """Test accuracy and macro-F1 of each experiment of MTEB's protocol with sampler seed `seed`."""
    accuracy, macro_f1 = [], []
    for rows in mteb_samples(y, samples_per_label, experiments, seed):
        # MTEB also passes n_jobs=-1, which lbfgs ignores (scikit-learn 1.8 deprecates it): left out.
        model = LogisticRegression(random_state=MTEB_SEED, max_iter=MTEB_MAX_ITER)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # MTEB stops at 100 iterations too
            model.fit(X[rows], y[rows])
        predicted = model.predict(X_test)
        accuracy.append(float(accuracy_score(y_test, predicted)))
        macro_f1.append(float(f1_score(y_test, predicted, average="macro")))
    return {"accuracy": accuracy, "macro_f1": macro_f1}


def seed_spread(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, *, samples_per_label: int = 8,
                experiments: int = 10, seeds: Sequence[int] = range(50), progress: bool | None = None) -> dict[str, float]:
    """The task score (mean accuracy over the experiments) under each sampler seed: mean, sd, min, max.
    Costs len(seeds) times the protocol itself; `progress=None` shows a bar on a terminal."""
    from featx.progress import progress_bar

    scores = []
    with progress_bar(len(seeds), "mteb seed spread", unit="seeds", show=progress) as bar:
        for seed in seeds:
            scores.append(float(np.mean(mteb_scores(X, y, X_test, y_test, samples_per_label=samples_per_label,
                                                    experiments=experiments, seed=seed)["accuracy"])))
            bar.update()
    return {"seeds": len(scores), "mean": float(np.mean(scores)), "sd": float(np.std(scores, ddof=1)) if len(scores) > 1
            else 0.0, "min": float(np.min(scores)), "max": float(np.max(scores))}


def mteb_protocol(train: FeatureStore, test: FeatureStore, poolings: list[str] | None = None, *,
                  task: str | None = None, k: int | None = None, experiments: int | None = None,
                  seeds: int = 50) -> list[dict[str, Any]]:
    """MTEB's classification protocol on cached features (featx.mteb), one row per pooling.

    `task` takes rows per label and experiments from MTEB's preset for that task; `k` and
    `experiments` override it (default 8 and 10). The row's test accuracy is MTEB's
    number (sampler seed 42); ``seed_spread`` is the same task score under sampler seeds
    0..`seeds`-1 (`seeds=0` skips it). The features are the model's own embedding where
    the store holds it; a store extracted without the L2 normalisation its model declares
    is normalised here, and a pooling other than the declared one is flagged in the row.
    """
    preset = mteb_task(task) if task else MtebTask("custom")
    k = COUNT.check("k", preset.samples_per_label if k is None else k)
    experiments = COUNT.check("experiments", preset.experiments if experiments is None else experiments)
    seeds = NON_NEGATIVE.check("seeds", seeds)
    check_compatible(train, test, "test")
    check_trainable(train)
    declared = _declared_embedding(train)
    rows = []
    for pooling in poolings or list(train.poolings):
        X, y = labelled(train, pooling)
        X_test, y_test = labelled(test, pooling, train.classes)
        normalised_here = declared.normalize and not train.config.normalize
        if normalised_here:
            X, X_test = l2_normalized_rows(X), l2_normalized_rows(X_test)
        t0 = time.perf_counter()
        scores = mteb_scores(X, y, X_test, y_test, samples_per_label=k, experiments=experiments)
        row = {
            "head": f"mteb-logreg-k{k}-{pooling}", "kind": "logreg", "pooling": pooling, "task": preset.name,
            "k": k, "experiments": experiments,
            "chosen": f"{k} per label x {experiments} experiments, seed {MTEB_SEED}",
            "test_accuracy": float(np.mean(scores["accuracy"])), "test_accuracy_std": float(np.std(scores["accuracy"])),
            "test_macro_f1": float(np.mean(scores["macro_f1"])), "test_macro_f1_std": float(np.std(scores["macro_f1"])),
            "experiments_accuracy": scores["accuracy"], "normalised_at_train_time": normalised_here,
            "models_own_embedding": declared.pooling in (None, pooling) and (
                train.config.modules is not None or not declared.modules),
        }
        if seeds:
            row["seed_spread"] = seed_spread(X, y, X_test, y_test, samples_per_label=k, experiments=experiments,
                                             seeds=range(seeds))
        row["fit_seconds"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
    return rows


def _declared_embedding(store: FeatureStore) -> DeclaredEmbedding:
    """What the store's model folder declares as its own embedding (nothing when it cannot be found)."""
    from featx.backbones import resolve_model_folder

    try:
        return read_declared(resolve_model_folder(store.config.model))
    except FeatxError:
        return DeclaredEmbedding()
