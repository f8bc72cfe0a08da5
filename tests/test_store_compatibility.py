"""Stores written by earlier featx stay valid: same fingerprint, same vectors, from today's engine.

tests/fixtures/sst2-dev-every18-fb239ca.h5 was written by featx at commit fb239ca (before the
store package, the verified commits and the model's-own-embedding default) from every 18th
row of the bundled SST-2 dev split, MiniLM, pooling mean and cls, --dtype fp32, no
normalisation. Today's engine must give the same fingerprint and the same vectors: bit for
bit on the CPU kind that wrote the fixture, within float32 rounding on another.

tests/fixtures/sst2-dev-every18-minilm-995134d.h5 was written at commit 995134d (before the
modality registry, the grouped options and the typed store header) from the same rows with the
defaults of that day (the model's own embedding: mean, L2-normalised), --dtype fp32.

tests/fixtures/cifar10-test-efficientnet-995134d.h5 does the same for images: featx at commit
995134d embedded the CIFAR-10 test JPEGs in tests/fixtures/cifar10-test-995134d (the first 4 of
airplane, cat and ship from ../shared/data/cifar10/cifar10-jpg.zip, copied byte for byte, so
the input hash matches too and the test needs no shared data).
"""
import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import featx

FIXTURE = Path(__file__).parent / "fixtures" / "sst2-dev-every18-fb239ca.h5"
# Written by featx at commit 995134d (before the modality registry and the typed store header):
# 12 CIFAR-10 test JPEGs (4 of each of 3 classes, 32 x 32), efficientnet-lite0, mean and max, fp32.
TEXT_FIXTURE_995134D = Path(__file__).parent / "fixtures" / "sst2-dev-every18-minilm-995134d.h5"
IMAGE_FIXTURE = Path(__file__).parent / "fixtures" / "cifar10-test-efficientnet-995134d.h5"
IMAGES = Path(__file__).parent / "fixtures" / "cifar10-test-995134d"
IMAGE_FINGERPRINT = "247a101c596d7d516b64cb0f68b0f2474fecb1a10d73fe6ffb7ce4d868951d8d"
IMAGE_FIXTURE_VECTOR_FLAGS = {"avx", "avx2", "avx512_bf16", "avx512_bitalg", "avx512_vbmi2", "avx512_vnni",
                              "avx512_vpopcntdq", "avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512ifma",
                              "avx512vbmi", "avx512vl", "f16c", "fma", "sse4_1", "sse4_2", "sse4a"}
# The vector instruction sets of the machine that wrote the fixture (/proc/cpuinfo flags):
# float32 results are bit-identical only where the same kernels run.
FIXTURE_VECTOR_FLAGS = {"avx", "avx2", "f16c", "fma", "sse4_1", "sse4_2", "sse4a"}


def _vector_flags() -> set[str]:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return set()
    return {f for f in flags.split(":")[1].split() if f.startswith(("avx", "fma", "amx", "sse4", "f16c"))}


def _assert_same_rows_and_vectors(old, new, fixture_cpu, fixture_flags):
    """The same input, rows, labels and content hashes; the same vectors bit for bit on the CPU kind
    that wrote the fixture (its model name and vector flags), within float32 rounding elsewhere."""
    assert new.info()["input"] == old.info()["input"] and new.info()["input_sha256"] == old.info()["input_sha256"]
    assert new.ids.tolist() == old.ids.tolist() and np.array_equal(new.labels, old.labels)
    assert np.array_equal(new.content_sha256, old.content_sha256)
    same_cpu = fixture_cpu == new.info()["hardware"].get("cpu") and _vector_flags() == fixture_flags
    for pooling in old.poolings:
        if same_cpu:
            np.testing.assert_array_equal(new.load(pooling)[0], old.load(pooling)[0])
        else:
            np.testing.assert_allclose(new.load(pooling)[0], old.load(pooling)[0], atol=1e-5)


def test_todays_engine_reproduces_a_store_written_by_earlier_featx(tmp_path):
    source = featx.open_input("sst2:dev", rows_mod=(18, (0,)))
    with featx.open_store(FIXTURE) as old, featx.extract(source, tmp_path / "new.h5", pooling=("mean", "cls"),
                                                         normalize=False, dtype="fp32", backend="torch",
                                                         progress=False) as new:
        assert new.fingerprint == old.fingerprint == "a4d84279bb0b0d6aa1e2dc4b1e5d86db1aa019e1b2a4a45d184737683cd87f32"
        with h5py.File(FIXTURE, "r") as f:
            fixture_cpu = json.loads(f.attrs["hardware"]).get("cpu")
        _assert_same_rows_and_vectors(old, new, fixture_cpu, FIXTURE_VECTOR_FLAGS)


