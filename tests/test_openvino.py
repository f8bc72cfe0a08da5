"""The OpenVINO backend (featx[openvino]): the torch runner's vectors, its own fingerprint, a cache
folder of its own, and one line without the extra."""
import json
import sys

import numpy as np
import pytest
import torch

import featx
from featx.hardware import has_fast_bf16
from tests.conftest import min_cosine, write_lines

TEXTS = ["a fine film", "dull", "an utterly charming , funny and moving picture that earns every minute", "",
         "the plot , such as it is , never quite comes together , and the cast looks bored throughout ."] * 7


@pytest.fixture
def texts_file(tmp_path):
    return write_lines(tmp_path / "in.txt", [f"{t} {i}" for i, t in enumerate(TEXTS)])


@pytest.mark.parametrize("options", [{}, {"layers": "-2,-1", "pooling": "mean,cls"},
                                     {"long": "chunk", "max_length": 8, "stride": 2}],
                         ids=["last-layer", "two-layers", "chunked"])
def test_openvino_fp32_vectors_equal_the_torch_runners(tmp_path, texts_file, tiny_bert_dir, options):
    pytest.importorskip("openvino", reason="featx[openvino] is not installed")
    stores = {backend: featx.extract(texts_file, tmp_path / f"{backend}.h5", model=str(tiny_bert_dir), dtype="fp32",
                                     backend=backend, progress=False, **options) for backend in ("torch", "openvino")}
    assert stores["openvino"].config.backend == "openvino" and stores["torch"].config.backend is None
    for pooling in stores["torch"].poolings:
        ours, theirs = stores["openvino"].load(pooling)[0], stores["torch"].load(pooling)[0]
        assert ours.shape == theirs.shape and min_cosine(ours, theirs) >= 0.99999, pooling
        assert np.allclose(ours, theirs, atol=1e-4), pooling


def test_the_backend_enters_the_fingerprint_and_the_model_is_cached_only_in_featx_cache(tmp_path, texts_file,
                                                                                        tiny_bert_dir):
    pytest.importorskip("openvino", reason="featx[openvino] is not installed")
    import os
    from pathlib import Path

    out = tmp_path / "out"
    out.mkdir()
    torch_store = featx.extract(texts_file, out / "torch.h5", model=str(tiny_bert_dir), dtype="fp32", backend="torch",
                                progress=False)
    ov_store = featx.extract(texts_file, out / "ov.h5", model=str(tiny_bert_dir), dtype="fp32", backend="openvino",
                             progress=False)
    assert "backend" not in torch_store.config.to_json()  # the None rule: torch stores keep their fingerprint
    assert json.loads(ov_store.config.to_json())["backend"] == "openvino"
    assert ov_store.fingerprint != torch_store.fingerprint
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".lock")) == ["ov.h5", "torch.h5"]
    cached = list((Path(os.environ["FEATX_CACHE"]) / "openvino").iterdir())
    assert cached and all((entry / "model.xml").exists() and (entry / "model.bin").exists() for entry in cached)
    for backend in ("openvino", "auto"):  # auto: the backend the store at the output was made with
        with featx.extract(texts_file, out / "ov.h5", model=str(tiny_bert_dir), dtype="fp32", backend=backend,
                           progress=False) as again:
            assert np.array_equal(again.load()[0], ov_store.load()[0])  # a complete store is returned as it is
    assert featx.extract(texts_file, out / "torch.h5", model=str(tiny_bert_dir), dtype="fp32",
                         progress=False).config.backend is None
    assert featx.extract(texts_file, out / "new.h5", model=str(tiny_bert_dir), dtype="fp32",
                         progress=False).config.backend == "openvino"  # a new store: auto, the default
    torch_store.close()
    replaced = featx.extract(texts_file, out / "torch.h5", model=str(tiny_bert_dir), dtype="fp32", overwrite=True,
                             backend="auto", progress=False)  # replacing it, auto is free to pick openvino
    assert replaced.config.backend == "openvino"
    with pytest.raises(featx.FeatxError, match="another extraction config"):
        featx.extract(texts_file, out / "ov.h5", model=str(tiny_bert_dir), dtype="fp32", backend="torch",
                      progress=False)
    ov_store.close()
    assert featx.extract(texts_file, out / "ov.h5", model=str(tiny_bert_dir), dtype="fp32", overwrite=True,
                         backend="torch", progress=False).config.backend is None  # replaced, as asked


