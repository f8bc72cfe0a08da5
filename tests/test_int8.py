"""--dtype int8 (featx.backbones.int8): NNCF's static quantization run by OpenVINO, calibrated on the
input's own first rows, measured against fp32, refused below its floor unless allowed, made once."""
import json
import re
import shutil
import sys
import warnings

import numpy as np
import pytest

import featx
from featx.backbones import int8
from tests.conftest import write_lines

pytest.importorskip("openvino", reason="featx[openvino] is not installed")
pytest.importorskip("nncf", reason="featx[int8] is not installed")

TEXTS = [f"row {i}: " + " ".join(["a fine film", "dull", "the cast looks bored", "moving"][: 1 + i % 4]) * (1 + i % 3)
         for i in range(40)]
CALIBRATION = 12


@pytest.fixture
def texts_file(tmp_path):
    return write_lines(tmp_path / "in.txt", TEXTS)


def int8_store(texts_file, out, model_dir, **options):
    options = {"calibration_rows": CALIBRATION, "allow_low_fidelity": True, **options}
    return featx.extract(texts_file, out, model=str(model_dir), dtype="int8", backend="openvino", pooling="mean",
                         normalize=False, progress=False, **options)


def test_int8_is_calibrated_on_the_inputs_first_rows_and_its_measured_fidelity_is_recorded(tmp_path, texts_file,
                                                                                          tiny_bert_dir):
    with int8_store(texts_file, tmp_path / "int8.h5", tiny_bert_dir) as store, \
            featx.extract(texts_file, tmp_path / "fp32.h5", model=str(tiny_bert_dir), dtype="fp32", backend="openvino",
                          pooling="mean", normalize=False, progress=False) as fp32:
        config = json.loads(store.config.to_json())
        assert (config["dtype"], config["backend"], config["calibration_rows"]) == ("int8", "openvino", CALIBRATION)
        assert config["calibration_sha256"] == int8.calibration_sha256(TEXTS[:CALIBRATION])
        fidelity = store.header.hardware["int8_fidelity"]
        assert fidelity["rows"] == CALIBRATION and fidelity["floor"] == int8.FLOOR
        # The figure recorded is the int8 vectors' own cosine to fp32 over the calibration rows.
        ours, theirs = store.load("mean")[0][:CALIBRATION], fp32.load("mean")[0][:CALIBRATION]
        cosines = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
        assert fidelity["mean_cosine"] == pytest.approx(float(cosines.mean()), abs=2e-3)
        assert fidelity["min_cosine"] == pytest.approx(float(cosines.min()), abs=5e-3)
        assert not np.array_equal(ours, theirs)  # quantized: not the fp32 vectors
        assert store.fingerprint != fp32.fingerprint
    other = int8_store(texts_file, tmp_path / "other.h5", tiny_bert_dir, calibration_rows=CALIBRATION + 1)
    assert other.fingerprint != store.fingerprint  # which rows calibrated it is part of what made the vectors
    other.close()


def test_the_calibration_rows_are_read_without_a_second_pass_over_the_input(tmp_path, texts_file, tiny_bert_dir,
                                                                           monkeypatch):
    """int8 reads its calibration rows from the input's start; the one scan of the whole input (rows,
    labels, hash) is the extraction's own, as for every other dtype."""
    from featx.data.source import InputSource

    scans, scan = [], InputSource.scan

    def counted(self):
        scans.append(self.name)
        return scan(self)

    monkeypatch.setattr(InputSource, "scan", counted)
    with int8_store(texts_file, tmp_path / "int8.h5", tiny_bert_dir) as store:
        assert store.config.calibration_sha256 == int8.calibration_sha256(TEXTS[:CALIBRATION])
    assert len(scans) == 1


def test_a_mean_cosine_below_the_floor_is_refused_in_one_line_and_writes_nothing(cli, monkeypatch, tmp_path,
                                                                                 texts_file, tiny_bert_dir):
    monkeypatch.setattr(int8, "FLOOR", 1.01)  # no model reaches it
    command = ["extract", str(texts_file), "-o", str(tmp_path / "s.h5"), "--model", str(tiny_bert_dir),
               "--backend", "openvino", "--dtype", "int8", "--calibration-rows", str(CALIBRATION)]
    refused = cli(*command)
    assert refused.code == 2 and "below the floor 1.01" in refused.err and "--allow-low-fidelity" in refused.err
    assert re.search(r"mean cosine of [01]\.\d{4} to fp32", refused.err) and len(refused.err.strip().splitlines()) == 1
    assert not (tmp_path / "s.h5").exists()
    kept = cli(*command, "--allow-low-fidelity")
    assert kept.code == 0, kept.err
    with featx.open_store(tmp_path / "s.h5") as store:
        assert store.header.hardware["int8_fidelity"]["floor"] == 1.01


def test_the_int8_model_is_made_once_served_from_the_cache_and_a_damaged_one_made_again(monkeypatch, tmp_path,
                                                                                        texts_file, tiny_bert_dir):
    import nncf

    monkeypatch.setenv("FEATX_CACHE", str(tmp_path / "cache"))  # this test's own cache, and a fresh process
    monkeypatch.setattr(int8, "_MADE", {})
    first = int8_store(texts_file, tmp_path / "a.h5", tiny_bert_dir)
    vectors = first.load("mean")[0]
    first.close()
    entries = [p for p in (tmp_path / "cache" / "openvino").iterdir() if "-int8-" in p.name]
    assert len(entries) == 1 and (entries[0] / "fidelity.json").is_file()
    monkeypatch.setattr(int8, "_MADE", {})  # a new process: only the cache on disk
    quantized = []
    real_quantize = nncf.quantize
    monkeypatch.setattr(nncf, "quantize", lambda *a, **k: quantized.append(1) or real_quantize(*a, **k))
    with int8_store(texts_file, tmp_path / "b.h5", tiny_bert_dir) as again:
        assert quantized == [] and np.array_equal(again.load("mean")[0], vectors)
    weights = entries[0] / "model.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(int8, "_MADE", {})
    with pytest.warns(featx.FeatxWarning, match="it was quantized again"), \
            int8_store(texts_file, tmp_path / "c.h5", tiny_bert_dir) as remade:
        assert quantized == [1] and np.array_equal(remade.load("mean")[0], vectors)


