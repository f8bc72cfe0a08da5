"""The full fine-tuning baseline for texts: the same backbone and pooling as extraction, a linear
layer on top (one output a class, a label or a target: featx.finetune.recipe.TaskTargets gives the loss
of single-label, multi-label and regression rows), trained end to end in one flat, readable loop.

The recipe (featx.finetune.recipe, shared with images: featx.finetune.images; featx.finetune hands
each input to its modality's): AdamW (lr 2e-5, weight decay 0.01, none on biases and norms),
linear warm-up over 10 % of the steps then linear decay, batch 16, max length 128,
gradient clipping at 1.0, bf16 autocast where the hardware has fast bf16.
`train_layers=K` trains only the top K blocks and the classifier; `lora_rank=R` trains
LoRA adapters through the optional `peft` package.

A checkpoint folder holds ``finetune.json`` (recipe, classes, per-epoch metrics and
wall times), ``backbone/`` (a transformers folder with its tokenizer) and
``classifier.safetensors``; `featx predict` loads it like a predictor folder.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featx._version import __version__
from featx.atomic import safetensors_os_errors
from featx.backbones import Backbone, load_backbone
from featx.data import InputSource, Record, Source
from featx.errors import FeatxError
from featx.featurizers.text import collate_tokens, tokenize
from featx.finetune.classifier import PretrainedClassifier
from featx.finetune.recipe import (
    FINETUNE_FORMAT,
    FinetuneConfig,
    FinetuneParts,
    TaskTargets,
    finetune_epochs,
    length_grouped_batches,
    load_weights,
    optimizer_and_schedule,
    read_checkpoint,
    save_checkpoint,
)
from featx.hardware import compute_context, describe_hardware, resolve_dtype
from featx.pooling import POOLERS


class SequenceClassifier(torch.nn.Module):
    """Backbone -> padding-aware pooling -> linear classifier."""

    def __init__(self, backbone: Any, hidden_size: int, n_classes: int, pooling: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.classifier = torch.nn.Linear(hidden_size, n_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        result: torch.Tensor = self.classifier(POOLERS[self.pooling](hidden.float(), attention_mask))
        return result


@dataclass
class Examples:
    """Tokenized texts with their labels as a store keeps them (class indices, a 0/1 matrix or the
    targets: featx.data.targets.label_rows), held in memory for several epochs."""

    token_ids: list[list[int]]
    labels: np.ndarray
    classes: tuple[str, ...]  # the class names, the labels (multi-label) or the targets (regression)
    task: str = "single"


def load_examples(source: InputSource, tokenizer: Any, max_length: int) -> Examples:
    """Read and tokenize a labelled input once."""
    from featx.data.targets import label_rows

    summary = source.scan()
    if summary.classes is None:
        raise FeatxError(f"{source.name} has no label column: fine-tuning needs labels (--label-column, "
                         "--multi-label, --label-columns or --target)")
    records = list(source.records(summary))
    ids = tokenize(tokenizer, [r.text for r in records], max_length)
    labels = label_rows(summary, [r.label for r in records])
    assert labels is not None  # a labelled input
    return Examples(ids, labels, summary.classes, summary.task)


def finetune_texts(train: Source, out: str | Path, *, val: Source | None = None,
                   config: FinetuneConfig | None = None, device: str = "auto",
                   progress: bool | None = None) -> dict[str, Any]:
    """Fine-tune `config.model` on `train`, keep the best epoch (by validation accuracy) in `out`.

    Returns the run record also written to ``out/finetune.json``.
    """
    config = config or FinetuneConfig()
    if not isinstance(train, InputSource) or (val is not None and not isinstance(val, InputSource)):
        raise FeatxError(f"{train.name} is read as texts and {val.name if val else ''} as images: give both as texts")
    torch.manual_seed(config.seed)
    loaded = load_backbone(config.model, device=device)
    dtype = resolve_dtype(config.dtype, loaded.device)
    examples = load_examples(train, loaded.tokenizer, config.max_length)
    val_examples = load_examples(val, loaded.tokenizer, config.max_length) if val is not None else None
    if val_examples is not None and (val_examples.task, val_examples.classes) != (examples.task, examples.classes):
        raise FeatxError(f"validation {val_examples.task} labels {list(val_examples.classes)} differ from train's "
                         f"{examples.task} labels {list(examples.classes)}: read both with the same options")
    targets = TaskTargets.learn(examples.task, examples.labels)
    encoded = targets.loss_targets(examples.labels)
    model = _make_trainable(SequenceClassifier(loaded.model, loaded.hidden_size, len(examples.classes), config.pooling),
                            config).to(loaded.device)
    optimizer, scheduler, total_steps = optimizer_and_schedule(model, config, len(examples.labels))
    lengths = np.array([len(ids) for ids in examples.token_ids])
    out = Path(out)
    record: dict[str, Any] = {"format": FINETUNE_FORMAT, "format_version": 1, "featx_version": __version__,
              "recipe": dataclasses.asdict(config), "dtype": dtype, "classes": list(examples.classes),
              **targets.as_record(),
              "train_rows": len(examples.labels), "val_rows": len(val_examples.labels) if val_examples else 0,
              "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "hardware": describe_hardware(loaded.device), "epochs": [], "losses": []}

    def step_inputs(rows: np.ndarray) -> tuple[tuple[Any, ...], Any]:
        batch = collate_tokens(loaded.tokenizer, [examples.token_ids[i] for i in rows])
        inputs = (batch["input_ids"].to(loaded.device), batch["attention_mask"].to(loaded.device))
        return inputs, torch.from_numpy(encoded[rows]).to(loaded.device)

    def evaluate() -> dict[str, Any]:
        assert val_examples is not None
        outputs = predict_examples(model, val_examples.token_ids, loaded.tokenizer, loaded.device, targets, dtype)
        return targets.validate(outputs, val_examples.labels, examples.classes)

    parts = FinetuneParts(model=model, batches=lambda rng: length_grouped_batches(lengths, config.batch_size, rng),
                          step_inputs=step_inputs, save=lambda record: _save(model, loaded, out, record),
                          device=loaded.device, dtype=dtype, evaluate=evaluate if val_examples is not None else None,
                          targets=targets)
    return finetune_epochs(parts, config, record, optimizer, scheduler, total_steps, out, progress)


@torch.inference_mode()
def predict_examples(model: SequenceClassifier, token_ids: Sequence[list[int]], tokenizer: Any,
                     device: torch.device, targets: TaskTargets, dtype: str = "fp32",
                     batch_size: int = 64) -> np.ndarray:
    """Outputs for tokenized rows, in input order: class probabilities, each label's probability,
    or the values (`targets.decode`)."""
    model.eval()
    order = np.argsort([-len(ids) for ids in token_ids], kind="stable")
    outputs: list[Any] = [None] * len(token_ids)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = collate_tokens(tokenizer, [token_ids[i] for i in rows])
        with compute_context(device, dtype):
            logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device)).float()
        for row, value in zip(rows, targets.decode(logits)):
            outputs[row] = value
    return np.stack(outputs)


def _make_trainable(model: SequenceClassifier, config: FinetuneConfig) -> SequenceClassifier:
    if config.lora_rank is not None:
        try:
            import peft
        except ImportError:
            raise FeatxError("LoRA needs the peft package: pip install 'featx[lora]'") from None
        # Every linear layer of the blocks; not the pooler head, which featx's pooling never uses.
        lora = peft.LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank, lora_dropout=0.1,
                               target_modules="all-linear", exclude_modules=r".*pooler.*")
        model.backbone = peft.get_peft_model(model.backbone, lora)
        return model
    if config.train_layers is not None:
        model.backbone.requires_grad_(False)
        blocks = _blocks(model.backbone)
        if not 0 <= config.train_layers <= len(blocks):
            raise FeatxError(f"--train-layers {config.train_layers}: the model has {len(blocks)} blocks")
        for block in blocks[len(blocks) - config.train_layers:]:
            block.requires_grad_(True)
        return model
    model.backbone.requires_grad_(True)
    return model


def _blocks(backbone: Any) -> torch.nn.ModuleList:
    """The transformer blocks: the ModuleList as long as the model has layers."""
    depth = backbone.config.num_hidden_layers
    for module in backbone.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == depth:
            return module
    raise FeatxError(f"cannot find the {depth} transformer blocks of {type(backbone).__name__}")


def _save(model: SequenceClassifier, loaded: Backbone, out: Path, record: dict[str, Any]) -> None:
    """The checkpoint: the backbone as a transformers folder (LoRA merged into plain weights) beside
    its tokenizer, then featx.finetune.recipe's classifier and record."""
    backbone: Any = model.backbone
    if hasattr(backbone, "merge_and_unload"):  # LoRA: save plain merged weights
        backbone = copy_merged(backbone)

    def write_backbone(folder: Path) -> None:
        with safetensors_os_errors():
            backbone.save_pretrained(folder / "backbone", safe_serialization=True)
        loaded.tokenizer.save_pretrained(folder / "backbone")

    save_checkpoint(out, record, model.classifier, write_backbone)


