"""BlocksHead: the top transformer blocks, their pooling and a linear classifier, trained on cached
token states (a store made with ``featx extract --cache-layer L``).

The blocks start as the backbone's own (blocks L.. of the model the store was made with), the
classifier as the fine-tuning baseline's does, and they train with that baseline's recipe
(featx.finetune.recipe: AdamW, warm-up then linear decay, gradient clipping, bf16 autocast where the
CPU has fast bf16, length-grouped batches of 16) for `epochs`, keeping the epoch with the
best validation accuracy. The embeddings and the blocks below L never run: not per epoch,
not per head, not per hyper-parameter; that is what the cache buys against `featx finetune
--train-layers k`, which runs the whole model forward at every step.

`k` trains the top k of the blocks above L and keeps the ones between frozen (they still
run, per step); by default all of them train. A head saves every block above L (they are
part of it), so it needs nothing from the backbone to load; a predictor runs the backbone
up to L, then the head.
"""
from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from featx.config import DTYPES, FINETUNE_POOLINGS
from featx.constraints import COUNT, NON_NEGATIVE, POSITIVE, Constraint, Interval, Options
from featx.errors import DamagedError, FeatxError, ParameterError, first_line
from featx.extraction.batching import pad_sequences
from featx.heads.base import Head, register_head
from featx.metrics import mean_r2, tuned_macro_f1
from featx.store.states import RowSequences

_PREDICT_ROWS = 64  # rows per inference batch (longest first)
# The learning rate the frontier measured (benchmarks/README: blocks:k=2 within 0.6 point of the
# top-2 fine-tune on SST-2); the fine-tuning recipe's 2e-5 is for a whole backbone and left the
# top blocks under-trained in one epoch.
DEFAULT_LR = 1e-4


