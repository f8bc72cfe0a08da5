"""A backend is one loader (featx.backbones.loaders): a test-only onnxruntime-like backend (a wrapper
that runs the torch module itself, counting its calls) plugs in by one registration, with no edit to
the featurizers or the config, and runs extraction, reruns, the CLI and predictors (issue 32)."""
import numpy as np
import pytest
import torch

import featx
from featx.backbones.loaders import LOADERS, Loader, register_backend, resolve_backend
from tests.conftest import registries_restored, run_cli, write_lines

CALLS = {"batches": 0}


class OnnxLike:
    """Stands in for an onnxruntime session: hidden states at the config's layers, concatenated."""

    def __init__(self, backbone, config) -> None:
        self.model, self.layers = backbone.model, config.layers

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        CALLS["batches"] += 1
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return torch.cat([out.hidden_states[i] for i in self.layers], dim=-1)


def _fits(backbone, dtype, cache_layer):
    return None if dtype == "fp32" and cache_layer is None else "runs in fp32, without --cache-layer"


@pytest.fixture
def texts_file(tmp_path):
    return write_lines(tmp_path / "in.txt", [f"text {i}: " + "word " * (i % 9) for i in range(40)])


@pytest.fixture
def onnx_like():
    with registries_restored():
        register_backend(Loader("onnxlike", load=OnnxLike, fits=_fits, batch_tokens=512))  # the one line
        CALLS["batches"] = 0
        yield


def test_a_registered_backend_runs_extraction_and_is_recorded(onnx_like, tmp_path, texts_file, tiny_bert_dir):
    options = {"model": str(tiny_bert_dir), "dtype": "fp32", "layers": "-2,-1", "progress": False}
    with featx.extract(texts_file, tmp_path / "torch.h5", backend="torch", **options) as torch_store, \
            featx.extract(texts_file, tmp_path / "onnx.h5", backend="onnxlike", **options) as store:
        assert CALLS["batches"] > 0 and store.config.backend == "onnxlike" and torch_store.config.backend is None
        assert store.fingerprint != torch_store.fingerprint
        np.testing.assert_allclose(store.load()[0], torch_store.load()[0], atol=1e-5)
        assert store.info()["timings"]["batch_tokens"] == 512  # its own budget, declared by the loader
    # A rerun without --backend keeps the store's own backend: returned untouched.
    calls = CALLS["batches"]
    with featx.extract(texts_file, tmp_path / "onnx.h5", **options) as again:
        assert again.config.backend == "onnxlike" and CALLS["batches"] == calls
    # Auto picks only backends that declare they may be picked.
    assert resolve_backend("auto", featx.load_backbone(str(tiny_bert_dir), device="cpu"), "fp32") in (None, "openvino")


def test_a_predictor_from_its_store_runs_the_same_backend(onnx_like, tmp_path, tiny_bert_dir):
    rows = [(f"{'good' if i % 2 else 'bad'} film number {i}", "pos" if i % 2 else "neg") for i in range(30)]
    path = write_lines(tmp_path / "t.csv", ["text,label", *(f"{t},{y}" for t, y in rows)])
    store = featx.extract(path, tmp_path / "s.h5", model=str(tiny_bert_dir), dtype="fp32", backend="onnxlike",
                          progress=False)
    head = featx.train_head(store, "logreg")
    before = CALLS["batches"]
    predictor = featx.Predictor(head)
    np.testing.assert_allclose(predictor.predict_proba([t for t, _ in rows]),
                               head.estimator.predict_proba(store.load()[0]), atol=1e-6)
    assert CALLS["batches"] > before


def test_what_it_does_not_fit_and_unknown_names_are_one_line(onnx_like, tmp_path, texts_file, tiny_bert_dir, capsys):
    code, _, err = run_cli(capsys, "extract", texts_file, "-o", tmp_path / "a.h5", "--model", tiny_bert_dir,
                           "--backend", "onnxlike", "--dtype", "bf16")
    assert code == 2 and err.count("\n") == 1 and "onnxlike runs in fp32" in err
    code, _, err = run_cli(capsys, "extract", texts_file, "-o", tmp_path / "a.h5", "--model", tiny_bert_dir,
                           "--backend", "onnx")
    assert code == 2 and err.count("\n") == 1 and "'onnx' is unknown: choose from torch, openvino, onnxlike, auto" in err
    code, _, err = run_cli(capsys, "extract", texts_file, "-o", tmp_path / "a.h5", "--model", tiny_bert_dir,
                           "--backend", "onnxlike", "--dtype", "fp32", "-q")
    assert code == 0, err
    with pytest.raises(ValueError, match="registered already"):
        register_backend(LOADERS["onnxlike"])
