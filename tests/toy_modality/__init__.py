"""A toy third modality, "vectors": fixed-length float rows (an .npz with x and, optionally, y)
through a tiny torch module (a folder holding model.json and weights.pt).

It exists to prove featx's modality registry: everything featx needs to extract, resume, train
heads on and predict with this modality is in this package, and `register()` is the one registry
line. tests/test_toy_modality.py drives it through featx's public API and CLI.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from featx.config import ConfigSection, ExtractConfig
from featx.data import InputSummary
from featx.errors import FeatxError, ParameterError
from featx.modalities import Modality, given_choices, register_modality

NAME = "vector"


@dataclass(frozen=True)
class VectorSection(ConfigSection):
    """Its own config field: the width of the rows the model takes."""

    width: int | None = None

    def check(self, config: ExtractConfig) -> None:
        if config.poolings != ("mean",) or config.layers != (-1,) or self.width is None:
            raise ParameterError("pooling", "vectors take pooling mean, the last layer and a recorded width")


CLIP = 6.0  # a vector's values are clipped to [-CLIP, CLIP] before the model (flagged "clipped")


@dataclass(frozen=True, slots=True)
class VectorRecord:
    id: int
    vector: np.ndarray
    label: int


@dataclass(frozen=True)
class NpzSource:
    """Rows of an .npz: x (rows, width) floats, y (rows,) labels when given."""

    path: Path
    modality: str = NAME

    @property
    def name(self) -> str:
        return str(self.path)

    def describe(self) -> dict[str, Any]:
        return {"format": "npz"}

    def _arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        with np.load(self.path) as data:
            return np.asarray(data["x"], dtype=np.float32), (np.asarray(data["y"]) if "y" in data else None)

    def scan(self) -> InputSummary:
        x, y = self._arrays()
        classes = tuple(sorted({str(v) for v in y})) if y is not None else None
        return InputSummary(n_rows=len(x), classes=classes, id_kind="int",
                            sha256=hashlib.sha256(self.path.read_bytes()).hexdigest())

    def records(self, summary: InputSummary, start: int = 0) -> Iterator[VectorRecord]:
        x, y = self._arrays()
        index = {c: i for i, c in enumerate(summary.classes or ())}
        for i in range(start, len(x)):
            yield VectorRecord(i, x[i], index[str(y[i])] if y is not None else -1)


class TinyModel(torch.nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(width, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.layer(x))


def save_tiny_model(folder: Path, width: int, hidden: int, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps({"width": width, "hidden": hidden}))
    torch.save(TinyModel(width, hidden).state_dict(), folder / "weights.pt")
    return folder


def load_tiny_model(folder: str | Path) -> tuple[TinyModel, str, dict[str, int]]:
    folder = Path(folder)
    if not (folder / "model.json").is_file():
        raise FeatxError(f"{folder} is not a vectors model (no model.json)")
    shape = json.loads((folder / "model.json").read_text())
    model = TinyModel(shape["width"], shape["hidden"])
    model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    return model.eval(), hashlib.sha256((folder / "weights.pt").read_bytes()).hexdigest(), shape


class VectorFeaturizer:
    """Each row's vector through the tiny model; "mean" is the model's output (one token)."""

    token_outputs: tuple[str, ...] = ()

    def __init__(self, model: TinyModel, config: ExtractConfig) -> None:
        self.model, self.config = model, config
        self.device = torch.device("cpu")
        self.dim = model.layer.out_features
        self.poolings, self.store_dtype = config.poolings, config.store_dtype

    def content_hashes(self, records: Sequence[VectorRecord]) -> np.ndarray:
        rows = [np.frombuffer(hashlib.sha256(r.vector.tobytes()).digest(), np.uint8) for r in records]
        return np.stack(rows) if rows else np.zeros((0, 32), np.uint8)

    def prepare(self, records: Sequence[VectorRecord]) -> tuple[list[Any], dict[str, np.ndarray]]:
        """Each vector clipped to [-CLIP, CLIP]; the modality's own row flag, "clipped", says which were."""
        vectors = [np.asarray(r.vector, dtype=np.float32) for r in records]
        clipped = np.fromiter((bool(np.abs(v).max(initial=0) > CLIP) for v in vectors), dtype=np.uint8, count=len(vectors))
        return [np.clip(v, -CLIP, CLIP) for v in vectors], {"clipped": clipped}

    def default_batch_cost(self) -> int:
        return 16

    def cost(self, item: Any) -> int:
        return 1

    def collate(self, items: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        return {"x": torch.from_numpy(np.stack(items))}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.model(batch["x"])
        if self.config.normalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        return {"mean": out}

    def cast_weights(self) -> None:
        pass


class VectorModality(Modality):
    name = NAME
    default_window_rows = 64
    default_model = None  # there is no packaged vectors model: --model is required
    # Its own per-row flag, kept in the store by name beside no text's "truncated".
    row_flags: ClassVar[Mapping[str, str]] = {"clipped": f"a value was clipped to [-{CLIP}, {CLIP}]"}
    section = VectorSection

    def claims(self, input: str | Path, choices: dict[str, Any]) -> bool:
        return Path(input).suffix == ".npz"

    def open(self, input: str | Path, **choices: Any) -> NpzSource:
        given = given_choices(choices)
        if given:
            raise ParameterError(given[0], f"does not apply: {input} is read as vectors")
        if not Path(input).is_file():
            raise FeatxError(f"input {input} does not exist")
        return NpzSource(Path(input))

    def takes(self, item: Any) -> bool:
        return isinstance(item, np.ndarray) and item.dtype.kind == "f" and item.ndim == 1

    def records(self, inputs: Sequence[Any]) -> list[VectorRecord]:
        return [VectorRecord(i, np.asarray(x, dtype=np.float32), -1) for i, x in enumerate(inputs)]

    def extraction(self, source: Any, model: Any, options: Any) -> tuple[Any, int, None]:
        if model is None:
            raise FeatxError("vectors need --model: a folder with model.json and weights.pt")
        module, sha, shape = load_tiny_model(model)
        config = ExtractConfig(model=str(model), weights_sha256=sha, modality=NAME, poolings=("mean",),
                               normalize=bool(options.vectors.normalize), dtype="fp32",
                               store_dtype=options.store.store_dtype, width=shape["width"])
        return VectorFeaturizer(module, config), self.default_window_rows, None

    def featurizer_for(self, config: ExtractConfig, *, device: Any = "auto", backbone: Any = None,
                       states_only: bool = False) -> VectorFeaturizer:
        module, sha, _ = load_tiny_model(config.model)
        if sha != config.weights_sha256:
            raise FeatxError(f"the model found at {config.model} is not the one these vectors were made with")
        return VectorFeaturizer(module, config)


def register() -> VectorModality:
    """The one registry line."""
    return register_modality(VectorModality())