def test_a_predictor_without_its_int8_model_says_whether_it_is_missing_or_damaged(monkeypatch, tmp_path,
                                                                                   texts_file, tiny_bert_dir):
    monkeypatch.setenv("FEATX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(int8, "_MADE", {})
    with int8_store(texts_file, tmp_path / "a.h5", tiny_bert_dir) as store:
        config = store.config
    backbone = featx.load_backbone(str(tiny_bert_dir), device="cpu")
    [entry] = [p for p in (tmp_path / "cache" / "openvino").iterdir() if "-int8-" in p.name]
    weights = entry / "model.bin"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(int8, "_MADE", {})  # another process: only the cache on disk
    with pytest.raises(featx.FeatxError, match=r"is damaged in \(it failed its check\) featx's cache"):
        int8.int8_model(backbone, config)
    shutil.rmtree(entry)
    with pytest.raises(featx.FeatxError, match="is not in featx's cache"):
        int8.int8_model(backbone, config)


def test_a_shard_calibrates_on_the_inputs_first_rows_not_its_own(tmp_path, texts_file, tiny_bert_dir):
    whole = int8_store(texts_file, tmp_path / "whole.h5", tiny_bert_dir)
    second = int8_store(texts_file, tmp_path / "s.h5", tiny_bert_dir, shard=(1, 2))
    assert second.config.calibration_sha256 == whole.config.calibration_sha256
    assert second.fingerprint == whole.fingerprint and second.header.row_offset > 0
    assert np.array_equal(second.load("mean")[0], whole.load("mean")[0][second.header.row_offset:])
    whole.close()
    second.close()


@pytest.mark.parametrize("flags, warned", [("fpu avx avx2 fma", True), ("fpu avx avx2 fma avx512f avx512_vnni", False)])
def test_a_cpu_without_int8_dot_products_is_warned_with_what_to_type(tmp_path, texts_file, tiny_bert_dir, fake_cpu,
                                                                    flags, warned):
    """On the AVX2-only EPYC, OpenVINO's int8 ran slower than fp32 (benchmarks/README.md): int8 there is
    a loss of accuracy bought for nothing, so the run says so, and what to type instead."""
    fake_cpu("Test CPU", flags)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        int8_store(texts_file, tmp_path / "s.h5", tiny_bert_dir)
    said = [w for w in caught if "int8 dot-product" in str(w.message)]
    assert len(said) == (1 if warned else 0), [str(w.message) for w in said]
    if warned:
        message = str(said[0].message)
        assert issubclass(said[0].category, featx.FeatxWarning)
        assert "use --dtype fp32" in message and len(message.splitlines()) == 1


def test_int8_misfits_are_one_line(cli, monkeypatch, tmp_path, texts_file, tiny_bert_dir, tiny_backbone):
    base = ["extract", str(texts_file), "-o", str(tmp_path / "s.h5"), "--model", str(tiny_bert_dir), "--dtype", "int8"]
    on_torch = cli(*base, "--backend", "torch")
    assert on_torch.code == 2 and "int8 runs on --backend openvino only" in on_torch.err
    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf now raises ImportError
    without = cli(*base, "--backend", "openvino")
    assert without.code == 2 and "pip install 'featx[int8]'" in without.err
    for result in (on_torch, without):
        assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "s.h5").exists()
    from featx.modalities.text import make_config

    with pytest.raises(featx.FeatxError, match="int8 is calibrated on the first rows"):
        make_config(tiny_backbone, dtype="int8", backend="openvino")
    with pytest.raises(featx.FeatxError, match="int8 is calibrated on the first rows"):
        featx.encode(["a text"], model=featx.ModelOptions(str(tiny_bert_dir), dtype="int8", backend="openvino"))


def test_a_killed_int8_extraction_resumes_bit_identically(tmp_path, tiny_bert_dir):
    from tests.conftest import kill_part_way, run_to_end, tiny_extract_command

    path = write_lines(tmp_path / "in.txt", [f"row {i}: " + "word " * (i % 23) for i in range(2400)])
    out = tmp_path / "killed.h5"
    command, env = tiny_extract_command(path, out, tiny_bert_dir, "mean")
    command[command.index("fp32")] = "int8"
    command += ["--backend", "openvino", "--calibration-rows", "50", "--allow-low-fidelity"]
    run_to_end([*command[:command.index("-o") + 1], str(tmp_path / "whole.h5"), *command[command.index("-o") + 2:]],
               env)  # uninterrupted (and the int8 model cached for the runs below)
    # Three kills, not the six of the torch and OpenVINO tests: what is new here is only where the model comes from.
    assert kill_part_way(command, env, out, delays=(0.9, 0.5, 0.7)) >= 2, \
        "the kills must land part-way for this test to mean anything"
    run_to_end(command, env)
    with featx.open_store(out) as resumed, featx.open_store(tmp_path / "whole.h5") as whole:
        assert resumed.info()["timings"]["resumed_from_row"] > 0 and resumed.config.dtype == "int8"
        assert resumed.fingerprint == whole.fingerprint
        assert np.array_equal(resumed.load()[0], whole.load()[0])
