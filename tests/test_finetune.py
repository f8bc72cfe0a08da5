"""The fine-tuning baseline on the tiny model: loss falls, the checkpoint reloads and predicts."""
import json

import numpy as np
import pytest

import featx
from featx.errors import FeatxError
from featx.finetune import FinetuneConfig, finetune
from featx.finetune.recipe import length_grouped_batches
from featx.finetune.texts import FinetunedPredictor


def test_length_grouped_batches_cover_each_row_once():
    lengths = np.random.default_rng(1).integers(1, 100, size=1000)
    batches = length_grouped_batches(lengths, 16, np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 10  # grouped: rows of a batch have similar lengths


def test_finetune_loss_falls_and_checkpoint_predicts(tiny_bert_dir, toy_inputs, tmp_path):
    config = FinetuneConfig(model=str(tiny_bert_dir), epochs=3, lr=1e-3, batch_size=16, max_length=16,
                            dtype="fp32", seed=0)
    record = finetune(featx.open_input(toy_inputs["train"]), tmp_path / "ft", val=featx.open_input(toy_inputs["dev"]),
                      config=config, device="cpu", progress=False)
    losses = record["losses"]
    assert len(losses) == 36 and np.mean(losses[-6:]) < 0.5 * np.mean(losses[:6])
    assert record["epochs"][-1]["val_accuracy"] == 1.0
    assert {p.name for p in (tmp_path / "ft").iterdir()} == {"finetune.json", "backbone", "classifier.safetensors"}
    saved = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert saved["best_epoch"] in (1, 2, 3) and saved["classes"] == ["neg", "pos"]
    predictor = FinetunedPredictor(tmp_path / "ft", device="cpu")
    assert predictor.predict(["great lovely superb movie", "awful dull boring movie"]).tolist() == ["pos", "neg"]
    from tests.test_train_cli import assert_fitted_sklearn_classifier

    assert_fitted_sklearn_classifier(predictor, ["great lovely superb movie", "awful dull boring movie"], ["pos", "neg"])


def test_partial_finetuning_trains_only_the_top_blocks(tiny_bert_dir, toy_inputs, tmp_path):
    config = FinetuneConfig(model=str(tiny_bert_dir), train_layers=1, max_steps=3, dtype="fp32", max_length=16)
    record = finetune(featx.open_input(toy_inputs["train"]), tmp_path / "ft", config=config, device="cpu",
                      progress=False)
    hidden, inter = 32, 64
    one_block = 4 * (hidden * hidden + hidden) + 2 * hidden + (hidden * inter + inter) + (inter * hidden + hidden) + 2 * hidden
    assert record["trainable_parameters"] == one_block + hidden * 2 + 2
    with pytest.raises(FeatxError, match="the model has 2 blocks"):
        finetune(featx.open_input(toy_inputs["train"]), tmp_path / "x", device="cpu", progress=False,
                 config=FinetuneConfig(model=str(tiny_bert_dir), train_layers=5, max_steps=1))


def test_finetune_cli_then_predict_from_the_checkpoint(capsys, tiny_bert_dir, toy_inputs, tmp_path):
    from tests.conftest import run_cli

    code, out, _ = run_cli(capsys, "finetune", str(toy_inputs["train"]), "-o", str(tmp_path / "ft"), "--val",
                           str(toy_inputs["dev"]), "--model", str(tiny_bert_dir), "--epochs", "2", "--lr", "1e-3",
                           "--max-length", "16", "--dtype", "fp32", "-q")
    assert code == 0 and "epoch 2:" in out and "val accuracy" in out
    code, _, _ = run_cli(capsys, "predict", str(tmp_path / "ft"), str(toy_inputs["dev"]), "-o",
                         str(tmp_path / "p.jsonl"), "-q")
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    truth = [line.rsplit(",", 1)[1] for line in toy_inputs["dev"].read_text().splitlines()[1:]]
    assert code == 0 and len(rows) == 48
    assert np.mean([r["label"] == t for r, t in zip(rows, truth)]) >= 0.9


def test_lora_trains_adapters_only_and_saves_merged_weights(tiny_bert_dir, toy_inputs, tmp_path):
    pytest.importorskip("peft")
    config = FinetuneConfig(model=str(tiny_bert_dir), lora_rank=4, epochs=3, lr=3e-3, batch_size=16, max_length=16,
                            dtype="fp32", seed=0)
    record = finetune(featx.open_input(toy_inputs["train"]), tmp_path / "ft", val=featx.open_input(toy_inputs["dev"]),
                      config=config, device="cpu", progress=False)
    hidden, inter, layers, rank = 32, 64, 2, 4
    adapters = layers * rank * (4 * (hidden + hidden) + (hidden + inter) + (inter + hidden))  # q k v o, up, down
    assert record["trainable_parameters"] == adapters + hidden * 2 + 2
    losses = record["losses"]
    assert np.mean(losses[-6:]) < 0.7 * np.mean(losses[:6])
    # The checkpoint is a plain transformers model (adapters merged): no peft needed to load it.
    saved = {p.name for p in (tmp_path / "ft" / "backbone").iterdir()}
    assert "adapter_config.json" not in saved and "model.safetensors" in saved
    predictor = FinetunedPredictor(tmp_path / "ft", device="cpu")
    assert predictor.predict(["great lovely superb movie", "awful dull boring movie"]).tolist() == ["pos", "neg"]


@pytest.fixture(scope="module")
def tagged_inputs(tmp_path_factory):
    """Rows whose colour words are their labels (multi-label) and whose count of 'very' is their score."""
    folder = tmp_path_factory.mktemp("tagged")
    rng = np.random.default_rng(0)
    colours = ["red", "blue", "green"]
    paths = {}
    for split, n in (("train", 240), ("dev", 60)):
        rows = []
        for _ in range(n):
            tags = [c for c in colours if rng.random() < 0.5] or [colours[int(rng.integers(3))]]
            very = int(rng.integers(0, 4))
            words = tags + ["very"] * very + ["thing"] * (4 - very)
            rng.shuffle(words)
            rows.append({"text": " ".join(words), "tags": tags, "score": 2.0 * very + 10.0})
        paths[split] = folder / f"{split}.jsonl"
        paths[split].write_text("".join(json.dumps(row) + "\n" for row in rows))
    return paths


def test_multi_label_finetuning_learns_with_bce_and_keeps_validation_thresholds(tiny_bert_dir, tagged_inputs, tmp_path,
                                                                               capsys):
    from tests.conftest import run_cli

    read = ("--label-column", "tags", "--multi-label", ",")
    code, out, _ = run_cli(capsys, "finetune", str(tagged_inputs["train"]), "-o", str(tmp_path / "ft"), "--val",
                           str(tagged_inputs["dev"]), *read, "--model", str(tiny_bert_dir), "--epochs", "4", "--lr",
                           "2e-3", "--max-length", "16", "--dtype", "fp32", "-q")
    assert code == 0 and "val macro-F1 (thresholds tuned on val)" in out, out
    record = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert record["task"] == "multi" and record["classes"] == ["blue", "green", "red"]
    assert len(record["thresholds"]) == 3 and all(0 < t < 1 for t in record["thresholds"])
    best = record["epochs"][record["best_epoch"] - 1]
    assert best["val_macro_f1"] >= 0.95 and best["val_macro_f1"] >= best["val_macro_f1_at_0.5"]
    predictor = FinetunedPredictor(tmp_path / "ft", device="cpu")
    assert predictor.task == "multi" and np.allclose(predictor.thresholds, record["thresholds"])
    assert [set(tags) for tags in predictor.predict(["red thing thing thing", "blue green very thing"])] == \
        [{"red"}, {"blue", "green"}]
    metrics = predictor.evaluate(featx.open_input(tagged_inputs["dev"], label_column="tags", multi_label=","))
    assert metrics["task"] == "multi" and metrics["macro_f1"] == pytest.approx(best["val_macro_f1"])
    code, _, _ = run_cli(capsys, "predict", str(tmp_path / "ft"), str(tagged_inputs["dev"]), *read, "-o",
                         str(tmp_path / "p.jsonl"), "-q")
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert code == 0 and len(rows) == 60 and set(rows[0]) >= {"labels", "scores", "gold"}


def test_regression_finetuning_learns_with_mse_on_standardised_targets(tiny_bert_dir, tagged_inputs, tmp_path):
    config = FinetuneConfig(model=str(tiny_bert_dir), epochs=4, lr=2e-3, batch_size=16, max_length=16, dtype="fp32")
    record = finetune(featx.open_input(tagged_inputs["train"], target="score"), tmp_path / "ft",
                      val=featx.open_input(tagged_inputs["dev"], target="score"), config=config, device="cpu",
                      progress=False)
    assert record["task"] == "regression" and record["classes"] == ["score"]
    # Standardised with the training rows' moments: a loss of about 1 at the start whatever the scale.
    assert record["target_moments"]["mean"][0] == pytest.approx(13.0, abs=0.5)
    assert record["losses"][0] < 5 and np.mean(record["losses"][-6:]) < 0.3 * np.mean(record["losses"][:6])
    best = record["epochs"][record["best_epoch"] - 1]
    assert best["val_mean_pearson"] > 0.9 and best["val_score"] == max(e["val_score"] for e in record["epochs"])
    predictor = FinetunedPredictor(tmp_path / "ft", device="cpu")
    values = predictor.predict(["very very very thing", "thing thing thing thing"])
    assert values.shape == (2, 1) and values[0, 0] > values[1, 0] + 3  # in the targets' own units
    with pytest.raises(FeatxError, match="predicts values"):
        predictor.predict_proba(["thing"])
    metrics = predictor.evaluate(featx.open_input(tagged_inputs["dev"], target="score"))
    assert metrics["mean_pearson"] == pytest.approx(best["val_mean_pearson"], abs=1e-6)


def test_finetuning_refuses_validation_read_for_another_task(tiny_bert_dir, tagged_inputs, tmp_path):
    with pytest.raises(FeatxError, match="read both with the same options"):
        finetune(featx.open_input(tagged_inputs["train"], target="score"), tmp_path / "ft",
                 val=featx.open_input(tagged_inputs["dev"], label_column="tags", multi_label=","),
                 config=FinetuneConfig(model=str(tiny_bert_dir), max_steps=1), device="cpu", progress=False)
