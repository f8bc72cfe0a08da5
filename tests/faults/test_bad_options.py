"""Bad options and bad model folders: one line naming the flag, nothing written."""
from __future__ import annotations

import shutil

import pytest

import featx
from featx.errors import ParameterError
from tests.conftest import write_lines
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
    "max-length 0": (["--max-length", "0"], ["--max-length must be an integer >= 1, got 0"]),
    "max-length 1": (["--max-length", "1"], ["--max-length must be at least 3 (2 special tokens and one token"]),
    "max-length 2: no room for text": (["--max-length", "2"], ["--max-length must be at least 3"]),
    "chunk windows that never move on": (["--long", "chunk", "--max-length", "3", "--stride", "1"],
                                         ["--stride must be at least 0 and at most 0",
                                          "less than the 1 tokens of text a window holds"]),
    "chunk windows without text": (["--long", "chunk", "--max-length", "2"], ["--max-length must be at least 3"]),
    "negative stride": (["--long", "chunk", "--max-length", "16", "--stride", "-1"],
                        ["--stride must be an integer >= 0, got -1"]),
    "max-length past the position table": (["--max-length", "129"],
                                           ["--max-length 129 is more than", "stop at 128 tokens"]),
    "window-rows 0": (["--window-rows", "0"], ["--window-rows must be an integer >= 1, got 0"]),
    "window-rows negative": (["--window-rows", "-3"], ["--window-rows must be an integer >= 1, got -3"]),
    "batch-tokens 0": (["--batch-tokens", "0"], ["--batch-tokens must be an integer >= 1"]),
    "unknown pooling": (["--pooling", "mean,bogus"], ["--pooling 'bogus' is unknown"]),
    "pooling twice": (["--pooling", "mean,mean"], ["--pooling lists a pooling twice"]),
    "unreadable layers": (["--layers", "abc"], ["--layers 'abc' cannot be read"]),
    "layer past the model": (["--layers", "7"], ["--layers 7 does not exist"]),
    "shard out of range": (["--shard", "3/2"], ["shard 3/2 does not exist"]),
    "shard unreadable": (["--shard", "x"], ["--shard cannot read 'x'"]),
    "shard empty (wrote an unsharded store)": (["--shard", ""], ["--shard must not be empty"]),
    "text column empty": (["--text-column", ""], ["--text-column must not be empty"]),
    "dtype not a choice": (["--dtype", "fp8"], ["--dtype 'fp8' is not one of 'auto', 'fp32', 'bf16', 'fp16'"]),
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
    for extra, fragment in ((["--val-fraction", "2"], "--val-fraction must be a number > 0 and < 1"),
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


def _one_class_store(tmp_path, tiny_backbone):
    path = write_lines(tmp_path / "one.csv", ["text,label"] + [f"fine film {i},pos" for i in range(12)])
    return featx.extract(path, tmp_path / "one.h5", model=tiny_backbone, dtype="fp32", progress=False).path


def test_train_refuses_what_it_cannot_fit_in_one_line(cli, tmp_path, labelled_stores, tiny_backbone):
    """Each of these ended in a traceback (one class, C=abc, --jobs 0) or ran with another value
    than asked (--k 0 ran with 8, --experiments 0 ran 10)."""
    train, test = labelled_stores["train"].path, labelled_stores["test"].path
    cases = [
        ([_one_class_store(tmp_path, tiny_backbone)], ["holds rows of one class only (pos)", "at least two"]),
        ([train, "--head", "logreg:C=abc"], ["--head logreg: C must be a number > 0, got 'abc'"]),
        ([train, "--head", "mlp:dropout=1.5"], ["--head mlp: dropout must be a number >= 0 and < 1, got 1.5"]),
        ([train, "--head", "knn:ks=3|0"], ["--head knn: ks must be one or more values, each an integer >= 1"]),
        ([train, "--jobs", "0"], ["--jobs must be an integer >= 1 or -1, got 0"]),
        ([train, "--seed", "-1"], ["--seed must be an integer >= 0, got -1"]),
        ([train, "--protocol", "mteb", "--test", test, "--k", "0"], ["--k must be an integer >= 1, got 0"]),
        ([train, "--protocol", "mteb", "--test", test, "--experiments", "0"], ["--experiments must be an integer >= 1"]),
        ([train, "--protocol", "mteb", "--test", test, "--seeds", "-1"], ["--seeds must be an integer >= 0"]),
    ]
    for args, fragments in cases:
        assert_refused(cli("train", *args, "-o", tmp_path / "runs"), *fragments)
        assert not (tmp_path / "runs").exists()


def test_the_library_refuses_the_same_values_naming_the_parameter(labelled_stores):
    from featx.errors import ParameterError
    from featx.mteb import mteb_protocol

    train, test = labelled_stores["train"], labelled_stores["test"]
    for kwargs, param in (({"k": 0}, "k"), ({"experiments": 0}, "experiments"), ({"seeds": -1}, "seeds")):
        with pytest.raises(ParameterError) as caught:
            mteb_protocol(train, test, ["mean"], **kwargs)
        assert caught.value.param == param
    with pytest.raises(ParameterError, match="C must be a number > 0"):
        featx.LogRegHead(C=-1.0).fit(*train.load("mean"))


def test_finetune_refuses_numbers_it_would_have_replaced(cli, tmp_path, tiny_bert_dir):
    """--max-steps -1 took one step and saved a checkpoint; --lr -1 ended in a traceback."""
    path = labelled_csv(tmp_path / "in.csv")
    for extra, fragment in ((["--max-steps", "-1"], "--max-steps must be an integer >= 1, got -1"),
                            (["--lr", "-1"], "--lr must be a number > 0, got -1.0"),
                            (["--epochs", "0"], "--epochs must be an integer >= 1"),
                            (["--batch-size", "0"], "--batch-size must be an integer >= 1")):
        result = cli("finetune", path, "-o", tmp_path / "ft", "--model", tiny_bert_dir, "-q", *extra)
        assert_refused(result, fragment)
        assert not (tmp_path / "ft").exists()
    from featx.errors import ParameterError
    from featx.finetune.recipe import FinetuneConfig

    with pytest.raises(ParameterError) as caught:
        FinetuneConfig(max_steps=0)
    assert caught.value.param == "max_steps"


def test_numpy_numbers_are_numbers(tmp_path, tiny_backbone):
    """The declared ranges take numpy's integers and floats as Python's (a suite or a notebook passes them)."""
    import numpy as np

    from featx.constraints import COUNT, POSITIVE

    assert COUNT.check("window_rows", np.int64(8)) == 8 and POSITIVE.check("lr", np.float32(0.5)) == 0.5
    path = labelled_csv(tmp_path / "in.csv")
    with featx.extract(path, tmp_path / "s.h5", model=tiny_backbone, dtype="fp32", progress=False,
                       window_rows=np.int64(8), max_length=np.int64(16), long="chunk", stride=np.int64(2)) as store:
        assert len(store) == 24 and store.config.max_length == 16 and store.config.long_stride == 2


def test_an_unknown_protocol_or_compression_is_refused_not_ignored(tmp_path, labelled_stores, tiny_bert_dir):
    """protocol="mtbe" ran the full protocol; compression="zstd" reached HDF5's own error."""
    from featx.train import run_training

    with pytest.raises(ParameterError, match="protocol"):
        run_training(labelled_stores["train"].path, tmp_path / "runs", protocol="mtbe")
    assert not (tmp_path / "runs").exists()
    text = tmp_path / "t.txt"
    text.write_text("one\ntwo\n", encoding="utf-8")
    with pytest.raises(ParameterError, match="compression"):
        featx.extract(text, tmp_path / "s.h5", model=str(tiny_bert_dir), compression="zstd", progress=False)
    assert not (tmp_path / "s.h5").exists()
