"""featx.encode: inputs held in memory (texts, images, arrays: any registered modality's) to
vectors, with the config, batching and therefore the vectors of `featx extract`.

    vectors = featx.encode(["a fine film", "a dull mess"])               # all-MiniLM-L6-v2's own embedding
    pixels = featx.encode(images, model="efficientnet-lite0", pooling="mean")

`encode` loads the model on every call; an `Encoder` keeps it, and is what `Embedder` (the
scikit-learn transformer) and `Predictor` (raw inputs to labels) embed with. The modality is
the one whose `takes` accepts the first input (str: text; bytes, PIL images, uint8 arrays:
image), or the one named by `modality=`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featx.errors import FeatxError, ParameterError
from featx.extraction.engine import embed_through_cache
from featx.extraction.runners import make_runner
from featx.featurizers import Featurizer
from featx.modalities import MODALITIES, featurizer_for, modality_named, modality_options
from featx.options import VECTOR_OPTIONS, ExtractOptions
from featx.store.vector_cache import VectorCache


class _InMemory:
    """What the modality's `extraction` names in its messages: the inputs given."""

    name = "the inputs"
    path = Path("<memory>")


class Encoder:
    """A featurizer and its runner for in-memory inputs; `cache_dir` keeps every vector by
    (fingerprint, content sha256), as `featx extract --cache-dir` does."""

    def __init__(self, featurizer: Featurizer, *, batch_tokens: int | None = None,
                 cache_dir: str | Path | None = None) -> None:
        self.featurizer = featurizer
        self.runner = make_runner(featurizer, batch_tokens)
        self.cache_dir = cache_dir
        self.modality = modality_named(featurizer.config.modality)
        self.cache_hits = self.cache_rejected = 0  # of the last call with a cache_dir

    @classmethod
    def load(cls, model: Any = None, *, modality: str | None = None, inputs: Sequence[Any] | None = None,
             batch_tokens: int | None = None, cache_dir: str | Path | None = None, vectors: Any = None,
             **options: Any) -> Encoder:
        """Load `model` (default: the modality's; or a featx.ModelOptions) with the `vectors` group
        (featx.VectorOptions), extract's options that decide vectors (VECTOR_OPTIONS) and a registered
        modality's own options (Modality.options) as keywords."""
        declared = modality_options()
        unknown = sorted(set(options) - set(VECTOR_OPTIONS) - set(declared))
        if unknown:
            raise ParameterError(unknown[0], f"is not an option of featx.encode: choose from "
                                             f"{', '.join([*VECTOR_OPTIONS, *declared])}")
        chosen = modality_named(modality) if modality is not None else modality_taking(inputs)
        values = ExtractOptions.build(model=model, vectors=vectors, declared=declared, **options)
        chosen.check_options(values, _InMemory())  # type: ignore[arg-type]
        featurizer, _, _ = chosen.extraction(_InMemory(), values.model.model, values)
        return cls(featurizer, batch_tokens=batch_tokens, cache_dir=cache_dir)

    @classmethod
    def for_config(cls, config: Any, *, backbone: Any = None, device: str = "auto", batch_tokens: int | None = None,
                   cache_dir: str | Path | None = None) -> Encoder:
        """The encoder giving `config`'s vectors (its model loaded, or `backbone` when it is that model)."""
        return cls(featurizer_for(config, device=device, backbone=backbone), batch_tokens=batch_tokens,
                   cache_dir=cache_dir)

    @property
    def config(self) -> Any:
        return self.featurizer.config

    @property
    def dim(self) -> int:
        """The width of `encode`'s rows: every pooling's vector, concatenated."""
        return int(self.featurizer.dim) * len(self.featurizer.poolings)

    def features(self, inputs: Sequence[Any]) -> dict[str, np.ndarray]:
        """Every output of the featurizer (each pooling, (n, dim); token states where kept), in input order."""
        records = self.modality.records(as_rows(inputs))
        items = self.featurizer.prepare(records)[0]
        if self.cache_dir is None or not records:
            return self.runner.run(self.featurizer, items)
        timer: dict[str, float] = {}
        cache = VectorCache(self.cache_dir, self.featurizer.config, self.featurizer.dim)
        try:
            found = embed_through_cache(self.featurizer, self.runner, items,
                                        self.featurizer.content_hashes(records), cache, timer)
        finally:
            cache.close()
        self.cache_hits, self.cache_rejected = int(timer.get("cache_hits", 0)), int(timer.get("cache_rejected", 0))
        return found

    def encode(self, inputs: Sequence[Any]) -> np.ndarray:
        """(len(inputs), dim) float32: the poolings' vectors concatenated in the config's order."""
        found = self.features(inputs)
        return np.concatenate([found[name] for name in self.featurizer.poolings], axis=1)


def encode(inputs: Sequence[Any], model: Any = None, *, modality: str | None = None, batch_tokens: int | None = None,
           cache_dir: str | Path | None = None, vectors: Any = None, **options: Any) -> np.ndarray:
    """(len(inputs), D) float32 vectors of in-memory inputs: texts, images (bytes, uint8 arrays,
    PIL images) or any registered modality's. `model` defaults to the modality's (texts:
    all-MiniLM-L6-v2, its own embedding), and may be a featx.ModelOptions; `vectors` is a
    featx.VectorOptions, and extract's options that decide vectors (VECTOR_OPTIONS: pooling,
    normalize, max_length, dtype, prompt, ...) may be given as keywords."""
    return Encoder.load(model, modality=modality, inputs=inputs, batch_tokens=batch_tokens, cache_dir=cache_dir,
                        vectors=vectors, **options).encode(inputs)


def modality_taking(inputs: Sequence[Any] | None) -> Any:
    """The registered modality whose `takes` accepts the first input (text when there is none)."""
    rows = as_rows(inputs) if inputs is not None else []
    if not rows:
        return modality_named("text")
    for modality in MODALITIES.values():
        if modality.takes(rows[0]):
            return modality
    raise FeatxError(f"no modality takes a {type(rows[0]).__name__} (registered: {', '.join(MODALITIES)}): "
                     "pass modality=")


def as_rows(X: Any) -> list[Any]:
    """The rows of a list, an array or a one-column frame (as scikit-learn's ColumnTransformer gives)."""
    if isinstance(X, (str, bytes)):
        raise ParameterError("inputs", "is one input: pass a list of them")
    if getattr(X, "ndim", 1) == 2 and X.shape[1] == 1 and np.asarray(X).dtype == object:
        return list(np.asarray(X)[:, 0])
    return list(X)
