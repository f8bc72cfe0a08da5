"""Heads trained on cached features, and their safe on-disk form.

A head folder holds ``head.json`` (kind, hyper-parameters, classes, pooling, the
fingerprint of the store it was trained on, the extraction config, metrics) and
``head.safetensors`` (plain tensors). Nothing is ever pickled or unpickled.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load as load_safetensors

from featx._version import __version__
from featx.atomic import atomic_folder, file_sha256, save_tensors, utc_stamp
from featx.errors import DamagedError, FeatxError
from featx.heads.base import TASK_NAMES, Head, make_head, sequence_read
from featx.heads.inputs import head_input
from featx.heads.tfidf import check_texts_match
from featx.metrics import labels_as, task_metrics
from featx.store import FeatureStore
from featx.store.quantize import VectorCodec

HEAD_FORMAT = "featx-head"
_STATE_ROWS = 8192  # rows of token states read at once when a head on them scores a store

def parse_head_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """`logreg`, `logreg:C=0.1`, `mlp:hidden=512,dropout=0.2` or a grid `logreg:Cs=1e-5|1e-4|1e-3`
    -> (kind, params); a value with `|` is a tuple."""
    kind, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise FeatxError(f"cannot read head spec {spec!r}: write KIND or KIND:name=value,name=value")
        params[key.strip()] = _parse_value(value.strip())
    make_head(kind.strip(), **params)  # validates kind and names now, not after an hour of training
    return kind.strip(), params


def _parse_value(text: str) -> object:
    if "|" in text:
        return tuple(_parse_value(part.strip()) for part in text.split("|"))
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text


@dataclass
class TrainedHead:
    """A fitted head plus what it needs to be used safely: its pooling and store fingerprint."""

    estimator: Head
    pooling: str
    class_names: tuple[str, ...]
    store_fingerprint: str
    config_json: str
    name: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    fit_seconds: float = 0.0
    # The peak resident memory (MB) of the process that fitted it, when it was done (featx.hardware.peak_memory_mb).
    peak_memory_mb: float | None = None
    # How its training store kept the vectors, when compact (featx.store.quantize.VectorCodec.to_json): a
    # predictor turns the vectors it computes into the same codes before the head sees them.
    vector_codec: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        return self.estimator.kind

    @property
    def task(self) -> str:
        """What the head predicts (featx.data.targets.TASKS); `class_names` are a regression head's targets."""
        return str(getattr(self.estimator, "task_", "single"))

    def _features(self, store: FeatureStore) -> Any:
        if store.fingerprint != self.store_fingerprint:
            raise FeatxError(
                f"{store.path} was extracted with another config (fingerprint {store.fingerprint[:12]}) than the "
                f"store this head was trained on ({self.store_fingerprint[:12]}): extract it with the same settings"
            )
        return store.iter_batches(self.pooling)

    def _inputs(self, store: FeatureStore, texts: Sequence[str] | None) -> Iterator[Any]:
        """The head's input for every row of `store` holding a vector, in blocks: the vectors, or for a
        kind that reads texts too, TextVectors of `texts` (checked to be the store's rows) and vectors."""
        if sequence_read(self.estimator.reads):
            self._features(store)  # the same fingerprint
            for start in range(0, len(store), _STATE_ROWS):
                yield store.token_states(start, start + _STATE_ROWS)
            return
        batches = self._features(store)
        reads = self.estimator.reads
        if "texts" not in reads:
            yield from (head_input(reads, X) for X, _ in batches)
            return
        if texts is None:
            raise FeatxError(f"the {self.kind} head reads each row's text beside its vector: give the texts "
                             f"{store.path} was extracted from (featx train --texts / --val-texts / --test-texts), "
                             "or score its predictor on a labelled input (featx evaluate MODEL INPUT)")
        texts = check_texts_match(store, texts, "the texts given")
        start = 0
        for X, _ in batches:
            yield head_input(reads, X, texts[start:start + len(X)])
            start += len(X)

    def predict_proba(self, store: FeatureStore, texts: Sequence[str] | None = None) -> np.ndarray:
        """Class probabilities (multi-label: each label's) for every row of `store` that holds a vector
        (same fingerprint required); a head that reads texts needs the store's `texts` too."""
        return np.concatenate([self.estimator.predict_proba(X) for X in self._inputs(store, texts)])

    def predict(self, store: FeatureStore, texts: Sequence[str] | None = None) -> np.ndarray:
        """Predicted label indices for every row of `store` that holds a vector (see `predict_proba`); a
        multi-label head's 0/1 rows, a regression head's values."""
        return np.concatenate([self.estimator.predict(X) for X in self._inputs(store, texts)])

    def evaluate(self, store: FeatureStore, texts: Sequence[str] | None = None) -> dict[str, Any]:
        """Metrics of this head on a labelled store (and its texts, for a head that reads them)."""
        if store.labels is None:
            raise FeatxError(f"{store.path} has no labels: nothing to evaluate against")
        labels, readable = store.labels, store.readable()
        if store.task != self.task:
            raise FeatxError(f"{store.path} holds {TASK_NAMES[store.task]} labels, and this head predicts "
                             f"{TASK_NAMES[self.task]} ones")
        truth = labels_as(labels if readable is None else labels[readable], store.classes or (), self.class_names,
                          str(store.path))
        return task_metrics(truth, self.predict(store, texts), self.class_names)

    def save(self, folder: str | Path) -> Path:
        """Write head.json + head.safetensors as the folder `folder`, atomically (see featx.atomic).

        head.json records the sha256 of head.safetensors, so a folder whose two files do
        not belong together is refused on load, whatever happened to it.
        """
        folder = Path(folder)
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in self.estimator.get_params().items()}
        with atomic_folder(folder, "head") as partial:
            save_tensors({k: np.ascontiguousarray(v) for k, v in self.estimator.state_arrays().items()},
                         partial / "head.safetensors")
            meta = {
                "format": HEAD_FORMAT, "format_version": 1, "featx_version": __version__,
                "name": self.name, "kind": self.kind, "params": params,
                "fitted": _jsonable(self.estimator.fitted_summary()),
                "classes": self.estimator.classes_.tolist(), "class_names": list(self.class_names),
                **({"task": self.task} if self.task != "single" else {}),
                **({"thresholds": self.estimator.thresholds_.tolist()} if self.task == "multi" else {}),
                "pooling": self.pooling, "store_fingerprint": self.store_fingerprint,
                "config": json.loads(self.config_json), "metrics": self.metrics,
                "fit_seconds": round(self.fit_seconds, 3), "peak_memory_mb": self.peak_memory_mb,
                **({"vector_codec": self.vector_codec} if self.vector_codec is not None else {}),
                "saved_at": utc_stamp(),
                "weights_sha256": file_sha256(partial / "head.safetensors"),
            }
            (partial / "head.json").write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> TrainedHead:
        """Read a head folder written by `save` (JSON and safetensors only), checking every part."""
        folder = Path(folder)
        meta_path = folder / "head.json"
        if not meta_path.is_file():
            raise FeatxError(f"{folder} is not a head folder (no head.json)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DamagedError(f"{meta_path} is damaged: not valid JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != HEAD_FORMAT:
            raise FeatxError(f"{meta_path} is not a featx head (format "
                             f"{meta.get('format') if isinstance(meta, dict) else None!r})")
        try:
            return cls._from_meta(folder, meta)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DamagedError(f"{folder} is damaged: head.json does not describe a head "
                               f"({type(e).__name__}: {e})") from None

    @classmethod
    def _from_meta(cls, folder: Path, meta: dict[str, Any]) -> TrainedHead:
        weights = folder / "head.safetensors"
        if not weights.is_file():
            raise DamagedError(f"{folder} is damaged: head.safetensors is missing")
        data = weights.read_bytes()
        if "weights_sha256" in meta and hashlib.sha256(data).hexdigest() != meta["weights_sha256"]:
            raise DamagedError(f"{folder} is damaged: head.safetensors is not the file head.json was saved with "
                               "(an interrupted save or a copied file): train or export the head again")
        try:
            arrays = load_safetensors(data)
        except Exception as e:  # safetensors raises its own error type for a bad header
            raise DamagedError(f"{weights} is damaged: not a readable safetensors file ({e})") from None
        classes = np.asarray(meta["classes"])
        class_names = tuple(str(n) for n in meta["class_names"])
        task = str(meta.get("task", "single"))
        if classes.ndim != 1 or len(classes) < (1 if task == "regression" else 2) or len(class_names) != len(classes):
            raise DamagedError(f"{folder} is damaged: head.json's classes and class names do not match")
        estimator = make_head(meta["kind"], **{k: tuple(v) if isinstance(v, list) else v
                                               for k, v in meta["params"].items()})
        if task not in estimator.tasks:
            raise DamagedError(f"{folder} is damaged: a {meta['kind']} head does not fit task {task!r}")
        estimator.task_ = task
        if task == "multi":
            estimator.thresholds_ = np.asarray(meta["thresholds"], dtype=np.float64)
            if estimator.thresholds_.shape != (len(classes),):
                raise DamagedError(f"{folder} is damaged: head.json's thresholds do not fit its {len(classes)} labels")
        try:
            estimator.check_state(arrays, len(classes))  # shapes agree before anything is built from them
        except DamagedError as e:
            raise DamagedError(f"{folder} is damaged: {e}") from None
        estimator.restore(arrays, classes, meta["fitted"])
        pooling, fingerprint = str(meta["pooling"]), str(meta["store_fingerprint"])
        config_json = json.dumps(meta["config"])
        from featx.config import ExtractConfig

        if ExtractConfig.from_json(config_json).fingerprint != fingerprint:
            raise DamagedError(f"{folder} is damaged: its extraction config does not match its store fingerprint")
        return cls(estimator=estimator, pooling=pooling, class_names=class_names, store_fingerprint=fingerprint,
                   config_json=config_json, name=str(meta.get("name", "")), metrics=meta.get("metrics", {}),
                   fit_seconds=float(meta.get("fit_seconds", 0.0)), peak_memory_mb=meta.get("peak_memory_mb"),
                   vector_codec=_codec_json(meta.get("vector_codec"), folder))


def _codec_json(data: Any, folder: Path) -> dict[str, Any] | None:
    """head.json's vector_codec, checked to describe one (None when the head was trained on floats)."""
    if data is None:
        return None
    try:
        codec = VectorCodec.from_json(data)
    except (KeyError, TypeError, ValueError):
        raise DamagedError(f"{folder} is damaged: head.json's vector_codec is not readable") from None
    if codec.kind == "int8" and (codec.scales is None or codec.scales.shape != (codec.dim,)):
        raise DamagedError(f"{folder} is damaged: head.json's int8 vector_codec has no scales for its {codec.dim} dims")
    return dict(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