def copy_merged(peft_model: Any) -> torch.nn.Module:
    """A plain transformers model with the LoRA adapters merged in (training copy untouched)."""
    import copy

    result: torch.nn.Module = copy.deepcopy(peft_model).merge_and_unload()
    return result


class FinetunedPredictor(PretrainedClassifier):
    """Texts in, labels (a label set, or values) out, from a fine-tuning checkpoint folder (a
    scikit-learn estimator, already fitted: see featx.finetune.classifier)."""

    def __init__(self, folder: str | Path, device: str = "auto") -> None:
        folder = Path(folder)
        self.name = str(folder)
        self.record, self.class_names, dtype, (pooling, max_length) = read_checkpoint(folder, "pooling", "max_length")
        self.max_length = int(max_length)
        self.loaded = load_backbone(str(folder / "backbone"), device=device)
        self.targets = TaskTargets.from_record(self.record)
        self.task = self.targets.task
        if self.task == "multi":
            self.thresholds = np.asarray(self.record.get("thresholds") or [0.5] * len(self.class_names))
        self.model = SequenceClassifier(self.loaded.model, self.loaded.hidden_size, len(self.class_names), pooling)
        load_weights(self.model.classifier, folder / "classifier.safetensors", f"{folder}/classifier.safetensors")
        self.model.to(self.loaded.device).eval()
        self.dtype = dtype

    def outputs(self, texts: Sequence[str]) -> np.ndarray:
        ids = tokenize(self.loaded.tokenizer, texts, self.max_length)
        return predict_examples(self.model, ids, self.loaded.tokenizer, self.loaded.device, self.targets, self.dtype)

    def record_input(self, record: Record) -> str:
        return record.text