def test_the_default_runs_on_torch_where_openvino_is_not_installed(monkeypatch, tmp_path, texts_file, tiny_bert_dir):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with featx.extract(texts_file, tmp_path / "s.h5", model=str(tiny_bert_dir), dtype="fp32", progress=False) as store:
        assert store.config.backend is None and len(store) > 0


def test_asking_for_openvino_without_the_extra_is_one_line(cli, monkeypatch, tmp_path, texts_file, tiny_bert_dir):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    result = cli("extract", str(texts_file), "-o", str(tmp_path / "s.h5"), "--model", str(tiny_bert_dir),
                 "--backend", "openvino", "--dtype", "fp32")
    assert result.code == 2 and "pip install 'featx[openvino]'" in result.err
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "s.h5").exists()


def test_openvino_misfits_are_one_line(cli, tmp_path, texts_file, tiny_bert_dir):
    result = cli("extract", str(texts_file), "-o", str(tmp_path / "s.h5"), "--model", str(tiny_bert_dir),
                 "--backend", "openvino", "--cache-layer", "1")
    assert result.code == 2 and "openvino runs on the CPU, in fp32, bf16 or int8" in result.err
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "s.h5").exists()


def test_a_killed_openvino_extraction_resumes_bit_identically(tmp_path, tiny_bert_dir):
    pytest.importorskip("openvino", reason="featx[openvino] is not installed")
    from tests.conftest import kill_part_way, run_to_end, tiny_extract_command

    path = write_lines(tmp_path / "in.txt", [f"row {i}: " + "word " * (i % 23) for i in range(2400)])
    out = tmp_path / "killed.h5"
    command, env = tiny_extract_command(path, out, tiny_bert_dir, "mean")
    command += ["--backend", "openvino"]
    run_to_end([*command[:command.index("-o") + 1], str(tmp_path / "whole.h5"), *command[command.index("-o") + 2:]],
               env)  # uninterrupted (and the converted model cached for the runs below)
    assert kill_part_way(command, env, out) >= 4, "the kills must land part-way for this test to mean anything"
    run_to_end(command, env)
    with featx.open_store(out) as resumed, featx.open_store(tmp_path / "whole.h5") as whole:
        assert resumed.info()["timings"]["resumed_from_row"] > 0 and resumed.config.backend == "openvino"
        assert resumed.ids.tolist() == whole.ids.tolist()
        assert np.array_equal(resumed.load()[0], whole.load()[0])


def test_openvino_sends_no_telemetry_and_writes_nothing_under_home(tmp_path):
    pytest.importorskip("openvino", reason="featx[openvino] is not installed")
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}  # CI declines by itself
    env["HOME"] = str(tmp_path)
    code = ("from featx.backbones.openvino import require_openvino; ov = require_openvino(); "
            "import openvino.tools.ovc as ovc; assert not ovc.telemetry.consent")
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    assert list(tmp_path.iterdir()) == []  # no ~/intel/openvino_ga_cid, no stats


