"""int8: a text model statically quantized by NNCF and run by OpenVINO (``featx extract --backend
openvino --dtype int8``; the ``featx[int8]`` extra). Opt-in only, never a default: judged by heads
on the five text suites it cost up to 0.95 point (benchmarks/README.md, "int8, judged by heads").

- **Calibrated on the user's own input**: its first `calibration_rows` rows, tokenized as they are
  embedded (prompt, max_length, windows), never a shard's own rows, so every shard and every
  resumed run quantizes the same rows. The config records the count and the sha256 of those rows'
  content hashes (`calibration_sha256`): the fingerprint changes with either.
- **Made once**: kept in featx's cache (``$FEATX_CACHE/openvino/<key>/``, beside the fp32
  conversions), keyed by what decides it (the weights, tokenizer, layers, tokenization, the
  calibration rows) and the OpenVINO and NNCF versions; sealed and checked like every featx cache
  entry (featx.caches). This process keeps what it made too, so an unwritable cache costs a warning
  and a quantization in each process, never the run.
- **Its fidelity, measured and recorded**: the calibration rows are embedded by the fp32 OpenVINO
  model and by the int8 one (the model's output mean-pooled over each row's tokens); the minimum and
  mean cosine are kept with the model and recorded in the store (header `hardware.int8_fidelity`).
  A mean below FLOOR is refused in one line that gives it, unless `allow_low_fidelity`. The floor is
  on the mean because the worst row did not predict the heads' cost (ibid.: SST-2's worst row was
  0.934 for 0.1 point; emotion's 0.988 for 0.95).
- What stays in floating point runs in bf16 where the CPU has it, else in fp32.
- **A CPU without int8 dot products** (VNNI or AMX) gets one warning: there int8 ran slower than
  fp32 (benchmarks/README.md, the AVX2-only EPYC), so it buys nothing for what it costs.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featx.backbones.openvino import CompiledModel, CompiledTextModel, converted_text_model, require_openvino
from featx.caches import CacheUnwritable, cache_folder, cached_folder, folder_intact
from featx.config import ExtractConfig
from featx.errors import FeatxError, FeatxWarning
from featx.hardware import has_fast_bf16, has_int8_dot
from featx.progress import status

FLOOR = 0.99  # the lowest mean cosine to fp32 on the calibration rows a run keeps without being told to
_FORMAT = "1"  # bump when what a cached int8 model holds changes
_FIDELITY_FILE = "fidelity.json"
_BATCH_TOKENS = 2048  # the fidelity check's batches
# What this process quantized, by cache key: (the OpenVINO model, its fidelity).
_MADE: dict[str, tuple[Any, Fidelity]] = {}


@dataclass(frozen=True)
class Fidelity:
    """The int8 model's cosine to the fp32 one over the calibration rows, and the floor it was held to."""

    rows: int
    min_cosine: float
    mean_cosine: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "floor": FLOOR, "compared_with": "fp32 OpenVINO, the calibration rows, the model's "
                                                                 "output mean-pooled"}


def require_nncf() -> Any:
    """The nncf module, or one clear line saying how to install it."""
    try:
        import nncf
    except ImportError:
        raise FeatxError("--dtype int8 needs NNCF: pip install 'featx[int8]'") from None
    return nncf


def calibration_sha256(texts: Sequence[str]) -> str:
    """sha256 of the calibration rows' content hashes (each text's UTF-8 sha256), in order."""
    return hashlib.sha256(b"".join(hashlib.sha256(text.encode("utf-8")).digest() for text in texts)).hexdigest()


def quantize(backbone: Any, config: ExtractConfig, samples: Sequence[list[int]], allow_low_fidelity: bool) -> Fidelity:
    """Make (or find) the int8 model of `config`, calibrated on `samples` (the calibration rows'
    token ids), and return its fidelity; one line when its mean cosine is below FLOOR, unless
    `allow_low_fidelity`."""
    key = _key(config)
    if key not in _MADE:
        _MADE[key] = _cached(backbone, config, key, samples)
    fidelity = _MADE[key][1]
    if fidelity.mean_cosine < FLOOR and not allow_low_fidelity:
        raise FeatxError(f"int8 {config.model} gives a mean cosine of {fidelity.mean_cosine:.4f} to fp32 on the "
                         f"{fidelity.rows} calibration rows (worst {fidelity.min_cosine:.4f}), below the floor "
                         f"{FLOOR}: use --dtype bf16, or pass --allow-low-fidelity to keep it")
    if not has_int8_dot():
        warnings.warn("--dtype int8: this CPU has no int8 dot-product instructions (VNNI or AMX); on such a CPU "
                      "int8 ran slower than fp32 (benchmarks/README.md): use --dtype fp32 for a faster, exact run",
                      FeatxWarning, stacklevel=2)
    return fidelity


def int8_model(backbone: Any, config: ExtractConfig, workers: int | None = None) -> QuantizedTextModel:
    """The compiled int8 model of `config`, from this process or featx's cache (`quantize` made it)."""
    key = _key(config)
    if key not in _MADE:
        folder = cache_folder() / "openvino" / key
        found = _read(folder)
        if found is None:
            where = "is damaged in (it failed its check)" if folder.is_dir() else "is not in"
            raise FeatxError(f"the int8 model of {config.model} calibrated on its input's first "
                             f"{config.calibration_rows} rows {where} featx's cache ({folder.parent}): run "
                             "featx extract --dtype int8 on that input on this machine; it quantizes it")
        _MADE[key] = found
    return QuantizedTextModel(backbone, config, _MADE[key][0], workers)


