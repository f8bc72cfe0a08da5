"""`featx info STORE --verify N`: a store written from a damaged cache is found after the fact
(issue 30). N random rows are embedded again on torch in fp32, with no cache, and compared."""
import json

import numpy as np
import pytest

import featx
from featx.caches import seal_folder
from tests.conftest import write_lines
from tests.faults.conftest import assert_refused, labelled_csv, run_subprocess, snapshot, tiny_args


def _extract(source, out, model, *extra, env):
    result = run_subprocess("extract", source, "-o", out, *tiny_args(model), *extra, env=env)
    assert result.code == 0, result.err
    return result


def test_a_store_written_through_a_corrupted_conversion_cache_fails_verify(tmp_path, tiny_bert_dir):
    """The converted model's weights are changed in place and the cache entry sealed again (as a
    converter writing wrong weights would leave it): extraction exits 0 with wrong vectors."""
    pytest.importorskip("openvino", reason="featx[openvino] is not installed")
    source = labelled_csv(tmp_path / "in.csv", 96)
    env = {"FEATX_CACHE": str(tmp_path / "cache")}
    _extract(source, tmp_path / "first.h5", tiny_bert_dir, "--backend", "openvino", env=env)
    (entry,) = (tmp_path / "cache" / "openvino").iterdir()
    data = bytearray((entry / "model.bin").read_bytes())
    quarter = len(data) // 4
    data[quarter:3 * quarter] = bytes(b ^ 0x5A for b in data[quarter:3 * quarter])
    (entry / "model.bin").write_bytes(bytes(data))
    seal_folder(entry)
    _extract(source, tmp_path / "bad.h5", tiny_bert_dir, "--backend", "openvino", env=env)
    before = snapshot(tmp_path / "bad.h5", source)
    result = run_subprocess("info", tmp_path / "bad.h5", "--verify", "64", env=env)
    assert result.code == 1, (result.code, result.err)
    line = result.out.strip().splitlines()[-1]
    assert line.startswith("verify: FAILED: 64 rows (seed 0)") and "min cosine" in line, line
    assert snapshot(tmp_path / "bad.h5", source) == before  # verifying changes nothing
    good = run_subprocess("info", tmp_path / "first.h5", "--verify", "64", "--json", env=env)
    assert good.code == 0, good.err
    report = json.loads(good.out)["verify"]
    assert report["passed"] and report["rows_checked"] == 64 and report["min_cosine"] >= 0.999


def test_a_good_bf16_store_passes_verify(tmp_path, tiny_bert_dir, cli):
    source = labelled_csv(tmp_path / "in.csv", 80)
    args = [a if a != "fp32" else "bf16" for a in tiny_args(tiny_bert_dir)]
    assert cli("extract", source, "-o", tmp_path / "s.h5", *args, "--backend", "torch").code == 0
    result = cli("info", tmp_path / "s.h5", "--verify", "64", "--seed", "3", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)["verify"]
    assert report["passed"] and report["seed"] == 3 and report["rows_checked"] == 64
    assert report["floor"] == 0.97 and report["min_cosine"] >= report["floor"]


def test_verify_refuses_another_input_in_one_line(tmp_path, tiny_bert_dir, cli):
    source = labelled_csv(tmp_path / "in.csv", 24)
    assert cli("extract", source, "-o", tmp_path / "s.h5", *tiny_args(tiny_bert_dir)).code == 0
    other = write_lines(tmp_path / "other.csv", ["text,label"] + [f"another text {i},pos" for i in range(24)])
    assert_refused(cli("info", tmp_path / "s.h5", "--verify", "8", "--input", other), "is not the row the store holds")
    shorter = write_lines(tmp_path / "short.csv", ["text,label", "one,pos"])
    assert_refused(cli("info", tmp_path / "s.h5", "--verify", "8", "--input", shorter), "was made from an input of 24")


def test_a_store_of_rows_in_memory_asks_for_the_input(tmp_path, tiny_backbone, cli):
    with featx.extract(write_lines(tmp_path / "in.txt", ["a", "b", "c"]), tmp_path / "s.h5", model=tiny_backbone,
                       dtype="fp32", progress=False) as store:
        assert store.header.input_path == str((tmp_path / "in.txt").resolve())
    import h5py

    with h5py.File(tmp_path / "s.h5", "r+") as f:
        del f.attrs["input_path"]  # as a store written before featx recorded the path
    assert_refused(cli("info", tmp_path / "s.h5", "--verify", "2"), "--input is needed")
    result = cli("info", tmp_path / "s.h5", "--verify", "2", "--input", tmp_path / "in.txt", "--json")
    assert result.code == 0 and json.loads(result.out)["verify"]["rows_checked"] == 2, result.err
    assert np.isfinite(json.loads(result.out)["verify"]["min_cosine"])


def test_an_image_store_verifies_against_its_folder(tmp_path, cifar_few, cli):
    pytest.importorskip("PIL", reason="featx[vision] is not installed")
    assert cli("extract", cifar_few, "-o", tmp_path / "images.h5", "--dtype", "fp32", "--backend", "torch", "-q").code == 0
    result = cli("info", tmp_path / "images.h5", "--verify", "5", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)["verify"]
    assert report["rows_checked"] == 5 and report["min_cosine"] >= 0.999
