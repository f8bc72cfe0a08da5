"""Heads trained on cached features, and their safe on-disk form.

A head folder holds ``head.json`` (kind, hyper-parameters, classes, pooling, the
fingerprint of the store it was trained on, the extraction config, metrics) and
``head.safetensors`` (plain tensors). Nothing is ever pickled or unpickled.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from featx._version import __version__
from featx.errors import FeatxError
from featx.heads.logreg import LogRegHead
from featx.heads.mlp import MLPHead
from featx.metrics import classification_metrics
from featx.store import FeatureStore

HEAD_KINDS = {"logreg": LogRegHead, "mlp": MLPHead}
HEAD_FORMAT = "featx-head"

__all__ = ["HEAD_KINDS", "LogRegHead", "MLPHead", "TrainedHead", "make_head", "parse_head_spec"]


def make_head(kind: str, **params) -> LogRegHead | MLPHead:
    """An unfitted head of `kind` (logreg or mlp) with the given hyper-parameters."""
    if kind not in HEAD_KINDS:
        raise FeatxError(f"unknown head {kind!r}: choose from {', '.join(HEAD_KINDS)}")
    cls = HEAD_KINDS[kind]
    valid = cls().get_params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise FeatxError(f"{kind} head has no parameter {unknown[0]!r}; it has: {', '.join(sorted(valid))}")
    return cls(**params)


def parse_head_spec(spec: str) -> tuple[str, dict]:
    """`logreg`, `logreg:C=0.1` or `mlp:hidden=512,dropout=0.2` -> (kind, params)."""
    kind, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise FeatxError(f"cannot read head spec {spec!r}: write KIND or KIND:name=value,name=value")
        params[key.strip()] = _parse_value(value.strip())
    make_head(kind.strip(), **params)  # validates kind and names now, not after an hour of training
    return kind.strip(), params


def _parse_value(text: str):
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

    estimator: LogRegHead | MLPHead
    pooling: str
    class_names: tuple[str, ...]
    store_fingerprint: str
    config_json: str
    name: str = ""
    metrics: dict = field(default_factory=dict)
    fit_seconds: float = 0.0

    @property
    def kind(self) -> str:
        return self.estimator.kind

    def _features(self, store: FeatureStore):
        if store.fingerprint != self.store_fingerprint:
            raise FeatxError(
                f"{store.path} was extracted with another config (fingerprint {store.fingerprint[:12]}) than the "
                f"store this head was trained on ({self.store_fingerprint[:12]}): extract it with the same settings"
            )
        return store.iter_batches(self.pooling)

    def predict_proba(self, store: FeatureStore) -> np.ndarray:
        """Class probabilities for every row of `store` (same fingerprint required)."""
        return np.concatenate([self.estimator.predict_proba(X) for X, _ in self._features(store)])

    def predict(self, store: FeatureStore) -> np.ndarray:
        """Predicted label indices for every row of `store` (same fingerprint required)."""
        return np.concatenate([self.estimator.predict(X) for X, _ in self._features(store)])

    def evaluate(self, store: FeatureStore) -> dict:
        """Metrics of this head on a labelled store."""
        if store.labels is None:
            raise FeatxError(f"{store.path} has no labels: nothing to evaluate against")
        if store.classes != self.class_names:
            raise FeatxError(f"{store.path} has classes {list(store.classes)}, the head {list(self.class_names)}")
        return classification_metrics(store.labels, self.predict(store), self.class_names)

    def save(self, folder: str | Path) -> Path:
        """Write head.json + head.safetensors into `folder` (created if needed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in self.estimator.get_params().items()}
        meta = {
            "format": HEAD_FORMAT, "format_version": 1, "featx_version": __version__,
            "name": self.name, "kind": self.kind, "params": params,
            "fitted": _jsonable(self.estimator.fitted_summary()),
            "classes": self.estimator.classes_.tolist(), "class_names": list(self.class_names),
            "pooling": self.pooling, "store_fingerprint": self.store_fingerprint,
            "config": json.loads(self.config_json), "metrics": self.metrics,
            "fit_seconds": round(self.fit_seconds, 3),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        save_file({k: np.ascontiguousarray(v) for k, v in self.estimator.state_arrays().items()},
                  str(folder / "head.safetensors"))
        (folder / "head.json").write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "TrainedHead":
        """Read a head folder written by `save` (JSON and safetensors only)."""
        folder = Path(folder)
        meta_path = folder / "head.json"
        if not meta_path.is_file():
            raise FeatxError(f"{folder} is not a head folder (no head.json)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != HEAD_FORMAT:
            raise FeatxError(f"{meta_path} is not a featx head (format {meta.get('format')!r})")
        estimator = make_head(meta["kind"], **{k: tuple(v) if isinstance(v, list) else v
                                               for k, v in meta["params"].items()})
        estimator.restore(load_file(str(folder / "head.safetensors")), np.asarray(meta["classes"]), meta["fitted"])
        return cls(estimator=estimator, pooling=meta["pooling"], class_names=tuple(meta["class_names"]),
                   store_fingerprint=meta["store_fingerprint"], config_json=json.dumps(meta["config"]),
                   name=meta.get("name", ""), metrics=meta.get("metrics", {}), fit_seconds=meta.get("fit_seconds", 0.0))


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
