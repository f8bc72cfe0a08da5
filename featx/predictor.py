"""Predictor: raw texts or images in, labels out — a backbone reference, its extraction config and a head.

A predictor folder holds ``predictor.json`` (format, the backbone reference, the
extraction config) and ``head/`` (a head folder). Loading checks that the backbone
found has the weights and tokenizer (or image preprocessing) the head was trained on.
Inputs are embedded with the same window and batch planning as `featx extract`, so
predictions on a file match the head applied to that file's cached features exactly.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from featx._version import __version__
from featx.atomic import atomic_folder
from featx.config import STATES, ExtractConfig
from featx.data import InputSummary, Source
from featx.encoding import Encoder
from featx.errors import DamagedError, FeatxError
from featx.extraction.windows import iter_windows
from featx.finetune.classifier import PretrainedClassifier
from featx.heads import TrainedHead
from featx.heads.base import sequence_read
from featx.heads.inputs import head_input
from featx.modalities import featurizer_for, open_source
from featx.store.quantize import VectorCodec
from featx.store.states import RowSequences

PREDICTOR_FORMAT = "featx-predictor"


class Predictor(PretrainedClassifier):
    """Classifies raw inputs of its head's modality (texts; images as bytes, uint8 arrays or PIL
    images; any registered modality's, featx.modalities) with a frozen backbone and a trained head
    (a scikit-learn classifier, already fitted: see featx.finetune.classifier)."""

    def __init__(self, head: TrainedHead, config: ExtractConfig | None = None,
                 backbone: Any = None, device: str = "auto") -> None:
        self.head = head
        full_config = config or ExtractConfig.from_json(head.config_json)
        # Only the head's pooling is needed; the others do not change it.
        self.config = full_config.replace(poolings=(head.pooling,))
        self._backbone = backbone
        self._device = device
        self._encoder: Encoder | None = None
        # A head trained on a compact store sees vectors coded as that store coded them (built once, not per window).
        self._codec = None if head.vector_codec is None else VectorCodec.from_json(head.vector_codec)
        self.modality = self.config.modality

    @property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.head.class_names

    @property
    def task(self) -> str:  # type: ignore[override]
        return self.head.task

    @property
    def thresholds(self) -> np.ndarray | None:  # type: ignore[override]
        return getattr(self.head.estimator, "thresholds_", None)

    def _outputs(self, head_input: Any) -> np.ndarray:
        """The head's probabilities (multi-label: each label's), or a regression head's values."""
        estimator = self.head.estimator
        result: np.ndarray = estimator.predict_values(head_input) if self.task == "regression" else \
            estimator.predict_proba(head_input)
        return result

    @property
    def encoder(self) -> Encoder:
        """The backbone under the head's extraction config, loaded (and checked) on first use."""
        if self._encoder is None:
            # A head on token states needs the backbone only up to the cached layer.
            self._encoder = Encoder(featurizer_for(self.config, device=self._device, backbone=self._backbone,
                                                   states_only="states" in self.head.estimator.reads))
        return self._encoder

    def _head_input(self, texts: Sequence[Any], found: dict[str, np.ndarray]) -> Any:
        """What the head reads: the vectors, the texts beside them, or the token states or window vectors."""
        reads = self.head.estimator.reads
        if sequence_read(reads):
            return head_input(reads, None, states=RowSequences.from_rows(list(found[STATES]), self.config))
        vectors = found[self.head.pooling]
        return head_input(reads, vectors if self._codec is None else self._codec.round_trip(vectors), list(texts))

    def outputs(self, inputs: Sequence[Any]) -> np.ndarray:
        return self._outputs(self._head_input(inputs, self.encoder.features(inputs)))

    def predict_input(self, source: Source, summary: InputSummary) -> Iterator[tuple[Any, np.ndarray]]:
        """(record, probabilities) for every row of an input, streamed window by window."""
        featurizer, runner = self.encoder.featurizer, self.encoder.runner
        window_rows = self.encoder.modality.default_window_rows
        for window in iter_windows(source, summary, featurizer, 0, window_rows):
            features = runner.run(featurizer, window.items)
            texts = [record.text for record in window.records] if "texts" in self.head.estimator.reads else []
            yield from zip(window.records, self._outputs(self._head_input(texts, features)))

    def save(self, folder: str | Path) -> Path:
        """Write predictor.json and head/ as the folder `folder`, atomically (see featx.atomic)."""
        folder = Path(folder)
        with atomic_folder(folder, "predictor") as partial:
            self.head.save(partial / "head")
            meta = {"format": PREDICTOR_FORMAT, "format_version": 1, "featx_version": __version__,
                    "model": self.config.model, "config": json.loads(self.head.config_json), "head": "head"}
            (partial / "predictor.json").write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str = "auto") -> Predictor:
        """A predictor from a folder written by `save`; the backbone loads on first use.

        Refused unless its head lies inside the folder and the predictor's extraction
        config is the one the head's training store was made with (same fingerprint).
        """
        folder = Path(folder)
        meta_path = folder / "predictor.json"
        if not meta_path.is_file():
            raise FeatxError(f"{folder} is not a predictor folder (no predictor.json); "
                             "make one with featx train ... --export DIR")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DamagedError(f"{meta_path} is damaged: not valid JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != PREDICTOR_FORMAT:
            raise FeatxError(f"{meta_path} is not a featx predictor")
        head_dir = (folder / str(meta.get("head", "head"))).resolve()
        if not head_dir.is_relative_to(folder.resolve()) or head_dir == folder.resolve():
            raise DamagedError(f"{meta_path} names a head outside its folder ({meta.get('head')!r}): refused")
        head = TrainedHead.load(head_dir)
        try:
            config = ExtractConfig.from_json(json.dumps(meta["config"]))
        except (KeyError, TypeError, ValueError, FeatxError) as e:
            raise DamagedError(f"{meta_path} is damaged: its extraction config cannot be read ({e})") from None
        if config.fingerprint != head.store_fingerprint:
            raise DamagedError(f"{meta_path} points at another backbone or extraction config (fingerprint "
                               f"{config.fingerprint[:12]}) than its head was trained on "
                               f"({head.store_fingerprint[:12]}): export the predictor again")
        predictor = cls(head, config, device=device)
        predictor.name = str(folder)
        return predictor


def load_predictor(folder: str | Path, device: str = "auto") -> PretrainedClassifier:
    """The predictor a folder holds: a frozen backbone + head (`featx train --export`) or a
    fine-tuned checkpoint (`featx finetune`); both have `class_names`, `predict`,
    `predict_proba` and `predict_input`."""
    from featx.finetune import is_finetuned_folder, load_finetuned

    if is_finetuned_folder(folder):
        return load_finetuned(folder, device=device)
    return Predictor.load(folder, device=device)


def evaluate_folder(folder: str | Path, data: str | Path, *, device: str = "auto",
                    read_input: Callable[[], Source] | None = None, texts: Source | None = None) -> dict[str, Any]:
    """`featx evaluate`: a head folder is scored on the store `data` (a head that reads texts, on the
    `texts` input that store was extracted from too); a predictor folder or a fine-tuned checkpoint
    on the labelled input `data` (`read_input` opens it with the caller's column choices; by default
    featx.open_input's)."""
    from featx.heads import TrainedHead
    from featx.store import open_store

    if (Path(folder) / "head.json").is_file() or Path(data).suffix == ".h5":  # a head is scored on a store
        from featx.data import read_texts

        with open_store(data) as store:
            return TrainedHead.load(folder).evaluate(store, read_texts(texts) if texts is not None else None)
    predictor = load_predictor(folder, device=device)
    if read_input is None:
        return predictor.evaluate(open_source(data))
    return predictor.evaluate(read_input())


def write_predictions(predictor: PretrainedClassifier, source: Source, output: str | Path | None = None,
                      progress: bool | None = None) -> int:
    """One JSON line per row of `source` (id, predicted label, every class's probability) into
    `output`, written under a temporary name and renamed at the end (never a half file), or
    to standard output. Returns the number of rows."""
    import sys

    from featx.atomic import atomic_file, same_file
    from featx.errors import OutputError
    from featx.progress import progress_bar

    if output and same_file(output, source.path):
        raise OutputError(f"the output {output} is the input {source.name}: choose another -o")
    predictor.check_input(source)
    summary = source.scan()
    bar = progress_bar(summary.n_rows, "predict", show=progress)
    try:
        if output:
            with atomic_file(output, "predictions") as partial, open(partial, "w", encoding="utf-8") as sink:
                _write_rows(predictor, source, summary, sink, bar)
        else:
            _write_rows(predictor, source, summary, sys.stdout, bar)
    finally:
        bar.close()
    return int(summary.n_rows)


def _write_rows(predictor: PretrainedClassifier, source: Source, summary: InputSummary, sink: TextIO,
                bar: Any) -> None:
    names, task = predictor.class_names, predictor.task
    gold = summary.classes  # an input with labels: each row carries its own (the "gold" label) too
    for record, outputs in predictor.predict_input(source, summary):
        decided = predictor.decide(outputs)
        if task == "regression":
            row = {"id": record.id, "values": {n: float(v) for n, v in zip(names, decided)},
                   **({"gold": dict(zip(gold, record.label))} if gold is not None else {})}
        elif task == "multi":
            row = {"id": record.id, "labels": [names[j] for j in np.flatnonzero(decided)],
                   **({"gold": [gold[j] for j in record.label]} if gold is not None else {}),
                   "scores": {n: round(float(p), 6) for n, p in zip(names, outputs)}}
        else:
            row = {"id": record.id, "label": names[int(decided)],
                   **({"gold": gold[record.label]} if gold is not None and record.label >= 0 else {}),
                   "probabilities": {n: round(float(p), 6) for n, p in zip(names, outputs)}}
        sink.write(json.dumps(row) + "\n")
        bar.update()
