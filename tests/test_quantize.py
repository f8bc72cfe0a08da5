"""Compact vectors (featx.store.quantize): int8 with one symmetric scale a dimension from a calibration
window, and binary signs packed into bits."""
import numpy as np

from featx.store import quantize


def _rows(n=500, d=37, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) * rng.uniform(0.01, 5, d) + rng.normal(size=d)).astype(np.float32)


def test_int8_keeps_each_value_within_half_its_dimensions_scale():
    X = _rows()
    scales = quantize.int8_scales(X)
    codes = quantize.to_int8(X, scales)
    assert codes.dtype == np.int8 and codes.shape == X.shape
    assert np.abs(codes).max(axis=0).tolist() == [127] * X.shape[1]  # the calibration rows span the range
    error = np.abs(quantize.from_int8(codes, scales) - X)
    assert (error <= scales / 2 + 1e-6).all()


def test_int8_clips_later_rows_beyond_the_calibration_window_and_never_divides_by_zero():
    X = _rows()
    X[:, 5] = 0.0  # a dimension the calibration never saw move
    scales = quantize.int8_scales(X[:100])
    assert scales[5] == 1.0 and np.isfinite(scales).all() and (scales > 0).all()
    later = X[100:] * 10
    codes = quantize.to_int8(later, scales)
    assert codes.min() >= -127 and codes.max() <= 127


def test_binary_packs_signs_eight_to_a_byte_and_reads_back_as_plus_minus_one():
    X = _rows(d=37)
    bits = quantize.to_binary(X)
    assert bits.dtype == np.uint8 and bits.shape == (len(X), 5)  # ceil(37 / 8)
    signs = quantize.from_binary(bits, 37)
    np.testing.assert_array_equal(signs, np.where(X > 0, 1.0, -1.0))
    # a cosine between two binary rows is 1 - 2 x Hamming / dim
    a, b = signs[0], signs[1]
    hamming = int(np.unpackbits(bits[0] ^ bits[1])[:37].sum())
    assert np.isclose(a @ b / 37, 1 - 2 * hamming / 37)


def test_the_bytes_a_row_takes():
    assert [quantize.bytes_per_row(d, 384) for d in ("float32", "float16", "int8", "binary")] == [1536, 768, 384, 48]