class QuantizedTextModel(CompiledModel):
    """An int8 text model compiled by OpenVINO, called as CompiledTextModel is."""

    def __init__(self, backbone: Any, config: ExtractConfig, model: Any, workers: int | None = None) -> None:
        float_part = "bf16" if has_fast_bf16(torch.device("cpu")) else "fp32"
        super().__init__(("int8", _key(config)), lambda ov: model, float_part, workers)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().__call__(input_ids=input_ids, attention_mask=attention_mask)


def _key(config: ExtractConfig) -> str:
    """The cache key: what decides the int8 model, and the versions of what makes it."""
    ov, nncf = require_openvino(), require_nncf()
    decides = [config.weights_sha256, config.tokenizer_sha256, list(config.layers), config.max_length, config.prompt,
               config.long, config.long_stride, config.calibration_rows, config.calibration_sha256]
    digest = hashlib.sha256(json.dumps(decides).encode()).hexdigest()
    return "-".join([config.weights_sha256[:16], "int8", digest[:16], ov.__version__.split("-")[0],
                     nncf.__version__, _FORMAT])


def _cached(backbone: Any, config: ExtractConfig, key: str, samples: Sequence[list[int]]) -> tuple[Any, Fidelity]:
    """The int8 model and its fidelity from featx's cache, else quantized, measured and cached."""
    folder = cache_folder() / "openvino" / key
    found = _read(folder)
    if found is not None:
        return found
    made: list[tuple[Any, Fidelity]] = []

    def make(scratch: Path) -> None:
        made.append(_made(backbone, config, samples))
        require_openvino().save_model(made[0][0], scratch / "model.xml", compress_to_fp16=False)
        (scratch / _FIDELITY_FILE).write_text(json.dumps(asdict(made[0][1]), sort_keys=True) + "\n")

    status(f"quantizing {config.model} to int8 on {len(samples)} calibration rows, once (kept in {folder.parent})")
    try:
        cached_folder(folder, ("model.xml", "model.bin", _FIDELITY_FILE), make, what=f"the int8 model {key}",
                      kind="converted_models", redone="it was quantized again and replaced")
    except CacheUnwritable as e:
        warnings.warn(f"{e}; the int8 model is made again by each run", FeatxWarning, stacklevel=2)
        if not made:
            made.append(_made(backbone, config, samples))
    return made[0] if made else _read_or_fail(folder)


def _read(folder: Path) -> tuple[Any, Fidelity] | None:
    """The cached int8 model and its fidelity, or None when absent (a damaged entry is made again by
    featx.caches.cached_folder, which checks the seal first)."""
    if not folder.is_dir() or not folder_intact(folder) or not (folder / _FIDELITY_FILE).is_file():
        return None
    fidelity = Fidelity(**json.loads((folder / _FIDELITY_FILE).read_text()))
    return require_openvino().Core().read_model(folder / "model.xml"), fidelity


def _read_or_fail(folder: Path) -> tuple[Any, Fidelity]:
    found = _read(folder)
    if found is None:
        raise FeatxError(f"the int8 model in {folder} could not be read back: delete it and run again")
    return found


def _made(backbone: Any, config: ExtractConfig, samples: Sequence[list[int]]) -> tuple[Any, Fidelity]:
    """Quantize the fp32 conversion on `samples` (NNCF's transformer recipe, its default preset) and
    measure the result against it."""
    nncf, ov = require_nncf(), require_openvino()
    fp32 = converted_text_model(ov, backbone, config.layers)
    dataset = nncf.Dataset([{"input_ids": np.asarray([ids], dtype=np.int64),
                             "attention_mask": np.ones((1, len(ids)), dtype=np.int64)} for ids in samples])
    quantized = nncf.quantize(fp32, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(samples))
    reference = CompiledTextModel(backbone, config.layers, "fp32", workers=1)
    candidate = QuantizedTextModel(backbone, config, quantized, workers=1)
    cosines = np.concatenate([_cosines(reference, candidate, batch) for batch in _batches(samples)])
    return quantized, Fidelity(rows=len(samples), min_cosine=round(float(cosines.min()), 6),
                               mean_cosine=round(float(cosines.mean()), 6))


def _batches(samples: Sequence[list[int]]) -> list[list[list[int]]]:
    """`samples` in batches of up to _BATCH_TOKENS padded tokens, sorted by length."""
    ordered = sorted(samples, key=len)
    batches: list[list[list[int]]] = [[]]
    for ids in ordered:
        if batches[-1] and (len(batches[-1]) + 1) * len(ids) > _BATCH_TOKENS:
            batches.append([])
        batches[-1].append(ids)
    return batches


def _cosines(reference: Any, candidate: Any, batch: list[list[int]]) -> np.ndarray:
    """Each row's cosine between the two models' outputs, mean-pooled over its tokens."""
    width = max(len(ids) for ids in batch)
    input_ids = torch.zeros((len(batch), width), dtype=torch.int64)
    mask = torch.zeros((len(batch), width), dtype=torch.int64)
    for row, ids in enumerate(batch):
        input_ids[row, :len(ids)], mask[row, :len(ids)] = torch.tensor(ids), 1
    weights = (mask / mask.sum(1, keepdim=True)).unsqueeze(-1)
    a, b = ((model(input_ids, mask) * weights).sum(1) for model in (reference, candidate))
    cosines: np.ndarray = torch.nn.functional.cosine_similarity(a, b, dim=1).numpy()
    return cosines