# Threads that make a process's first OpenVINO inference at the same moment (see
# featx.backbones.openvino): with 8 of them and a tiny GIL switch interval, 8 processes in 10
# hung before the first inference ran alone.
_FIRST_INFERENCES_AT_ONCE = """
import sys, threading
import torch
from featx.backbones import load_backbone
from featx.backbones.openvino import CompiledTextModel

THREADS = 8
encoder = CompiledTextModel(load_backbone(sys.argv[1], device="cpu"), (-1,), "fp32", workers=THREADS)
sys.setswitchinterval(1e-6)
barrier = threading.Barrier(THREADS)
ids = torch.ones((2, 8), dtype=torch.int64)


def first_inference():
    barrier.wait()
    encoder(ids, torch.ones_like(ids))


threads = [threading.Thread(target=first_inference) for _ in range(THREADS)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""


def test_threads_making_the_first_inference_at_once_do_not_deadlock(tmp_path, tiny_bert_dir):
    pytest.importorskip("openvino", reason="featx[openvino] is not installed")
    import subprocess

    script = tmp_path / "first_inferences.py"
    script.write_text(_FIRST_INFERENCES_AT_ONCE)
    for run in range(3):
        try:
            subprocess.run([sys.executable, str(script), str(tiny_bert_dir)], check=True, timeout=120,
                           capture_output=True)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run {run + 1}: threads making their first OpenVINO inference at once deadlocked")


def test_openvino_batches_by_its_own_measured_budget(tiny_backbone):
    pytest.importorskip("openvino", reason="featx[openvino] is not installed")
    from featx.backbones.loaders import LOADERS
    from featx.featurizers.text import CPU_BATCH_TOKENS, TextFeaturizer

    budgets = {backend: TextFeaturizer(tiny_backbone, featx.make_config(tiny_backbone, dtype="fp32",
                                                                        backend=backend)).default_batch_cost()
               for backend in ("torch", "openvino")}
    assert budgets == {"torch": CPU_BATCH_TOKENS, "openvino": 1024} and LOADERS["openvino"].batch_tokens == 1024


def test_a_read_only_or_damaged_model_cache_costs_a_conversion_and_nothing_else(tmp_path, monkeypatch, texts_file,
                                                                                tiny_bert_dir):
    pytest.importorskip("openvino", reason="featx[openvino] is not installed")
    from featx.backbones import openvino as ov_backend

    monkeypatch.setattr(ov_backend, "_COMPILED", {})  # no compiled model left from other tests
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FEATX_CACHE", str(blocker / "cache"))  # no folder can be made there, not even by root
    first = featx.extract(texts_file, tmp_path / "a.h5", model=str(tiny_bert_dir), dtype="fp32",
                          backend="openvino", progress=False)
    assert blocker.read_text() == "" and len(first) == len(TEXTS)
    cache = tmp_path / "cache"
    monkeypatch.setenv("FEATX_CACHE", str(cache))
    monkeypatch.setattr(ov_backend, "_COMPILED", {})
    featx.extract(texts_file, tmp_path / "b.h5", model=str(tiny_bert_dir), dtype="fp32", backend="openvino",
                  progress=False)
    (entry,) = (cache / "openvino").iterdir()
    (entry / "model.xml").write_text("<not a model")  # damaged: read fails, converted again
    monkeypatch.setattr(ov_backend, "_COMPILED", {})
    third = featx.extract(texts_file, tmp_path / "c.h5", model=str(tiny_bert_dir), dtype="fp32", backend="openvino",
                          progress=False)
    assert np.array_equal(first.load()[0], third.load()[0])
    assert (entry / "model.xml").read_text().startswith("<?xml")  # replaced by a whole one


def test_a_model_openvino_cannot_convert_is_one_line(cli, monkeypatch, tmp_path, texts_file, tiny_bert_dir):
    openvino = pytest.importorskip("openvino", reason="featx[openvino] is not installed")

    def refuse(*args, **kwargs):
        raise RuntimeError("Cannot convert aten::something_new\nlong details")

    monkeypatch.setattr(openvino, "convert_model", refuse)
    monkeypatch.setenv("FEATX_CACHE", str(tmp_path / "empty-cache"))  # nothing converted before
    from featx.backbones import openvino as ov_backend

    monkeypatch.setattr(ov_backend, "_COMPILED", {})
    result = cli("extract", str(texts_file), "-o", str(tmp_path / "s.h5"), "--model", str(tiny_bert_dir),
                 "--backend", "openvino", "--dtype", "fp32")
    assert result.code == 2 and "could not convert" in result.err and "--backend torch" in result.err
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "s.h5").exists()


def test_openvino_runs_an_image_module_as_torch_does(tmp_path, cifar_few):
    pytest.importorskip("openvino", reason="featx[openvino] is not installed")
    pytest.importorskip("efficientnet_lite_pytorch")
    options = {"model": "efficientnet-lite0", "pooling": "mean,max", "dtype": "fp32", "progress": False}
    with featx.extract(cifar_few, tmp_path / "torch.h5", backend="torch", **options) as torch_store, \
            featx.extract(cifar_few, tmp_path / "openvino.h5", backend="openvino", **options) as ov_store:
        assert ov_store.config.backend == "openvino" and torch_store.config.backend is None
        assert ov_store.fingerprint != torch_store.fingerprint
        for pooling in ("mean", "max"):
            assert min_cosine(ov_store.load(pooling)[0], torch_store.load(pooling)[0]) >= 0.99999
        # in memory, the store's config gives the store's vectors: OpenVINO again
        images = [(cifar_few / str(i)).read_bytes() for i in ov_store.ids]
        encoder = featx.Encoder.for_config(ov_store.config)
        np.testing.assert_allclose(encoder.features(images)["mean"], ov_store.load("mean")[0], atol=1e-6)


def test_an_interrupted_openvino_image_extraction_resumes_bit_identically(tmp_path, cifar_few):
    pytest.importorskip("openvino", reason="featx[openvino] is not installed")
    pytest.importorskip("efficientnet_lite_pytorch")
    from featx.extraction.runners import make_runner

    class StopAfterOneWindow:
        batch_cost, calls = 0, 0

        def run(self, featurizer, items, timer=None):
            if self.calls == 1:
                raise KeyboardInterrupt
            self.calls += 1
            return make_runner(featurizer).run(featurizer, items, timer)

    dtype = "bf16" if has_fast_bf16(torch.device("cpu")) else "fp32"  # OpenVINO refuses bf16 on a CPU without it
    options = {"model": "efficientnet-lite0", "backend": "openvino", "dtype": dtype, "window_rows": 4,
               "progress": False}
    with pytest.raises(KeyboardInterrupt):
        featx.extract(cifar_few, tmp_path / "resumed.h5", runner=StopAfterOneWindow(), **options)
    with featx.extract(cifar_few, tmp_path / "resumed.h5", **options) as resumed, \
            featx.extract(cifar_few, tmp_path / "whole.h5", **options) as whole:
        assert resumed.info()["timings"]["resumed_from_row"] == 4 and resumed.config.backend == "openvino"
        assert resumed.fingerprint == whole.fingerprint and resumed.ids.tolist() == whole.ids.tolist()
        assert np.array_equal(resumed.load()[0], whole.load()[0])


def test_openvino_takes_image_modules_only_and_auto_leaves_the_others_on_torch(cli, tmp_path, cifar_few,
                                                                              tiny_vit_dir):
    pytest.importorskip("openvino", reason="featx[openvino] is not installed")
    refused = cli("extract", cifar_few, "-o", tmp_path / "vit.h5", "--model", tiny_vit_dir, "--backend", "openvino",
                  "--dtype", "fp32", "-q")
    assert refused.code == 2 and refused.err.count("\n") == 1
    assert "openvino runs image models given as torch modules" in refused.err and not (tmp_path / "vit.h5").exists()
    with featx.extract(cifar_few, tmp_path / "auto.h5", model=str(tiny_vit_dir), backend="auto", dtype="fp32",
                       progress=False) as store:
        assert store.config.backend is None


def test_image_modules_that_share_weights_but_not_structure_never_share_a_converted_model(tmp_path, cifar_few):
    """A state dict holds no stride: two modules with the same weights and different strides
    must each get their own OpenVINO model (in the cache folder and among the compiled ones)."""
    pytest.importorskip("openvino", reason="featx[openvino] is not installed")
    import torch

    preprocess = featx.ImagePreprocess(size=40, crop=32, mean=(127.0,) * 3, std=(64.0,) * 3)
    torch.manual_seed(0)
    first = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=1), torch.nn.ReLU())
    second = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU())
    second.load_state_dict(first.state_dict())
    for i, module in enumerate((first, second)):
        backbone = featx.module_backbone(module, preprocess, name="shared-weights", device="cpu")
        options = {"model": backbone, "pooling": "mean,max", "dtype": "fp32", "progress": False}
        with featx.extract(cifar_few, tmp_path / f"torch-{i}.h5", **options) as on_torch, \
                featx.extract(cifar_few, tmp_path / f"openvino-{i}.h5", backend="openvino", **options) as on_openvino:
            np.testing.assert_allclose(on_openvino.load("max")[0], on_torch.load("max")[0], atol=1e-5)
