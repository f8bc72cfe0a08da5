"""Bad options and bad model folders: one line naming the flag, nothing written."""
from __future__ import annotations

import shutil

import pytest

import featx
from tests.faults.conftest import assert_refused, labelled_csv, snapshot


def _model_without_tokenizer(tiny, tmp):
    folder = tmp / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny / name, folder / name)
    return folder


def _model_with_degenerate_vocab(tiny, tmp):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    folder = _model_without_tokenizer(tiny, tmp)
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]").save_pretrained(folder)
    return folder


def _model_with_pickled_weights(tiny, tmp):
    import torch
    from safetensors.torch import load_file

    folder = tmp / "pickled"
    shutil.copytree(tiny, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


def _model_without_config(tiny, tmp):
    folder = _model_without_tokenizer(tiny, tmp)
    (folder / "config.json").unlink()
    return folder


EXTRACT_CASES = {
    "max-length 0": (["--max-length", "0"], ["--max-length must be at least 2"]),
    "max-length 1": (["--max-length", "1"], ["--max-length must be at least 2"]),
    "max-length past the position table": (["--max-length", "129"],
                                           ["--max-length 129 is more than", "stop at 128 tokens"]),
    "window-rows 0": (["--window-rows", "0"], ["--window-rows must be positive, got 0"]),
    "window-rows negative": (["--window-rows", "-3"], ["--window-rows must be positive, got -3"]),
    "batch-tokens 0": (["--batch-tokens", "0"], ["--batch-tokens must be positive"]),
    "unknown pooling": (["--pooling", "mean,bogus"], ["--pooling 'bogus' is unknown"]),
    "pooling twice": (["--pooling", "mean,mean"], ["--pooling lists a pooling twice"]),
    "unreadable layers": (["--layers", "abc"], ["--layers 'abc' cannot be read"]),
    "layer past the model": (["--layers", "7"], ["--layers 7 does not exist"]),
    "shard out of range": (["--shard", "3/2"], ["shard 3/2 does not exist"]),
    "shard unreadable": (["--shard", "x"], ["--shard cannot read 'x'"]),
    "dtype not a choice": (["--dtype", "fp8"], ["Invalid value for '--dtype'"]),
}


@pytest.mark.parametrize("case", EXTRACT_CASES, ids=list(EXTRACT_CASES))
def test_bad_extract_option_names_the_flag(cli, tmp_path, tiny_bert_dir, case):
    extra, fragments = EXTRACT_CASES[case]
    path = labelled_csv(tmp_path / "in.csv")
    before = snapshot(path)
    out = tmp_path / "s.h5"
    args = ["--model", tiny_bert_dir, "--dtype", "fp32", "-q"]
    result = cli("extract", path, "-o", out, *args, *extra)
    assert_refused(result, *fragments)
    assert snapshot(path) == before and not out.exists()


MODEL_CASES = {
    "no such folder": (lambda tiny, tmp: tmp / "nowhere" / "model", ["is not a transformers model folder"]),
    "folder without config.json": (_model_without_config, ["without config.json"]),
    "folder without tokenizer files": (_model_without_tokenizer, ["has no tokenizer files"]),
    "tokenizer with a degenerate vocabulary": (_model_with_degenerate_vocab, ["tokenizer", "is degenerate"]),
    "pickle-only weights": (_model_with_pickled_weights, ["only pickled weights (pytorch_model.bin)",
                                                          "featx loads safetensors only"]),
}


@pytest.mark.parametrize("case", MODEL_CASES, ids=list(MODEL_CASES))
def test_bad_model_folder_is_refused_before_anything_is_embedded(cli, tmp_path, tiny_bert_dir, case):
    make, fragments = MODEL_CASES[case]
    model = make(tiny_bert_dir, tmp_path)
    path = labelled_csv(tmp_path / "in.csv")
    result = cli("extract", path, "-o", tmp_path / "s.h5", "--model", model, "-q")
    assert_refused(result, *fragments)
    assert not (tmp_path / "s.h5").exists()


def test_library_names_the_parameter(tmp_path, tiny_backbone):
    from featx.errors import ParameterError

    path = labelled_csv(tmp_path / "in.csv")
    for kwargs, param in (({"max_length": 0}, "max_length"), ({"window_rows": 0}, "window_rows"),
                          ({"batch_tokens": -1}, "batch_tokens"), ({"pooling": "nope"}, "pooling")):
        with pytest.raises(ParameterError) as caught:
            featx.extract(path, tmp_path / "s.h5", model=tiny_backbone, progress=False, **kwargs)
        assert caught.value.param == param
        assert not (tmp_path / "s.h5").exists()


def test_train_and_bench_options(cli, tmp_path, labelled_stores):
    train = labelled_stores["train"].path
    for extra, fragment in ((["--val-fraction", "2"], "--val-fraction must be between 0 and 1"),
                            (["--head", "bogus"], "unknown head 'bogus'"),
                            (["--head", "logreg:nope=1"], "logreg head has no parameter 'nope'"),
                            (["--pooling", "max"], "has no 'max' features")):
        result = cli("train", train, "-o", tmp_path / "runs", *extra)
        assert_refused(result, fragment)
        assert not (tmp_path / "runs").exists()
    suite = tmp_path / "s.toml"
    suite.write_text('[data]\ntrain = "a.csv"\nval = "b.csv"\ntest = "c.csv"\n')
    assert_refused(cli("bench", suite, "-o", tmp_path / "res", "--stages", "extract,bogus"), "unknown stage 'bogus'")
    assert not (tmp_path / "res").exists()
