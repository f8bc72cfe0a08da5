"""Compact stores (issue 33): `--store-dtype int8` (one symmetric scale a dimension, fixed from the input's
first window and written before the first row is committed) and `--store-dtype binary` (signs packed
into bits). Every reader decodes them; resume, shards and merge keep the same scales; heads, kNN's
Hamming path, predictors, verify and export read them as they are."""
import json

import h5py
import numpy as np
import pytest

import featx
from featx.errors import DamagedError, FeatxError
from featx.extraction.runners import CpuRunner
from featx.heads.inputs import labelled
from featx.heads.knn import KNNHead
from featx.heads.trained import TrainedHead
from featx.predictor import Predictor
from featx.store import open_store
from featx.store.export import export_store
from featx.store.merge import merge_shards
from featx.store.quantize import VectorCodec, int8_scales
from featx.store.rows import StoredRows
from featx.train import HeadSpec, train_heads
from featx.verify import verify_store
from tests.conftest import InterruptAfter

WINDOW = 64  # the train split's 240 rows are four windows


def _extract(source, out, backbone, store_dtype, **options):
    return featx.extract(source, out, model=backbone, pooling="mean,cls", dtype="fp32", store_dtype=store_dtype,
                         window_rows=WINDOW, progress=False, **options)


@pytest.fixture(scope="module")
def compact(tmp_path_factory, labelled_stores, tiny_backbone):
    """int8 and binary stores of the labelled train and test splits, beside float32 ones of the same rows."""
    folder = tmp_path_factory.mktemp("compact")
    stores = {}
    for split in ("train", "test"):
        source = labelled_stores[split].path.with_suffix(".csv")
        for dtype in ("float32", "int8", "binary"):
            stores[split, dtype] = _extract(source, folder / f"{split}-{dtype}.h5", tiny_backbone, dtype)
    return stores


def test_int8_rows_are_the_float_rows_coded_with_the_first_windows_scales(compact):
    floats = compact["train", "float32"].load("mean")[0]
    store = compact["train", "int8"]
    codec = store.codec("mean")
    np.testing.assert_array_equal(codec.scales, int8_scales(floats[:WINDOW]))
    raw = store.raw_features("mean")
    assert raw.dtype == np.int8 and raw.shape == floats.shape and store.dim == floats.shape[1]
    np.testing.assert_array_equal(raw[:], np.clip(np.rint(floats / codec.scales), -127, 127).astype(np.int8))
    decoded = store.load("mean")[0]
    assert decoded.dtype == np.float32
    inside = np.abs(floats) <= 127 * codec.scales  # within the calibration range: at most half a step off
    assert (np.abs(decoded - floats)[inside] <= codec.scales.repeat(len(floats)).reshape(-1, len(codec.scales),
                                                                                           order="F")[inside] / 2
            + 1e-7).all()
    assert open_store(store.path).info()["store_dtype"] == "int8"


