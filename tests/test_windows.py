"""Window vectors of long texts kept in the store (--long chunk --keep-windows) and the windows head."""
import json

import numpy as np
import pytest
import torch

import featx
from featx.config import ExtractConfig
from featx.errors import FeatxError, ParameterError
from featx.extraction.batching import pad_sequences
from featx.featurizers.text import tokenize_windows
from featx.heads import TrainedHead, WindowsHead
from featx.heads.windows import WindowAttention
from featx.predictor import Predictor
from featx.store import format_info
from featx.store.states import RowSequences
from tests.conftest import write_lines

WORDS = {"pos": ["great", "lovely", "superb"], "neg": ["awful", "dull", "boring"]}
FILLER = ["the", "plot", "a", "scene", "camera", "actor", "minute", "then", "and"]


def long_review(rng, label):
    """Filler text, then the label's words."""
    filler = " ".join(rng.choice(FILLER, size=int(rng.integers(10, 40))))
    return f"{filler} {' '.join(rng.choice(WORDS[label], size=2))}"


@pytest.fixture(scope="module")
def window_stores(tmp_path_factory, tiny_backbone):
    folder = tmp_path_factory.mktemp("window-stores")
    rng = np.random.default_rng(0)
    stores, files = {}, {}
    for split, n in (("train", 160), ("dev", 40)):
        lines = ["text,label"] + [f"{long_review(rng, label)},{label}" for label in ("pos", "neg") * (n // 2)]
        files[split] = write_lines(folder / f"{split}.csv", lines)
        stores[split] = featx.extract(files[split], folder / f"{split}.h5", model=tiny_backbone, dtype="fp32",
                                      long="chunk", max_length=8, stride=2, keep_windows=True, window_rows=32,
                                      progress=False)
    return stores, files


def texts_of(path):
    source = featx.open_input(path)
    return [record.text for record in source.records(source.scan())]


@pytest.mark.parametrize("how", ["mean", "max"])
def test_the_store_keeps_every_window_and_pooling_them_gives_the_stored_vector(tmp_path, tiny_backbone, how):
    texts = [" ".join(["word"] * n) for n in (1, 5, 17, 40, 3)]
    path = write_lines(tmp_path / "in.txt", texts)
    store = featx.extract(path, tmp_path / f"{how}.h5", model=tiny_backbone, dtype="fp32", long="chunk",
                          max_length=8, stride=2, long_pooling=how, keep_windows=True, normalize=True,
                          progress=False)
    expected = [len(w) for w in tokenize_windows(tiny_backbone.tokenizer, texts, 8, 2)]
    windows = store.token_states()
    assert windows.lengths.tolist() == expected and max(expected) > 3
    assert windows.values.dtype == np.float32 and windows.values.shape[1] == store.dim
    pooled = np.stack([getattr(windows.row(i), how)(0) for i in range(len(texts))])
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    assert np.allclose(pooled, store.load()[0], atol=1e-6)
    plain = featx.extract(path, tmp_path / f"plain-{how}.h5", model=tiny_backbone, dtype="fp32", long="chunk",
                          max_length=8, stride=2, long_pooling=how, normalize=True, progress=False)
    assert np.array_equal(plain.load()[0], store.load()[0])  # keeping the windows changes no vector
    assert plain.fingerprint != store.fingerprint and "keep_windows" not in plain.config.to_json()
    assert "window vectors" in format_info(store.info()) and not plain.has_windows and store.has_windows


def synthetic_windows(n_rows, seed):
    """Rows of 3-12 noise windows (16-d); one window per row, at a random place, says the label: it
    carries a marker (dimension 0) and the class on dimension 1. Averaging dilutes it by the row's length."""
    rng = np.random.default_rng(seed)
    rows, labels, where = [], [], []
    for i in range(n_rows):
        windows = rng.normal(size=(int(rng.integers(3, 13)), 16)).astype(np.float32)
        at, label = int(rng.integers(len(windows))), i % 2
        windows[at, 0] += 4.0
        windows[at, 1] += 1.5 if label else -1.5
        rows.append(windows)
        labels.append(label)
        where.append(at)
    return RowSequences.from_rows(rows, WINDOWS_CONFIG), np.array(labels), np.array(where)


WINDOWS_CONFIG = ExtractConfig(model="m", weights_sha256="0", tokenizer_sha256="0", max_length=8, long="chunk",
                               long_stride=2, long_pooling="mean", keep_windows=True)


def test_attention_starts_uniform_and_learns_which_window_says_the_label():
    from sklearn.linear_model import LogisticRegression

    train, y_train, _ = synthetic_windows(600, 0)
    val, y_val, _ = synthetic_windows(200, 1)
    test, y_test, where = synthetic_windows(400, 2)
    model = WindowAttention(16, 2, 16, 0.0)
    weights = model.weights(*pad_sequences(test, np.arange(8)))
    for row, n in zip(weights, test.lengths[:8]):
        assert torch.allclose(row[:n], torch.full((int(n),), 1 / int(n))) and not row[n:].any()
    head = WindowsHead(hidden=16, epochs=60, lr=3e-3).fit(train, y_train, val, y_val)
    accuracy = float(np.mean(head.predict(test) == y_test))

    def means(windows):
        return np.stack([windows.row(i).mean(0) for i in range(len(windows))])

    probe = LogisticRegression(max_iter=1000).fit(means(train), y_train)
    baseline = float(np.mean(probe.predict(means(test)) == y_test))
    assert accuracy >= 0.9 and accuracy > baseline + 0.05, (accuracy, baseline)
    learned = head.window_weights(test)
    assert np.mean([w[at] for w, at in zip(learned, where)]) > 0.8  # its weight lands on the window that counts
    assert np.allclose([w.sum() for w in learned], 1.0, atol=1e-5)


def test_a_windows_head_saves_loads_and_predicts_raw_texts_like_its_evaluation(window_stores, tmp_path):
    stores, files = window_stores
    head = featx.train_head(stores["train"], "windows", val=stores["dev"], epochs=5)
    head.save(tmp_path / "head")
    loaded = TrainedHead.load(tmp_path / "head")
    assert np.array_equal(loaded.predict_proba(stores["dev"]), head.predict_proba(stores["dev"]))
    predictor = Predictor(loaded)
    assert np.allclose(predictor.predict_proba(texts_of(files["dev"])), head.predict_proba(stores["dev"]), atol=1e-6)


def test_train_and_predict_commands_with_a_windows_head(cli, window_stores, tmp_path):
    stores, files = window_stores
    trained = cli("train", str(stores["train"].path), "-o", str(tmp_path / "heads"), "--head", "windows:epochs=5",
                  "--head", "logreg", "--val", str(stores["dev"].path), "--export", str(tmp_path / "model"))
    assert trained.code == 0, trained.err
    results = json.loads((tmp_path / "heads" / "results.json").read_text())
    assert sorted(row["head"] for row in results["rows"]) == ["logreg-mean", "windows-epochs5-mean"]
    assert cli("predict", str(tmp_path / "model"), str(files["dev"]), "-o", str(tmp_path / "p.jsonl")).code == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 40


def test_window_options_and_stores_without_windows_are_one_line_errors(cli, tmp_path, tiny_bert_dir,
                                                                       labelled_stores):
    path = write_lines(tmp_path / "in.txt", ["a", "b c"])
    result = cli("extract", str(path), "-o", str(tmp_path / "s.h5"), "--model", str(tiny_bert_dir), "--keep-windows")
    assert result.code == 2 and "--keep-windows" in result.err and "--long chunk" in result.err
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "s.h5").exists()
    result = cli("train", str(labelled_stores["train"].path), "-o", str(tmp_path / "h"), "--head", "windows")
    assert result.code == 2 and "--keep-windows" in result.err and len(result.err.strip().splitlines()) == 1
    with pytest.raises(ParameterError, match="keep_windows"):
        ExtractConfig(model="m", weights_sha256="0", tokenizer_sha256="0", max_length=8, keep_windows=False)


def test_blocks_and_windows_heads_are_not_trained_from_one_store(window_stores):
    with pytest.raises(FeatxError, match="one command each"):
        featx.train_heads(window_stores[0]["train"], [featx.train.HeadSpec("windows", {}),
                                                      featx.train.HeadSpec("blocks", {})])


def test_the_windows_head_refuses_token_states_and_vectors():
    config = ExtractConfig(model="m", weights_sha256="0", tokenizer_sha256="0", max_length=8, cache_layer=1,
                           cache_dtype="float32")
    states = RowSequences.from_rows([np.zeros((2, 4), np.float32)], config)
    for X in (states, np.zeros((1, 4))):
        with pytest.raises(FeatxError, match="--keep-windows"):
            WindowsHead(epochs=1).fit(X, np.array([0]))
