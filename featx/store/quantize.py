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

import numpy as np

COMPACT_DTYPES = ("int8", "binary")
INT8_LEVELS = 127


def int8_scales(calibration: np.ndarray) -> np.ndarray:
    """One scale a dimension (float32) from the calibration rows (rows x dim)."""
    largest = np.abs(np.asarray(calibration, dtype=np.float32)).max(axis=0)
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