def test_binary_rows_are_the_signs_packed_and_read_as_plus_or_minus_one(compact):
    floats = compact["train", "float32"].load("cls")[0]
    store = compact["train", "binary"]
    raw = store.raw_features("cls")
    assert raw.dtype == np.uint8 and raw.shape == (len(floats), (floats.shape[1] + 7) // 8)
    np.testing.assert_array_equal(store.load("cls")[0], np.where(floats > 0, 1.0, -1.0).astype(np.float32))
    assert store.codec("cls").scales is None and store.dim == floats.shape[1]


def test_a_resumed_int8_store_keeps_the_scales_written_with_its_first_window(tmp_path, compact, labelled_stores,
                                                                             tiny_backbone):
    source = labelled_stores["train"].path.with_suffix(".csv")
    runner = InterruptAfter(CpuRunner(4096), windows=2)
    with pytest.raises(KeyboardInterrupt):
        _extract(source, tmp_path / "cut.h5", tiny_backbone, "int8", runner=runner)
    with h5py.File(tmp_path / "cut.h5", "r") as f:  # two windows in: the scales were committed with the first
        assert 0 < f.attrs["n_done"] < 240
        np.testing.assert_array_equal(f["features/mean"].attrs["scales"], compact["train", "int8"].codec("mean").scales)
    resumed = _extract(source, tmp_path / "cut.h5", tiny_backbone, "int8")
    _assert_same_store(resumed.path, compact["train", "int8"].path)


def test_int8_shards_take_the_inputs_first_window_scales_and_merge_bit_identical(tmp_path, compact, labelled_stores,
                                                                                  tiny_backbone):
    source = labelled_stores["train"].path.with_suffix(".csv")
    shards = [_extract(source, tmp_path / "s.h5", tiny_backbone, "int8", shard=(i, 3)).path for i in range(3)]
    with h5py.File(shards[2], "r") as f:  # a shard far from row 0 still codes with row 0's window
        np.testing.assert_array_equal(f["features/cls"].attrs["scales"], compact["train", "int8"].codec("cls").scales)
    merged = merge_shards(shards, tmp_path / "merged.h5")
    _assert_same_store(merged, compact["train", "int8"].path)
    with h5py.File(shards[1], "r+") as f:  # a shard coded otherwise is refused
        f["features/mean"].attrs["scales"] = f["features/mean"].attrs["scales"] * 2
    with pytest.raises(FeatxError, match="other scales"):
        merge_shards(shards, tmp_path / "again.h5")


def _assert_same_store(a, b):
    with h5py.File(a, "r") as x, h5py.File(b, "r") as y:
        for name in ("ids", "labels", "features/mean", "features/cls"):
            np.testing.assert_array_equal(x[name][:], y[name][:])
        np.testing.assert_array_equal(x["features/mean"].attrs["scales"], y["features/mean"].attrs["scales"])


def test_a_compact_store_without_its_codec_is_refused_as_damaged(tmp_path, compact):
    path = tmp_path / "damaged.h5"
    path.write_bytes(compact["train", "int8"].path.read_bytes())
    with h5py.File(path, "r+") as f:
        del f["features/mean"].attrs["scales"]
    with pytest.raises(DamagedError, match="features/mean has no readable int8 scales"):
        open_store(path)
    with h5py.File(path, "r+") as f:
        del f["features/mean"].attrs["quantized"]
    with pytest.raises(DamagedError, match="features/mean is not stored as int8 codes"):
        open_store(path)


def test_heads_read_compact_stores_in_memory_and_streamed(compact):
    results = {}
    for dtype in ("float32", "int8", "binary"):
        _, rows = train_heads(compact["train", dtype], [HeadSpec.parse("logreg:C=1")], ["mean"],
                              test=compact["test", dtype])
        results[dtype] = rows[0]["test_accuracy"]
        streamed, _ = labelled(compact["train", dtype], "mean", budget=64 * 1024)
        assert isinstance(streamed, StoredRows)
        np.testing.assert_array_equal(streamed[:], compact["train", dtype].load("mean")[0])
    assert abs(results["int8"] - results["float32"]) <= 0.02, results
    assert results["binary"] > 0.5, results


def test_knn_keeps_binary_rows_packed_and_ranks_them_by_hamming_distance(tmp_path, compact):
    X, y = compact["train", "binary"].load("mean")
    queries = compact["test", "binary"].load("mean")[0]
    head = KNNHead(n_neighbors=5).fit(X, y)
    assert head.train_.dtype == np.uint8 and head.train_.shape == (len(X), (X.shape[1] + 7) // 8)
    bits, query_bits = X > 0, queries > 0
    hamming = (query_bits[:, None, :] != bits[None, :, :]).sum(axis=2)
    nearest = np.stack([np.lexsort((np.arange(len(X)), row))[:5] for row in hamming])  # ties: lower row first
    votes = np.stack([np.bincount(np.searchsorted(head.classes_, y[n]), minlength=len(head.classes_)) / 5
                      for n in nearest])
    np.testing.assert_array_equal(head.predict_proba(queries), votes)
    float_head = KNNHead(n_neighbors=5).fit(compact["train", "float32"].load("mean")[0], y)
    assert head.train_.nbytes * 30 < float_head.train_.nbytes


def test_a_predictor_from_a_compact_store_codes_its_vectors_as_the_store_did(tmp_path, compact, labelled_stores,
                                                                            tiny_backbone):
    texts = [line.split(",")[0] for line in  # the training store's own rows: coded with the same scales
             labelled_stores["train"].path.with_suffix(".csv").read_text().splitlines()[1:]]
    for dtype in ("int8", "binary"):
        heads, _ = train_heads(compact["train", dtype], [HeadSpec.parse("logreg:C=1")], ["mean"])
        folder = heads[0].save(tmp_path / f"head-{dtype}")
        saved = TrainedHead.load(folder)
        assert saved.vector_codec["kind"] == dtype
        predictor = Predictor(saved, backbone=tiny_backbone, device="cpu")
        np.testing.assert_allclose(predictor.outputs(texts), saved.predict_proba(compact["train", dtype]), atol=1e-6)


def test_verify_compares_a_compact_store_with_fresh_vectors_coded_the_same_way(compact):
    for dtype in ("int8", "binary"):
        report = verify_store(compact["train", dtype].path, rows=12)
        assert report.passed and report.min_cosine > 0.999, report


def test_export_writes_the_codes_and_their_scales_as_they_are(tmp_path, compact):
    store = compact["train", "int8"]
    out = export_store(store.path, tmp_path / "npy")
    sidecar = json.loads((out / "featx-export.json").read_text())
    codes = np.load(out / "mean.npy")
    assert sidecar["dtype"] == "int8" and codes.dtype == np.int8
    codec = VectorCodec.from_json(sidecar["codecs"]["mean"])
    np.testing.assert_array_equal(codec.decode(codes), store.load("mean")[0])
    pq = pytest.importorskip("pyarrow.parquet")
    binary = compact["train", "binary"]
    table = pq.read_table(export_store(binary.path, tmp_path / "pq", fmt="parquet") / "vectors.parquet")
    bits = np.asarray(table.column("cls").combine_chunks().flatten()).reshape(len(binary), -1)
    np.testing.assert_array_equal(bits, binary.raw_features("cls")[:])


def test_a_relabelled_compact_store_reads_its_codes_through_the_view(tmp_path, compact, labelled_stores):
    from featx.data import open_input
    from featx.relabel import relabel_store

    source = labelled_stores["train"].path.with_suffix(".csv")
    flipped = tmp_path / "flipped.csv"
    lines = source.read_text().splitlines()
    flipped.write_text("\n".join([lines[0]] + [line.replace(",pos", ",good").replace(",neg", ",bad")
                                                for line in lines[1:]]) + "\n")
    for dtype in ("int8", "binary"):
        store = compact["train", dtype]
        view = relabel_store(store.path, open_input(flipped, text_column="text", label_column="label"),
                             tmp_path / f"view-{dtype}.h5")
        with open_store(view) as relabelled:
            assert "good" in relabelled.classes and relabelled._file["features/mean"].is_virtual
            np.testing.assert_array_equal(relabelled.load("mean")[0], store.load("mean")[0])