def test_todays_defaults_on_torch_reproduce_a_text_store_written_at_995134d(tmp_path):
    source = featx.open_input("sst2:dev", rows_mod=(18, (0,)))
    with featx.open_store(TEXT_FIXTURE_995134D) as old, \
            featx.extract(source, tmp_path / "new.h5", dtype="fp32", backend="torch", progress=False) as new:
        assert new.fingerprint == old.fingerprint == "253f859ebbd2e8fe890416ce3bbc5bcb8a1855ceadff4006fe85b8571072bf01"
        assert new.poolings == ("mean",) and new.config.normalize is True
        # written on the machine that wrote the image fixture (same CPU model and vector flags)
        _assert_same_rows_and_vectors(old, new, old.info()["hardware"].get("cpu"), IMAGE_FIXTURE_VECTOR_FLAGS)


def test_todays_default_backend_is_the_only_change_from_a_store_written_at_995134d(tmp_path):
    """The default backend is auto: OpenVINO where featx[openvino] is installed, which enters the
    config as `backend`; every other field, and the vectors within fp32 rounding, stay."""
    expected = "openvino" if importlib.util.find_spec("openvino") is not None else None
    source = featx.open_input("sst2:dev", rows_mod=(18, (0,)))
    with featx.open_store(TEXT_FIXTURE_995134D) as old, \
            featx.extract(source, tmp_path / "new.h5", dtype="fp32", progress=False) as new:
        assert new.config.backend == expected
        assert new.config == old.config.replace(backend=expected)
        assert (new.fingerprint == old.fingerprint) is (expected is None)
        np.testing.assert_allclose(new.load()[0], old.load()[0], atol=1e-5)


def test_rerunning_the_default_command_over_an_earlier_store_returns_it_untouched(tmp_path):
    """The default backend is the one a store already at the output was made with."""
    copy = tmp_path / "old.h5"
    shutil.copy(FIXTURE, copy)
    before = copy.read_bytes()
    source = featx.open_input("sst2:dev", rows_mod=(18, (0,)))
    with featx.extract(source, copy, pooling=("mean", "cls"), normalize=False, dtype="fp32", progress=False) as store:
        assert store.config.backend is None
        assert store.fingerprint == "a4d84279bb0b0d6aa1e2dc4b1e5d86db1aa019e1b2a4a45d184737683cd87f32"
    assert copy.read_bytes() == before


def test_a_field_added_later_and_left_unset_keeps_every_fingerprint():
    """The rule for new config fields (featx.config): None means unset, and unset is left out; a
    modality's section is flattened beside the core, so a field added to it later keeps every
    committed fingerprint too."""

    from featx.config import SECTIONS, TextSection, register_section
    from tests.conftest import registries_restored

    @dataclasses.dataclass(frozen=True)
    class LaterSection(TextSection):
        new_knob: str | None = None

    with featx.open_store(FIXTURE) as old:
        fields = json.loads(old.config.to_json())
        today = old.config
    assert type(today.section) is SECTIONS["text"] and today.to_json() == json.dumps(fields, separators=(",", ":"))
    with registries_restored():
        register_section("text", LaterSection)
        later = featx.ExtractConfig.from_json(today.to_json())  # an old store's JSON reads into the new section
        assert type(later.section) is LaterSection and later.new_knob is None
        assert later.fingerprint == today.fingerprint == old.fingerprint
        assert later.to_json() == today.to_json() and "new_knob" not in later.to_json()
        knob_set = later.replace(new_knob="chunk")
        assert knob_set.fingerprint != today.fingerprint and '"new_knob":"chunk"' in knob_set.to_json()
    with pytest.raises(featx.FeatxError, match="new_knob is not a field of text configs"):
        featx.ExtractConfig.from_json(knob_set.to_json())  # once the section is gone, its field is refused


def test_todays_engine_reproduces_an_image_store_written_at_995134d(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    with featx.open_store(IMAGE_FIXTURE) as old, featx.extract(
            IMAGES, tmp_path / "new.h5", model="efficientnet-lite0", pooling="mean,max", dtype="fp32", backend="torch",
            progress=False) as new:
        assert new.fingerprint == old.fingerprint == IMAGE_FINGERPRINT
        assert np.array_equal(new.skipped, old.skipped)
        _assert_same_rows_and_vectors(old, new, old.info()["hardware"].get("cpu"), IMAGE_FIXTURE_VECTOR_FLAGS)


def test_rerunning_over_the_image_store_of_995134d_returns_it_untouched(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    copy = tmp_path / "old.h5"
    shutil.copy(IMAGE_FIXTURE, copy)
    before = copy.read_bytes()
    with featx.extract(IMAGES, copy, model="efficientnet-lite0", pooling="mean,max", dtype="fp32",
                       progress=False) as store:
        assert store.fingerprint == IMAGE_FINGERPRINT and store.complete
    assert copy.read_bytes() == before
