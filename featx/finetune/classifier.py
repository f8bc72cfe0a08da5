"""PretrainedClassifier: what a predictor folder loads as, for scikit-learn.

A frozen-backbone predictor and a fine-tuned checkpoint both take raw inputs (texts, or images
for an image model) and give what a model trained elsewhere predicts: a class, a label set
(multi-label) or values (regression). As scikit-learn estimators they are already fitted: `fit`
changes nothing (the rule of sklearn.frozen.FrozenEstimator), `clone` returns the same object,
`classes_` are the class (label, target) names, `score(inputs, labels)` is accuracy, and they
take a list of inputs where scikit-learn expects X.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


def takes_texts(tags: Any, requires_fit: bool) -> Any:
    """scikit-learn tags for an estimator whose X is a list of texts (Embedder, the predictors)."""
    tags.input_tags.two_d_array = False
    tags.input_tags.string = True
    tags.requires_fit = requires_fit
    return tags


class PretrainedClassifier(ClassifierMixin, BaseEstimator):
    """Base of Predictor and the fine-tuned predictors: subclasses set `class_names` (and `task`,
    `thresholds`) and implement `outputs(inputs)`."""

    class_names: tuple[str, ...]
    modality: str = "text"  # what it classifies: a registered modality's name (featx.modalities)
    name: str = "the model"  # how messages name it (its folder, when loaded from one)
    # What it predicts (featx.data.targets.TASKS): for "multi", `class_names` are labels and
    # `thresholds` decide each; for "regression" they are the targets, and outputs are values.
    task: str = "single"
    thresholds: np.ndarray | None = None

    def decide(self, outputs: np.ndarray) -> np.ndarray:
        """What `predict_input`'s outputs say: class indices; 0/1 rows (multi-label); the values."""
        if self.task == "regression":
            return outputs
        if self.task == "multi":
            return (outputs >= self.thresholds).astype(np.uint8)
        return np.asarray(outputs.argmax(-1), dtype=np.int64)

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.class_names, dtype=object)

    def outputs(self, inputs: Sequence[Any]) -> np.ndarray:  # pragma: no cover - abstract
        """What the model gives for each input, one row each, columns in `class_names` order: class
        probabilities, each label's probability (multi-label), or the values (regression)."""
        raise NotImplementedError

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        """Class probabilities (multi-label: each label's), one row per text (or image)."""
        if self.task == "regression":
            from featx.errors import FeatxError

            raise FeatxError(f"{self.name} predicts values ({', '.join(self.class_names)}), not probabilities: "
                             "use predict")
        return self.outputs(inputs)

    def predict(self, inputs: Sequence[Any]) -> np.ndarray:
        """The predicted class name of each text (or image), by the model's own decision rule; for a
        multi-label model each row's tuple of label names, for a regression model its values (rows x
        targets)."""
        decided = self.decide(self.outputs(inputs))
        if self.task == "regression":
            return decided
        if self.task == "multi":
            rows = np.empty(len(decided), dtype=object)
            rows[:] = [tuple(self.class_names[j] for j in np.flatnonzero(row)) for row in decided]
            return rows
        names: np.ndarray = self.classes_[decided]
        return names

    chunk_rows = 1024  # rows per predict_proba call while streaming an input

    def record_input(self, record: Any) -> Any:  # pragma: no cover - abstract
        """What `outputs` takes for one record of a Source (a text; an image's bytes or array)."""
        raise NotImplementedError

    def predict_input(self, source: Any, summary: Any) -> Iterator[tuple[Any, np.ndarray]]:
        """(record, outputs) for every row of a Source, streamed `chunk_rows` at a time: the classes'
        (multi-label: each label's) probabilities, or a regression model's values."""
        records = source.records(summary)
        while chunk := list(itertools.islice(records, self.chunk_rows)):
            yield from zip(chunk, self.outputs([self.record_input(record) for record in chunk]))

    def evaluate(self, source: Any) -> dict[str, Any]:
        """Metrics on a labelled input (a featx Source), classes matched by name (``n``: rows scored)."""
        from featx.data.targets import label_rows
        from featx.errors import FeatxError
        from featx.metrics import labels_as, task_metrics

        self.check_input(source)
        summary = source.scan()
        if summary.classes is None:
            raise FeatxError(f"{source.name} has no labels to score against: name its label column "
                             "(--label-column), or give images in class folders")
        if summary.task != self.task:
            raise FeatxError(f"{source.name} is read with {summary.task} labels and {self.name} predicts {self.task} "
                             "ones: read it with the options its training input was (--multi-label, --target)")
        truth, predicted = [], []
        for record, outputs in self.predict_input(source, summary):
            truth.append(record.label)
            predicted.append(self.decide(outputs))
        rows = label_rows(summary, truth)
        assert rows is not None  # a labelled input
        gold = labels_as(rows, summary.classes, self.class_names, source.name)
        return task_metrics(gold, np.asarray(predicted), self.class_names)

    def check_input(self, source: Any) -> None:
        """Refuse, in one line, an input of another modality (images for a text model)."""
        from featx.errors import FeatxError

        given = getattr(source, "modality", "text")
        if given != self.modality:
            raise FeatxError(f"{self.name} classifies {self.modality}s, but {source.name} is read as {given}s: "
                             f"give it {self.modality}s")

    def fit(self, X: Any = None, y: Any = None, **fit_params: Any) -> PretrainedClassifier:
        """Nothing to learn: the model was trained when the folder was made."""
        return self

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {}

    def set_params(self, **params: Any) -> PretrainedClassifier:
        if params:
            raise ValueError(f"{type(self).__name__} is pretrained: it has no parameters to set ({sorted(params)})")
        return self

    def __sklearn_clone__(self) -> PretrainedClassifier:
        return self

    def __sklearn_tags__(self) -> Any:
        return takes_texts(super().__sklearn_tags__(), requires_fit=False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(classes={list(self.class_names)})"
