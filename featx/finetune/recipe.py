"""The fine-tuning recipe shared by texts and images: its knobs, the optimizer and the schedule.

Defaults follow the classic recipe: AdamW (lr 2e-5, weight decay 0.01, none on biases
and norms), linear warm-up over 10 % of the steps then linear decay, gradient clipping
at 1.0, bf16 autocast where the hardware has fast bf16.

The loss follows the task (`TaskTargets`): cross-entropy for one class a row, binary
cross-entropy for multi-label rows (each label's threshold then chosen on validation), and
mean squared error for regression, on targets standardised with the training rows' moments.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from featx.atomic import atomic_folder, save_tensors
from featx.config import DEFAULT_MODEL, DTYPES, FINETUNE_POOLINGS
from featx.constraints import COUNT, NON_NEGATIVE, POSITIVE, Constraint, Interval, Options, check_params
from featx.errors import DamagedError, FeatxError, first_line

if TYPE_CHECKING:  # torch loads when a model trains, not when the CLI reads the recipe's ranges
    import torch

FINETUNE_FORMAT = "featx-finetuned"


@dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tuning recipe; everything that changes the trained model."""

    model: str = DEFAULT_MODEL
    pooling: str = "mean"
    epochs: int = 1
    lr: float = 2e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    batch_size: int = 16
    max_length: int = 128
    grad_clip: float = 1.0
    train_layers: int | None = None
    lora_rank: int | None = None
    dtype: str = "auto"
    seed: int = 0
    max_steps: int | None = None  # stop early (tests, budgets); None = all epochs

    def __post_init__(self) -> None:
        # `model` names a backbone (any name or folder): load_backbone checks it.
        check_params(RECIPE_CONSTRAINTS, {field.name: getattr(self, field.name) for field in fields(self)
                                          if field.name != "model"})
        if self.train_layers is not None and self.lora_rank is not None:
            raise FeatxError("choose one of --train-layers and --lora-rank")


# What each knob of the recipe may be (featx.constraints); the CLI's options take their ranges from here.
RECIPE_CONSTRAINTS: dict[str, Constraint] = {
    "pooling": Options(FINETUNE_POOLINGS), "epochs": COUNT, "lr": POSITIVE, "weight_decay": Interval(float, 0),
    "warmup_ratio": Interval(float, 0, 1, high_open=True), "batch_size": COUNT, "max_length": Interval(int, 2),
    "grad_clip": POSITIVE, "train_layers": Interval(int, 0, allow_none=True),
    "lora_rank": Interval(int, 1, allow_none=True), "dtype": Options(("auto", *DTYPES)), "seed": NON_NEGATIVE,
    "max_steps": Interval(int, 1, allow_none=True)}


def optimizer_and_schedule(model: torch.nn.Module, config: FinetuneConfig,
                           rows: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR, int]:
    """AdamW over the trainable parameters, the warm-up/decay schedule, and the total steps."""
    import torch

    groups = param_groups(model, config.weight_decay)
    # One fused kernel for every parameter instead of a Python loop over them (CPU and CUDA): on the
    # top two MiniLM blocks it cut the optimizer step from 6.9 to 2.1 ms of a ~50 ms step.
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for g in groups for p in g["params"])
    optimizer = torch.optim.AdamW(groups, lr=config.lr, fused=fused)
    steps_per_epoch = math.ceil(rows / config.batch_size)
    total_steps = int(min(steps_per_epoch * config.epochs, config.max_steps or math.inf))
    warmup = max(1, int(config.warmup_ratio * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / max(1, total_steps - warmup))))
    return optimizer, scheduler, total_steps


