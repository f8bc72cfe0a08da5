"""What each head kind reads of a store's rows (`Head.reads`): its vectors, the texts beside
them (hybrid), its token states (blocks) or its window vectors (windows); checked before
anything trains."""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featx.errors import FeatxError, FeatxWarning
from featx.heads.base import HEAD_KINDS, sequence_read
from featx.heads.hybrid import TextVectors
from featx.heads.rows import block_rows_for, fits_in_memory
from featx.heads.tfidf import check_texts_match
from featx.metrics import labels_as
from featx.store import FeatureStore
from featx.store.rows import StoredRows
from featx.store.states import RowSequences

# How each role's texts are given on the command line (featx train).
_TEXT_FLAGS = {"train": "--texts", "val": "--val-texts", "test": "--test-texts"}


def checked_texts(kinds: Sequence[str], texts: Mapping[str, Sequence[str] | None],
                   stores: Mapping[str, FeatureStore | None]) -> dict[str, Sequence[str]]:
    """The texts of each given store, when a kind reads texts: present, and the stores' rows."""
    if not any("texts" in HEAD_KINDS[kind].reads for kind in kinds):
        return {}
    checked: dict[str, Sequence[str]] = {}
    for role, store in stores.items():
        if store is None:
            continue
        given = texts.get(role)
        if given is None:
            raise FeatxError(f"the hybrid head reads each row's text beside its vector: give the input the {role} "
                             f"store {store.path} was extracted from ({_TEXT_FLAGS[role]} INPUT)")
        checked[role] = check_texts_match(store, given, f"the {role} texts ({_TEXT_FLAGS[role]})")
    return checked


def checked_states(kinds: Sequence[str], stores: Mapping[str, FeatureStore | None],
                   load: bool = True) -> dict[str, RowSequences]:
    """The token states or window vectors of the train and val stores (in memory; none without
    `load`), when a kind reads them; every given store (test too) must keep them."""
    reads = {read for kind in kinds if (read := sequence_read(HEAD_KINDS[kind].reads))}
    if not reads:
        return {}
    if len(reads) > 1:
        raise FeatxError("blocks heads train on token states and windows heads on window vectors, which no store "
                         "keeps both of: train them on their own stores, one command each")
    read = reads.pop()
    for role, store in stores.items():
        if store is not None and store.config.sequences != read:
            raise FeatxError(_NEEDS[read].format(role=role, path=store.path))
    return {role: store.token_states() for role, store in stores.items()
            if load and store is not None and role != "test"}


_NEEDS = {"states": "the blocks head trains on token states, and the {role} store {path} keeps none: extract it "
                    "with --cache-layer L (featx extract ... --cache-layer -2)",
          "windows": "the windows head trains on window vectors, and the {role} store {path} keeps none: extract "
                     "it with --long chunk --keep-windows"}


def head_input(reads: tuple[str, ...], X: Any, texts: Sequence[str] | None = None,
               states: RowSequences | None = None) -> Any:
    """What a head reading `reads` (`Head.reads`) takes, in the one place that decides it for
    training, scoring a store and predicting: the token states or window vectors (`states`), or
    TextVectors of `texts` beside the vectors `X` (a kind that reads texts, given them), or `X`."""
    if sequence_read(reads):
        return states
    if "texts" not in reads or texts is None:
        return X
    return TextVectors(texts, X)


def labelled(store: FeatureStore, pooling: str, classes: tuple[str, ...] | None = None,
             budget: int | None = None) -> tuple[Any, np.ndarray]:
    """Features and labels; with `classes` (the training store's), labels re-indexed into them by name.
    With a memory `budget` (bytes), features an in-memory fit would hold more than that of stay on disk,
    as StoredRows read a block at a time (featx.heads.rows)."""
    X, y = _on_disk(store, pooling, budget) if budget is not None else (None, None)
    if X is None:
        X, y = store.load(pooling)
    if y is None:
        raise FeatxError(f"{store.path} has no labels: heads need a labelled store (extract with --label-column)")
    if classes is not None:
        y = labels_as(y, store.classes or (), classes, str(store.path))
    return X, y


def _on_disk(store: FeatureStore, pooling: str, budget: int) -> tuple[Any, np.ndarray | None]:
    """(StoredRows, labels) of the rows holding vectors when an in-memory fit of them would exceed `budget`,
    else (None, None). Rows stream from an HDF5 store (featx.store.rows); another format's store is loaded."""
    if not isinstance(store, FeatureStore):
        return None, None
    readable = store.readable()
    rows = np.arange(len(store)) if readable is None else readable
    if fits_in_memory(len(rows), store.dim, budget):
        return None, None
    X = StoredRows(store.path, f"features/{pooling}", rows, block_rows_for(store.dim, budget),
                   opened=store.features(pooling))
    return X, None if store.labels is None else store.labels[rows]


def check_trainable(store: FeatureStore) -> None:
    """Refuse a training store without labels, or whose readable rows hold fewer than two classes."""
    labels = store.labels
    if labels is None:
        raise FeatxError(f"{store.path} has no labels: heads need a labelled store (extract with --label-column)")
    readable = store.readable()
    if store.task != "single":  # a multi-label or regression head needs rows to tell apart
        if len(labels) < 2 or (store.task == "multi" and not labels.any()):
            raise FeatxError(f"{store.path} holds {len(labels)} rows{' and no label' if len(labels) > 1 else ''}: "
                             "a head needs at least two rows and one label")
        return
    present = np.unique(labels if readable is None else labels[readable])
    if len(present) < 2:  # one class leaves a classifier nothing to tell apart
        name = (store.classes or ())[int(present[0])] if len(present) else "none"
        raise FeatxError(f"{store.path} holds rows of one class only ({name}): a classifier needs at least two")


def check_compatible(train: FeatureStore, other: FeatureStore | None, role: str) -> None:
    """Refuse a validation or test store extracted with another config than the training store."""
    if other is None:
        return
    if other.classes is not None and train.classes is not None and other.task != train.task:
        raise FeatxError(f"the {role} store {other.path} holds {other.task} labels and {train.path} {train.task} ones: "
                         "extract both with the same --multi-label / --label-columns / --target")
    if other.fingerprint != train.fingerprint:
        raise FeatxError(f"the {role} store {other.path} was extracted with another config than {train.path} "
                         f"(fingerprint {other.fingerprint[:12]} vs {train.fingerprint[:12]}): extract both the same way")


@dataclass
class HeldInputs:
    """Each head's input: rows on disk for a kind that streams the task, else in memory (read once)."""

    task: str
    budget: int
    loaded: dict[int, np.ndarray] = field(default_factory=dict)

    def input(self, name: str, X: Any, texts: Sequence[str] | None, states: Any) -> Any:
        """What the head kind `name` reads (head_input), its vectors on disk or in memory."""
        kind = HEAD_KINDS[name]
        if isinstance(X, StoredRows) and self.task not in kind.streams and not sequence_read(kind.reads):
            if id(X) not in self.loaded:
                warnings.warn(FeatxWarning(
                    f"the {name} head holds its rows in memory ({X.shape[0]:,} x {X.shape[1]} float32, "
                    f"{X.shape[0] * X.shape[1] * 4 / 2 ** 20:,.0f} MiB), over --memory-budget "
                    f"{self.budget / 2 ** 20:,.0f} MiB: train it on a smaller store, or raise --memory-budget"),
                    stacklevel=3)
                self.loaded[id(X)] = np.asarray(X)
            X = self.loaded[id(X)]
        return head_input(kind.reads, X, texts, states)
