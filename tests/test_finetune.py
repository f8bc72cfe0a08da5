"""The fine-tuning baseline on the tiny model: loss falls, the checkpoint reloads and predicts."""
import json

import numpy as np
import pytest

import featx
from featx.errors import FeatxError
from featx.finetune import FinetuneConfig, finetune
from featx.finetune_texts import FinetunedPredictor
from featx.recipe import length_grouped_batches


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
