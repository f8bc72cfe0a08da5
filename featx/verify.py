"""A spot check of a store after the fact: `featx info STORE --verify N`.

N rows drawn at random (seeded) are read again from the input the store was made from, and
embedded again with the store's own config on the plainest path featx has: torch, fp32, on the
CPU, no cache of any kind (no vector cache; the weights hashed as they load; no converted
model). Each stored vector is compared with the fresh one by cosine. A store written through a
damaged cache (a converted model whose weights changed in place gave a minimum cosine of -0.25)
falls far below the floor; the floor allows for the precision the store was made in: bf16
compute and float16 storage move a vector a little, never that far.

The input is found by the path the store records (`input_path`, written since this check
exists) or given with `--input`; each drawn row's bytes must hash to the content_sha256 the store
holds for that row, so a changed or other input is refused before anything is embedded.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featx.config import ExtractConfig
from featx.errors import FeatxError, ParameterError

# The lowest cosine a row may have to its fresh fp32 vector, by what the store was made with.
# Measured worst rows are far above these (bf16 on MiniLM: >= 0.999 on SST-2; bf16 on
# EfficientNet-Lite0: 0.982 over 5,000 CIFAR-10 images); a damaged model gives far below.
# int8 (featx.backbones.int8) moves single rows far more: SST-2's worst test row was 0.934 on MiniLM.
COMPUTE_FLOORS = {"fp32": 0.999, "fp16": 0.99, "bf16": 0.97, "int8": 0.9}
# A compact store is compared with its own codec applied to the fresh vectors too (featx.store.quantize):
# int8 moves a row's cosine by about 1e-4, binary flips the signs a compute dtype moves across zero.
STORAGE_FLOORS = {"float32": 1.0, "float16": 0.999, "int8": 0.999, "binary": 0.9}


@dataclass
class VerifyReport:
    """What `verify_store` found: the rows drawn (seeded), the worst and mean cosine, the floor."""

    rows_checked: int
    seed: int
    floor: float
    min_cosine: float
    mean_cosine: float
    worst_row: int
    by_pooling: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.min_cosine >= self.floor

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}

    def describe(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        return (f"verify: {verdict}: {self.rows_checked} rows (seed {self.seed}) embedded again on torch in fp32: "
                f"min cosine {self.min_cosine:.5f} (row {self.worst_row}), mean {self.mean_cosine:.5f}, "
                f"floor {self.floor}")


def floor_for(config: ExtractConfig) -> float:
    """The lowest cosine to the fp32 vectors that a right store made with `config` can have."""
    return round(COMPUTE_FLOORS.get(config.dtype, 0.97) * STORAGE_FLOORS.get(config.store_dtype, 0.999), 6)


def verify_store(store_path: str | Path, rows: int, *, input: str | Path | None = None, seed: int = 0,
                 device: str = "cpu") -> VerifyReport:
    """Embed `rows` random committed rows of the store again (torch, fp32) and compare (see the module docstring)."""
    from featx.store import open_store

    if rows < 1:
        raise ParameterError("verify", f"must be a number of rows >= 1, got {rows}")
    with open_store(store_path, allow_incomplete=True) as store:
        header, config = store.header, store.config
        readable = store.readable()
        candidates = np.arange(len(store)) if readable is None else readable
        if not len(candidates):
            raise FeatxError(f"{store_path} has no committed rows with vectors to verify")
        drawn = np.sort(np.random.default_rng(seed).choice(candidates, size=min(rows, len(candidates)),
                                                           replace=False))
        hashes = store.content_sha256_of(drawn)
        stored = {name: np.asarray(store.features(name)[drawn], dtype=np.float32) for name in config.poolings}
        codecs = {name: store.codec(name) for name in config.poolings}
    records = _drawn_records(store_path, header, input, drawn)
    unquantized = {"calibration_rows": None, "calibration_sha256": None} if config.dtype == "int8" else {}
    reference = config.replace(dtype="fp32", backend=None, **unquantized)
    fresh = _embed(reference, records, hashes, device)
    for name, codec in codecs.items():
        if codec is not None:  # compared as the store keeps it
            fresh[name] = codec.round_trip(fresh[name])
    cosines = np.stack([_cosines(stored[name], fresh[name]) for name in config.poolings])
    worst = cosines.min(axis=0)
    return VerifyReport(rows_checked=len(drawn), seed=seed, floor=floor_for(config),
                        min_cosine=round(float(worst.min()), 6), mean_cosine=round(float(cosines.mean()), 6),
                        worst_row=int(drawn[int(worst.argmin())]),
                        by_pooling={name: round(float(c.min()), 6) for name, c in zip(config.poolings, cosines)})


def _drawn_records(store_path: str | Path, header: Any, input: str | Path | None, drawn: np.ndarray) -> list[Any]:
    """The input's records at the store's rows `drawn` (the store's row i is input row row_offset + i)."""
    from featx.modalities import open_source

    spec = str(input) if input is not None else header.input_path
    choices = json.loads(header.input or "{}")
    if choices.get("prefix") and input is None:
        spec = f"{spec}:{choices['prefix']}"  # a folder inside an archive
    if not spec:
        raise ParameterError("input", f"is needed: {store_path} does not record the input it was made from "
                                      "(made before featx recorded it, or from rows in memory); name it with --input")
    rows_mod = choices.get("rows_mod")
    reading = {"text_column": choices.get("text_column"), "label_column": choices.get("label_column"),
               "id_column": choices.get("id_column"), "image_column": choices.get("image_column"),
               "encoding": choices.get("encoding"), "rows_mod": (rows_mod[0], tuple(rows_mod[1])) if rows_mod else None,
               "header": None if choices.get("header", True) else False,
               "fmt": choices.get("format") if "text_column" in choices else None}
    source = open_source(spec, **{k: v for k, v in reading.items() if v is not None})
    summary = source.scan()
    if summary.n_rows != header.input_rows:
        raise FeatxError(f"{source.name} has {summary.n_rows:,} rows, but {store_path} was made from an input of "
                         f"{header.input_rows:,}: name the input it was made from with --input")
    wanted = set((drawn + header.row_offset).tolist())
    found = []
    for index, record in enumerate(source.records(summary, start=header.row_offset), start=header.row_offset):
        if index in wanted:
            found.append(record)
            if len(found) == len(wanted):
                break
    return found


def _embed(config: ExtractConfig, records: list[Any], hashes: np.ndarray, device: str) -> dict[str, np.ndarray]:
    """The vectors of `records` under `config`, after checking each record is the row the store holds."""
    from featx.extraction.runners import make_runner
    from featx.modalities import featurizer_for

    featurizer = featurizer_for(config, device=device)
    read = featurizer.content_hashes(records)
    differ = np.flatnonzero((read != hashes).any(axis=1))
    if len(differ):
        raise FeatxError(f"the input's row {records[int(differ[0])].id!r} is not the row the store holds (its "
                         "content sha256 differs): name the input the store was made from with --input")
    items, _ = featurizer.prepare(records)
    found: dict[str, np.ndarray] = make_runner(featurizer, None).run(featurizer, items, {})
    return found


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine; two zero vectors (an empty text under some poolings) count as equal."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    both_zero = norms == 0
    return np.where(both_zero, 1.0, (a * b).sum(axis=1) / np.where(both_zero, 1.0, norms))