@dataclass(frozen=True)
class TaskTargets:
    """What a fine-tuned model's outputs mean for one task (featx.data.targets.TASKS): the loss it
    trains by, the targets that loss compares with, and how outputs become probabilities or values.
    Regression targets are standardised with the training rows' `mean` and `scale` (saved in the
    checkpoint), so one learning rate fits targets on any scale."""

    task: str = "single"
    mean: tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None

    @classmethod
    def learn(cls, task: str, labels: np.ndarray) -> TaskTargets:
        if task != "regression":
            return cls(task)
        return cls(task, tuple(float(v) for v in labels.mean(0)),
                   tuple(float(v) for v in np.maximum(labels.std(0), 1e-12)))

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TaskTargets:
        """As a checkpoint's finetune.json keeps them (single-label when it names no task: older checkpoints)."""
        moments = record.get("target_moments") or {}
        return cls(str(record.get("task", "single")), *(tuple(moments[k]) if k in moments else None
                                                        for k in ("mean", "scale")))

    def as_record(self) -> dict[str, Any]:
        return {"task": self.task, **({"target_moments": {"mean": list(self.mean), "scale": list(self.scale or ())}}
                                      if self.mean is not None else {})}

    def loss_targets(self, labels: np.ndarray) -> np.ndarray:
        """The rows' labels as the loss takes them: class indices, 0/1 floats, standardised targets."""
        if self.task == "single":
            return np.asarray(labels, dtype=np.int64)
        if self.task == "regression":
            scaled: np.ndarray = ((labels - np.asarray(self.mean)) / np.asarray(self.scale)).astype(np.float32)
            return scaled
        return np.asarray(labels, dtype=np.float32)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        if self.task == "multi":
            return F.binary_cross_entropy_with_logits(logits, targets)
        if self.task == "regression":
            return F.mse_loss(logits, targets)
        return F.cross_entropy(logits, targets)

    def decode(self, logits: torch.Tensor) -> np.ndarray:
        """Outputs as predictors give them: class probabilities, each label's probability, the values."""
        import torch

        if self.task == "multi":
            return torch.sigmoid(logits).cpu().numpy()
        if self.task == "regression":
            values: np.ndarray = logits.cpu().numpy() * np.asarray(self.scale) + np.asarray(self.mean)
            return values
        return torch.softmax(logits, 1).cpu().numpy()

    def validate(self, outputs: np.ndarray, truth: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
        """Validation metrics of `outputs` (decode's) against `truth` (a store's labels), with ``score``,
        the figure epochs are compared by: accuracy; macro-F1 with each label's threshold chosen on these
        rows (kept as ``thresholds``; ``macro_f1_at_0.5`` beside it); mean R² (as the heads choose)."""
        from featx.metrics import choose_thresholds, mean_r2, task_metrics

        if self.task == "single":
            metrics = task_metrics(truth, outputs.argmax(1), names)
            return {**metrics, "score": metrics["accuracy"]}
        if self.task == "multi":
            thresholds = choose_thresholds(outputs, truth)
            metrics = task_metrics(truth, (outputs >= thresholds).astype(np.uint8), names)
            at_half = task_metrics(truth, (outputs >= 0.5).astype(np.uint8), names)["macro_f1"]
            return {**metrics, "score": metrics["macro_f1"], "macro_f1_at_0.5": at_half,
                    "thresholds": [round(float(t), 6) for t in thresholds]}
        metrics = task_metrics(truth, outputs, names)
        return {**metrics, "score": mean_r2(outputs, truth)}


# What an epoch's validation record keeps of `TaskTargets.validate`'s metrics, per task.
EPOCH_METRICS = {"single": ("accuracy", "macro_f1"), "multi": ("macro_f1", "micro_f1", "macro_f1_at_0.5"),
                 "regression": ("mean_pearson", "mean_spearman", "mean_rmse")}


@dataclass
class FinetuneParts:
    """What a modality hands the fine-tuning loop (`finetune_epochs`): its model, how an epoch's
    batches are drawn and fed, how it is validated and saved."""

    model: Any  # a torch module: step_inputs' inputs -> logits
    batches: Callable[[np.random.Generator], Iterable[np.ndarray]]  # one epoch of row indices per step
    step_inputs: Callable[[np.ndarray], tuple[tuple[Any, ...], Any]]  # rows -> (inputs, targets), on the device
    save: Callable[[dict[str, Any]], None]  # the checkpoint folder, the record so far included
    device: Any
    dtype: str
    evaluate: Callable[[], dict[str, Any]] | None = None  # TaskTargets.validate of the model as it is now
    targets: TaskTargets = field(default_factory=TaskTargets)
    before_epoch: Callable[[], None] = field(default=lambda: None)  # after model.train(), e.g. batch norms kept


def finetune_epochs(parts: FinetuneParts, config: FinetuneConfig, record: dict[str, Any], optimizer: Any,
                    scheduler: Any, total_steps: int, out: Path, progress: bool | None) -> dict[str, Any]:
    """Train for `config.epochs` (at most `total_steps` steps) through the one epoch loop
    (featx.epochs), validating after each epoch and saving the best by the task's validation score
    (TaskTargets.validate; without validation, the last); the record gains the losses, one entry per
    epoch (``val_score`` and the task's metrics), best_epoch and, for multi-label, the best epoch's
    thresholds; it is written to ``out/finetune.json``."""
    from featx.atomic import write_text
    from featx.epochs import EpochLoop, run_epochs
    from featx.hardware import compute_context
    from featx.metrics import headline

    def loss(rows: np.ndarray) -> tuple[Any, int]:
        inputs, targets = parts.step_inputs(rows)
        with compute_context(parts.device, parts.dtype):
            logits = parts.model(*inputs)
        return parts.targets.loss(logits.float(), targets), len(rows)

    latest: dict[str, Any] = {}  # the last validation's metrics (its thresholds are the best epoch's when saved)

    def evaluate() -> dict[str, Any]:
        assert parts.evaluate is not None
        metrics = parts.evaluate()
        metrics.setdefault("score", headline(metrics))  # a predictor's evaluate (images): its headline
        latest.update(metrics)
        record["val_rows"] = metrics["n"]
        return {"score": metrics["score"], "val_score": metrics["score"],
                **{f"val_{k}": metrics[k] for k in EPOCH_METRICS[parts.targets.task]}}

    def on_best(epoch: dict[str, Any]) -> None:
        record["best_epoch"] = epoch["epoch"]
        if parts.targets.task == "multi":  # 0.5 for every label without validation rows
            record["thresholds"] = latest["thresholds"] if parts.evaluate is not None else \
                [0.5] * len(record["classes"])
        parts.save(record)

    run_epochs(EpochLoop(model=parts.model, optimizer=optimizer, batches=parts.batches, loss=loss,
                         epochs=config.epochs, seed=config.seed, scheduler=scheduler, total_steps=total_steps,
                         grad_clip=config.grad_clip, evaluate=evaluate if parts.evaluate is not None else None,
                         keep_weights=False, on_best=on_best, before_epoch=parts.before_epoch,
                         history=record["epochs"], losses=record["losses"], label="finetune", progress=progress))
    write_text(out / "finetune.json", json.dumps(record, indent=2) + "\n", "checkpoint")
    return record


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                           group_batches: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar lengths: shuffle, sort inside groups of 50 batches, shuffle batches."""
    order = rng.permutation(len(lengths))
    batches = []
    group = batch_size * group_batches
    for start in range(0, len(order), group):
        chunk = order[start:start + group]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def read_checkpoint(folder: Path, *keys: str) -> tuple[dict[str, Any], tuple[str, ...], str, tuple[Any, ...]]:
    """A fine-tuning checkpoint's ``finetune.json``: the record, its class names, the dtype it
    trained in and the recipe's values at `keys`, or one line saying it is damaged."""
    try:
        record = json.loads((folder / "finetune.json").read_text(encoding="utf-8"))
        classes = tuple(str(c) for c in record["classes"])
        return record, classes, str(record["dtype"]), tuple(record["recipe"][key] for key in keys)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise DamagedError(f"{folder}/finetune.json is damaged ({type(e).__name__}: {e})") from None


def save_checkpoint(out: Path, record: dict[str, Any], classifier: torch.nn.Module,
                    write_backbone: Callable[[Path], None]) -> None:
    """A fine-tuning checkpoint folder, replaced as a whole (featx.atomic), so it never holds one
    epoch's backbone with another's head: the modality's backbone (`write_backbone` writes it into
    the folder being made), the classifier's tensors and ``finetune.json``."""
    with atomic_folder(out, "checkpoint") as partial:
        write_backbone(partial)
        save_tensors(cpu_state(classifier), partial / "classifier.safetensors")
        (partial / "finetune.json").write_text(json.dumps(record, indent=2) + "\n")


def cpu_state(module: torch.nn.Module) -> dict[str, Any]:
    """`module`'s tensors, detached, contiguous and on the CPU, as safetensors writes them."""
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def load_weights(module: torch.nn.Module, path: Path, what: str) -> None:
    """Load a safetensors file into `module`, or one line saying `what` is damaged or does not fit."""
    from safetensors.torch import load_file

    try:
        module.load_state_dict(load_file(str(path)))
    except Exception as e:  # a missing file, a bad safetensors header, or shapes that do not fit
        raise DamagedError(f"{what} is damaged or does not fit ({first_line(e)})") from None
