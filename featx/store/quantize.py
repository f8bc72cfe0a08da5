"""Compact vectors: int8 with one symmetric scale a dimension, and binary (signs packed into bits).

int8: a dimension's scale is the largest |value| of the calibration rows (the first window a store
commits) over 127, so those rows map into [-127, 127] exactly; later rows beyond it are clipped.
A dimension whose calibration rows are all 0 gets scale 1 (its codes are then the rounded values).
A row is stored as round(x / scale) and read back as code x scale: the error of a value inside the
calibration range is at most half its dimension's scale.

binary: a value is 1 where it is above 0, else 0 (sentence-transformers' `quantize_embeddings`
convention), eight dimensions a byte, the first dimension in the high bit (numpy's packbits, big
bit order). Read back as -1 / +1, so a cosine between two binary rows is 1 - 2 x their Hamming
distance / dim, and cosine k-nearest neighbours rank as Hamming distance does.
"""
from __future__ import annotations

from typing import Any

import numpy as np

COMPACT_DTYPES = ("int8", "binary")
INT8_LEVELS = 127


def int8_scales(calibration: np.ndarray) -> np.ndarray:
    """One scale a dimension (float32) from the calibration rows (rows x dim)."""
    values = np.abs(np.asarray(calibration, dtype=np.float32))
    largest = np.where(np.isfinite(values), values, 0.0).max(axis=0)  # rows without vectors (NaN) left out
    scales = largest / INT8_LEVELS
    scales[~(scales > 0)] = 1.0  # all zero (or not finite): any scale keeps the zeros
    result: np.ndarray = scales.astype(np.float32)
    return result


def to_int8(X: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Codes of rows X under `scales`: round(x / scale), clipped to [-127, 127]."""
    codes = np.rint(np.asarray(X, dtype=np.float32) / scales)
    result: np.ndarray = np.clip(codes, -INT8_LEVELS, INT8_LEVELS).astype(np.int8)
    return result


def from_int8(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The float32 values int8 codes stand for."""
    result: np.ndarray = (np.asarray(codes, dtype=np.float32) * scales).astype(np.float32)
    return result


def to_binary(X: np.ndarray) -> np.ndarray:
    """Rows X as bits (1 where a value is above 0), packed eight dimensions a byte."""
    return np.packbits(np.asarray(X) > 0, axis=1)


def from_binary(bits: np.ndarray, dim: int) -> np.ndarray:
    """Packed rows read back as -1 / +1 float32 values of `dim` dimensions."""
    signs = np.unpackbits(np.asarray(bits, dtype=np.uint8), axis=1, count=dim).astype(np.float32)
    return 2.0 * signs - 1.0


def bytes_per_row(store_dtype: str, dim: int) -> int:
    """What one row's vector takes in a store of `store_dtype` (float32, float16, int8, binary)."""
    return {"float32": 4 * dim, "float16": 2 * dim, "int8": dim, "binary": (dim + 7) // 8}[store_dtype]


class VectorCodec:
    """How a compact store's vectors are kept: `kind` int8 (with `scales`, one a dimension) or
    binary, of `dim` dimensions. `encode` gives the stored codes (rows without vectors, NaN, as 0),
    `decode` the float32 values heads read, `round_trip` both (what a vector computed live is
    turned into, so a head sees the distribution it was trained on)."""

    def __init__(self, kind: str, dim: int, scales: np.ndarray | None = None) -> None:
        if kind not in COMPACT_DTYPES:
            raise ValueError(f"{kind!r} is not a compact dtype ({', '.join(COMPACT_DTYPES)})")
        self.kind, self.dim = kind, int(dim)
        self.scales = None if scales is None else np.asarray(scales, dtype=np.float32)

    @property
    def width(self) -> int:
        """Stored columns a row: dim for int8, dim / 8 (rounded up) for binary."""
        return self.dim if self.kind == "int8" else (self.dim + 7) // 8

    @property
    def raw_dtype(self) -> np.dtype:
        return np.dtype(np.int8 if self.kind == "int8" else np.uint8)

    def with_scales(self, scales: np.ndarray) -> VectorCodec:
        return VectorCodec(self.kind, self.dim, scales)

    def encode(self, X: np.ndarray) -> np.ndarray:
        values = np.nan_to_num(np.asarray(X, dtype=np.float32), nan=0.0)
        if self.kind == "binary":
            return to_binary(values)
        if self.scales is None:
            raise RuntimeError("an int8 store's scales are fixed before its first row is written")
        return to_int8(values, self.scales)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        if self.kind == "binary":
            return from_binary(codes, self.dim)
        if self.scales is None:
            raise RuntimeError("int8 codes without their scales cannot be read")
        return from_int8(codes, self.scales)

    def round_trip(self, X: np.ndarray) -> np.ndarray:
        return self.decode(self.encode(X))

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "dim": self.dim,
                **({} if self.scales is None else {"scales": [float(s) for s in self.scales]})}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> VectorCodec:
        scales = data.get("scales")
        return cls(str(data["kind"]), int(data["dim"]),  # type: ignore[call-overload]
                   None if scales is None else np.asarray(scales, dtype=np.float32))


class CompactVectors:
    """A compact store's dataset of one pooling, read like an array of float32 vectors (n, dim):
    ``V[a:b]``, ``V[rows]`` decode only what is read."""

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, raw: object, codec: VectorCodec) -> None:
        self.raw, self.codec = raw, codec
        self.shape = (len(raw), codec.dim)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: object) -> np.ndarray:
        return self.codec.decode(self.raw[key])  # type: ignore[index]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:  # numpy's protocol: say so rather than hand over a copy when none is allowed
            raise ValueError("rows read from a store are always a new array: copy=False cannot be met")
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)

    @property
    def file(self) -> object:
        return self.raw.file  # type: ignore[attr-defined]

    @property
    def name(self) -> str:
        return str(self.raw.name)  # type: ignore[attr-defined]


# A compact store's features/<pooling> dataset carries its codec as attributes: `quantized` (the
# kind), `dim` (the vectors' width; a binary row is stored in dim / 8 bytes) and, for int8, `scales`
# (float32, one a dimension), written before the first row is committed (featx.store.writer).
KIND_ATTR, DIM_ATTR, SCALES_ATTR = "quantized", "dim", "scales"


def codec_of(dataset: object) -> VectorCodec | None:
    """The codec of a stored features dataset; None for float vectors. An int8 one whose scales are not
    written yet (no row committed) has scales None."""
    attrs = dataset.attrs  # type: ignore[attr-defined]
    if KIND_ATTR not in attrs:
        return None
    scales = attrs.get(SCALES_ATTR)
    return VectorCodec(str(attrs[KIND_ATTR]), int(attrs[DIM_ATTR]), None if scales is None else np.asarray(scales))


def codec_attrs(codec: VectorCodec) -> dict[str, object]:
    """The attributes that record `codec` on a features dataset."""
    return {KIND_ATTR: codec.kind, DIM_ATTR: codec.dim,
            **({} if codec.scales is None else {SCALES_ATTR: codec.scales})}


def vectors_of(dataset: object) -> object:
    """A features dataset read as float vectors: itself when it holds floats, else CompactVectors."""
    codec = codec_of(dataset)
    return dataset if codec is None else CompactVectors(dataset, codec)
