"""A sentence-transformers folder featx cannot reproduce is one line before anything is embedded
(issue 30, cases 3, 4 and 5): module types by their full name, damaged module weights, and
sizes that do not fit, whether in the weights or in the config against the width coming in."""
import json

import pytest

from tests.conftest import write_lines

st = pytest.importorskip("sentence_transformers", reason="sentence-transformers (the dev extra) is not installed")
modules = pytest.importorskip("sentence_transformers.sentence_transformer.modules")

from tests.test_st_modules import TEXTS, assert_same, ours, st_folder, theirs


def _dense_folder(folder):
    return next(p for p in folder.iterdir() if p.name.endswith("Dense"))


def _refused(cli, tmp_path, folder, *words):
    out = tmp_path / "s.h5"
    result = cli("extract", str(write_lines(tmp_path / "in.txt", TEXTS)), "-o", str(out), "--model", str(folder))
    assert result.code == 2, result.err
    assert result.err.startswith("featx: error: ") and len(result.err.strip().splitlines()) == 1, result.err
    assert "Traceback" not in result.err
    for word in words:
        assert word in result.err, (word, result.err)
    assert not out.exists()  # refused before anything was embedded


def test_a_custom_module_class_named_dense_is_refused(tmp_path, tiny_bert_dir, cli):
    folder = st_folder(tmp_path, tiny_bert_dir, modules.Dense(32, 16))
    entries = json.loads((folder / "modules.json").read_text())
    entries[2]["type"] = "mypkg.modules.Dense"
    (folder / "modules.json").write_text(json.dumps(entries))
    _refused(cli, tmp_path, folder, "mypkg.modules.Dense", "not one of sentence-transformers' own", "--pooling")


@pytest.mark.parametrize("spelling", ["sentence_transformers.models.Dense.Dense",
                                      "sentence_transformers.base.modules.dense.Dense",
                                      "sentence_transformers.sentence_transformer.modules.Dense"])
def test_sentence_transformers_own_spellings_of_a_module_are_applied(tmp_path, tiny_bert_dir, spelling):
    folder = st_folder(tmp_path, tiny_bert_dir, modules.Dense(32, 16), modules.Normalize())
    expected = theirs(folder)
    entries = json.loads((folder / "modules.json").read_text())
    entries[2]["type"] = spelling
    (folder / "modules.json").write_text(json.dumps(entries))
    vectors, config = ours(folder, tmp_path)
    assert config.modules is not None and vectors.shape == (len(TEXTS), 16)
    assert_same(vectors, expected)


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_damaged_dense_weights_are_one_line(tmp_path, tiny_bert_dir, cli, damage):
    folder = st_folder(tmp_path, tiny_bert_dir, modules.Dense(32, 16))
    weights = _dense_folder(folder) / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else bytes(range(256)) * 8)
    _refused(cli, tmp_path, folder, "Dense weights", "cannot be read")


def test_a_dense_wider_than_what_reaches_it_is_one_line(tmp_path, tiny_bert_dir, cli):
    """in_features 48 after a 32-wide pooling: weights and config agree with each other, not with the pooling."""
    folder = st_folder(tmp_path, tiny_bert_dir, modules.Dense(32, 16))
    dense = _dense_folder(folder)
    config = json.loads((dense / "config.json").read_text())
    config["in_features"] = 48
    (dense / "config.json").write_text(json.dumps(config))
    import torch
    from safetensors.torch import save_file

    save_file({"linear.weight": torch.zeros(16, 48), "linear.bias": torch.zeros(16)}, str(dense / "model.safetensors"))
    _refused(cli, tmp_path, folder, "in_features 48", "32 wide")


def test_dense_weights_of_other_sizes_than_its_config_are_one_line(tmp_path, tiny_bert_dir, cli):
    """A config of 32 -> 16 with weights of 16 x 48."""
    import torch
    from safetensors.torch import save_file

    folder = st_folder(tmp_path, tiny_bert_dir, modules.Dense(32, 16))
    dense = _dense_folder(folder)
    save_file({"linear.weight": torch.zeros(16, 48), "linear.bias": torch.zeros(16)}, str(dense / "model.safetensors"))
    _refused(cli, tmp_path, folder, "linear.weight of shape [16, 48]", "[16, 32]")


def test_a_layernorm_of_another_width_is_one_line(tmp_path, tiny_bert_dir, cli):
    folder = st_folder(tmp_path, tiny_bert_dir, modules.Dense(32, 24), modules.LayerNorm(24))
    norm = next(p for p in folder.iterdir() if p.name.endswith("LayerNorm"))
    config = json.loads((norm / "config.json").read_text())
    config["dimension"] = 32
    (norm / "config.json").write_text(json.dumps(config))
    _refused(cli, tmp_path, folder, "dimension 32", "24 wide")
