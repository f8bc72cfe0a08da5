"""A toy audio-like modality, registered from outside featx: waveforms (float arrays of any length,
an `.audio.npz` holding `waves`, their `rate` and optionally `y`) resampled to the `sample_rate`
option, cut into frames whose magnitude spectra a tiny torch module (a folder with model.json and
weights.pt) embeds, mean-pooled over a row's frames.

It declares, and featx has no line about any of it:
- its own option, `sample_rate` (a dataclass field with a constraint: `featx.extract(...,
  sample_rate=8000)`, `featx extract --sample-rate 8000`);
- its own config field (AudioSection.sample_rate: in the fingerprint, read back by predictors);
- its own row flag, "clipped" (a sample beyond [-1, 1] was clipped).
tests/test_audio_modality.py drives it through extract, resume, heads and predict.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from featx.config import ConfigSection, ExtractConfig
from featx.constraints import Interval
from featx.data import InputSummary
from featx.errors import FeatxError, ParameterError
from featx.modalities import Modality, given_choices, register_modality
from tests.toy_modality import NpzSource

NAME = "audio"
FRAME = 64  # samples a frame, at the model's sample rate
BINS = FRAME // 2 + 1


@dataclass(frozen=True)
class AudioOptions:
    """The options only audio takes."""

    sample_rate: int = field(default=16000, metadata={
        "constraint": Interval(int, 1000, 96000), "help": "Audio: the rate (Hz) waveforms are resampled to."})


@dataclass(frozen=True)
class AudioSection(ConfigSection):
    """Audio's own config field: the rate the model heard."""

    sample_rate: int | None = None

    def check(self, config: ExtractConfig) -> None:
        if self.sample_rate is None or self.sample_rate < 1000:
            raise ParameterError("sample_rate", f"must be a rate of at least 1000 Hz, got {self.sample_rate!r}")
        if config.poolings != ("mean",) or config.layers != (-1,):
            raise ParameterError("pooling", "audio frames are mean-pooled from the model's one layer")


@dataclass(frozen=True, slots=True)
class Wave:
    id: int
    samples: np.ndarray
    rate: int
    label: int


@dataclass(frozen=True)
class WaveSource(NpzSource):
    """Rows of an .audio.npz: `waves` (an object array of float arrays), their `rate`, `y` labels when given
    (read as the toy vector modality reads its .npz: tests/toy_modality)."""

    modality: str = NAME

    def describe(self) -> dict[str, Any]:
        return {"format": "audio.npz"}

    def _arrays(self) -> tuple[Any, np.ndarray | None]:
        with np.load(self.path, allow_pickle=True) as data:
            return list(data["waves"]), (np.asarray(data["y"]) if "y" in data else None)

    def records(self, summary: InputSummary, start: int = 0) -> Iterator[Wave]:  # type: ignore[override]
        waves, y = self._arrays()
        with np.load(self.path, allow_pickle=True) as data:
            rate = int(data["rate"])
        index = {c: i for i, c in enumerate(summary.classes or ())}
        for i in range(start, len(waves)):
            yield Wave(i, np.asarray(waves[i], np.float32), rate, index[str(y[i])] if y is not None else -1)