@register_head
class BlocksHead(Head):
    """Top blocks + pooling + linear classifier on cached token states (see the module docstring)."""

    kind = "blocks"
    tasks = ("single", "multi", "regression")

    summary = "the top blocks trained on token states (needs a store made with --cache-layer)"
    reads: ClassVar[tuple[str, ...]] = ("states",)
    parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "k": Interval(int, 1, allow_none=True), "epochs": COUNT, "lr": POSITIVE, "weight_decay": Interval(float, 0),
        "warmup_ratio": Interval(float, 0, 1, high_open=True), "batch_size": COUNT, "grad_clip": POSITIVE,
        "pooling": Options(FINETUNE_POOLINGS), "dtype": Options(("auto", *DTYPES)), "random_state": NON_NEGATIVE}

    def __init__(self, k: int | None = None, epochs: int = 1, lr: float = DEFAULT_LR, weight_decay: float = 0.01,
                 warmup_ratio: float = 0.1, batch_size: int = 16, grad_clip: float = 1.0, pooling: str = "mean",
                 dtype: str = "auto", random_state: int = 0) -> None:
        self.k = k
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.batch_size = batch_size
        self.grad_clip = grad_clip
        self.pooling = pooling
        self.dtype = dtype
        self.random_state = random_state

    def fit(self, X: RowSequences, y: np.ndarray, X_val: RowSequences | None = None,
            y_val: np.ndarray | None = None) -> BlocksHead:
        """Train on the token states `X`; validation rows choose the epoch (without them, the last)."""
        from featx.epochs import EpochLoop, run_epochs
        from featx.finetune.recipe import FinetuneConfig, TaskTargets, length_grouped_batches, optimizer_and_schedule
        from featx.hardware import compute_context, resolve_dtype
        from featx.heads.blocks_model import TopBlocks

        self._validate_params()
        _check_states(X)
        y = np.asarray(y)
        self._task(y)
        targets = self._loss_targets(y, fit=True)
        backbone = _backbone_of(X)
        above = backbone.num_hidden_states - 1 - X.layer
        k = above if self.k is None else int(self.k)
        if k > above:
            raise ParameterError("head", f"blocks: k={k} is more than the {above} blocks above the cached layer "
                                         f"{X.layer} of {backbone.name}")
        device = torch.device("cpu")
        dtype = resolve_dtype(self.dtype, device)
        torch.manual_seed(self.random_state)
        model = TopBlocks(backbone.model, X.layer, len(self.classes_), self.pooling)
        model.requires_grad_(False)
        for block in list(model.blocks)[above - k:]:
            block.requires_grad_(True)
        model.classifier.requires_grad_(True)
        recipe = FinetuneConfig(model=backbone.name, pooling=self.pooling, epochs=self.epochs, lr=self.lr,
                                weight_decay=self.weight_decay, warmup_ratio=self.warmup_ratio,
                                batch_size=self.batch_size, grad_clip=self.grad_clip, dtype=dtype,
                                seed=self.random_state)
        optimizer, scheduler, total_steps = optimizer_and_schedule(model, recipe, len(X))

        def loss(rows: np.ndarray) -> tuple[torch.Tensor, int]:
            states, mask = pad_sequences(X, rows)
            with compute_context(device, dtype):
                logits = model(states, mask)
            return TaskTargets(self.task_).loss(logits.float(), torch.from_numpy(targets[rows])), len(rows)

        def evaluate() -> dict[str, Any]:
            assert X_val is not None and y_val is not None
            self.model_, self.dtype_ = model, dtype
            score = self._val_score(X_val, np.asarray(y_val))
            name = {"single": "val_accuracy", "multi": "val_macro_f1", "regression": "val_mean_r2"}[self.task_]
            return {"score": score, name: round(score, 6)}

        history: list[dict[str, Any]] = []
        result = run_epochs(EpochLoop(
            model=model, optimizer=optimizer, loss=loss, epochs=self.epochs, seed=self.random_state,
            batches=lambda rng: length_grouped_batches(X.lengths, self.batch_size, rng), scheduler=scheduler,
            total_steps=total_steps, grad_clip=self.grad_clip, history=history, label=f"{self.kind} head",
            evaluate=evaluate if X_val is not None and y_val is not None else None))
        assert result.best_state is not None
        model.load_state_dict(result.best_state)
        model.eval()
        self.model_, self.dtype_, self.best_epoch_, self.history_ = model, dtype, result.best_epoch, history
        self.layer_, self.trainable_blocks_ = X.layer, k
        self.backbone_config_ = json.loads(backbone.model.config.to_json_string())
        self._set_thresholds(X_val, None if y_val is None else np.asarray(y_val))
        return self

    def _val_score(self, X_val: RowSequences, y_val: np.ndarray) -> float:
        """The epoch's validation score: accuracy; macro-F1 at tuned thresholds; mean R²."""
        if self.task_ == "multi":
            return tuned_macro_f1(self.predict_proba(X_val), y_val)
        if self.task_ == "regression":
            return mean_r2(self.predict_values(X_val), y_val)
        right: np.ndarray = self.classes_[self.predict_proba(X_val).argmax(1)] == y_val
        return float(np.mean(right))
    def predict_proba(self, X: RowSequences) -> np.ndarray:
        """Class probabilities (softmax), or each label's (sigmoid) for a multi-label head."""
        logits = self._outputs(X)
        if getattr(self, "task_", "single") == "multi":
            result: np.ndarray = 1.0 / (1.0 + np.exp(-logits))
            return result
        shifted: np.ndarray = np.exp(logits - logits.max(1, keepdims=True))
        probabilities: np.ndarray = shifted / shifted.sum(1, keepdims=True)
        return probabilities

    def predict_values(self, X: RowSequences) -> np.ndarray:
        result: np.ndarray = self._outputs(X) * self.target_scale_ + self.target_mean_
        return result

    @torch.inference_mode()
    def _outputs(self, X: RowSequences) -> np.ndarray:
        from featx.hardware import compute_context

        check_is_fitted(self, "model_")
        _check_states(X)
        self.model_.eval()
        out = np.empty((len(X), len(self.classes_)), dtype=np.float64)
        order = np.argsort(-X.lengths, kind="stable")
        for start in range(0, len(order), _PREDICT_ROWS):
            rows = order[start:start + _PREDICT_ROWS]
            states, mask = pad_sequences(X, rows)
            with compute_context(torch.device("cpu"), self.dtype_):
                logits = self.model_(states, mask).float()
            out[rows] = logits.double().numpy()
        return out

    def describe_choice(self) -> str:
        check_is_fitted(self, "model_")
        chosen = "by validation" if any(key.startswith("val_") for key in self.history_[-1]) else "the last"
        return (f"top {self.trainable_blocks_} blocks from layer {self.layer_}, epoch {self.best_epoch_} of "
                f"{len(self.history_)} ({chosen})")

    def state_arrays(self) -> dict[str, np.ndarray]:
        check_is_fitted(self, "model_")
        return {name: value.detach().float().numpy() for name, value in self.model_.state_dict().items()}

    def fitted_summary(self) -> dict[str, Any]:
        check_is_fitted(self, "model_")
        return {"backbone_config": self.backbone_config_, "layer": self.layer_,
                "trainable_blocks": self.trainable_blocks_, "dtype": self.dtype_, "best_epoch": self.best_epoch_,
                "history": self.history_,
                **({"target_mean": np.asarray(self.target_mean_).tolist(),
                    "target_scale": np.asarray(self.target_scale_).tolist()}
                   if getattr(self, "task_", "single") == "regression" else {})}

    def check_state(self, arrays: dict[str, np.ndarray], n_classes: int) -> None:
        weight, bias = arrays.get("classifier.weight"), arrays.get("classifier.bias")
        if weight is None or bias is None or weight.ndim != 2 or weight.shape[0] != n_classes or \
                bias.shape != (n_classes,):
            raise DamagedError(f"its classifier does not fit its {n_classes} classes")

    def restore(self, arrays: dict[str, np.ndarray], classes: np.ndarray, fitted: dict[str, Any]) -> BlocksHead:
        from featx.heads.blocks_model import top_blocks_from_config

        model = top_blocks_from_config(fitted["backbone_config"], int(fitted["layer"]), len(classes), self.pooling)
        try:
            model.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in arrays.items()})
        except RuntimeError as e:
            raise DamagedError(f"its blocks do not fit its backbone config ({first_line(e)})") from None
        self.model_, self.classes_, self.dtype_ = model.eval(), classes, str(fitted["dtype"])
        self.best_epoch_, self.history_ = int(fitted["best_epoch"]), list(fitted["history"])
        self.layer_, self.trainable_blocks_ = int(fitted["layer"]), int(fitted["trainable_blocks"])
        self.backbone_config_ = fitted["backbone_config"]
        if getattr(self, "task_", "single") == "regression":
            self.target_mean_ = np.asarray(fitted["target_mean"], dtype=np.float64)
            self.target_scale_ = np.asarray(fitted["target_scale"], dtype=np.float64)
        return self


def _check_states(X: Any) -> None:
    if not isinstance(X, RowSequences):
        raise FeatxError("the blocks head trains on token states: extract the store with --cache-layer L "
                         "(featx extract ... --cache-layer -2)")


def _backbone_of(states: RowSequences) -> Any:
    """The backbone the states were made with, checked by its weights' hash."""
    from featx.backbones import load_backbone

    config = states.config
    backbone = load_backbone(config.model, device="cpu")
    if backbone.weights_sha256 != config.weights_sha256:
        raise FeatxError(f"the model found at {config.model} is not the one these token states were made with "
                         "(its weights differ)")
    return backbone