class SpectrumModel(torch.nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(BINS, hidden)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft(frames, dim=-1).abs()
        return torch.tanh(self.layer(torch.log1p(spectrum)))


def save_model(folder: Path, hidden: int = 8, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps({"hidden": hidden}))
    torch.save(SpectrumModel(hidden).state_dict(), folder / "weights.pt")
    return folder


def load_model(folder: str | Path) -> tuple[SpectrumModel, str]:
    folder = Path(folder)
    if not (folder / "model.json").is_file():
        raise FeatxError(f"{folder} is not an audio model (no model.json)")
    model = SpectrumModel(json.loads((folder / "model.json").read_text())["hidden"])
    model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    return model.eval(), hashlib.sha256((folder / "weights.pt").read_bytes()).hexdigest()


def frames_of(wave: Wave, sample_rate: int) -> tuple[np.ndarray, bool]:
    """The wave resampled to `sample_rate` (linear), clipped to [-1, 1], cut into whole frames (at
    least one, zero-padded); and whether anything was clipped."""
    n = max(1, round(len(wave.samples) * sample_rate / wave.rate))
    resampled = np.interp(np.arange(n) * wave.rate / sample_rate, np.arange(len(wave.samples)), wave.samples)
    clipped = bool(np.abs(resampled).max(initial=0) > 1)
    padded = np.zeros(-(-n // FRAME) * FRAME, np.float32)
    padded[:n] = np.clip(resampled, -1, 1)
    return padded.reshape(-1, FRAME), clipped


class AudioFeaturizer:
    token_outputs: tuple[str, ...] = ()

    def __init__(self, model: SpectrumModel, config: ExtractConfig) -> None:
        self.model, self.config = model, config
        self.device = torch.device("cpu")
        self.dim = model.layer.out_features
        self.poolings, self.store_dtype = config.poolings, config.store_dtype

    def content_hashes(self, records: Sequence[Wave]) -> np.ndarray:
        rows = [np.frombuffer(hashlib.sha256(r.samples.tobytes() + str(r.rate).encode()).digest(), np.uint8)
                for r in records]
        return np.stack(rows) if rows else np.zeros((0, 32), np.uint8)

    def prepare(self, records: Sequence[Wave]) -> tuple[list[Any], dict[str, np.ndarray]]:
        prepared = [frames_of(r, self.config.sample_rate) for r in records]
        return [frames for frames, _ in prepared], {"clipped": np.array([c for _, c in prepared], np.uint8)}

    def default_batch_cost(self) -> int:
        return 64  # frames

    def cost(self, item: np.ndarray) -> int:
        return len(item)

    def collate(self, items: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        longest = max(len(item) for item in items)
        frames = np.zeros((len(items), longest, FRAME), np.float32)
        mask = np.zeros((len(items), longest), np.float32)
        for i, item in enumerate(items):
            frames[i, :len(item)], mask[i, :len(item)] = item, 1
        return {"frames": torch.from_numpy(frames), "frame_mask": torch.from_numpy(mask)}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            out, mask = self.model(batch["frames"]), batch["frame_mask"].unsqueeze(-1)
        return {"mean": (out * mask).sum(1) / mask.sum(1)}

    def cast_weights(self) -> None:
        pass


class AudioModality(Modality):
    name = NAME
    default_window_rows = 16
    default_model = None
    row_flags: ClassVar[Mapping[str, str]] = {"clipped": "a sample beyond [-1, 1] was clipped"}
    section = AudioSection
    options = AudioOptions

    def claims(self, input: str | Path, choices: dict[str, Any]) -> bool:
        return str(input).endswith(".audio.npz")

    def open(self, input: str | Path, **choices: Any) -> WaveSource:
        given = given_choices(choices)
        if given:
            raise ParameterError(given[0], f"does not apply: {input} is read as audio")
        if not Path(input).is_file():
            raise FeatxError(f"input {input} does not exist")
        return WaveSource(Path(input))

    def takes(self, item: Any) -> bool:
        return isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], np.ndarray)

    def records(self, inputs: Sequence[Any]) -> list[Wave]:
        """In memory, a row is (samples, rate)."""
        return [Wave(i, np.asarray(samples, np.float32), int(rate), -1) for i, (samples, rate) in enumerate(inputs)]

    def extraction(self, source: Any, model: Any, options: Any) -> tuple[AudioFeaturizer, int, None]:
        if model is None:
            raise FeatxError("audio needs --model: a folder with model.json and weights.pt")
        module, sha = load_model(model)
        config = ExtractConfig(model=str(model), weights_sha256=sha, modality=NAME, store_dtype=options.store.store_dtype,
                               section=AudioSection(sample_rate=self.own_options(options).sample_rate))
        return AudioFeaturizer(module, config), self.default_window_rows, None

    def featurizer_for(self, config: ExtractConfig, *, device: Any = "auto", backbone: Any = None,
                       states_only: bool = False) -> AudioFeaturizer:
        module, sha = load_model(config.model)
        if sha != config.weights_sha256:
            raise FeatxError(f"the model found at {config.model} is not the one these vectors were made with")
        return AudioFeaturizer(module, config)


def register() -> AudioModality:
    """The one registry line."""
    return register_modality(AudioModality())  # type: ignore[return-value]


def write_waves(path: Path, n: int, rate: int = 8000, seed: int = 0) -> tuple[Path, list[np.ndarray]]:
    """`n` tones of 0.05 to 0.2 s at `rate`: low (300 Hz, "low") or high (2,500 Hz, "high"), with
    noise; about one in five loud enough to clip."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    waves = []
    for label in labels:
        t = np.arange(int(rate * rng.uniform(0.05, 0.2))) / rate
        loud = 1.6 if rng.random() < 0.2 else 0.6
        waves.append((loud * np.sin(2 * np.pi * (300, 2500)[label] * t) + 0.05 * rng.normal(size=len(t)))
                     .astype(np.float32))
    stored = np.empty(n, dtype=object)
    stored[:] = waves
    np.savez(path, waves=stored, rate=rate, y=np.array(["low", "high"])[labels])
    return path, waves
